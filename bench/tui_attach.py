"""tui attach: the TUI attached over the socket (``lacrimosa tui``) against the TUI in process.

A console runs in a child interpreter (``--serve``: a ``Console`` of 3 processes that are not
started, its store filled with 10M short lines, a ``ControlServer`` on its socket, and a writer
thread appending 100k lines/s, as bench/tui_frame.py does in process). This process runs the real
app (``LacrimosaApp``) headless under ``run_test(size=(120, 40))`` on a ``RemoteConsole``
connected to that socket: what ``lacrimosa tui`` runs.

Measured, the same way for the attached app and, in the same run, for the app in process (a
``Console`` here, filled and written to the same way):

- frame: each full repaint of the log pane (``render_lines`` with ``render_line`` run for every
  visible row), following the merged view while lines arrive; median and p95.
- key to frame: ``e`` (the next stream: a new query, so a new view from the console) posted as
  a terminal driver posts a key, until the first full repaint of the pane showing the view built
  for the new query; median and p95 of a key every 200 ms.
- RSS of this process after 60 s attached while the writer runs (the TUI fetches only the lines
  it shows: its memory must not grow with the store), its growth since attaching and in the
  second half (bounded caches fill first; growth that goes on is a leak).
- capture: the console's capture rate (``seq 1 N`` started by a ``start`` request, until its N
  lines are stored) with 3 attached TUIs following the merged view, against none, alternated.

Targets: attached frame and key to frame within 2x the in-process ones (a frame is a few ms in
process; the socket adds a round trip only when a new view is built, off the UI thread); RSS
growth under 2 MB in the second 30 s; capture with 3 TUIs at least 0.8x of none.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    Row,
    code_root,
    fmt_ms,
    fmt_rate,
    main,
    median,
    percentile,
    require,
    use_root,
)
from bench.snapshot_tail import fill
from bench.tui_frame import RATE, SIZE, Writer, watch_repaints

LINES = 10_000_000
QUICK_LINES = 500_000
SECONDS = 6.0  # of frames and keys, each app
QUICK_SECONDS = 1.5
RSS_SECONDS = 60.0
QUICK_RSS_SECONDS = 4.0
FLOOD_LINES = 3_000_000  # `seq 1 N` for the capture rounds
QUICK_FLOOD_LINES = 300_000
ROUNDS = 3
QUICK_ROUNDS = 1
KEY_INTERVAL = 0.2
KEY_TIMEOUT = 3.0
NAMES = ["api", "worker", "db"]
BUDGET = 4 << 30
READY_TIMEOUT = 300.0
FRAME_RATIO_TARGET = 2.0
LATE_GROWTH_TARGET = 2e6  # bytes of RSS growth allowed in the second half of the RSS run
CAPTURE_TARGET = 0.8


# -- the console, in a child interpreter -----------------------------------------------------------


def make_console(home: Path, flood_lines: int) -> Any:
    from lacrimosa.engine.config import Config, ProcessSpec
    from lacrimosa.engine.console import Console

    workdir = home.parent
    specs = {
        name: ProcessSpec(name=name, cmd="true", cwd=workdir, restart="never", autostart=False)
        for name in NAMES
    }
    specs["flood"] = ProcessSpec(
        name="flood", cmd=f"seq 1 {flood_lines}", cwd=workdir, restart="never", autostart=False
    )
    config = Config(path=workdir / "lacrimosa.toml", processes=specs, log_budget_bytes=BUDGET)
    return Console(config, home)


def serve(home: Path, stored: int, flood_lines: int) -> None:
    """The child: a filled console on its socket; commands on stdin (``writer on``, ``writer
    off``), until stdin closes."""
    from lacrimosa.api.server import ControlServer

    console = make_console(home, flood_lines)
    fill(console.store, NAMES, stored)
    server = ControlServer(console)
    server.start()
    console.start()
    writer: Writer | None = None
    print("ready", flush=True)
    try:
        for command in sys.stdin:
            if command.strip() == "writer on" and writer is None:
                writer = Writer(console.store, RATE, first=stored)
                writer.start()
            elif command.strip() == "writer off" and writer is not None:
                writer.stop.set()
                writer.join()
                stored = writer.next
                writer = None
            print("ok", flush=True)
    finally:
        if writer is not None:
            writer.stop.set()
        console.shutdown()
        server.close()


class ServedConsole:
    """The child console, driven from here."""

    def __init__(self, folder: Path, stored: int, flood_lines: int) -> None:
        self.home = folder / ".lacrimosa"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.home), str(stored), str(flood_lines)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "LACRIMOSA_BENCH_ROOT": str(code_root())},
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the served console did not start")

    def command(self, text: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        self.proc.stdout.readline()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- measuring an app ------------------------------------------------------------------------------


class Probe:
    """Full repaints of an app's log pane, and the keys waiting for theirs."""

    def __init__(self, app: Any) -> None:
        self.frames: list[float] = []
        self.recording = False
        self.pending: tuple[float, Callable[[], bool]] | None = None
        self.key_latencies: list[float] = []
        self.key_seen = asyncio.Event()
        pane = app.log_pane

        def repainted(crop: Any, rows: int, elapsed: float, cpu: float) -> None:
            if crop.height >= pane.size.height and rows >= crop.height:
                if self.recording:
                    self.frames.append(elapsed)
                if self.pending is not None and self.pending[1]():
                    self.key_latencies.append(time.perf_counter() - self.pending[0])
                    self.pending = None
                    self.key_seen.set()

        watch_repaints(pane, repainted)


