"""The Overview (key 2) and Events (key 3) views, driven as a user drives them: the real app under
Pilot at 80x24, on a real Console whose sequencer receives real UDP datagrams on 127.0.0.1:0.

What is on screen is read from the widgets as drawn: the event list's rendered rows
(``render_line``), the status line, the detail panel and the Overview's text. Lamport times (and
so the time column) vary from run to run, so these are assertions on text, not SVG snapshots.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import time
import zlib
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest
from helpers import send_events, wait_for
from textual import events
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import ContentSwitcher, Static

from lacrimosa.engine.console import JOURNAL_NAME, Console
from lacrimosa.engine.events.frames import EVENT_DTYPE, RECORD_HEADER, TEXT, Event, encode_frame
from lacrimosa.engine.events.journal import Journal
from lacrimosa.engine.processes.supervisor import State
from lacrimosa.tui import LacrimosaApp
from lacrimosa.tui.event_render import (
    RowFormat,
    describe_event,
    event_row,
    hex_dump,
    payload_preview,
)
from lacrimosa.tui.event_rows import EventFilter, build_rows
from lacrimosa.tui.events_view import FLOOD_ROWS_INTERVAL, EventList, EventsView, parse_number
from lacrimosa.tui.key_hints import KeyHints
from lacrimosa.tui.overview import SEQUENCER_REFRESH_INTERVAL, OverviewView
from lacrimosa.tui.sparkline import RateSparkline, bar_eighths, bucket_peaks
from lacrimosa.tui.text_lines import TextLines
from lacrimosa.tui.virtual_list import CURSOR_COMPONENT, NEW_ROWS_INTERVAL

SIZE = (80, 24)

WITH_SEQUENCER = """
    [processes.idle]
    cmd = "sleep 60"
    stop_timeout = 2

    [sequencer]
    udp = "127.0.0.1:0"
"""

# A ring of 64 slots: a hundred events lap a reader that stays at the oldest.
SMALL_JOURNAL = (
    WITH_SEQUENCER
    + """
    capacity = 64
    blob = "1MiB"
"""
)

WITHOUT_SEQUENCER = """
    [processes.idle]
    cmd = "sleep 60"
    stop_timeout = 2
"""

BINARY = bytes([0x00, 0xFF, 0x10, 0x80, 0x41, 0x42]) + bytes(range(0xF0, 0x100))


# -- helpers -------------------------------------------------------------------------------------


def send_texts(console: Console, sock: socket.socket, texts: list[str]) -> None:
    # In small bursts: a loopback burst of hundreds can overflow a small receive buffer.
    for start in range(0, len(texts), 50):
        send_events(console, sock, *(f"{text}\n".encode() for text in texts[start : start + 50]))


def event_list(app: LacrimosaApp) -> EventList:
    return app.query_one(EventList)


def rows(app: LacrimosaApp) -> list[str]:
    """The event list's rows as drawn, blank ones dropped."""
    return [row for row in event_list(app).visible_rows() if row]


def static_text(app: LacrimosaApp, selector: str) -> str:
    return str(app.query_one(selector, Static).content)


def payloads(app: LacrimosaApp) -> list[str]:
    """The payload column of each row on screen (where the header says it starts)."""
    start = static_text(app, "#events-header").index("payload")
    return [row[start:] for row in rows(app)]


def events_status(app: LacrimosaApp) -> str:
    return static_text(app, "#events-status")


def overview_text(app: LacrimosaApp) -> str:
    """The text of the Overview's parts that are shown."""
    parts = app.query_one(OverviewView).query("Static, TextLines")
    return "\n".join(
        part.plain if isinstance(part, TextLines) else str(part.content)
        for part in parts
        if part.display
    )


def detail_text(app: LacrimosaApp) -> str:
    return static_text(app, "#event-detail-text")


def footer_keys(app: LacrimosaApp) -> list[str]:
    """The keys the footer shows now."""
    return [key.key for hint in app.query_one(KeyHints).hints for key in hint.keys]


def notifications(app: LacrimosaApp) -> list[str]:
    return [n.message for n in app._notifications]


async def flood(
    pilot: Pilot,
    instance: Console,
    sock: socket.socket,
    seconds: float,
    per_send: int,
    pause: float = 0.05,
    wait: bool = True,
) -> int:
    """Send ``per_send`` events every ``pause`` for ``seconds``, then (``wait``) wait until the
    newest is listed; returns how many were sent."""
    deadline = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < deadline:
        send_texts(instance, sock, [f"flood {sent + i}" for i in range(per_send)])
        sent += per_send
        await pilot.pause(pause)
    if wait:
        newest = f"flood {sent - 1}"
        app = pilot.app
        await wait_for(pilot, lambda: payloads(app)[-1:] == [newest], "the newest event listed")
    return sent


