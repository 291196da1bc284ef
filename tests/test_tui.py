"""The TUI, driven as a user drives it: the real app under Pilot at 80x24, on a real Console with
real child processes (the ``console`` fixture of conftest.py shuts every console down).

What is on screen is read from the log pane's rendered strips (``render_line``), the process
table's cells and the status line, so the tests check what a user would see.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import pid_alive, wait_for
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.color import Color
from rich.text import Text
from textual import events
from textual.pilot import Pilot
from textual.strip import Strip

from lacrimosa.engine.console import Console
from lacrimosa.engine.logs.query import LogView
from lacrimosa.engine.logs.store import STDOUT, LogStore
from lacrimosa.engine.processes.supervisor import State
from lacrimosa.tui import LacrimosaApp, palette
from lacrimosa.tui.line_render import (
    CONTINUED_MARKER,
    CROPPED_MARKER,
    LineFormat,
    decode_for_terminal,
    format_log_line,
)
from lacrimosa.tui.log_pane import LogPane
from lacrimosa.tui.process_table import ProcessTable, format_count
from lacrimosa.tui.text_lines import TextLines

SIZE = (80, 24)
PYTHON = sys.executable

# api: one stdout and one stderr line; worker: numbered lines; broken: fails at once.
THREE_PROCESSES = """
    [processes.api]
    cmd = "echo api ready; echo 'api warning on stderr' >&2; exec sleep 60"
    stop_timeout = 2

    [processes.worker]
    cmd = "for i in 1 2 3; do echo worker line $i; done; echo other thing; exec sleep 60"
    stop_timeout = 2

    [processes.broken]
    cmd = "echo broken starting; exit 3"
    restart = "never"
