"""The Query view (key 5) and the log view's ``?`` filter, driven under Pilot at 80x24 on a real
Console whose processes write JSON lines."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from helpers import wait_for, wait_until
from test_attach import served
from test_tui_events import footer_keys, notifications, static_text

from lacrimosa.api.remote_console import RemoteConsole
from lacrimosa.engine.console import Console
from lacrimosa.tui import LacrimosaApp
from lacrimosa.tui.query_view import HISTORY_MAX, HISTORY_NAME, QueryHistory, QueryView

__all__ = ["served"]  # the fixture (a console on its control socket), for the attached test

SIZE = (80, 24)
PY = sys.executable
PROCESSES = f"""
    [processes.api]
    cmd = "{PY} -u -c 'import json\\nfor i in range(40):\\n    print(json.dumps({{\\"level\\": \\"error\\" if i % 4 == 0 else \\"info\\", \\"status\\": 500 if i % 5 == 0 else 200, \\"i\\": i}}))\\nimport time; time.sleep(60)'"
    stop_timeout = 2

    [processes.slow]
    cmd = "{PY} -u -c 'import time\\nfor i in range(40):\\n    print(\\"a\\" * 30)\\ntime.sleep(60)'"
    stop_timeout = 2
"""


def lines_written(instance: Console) -> bool:
    infos = {p.name: p for p in instance.processes()}
    return infos["api"].stdout_lines == 40 and infos["slow"].stdout_lines == 40


def table_rows(view: QueryView) -> list[list[str]]:
    table = view.table
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def test_key_5_runs_a_query_shows_its_table_and_keeps_its_history(console) -> None:
    instance: Console = console(PROCESSES)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: lines_written(instance), "the lines written")
        await pilot.press("5")
        view = app.query_one(QueryView)
        assert app.view == "query" and app.focused is view.input
        # The footer says what the keys do while typing (the app's letters are text here).
        assert sorted(footer_keys(app)) == ["down", "enter", "escape", "up"]
        await pilot.press(*"SELECT count(*), level FROM api GROUP BY level", "enter")
        await wait_for(pilot, lambda: view.table.row_count == 2, "the result table")
        assert table_rows(view) == [["10", "error"], ["30", "info"]]
        assert [c.label.plain for c in view.table.columns.values()] == ["count(*)", "level"]
        assert static_text(app, "#query-status").startswith("2 rows · 40 scanned")

        # A query that does not parse: the error, the query and a caret under the column.
        view.input.value = ""
        await pilot.press(*"SELECT * FROM api WHERE status >", "enter")
        await wait_for(
            pilot, lambda: "expected a value" in static_text(app, "#query-status"), "the error"
        )
        message, shown, caret = static_text(app, "#query-status").splitlines()
        assert message.startswith("expected a value")
        assert shown.startswith("SELECT * FROM api WHERE status >")
        assert caret == " " * 32 + "^"

        # Up and down walk the history; it is kept in the state folder.
        view.input.value = ""
        await pilot.press("up")
        assert view.input.value == "SELECT * FROM api WHERE status >"
        await pilot.press("up")
        assert view.input.value == "SELECT count(*), level FROM api GROUP BY level"
        await pilot.press("down", "down")
        assert view.input.value == ""
        kept = (instance.home / HISTORY_NAME).read_text().splitlines()
        assert kept[-2:] == [
            "SELECT count(*), level FROM api GROUP BY level",
            "SELECT * FROM api WHERE status >",
        ]

    again = LacrimosaApp(instance)  # a restart reads the history back
    async with again.run_test(size=SIZE) as pilot:
        await pilot.press("5", "up")
        assert again.query_one(QueryView).input.value == "SELECT * FROM api WHERE status >"


MANY_LINES = 400_000
MANY = f"""
    [processes.many]
    cmd = "{PY} -u -c 'import sys, time\\nsys.stdout.write((\\"a\\" * 30 + \\"\\\\n\\") * {MANY_LINES})\\ntime.sleep(60)'"
    stop_timeout = 2