async def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def frames_and_keys(app: Any, seconds: float, stored: int) -> Probe:
    """Follow the merged view while lines arrive for ``seconds`` (frames), then press ``e``
    every KEY_INTERVAL for ``seconds`` (key to frame)."""
    from textual import events

    probe = Probe(app)
    pane = app.log_pane
    await wait_for(lambda: pane.line_count >= stored, "the first view")
    probe.recording = True
    await asyncio.sleep(seconds)
    probe.recording = False
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        index = (app._stream_index + 1) % 3

        def shown(index: int = index) -> bool:
            return app._stream_index == index and pane.is_current

        probe.key_seen.clear()
        probe.pending = (time.perf_counter(), shown)
        app._driver.send_message(events.Key("e", "e"))
        try:
            await asyncio.wait_for(probe.key_seen.wait(), KEY_TIMEOUT)
        except TimeoutError:
            probe.pending = None
        await asyncio.sleep(KEY_INTERVAL)
    return probe


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def measure_attached(
    served: ServedConsole, stored: int, seconds: float, rss_seconds: float
) -> dict[str, Any]:
    from lacrimosa.api.remote_console import RemoteConsole
    from lacrimosa.tui.app import LacrimosaApp

    remote = RemoteConsole(served.home)
    app = LacrimosaApp(remote, attached=True)
    try:
        async with app.run_test(size=SIZE) as pilot:
            rss_before = rss()
            served.command("writer on")
            probe = await frames_and_keys(app, seconds, stored)
            # Sampled halfway and at the end: the caches (rendered rows, the window of lines)
            # are bounded, so growth levels off; what goes on growing is a leak.
            left = max(rss_seconds - 2 * seconds, 0.0)
            await asyncio.sleep(left / 2)
            rss_mid = rss()
            await asyncio.sleep(left / 2)
            rss_after = rss()
            served.command("writer off")
            await pilot.press("d")
    finally:
        remote.close()
    return {"probe": probe, "rss_before": rss_before, "rss_mid": rss_mid, "rss_after": rss_after}


async def measure_in_process(stored: int, seconds: float) -> Probe:
    from lacrimosa.tui.app import LacrimosaApp

    with tempfile.TemporaryDirectory(prefix="lacrimosa-bench-") as tmp:
        console = make_console(Path(tmp) / ".lacrimosa", 1)
        fill(console.store, NAMES, stored)
        app = LacrimosaApp(console)
        async with app.run_test(size=SIZE):
            writer = Writer(console.store, RATE, first=stored)
            writer.start()
            try:
                probe = await frames_and_keys(app, seconds, stored)
            finally:
                writer.stop.set()
                writer.join()
            app.exit()
    return probe


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system) process ``pid`` has used itself (not its children)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def capture_seconds(home: Path, flood_lines: int, console_pid: int) -> tuple[float, float]:
    """Start ``seq 1 N`` and time until its N lines are stored; also the console's CPU time
    meanwhile (capture, and serving whoever is attached)."""
    from lacrimosa.api.client import ControlClient

    with ControlClient(home) as client:

        def flood_lines_now() -> int:
            processes = client.call("ps")["processes"]
            return int(next(p for p in processes if p["name"] == "flood")["stdout_lines"])

        before = flood_lines_now()
        cpu = cpu_seconds(console_pid)
        t0 = time.perf_counter()
        client.call("start", name="flood")
        while flood_lines_now() - before < flood_lines:
            if time.perf_counter() - t0 > 120:
                raise RuntimeError("the flood was not captured within 120 s")
            time.sleep(0.002)
        return time.perf_counter() - t0, cpu_seconds(console_pid) - cpu


async def measure_capture(served: ServedConsole, flood_lines: int, rounds: int) -> dict[str, Any]:
    from lacrimosa.api.remote_console import RemoteConsole
    from lacrimosa.tui.app import LacrimosaApp

    alone: list[tuple[float, float]] = []  # (seconds, the console's CPU seconds) per round
    watched: list[tuple[float, float]] = []
    for _ in range(rounds):
        alone.append(
            await asyncio.to_thread(capture_seconds, served.home, flood_lines, served.proc.pid)
        )
        remotes = [RemoteConsole(served.home) for _ in range(3)]
        apps = [LacrimosaApp(remote, attached=True) for remote in remotes]
        try:
            async with (
                apps[0].run_test(size=SIZE),
                apps[1].run_test(size=SIZE),
                apps[2].run_test(size=SIZE),
            ):
                await wait_for(lambda apps=apps: all(a.log_pane.line_count for a in apps), "3 TUIs")
                watched.append(
                    await asyncio.to_thread(
                        capture_seconds, served.home, flood_lines, served.proc.pid
                    )
                )
                for app in apps:
                    app.exit()
        finally:
            for remote in remotes:
                remote.close()
    return {"alone": alone, "watched": watched}