"""


# -- helpers -------------------------------------------------------------------------------------


def pane_of(app: LacrimosaApp) -> LogPane:
    return app.query_one(LogPane)


def table_of(app: LacrimosaApp) -> ProcessTable:
    return app.query_one(ProcessTable)


def rendered_strips(app: LacrimosaApp) -> list[Strip]:
    pane = pane_of(app)
    return [pane.render_line(y) for y in range(pane.size.height)]


def rendered_rows(app: LacrimosaApp) -> list[str]:
    """The text of each row of the log pane, as drawn, trailing blanks removed."""
    return [strip.text.rstrip() for strip in rendered_strips(app)]


def shown(app: LacrimosaApp, needle: str) -> bool:
    return any(needle in row for row in rendered_rows(app))


def status(app: LacrimosaApp) -> str:
    return str(app.query_one("#status").content)


def cell(app: LacrimosaApp, process: str, column: str) -> str:
    value = table_of(app).get_cell(process, column)
    return value.plain if isinstance(value, Text) else str(value)


async def select(pilot: Pilot, app: LacrimosaApp, name: str) -> None:
    """Move the table cursor to ``name`` with the down key, as a user would."""
    table = table_of(app)
    table.focus()
    await pilot.pause()
    target = table.get_row_index(name)
    while table.cursor_row != target:
        await pilot.press("down")
    await wait_for(pilot, lambda: pane_of(app).is_current, f"the view of {name}")


# -- the process table -------------------------------------------------------------------------


async def test_table_lists_processes_with_state(console) -> None:
    instance = console(THREE_PROCESSES)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        table = table_of(app)
        await wait_for(
            pilot, lambda: cell(app, "broken", "state") == State.FAILED, "broken to fail"
        )
        assert [row.key.value for row in table.ordered_rows] == ["*", "api", "worker", "broken"]
        assert cell(app, "*", "name") == "* all"
        assert cell(app, "api", "state") == State.RUNNING
        assert cell(app, "api", "pid") == str(instance.process("api").pid)
        assert cell(app, "broken", "exit") == "3"
        # States are coloured: failed in the error colour, running in the good one.
        assert palette.ERROR in str(table.get_cell("broken", "state").style)
        assert palette.GOOD in str(table.get_cell("api", "state").style)
        assert cell(app, "broken", "pid") == ""
        await wait_for(pilot, lambda: cell(app, "api", "err") == "1", "api's stderr count")
        # The table is as tall as its rows (header + all + 3), the log gets the rest.
        assert table.size.height == 5
        assert pane_of(app).size.height >= 14


def test_compact_counts() -> None:
    assert [format_count(n) for n in (0, 7, 0.5, 999, 1234, 12345, 2_000_000)] == [
        "0",
        "7",
        "0.5",
        "999",
        "1.2k",
        "12k",
        "2.0M",
    ]


# -- the log view --------------------------------------------------------------------------------


async def test_selected_process_shows_its_lines_and_stderr_stands_out(console) -> None:
    app = LacrimosaApp(console(THREE_PROCESSES))
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, "api")
        await wait_for(pilot, lambda: shown(app, "api warning on stderr"), "api's lines")
        rows = rendered_rows(app)
        assert rows[:2] == ["  api ready", "▌ api warning on stderr"]
        assert not shown(app, "worker line")
        assert status(app).startswith(" api ")

        # The stderr row starts with a red marker; the stdout row has none.
        strips = rendered_strips(app)
        stdout_first, stderr_first = next(iter(strips[0])), next(iter(strips[1]))
        assert stderr_first.text.startswith("▌")
        assert stderr_first.style.color == Color.parse(palette.ERROR)
        assert stdout_first.text.startswith("  ")
        assert stdout_first.style.color != Color.parse(palette.ERROR)


async def test_merged_view_shows_lines_of_every_process_with_names(console) -> None:
    app = LacrimosaApp(console(THREE_PROCESSES))
    async with app.run_test(size=SIZE) as pilot:
        assert table_of(app).selected_process is None  # starts on "* all"
        await wait_for(
            pilot,
            lambda: (
                shown(app, "exited with code 3")
                and shown(app, "worker line 3")
                and shown(app, "api ready")
            ),
            "lines of every process",
        )
        rows = rendered_rows(app)
        assert "  api    api ready" in rows
        assert "  worker worker line 1" in rows
        assert "• broken exited with code 3" in rows  # a system line, written by lacrimosa
        assert status(app).startswith(" all processes ")

        # `a` comes back to the merged view from a single process.
        await select(pilot, app, "worker")
        assert not shown(app, "api ready")
        await pilot.press("a")
        await wait_for(pilot, lambda: shown(app, "api ready"), "the merged view again")
        assert table_of(app).selected_process is None


async def test_live_filter_narrows_with_smart_case_and_escape_restores(console) -> None:
    app = LacrimosaApp(console(THREE_PROCESSES))
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, "worker")
        await wait_for(pilot, lambda: shown(app, "other thing"), "worker's lines")
        await pilot.press("slash")
        assert app.focused is app.query_one("#filter")

        await pilot.press("l", "i", "n", "e", "space", "2")
        await wait_for(pilot, lambda: "1 matches" in status(app), "one match")
        assert [row for row in rendered_rows(app) if row] == ["  worker line 2"]
        assert "filter: line 2" in status(app)

        # Smart case: an uppercase letter makes the match exact-case.
        for _ in range(6):
            await pilot.press("backspace")
        await pilot.press("L", "i", "n", "e")
        await wait_for(pilot, lambda: "0 matches" in status(app), "no exact-case match")
        await pilot.press("backspace", "backspace", "backspace", "backspace", "l", "i", "n", "e")
        await wait_for(pilot, lambda: "3 matches" in status(app), "three case-free matches")

        await pilot.press("enter")  # back to the process table, filter kept
        assert app.focused is table_of(app)
        assert "3 matches" in status(app)

        await pilot.press("escape")  # clears the filter
        await wait_for(pilot, lambda: shown(app, "other thing"), "the unfiltered view")
        assert "filter" not in status(app)
        assert not app.query_one("#filter").display


async def test_stream_toggle_cycles_all_stdout_stderr(console) -> None:
    app = LacrimosaApp(console(THREE_PROCESSES))
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, "api")
        await wait_for(pilot, lambda: shown(app, "api warning"), "api's lines")

        await pilot.press("e")
        await wait_for(pilot, lambda: not shown(app, "api warning"), "stdout only")
        assert shown(app, "api ready") and "stream: stdout" in status(app)

        await pilot.press("e")
        await wait_for(pilot, lambda: not shown(app, "api ready"), "stderr only")
        assert shown(app, "api warning") and "stream: stderr" in status(app)

        await pilot.press("e")
        await wait_for(
            pilot,
            lambda: shown(app, "api ready") and shown(app, "api warning"),
            "both streams again",
        )
        assert "stream: all" in status(app)


# -- process control -----------------------------------------------------------------------------


async def test_restart_stop_and_start_keys(console) -> None:
    instance = console(THREE_PROCESSES)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, "api")
        first_pid = instance.process("api").pid
        assert first_pid is not None

        def restarted() -> bool:
            api = instance.process("api")
            return api.restarts == 1 and api.state == State.RUNNING

        await pilot.press("r")
        await wait_for(pilot, restarted, "the restart")
        second_pid = instance.process("api").pid
        assert second_pid not in (None, first_pid)
        assert not pid_alive(first_pid)
        await wait_for(
            pilot,
            lambda: (
                cell(app, "api", "restarts") == "1" and cell(app, "api", "pid") == str(second_pid)
            ),
            "the table to show it",
        )

        await pilot.press("x")
        await wait_for(pilot, lambda: cell(app, "api", "state") == State.STOPPED, "the stop")
        assert instance.process("api").pid is None and not pid_alive(second_pid)
        assert cell(app, "api", "exit") == "SIGTERM"

        await pilot.press("s")
        await wait_for(pilot, lambda: cell(app, "api", "state") == State.RUNNING, "the start")
        assert instance.process("api").pid not in (None, first_pid, second_pid)
        # The table was refreshed many times meanwhile; the selection stayed put.
        assert table_of(app).selected_process == "api"
        assert any("api: stopped" in n.message for n in app._notifications)


async def test_control_keys_on_the_all_row_only_warn(console) -> None:
    instance = console(THREE_PROCESSES)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: instance.process("broken").state == State.FAILED, "a fail")
        before = {i.name: (i.state, i.pid) for i in instance.processes()}
        await pilot.press("x")
        await wait_for(
            pilot, lambda: any(n.severity == "warning" for n in app._notifications), "a warning"
        )
        await pilot.pause(0.2)
        assert {i.name: (i.state, i.pid) for i in instance.processes()} == before


# -- follow mode ---------------------------------------------------------------------------------

# Lines are appended to the store by the test, in bursts, the way the supervisor appends what it
# reads: a steady stream from a child would keep the app busy, and Pilot waits for an idle app
# after every key press.
FED = """
    [processes.fed]
    cmd = "true"
    autostart = false
