"""snapshot + tail: take a snapshot and fetch the last 50 lines with 10M lines stored.

The store (``LogStore`` with a budget large enough that nothing is evicted) holds 10M short
lines (~30 bytes, e.g. ``req 123 GET /items/123 200``), appended in 1 MiB chunks. One operation
is what ``lacrimosa logs NAME --lines 50`` or a TUI frame does: ``store.snapshot()``, a
``LogView`` over it for a ``LogQuery``, ``view.tail(50)``, and the bytes of those 50 lines.
Reported as the median (and p95) over many iterations, for:

- one process, no filter;
- one process, substring filter ``/items/777 `` (1 line in 1000 matches): the first call scans
  all 10M lines and caches the matches on each block, later calls reuse that (first call in the
  notes, the cached median in the table);
- the merged view of 3 processes holding the 10M lines between them (interleaved appends).

Reference: the last 50 lines of a plain ``collections.deque`` of lines (``islice(reversed(dq),
50)``), the cheapest honest way to keep a tail in Python, to show scale.

Target: under 1 ms.
"""

from __future__ import annotations

import collections
import itertools
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import Row, fmt_ms, main, median, percentile

LINES = 10_000_000
QUICK_LINES = 1_000_000
ITERATIONS = 2000
QUICK_ITERATIONS = 200
TAIL = 50
TARGET = 0.001
NEEDLE = b"/items/777 "
CHUNK = 1 << 20
BUDGET = 4 << 30


def _chunks(count: int, start: int = 0, batch: int = 100_000) -> Iterator[bytes]:
    """``count`` lines of ~30 bytes, re-cut into 1 MiB chunks (lines cut anywhere)."""
    pending = b""
    for first in range(start, start + count, batch):
        last = min(first + batch, start + count)
        pending += b"".join(
            b"req %d GET /items/%d 200\n" % (i, i % 1000) for i in range(first, last)
        )
        while len(pending) >= CHUNK:
            yield pending[:CHUNK]
            pending = pending[CHUNK:]
    if pending:
        yield pending


def fill(store: Any, names: list[str], total: int) -> None:
    """Append ``total`` lines spread over ``names``, round-robin chunk by chunk."""
    per = total // len(names)
    sources = [_chunks(per + (i < total % len(names)), start=i * per) for i in range(len(names))]
    for name, chunks in itertools.cycle(zip(names, sources, strict=True)):
        chunk = next(chunks, None)
        if chunk is None:
            break
        store.append(name, 0, chunk)
    for name, chunks in zip(names, sources, strict=True):  # any leftovers of longer sources
        for chunk in chunks:
            store.append(name, 0, chunk)
        store.flush(name, 0)


def timed(op: Callable[[], Any], iterations: int) -> list[float]:
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        op()
        times.append(time.perf_counter() - t0)
    return times


def run(quick: bool) -> list[Row]:
    from lacrimosa.engine.logs.query import LogQuery, LogView
    from lacrimosa.engine.logs.store import LogStore

    total = QUICK_LINES if quick else LINES
    iterations = QUICK_ITERATIONS if quick else ITERATIONS
    label = f"{total // 1_000_000}M lines"

    dq: collections.deque[bytes] = collections.deque(maxlen=100_000)
    dq.extend(b"req %d GET /items/%d 200" % (i, i % 1000) for i in range(100_000))

    def reference() -> list[bytes]:
        return list(itertools.islice(reversed(dq), TAIL))[::-1]

    def tail_op(store: LogStore, query: LogQuery) -> Callable[[], list[bytes]]:
        def op() -> list[bytes]:
            view = LogView(store.snapshot(), query)
            lines = [bytes(line.content) for line in view.tail(TAIL)]
            if len(lines) != TAIL:
                raise RuntimeError(f"tail returned {len(lines)} lines")
            return lines

        return op

    rows = []

    def add(name: str, op: Callable[[], Any], notes: list[str]) -> None:
        ref = timed(reference, iterations)
        lac = timed(op, iterations)
        m, r = median(lac), median(ref)
        rows.append(
            Row(
                f"snapshot + tail {TAIL}, {label}, {name}",
                f"{fmt_ms(m)} (p95 {fmt_ms(percentile(lac, 95))})",
                f"{fmt_ms(r)} deque tail",
                m / r,
                f"< {fmt_ms(TARGET)}",
                m < TARGET,
                notes=notes,
                data={"median": m, "p95": percentile(lac, 95), "reference": r},
            )
        )

    store = LogStore(budget_bytes=BUDGET)
    t0 = time.perf_counter()
    fill(store, ["app"], total)
    fill_seconds = time.perf_counter() - t0
    if store.counts("app").stdout_lines != total or store.evicted_blocks:
        raise RuntimeError(f"store not filled as asked: {store.counts('app')}")
    blocks = len(store.snapshot().processes["app"].blocks)
    add(
        "1 process",
        tail_op(store, LogQuery(processes=("app",))),
        [
            f"filled in {fill_seconds:.1f} s; {blocks} blocks of up to 1 MiB; "
            f"{iterations} iterations"
        ],
    )

    filtered = LogQuery(processes=("app",), contains=NEEDLE)
    t0 = time.perf_counter()
    matches = len(LogView(store.snapshot(), filtered))
    first_call = time.perf_counter() - t0
    add(
        f"filter {NEEDLE.decode().strip()!r} (cached)",
        tail_op(store, filtered),
        [
            f"first call (scans and caches all {total:,} lines): {fmt_ms(first_call)}; "
            f"{matches:,} lines match"
        ],
    )
    del store

    merged = LogStore(budget_bytes=BUDGET)
    names = ["api", "worker", "db"]
    fill(merged, names, total)
    stored = sum(merged.counts(n).stdout_lines for n in names)
    if stored != total or merged.evicted_blocks:
        raise RuntimeError(f"merged store holds {stored} lines, expected {total}")
    add(
        "merged view of 3 processes",
        tail_op(merged, LogQuery()),
        [f"{total:,} lines split between {', '.join(names)}, appended interleaved"],
    )
    return rows


if __name__ == "__main__":
    sys.exit(main(run, __doc__))