def record_calls(owner: object, method: str) -> list[float]:
    """A list the times of ``owner.method``'s calls from now on are appended to."""
    called: list[float] = []
    original = getattr(owner, method)

    def recorded(*args, **kwargs):  # type: ignore[no-untyped-def]
        called.append(time.monotonic())
        return original(*args, **kwargs)

    setattr(owner, method, recorded)
    return called


def record_installs(the_list: EventList) -> list[float]:
    """The times the event list installs new rows from now on."""
    return record_calls(the_list, "_install")


def record_layouts(app: LacrimosaApp) -> list[float]:
    """The times of the screen's layouts from now on."""
    return record_calls(app.screen, "_refresh_layout")


async def show_events(pilot: Pilot, app: LacrimosaApp, count: int) -> None:
    """Switch to the Events view and wait until it lists ``count`` events."""
    await pilot.press("3")
    await wait_for(pilot, lambda: len(event_list(app).rows) == count, f"{count} events listed")
    await pilot.pause()


# -- views ---------------------------------------------------------------------------------------


async def test_keys_1_2_3_switch_views_and_the_log_view_keeps_its_state(console) -> None:
    instance = console(WITH_SEQUENCER + '\n[processes.other]\ncmd = "sleep 60"\n')
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        switcher = app.query_one("#views", ContentSwitcher)
        await pilot.press("down", "down")  # the table cursor on "other"
        assert app.selected_process == "other"
        pane = app.log_pane
        pane.focus()
        assert app.view == "logs" and switcher.current == "logs"
        # Every view's footer lists the view keys (grouped: "123 views").
        assert {"1", "2", "3", "r"} <= set(footer_keys(app))

        await pilot.press("2")
        assert app.view == "overview" and switcher.current == "overview"
        assert app.query_one(OverviewView).display and not app.query_one("#logs").display
        keys = footer_keys(app)
        assert {"1", "2", "3", "q"} <= set(keys)
        assert not {"r", "x", "s", "e", "a", "slash"} & set(keys)

        await pilot.press("3")
        assert app.view == "events" and app.query_one(EventsView).display
        assert app.focused is event_list(app)
        assert {"1", "2", "3", "q", "enter", "g", "n", "t", "f"} <= set(footer_keys(app))
        # The log view's keys do nothing here: `x` does not stop the selected process.
        await pilot.press("x", "e")
        await pilot.pause(0.2)
        assert instance.process("other").state == State.RUNNING

        await pilot.press("1")
        assert app.view == "logs" and app.query_one("#logs").display
        assert app.selected_process == "other"  # its state was kept while hidden
        assert app.focused is pane  # and so was the focus
        assert "stream: all" in str(app.query_one("#status", Static).render())


async def test_the_footer_shows_each_view_keys_and_a_click_on_one_presses_it(console) -> None:
    app = LacrimosaApp(console(WITH_SEQUENCER))
    async with app.run_test(size=SIZE) as pilot:
        footer = app.query_one(KeyHints)
        shown = footer.render().plain
        assert "r restart" in shown and "q quit" in shown and shown.endswith("12345 views ")
        await pilot.click(KeyHints, offset=(shown.index("12345") + 2, 0))  # the "3"
        await pilot.pause()
        assert app.view == "events"
        shown = footer.render().plain
        assert "g go to" in shown and "r restart" not in shown
        assert not footer.children  # one line of text: nothing mounted for a view switch
        await pilot.click(KeyHints, offset=(shown.index("q quit") + 3, 0))  # the description
        await wait_for(pilot, lambda: not app.is_running, "the app to exit", timeout=10)


@pytest.mark.parametrize("view", ["1", "2", "3"])
async def test_q_quits_from_every_view(console, view: str) -> None:
    instance = console(WITH_SEQUENCER)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: instance.process("idle").pid, "the process to run")
        pid = instance.process("idle").pid
        await pilot.press(view, "q")
        await wait_for(pilot, lambda: not app.is_running, "the app to exit", timeout=10)
    assert instance.process("idle").pid is None and pid is not None
    assert instance.sequencer is not None and instance.sequencer.journal.closed


# -- Overview --------------------------------------------------------------------------------------


async def test_overview_shows_counts_rates_utilisation_and_drops(console, udp_sender) -> None:
    instance = console(WITH_SEQUENCER)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        assert "0 accepted of 0 received" in overview_text(app)
        bad_checksum = bytearray(encode_frame(b"tampered", node=1))
        bad_checksum[-1] ^= 0xFF
        send_events(
            instance,
            udp_sender,
            b"deploy started\n",
            b"deploy finished\n",
            encode_frame(b"framed", node=7, stream=3),
            b"\xa7LQ",  # a frame cut short: malformed
            bytes(bad_checksum),
        )
        await wait_for(
            pilot, lambda: "3 accepted of 5 received" in overview_text(app), "the new counts"
        )
        text = overview_text(app)
        sequencer = instance.sequencer
        assert sequencer is not None
        assert f"udp {sequencer.address} · {sequencer.backend}" in text
        assert "(2 text, 1 framed)" in text
        assert "malformed 1 · bad checksum 1 · oversize 0 · kernel 0" in text
        assert "3 events · first seq 0 · next seq 3" in text
        assert f"3 of {sequencer.journal.capacity:,} slots" in text
        assert "0 sender clocks ignored" in text
        assert str(sequencer.journal.path) in text
        assert "new journal" in text
        assert "receive buffer" in text
        assert "1 running of 1" in text
        # The sparkline covers two minutes, a bar a second, and shows the burst once it is counted.
        sparkline = app.query_one("#overview-sparkline")
        await wait_for(pilot, lambda: sum(sparkline.data) == 3, "the burst in the sparkline")
        assert len(sparkline.data) == 120