"""


def feed(console: Console, first: int, count: int) -> None:
    lines = "".join(f"count {i}\n" for i in range(first, first + count))
    console.store.append("fed", STDOUT, lines.encode())


async def test_follow_stays_at_the_bottom_and_stops_when_scrolling_up(console) -> None:
    instance = console(FED)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        pane = pane_of(app)
        await select(pilot, app, "fed")
        feed(instance, 1, 100)
        await wait_for(pilot, lambda: pane.line_count == 100, "the first lines")
        assert pane.follow and pane.is_vertical_scroll_end
        assert rendered_rows(app)[-1] == "  count 100"
        feed(instance, 101, 20)
        await wait_for(pilot, lambda: pane.line_count == 120, "more lines")
        assert pane.is_vertical_scroll_end
        assert rendered_rows(app)[-1] == "  count 120"

        await pilot.press("pageup")  # from the table: pages the log
        assert not pane.follow
        assert "follow: off" in status(app)
        position, top_row = pane.scroll_y, rendered_rows(app)[0]
        feed(instance, 121, 20)
        await wait_for(pilot, lambda: pane.line_count == 140, "lines while not following")
        assert pane.scroll_y == position and rendered_rows(app)[0] == top_row

        await pilot.press("f")
        assert pane.follow and pane.is_vertical_scroll_end
        assert rendered_rows(app)[-1] == "  count 140"

        # In the log, shift+up scrolls a line and stops following (up selects a process), and
        # End resumes it.
        pane.focus()
        await pilot.press("shift+up")
        assert not pane.follow
        assert table_of(app).selected_process == "fed"
        await pilot.press("end")
        assert pane.follow and pane.is_vertical_scroll_end
        assert "follow: on" in status(app)

        # So does the mouse wheel.
        pane.post_message(events.MouseScrollUp(pane, 1, 1, 0, -1, 0, False, False, False))
        await wait_for(pilot, lambda: not pane.follow, "the wheel to stop following")
        assert not pane.is_vertical_scroll_end


async def test_the_screen_keeps_its_place_while_old_lines_are_evicted(console) -> None:
    instance = console(FED + '\n[logs]\nbudget = "8MiB"\n')
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        pane = pane_of(app)
        await select(pilot, app, "fed")
        for first in range(0, 400_000, 50_000):  # near the 8 MiB budget: 13 B lines + 4 B each
            feed(instance, first, 50_000)
        await wait_for(pilot, lambda: pane.line_count > 300_000, "a store near its budget")
        await pilot.press("pageup")
        assert not pane.follow
        top_row = rendered_rows(app)[0]
        evicted = instance.store.stats()["evicted_blocks"]
        first = 400_000
        while instance.store.stats()["evicted_blocks"] == evicted and first < 2_000_000:
            feed(instance, first, 50_000)
            first += 50_000
        await wait_for(
            pilot, lambda: instance.store.stats()["evicted_blocks"] > evicted, "an eviction"
        )
        await wait_for(pilot, lambda: pane.is_current, "the view to catch up")
        await pilot.pause()
        assert rendered_rows(app)[0] == top_row  # the lines above it went; it stayed put


# -- quitting ------------------------------------------------------------------------------------

STUBBORN = (
    THREE_PROCESSES
    + """
    [processes.stubborn]
    cmd = "trap '' TERM; echo stubborn; while true; do sleep 0.1; done"
    stop_timeout = 0.5
