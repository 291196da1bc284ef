"""query: the query language (engine/dsl) over 10M stored lines, against references on the same
data written to a file, in the same run.

The store holds 10M lines (``--quick``: 200k), half plain (``GET /items/123 200 12ms
user=u123``), half JSON (``{"level": ..., "status": ..., "msg": ..., "path": ...}``), appended
in chunks of whole lines of about 1 MiB, one second apart (a fake clock, so the store spans
minutes); the same lines go to a file (page-cached before timing). Each query is run with
``execute`` on a snapshot, as the console does for ``lacrimosa query`` (the socket round trip is
``cli_latency``'s business):

- substring, LIMIT 50, matching only near the end (60 lines in the last 0.5%):
  ``SELECT line FROM app WHERE line CONTAINS "needle-7f3a" LIMIT 50`` vs ``grep -m 50`` (the
  faster of the environment's locale and ``LC_ALL=C``). The
  table has the first run (every block scanned); the cached rerun is in the notes. Target: within
  3x of grep.
- a JSON-field filter over everything: ``SELECT count(*) FROM app WHERE status >= 500`` vs a
  Python loop (``json.loads`` on each line that starts with ``{``), and vs ``jq -R -c 'fromjson?
  | select(.status >= 500)'`` when jq is installed. Target: faster than the Python loop.
- ``SELECT count(*) FROM app GROUP BY 1m`` vs the same loop over the file with each line's time
  written before it (``int(line[:13]) // 60000`` counted in a dict). No target (the loop is the
  scale).

Every query's answer is checked against its reference's.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import Row, fmt_ms, main

LINES = 10_000_000
QUICK_LINES = 200_000
CHUNK = 1 << 20
NEEDLE = "needle-7f3a"
NEEDLE_LINES = 60
T0_MS = 1_800_000_000_000
BUDGET = 8 << 30


def line(i: int, total: int) -> bytes:
    if i % 2 == 0:
        tail = b" " + NEEDLE.encode() if _needle_at(i, total) else b""
        return b"GET /items/%d 200 %dms user=u%d%s\n" % (i % 1000, i % 97, i, tail)
    status = 503 if i % 101 == 1 else 200
    level = b"error" if status >= 500 else b"info"
    return b'{"level": "%s", "status": %d, "msg": "served", "path": "/items/%d"}\n' % (
        level,
        status,
        i % 1000,
    )


def _needle_at(i: int, total: int) -> bool:
    """NEEDLE_LINES plain (even) lines, spread over the last 0.5% of the lines."""
    first = (total - total // 200) & ~1
    step = ((total - first) // NEEDLE_LINES) & ~1
    return i >= first and (i - first) % step == 0


def chunks(total: int) -> Iterator[list[bytes]]:
    """The lines, in lists of about CHUNK bytes (whole lines)."""
    batch: list[bytes] = []
    size = 0
    for i in range(total):
        data = line(i, total)
        batch.append(data)
        size += len(data)
        if size >= CHUNK:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


class Clock:
    """The store's clock: one second per chunk, so 10M lines span some ten minutes."""

    def __init__(self) -> None:
        self.now = T0_MS / 1000

    def time(self) -> float:
        return self.now


