"""What the TUI repaints: every cell repainted is written to the terminal again, and over SSH
every byte crosses the link (bench/tui_bytes.py measures the bytes a second).

The real app under Pilot at 80x24 on a real Console; the screen updates the app hands to its
driver are recorded (``App._display``, which Pilot's headless driver calls without writing), and
each is read as the screen lines (and column spans) it rewrites.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from helpers import wait_for
from textual._compositor import ChopsUpdate
from textual.containers import VerticalScroll
from textual.geometry import Region
from textual.screen import Screen
from textual.strip import Strip
from textual.widget import Widget

from lacrimosa.engine.console import Console
from lacrimosa.engine.logs.store import STDOUT
from lacrimosa.tui import LacrimosaApp
from lacrimosa.tui.key_hints import KeyHints
from lacrimosa.tui.line_memo import RemembersItsLines
from lacrimosa.tui.log_pane import LogPane
from lacrimosa.tui.process_table import ProcessTable

SIZE = (80, 24)

FED = """
    [processes.fed]
    cmd = "true"
    autostart = false
"""


def feed(console: Console, first: int, count: int) -> None:
    lines = "".join(f"count {i}\n" for i in range(first, first + count))
    console.store.append("fed", STDOUT, lines.encode())


@contextmanager
def recorded_updates(app: LacrimosaApp) -> Iterator[list[tuple[int, int, int]]]:
    """The (y, x1, x2) spans of the screen the app rewrites meanwhile (a full repaint: every
    line, whole)."""
    spans: list[tuple[int, int, int]] = []
    display = app._display

    def recording_display(screen: Screen[object], renderable: object) -> None:
        if isinstance(renderable, ChopsUpdate):
            spans.extend(renderable.spans)
        elif renderable is not None:
            spans.extend((y, 0, SIZE[0]) for y in range(SIZE[1]))
        display(screen, renderable)  # type: ignore[arg-type]

    app._display = recording_display  # type: ignore[method-assign]
    try:
        yield spans
    finally:
        app._display = display  # type: ignore[method-assign]


def rows_written(spans: list[tuple[int, int, int]], region: Region) -> set[int]:
    """The rows of ``region`` (relative to it) that a span rewrote some of."""
    return {
        y - region.y
        for y, x1, x2 in spans
        if region.y <= y < region.bottom and x1 < region.right and x2 > region.x
    }


async def test_a_log_that_does_not_move_is_not_repainted(console) -> None:
    instance = console(FED)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(LogPane)
        table = app.query_one(ProcessTable)
        table.focus()
        await pilot.press("down")  # the "fed" process
        feed(instance, 1, 100)
        await wait_for(pilot, lambda: pane.line_count == 100, "the first lines")
        await pilot.press("f")
        assert not pane.follow
        await pilot.pause(0.2)
        text = pane.scrollable_content_region  # the rows' text, less the scrollbar
        with recorded_updates(app) as spans:
            feed(instance, 101, 50)
            await wait_for(pilot, lambda: pane.line_count == 150, "the lines, while not following")
            await wait_for(
                pilot, lambda: "150 lines" in str(app.query_one("#status").content), "the count"
            )
            await pilot.pause(0.2)
        assert rows_written(spans, text) == set()

        # Following, the pane scrolls: every row shows another line.
        await pilot.press("f")
        await pilot.pause(0.2)
        with recorded_updates(app) as spans:
            feed(instance, 151, 50)
            await wait_for(pilot, lambda: pane.line_count == 200, "the lines, following")
            await pilot.pause(0.2)
        assert rows_written(spans, text) == set(range(text.height))


async def test_a_view_that_fits_repaints_only_its_new_rows(console) -> None:
    instance = console(FED)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(LogPane)
        app.query_one(ProcessTable).focus()
        await pilot.press("down")
        feed(instance, 1, 3)
        await wait_for(pilot, lambda: pane.line_count == 3, "the first lines")
        await pilot.pause(0.2)
        with recorded_updates(app) as spans:
            feed(instance, 4, 2)
            await wait_for(pilot, lambda: pane.line_count == 5, "two more lines")
            await pilot.pause(0.2)
        assert rows_written(spans, pane.region) == {3, 4}


async def test_a_changed_counter_repaints_its_rows_not_the_table(console) -> None:
    instance = console(
        FED
        + """
    [processes.other]
    cmd = "true"
    autostart = false
"""
    )
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(ProcessTable)
        await pilot.pause(0.3)
        with recorded_updates(app) as spans:
            feed(instance, 1, 5)
            await wait_for(
                pilot, lambda: str(table.get_cell("fed", "out")).strip() == "5", "the count"
            )
            await pilot.pause(0.2)
        # The header is row 0, then "* all", "fed", "other": only the counted rows changed.
        assert rows_written(spans, table.region) == {1, 2}


@contextmanager
def drawings(widgets: list[Widget]) -> Iterator[dict[Widget, int]]:
    """How many times each widget's lines were drawn by Textual (its styles cache asked for every
    line), by widget: what ``RemembersItsLines`` saves."""
    counts = dict.fromkeys(widgets, 0)
    originals = []
    for widget in widgets:
        cache = widget._styles_cache
        draw = cache.render_widget

        def counted(drawn: Widget, crop: Region, draw: Any = draw) -> list[Strip]:
            counts[drawn] += 1
            return draw(drawn, crop)  # type: ignore[no-any-return]

        cache.render_widget = counted  # type: ignore[method-assign]
        originals.append((cache, draw))
    try:
        yield counts
    finally:
        for cache, draw in originals:
            cache.render_widget = draw  # type: ignore[method-assign]


async def test_a_view_shown_again_reuses_the_lines_that_did_not_change(console) -> None:
    """A view switch lays the screen out, and Textual then draws every widget again, containers
    wholly covered by their children included: the screen, the view switcher, the view's own
    container, the footer and the list's scrollbar are handed their last lines instead, until
    their size or what they show changes."""
    instance = console(FED)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        feed(instance, 1, 100)
        pane = app.query_one(LogPane)
        await wait_for(pilot, lambda: pane.line_count == 100, "the lines")
        for key in "2121":  # every look drawn once
            await pilot.press(key)
            await pilot.pause(0.1)
        kept = [
            app.screen,
            app.query_one("#views"),
            app.query_one("#logs"),
            app.query_one(KeyHints),
        ]
        scrollbar = pane.vertical_scrollbar
        with drawings([*kept, scrollbar]) as counts:
            for key in "2121":
                await pilot.press(key)
                await pilot.pause(0.1)
        assert set(counts.values()) == {0}, counts
        # The mixin leaves the settings of the class it is mixed into as they were.
        assert type("Scrolling", (RemembersItsLines, VerticalScroll), {}).can_focus

        # What changes is drawn again: the footer's keys with the focus on the filter, the
        # scrollbar's thumb when the pane scrolls, everything at a new size.
        with drawings([*kept, scrollbar]) as counts:
            await pilot.press("slash")
            await pilot.pause(0.1)
            assert counts[app.query_one(KeyHints)] >= 1
            await pilot.press("escape", "home")
            await pilot.pause(0.1)
            assert counts[scrollbar] >= 1
            await pilot.resize_terminal(100, 30)
            await pilot.pause(0.2)
        assert all(count >= 1 for count in counts.values()), counts