"""
)


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
async def test_quit_stops_every_process_then_exits(console, key: str) -> None:
    instance = console(STUBBORN)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(
            pilot,
            lambda: all(i.pid for i in instance.processes() if i.name != "broken"),
            "every process to run",
        )
        # "broken" crash-loops, so it may or may not have a pid at this moment.
        pids = [i.pid for i in instance.processes() if i.pid and i.name != "broken"]
        if key == "ctrl+c":
            await pilot.press("slash")  # ctrl+c quits even while typing a filter
        await pilot.press(key)
        # The stubborn process holds the shutdown for its stop timeout: long enough to see this.
        assert "stopping processes…" in status(app)
        await wait_for(pilot, lambda: not app.is_running, "the app to exit", timeout=10)
    assert len(pids) == 3
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_remote_shutdown_request_exits_the_same_way(console) -> None:
    instance = console(THREE_PROCESSES)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: instance.process("api").pid, "api to run")
        pid = instance.process("api").pid
        instance.request_shutdown()  # what `lacrimosa shutdown` does
        await wait_for(pilot, lambda: not app.is_running, "the app to exit", timeout=10)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- hostile output ------------------------------------------------------------------------------

HOSTILE_SCRIPT = r"""
import sys
out = sys.stdout.buffer
out.write(b"bad \xff\xfe utf8\n")
out.write(b"\x1b[31mred\x1b[0m plain\n")
out.write(b"progress 10%\rprogress 100%\n")
out.write(b"nul\x00here\ttab\n")
out.write(b"\x07bell \x1b]0;window title\x07after osc \x1b[2Kcleared \x1b lone escape\n")
out.write(b"crlf line\r\n")
out.write(b"\xe2\x80\xa8sep \xc2\x85 c1 \x7f del \x0c ff\n")
out.write(b"wide \xe4\xb8\xad\xe6\x96\x87 text\n")
out.write(b"L" * 200_000 + b"\n")
out.write(b"end of hostile\n")
out.flush()
"""


async def test_hostile_bytes_render_safely(console, tmp_path: Path) -> None:
    (tmp_path / "hostile.py").write_text(HOSTILE_SCRIPT)
    app = LacrimosaApp(
        console(f"""
        [processes.hostile]
        cmd = "{PYTHON} hostile.py; exec sleep 60"
    """)
    )
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, "hostile")
        await wait_for(pilot, lambda: shown(app, "end of hostile"), "the hostile output")
        await pilot.press("home")  # the long line's pieces push the start off screen
        rows = rendered_rows(app)
        width = pane_of(app).size.width
        assert rows[:8] == [
            "  bad \ufffd\ufffd utf8",
            "  red plain",
            "  progress 100%",
            "  nul␀here        tab",
            # Shown, inert: the title sequence and the line clear are text, not removed.
            "  ␇bell ␛]0;window title␇after osc ␛[2Kcleared ␛ lone escape",
            "  crlf line",
            "  ↵sep \\x85 c1 ␡ del ␌ ff",
            "  wide 中文 text",
        ]
        # 200 000 bytes with a 64 KiB line cap: four pieces, each marked as continuing but the last.
        long_rows = [row for row in rows if row.startswith("  LLL")]
        assert len(long_rows) == 4
        assert all(row.endswith(CONTINUED_MARKER) for row in long_rows[:3])
        assert long_rows[3].endswith(CROPPED_MARKER)
        for strip in rendered_strips(app):
            assert strip.cell_length == width
            assert not any(ch in strip.text for ch in "\x00\x1b\r\n\t\x07")

        # The red ANSI span is kept as colour, not as text.
        red_row = rendered_strips(app)[1]
        assert any(seg.text == "red" and seg.style.color.number == 1 for seg in red_row)


OSC8_SCRIPT = r"""
import sys
out = sys.stdout.buffer
out.write(b"see \x1b]8;;https://evil.example/\x1b\\docs.example.org\x1b]8;;\x1b\\ for help\n")
out.write(b"bel \x1b]8;;https://evil.example/\x07click\x1b]8;;\x07 \x1b[32mgreen\x1b[0m\n")
out.write(b"c1 \xc2\x9d8;;https://evil.example/\xc2\x9c c1link \xc2\x9b2J end of osc8\n")
out.flush()
"""


async def test_a_child_cannot_make_links_or_escapes_on_screen(console, tmp_path: Path) -> None:
    """OSC 8 (with either terminator, or as 8-bit C1) is shown as inert text, never as a link:
    a link's shown text can hide where it goes. Colours still work."""
    (tmp_path / "osc8.py").write_text(OSC8_SCRIPT)
    app = LacrimosaApp(
        console(f"""
        [processes.links]
        cmd = "{PYTHON} osc8.py; exec sleep 60"
    """)
    )
    async with app.run_test(size=(120, 24)) as pilot:
        await select(pilot, app, "links")
        await wait_for(pilot, lambda: shown(app, "end of osc8"), "the OSC 8 output")
        rows = rendered_rows(app)
        assert rows[:3] == [
            "  see ␛]8;;https://evil.example/␛\\docs.example.org␛]8;;␛\\ for help",
            "  bel ␛]8;;https://evil.example/␇click␛]8;;␇ green",
            "  c1 \\x9d8;;https://evil.example/\\x9c c1link \\x9b2J end of osc8",
        ]
        for strip in rendered_strips(app):
            for segment in strip:
                assert segment.style is None or not segment.style.link, segment
                assert not any(ch in segment.text for ch in "\x1b\x07\x9b\x9c\x9d")
        green_row = rendered_strips(app)[1]
        assert any(seg.text == "green" and seg.style.color.number == 2 for seg in green_row)


