"""The TUI's process table shows readiness, health and the dependency a process waits on (the
real app under Pilot at 80x24, on a real Console with real child processes)."""

from __future__ import annotations

from helpers import wait_for
from rich.text import Text

from lacrimosa.tui import LacrimosaApp, palette
from lacrimosa.tui.process_table import ProcessTable

SIZE = (80, 24)

PROJECT = """
    [processes.db]
    cmd = "sleep 0.5; echo 'ready to accept'; exec sleep 60"
    ready = { log = "ready to accept" }
    stop_timeout = 2

    [processes.api]
    cmd = "exec sleep 60"
    depends_on = { db = "ready" }
    stop_timeout = 2

    [processes.broken]
    cmd = "exit 3"
    restart = "never"

    [processes.after]
    cmd = "exec sleep 60"
    depends_on = { broken = "completed" }
"""


def cell(app: LacrimosaApp, process: str, column: str) -> str:
    value = app.query_one(ProcessTable).get_cell(process, column)
    return value.plain if isinstance(value, Text) else str(value)


async def test_the_table_shows_waiting_blocked_running_and_ready(console) -> None:
    app = LacrimosaApp(console(PROJECT))
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(ProcessTable)
        await wait_for(pilot, lambda: cell(app, "after", "state") == "blocked (broken)", "blocked")
        # db has a ready probe: running until it passes, while api waits for it
        if cell(app, "db", "state") == "running":
            assert cell(app, "api", "state").startswith("waiting (db: rea")
            assert palette.WARNING in str(table.get_cell("api", "state").style)
        await wait_for(pilot, lambda: cell(app, "db", "state") == "ready", "db to be ready")
        await wait_for(pilot, lambda: cell(app, "api", "state") == "running", "api to start")
        assert palette.ERROR in str(table.get_cell("after", "state").style)
        # the state column was widened for the reason, and the table still fits 80 columns
        assert table.columns[next(k for k in table.columns if k.value == "state")].width >= 15
        assert table.virtual_size.width <= SIZE[0]
