"""bulk logs: `lacrimosa logs NAME --lines 1000000` (text and --json) against a running console.

A real headless console (``python -m lacrimosa.api.cli up --headless`` in a temporary project)
runs two processes: ``big`` writes 1,000,000 lines of ~50 bytes (``0000001 GET /api/items/1 200
12ms user=alice``) once and then idles; ``ticker`` writes a line every 10 ms for ever. Once the
store holds all of ``big``'s lines, and the headless console has printed them to its output (it
prints every line it captures), each round times, alternating:

- ``lacrimosa logs big --lines 1000000 > /dev/null`` (text) and the same with ``--json``, as
  separate CLI processes (bytecode cached), wall time from spawn to exit, output checked (line
  count, first and last line);
- the console's CPU time (user + system, from /proc) and its RSS growth during the read (peak of
  samples taken every 10 ms, minus the RSS before; shared memory left out: see ``_proc_rss``);
- the worst latency of ``ps`` from a concurrent client (one connection, polling every 20 ms)
  while the read runs;
- the capture delay: for the ``ticker`` lines written while the read ran, the largest delay
  from the time the ticker printed in the line to the time the console stamped it on capture;
  also (notes) the largest gap between consecutive ticker lines' store times, 10 ms when nothing
  was held up, which also counts the ticker itself being scheduled late on a busy machine.

Reference in the same rounds: ``cat`` of the same bytes from a file to /dev/null (spawn to exit).

Targets: text under 1 s, --json under 2 s; no ``ps`` and no capture delayed more than 100 ms.
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    Row,
    Skip,
    code_root,
    fmt_mb,
    fmt_ms,
    headless_console,
    main,
    median,
    package_shim,
    proc_sizes,
    startup_env,
)

LINES = 1_000_000
QUICK_LINES = 100_000
ROUNDS = 3
QUICK_ROUNDS = 1
TEXT_TARGET = 1.0
JSON_TARGET = 2.0
DELAY_TARGET = 0.100
PS_EVERY = 0.020
TICK = 0.010
READY_TIMEOUT = 120.0
ENTRY_POINT = "import sys; from lacrimosa.api.cli import main; sys.exit(main())"
LINE = "%07d GET /api/items/%d 200 12ms user=alice"

BIG = (
    "import sys, time\n"
    "out = sys.stdout.buffer\n"
    "for start in range(1, {lines} + 1, 10000):\n"
    "    out.write(''.join('{line}\\n' % (i, i % 1000) for i in range(start, min(start + 10000,"
    " {lines} + 1))).encode())\n"
    "out.flush()\n"
    "time.sleep(1e6)\n"
)
TICKER = "import time\nwhile True:\n    print(time.time())\n    time.sleep({tick})\n"


def _proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_rss(pid: int) -> int:
    """The console's resident memory less its shared memory: the log store's blocks are memfds,
    already in memory before a read, whose pages a read maps (RssShmem grows by what it touches
    without a byte more in use). What a read allocates is anonymous (or file) memory."""
    return sum(proc_sizes(f"/proc/{pid}/status", "RssAnon", "RssFile").values())


class _Watcher(threading.Thread):
    """While a read runs: ``ps`` every PS_EVERY over one connection (worst latency), and the
    console's RSS every 10 ms (peak)."""

    def __init__(self, home: Path, pid: int) -> None:
        super().__init__(daemon=True)
        from lacrimosa.api.client import ControlClient

        self.client = ControlClient(home, timeout=60)
        self.pid = pid
        self.stop = threading.Event()
        self.worst_ps = 0.0
        self.peak_rss = _proc_rss(pid)
        self.polls = 0

    def run(self) -> None:
        next_ps = time.perf_counter()
        while not self.stop.is_set():
            now = time.perf_counter()
            if now >= next_ps:
                self.client.call("ps")
                took = time.perf_counter() - now
                self.worst_ps = max(self.worst_ps, took)
                self.polls += 1
                next_ps = now + PS_EVERY
            self.peak_rss = max(self.peak_rss, _proc_rss(self.pid))
            time.sleep(0.010)
        self.client.close()