def _stored_line(data: bytes):
    store = LogStore(8 << 20, 1 << 10)
    store.append("p", STDOUT, data, flush=True)
    return LogView(store.snapshot()).lines(0, 1)[0]


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=300),
    width=st.integers(min_value=1, max_value=120),
    name_width=st.sampled_from([0, 8]),
)
def test_any_bytes_become_one_safe_row(data: bytes, width: int, name_width: int) -> None:
    line = _stored_line(data.replace(b"\n", b" ") or b" ")
    row = format_log_line(line, LineFormat(width=width, name_width=name_width))
    assert row.cell_len <= width
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in row.plain)


def test_carriage_returns_keep_what_a_terminal_shows() -> None:
    assert decode_for_terminal(b"a\rb\rlast", 100)[0].plain == "last"
    assert decode_for_terminal(b"windows\r\r", 100)[0].plain == "windows"
    text, truncated = decode_for_terminal(b"x" * 500, 100)
    assert truncated and len(text.plain) == 100


# -- scale ---------------------------------------------------------------------------------------


async def test_two_million_lines_render_and_scroll_to_the_end(console, monkeypatch) -> None:
    instance = console("""
        [processes.bulk]
        cmd = "true"
        autostart = false
    """)
    total = 2_000_000
    data = "".join(f"line {i}\n" for i in range(total)).encode()
    for start in range(0, len(data), 1 << 20):
        instance.store.append("bulk", STDOUT, data[start : start + (1 << 20)])

    # Record how many lines each frame asks the view for.
    fetched: list[int] = []
    unspied_lines = LogView.lines

    def spied_lines(view: LogView, start: int, stop: int):
        fetched.append(stop - start)
        return unspied_lines(view, start, stop)

    monkeypatch.setattr(LogView, "lines", spied_lines)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        pane = pane_of(app)
        await select(pilot, app, "bulk")
        await wait_for(pilot, lambda: pane.line_count == total, "every line in the view")
        await pilot.pause()
        assert pane.is_vertical_scroll_end
        assert rendered_rows(app)[-1] == f"  line {total - 1}"
        assert f"{total:,} lines" in status(app)

        await pilot.press("home")
        assert rendered_rows(app)[0] == "  line 0" and not pane.follow
        await pilot.press("pagedown")
        assert rendered_rows(app)[0] == f"  line {pane.size.height}"
        await pilot.press("end")
        assert rendered_rows(app)[-1] == f"  line {total - 1}" and pane.follow
        # Frames fetched the screen and a page either side, never the whole view.
        assert fetched and max(fetched) <= 3 * pane.size.height