@contextlib.asynccontextmanager
async def on_the_overview(
    console, size: tuple[int, int] = SIZE
) -> AsyncIterator[tuple[Console, LacrimosaApp, Pilot]]:
    """A console with a sequencer, and its app showing the Overview, settled."""
    instance = console(WITH_SEQUENCER)
    app = LacrimosaApp(instance)
    async with app.run_test(size=size) as pilot:
        await pilot.press("2")
        await pilot.pause(0.2)
        yield instance, app, pilot


async def test_new_counts_on_the_overview_do_not_lay_the_screen_out_again(
    console, udp_sender
) -> None:
    async with on_the_overview(console) as (instance, app, pilot):
        layouts = record_layouts(app)
        for i in range(1, 9):  # a new count at each of several polls
            send_events(instance, udp_sender, b"tick")
            await wait_for(
                pilot, lambda i=i: f"{i} accepted of {i} received" in overview_text(app), "count"
            )
        await pilot.pause()
        # The counters are redrawn in place: no part of the Overview changed its height.
        assert len(layouts) <= 1, layouts


async def test_under_a_flood_the_overview_redraws_its_counters_at_most_four_times_a_second(
    console, udp_sender
) -> None:
    async with on_the_overview(console) as (instance, app, pilot):
        drawn = record_calls(app.query_one("#overview-ingest", TextLines), "update")
        # New counts at every 20 Hz poll for about a second and a half.
        await flood(pilot, instance, udp_sender, seconds=1.5, per_send=1, pause=0.02, wait=False)
        total = instance.sequencer.stats().accepted
        await wait_for(
            pilot, lambda: f"{total} accepted of {total}" in overview_text(app), "the last count"
        )
        gaps = [b - a for a, b in itertools.pairwise(drawn)]
        assert len(drawn) >= 3, drawn  # it kept counting...
        assert min(gaps) >= SEQUENCER_REFRESH_INTERVAL * 0.9, gaps  # ...not at every poll


async def test_the_overview_scrolls_with_the_keys_and_stays_scrolled(console) -> None:
    """The Overview's keys arrive at a widget of no height at its top (a focus change restyles
    that one widget, not every part of the view): the view still scrolls with them, and showing
    it again keeps where it was scrolled to."""
    # 80x10: too short for the whole Overview.
    async with on_the_overview(console, size=(80, 10)) as (_, app, pilot):
        view = app.query_one(OverviewView)
        assert app.focused is not None and app.focused.parent is view
        assert view.max_scroll_y > 0
        await pilot.press("end")
        await wait_for(pilot, lambda: view.scroll_y == view.max_scroll_y, "scrolled to the end")
        await pilot.press("3", "2")
        await pilot.pause(0.1)
        assert app.focused is not None and app.focused.parent is view
        assert view.scroll_y == view.max_scroll_y
        await pilot.press("home")
        await wait_for(pilot, lambda: view.scroll_y == 0, "scrolled back to the top")


async def test_at_60_columns_the_overview_cuts_long_lines_instead_of_wrapping(console) -> None:
    async with on_the_overview(console, size=(60, 24)) as (_, app, _pilot):
        cut = 0
        for part in app.query_one(OverviewView).query(TextLines):
            if not part.display:
                continue
            lines = part.plain.split("\n")
            width = part.size.width
            assert part.size.height == len(lines)  # a row per line
            for y, line in enumerate(lines):
                shown = part.render_line(y).text
                assert len(shown) == width
                if len(line) > width:
                    assert shown == line[: width - 1] + "…"
                    cut += 1
                else:
                    assert shown == line.ljust(width)
        assert cut  # the journal's path at least


def test_sparkline_bars_go_from_the_lowest_value_to_the_highest() -> None:
    assert bucket_peaks([1, 5, 2, 2, 9, 0], 3) == [5, 2, 9]  # the largest of each slice
    assert bucket_peaks([1, 2], 4) == [1, 1, 2, 2]  # fewer values than columns: stretched
    assert bucket_peaks([], 4) == []
    assert bar_eighths([0, 5, 10], 2) == [1, 9, 16]  # in eighths of a cell, of 2 rows
    assert bar_eighths([3, 3, 3], 2) == [1, 1, 1]


