"""Timestamps on log lines: the TUI's toggle (``t``; off by default at 80 columns, on from 140)
and ``lacrimosa logs --timestamps`` against a real console."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from helpers import wait_for, wait_until
from test_procenv import cli, headless

from lacrimosa.engine.console import Console
from lacrimosa.tui.app import LacrimosaApp
from lacrimosa.tui.log_pane import LogPane

MakeConsole = Callable[..., Console]
CLOCK = r"\d\d:\d\d:\d\d"
CONFIG = """
[processes.api]
cmd = "echo first; echo second >&2; sleep 300"
"""


def rows(pane: LogPane) -> list[str]:
    return [pane.render_line(y).text.rstrip() for y in range(pane.line_count)]


async def test_the_log_view_toggles_timestamps_off_by_default_at_80_columns(
    console: MakeConsole,
) -> None:
    app = LacrimosaApp(console(CONFIG))
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(LogPane)
        await wait_for(pilot, lambda: pane.line_count == 2, "both lines")
        assert not any(re.search(CLOCK, row) for row in rows(pane)), rows(pane)
        await pilot.press("t")
        await wait_for(
            pilot,
            lambda: all(re.match(rf"^. {CLOCK} api +(first|second)$", r) for r in rows(pane)),
            "every row to start with its time",
        )
        await pilot.press("t")
        await wait_for(pilot, lambda: not any(re.search(CLOCK, r) for r in rows(pane)), "off")


async def test_a_wide_log_view_shows_timestamps_until_toggled(console: MakeConsole) -> None:
    app = LacrimosaApp(console(CONFIG))
    async with app.run_test(size=(150, 24)) as pilot:
        pane = app.query_one(LogPane)
        await wait_for(pilot, lambda: pane.line_count == 2, "both lines")
        assert all(re.search(rf"{CLOCK} api", row) for row in rows(pane)), rows(pane)
        await pilot.press("t")
        await wait_for(pilot, lambda: not any(re.search(CLOCK, r) for r in rows(pane)), "off")


def test_logs_timestamps_in_text_output(tmp_path: Path) -> None:
    (tmp_path / "lacrimosa.toml").write_text(CONFIG)
    with headless(tmp_path):
        wait_until(lambda: cli(tmp_path, "logs", "api").stdout.count("\n") == 2, timeout=20)
        one = cli(tmp_path, "logs", "api", "--timestamps").stdout.splitlines()
        assert [re.sub(rf"^{CLOCK}\.\d\d\d ", "", line) for line in one] == ["first", "second"]
        merged = cli(tmp_path, "logs", "-t", "--stderr").stdout.splitlines()
        assert len(merged) == 1 and re.fullmatch(rf"{CLOCK}\.\d\d\d api \| second", merged[0])
        refused = cli(tmp_path, "logs", "api", "--timestamps", "--json")
        assert refused.returncode == 2 and "text output" in refused.stderr