# -- boundaries ----------------------------------------------------------------------------------


def test_tui_does_not_import_the_api_package() -> None:
    code = textwrap.dedent("""
        import sys
        import lacrimosa.tui.app
        leaked = sorted(m for m in sys.modules if m.startswith("lacrimosa.api"))
        assert not leaked, leaked
    """)
    repo = Path(__file__).resolve().parent.parent
    subprocess.run([PYTHON, "-c", code], cwd=repo, check=True, timeout=60)


# -- focus, long lines and long names --------------------------------------------------------------


async def test_selection_keys_keep_selecting_processes_after_filter_and_enter(console) -> None:
    app = LacrimosaApp(console(THREE_PROCESSES))
    async with app.run_test(size=SIZE) as pilot:
        table = table_of(app)
        await wait_for(pilot, lambda: pane_of(app).is_current, "the merged view")
        await pilot.press("slash", "l", "i", "n", "e", "enter")
        assert app.focused is table  # back where the selection keys work
        await pilot.press("j")
        assert table.selected_process == "api"
        await pilot.press("down")
        assert table.selected_process == "worker"
        await pilot.press("k")
        assert table.selected_process == "api"

        # Enter opens the line's detail; the selection keys still select processes.
        await pilot.press("enter")
        assert app.line_detail_shown
        await pilot.press("down")
        assert table.selected_process == "worker"
        await pilot.press("escape")
        assert not app.line_detail_shown

        # Even with the focus on the log (a mouse click), up/down/j/k select processes.
        pane_of(app).focus()
        await pilot.pause()
        await pilot.press("up", "j")
        assert table.selected_process == "worker"
        await pilot.press("escape", "escape")  # clears the filter, then focuses the table
        assert app.focused is table