async def test_the_sparkline_draws_its_bars_in_eighths_coloured_by_height() -> None:
    class One(App[None]):
        CSS = "RateSparkline { height: 2; width: 12; }"

        def compose(self) -> ComposeResult:
            yield RateSparkline(range(12))

    app = One()
    async with app.run_test(size=(20, 4)) as pilot:
        sparkline = app.query_one(RateSparkline)
        top, bottom = (sparkline.render_line(y) for y in range(2))
        # 0..11 in 1..16 eighths: the lowest bar is an eighth, the highest fills both rows.
        assert bottom.text == "▁▂▄▅▆███████"
        assert top.text == "      ▁▃▄▅▇█"
        styles = [segment.style for segment in bottom]
        assert styles[0] is not None and styles[-1] is not None
        assert styles[0].color != styles[-1].color
        drawn = sparkline.render_lines(sparkline.size.region)
        sparkline.data = range(12)  # the same data: the same lines, kept
        again = sparkline.render_lines(sparkline.size.region)
        assert all(a is b for a, b in zip(drawn, again, strict=True))
        sparkline.data = [5] * 12
        assert sparkline.render_line(1).text == "▁" * 12
        sparkline.data = range(12)
        sparkline.styles.height = 3  # taller: the bars and their styles are made again
        await pilot.pause()
        rows = [sparkline.render_line(y).text for y in range(3)]
        assert [row[-1] for row in rows] == ["█"] * 3 and rows[2][0] == "▁" and rows[0][0] == " "


async def test_a_view_switch_lays_the_screen_out_once(console, udp_sender) -> None:
    instance = console(WITH_SEQUENCER)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        send_texts(instance, udp_sender, [f"event {i}" for i in range(100)])  # a scrollbar
        await show_events(pilot, app, 100)
        await pilot.press("2", "3")  # the first focus change restyles the scrollbar: a layout
        await pilot.pause(0.1)
        layouts = record_layouts(app)
        sent = 100
        for _ in range(3):
            await pilot.press("2")
            send_texts(instance, udp_sender, [f"event {sent + i}" for i in range(5)])
            sent += 5
            counted = f"{sent} accepted"
            await wait_for(pilot, lambda c=counted: c in overview_text(app), "counted")
            await pilot.press("3")
            await wait_for(pilot, lambda n=sent: len(event_list(app).rows) == n, "listed")
            await pilot.pause(0.1)
        # The list, longer while hidden, gets a resize when shown again; setting its virtual
        # size laid the screen out a second time.
        assert len(layouts) == 6, layouts
        assert payloads(app)[-1] == f"event {sent - 1}" and event_list(app).follow


async def test_overview_and_events_say_how_to_enable_the_sequencer(console) -> None:
    app = LacrimosaApp(console(WITHOUT_SEQUENCER))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        text = overview_text(app)
        assert "No event sequencer" in text
        assert '[sequencer]\n    udp = "127.0.0.1:9000"' in text
        assert "lacrimosa up --udp 127.0.0.1:9000" in text
        assert 'echo "deploy started" | nc -u -w1 127.0.0.1 9000' in text
        assert "1 running of 1" in text

        await pilot.press("3")
        assert "no sequencer" in events_status(app)
        assert app.query_one("#events-hint").display
        assert "nc -u -w1 127.0.0.1 9000" in static_text(app, "#events-hint")
        await pilot.press("enter", "g", "n", "f")  # nothing to act on; nothing breaks
        assert not app.query_one("#events-prompt").display


# -- Events --------------------------------------------------------------------------------------


