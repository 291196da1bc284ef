"""small writes: what 50 processes each writing a short line every 10 ms cost the console.

A real in-process ``Console`` (supervisor, guardian, log store; what ``lacrimosa up`` runs
without a screen) supervises 50 processes, each a small Python loop writing one ~50-byte line
every 10 ms to stdout (5,000 lines/s in all). After a warm-up (every child started and
writing), the console process's CPU time (user + system, all its threads, not its children:
``getrusage(RUSAGE_SELF)``) is taken over a window and given as % of one core. Also reported:
the lines captured in the window, and the capture delay (each line carries the time it was
written; the store stamps the time it took it in, to the millisecond, rounded down: a
millisecond is added, so the figures are upper bounds), median and p99.

Reference in the same rounds: supervisord (pip-installed from PyPI into a temporary venv, never
the checkout) running the same 50 programs with stdout to log files, its process's CPU time
(from /proc) over a window of the same length. A ``--quick`` run does not fetch it.

Target: at most 15% of one core.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    Row,
    Supervisord,
    fmt_ms,
    install_supervisord,
    main,
    median,
    percentile,
    process_cpu_seconds,
)

PROCESSES = 50
PERIOD = 0.010
WINDOW = 5.0
QUICK_WINDOW = 1.5
ROUNDS = 2
QUICK_ROUNDS = 1
WARMUP = 2.0
TARGET_PERCENT = 15.0

WRITER = """\
import os, sys, time
name = sys.argv[1].encode()
period = float(sys.argv[2])
i = 0
due = time.monotonic()
while True:
    i += 1
    os.write(1, b"%.6f %s tick %d status=ok\\n" % (time.time(), name, i))
    due += period
    wait = due - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    else:
        due = time.monotonic()
"""


def writer_command(script: Path, name: str) -> str:
    """The writer's command line (lacrimosa runs it with ``/bin/sh -c``, supervisord without a
    shell: both end up running the same interpreter directly)."""
    return f"{sys.executable} -I -S {script} {name} {PERIOD}"


def measure_lacrimosa(workdir: Path, script: Path, window: float) -> dict[str, float]:
    from lacrimosa.engine.config import Config, ProcessSpec
    from lacrimosa.engine.console import Console

    specs = {
        f"w{i:02d}": ProcessSpec(
            name=f"w{i:02d}", cmd="exec " + writer_command(script, f"w{i:02d}"), cwd=workdir
        )
        for i in range(PROCESSES)
    }
    console = Console(Config(path=workdir / "lacrimosa.toml", processes=specs), workdir / ".lac")
    store = console.store
    try:
        console.start()
        time.sleep(WARMUP)
        lines0 = sum(store.counts(name).stdout_lines for name in specs)
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        time.sleep(window)
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        elapsed = time.perf_counter() - t0
        lines1 = sum(store.counts(name).stdout_lines for name in specs)
        snapshot = store.snapshot()
    finally:
        console.shutdown()
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    delays = _capture_delays(snapshot)
    return {
        "percent": 100 * cpu / elapsed,
        "lines_per_second": (lines1 - lines0) / elapsed,
        "delay_median": median(delays),
        "delay_p99": percentile(delays, 99),
        "user": usage1.ru_utime - usage0.ru_utime,
        "sys": usage1.ru_stime - usage0.ru_stime,
    }


def _capture_delays(snapshot: object) -> list[float]:
    """Seconds from each line's write (its first field) to its stamp in the store, as an upper
    bound: the store stamps to the millisecond, rounded down, so a millisecond is added."""
    from lacrimosa.engine.logs.query import LogQuery, LogView
    from lacrimosa.engine.logs.store import STDOUT

    delays = []
    for line in LogView(snapshot, LogQuery(stream=STDOUT)):  # type: ignore[arg-type]
        written = float(bytes(line.content).split(b" ", 1)[0])
        delays.append(line.time + 0.001 - written)
    return delays[len(delays) // 5 :]  # past the start-up (children starting on 2 cores)


def measure_supervisord(executable: Path, folder: Path, script: Path, window: float) -> float:
    programs = {f"w{i:02d}": writer_command(script, f"w{i:02d}") for i in range(PROCESSES)}
    with Supervisord(executable, folder, programs) as sd:
        sd.start_all()
        time.sleep(WARMUP)
        cpu0 = process_cpu_seconds(sd.pid)
        t0 = time.perf_counter()
        time.sleep(window)
        cpu1 = process_cpu_seconds(sd.pid)
        elapsed = time.perf_counter() - t0
    return 100 * (cpu1 - cpu0) / elapsed


def run(quick: bool) -> list[Row]:
    window = QUICK_WINDOW if quick else WINDOW
    rounds = QUICK_ROUNDS if quick else ROUNDS
    runs: list[dict[str, float]] = []
    refs: list[float] = []
    with tempfile.TemporaryDirectory(prefix="lacrimosa-bench-") as tmp:
        folder = Path(tmp)
        script = folder / "writer.py"
        script.write_text(WRITER)
        supervisord: Path | str = "not fetched in a quick run"
        if not quick:
            supervisord = install_supervisord(folder)
        for i in range(rounds):
            runs.append(measure_lacrimosa(folder, script, window))
            if isinstance(supervisord, Path):
                round_folder = folder / f"supervisord-{i}"
                round_folder.mkdir()
                refs.append(measure_supervisord(supervisord, round_folder, script, window))
    percent = median([r["percent"] for r in runs])
    if refs:
        ref = median(refs)
        reference = f"supervisord {ref:.1f}% of a core"
        ratio: float | None = percent / ref if ref else None
    else:
        reference = f"supervisord: {supervisord}"
        ratio = None
    return [
        Row(
            f"small writes: {PROCESSES} processes, a line every {PERIOD * 1e3:g} ms",
            f"{percent:.1f}% of a core",
            reference,
            ratio,
            f"<= {TARGET_PERCENT:g}% of a core",
            percent <= TARGET_PERCENT,
            notes=[
                f"median of {rounds} windows of {window:g} s, console CPU "
                + " ".join(f"{r['percent']:.1f}%" for r in runs)
                + ("; supervisord " + " ".join(f"{r:.1f}%" for r in refs) if refs else ""),
                "captured "
                + " ".join(f"{r['lines_per_second']:.0f}" for r in runs)
                + f" lines/s (written: {PROCESSES / PERIOD:.0f}); capture delay median "
                f"{fmt_ms(median([r['delay_median'] for r in runs]))}, p99 "
                f"{fmt_ms(max(r['delay_p99'] for r in runs))} (upper bounds: the store stamps to the ms)",
            ],
            data={"runs": runs, "supervisord_percent": refs},
        )
    ]


if __name__ == "__main__":
    sys.exit(main(run, __doc__))