def timed(op: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = op()
    return time.perf_counter() - started, result


def run(quick: bool) -> list[Row]:
    from lacrimosa.engine.dsl import execute, parse
    from lacrimosa.engine.logs import store as store_module

    total = QUICK_LINES if quick else LINES
    label = f"{total / 1_000_000:g}M lines"
    clock = Clock()
    store_module.time = clock  # type: ignore[assignment]  # the store's only use of time
    store = store_module.LogStore(budget_bytes=BUDGET)
    folder = Path(tempfile.mkdtemp(prefix="lacrimosa-bench-query-"))
    plain_file = folder / "app.log"
    timed_file = folder / "app-timed.log"
    try:
        started = time.perf_counter()
        with plain_file.open("wb") as plain, timed_file.open("wb") as stamped:
            for batch in chunks(total):
                store.append("app", 0, b"".join(batch))
                ms = round(clock.now * 1000)
                plain.writelines(batch)
                stamped.writelines(b"%d %s" % (ms, data) for data in batch)
                clock.now += 1.0
        filled = time.perf_counter() - started
        if store.counts("app").stdout_lines != total or store.evicted_blocks:
            raise RuntimeError(f"store not filled as asked: {store.counts('app')}")
        for path in (plain_file, timed_file):  # page-cached, as the store's lines are in memory
            with path.open("rb") as f:
                while f.read(1 << 24):
                    pass
        snapshot = store.snapshot()

        def query(text: str) -> dict[str, Any]:
            return execute(parse(text), snapshot).to_dict()

        rows = [
            _substring(query, plain_file, label),
            *_field_filter(query, plain_file, label),
            _group_by(query, timed_file, label),
        ]
        rows[0].notes.append(
            f"filled in {filled:.1f} s ({total:,} lines, {plain_file.stat().st_size / 1e6:,.0f} MB "
            f"in the file, {len(snapshot.processes['app'].blocks)} blocks)"
        )
        return rows
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _substring(query: Callable[[str], dict[str, Any]], path: Path, label: str) -> Row:
    text = f'SELECT line FROM app WHERE line CONTAINS "{NEEDLE}" LIMIT 50'
    first, result = timed(lambda: query(text))
    cached, _ = timed(lambda: query(text))
    # grep as it runs here, and in the C locale (no multibyte handling): the faster is the mark.
    greps = [
        timed(
            lambda locale=locale: subprocess.run(
                ["grep", "-m", "50", NEEDLE, str(path)],
                capture_output=True,
                check=True,
                env={**os.environ, **locale},
            )
        )
        for locale in ({}, {"LC_ALL": "C"})
    ]
    grep_seconds, grep = min(greps, key=lambda pair: pair[0])
    ours = [row[0] for row in result["rows"]]
    theirs = grep.stdout.decode().splitlines()
    if ours != theirs or len(ours) != 50:
        raise RuntimeError(f"substring: {len(ours)} rows, grep {len(theirs)}, or they differ")
    ratio = first / grep_seconds
    return Row(
        f"query: substring LIMIT 50 near the end, {label}",
        fmt_ms(first),
        f"{fmt_ms(grep_seconds)} grep -m 50",
        ratio,
        "within 3x of grep",
        ratio <= 3,
        notes=[
            f"cached rerun (block scans kept on the blocks): {fmt_ms(cached)}; "
            f"{result['scanned']:,} lines scanned; grep {fmt_ms(greps[0][0])}, with LC_ALL=C "
            f"{fmt_ms(greps[1][0])}"
        ],
        data={"first": first, "cached": cached, "grep": grep_seconds},
    )


def _python_loop(path: Path) -> int:
    count = 0
    with path.open("rb") as f:
        for raw in f:
            if raw.startswith(b"{") and json.loads(raw).get("status", 0) >= 500:
                count += 1
    return count


def _field_filter(query: Callable[[str], dict[str, Any]], path: Path, label: str) -> list[Row]:
    text = "SELECT count(*) FROM app WHERE status >= 500"
    ours, result = timed(lambda: query(text))
    loop, expected = timed(lambda: _python_loop(path))
    (count,) = result["rows"][0]
    if count != expected:
        raise RuntimeError(f"field filter: {count} rows, the loop {expected}")
    ratio = ours / loop
    rows = [
        Row(
            f"query: JSON field status >= 500, {label}",
            fmt_ms(ours),
            f"{fmt_ms(loop)} Python json.loads loop",
            ratio,
            "faster than the loop",
            ratio < 1,
            notes=[f"{count:,} lines match; {result['scanned']:,} scanned"],
            data={"ours": ours, "loop": loop},
        )
    ]
    jq = shutil.which("jq")
    if jq is None:
        rows[0].notes.append("jq not installed: no jq row")
        return rows

    def run_jq() -> int:
        with path.open("rb") as source:
            done = subprocess.run(
                [jq, "-R", "-c", "fromjson? | select(.status >= 500)"],
                stdin=source,
                capture_output=True,
                check=True,
            )
        return done.stdout.count(b"\n")

    jq_seconds, jq_count = timed(run_jq)
    if jq_count != count:
        raise RuntimeError(f"field filter: jq found {jq_count}, the query {count}")
    rows.append(
        Row(
            f"query: JSON field status >= 500 vs jq, {label}",
            fmt_ms(ours),
            f"{fmt_ms(jq_seconds)} jq -R 'fromjson? | select(.status >= 500)'",
            ours / jq_seconds,
            "",
            None,
            data={"ours": ours, "jq": jq_seconds},
        )
    )
    return rows


def _group_by(query: Callable[[str], dict[str, Any]], path: Path, label: str) -> Row:
    text = "SELECT count(*) FROM app GROUP BY 1m"
    ours, result = timed(lambda: query(text))

    def loop() -> dict[int, int]:
        counts: collections.Counter[int] = collections.Counter()
        with path.open("rb") as f:
            for raw in f:
                counts[int(raw[:13]) // 60000] += 1
        return dict(counts)

    loop_seconds, expected = timed(loop)
    got = {round(_epoch(ts) * 1000) // 60000: count for ts, count in result["rows"]}
    if got != expected:
        raise RuntimeError(f"group by: {got} != the loop's {expected}")
    return Row(
        f"query: count(*) GROUP BY 1m, {label}",
        fmt_ms(ours),
        f"{fmt_ms(loop_seconds)} Python loop",
        ours / loop_seconds,
        "",
        None,
        notes=[f"{len(got)} minutes"],
        data={"ours": ours, "loop": loop_seconds},
    )


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main(run, __doc__))