async def test_events_are_listed_in_order_and_followed(console, udp_sender) -> None:
    instance = console(WITH_SEQUENCER)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        assert "no events yet · send one: echo" in rows(app)[0]
        send_texts(instance, udp_sender, [f"event {i}" for i in range(5)])
        send_events(instance, udp_sender, encode_frame(b"framed one", node=4, stream=9, flags=0x21))
        await wait_for(pilot, lambda: len(event_list(app).rows) == 6, "six events")
        await pilot.pause()
        assert payloads(app) == [f"event {i}" for i in range(5)] + ["framed one"]
        # seq, time (hh:mm:ss.mmm), node, stream, flags, size, payload.
        cells = [row.split() for row in rows(app)]
        assert [int(row[0]) for row in cells] == list(range(6))
        assert all(len(row[1]) == 12 and row[1][2] == row[1][5] == ":" for row in cells)
        assert cells[0][2:] == ["0", "0", "text", "7", "event", "0"]
        assert cells[5][2:] == ["4", "9", "021", "10", "framed", "one"]
        assert "follow: on" in events_status(app) and "6 held (seq 0-5)" in events_status(app)
        assert event_list(app).cursor == 5  # on the newest

        # Following: a screenful more, and the newest is at the bottom with the cursor on it.
        send_texts(instance, udp_sender, [f"more {i}" for i in range(40)])
        await wait_for(pilot, lambda: len(event_list(app).rows) == 46, "46 events")
        await pilot.pause()
        assert payloads(app)[-1] == "more 39" and event_list(app).cursor == 45

        # Up stops following: new events no longer move the screen or the cursor.
        await pilot.press("up")
        assert "follow: off" in events_status(app)
        before = rows(app)
        send_texts(instance, udp_sender, ["later"])
        await wait_for(pilot, lambda: len(event_list(app).rows) == 47, "47 events")
        await pilot.pause()
        assert rows(app) == before and event_list(app).cursor == 44

        # A click puts the cursor on a row.
        await pilot.click(EventList, offset=(10, 3))
        assert event_list(app).cursor == round(event_list(app).scroll_y) + 3

        # Home and page down move the cursor; `f` follows again.
        await pilot.press("home")
        assert payloads(app)[0] == "event 0" and event_list(app).cursor == 0
        await pilot.press("pagedown")
        assert event_list(app).cursor == event_list(app).size.height - 1
        await pilot.press("f")
        await pilot.pause()
        assert "follow: on" in events_status(app)
        assert payloads(app)[-1] == "later" and event_list(app).cursor == 46

        # The wheel stops following too, and arriving events leave the screen where it was.
        the_list = event_list(app)
        the_list.post_message(events.MouseScrollUp(the_list, 1, 1, 0, -1, 0, False, False, False))
        await wait_for(pilot, lambda: not the_list.follow, "the wheel to stop following")
        before = rows(app)
        send_texts(instance, udp_sender, ["after the wheel"])
        await wait_for(pilot, lambda: len(the_list.rows) == 48, "48 events")
        await pilot.pause()
        assert rows(app) == before


async def test_detail_panel_shows_every_field_and_binary_as_hex(console, udp_sender) -> None:
    instance = console(WITH_SEQUENCER)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        send_events(
            instance, udp_sender, b"plain words\n", encode_frame(BINARY, node=2, stream=5, flags=3)
        )
        await show_events(pilot, app, 2)
        # The binary payload's row shows hex.
        assert payloads(app)[1].startswith("00 ff 10 80 41 42 f0 f1")

        await pilot.press("enter")
        assert app.query_one("#event-detail").display
        text = detail_text(app)
        assert "seq      1  node 2  stream 5  kind framed  size 22" in text
        assert "lamport  " in text and "+ counter" in text
        assert "flags    0x0003 (sender 0x003)" in text
        assert "sender   clock 0 (the sender keeps none)" in text
        assert "valid    yes, the checksum matches" in text
        assert "payload  binary, 22 bytes" in text
        assert "0000  00 ff 10 80 41 42 f0 f1 f2 f3 f4 f5 f6 f7 f8 f9  |....AB..........|" in text
        assert "0010  fa fb fc fd fe ff" in text
        # The cursor row is still in view above the panel.
        the_list = event_list(app)
        assert 0 <= the_list.cursor - round(the_list.scroll_y) < the_list.size.height

        # The panel follows the cursor: up shows the text event.
        await pilot.press("up")
        text = detail_text(app)
        assert "seq      0  node 0  stream 0  kind text  size 11" in text
        assert "flags    0x8000 (sender 0x000, text)" in text
        assert "sender   no clock (plain text)" in text
        assert "payload  UTF-8 text, 11 bytes\nplain words" in text

        await pilot.press("enter")
        assert not app.query_one("#event-detail").display
        await pilot.press("enter", "escape")  # Escape closes it too
        assert not app.query_one("#event-detail").display


async def test_g_jumps_to_a_seq_and_out_of_range_says_what_is_held(console, udp_sender) -> None:
    instance = console(WITH_SEQUENCER)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        send_texts(instance, udp_sender, [f"event {i}" for i in range(100)])
        await show_events(pilot, app, 100)
        await pilot.press("g")
        prompt = app.query_one("#events-prompt")
        assert app.focused is prompt and "(0-99)" in prompt.placeholder
        await pilot.press("4", "2", "enter")
        assert app.focused is event_list(app)
        assert event_list(app).cursor == 42 and "follow: off" in events_status(app)
        assert "event 42" in payloads(app)
        cursor_row = event_list(app).cursor - round(event_list(app).scroll_y)
        assert rows(app)[cursor_row].startswith("  42 ")

        await pilot.press("g", "5", "0", "0", "enter")
        await wait_for(
            pilot,
            lambda: any(
                "seq 500 is not held; the journal holds 0-99" in m for m in notifications(app)
            ),
            "the out-of-range notification",
        )
        assert event_list(app).cursor == 42

        await pilot.press("g", "x", "enter")
        await wait_for(
            pilot, lambda: any("not a seq: 'x'" in m for m in notifications(app)), "an error"
        )
        await pilot.press("g", "7", "escape")  # Escape cancels the prompt
        assert not prompt.display and event_list(app).cursor == 42


