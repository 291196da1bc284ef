"""store memory: what 1M lines of 100 bytes cost in the log store, against the raw bytes.

The lines (99 visible bytes plus a newline, distinct contents) are appended to a
``lacrimosa.engine.logstore.LogStore`` in chunks of random sizes between 64 KiB and 1 MiB that cut lines
anywhere, as pipe reads would. The measurement runs in a fresh interpreter (a child of this
script) so that nothing else lives in its heap. Three views, all reported:

- accounting: ``store.stats()["bytes"]``, what the store counts against its budget;
- allocated: the bytes of every numpy array the store's blocks hold (buffers and metadata, at
  their capacity, touched or not);
- RSS growth: resident memory after the appends minus before creating the store
  (``/proc/self/statm``), so allocator overhead and garbage the heap did not give back count too;
  the peak (``ru_maxrss``) and the growth left after ``malloc_trim(0)`` are in the notes.

Target: at most 1.15 x raw bytes + 8 bytes a line.
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

from bench._common import Row, code_root, fmt_mb, main, rss_bytes, use_root

LINES = 1_000_000
QUICK_LINES = 100_000
LINE_BYTES = 100
CHUNK_MIN = 64 << 10
CHUNK_MAX = 1 << 20
BUDGET = 1 << 30  # far above what is stored: this measures holding, not evicting


def target_bytes(lines: int) -> float:
    return 1.15 * lines * LINE_BYTES + 8 * lines


def _lines(count: int, batch: int = 50_000):
    """Batches of distinct 100-byte lines (99 bytes and a newline)."""
    for start in range(0, count, batch):
        stop = min(start + batch, count)
        yield b"".join(b"%-98d.\n" % i for i in range(start, stop))


def _chunks(count: int, seed: int = 1):
    """The lines re-cut into chunks of random size (64 KiB .. 1 MiB), as pipe reads come."""
    rng = random.Random(seed)
    pending = b""
    for batch in _lines(count):
        pending += batch
        while True:
            size = rng.randint(CHUNK_MIN, CHUNK_MAX)
            if len(pending) < size:
                break
            yield pending[:size]
            pending = pending[size:]
    if pending:
        yield pending


def measure(count: int) -> dict[str, float]:
    """Runs in the fresh child: append, then look at the store and the process."""
    import numpy as np  # noqa: F401  (imported before the baseline, as the engine needs it)

    from lacrimosa.engine.logstore import LogStore

    gc.collect()
    rss_before = rss_bytes()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    store = LogStore(budget_bytes=BUDGET)
    raw = 0
    for chunk in _chunks(count):
        raw += len(chunk)
        store.append("app", 0, chunk)
    store.flush("app", 0)
    del chunk
    gc.collect()
    rss_after = rss_bytes()
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    counts = store.counts("app")
    if counts.stdout_lines != count or counts.bytes != count * LINE_BYTES != raw:
        raise RuntimeError(f"wrong store contents: {counts}, raw {raw}")
    logs = store._logs["app"]
    blocks = list(logs._sealed) + ([logs._active] if logs._active is not None else [])
    allocated = sum(
        b.data.nbytes + b.ids.nbytes + b.ends.nbytes + b.times.nbytes + b.flags.nbytes
        for b in blocks
    )
    # Diagnostic: how much of the growth is free heap that glibc kept rather than live data.
    ctypes.CDLL(None).malloc_trim(0)
    rss_trimmed = rss_bytes()
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


def run(quick: bool) -> list[Row]:
    count = QUICK_LINES if quick else LINES
    child = subprocess.run(
        [sys.executable, __file__, "--child", str(count), str(code_root())],
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        raise RuntimeError(f"measuring child failed:\n{child.stderr}")
    m = json.loads(child.stdout)
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
        f"peak RSS growth {fmt_mb(m['peak_growth'])}; {m['blocks']} blocks, "
        f"{m['evicted_blocks']} evicted; chunks {CHUNK_MIN >> 10} KiB..{CHUNK_MAX >> 20} MiB"
    )
    rows[-1].data = m
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        use_root(Path(sys.argv[3]))
        print(json.dumps(measure(int(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main(run, __doc__))
