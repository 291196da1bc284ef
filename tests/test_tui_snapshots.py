"""SVG snapshots of the TUI (pytest-textual-snapshot) at 80x24, with fixed data.

Nothing in a frame may change between runs, so:

- every process is declared with ``autostart = false``: it stays stopped, with no pid, no uptime
  and no exit status;
- its lines are appended straight to the store before the app starts, as the supervisor would
  append what it reads, so their content and order are fixed;
- lines/s is 0 for a process that does not run, whatever was appended to its log, so the column
  is blank from the start (``run_before`` checks that it is before the frame is taken).

The reference frames live in ``tests/__snapshots__/test_tui_snapshots/``. After a deliberate
change to the look of the TUI, regenerate them with ``pytest tests/test_tui_snapshots.py
--snapshot-update`` and look at them (the HTML report of a failed run shows old and new side by
side) before committing.

``snap_compare`` runs the app itself with ``App.run`` (its own event loop), so these tests are
plain functions, not coroutines.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from rich.text import Text
from textual.pilot import Pilot

from lacrimosa.engine.console import Console
from lacrimosa.engine.logs.store import STDERR, STDOUT
from lacrimosa.tui import LacrimosaApp
from lacrimosa.tui.log_pane import LogPane
from lacrimosa.tui.process_table import ProcessTable

SIZE = (80, 24)

PROCESSES = """
    [processes.api]
    cmd = "true"
    autostart = false

    [processes.worker]
    cmd = "true"
    autostart = false

    [processes.db]
    cmd = "true"
    autostart = false
"""

# (process, stream, line), in the order they are appended: the merged view interleaves them.
LINES = (
    ("db", STDOUT, b"\x1b[1mpostgres\x1b[0m database system is ready to accept connections"),
    ("api", STDOUT, b"\x1b[32mINFO\x1b[0m  listening on http://127.0.0.1:8000"),
    ("worker", STDOUT, b"\x1b[36mworker\x1b[0m started with 4 threads"),
    ("api", STDOUT, b"\x1b[32mINFO\x1b[0m  GET /health 200"),
    ("worker", STDOUT, b"job 1 \x1b[32mdone\x1b[0m (resize thumbnails)"),
    ("api", STDERR, b"\x1b[33mWARN\x1b[0m  slow request: GET /reports took 2.4s"),
    ("db", STDERR, b"\x1b[31mERROR\x1b[0m: duplicate key value violates unique constraint"),
    ("worker", STDOUT, b"job 2 \x1b[32mdone\x1b[0m (send emails)"),
    ("api", STDOUT, b"\x1b[32mINFO\x1b[0m  POST /reports 201"),
    ("worker", STDERR, b"job 3 \x1b[1;31mfailed\x1b[0m: connection refused, will retry"),
    ("api", STDERR, b"\x1b[31mERROR\x1b[0m connection reset by peer (db)"),
    ("api", STDOUT, b"\x1b[32mINFO\x1b[0m  GET /reports/7 200"),
    ("db", STDOUT, b"checkpoint complete: wrote 42 buffers"),
    ("worker", STDOUT, b"job 3 \x1b[32mdone\x1b[0m after 1 retry"),
)


def console_with_lines(make_console: Callable[..., Console]) -> Console:
    """A started console whose stopped processes have LINES (and so no rate: they do not run)."""
    instance = make_console(PROCESSES)
    for name, stream, line in LINES:
        instance.store.append(name, stream, line + b"\n")
    assert all(info.lines_per_second == 0 for info in instance.processes())
    return instance


async def wait_for(pilot: Pilot, predicate: Callable[[], object], what: str) -> None:
    """Let the app run until ``predicate()`` is true; fail after a deadline."""
    deadline = time.monotonic() + 10.0
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def status_text(app: LacrimosaApp) -> str:
    return str(app.query_one("#status").content)


def cell_text(table: ProcessTable, row: str, column: str) -> str:
    value = table.get_cell(row, column)
    return value.plain if isinstance(value, Text) else str(value)


async def settle(pilot: Pilot, app: LacrimosaApp, status_shows: str) -> None:
    """Wait until the log view is built for the current query and the table is filled in."""
    pane = app.query_one(LogPane)
    table = app.query_one(ProcessTable)
    await wait_for(
        pilot,
        lambda: pane.is_current and status_shows in status_text(app),
        f"the status line to show {status_shows!r}",
    )
    await wait_for(pilot, lambda: cell_text(table, "*", "out") == "10", "the table's counts")
    # Nothing that moves with time is on screen (see the module docstring).
    for row in ("*", "api", "worker", "db"):
        assert [cell_text(table, row, c) for c in ("pid", "uptime", "exit", "rate")] == [""] * 4


def test_merged_view_of_three_processes(console, snap_compare) -> None:
    """The "* all" row selected: every line of every process, names coloured, stderr marked."""
    app = LacrimosaApp(console_with_lines(console))

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot, app, "14 lines")

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_one_process_with_the_live_filter(console, snap_compare) -> None:
    """api selected, `/` pressed and "re" typed: api's four lines with "re" in them, marked."""
    app = LacrimosaApp(console_with_lines(console))

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot, app, "14 lines")
        await pilot.press("down")  # from "* all" to api
        await settle(pilot, app, "6 lines")
        await pilot.press("slash", "r", "e")
        # A blinking cursor would be drawn or not depending on when the frame is taken.
        app.filter_input.cursor_blink = False
        await settle(pilot, app, "4 matches")

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_stderr_only_stream_view(console, snap_compare) -> None:
    """`e` twice on the merged view: only stderr lines, of every process."""
    app = LacrimosaApp(console_with_lines(console))

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot, app, "14 lines")
        await pilot.press("e", "e")
        await settle(pilot, app, "stream: stderr")

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