async def test_node_and_stream_filters_and_escape_clears_them(console, udp_sender) -> None:
    instance = console(WITH_SEQUENCER)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        datagrams = [
            encode_frame(f"n{node} s{stream} #{i}".encode(), node=node, stream=stream)
            for i in range(3)
            for node in (1, 2)
            for stream in (10, 20)
        ]
        send_events(instance, udp_sender, *datagrams)
        send_events(instance, udp_sender, b"text is node 0\n")
        await show_events(pilot, app, 13)

        await pilot.press("n", "2", "enter")
        await wait_for(
            pilot,
            lambda: event_list(app).is_current and len(event_list(app).rows) == 6,
            "node 2's events",
        )
        await pilot.pause()
        assert payloads(app) == [f"n2 s{s} #{i}" for i in range(3) for s in (10, 20)]
        assert "filter: node 2 6 matches" in events_status(app)

        await pilot.press("t", "2", "0", "enter")
        await wait_for(pilot, lambda: len(event_list(app).rows) == 3, "node 2 on stream 20")
        await pilot.pause()
        assert payloads(app) == [f"n2 s20 #{i}" for i in range(3)]
        assert "filter: node 2 · stream 20 3 matches" in events_status(app)

        # New events that match arrive in the filtered list; others do not.
        send_events(instance, udp_sender, encode_frame(b"late match", node=2, stream=20))
        send_events(instance, udp_sender, encode_frame(b"late other", node=1, stream=20))
        await wait_for(pilot, lambda: len(event_list(app).rows) == 4, "the late match")
        await pilot.pause()
        assert payloads(app)[-1] == "late match"

        # `n` with an empty answer clears the node filter only.
        await pilot.press("n")
        assert app.query_one("#events-prompt").value == "2"
        await pilot.press("backspace", "enter")
        await wait_for(pilot, lambda: len(event_list(app).rows) == 8, "stream 20 of any node")
        assert "filter: stream 20" in events_status(app)

        await pilot.press("n", "x", "enter")
        await wait_for(
            pilot,
            lambda: any("node: expected a number" in m for m in notifications(app)),
            "an error for a bad node",
        )
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(event_list(app).rows) == 15, "every event again")
        assert "filter" not in events_status(app)


async def test_a_lapped_reader_moves_to_the_oldest_held_event(console, udp_sender) -> None:
    instance = console(SMALL_JOURNAL)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        send_texts(instance, udp_sender, [f"first {i}" for i in range(40)])
        await show_events(pilot, app, 40)
        await pilot.press("home")
        assert payloads(app)[0] == "first 0"
        # 100 more: the ring of 64 keeps seqs 76..139; what was on screen is gone.
        send_texts(instance, udp_sender, [f"second {i}" for i in range(100)])
        await wait_for(pilot, lambda: event_list(app).rows.tail == 76, "the ring to lap")
        await pilot.pause()
        assert payloads(app)[0] == "second 36"  # seq 76, the oldest held
        assert rows(app)[0].startswith("  76 ")
        assert event_list(app).cursor == 0
        assert "lapped: 76 overwritten" in events_status(app)
        assert any("76 events were overwritten" in m for m in notifications(app))
        await pilot.press("down")
        assert "lapped" not in events_status(app)


async def test_a_flood_refreshes_the_list_at_most_ten_times_a_second(console, udp_sender) -> None:
    instance = console(SMALL_JOURNAL)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        the_list = event_list(app)
        # The ring full, as in a long flood: new events replace old ones, the list's length stays.
        send_texts(instance, udp_sender, [f"before {i}" for i in range(64)])
        await wait_for(pilot, lambda: payloads(app)[-1:] == ["before 63"], "a full ring listed")
        await pilot.pause(0.2)
        installed = record_installs(the_list)
        layouts = record_layouts(app)
        # Events arrive at every 20 Hz poll for about a second.
        await flood(pilot, instance, udp_sender, seconds=1.0, per_send=1, pause=0.02)
        await pilot.pause()
        gaps = [b - a for a, b in itertools.pairwise(installed)]
        assert len(installed) >= 3, installed  # it did refresh during the flood...
        assert min(gaps) >= NEW_ROWS_INTERVAL * 0.9, gaps  # ...but not at every poll
        # Rows, status line and header are redrawn in place: no layout of the screen.
        assert len(layouts) <= 1, layouts
        # A key is not held back: `up` moves the cursor in the frame that follows.
        await pilot.press("up")
        assert the_list.cursor == 62 and "follow: off" in events_status(app)