def run(quick: bool) -> list[Row]:
    require("lacrimosa.api.remote_console")
    stored = QUICK_LINES if quick else LINES
    seconds = QUICK_SECONDS if quick else SECONDS
    rss_seconds = QUICK_RSS_SECONDS if quick else RSS_SECONDS
    flood = QUICK_FLOOD_LINES if quick else FLOOD_LINES
    rounds = QUICK_ROUNDS if quick else ROUNDS
    with tempfile.TemporaryDirectory(prefix="lacrimosa-bench-") as tmp:
        served = ServedConsole(Path(tmp), stored, flood)
        try:
            # Attached first: this process's RSS is then the attached TUI's alone.
            attached = asyncio.run(measure_attached(served, stored, seconds, rss_seconds))
            capture = asyncio.run(measure_capture(served, flood, rounds))
        finally:
            served.close()
    local = asyncio.run(measure_in_process(stored, seconds))
    remote: Probe = attached["probe"]
    if not remote.frames or not local.frames:
        raise RuntimeError("no full repaint of the log pane was seen")
    frame, local_frame = median(remote.frames), median(local.frames)
    keys = remote.key_latencies or [float("inf")]
    local_keys = local.key_latencies or [float("inf")]
    key, local_key = median(keys), median(local_keys)
    growth = attached["rss_after"] - attached["rss_before"]
    late_growth = attached["rss_after"] - attached["rss_mid"]
    alone = median([seconds for seconds, _ in capture["alone"]])
    watched = median([seconds for seconds, _ in capture["watched"]])
    alone_cpu = median([cpu for _, cpu in capture["alone"]])
    watched_cpu = median([cpu for _, cpu in capture["watched"]])
    label = f"{stored / 1e6:g}M lines stored, {RATE // 1000}k lines/s in"
    return [
        Row(
            f"tui attach: log pane frame, attached over the socket, {label}",
            f"{fmt_ms(frame)} (p95 {fmt_ms(percentile(remote.frames, 95))})",
            f"in process: {fmt_ms(local_frame)} (p95 {fmt_ms(percentile(local.frames, 95))})",
            frame / local_frame,
            f"<= {FRAME_RATIO_TARGET:g}x",
            frame / local_frame <= FRAME_RATIO_TARGET,
            notes=[
                f"{len(remote.frames)} / {len(local.frames)} full repaints, {SIZE[0]}x{SIZE[1]}"
            ],
            data={"frames": remote.frames, "reference_frames": local.frames},
        ),
        Row(
            "tui attach: key to frame (`e`: a new view), attached",
            f"{fmt_ms(key)} (p95 {fmt_ms(percentile(keys, 95))})",
            f"in process: {fmt_ms(local_key)} (p95 {fmt_ms(percentile(local_keys, 95))})",
            key / local_key,
            f"<= {FRAME_RATIO_TARGET:g}x",
            key / local_key <= FRAME_RATIO_TARGET,
            notes=[f"{len(remote.key_latencies)} / {len(local.key_latencies)} keys drawn"],
            data={"keys": remote.key_latencies, "reference_keys": local.key_latencies},
        ),
        Row(
            f"tui attach: the attached TUI's RSS after {rss_seconds:g} s, {label}",
            f"{attached['rss_after'] / 1e6:.1f} MB (+{growth / 1e6:.1f} MB; "
            f"+{late_growth / 1e6:.1f} MB in the second half)",
            f"at attach: {attached['rss_before'] / 1e6:.1f} MB",
            None,
            f"second half < +{LATE_GROWTH_TARGET / 1e6:g} MB",
            late_growth < LATE_GROWTH_TARGET,
            notes=[
                "the first minutes fill bounded caches (the log pane's 4,096 rendered rows, "
                "Textual's own); growth that went on in the second half would be a leak"
            ],
            data={k: attached[k] for k in ("rss_before", "rss_mid", "rss_after")},
        ),
        Row(
            f"tui attach: capture of `seq 1 {flood:,}` with 3 TUIs attached",
            fmt_rate(flood / watched),
            f"none attached: {fmt_rate(flood / alone)}",
            alone / watched,
            f">= {CAPTURE_TARGET:g}x",
            alone / watched >= CAPTURE_TARGET,
            notes=[
                f"{rounds} rounds alternated; {stored:,} lines already stored",
                f"the console's own CPU time per round: {fmt_ms(watched_cpu)} with 3 TUIs, "
                f"{fmt_ms(alone_cpu)} alone (the rest of the difference is the 3 TUIs' and "
                "everyone else's share of the cores)",
            ],
            data=capture,
        ),
    ]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        use_root(Path(os.environ.get("LACRIMOSA_BENCH_ROOT", code_root())))
        serve(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        sys.exit(0)
    sys.exit(main(run, __doc__))
