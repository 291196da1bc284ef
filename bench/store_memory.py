"""store memory: what 1M lines of 100 bytes, and 10M short `seq` lines, cost in the log store.

The lines (99 visible bytes plus a newline, distinct contents) are appended to a
``lacrimosa.engine.logs.store.LogStore`` in chunks of random sizes between 64 KiB and 1 MiB that cut lines
anywhere, as pipe reads would. The measurement runs in a fresh interpreter (a child of this
script) so that nothing else lives in its heap. Three views, all reported:

- accounting: ``store.stats()["bytes"]``, what the store counts against its budget;
- allocated: the bytes of every numpy array the store's blocks hold (buffers and metadata, at
  their capacity, touched or not);
- RSS growth: memory held after the appends minus before creating the store (resident memory
  from ``/proc/self/statm``, plus the blocks' shared memory not mapped into the page tables: see
  ``unmapped_shared_bytes``), so allocator overhead and garbage the heap did not give back count
  too;
  the peak (``ru_maxrss``) and the growth left after ``malloc_trim(0)`` are in the notes.

Target: at most 1.15 x raw bytes + 8 bytes a line.

Second case, where metadata dominates: the output of ``seq 1 10000000`` (10M lines of 1 to 8
digits, 78.9 MB raw), appended in chunks of random sizes between 4 KiB and 64 KiB (what reads of
a pipe from a fast writer bring). Accounting and RSS growth against the raw bytes; target: at most
2 x raw.
"""

from __future__ import annotations

import ctypes
import gc
import json
import random
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import Row, code_root, fmt_mb, main, rss_bytes, unmapped_shared_bytes, use_root

LINES = 1_000_000
QUICK_LINES = 100_000
LINE_BYTES = 100
CHUNK_MIN = 64 << 10
CHUNK_MAX = 1 << 20
BUDGET = 1 << 30  # far above what is stored: this measures holding, not evicting
SEQ_LINES = 10_000_000
QUICK_SEQ_LINES = 1_000_000
SEQ_CHUNK_MIN = 4 << 10
SEQ_CHUNK_MAX = 64 << 10
SEQ_TARGET = 2.0  # x raw


def target_bytes(lines: int) -> float:
    return 1.15 * lines * LINE_BYTES + 8 * lines


def _lines(count: int, batch: int = 50_000):
    """Batches of distinct 100-byte lines (99 bytes and a newline)."""
    for start in range(0, count, batch):
        stop = min(start + batch, count)
        yield b"".join(b"%-98d.\n" % i for i in range(start, stop))


def _seq_lines(count: int, batch: int = 500_000):
    """Batches of the output of ``seq 1 count``."""
    for start in range(1, count + 1, batch):
        stop = min(start + batch, count + 1)
        yield b"\n".join(b"%d" % i for i in range(start, stop)) + b"\n"


def _chunks(count: int, seed: int = 1, seq: bool = False):
    """The lines re-cut into chunks of random size (64 KiB .. 1 MiB; for ``seq``, 4 .. 64 KiB),
    as pipe reads come."""
    rng = random.Random(seed)
    pending = b""
    low, high = (SEQ_CHUNK_MIN, SEQ_CHUNK_MAX) if seq else (CHUNK_MIN, CHUNK_MAX)
    for batch in _seq_lines(count) if seq else _lines(count):
        pending += batch
        while True:
            size = rng.randint(low, high)
            if len(pending) < size:
                break
            yield pending[:size]
            pending = pending[size:]
    if pending:
        yield pending