async def test_a_flood_growing_the_list_is_shown_less_often_and_never_lays_the_screen_out(
    console, udp_sender
) -> None:
    instance = console(WITH_SEQUENCER)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        the_list = event_list(app)
        send_texts(instance, udp_sender, [f"before {i}" for i in range(100)])  # past a screenful
        await wait_for(pilot, lambda: payloads(app)[-1:] == ["before 99"], "the events listed")
        await pilot.pause(0.2)
        installed = record_installs(the_list)
        layouts = record_layouts(app)
        # More than a screenful at every 20 Hz poll for about 1.5 s: the list grows each time.
        sent = await flood(pilot, instance, udp_sender, seconds=1.5, per_send=SIZE[1] + 10)
        gaps = [b - a for a, b in itertools.pairwise(installed)]
        assert len(installed) >= 3, installed  # it did refresh during the flood...
        # ...every FLOOD_ROWS_INTERVAL, well apart from the NEW_ROWS_INTERVAL of a trickle.
        assert min(gaps[:-1]) >= max(FLOOD_ROWS_INTERVAL * 0.9, NEW_ROWS_INTERVAL * 1.5), gaps
        assert len(the_list.rows) >= 100 + sent - 1
        # The list grew at every refresh, its scrollbar stayed: no layout of the screen.
        assert len(layouts) <= 1, layouts


async def test_the_cursor_rows_style_follows_the_focus(console, udp_sender) -> None:
    # The list computes its row styles once and keeps them until its styles change.
    instance = console(WITH_SEQUENCER)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        send_events(instance, udp_sender, b"one\n", b"two\n")
        the_list = event_list(app)
        await wait_for(pilot, lambda: len(the_list.rows) == 2, "two events listed")
        await pilot.pause()
        focused = the_list._styles()[1]
        assert focused == the_list.get_component_rich_style(CURSOR_COMPONENT)
        cursor_y = the_list.cursor - round(the_list.scroll_y)
        other_y = 1 - cursor_y  # the other of the two rows
        other_row = the_list.render_line(other_y)
        await pilot.press("g")  # the prompt takes the focus
        await pilot.pause()
        assert app.focused is not the_list
        assert the_list._styles()[1] == the_list.get_component_rich_style(CURSOR_COMPONENT)
        assert the_list._styles()[1] != focused
        # The cursor row is drawn again in its new style; the other row's strip is kept.
        blurred = the_list._styles()[1].bgcolor
        assert {segment.style.bgcolor for segment in the_list.render_line(cursor_y)} == {blurred}
        assert the_list.render_line(other_y) is other_row


async def test_a_million_events_render_only_the_visible_window(console, monkeypatch) -> None:
    instance = console(WITH_SEQUENCER, start=False)
    journal = writable_journal(instance)
    total = 1 << 20
    # Written straight into the journal before the console starts, as the sequencer's ingest
    # process would: node = i % 4, stream = i % 3.
    records = np.zeros((total, 8), np.uint8)
    records[:, :8] = np.frombuffer(b"event   ", np.uint8)
    fields = np.zeros(total, EVENT_DTYPE)
    fields["lamport"] = journal.last_lamport + 1 + np.arange(total, dtype=np.uint64)
    fields["node"] = np.arange(total) % 4
    fields["stream"] = np.arange(total) % 3
    fields["flags"] = TEXT
    crc = zlib.crc32(b"event   ")
    journal.append(
        records,
        np.zeros(total, np.int64),
        np.full(total, 8, np.int64),
        fields,
        np.full(total, crc, np.uint32),
    )
    assert journal.bounds() == (0, total)
    journal.close()
    instance.start()
    sequencer = instance.sequencer
    assert sequencer is not None
    journal = sequencer.journal
    assert journal.bounds() == (0, total)

    fetched: list[int] = []
    unspied = Journal.read_events

    def spied(self: Journal, seqs):
        fetched.append(len(seqs))
        return unspied(self, seqs)

    monkeypatch.setattr(Journal, "read_events", spied)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        await show_events(pilot, app, total)
        the_list = event_list(app)
        assert rows(app)[-1].split()[0] == str(total - 1)
        await pilot.press("home")
        assert rows(app)[0].split()[0] == "0"
        await pilot.press("g", *str(500_000), "enter")
        assert the_list.cursor == 500_000
        # Frames read the screen and a page either side, never the whole journal.
        assert fetched and max(fetched) <= 3 * the_list.size.height

        # A filter over a million events is built off the app's thread, then kept up to date.
        await pilot.press("n", "3", "enter")
        await wait_for(
            pilot,
            lambda: the_list.is_current and len(the_list.rows) == total // 4,
            "node 3's events",
            timeout=20,
        )
        await pilot.pause()
        assert {row.split()[2] for row in rows(app)} == {"3"}
        cursor_event = the_list.cursor_event()
        assert cursor_event is not None and cursor_event.node == 3
        assert cursor_event.seq >= 500_000  # the first match at or after the old cursor


# -- formatting (no app) ---------------------------------------------------------------------------


def test_rows_show_controls_as_symbols_and_cut_to_the_width() -> None:
    event = Event(
        seq=7,
        lamport=1 << 16,
        node=1,
        stream=2,
        flags=TEXT,
        payload=b"a\x1b[31mred\x00\tb\nc" + b"x" * 200,
        sender_clock=None,
        valid=False,
    )
    row = event_row(event, RowFormat(width=60, seq_width=3))
    assert row.cell_len == 60
    assert row.plain.startswith("✗  7 ")
    assert "a␛[31mred␀ b␊c" in row.plain
    assert not any(ord(ch) < 0x20 for ch in row.plain)
    assert "NO: checksum mismatch" in describe_event(event, 77).plain
    assert payload_preview(b"").plain == "(empty)"
    assert payload_preview(b"\xff\x00").plain == "ff 00"