async def test_the_focused_table_is_marked(console) -> None:
    app = LacrimosaApp(console(THREE_PROCESSES))
    async with app.run_test(size=SIZE) as pilot:
        table = table_of(app)
        header = table.get_component_styles("datatable--header")
        focused = header.background
        await pilot.press("slash")  # the filter input takes the focus
        await pilot.pause()
        assert app.focused is not table
        assert table.get_component_styles("datatable--header").background != focused


LONG_LINES = f"""
    [processes.a_rather_long_service_name]
    cmd = "{PYTHON} -c 'print(*range(60), sep=chr(10)); print(\\"x\\" * 150 + \\" THE END\\")'; exec sleep 60"
    stop_timeout = 2

    [processes.b]
    cmd = "exec sleep 60"
    stop_timeout = 2
"""


async def test_long_lines_and_names_are_cut_with_a_marker_and_readable_whole(console) -> None:
    app = LacrimosaApp(console(LONG_LINES))
    async with app.run_test(size=SIZE) as pilot:
        pane = pane_of(app)
        await wait_for(pilot, lambda: shown(app, "xxxx"), "the long line")
        # A scrollbar is shown (more lines than rows): rows stop before it, so the cut marker
        # at a row's end is not drawn over.
        await wait_for(
            pilot, lambda: pane.content_width == pane.size.width - 1, "room for the scrollbar"
        )
        strips = rendered_strips(app)
        assert {strip.cell_length for strip in strips} == {pane.content_width}
        row = next(row for row in rendered_rows(app) if "xxxx" in row)
        assert row.endswith("…") and "THE END" not in row
        # The merged view's name column: a 26-letter name in 12 cells, marked as cut.
        assert row.startswith("  a_rather_lo… xxx")
        # The process table too.
        assert cell(app, "a_rather_long_service_name", "name") == "a_rather_lo…"

        # Enter: the detail panel shows the last line on screen whole, with where it came from.
        await pilot.press("enter")
        detail = str(app.query_one("#line-detail-text").content)
        assert "x" * 150 + " THE END" in detail
        assert "a_rather_long_service_name" in detail and "stdout" in detail
        assert "line id" in detail
        assert pane.cursor_line is not None
        # shift+up: the line before it, in the panel and marked in the log.
        await pilot.press("shift+up")
        await pilot.pause()
        assert pane.cursor_line is not None
        assert bytes(pane.cursor_line.content) == b"59"
        assert "\n\n59" in str(app.query_one("#line-detail-text").content)
        assert any(
            seg.style is not None and seg.style.reverse
            for strip in rendered_strips(app)
            if "59" in strip.text
            for seg in strip
        )
        await pilot.press("escape")
        assert not app.line_detail_shown and pane.cursor_line is None


CRASH_LOOP = f"""
    [processes.looper]
    cmd = "{PYTHON} -c 'raise SystemExit(1)'"
    restart = "always"
    backoff_initial = 0.05
    backoff_max = 0.1
"""


async def test_overview_calls_a_crash_loop_a_crash_loop(console) -> None:
    instance = console(CRASH_LOOP)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")

        def summary() -> str:
            return app.query_one("#overview-processes", TextLines).plain

        await wait_for(
            pilot,
            lambda: (
                instance.processes()[0].state == State.CRASH_LOOP and "crash-looping" in summary()
            ),
            "the crash loop in the Overview",
        )
        assert "1 crash-looping" in summary() and "failed" not in summary()