def _wait_filled(cli: list[str], cwd: Path, env: dict[str, str], lines: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        done = subprocess.run(
            [*cli, "logs", "big", "--lines", "1", "--json"],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0 and done.stdout.strip():
            last = json.loads(done.stdout.splitlines()[-1])["text"]
            if last == LINE % (lines, lines % 1000):
                return
        else:
            last = done.stderr.strip()
        time.sleep(0.2)
    raise RuntimeError(f"the console did not hold {lines} lines in {READY_TIMEOUT}s: {last!r}")


def _wait_printed(cli: list[str], cwd: Path, env: dict[str, str], lines: int) -> None:
    """Until the headless console has printed (or dropped) the lines it took in: it prints every
    captured line to its output, and a read timed while it still works through a million lines
    measures that work too (0.6 s of the console's CPU a read instead of 0.1)."""
    deadline = time.monotonic() + READY_TIMEOUT
    handed = 0
    while time.monotonic() < deadline:
        done = subprocess.run(
            [*cli, "status", "--json"], cwd=cwd, env=env, capture_output=True, text=True
        )
        if done.returncode == 0:
            printer = json.loads(done.stdout)["headless"]
            handed = printer["lines_printed"] + printer["lines_dropped"]
            if handed >= lines:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the console printed {handed} of {lines} lines in {READY_TIMEOUT}s")


def _ticker_delays(home: Path, t0: float, t1: float) -> tuple[float, float]:
    """For the ticker lines received in [t0, t1]: the largest delay from the ticker writing a
    line (the time it printed) to the console stamping it (its store time), and the largest
    gap between consecutive store times (which also counts the ticker being scheduled late)."""
    from lacrimosa.api.client import ControlClient

    with ControlClient(home) as client:
        reply = client.call("logs", name="ticker", lines=100_000, since=time.time() - t0 + 1)
    lines = [line for line in reply["lines"] if t0 - 0.05 <= line["time"] <= t1 + 0.05]
    if len(lines) < 2:
        return t1 - t0, t1 - t0
    delay = max(line["time"] - float(line["text"]) for line in lines)
    gap = max(b["time"] - a["time"] for a, b in itertools.pairwise(lines))
    return delay, gap


def _timed_read(
    cmd: list[str], cwd: Path, env: dict[str, str], home: Path, pid: int, check: Any
) -> dict[str, float]:
    watcher = _Watcher(home, pid)
    rss0 = _proc_rss(pid)
    cpu0 = _proc_cpu(pid)
    watcher.start()
    time.sleep(0.05)
    wall0 = time.time()
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        done = subprocess.run(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.PIPE, check=False
        )
        elapsed = time.perf_counter() - t0
        wall1 = time.time()
        cpu = _proc_cpu(pid) - cpu0
        time.sleep(0.05)
        watcher.stop.set()
        watcher.join()
        if done.returncode != 0:
            raise RuntimeError(f"{cmd} exited {done.returncode}: {done.stderr.decode()[-500:]}")
        out.seek(0)
        check(out)
    delay, gap = _ticker_delays(home, wall0, wall1)
    return {
        "seconds": elapsed,
        "console_cpu": cpu,
        "rss_growth": watcher.peak_rss - rss0,
        "worst_ps": watcher.worst_ps,
        "ps_polls": watcher.polls,
        "capture_delay": delay,
        "capture_gap": gap,
    }


def _check_text(lines: int) -> Any:
    def check(out: Any) -> None:
        first = out.readline().rstrip(b"\n").decode()
        count = 1 + sum(block.count(b"\n") for block in iter(lambda: out.read(1 << 20), b""))
        out.seek(-60, os.SEEK_END)
        last = out.read().rstrip(b"\n").rsplit(b"\n", 1)[-1].decode()
        if (first, count, last) != (LINE % (1, 1), lines, LINE % (lines, lines % 1000)):
            raise RuntimeError(f"unexpected text output: {first!r} ... {last!r}, {count} lines")

    return check


def _check_json(lines: int) -> Any:
    def check(out: Any) -> None:
        first = json.loads(out.readline())
        count = 1 + sum(block.count(b"\n") for block in iter(lambda: out.read(1 << 20), b""))
        out.seek(-300, os.SEEK_END)
        last = json.loads(out.read().rstrip(b"\n").rsplit(b"\n", 1)[-1])
        expected = (LINE % (1, 1), lines, LINE % (lines, lines % 1000))
        if (first["text"], count, last["text"]) != expected or last["stream"] != "stdout":
            raise RuntimeError(f"unexpected --json output: {first} ... {last}, {count} lines")

    return check


def measure(lines: int, rounds: int) -> dict[str, list[dict[str, float]]]:
    root = code_root()
    with tempfile.TemporaryDirectory(prefix="lacrimosa-bench-") as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        config = project / "lacrimosa.toml"
        config.write_text(_config(lines))
        raw_file = Path(tmp) / "raw.txt"
        with raw_file.open("w") as f:
            for start in range(1, lines + 1, 100_000):
                f.write(
                    "".join(
                        LINE % (i, i % 1000) + "\n"
                        for i in range(start, min(start + 100_000, lines + 1))
                    )
                )
        env = startup_env(Path(tmp) / "pycache")
        env["PYTHONPATH"] = str(package_shim(root, Path(tmp) / "shim"))
        env.pop("LACRIMOSA_HOME", None)
        home = project / ".lacrimosa"
        cli = [sys.executable, "-c", ENTRY_POINT]
        log = Path(tmp) / "console.log"
        with headless_console(config, env, log, cli) as console:
            try:
                _wait_filled(cli, project, env, lines)
                _wait_printed(cli, project, env, lines)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\nconsole log:\n{log.read_text()[-2000:]}") from None
            results: dict[str, list[dict[str, float]]] = {"text": [], "json": [], "cat": []}
            reads = {
                "text": ([*cli, "logs", "big", "--lines", str(lines)], _check_text(lines)),
                "json": (
                    [*cli, "logs", "big", "--lines", str(lines), "--json"],
                    _check_json(lines),
                ),
                "cat": (["cat", str(raw_file)], _check_text(lines)),
            }
            subprocess.run([*cli, "ps"], cwd=project, env=env, capture_output=True, check=True)
            for _ in range(rounds):
                for name, (cmd, check) in reads.items():
                    results[name].append(_timed_read(cmd, project, env, home, console.pid, check))
    return results


def _config(lines: int) -> str:
    big = BIG.format(lines=lines, line=LINE)
    ticker = TICKER.format(tick=TICK)
    # TOML basic strings take JSON's escapes for these characters.
    return (
        "[processes.big]\n"
        f"cmd = {json.dumps(_shell_quote(sys.executable) + ' -c ' + _shell_quote(big))}\n"
        'restart = "never"\n\n'
        "[processes.ticker]\n"
        f"cmd = {json.dumps(_shell_quote(sys.executable) + ' -u -c ' + _shell_quote(ticker))}\n"
        'restart = "never"\n\n'
        "[logs]\n"
        'budget = "1GiB"\n'
    )


def _shell_quote(text: str) -> str:
    return shlex.quote(text)


def run(quick: bool) -> list[Row]:
    root = code_root()
    if not (root / "api" / "cli.py").is_file():
        raise Skip("api/cli.py does not exist yet")
    lines = QUICK_LINES if quick else LINES
    rounds = QUICK_ROUNDS if quick else ROUNDS
    results = measure(lines, rounds)
    cat = median([r["seconds"] for r in results["cat"]])
    label = "1M" if lines == LINES else f"{lines:,}"
    rows = []
    for name, target in (("text", TEXT_TARGET), ("json", JSON_TARGET)):
        runs = results[name]
        seconds = median([r["seconds"] for r in runs])
        worst_ps = max(r["worst_ps"] for r in runs)
        delay = max(r["capture_delay"] for r in runs)
        flag = " --json" if name == "json" else ""
        rows.append(
            Row(
                f"bulk logs: logs NAME --lines {label}{flag}",
                fmt_ms(seconds),
                f"{fmt_ms(cat)} cat of the same bytes",
                seconds / cat,
                f"< {fmt_ms(target)}",
                seconds < target,
                notes=[
                    "runs (s): " + " ".join(f"{r['seconds']:.2f}" for r in runs),
                    "console CPU (s): " + " ".join(f"{r['console_cpu']:.2f}" for r in runs),
                    "console RSS growth: " + " ".join(fmt_mb(r["rss_growth"]) for r in runs),
                ],
                data={"runs": runs, "reference_runs": results["cat"]},
            )
        )
        rows.append(
            Row(
                f"bulk logs: during{flag or ' text'}, worst ps latency / capture delay",
                f"{fmt_ms(worst_ps)} / {fmt_ms(delay)}",
                f"{fmt_ms(max(r['worst_ps'] for r in results['cat']))} / "
                f"{fmt_ms(max(r['capture_delay'] for r in results['cat']))} during cat",
                None,
                f"< {fmt_ms(DELAY_TARGET)} / < {fmt_ms(DELAY_TARGET)}",
                worst_ps < DELAY_TARGET and delay < DELAY_TARGET,
                notes=[
                    "worst ps per run: " + " ".join(fmt_ms(r["worst_ps"]) for r in runs),
                    "capture delay (ticker wrote -> console stamped) per run: "
                    + " ".join(fmt_ms(r["capture_delay"]) for r in runs),
                    "largest gap between ticker lines per run (ticker scheduling included): "
                    + " ".join(fmt_ms(r["capture_gap"]) for r in runs)
                    + f"; during cat: {fmt_ms(max(r['capture_gap'] for r in results['cat']))}",
                ],
            )
        )
    return rows


if __name__ == "__main__":
    sys.exit(main(run, __doc__))