def test_the_detail_of_an_event_whose_sender_clock_is_past_the_calendar_is_shown() -> None:
    # A sender's clock is any 64-bit value (all ones, say, for "unknown"): it was followed by no
    # one (too far ahead), and it must not take the detail panel (and the app) down.
    event = Event(
        seq=3,
        lamport=1 << 16,
        node=1,
        stream=0,
        flags=0,
        payload=b"x",
        sender_clock=(1 << 64) - 1,
        valid=True,
    )
    detail = describe_event(event, 77).plain
    assert f"clock {(1 << 64) - 1} = (beyond the year 9999)" in detail


def test_hex_dump_lines() -> None:
    dump = hex_dump(bytes(range(20)), 77).plain.splitlines()
    assert dump == [
        "0000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  |................|",
        "0010  10 11 12 13                                      |....|",
    ]
    assert (
        hex_dump(b"ABCDEFGHIJ", 40).plain.splitlines()[0]
        == "0000  41 42 43 44 45 46 47 48  |ABCDEFGH|"
    )


def test_parse_number() -> None:
    assert [parse_number(t) for t in ("42", "1,234", "0x2a", "010", " 7 ", "x", "")] == [
        42,
        1234,
        42,
        10,
        7,
        None,
        None,
    ]


def test_filtered_rows_grow_incrementally_like_a_fresh_select(tmp_path) -> None:
    journal = Journal(tmp_path / "j", capacity=64, blob_size=1 << 20)
    try:
        lamport = 1
        rows = None
        wanted = EventFilter(node=1)
        for batch in range(6):
            for node in (0, 1):
                journal.append_records(
                    [f"b{batch} n{node}".encode()] * 7, range(lamport, lamport + 7), node=node
                )
                lamport += 7
            rows = build_rows(journal, wanted, rows)
            assert rows.seqs is not None
            assert rows.seqs.tolist() == journal.select(node=1).tolist()
        assert rows is not None and rows.tail == journal.tail > 0  # the ring lapped meanwhile
    finally:
        journal.close()


# -- snapshot ------------------------------------------------------------------------------------

# 2026-01-01 00:00:00 UTC in milliseconds, as the high 48 bits of a lamport timestamp.
BASE_LAMPORT = 1_767_225_600_000 << 16


@pytest.fixture
def utc() -> Iterator[None]:
    """Local time is UTC for the test, so that times on screen do not depend on the machine."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "UTC")
        time.tzset()
        yield
    time.tzset()


def writable_journal(console: Console) -> Journal:
    """The journal of a console not started yet, opened for writing (close it before start)."""
    settings = console.config.sequencer
    path = settings.journal or console.home / JOURNAL_NAME
    return Journal(path, settings.capacity, settings.blob_size)


def fill_fixed_events(console: Console) -> None:
    """Events with fixed lamports, written straight into the journal of a console that is then
    started (its ingest process is the journal's only writer once it runs). The third event's
    record is then damaged, as a torn write would leave it: its checksum no longer matches.
    """
    journal = writable_journal(console)
    lamport = BASE_LAMPORT + (1_234 << 16)  # 00:00:01.234
    texts = [b"deploy started", b"migrations: 3 applied", b"cache warmed\tin 41ms"]
    journal.append_records(texts, [lamport + i for i in range(3)], flags=TEXT)
    framed = [
        (RECORD_HEADER.pack(0, 2, 1, 0x001) + b"p99 latency above 250ms", 2, 1, 0x001),
        (RECORD_HEADER.pack(lamport + 7, 3, 4, 0x00A) + BINARY, 3, 4, 0x00A),
    ]
    for i, (record, node, stream, flags) in enumerate(framed):
        later = lamport + ((500 + 250 * i) << 16)
        journal.append_records([record], [later], node=node, stream=stream, flags=flags)
    damaged = journal.slots[2]
    journal.blob[int(damaged["payload_offset"])] ^= 0x20
    assert journal.bounds() == (0, 5)
    journal.close()
    console.start()
    assert console.sequencer is not None and console.sequencer.journal.bounds() == (0, 5)


def test_snapshot_of_the_events_view_with_a_binary_event_in_detail(
    console, snap_compare, utc
) -> None:
    """Key 3, then Enter on the newest event (binary): the list above, the detail panel below."""
    instance = console(
        WITH_SEQUENCER.replace('cmd = "sleep 60"', 'cmd = "true"\nautostart = false'),
        start=False,
    )
    fill_fixed_events(instance)
    app = LacrimosaApp(instance)

    async def run_before(pilot: Pilot) -> None:
        await show_events(pilot, app, 5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: "seq      4" in detail_text(app), "the detail panel")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