"""


async def test_escape_cancels_a_running_query_and_the_ui_stays_responsive(console) -> None:
    instance: Console = console(PROCESSES + MANY)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        many = lambda: next(p for p in instance.processes() if p.name == "many")  # noqa: E731
        await wait_for(pilot, lambda: many().stdout_lines == MANY_LINES, "the lines written")
        await pilot.press("5")
        view = app.query_one(QueryView)
        # Real work: four conditions over many lines, about 3 s (a backtracking MATCHES made it
        # slow before, but MATCHES runs in linear time since it is RE2's).
        slow = (
            "SELECT count(*) FROM many WHERE a.b = 1 OR line MATCHES 'b' OR line CONTAINS 'c' "
            "OR line STARTSWITH 'd'"
        )
        view.input.value = slow
        # Submitted as Enter does, but without Pilot's press, which waits for the process to go
        # idle (up to ~2 s): on a quiet machine the query was over by then.
        await view.input.action_submit()
        await wait_for(pilot, lambda: view.running, "the query running")
        started = time.monotonic()
        await pilot.press("escape")
        assert not view.running and static_text(app, "#query-status") == "cancelled"
        await pilot.press("x")  # the UI takes keys while the worker winds down
        assert view.input.value.endswith("x")
        assert time.monotonic() - started < 2
        await wait_for(
            pilot,
            lambda: not any(w.is_running for w in app.workers),
            "the worker stopped",
            timeout=30,
        )
        assert view.table.row_count == 0  # the cancelled query's result (if any) was dropped


async def test_the_log_filter_takes_a_where_expression_after_a_question_mark(console) -> None:
    instance: Console = console(PROCESSES)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: lines_written(instance), "the lines written")
        await pilot.press("slash", *'?level = "error" AND status >= 500')
        pane = app.log_pane
        await wait_for(pilot, lambda: pane.is_current and pane.line_count == 2, "the two matches")
        assert [line.text for line in pane.visible_lines()] == [
            '{"level": "error", "status": 500, "i": 0}',
            '{"level": "error", "status": 500, "i": 20}',
        ]
        assert "2 matches" in static_text(app, "#status")
        # Plain text stays a substring filter.
        app.filter_input.value = "aaaa"
        await wait_for(pilot, lambda: pane.is_current and pane.line_count == 40, "the substring")
        # An expression that does not parse (yet) is told on the status line, not notified
        # at every key; the UI goes on.
        app.filter_input.value = "?status >"
        await wait_for(
            pilot, lambda: "expected a value" in static_text(app, "#status"), "the error"
        )
        assert not any("expected a value" in n for n in notifications(app))
        app.filter_input.value = "?status > 400"
        await wait_for(pilot, lambda: "8 matches" in static_text(app, "#status"), "the matches")


async def test_attached_the_query_view_and_the_where_filter_go_through_the_socket(
    served: Callable[..., Console],
) -> None:
    made = served()
    wait_until(lambda: made.process("worker").stdout_lines == 3)
    await query_view_and_where_filter_attached(RemoteConsole(made.home))


async def query_view_and_where_filter_attached(remote: RemoteConsole) -> None:
    """The Query view and a ``?`` filter, attached through ``remote`` (the socket, or HTTP: see
    test_remote.py) to a console of test_attach's IDLE, worker's 3 lines written; closes it."""
    app = LacrimosaApp(remote, attached=True)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("slash", *'?line CONTAINS "line 2"')
            pane = app.log_pane
            await wait_for(pilot, lambda: pane.is_current and pane.line_count == 1, "the match")
            assert [line.text for line in pane.visible_lines()] == ["worker line 2"]
            await pilot.press("enter", "5")
            view = app.query_one(QueryView)
            await pilot.press(*"SELECT count(*), process FROM * GROUP BY process", "enter")
            await wait_for(pilot, lambda: view.table.row_count == 2, "the result table")
            assert table_rows(view) == [["1", "api"], ["3", "worker"]]
            # A syntax error comes back as the reply's error: the caret is there all the same.
            view.input.value = ""
            await pilot.press(*"SELECT * FROM api WHERE (", "enter")
            await wait_for(pilot, lambda: "^" in static_text(app, "#query-status"), "the caret")
            assert static_text(app, "#query-status").splitlines()[-1] == " " * 25 + "^"
            await pilot.press("escape", "1")  # the keys back to the table, then a view key
            assert app.view == "logs"
    finally:
        remote.close()


def test_the_history_keeps_its_newest_entries_within_its_bound(tmp_path: Path) -> None:
    history = QueryHistory(tmp_path / HISTORY_NAME)
    for i in range(HISTORY_MAX + 5):
        history.add(f"SELECT {i}\nFROM api")  # one line each, however typed
    history.add(f"SELECT {HISTORY_MAX + 4} FROM api")  # the same as the last: not kept twice
    kept = (tmp_path / HISTORY_NAME).read_text().splitlines()
    assert len(kept) == HISTORY_MAX and kept[0] == "SELECT 5 FROM api"
    assert kept[-1] == f"SELECT {HISTORY_MAX + 4} FROM api"
    assert QueryHistory(tmp_path / HISTORY_NAME).step(-1) == kept[-1]
    assert oct((tmp_path / HISTORY_NAME).stat().st_mode & 0o777) == "0o600"
