"""tui frame: time per frame of the log view, 10M lines stored, 100k lines/s arriving.

The real app (``lacrimosa.tui.app.LacrimosaApp``) runs headless under ``app.run_test(size=(120, 40))`` on
a ``Console`` of 3 processes (not started: the bench writes their output into the store itself).
The store is filled with 10M short lines first (split between the 3 processes); then a writer
thread appends 100k lines/s (a ~1000-line chunk every 10 ms, round-robin over the processes,
like pipe reads) while the app does what it always does: its timer notices new lines, a worker
rebuilds the LogView, the log pane follows the end, and the compositor repaints it. The view
shown is the default one: all processes merged.

Measured, with the app's own methods wrapped on the instances (nothing in tui/ is changed):

- frame: each time the compositor asks the log pane for its lines (``render_lines``) and the
  pane's ``render_line`` runs for every visible row (formatting the new lines included); median
  and p95. Repaints that Textual served from its own line cache (nothing new to draw) and
  partial ones are counted in the notes but not timed as frames.
- view rebuild: each ``Console.query`` the pane's worker makes to get a fresh LogView (a thread,
  not the UI thread, but it holds the GIL while it runs); median and p95, in the notes.

Reference: the same frames with 10k lines stored instead of 10M, measured in the same run, so the
ratio shows whether a frame's cost depends on how much is stored (it should not).

Target: frame time under 16 ms.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    Row,
    fmt_ms,
    fmt_rate,
    main,
    median,
    percentile,
    require,
)
from bench.snapshot_tail import fill

LINES = 10_000_000
QUICK_LINES = 1_000_000
REFERENCE_LINES = 10_000
RATE = 100_000  # lines per second while frames are measured
WRITE_INTERVAL = 0.01
SECONDS = 6.0
QUICK_SECONDS = 1.5
SIZE = (120, 40)
TARGET = 0.016
NAMES = ["api", "worker", "db"]
BUDGET = 4 << 30


def watch_repaints(pane: Any, repainted: Callable[[Any, int, float, float], None]) -> None:
    """Have ``repainted(crop, rows_rendered, seconds, ui_thread_cpu_seconds)`` called after each
    time the compositor asks ``pane`` for its lines (``render_lines``; the rows its
    ``render_line`` drew for it: 0 when Textual served them all from its own cache). The
    methods are wrapped on the instance: nothing in tui/ is changed."""
    render_lines, render_line = pane.render_lines, pane.render_line
    rows = 0

    def counted_render_line(y: int) -> Any:
        nonlocal rows
        rows += 1
        return render_line(y)

    def timed_render_lines(crop: Any) -> Any:
        nonlocal rows
        rows = 0
        c0 = time.thread_time()
        t0 = time.perf_counter()
        strips = render_lines(crop)
        elapsed = time.perf_counter() - t0
        repainted(crop, rows, elapsed, time.thread_time() - c0)
        return strips

    pane.render_line = counted_render_line
    pane.render_lines = timed_render_lines


class Writer(threading.Thread):
    """Appends ``rate`` lines/s to the store in chunks, as the supervisor would."""

    def __init__(self, store: Any, rate: int, first: int) -> None:
        super().__init__(name="bench-writer", daemon=True)
        self.store = store
        self.rate = rate
        self.next = first
        self.written = 0
        self.stop = threading.Event()
        self.seconds = 0.0

    def run(self) -> None:
        per_tick = int(self.rate * WRITE_INTERVAL)
        t0 = time.perf_counter()
        tick = 0
        while not self.stop.is_set():
            i = self.next
            chunk = b"".join(
                b"req %d GET /items/%d 200\n" % (j, j % 1000) for j in range(i, i + per_tick)
            )
            self.store.append(NAMES[tick % len(NAMES)], 0, chunk)
            self.next += per_tick
            self.written += per_tick
            tick += 1
            # Keep the average rate even if a tick ran late (the GIL is shared with the app).
            delay = t0 + tick * WRITE_INTERVAL - time.perf_counter()
            if delay > 0:
                self.stop.wait(delay)
        self.seconds = time.perf_counter() - t0


async def measure(stored: int, seconds: float) -> dict[str, Any]:
    from lacrimosa.engine.config import Config, ProcessSpec
    from lacrimosa.engine.console import Console
    from lacrimosa.tui.app import LacrimosaApp

    with tempfile.TemporaryDirectory(prefix="lacrimosa-bench-") as tmp:
        workdir = Path(tmp)
        specs = {
            name: ProcessSpec(name=name, cmd="true", cwd=workdir, restart="never", autostart=False)
            for name in NAMES
        }
        config = Config(path=workdir / "lacrimosa.toml", processes=specs, log_budget_bytes=BUDGET)
        console = Console(config, workdir / ".lacrimosa")
        fill(console.store, NAMES, stored)

        builds: list[float] = []
        query = console.query

        def timed_query(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return query(*args, **kwargs)
            finally:
                builds.append(time.perf_counter() - t0)

        console.query = timed_query  # type: ignore[method-assign]

        app = LacrimosaApp(console)
        frames: list[float] = []
        frames_cpu: list[float] = []  # the UI thread's own CPU time: frame time minus GIL waits
        partial = 0
        async with app.run_test(size=SIZE) as pilot:
            pane = app.log_pane

            def repainted(crop: Any, rows_rendered: int, elapsed: float, cpu: float) -> None:
                nonlocal partial, cached
                if not recording:
                    return
                if rows_rendered == 0:
                    cached += 1  # Textual served every row from its own line cache
                elif crop.height >= pane.size.height and rows_rendered >= crop.height:
                    frames.append(elapsed)
                    frames_cpu.append(cpu)
                else:
                    partial += 1

            recording = False
            cached = 0
            watch_repaints(pane, repainted)
            deadline = time.monotonic() + 120
            while pane.line_count < stored:  # the first build scans everything stored
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the log pane shows {pane.line_count} of {stored} lines")
                await pilot.pause(0.05)
            shown = {line.process for line in pane.visible_lines()}
            writer = Writer(console.store, RATE, first=stored)
            builds.clear()
            recording = True
            writer.start()
            try:
                await asyncio.sleep(seconds)
            finally:
                recording = False
                writer.stop.set()
                writer.join()
            final_count = pane.line_count
            await pilot.press("q")
        if not frames:
            raise RuntimeError("the log pane was never repainted while lines arrived")
        return {
            "stored": stored,
            "frames": frames,
            "frames_cpu": frames_cpu,
            "builds": builds,
            "partial_repaints": partial,
            "cached_repaints": cached,
            "written": writer.written,
            "write_seconds": writer.seconds,
            "shown_lines": final_count,
            "processes_on_screen": sorted(shown),
        }


def run(quick: bool) -> list[Row]:
    require("lacrimosa.tui.app")
    stored = QUICK_LINES if quick else LINES
    seconds = QUICK_SECONDS if quick else SECONDS
    ref = asyncio.run(measure(REFERENCE_LINES, seconds))
    big = asyncio.run(measure(stored, seconds))
    frame, ref_frame = median(big["frames"]), median(ref["frames"])
    build, ref_build = median(big["builds"]), median(ref["builds"])
    label = f"{stored // 1_000_000}M lines stored"
    return [
        Row(
            f"tui frame: log pane repaint, {label}, {RATE // 1000}k lines/s in",
            f"{fmt_ms(frame)} (p95 {fmt_ms(percentile(big['frames'], 95))})",
            f"{fmt_ms(ref_frame)} with {REFERENCE_LINES // 1000}k stored",
            frame / ref_frame,
            f"< {fmt_ms(TARGET)}",
            frame < TARGET,
            notes=[
                f"{len(big['frames'])} full repaints in {seconds:.1f} s "
                f"(not counted: {big['partial_repaints']} partial, {big['cached_repaints']} served "
                "from Textual's line cache), "
                f"{SIZE[0]}x{SIZE[1]} terminal, merged view of {len(NAMES)} processes",
                "UI-thread CPU per frame (the rest is waiting for the GIL): median "
                f"{fmt_ms(median(big['frames_cpu']))}, "
                f"p95 {fmt_ms(percentile(big['frames_cpu'], 95))}; "
                f"with {REFERENCE_LINES // 1000}k stored {fmt_ms(median(ref['frames_cpu']))}",
                f"writer achieved {fmt_rate(big['written'] / big['write_seconds'])} "
                f"(asked {fmt_rate(RATE)}); "
                f"the pane showed {big['shown_lines']:,} lines at the end",
            ],
            data={
                "frame_median": frame,
                "frame_p95": percentile(big["frames"], 95),
                "reference_median": ref_frame,
                "frames": big["frames"],
                "reference_frames": ref["frames"],
            },
        ),
        Row(
            f"tui view rebuild (worker thread), {label}",
            f"{fmt_ms(build)} (p95 {fmt_ms(percentile(big['builds'], 95))})",
            f"{fmt_ms(ref_build)} with {REFERENCE_LINES // 1000}k stored",
            build / ref_build,
            "(off the UI thread)",
            None,
            notes=[f"{len(big['builds'])} rebuilds; each holds the GIL while it runs"],
            data={
                "build_median": build,
                "build_p95": percentile(big["builds"], 95),
                "reference_median": ref_build,
                "builds": big["builds"],
            },
        ),
    ]


if __name__ == "__main__":
    sys.exit(main(run, __doc__))
