"""Timestamps on log lines: the TUI's toggle (``t``; off by default at 80 columns, on from 140)
and ``lacrimosa logs --timestamps`` against a real console."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from helpers import wait_for, wait_until

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


CLI = [sys.executable, "-m", "lacrimosa.api.cli"]
REPO = Path(__file__).resolve().parent.parent


def test_logs_timestamps_in_text_output(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LACRIMOSA_HOME"}
    env["PYTHONPATH"] = str(REPO)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
        )

    (tmp_path / "lacrimosa.toml").write_text(CONFIG)
    console = subprocess.Popen(
        [*CLI, "up", "--headless"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: cli("logs", "api").stdout.count("\n") == 2, timeout=20)
        one = cli("logs", "api", "--timestamps").stdout.splitlines()
        assert [re.sub(rf"^{CLOCK}\.\d\d\d ", "", line) for line in one] == ["first", "second"]
        merged = cli("logs", "-t", "--stderr").stdout.splitlines()
        assert len(merged) == 1 and re.fullmatch(rf"{CLOCK}\.\d\d\d api \| second", merged[0])
        refused = cli("logs", "api", "--timestamps", "--json")
        assert refused.returncode == 2 and "text output" in refused.stderr
        assert cli("shutdown").returncode == 0
        assert console.wait(20) == 0
    finally:
        if console.poll() is None:
            console.kill()
            console.wait()
