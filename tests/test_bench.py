"""The benchmark scripts keep working: a quick run of all of them (numbers not judged here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


# The quick run takes about a minute on a quiet machine and 2.5 on a loaded one: the whole run's
# own bound (300 s, below) rather than the suite's default per-test timeout.
@pytest.mark.timeout(330)
def test_quick_benchmark_run_completes_and_prints_every_row() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = (
        "capture",
        "store memory",
        "snapshot + tail",
        "cli latency",
        "bulk logs",
        "tui frame",
        "sequencer",
        "tui events",
        "tui bytes",
        "ingest process SIGKILLed",
        "capture vs supervisord",
        "small writes",
        "tui attach",
        "http api: GET /api/processes",
        "http api: stream delivery lag",
        "http api: capture with 10 stream subscribers",
        "resources: CPU% and RSS",
        "query: substring LIMIT 50",
        "query: JSON field status >= 500",
        "query: count(*) GROUP BY 1m",
    )
    for row in rows:
        assert row in result.stdout, f"no {row!r} row in:\n{result.stdout}"
