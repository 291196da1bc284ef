"""Run every benchmark and print one table.

Columns: benchmark | lacrimosa | reference | ratio | target | met?

Each benchmark module runs in a fresh interpreter (``python bench/NAME.py --json``), so one's
memory and threads never disturb another's; each can also be run alone for its own table.

    python bench/run.py            # the real sizes (a couple of minutes)
    python bench/run.py --quick    # smoke run at small sizes, well under a minute
    python bench/run.py --only capture --only cli_latency
    python bench/run.py --root /tmp/engine-prototype   # measure another copy of the code

Exit status: 0 when every benchmark ran (whether or not its target is met), 1 when one failed to
run. A benchmark whose prerequisite is missing (e.g. no TUI yet) is reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import REPO, Row, print_table

BENCH = Path(__file__).resolve().parent
MODULES = (
    "capture",
    "store_memory",
    "snapshot_tail",
    "cli_latency",
    "bulk_logs",
    "tui_frame",
    "sequencer",
    "tui_events",
    "tui_bytes",
    "ingest_readers",
    "small_writes",
    "tui_attach",
    "http_api",
    "resources",
    "query",
)
TIMEOUT = {True: 120, False: 1200}


def run_module(name: str, quick: bool, root: Path) -> tuple[list[Row], str | None]:
    cmd = [sys.executable, str(BENCH / f"{name}.py"), "--json", "--root", str(root)]
    if quick:
        cmd.append("--quick")
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=TIMEOUT[quick],
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return [Row(name, f"ERROR: no result within {TIMEOUT[quick]} s")], "timeout"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return [Row(name, f"ERROR: {last}")], done.stderr
    try:
        rows = [Row(**fields) for fields in json.loads(done.stdout.strip().splitlines()[-1])]
    except (ValueError, IndexError, TypeError) as exc:
        return [Row(name, f"ERROR: unreadable output ({exc})")], done.stdout
    return rows, None


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def describe_machine(root: Path) -> str:
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return (
        f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.platform()}; code at {root} {commit}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the lacrimosa benchmarks.")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--only",
        action="append",
        choices=MODULES,
        metavar="NAME",
        help=f"run only these ({', '.join(MODULES)}); may be repeated",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=REPO,
        help="measure the engine/api/tui found in this folder (default: this repo)",
    )
    parser.add_argument("--json", action="store_true", help="print all rows as JSON instead")
    args = parser.parse_args()

    rows: list[Row] = []
    failures: list[tuple[str, str]] = []
    started = time.monotonic()
    load_before = load_average()
    for name in args.only or MODULES:
        if not args.json:
            print(f"running {name}...", file=sys.stderr, flush=True)
        module_rows, failure = run_module(name, args.quick, args.root.resolve())
        rows.extend(module_rows)
        if failure is not None:
            failures.append((name, failure))
    if args.json:
        print(json.dumps([row.__dict__ for row in rows]))
    else:
        print(describe_machine(args.root.resolve()))
        if args.quick:
            print("QUICK MODE: small sizes for a smoke run; the met? column means little here")
        print()
        print_table(rows)
        print(
            f"\n({time.monotonic() - started:.0f} s; load average before {load_before}, "
            f"after {load_average()}: other work on this machine skews everything)"
        )
    for name, detail in failures:
        print(f"\n{name} failed:\n{detail}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
