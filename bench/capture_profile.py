"""capture profile: where the capture path spends its time (a diagnostic, not in run.py's table).

Runs the capture benchmark's scenario (the real Console and supervisor, a child running
``seq 1 N``) several times with ``console.store.append`` wrapped on the instance, and reports:

- the size of every chunk the supervisor read and appended (one ``os.read`` of up to 1 MiB per
  selector wake-up), as a histogram, by count and by bytes;
- per run: wall time, time inside ``LogStore.append`` (the supervisor thread's CPU there, and
  the wall time), the rest (process start, waiting for the child, selector, reads), the process's
  user/system CPU and minor page faults;
- a replay: the same bytes appended to a fresh LogStore from one thread, re-cut into 4 KiB,
  64 KiB and 1 MiB chunks and into the very sizes the console read, so the cost per append and per
  line can be compared without the child or the GIL;
- with ``--cprofile``: a cProfile of ``LogStore.append`` as called by the supervisor thread.

    python bench/capture_profile.py [--lines N] [--runs R] [--poll SECONDS] [--cprofile]
                                    [--root DIR]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import REPO, use_root

BUCKETS = (
    (0, 4095, "< 4 KiB"),
    (4096, 4096, "= 4 KiB"),
    (4097, 65535, "4-64 KiB"),
    (65536, (1 << 20) - 1, "64 KiB-1 MiB"),
    (1 << 20, 1 << 40, "= 1 MiB (full read)"),
)


def capture_once(
    n: int, workdir: Path, poll: float, profiler: cProfile.Profile | None
) -> dict[str, Any]:
    from lacrimosa.engine.config import Config, ProcessSpec
    from lacrimosa.engine.console import Console

    spec = ProcessSpec(name="seq", cmd=f"seq 1 {n}", cwd=workdir, restart="never")
    config = Config(path=workdir / "lacrimosa.toml", processes={"seq": spec})
    console = Console(config, workdir / ".lacrimosa")
    store = console.store
    original = store.append
    sizes: list[int] = []
    wall: list[float] = []
    cpu: list[float] = []

    def append(name: str, stream: int, chunk: bytes, flush: bool = False) -> int:
        c0, t0 = time.thread_time(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        try:
            return original(name, stream, chunk, flush)
        finally:
            if profiler is not None:
                profiler.disable()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
            sizes.append(len(chunk))

    store.append = append  # type: ignore[method-assign]
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    console.start()
    started = time.perf_counter() - t0
    while store.counts("seq").stdout_lines < n:
        time.sleep(poll)
    elapsed = time.perf_counter() - t0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    console.shutdown()
    data = [s for s in sizes if s]  # flushes append b""
    return {
        "seconds": elapsed,
        "start_call": started,
        "sizes": data,
        "append_wall": sum(wall),
        "append_cpu": sum(cpu),
        "user": usage1.ru_utime - usage0.ru_utime,
        "sys": usage1.ru_stime - usage0.ru_stime,
        "minflt": usage1.ru_minflt - usage0.ru_minflt,
    }


def histogram(sizes: list[int]) -> list[str]:
    total_bytes = sum(sizes) or 1
    out = [f"  {'read size':<22}{'reads':>8}{'% reads':>9}{'% bytes':>9}"]
    for low, high, label in BUCKETS:
        chosen = [s for s in sizes if low <= s <= high]
        out.append(
            f"  {label:<22}{len(chosen):>8}{100 * len(chosen) / max(len(sizes), 1):>8.1f}%"
            f"{100 * sum(chosen) / total_bytes:>8.1f}%"
        )
    return out


def replay(n: int, cuts: dict[str, list[int]]) -> list[str]:
    """Append the seq output to fresh stores, cut as given, from this thread alone."""
    from lacrimosa.engine.logs.store import LogStore

    data = b"".join(b"%d\n" % i for i in range(1, n + 1))
    out = [f"  {'chunks':<28}{'appends':>8}{'ms (median of 5)':>18}{'µs/append':>11}{'ns/line':>9}"]
    for label, sizes in cuts.items():
        chunks, pos = [], 0
        for size in sizes:
            if pos >= len(data):
                break
            chunks.append(data[pos : pos + size])
            pos += size
        while pos < len(data):
            chunks.append(data[pos : pos + (1 << 20)])
            pos += 1 << 20
        times = []
        for _ in range(5):
            store = LogStore()
            t0 = time.perf_counter()
            for chunk in chunks:
                store.append("seq", 0, chunk)
            times.append(time.perf_counter() - t0)
            assert store.counts("seq").stdout_lines == n
        m = statistics.median(times)
        out.append(
            f"  {label:<28}{len(chunks):>8}{m * 1e3:>18.1f}{m / len(chunks) * 1e6:>11.1f}"
            f"{m / n * 1e9:>9.1f}"
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--poll", type=float, default=0.001, help="store poll interval (s)")
    parser.add_argument("--cprofile", action="store_true", help="profile LogStore.append")
    parser.add_argument("--root", type=Path, default=REPO)
    args = parser.parse_args()
    use_root(args.root)
    profiler = cProfile.Profile() if args.cprofile else None
    runs = []
    with tempfile.TemporaryDirectory(prefix="lacrimosa-bench-") as tmp:
        capture_once(args.lines, Path(tmp), args.poll, None)  # warm-up
        for _ in range(args.runs):
            runs.append(capture_once(args.lines, Path(tmp), args.poll, profiler))

    print(
        f"capture of seq 1 {args.lines}, {args.runs} runs, poll every {args.poll * 1e3:g} ms"
        f"{' (cProfile on: times inflated)' if profiler else ''}"
    )
    print(
        f"  {'run':<5}{'wall ms':>9}{'start()':>9}{'append':>9}{'(cpu)':>8}{'rest':>8}"
        f"{'reads':>7}{'user ms':>9}{'sys ms':>8}{'minflt':>8}"
    )
    for i, r in enumerate(runs, 1):
        print(
            f"  {i:<5}{r['seconds'] * 1e3:>9.1f}{r['start_call'] * 1e3:>9.1f}"
            f"{r['append_wall'] * 1e3:>9.1f}{r['append_cpu'] * 1e3:>8.1f}"
            f"{(r['seconds'] - r['append_wall']) * 1e3:>8.1f}{len(r['sizes']):>7}"
            f"{r['user'] * 1e3:>9.0f}{r['sys'] * 1e3:>8.0f}{r['minflt']:>8}"
        )
    all_sizes = [s for r in runs for s in r["sizes"]]
    print("\nread sizes, all runs:")
    print("\n".join(histogram(all_sizes)))
    print(
        f"  median read {statistics.median(all_sizes):,.0f} bytes, "
        f"mean {statistics.mean(all_sizes):,.0f}"
    )

    print("\nreplay of the same bytes into a fresh LogStore (one thread, no child):")
    median_run = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    print(
        "\n".join(
            replay(
                args.lines,
                {
                    "4 KiB": [4096] * (args.lines * 8 // 4096 + 1),
                    "64 KiB": [65536] * (args.lines * 8 // 65536 + 1),
                    "1 MiB": [1 << 20] * (args.lines * 8 // (1 << 20) + 1),
                    "as read (median run)": median_run["sizes"],
                },
            )
        )
    )
    if profiler is not None:
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(15)
        print("\ncProfile of LogStore.append in the supervisor thread, all runs:")
        print(stream.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