def measure(count: int, seq: bool = False) -> dict[str, float]:
    """Runs in the fresh child: append, then look at the store and the process."""
    import numpy as np  # imported before the baseline, as the engine needs it

    from lacrimosa.engine.logs.store import LogStore

    gc.collect()
    rss_before = rss_bytes()
    shared_before = unmapped_shared_bytes()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    store = LogStore(budget_bytes=BUDGET)
    raw = 0
    for chunk in _chunks(count, seq=seq):
        raw += len(chunk)
        store.append("app", 0, chunk)
    store.flush("app", 0)
    del chunk
    gc.collect()
    rss_after = rss_bytes() + unmapped_shared_bytes() - shared_before
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    counts = store.counts("app")
    expected_bytes = raw if seq else count * LINE_BYTES
    if counts.stdout_lines != count or counts.bytes != expected_bytes != raw:
        raise RuntimeError(f"wrong store contents: {counts}, raw {raw}")
    logs = store._logs["app"]
    blocks = list(logs._sealed) + ([logs._active] if logs._active is not None else [])
    # Every numpy array a block holds, whatever the layout (--root may measure another one).
    allocated = sum(
        getattr(b, name).nbytes
        for b in blocks
        for name in type(b).__slots__
        if isinstance(getattr(b, name, None), np.ndarray)
    )
    # Diagnostic: how much of the growth is free heap that glibc kept rather than live data.
    ctypes.CDLL(None).malloc_trim(0)
    rss_trimmed = rss_bytes() + unmapped_shared_bytes() - shared_before
    return {
        "lines": count,
        "raw": raw,
        "accounted": store.stats()["bytes"],
        "allocated": allocated,
        "rss_growth": rss_after - rss_before,
        "rss_growth_after_trim": rss_trimmed - rss_before,
        "peak_growth": peak_after - max(peak_before, rss_before),
        "blocks": len(blocks),
        "evicted_blocks": store.evicted_blocks,
    }


def _measure_in_child(count: int, seq: bool) -> dict[str, float]:
    child = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            str(count),
            str(code_root()),
            "seq" if seq else "100",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        raise RuntimeError(f"measuring child failed:\n{child.stderr}")
    result: dict[str, float] = json.loads(child.stdout)
    return result


def _seq_rows(quick: bool) -> list[Row]:
    count = QUICK_SEQ_LINES if quick else SEQ_LINES
    m = _measure_in_child(count, seq=True)
    raw = m["raw"]
    label = "10M" if count == SEQ_LINES else str(count)

    def row(name: str, used: float) -> Row:
        return Row(
            f"store memory: {label} seq lines, {name}",
            f"{fmt_mb(used)} ({(used - raw) / count:.1f} B/line over raw)",
            f"{fmt_mb(raw)} raw",
            used / raw,
            f"<= {fmt_mb(SEQ_TARGET * raw)} ({SEQ_TARGET:g}x raw)",
            used <= SEQ_TARGET * raw,
        )

    rows = [row("accounting", m["accounted"]), row("RSS growth", m["rss_growth"])]
    rows[-1].notes.append(
        f"after malloc_trim(0): {fmt_mb(m['rss_growth_after_trim'])}; {m['blocks']} blocks; "
        f"chunks {SEQ_CHUNK_MIN >> 10}..{SEQ_CHUNK_MAX >> 10} KiB"
    )
    rows[-1].data = m
    return rows


def run(quick: bool) -> list[Row]:
    count = QUICK_LINES if quick else LINES
    m = _measure_in_child(count, seq=False)
    raw = m["raw"]
    limit = target_bytes(count)
    target = f"<= {fmt_mb(limit)} (1.15x raw + 8 B/line)"
    per_line = "{:.1f} B/line over raw"

    def row(name: str, used: float) -> Row:
        return Row(
            f"store memory: 1M x 100 B, {name}"
            if not quick
            else f"store memory: {count} x 100 B, {name}",
            f"{fmt_mb(used)} ({per_line.format((used - raw) / count)})",
            f"{fmt_mb(raw)} raw",
            used / raw,
            target,
            used <= limit,
        )

    rows = [
        row("accounting", m["accounted"]),
        row("allocated", m["allocated"]),
        row("RSS growth", m["rss_growth"]),
    ]
    rows[-1].notes.append(
        f"after malloc_trim(0): {fmt_mb(m['rss_growth_after_trim'])} (the difference is free "
        "heap glibc kept, not live data)"
    )
    rows[-1].notes.append(
        f"peak RSS growth {fmt_mb(m['peak_growth'])} (page tables only: most block pages are "
        f"never mapped); {m['blocks']} blocks, "
        f"{m['evicted_blocks']} evicted; chunks {CHUNK_MIN >> 10} KiB..{CHUNK_MAX >> 20} MiB"
    )
    rows[-1].data = m
    return rows + _seq_rows(quick)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        use_root(Path(sys.argv[3]))
        print(json.dumps(measure(int(sys.argv[2]), seq=sys.argv[4] == "seq")))
        sys.exit(0)
    sys.exit(main(run, __doc__))
