"""tui bytes: what the TUI writes to its terminal per second, 80x24, ~100 lines/s arriving.

Over SSH every byte the TUI writes crosses the link, and a slow link makes a chatty TUI lag.
The real ``lacrimosa up`` (the TUI, not headless) runs on a pseudo-terminal of 80x24 (its own
session, the pty as its controlling terminal, ``TERM=xterm-256color``), from a temporary
project folder with two processes:

- ``talker`` writes ~100 lines/s (a line every 10 ms, paced) while a file ``talk`` exists in the
  project folder, and nothing while it does not;
- ``quiet`` writes one line when it starts, then sleeps.

The bench reads the pty's master side and counts every byte the app writes, as ``script``
would. Keys are written to the master side, as a terminal would send them. Phases, one after the
other in the same console:

- following: the default view (every process merged, following the end), lines arriving;
- follow off: ``f`` pressed, lines still arriving; the log does not move, only the process
  table's counters do (lines, lines/s: the engine samples rates once a second);
- idle: ``talk`` removed, the processes running and silent; after the rates have settled to
  nothing, the only thing on screen that changes is the uptime column (a tick a second).

Each phase's figure is the median of its one-second windows (the mean is in the notes).

Reference, in the same run: mprocs (the closest terminal process runner, written in Rust),
with the same two processes on the same 80x24 pty, following its first process (``talker``) and
then idle the same way. It comes from the npm registry (``npm install mprocs``, whose package
ships its binaries) into a temporary folder, never into the checkout; without ``npm`` or the
registry it is reported as unavailable and only lacrimosa's figures are shown.

Targets: following, no more bytes/s than mprocs following; follow off and idle (nothing on
screen moves but a counter), under 2 KB/s.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import Row, code_root, median, package_shim, percentile, require

SIZE = (80, 24)  # columns, rows
RATE = 100  # lines per second written by the talker
SECONDS = 10.0  # per phase
QUICK_SECONDS = 3.0
WARM_UP = 3.0  # after the first frame, before measuring: start-up screens are not the point
SETTLE = 1.0  # after a key, before measuring the phase it starts
IDLE_SETTLE = 2.5  # after the talker stops: the rates are sampled once a second
IDLE_TARGET = 2000.0  # bytes per second
MPROCS_VERSION = "0.9.6"

TALKER = """\
import os, sys, time
paths = ["/users", "/orders", "/health", "/login", "/search?q=lamp"]
n = 0
start = time.monotonic()
while True:
    if not os.path.exists("talk"):
        time.sleep(0.05)
        start, n = time.monotonic(), 0
        continue
    n += 1
    sys.stdout.write(f"GET {paths[n % 5]} 200 {n % 170 + 3}ms request {n}\\n")
    sys.stdout.flush()
    delay = start + n / RATE - time.monotonic()
    if delay > 0:
        time.sleep(delay)
""".replace("RATE", str(RATE))
QUIET = "import time; print('quiet: ready', flush=True); time.sleep(1e6)"


class PtyApp:
    """A command on a pseudo-terminal of ``SIZE``, every byte it writes counted."""

    def __init__(self, cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))

        def own_terminal() -> None:  # in the child: a session of its own, the pty its terminal
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        env = {**env, "TERM": "xterm-256color", "COLUMNS": str(SIZE[0]), "LINES": str(SIZE[1])}
        self.proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            preexec_fn=own_terminal,
            close_fds=True,
        )
        os.close(slave)
        self.master = master
        self.total = 0
        self.samples: list[tuple[float, int]] = []  # (time, total bytes so far) per read
        self.keep: bytearray | None = None  # every byte, when asked (for diagnosis)
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="pty-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.5)
                if not ready:
                    if self.proc.poll() is not None:
                        return
                    continue
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the last holder of the slave side has gone
                return
            if not data:
                return
            now = time.monotonic()
            with self._lock:
                self.total += len(data)
                self.samples.append((now, self.total))
                if self.keep is not None:
                    self.keep += data

    def count(self) -> int:
        with self._lock:
            return self.total

    def press(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait_for_output(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count() == 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.proc.args[0]} wrote nothing to its terminal")
            time.sleep(0.05)

    def measure(self, seconds: float) -> dict[str, Any]:
        """Bytes written during the next ``seconds``: per one-second window, and in all."""
        windows: list[int] = []
        t0 = time.monotonic()
        start = before = self.count()
        for i in range(1, round(seconds) + 1):
            time.sleep(max(t0 + i - time.monotonic(), 0))
            now = self.count()
            windows.append(now - before)
            before = now
        elapsed = time.monotonic() - t0
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.proc.args[0]} exited during the measurement")
        return {
            "median": median(windows),
            "mean": (before - start) / elapsed,
            "p95": percentile(windows, 95),
            "windows": windows,
        }

    def close(self, quit_keys: str, timeout: float = 15.0) -> None:
        """Quit the way a user would; the whole session is killed if it does not go."""
        if self.proc.poll() is None:
            try:
                self.press(quit_keys)
                self.proc.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)  # its own session, started here
                self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        os.close(self.master)


def write_project(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "talker.py").write_text(TALKER)
    (folder / "quiet.py").write_text(QUIET)
    python = sys.executable
    (folder / "lacrimosa.toml").write_text(
        f'[processes.talker]\ncmd = "{python} -u talker.py"\n\n'
        f'[processes.quiet]\ncmd = "{python} -u quiet.py"\n'
    )
    (folder / "mprocs.yaml").write_text(
        "procs:\n"
        f'  talker:\n    cmd: ["{python}", "-u", "talker.py"]\n'
        f'  quiet:\n    cmd: ["{python}", "-u", "quiet.py"]\n'
    )


def run_phases(
    app: PtyApp, project: Path, seconds: float, follow_off_key: str | None
) -> dict[str, dict[str, Any]]:
    (project / "talk").touch()
    app.wait_for_output(timeout=60)
    time.sleep(WARM_UP)
    phases = {"following": app.measure(seconds)}
    if follow_off_key is not None:
        app.press(follow_off_key)
        time.sleep(SETTLE)
        phases["follow off"] = app.measure(seconds)
    (project / "talk").unlink()
    time.sleep(IDLE_SETTLE)
    phases["idle"] = app.measure(seconds)
    return phases


def measure_lacrimosa(
    tmp: Path, seconds: float, keep: Callable[[bytes], None] | None = None
) -> dict[str, dict[str, Any]]:
    project = tmp / "lacrimosa"
    write_project(project)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(package_shim(code_root(), tmp / "shim"))
    env.pop("LACRIMOSA_HOME", None)
    cmd = [sys.executable, "-m", "lacrimosa.api.cli", "up", "-f", str(project / "lacrimosa.toml")]
    app = PtyApp(cmd, project, env)
    if keep is not None:
        app.keep = bytearray()
    try:
        return run_phases(app, project, seconds, follow_off_key="f")
    finally:
        app.close("q")
        if keep is not None and app.keep is not None:
            keep(bytes(app.keep))


def install_mprocs(folder: Path) -> tuple[Path | None, str]:
    """mprocs's Linux binary from its npm package, installed under ``folder``; or why not."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64"):
        return None, f"no mprocs build for {platform.system()} {platform.machine()}"
    npm = shutil.which("npm")
    if npm is None:
        return None, "npm not found"
    try:
        done = subprocess.run(
            [npm, "install", "--no-save", "--no-audit", "--no-fund", f"mprocs@{MPROCS_VERSION}"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, "npm install mprocs timed out"
    binary = (
        folder
        / "node_modules"
        / "mprocs"
        / f"mprocs-{MPROCS_VERSION}-linux-{platform.machine()}-musl"
        / "mprocs"
    )
    if done.returncode != 0 or not binary.is_file():
        reason = (done.stderr.strip().splitlines() or ["no binary in the package"])[-1]
        return None, f"npm install mprocs failed: {reason}"
    return binary, ""


def measure_mprocs(binary: Path, tmp: Path, seconds: float) -> dict[str, dict[str, Any]]:
    project = tmp / "mprocs"
    write_project(project)
    app = PtyApp([str(binary), "--config", "mprocs.yaml"], project, dict(os.environ))
    try:
        return run_phases(app, project, seconds, follow_off_key=None)
    finally:
        app.close("q")


def fmt_bytes_rate(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.1f} KB/s"
    return f"{value:.0f} B/s"


def _describe(phase: dict[str, Any]) -> str:
    return (
        f"median {fmt_bytes_rate(phase['median'])}, mean {fmt_bytes_rate(phase['mean'])}, "
        f"p95 {fmt_bytes_rate(phase['p95'])}"
    )


def run(quick: bool) -> list[Row]:
    require("lacrimosa.tui.app")
    seconds = QUICK_SECONDS if quick else SECONDS
    with tempfile.TemporaryDirectory(prefix="lacrimosa-bench-") as name:
        tmp = Path(name)
        # A quick run proves the script works; it does not fetch the reference from npm.
        binary, why_not = (None, "not fetched in a quick run") if quick else install_mprocs(tmp)
        ours = measure_lacrimosa(tmp, seconds)
        theirs = measure_mprocs(binary, tmp, seconds) if binary is not None else None

    def reference(phase: str) -> tuple[str, float | None]:
        if theirs is None:
            return f"mprocs unavailable ({why_not})", None
        if phase not in theirs:
            return "", None
        value = theirs[phase]["median"]
        return f"{fmt_bytes_rate(value)} mprocs {phase}", value

    where = f"{SIZE[0]}x{SIZE[1]} pty, {RATE} lines/s arriving"
    rows = []
    following = ours["following"]["median"]
    ref_text, ref_value = reference("following")
    rows.append(
        Row(
            f"tui bytes: following, {where}",
            fmt_bytes_rate(following),
            ref_text,
            following / ref_value if ref_value else None,
            "<= mprocs following",
            following <= ref_value if ref_value is not None else None,
            notes=[
                f"lacrimosa {_describe(ours['following'])}; {seconds:.0f} s a phase",
                *(
                    [f"mprocs (reference) following: {_describe(theirs['following'])}"]
                    if theirs is not None
                    else []
                ),
            ],
            data={"lacrimosa": ours, "mprocs": theirs},
        )
    )
    follow_off = ours["follow off"]["median"]
    ref_text, ref_value = reference("follow off")
    rows.append(
        Row(
            f"tui bytes: follow off, {where} (only counters move)",
            fmt_bytes_rate(follow_off),
            ref_text,
            follow_off / ref_value if ref_value else None,
            f"< {fmt_bytes_rate(IDLE_TARGET)}",
            follow_off < IDLE_TARGET,
            notes=[f"lacrimosa follow off: {_describe(ours['follow off'])}"],
        )
    )
    idle = ours["idle"]["median"]
    ref_text, ref_value = reference("idle")
    rows.append(
        Row(
            f"tui bytes: idle, {SIZE[0]}x{SIZE[1]} pty (processes silent, uptime ticks)",
            fmt_bytes_rate(idle),
            ref_text,
            idle / ref_value if ref_value else None,
            f"< {fmt_bytes_rate(IDLE_TARGET)}",
            idle < IDLE_TARGET,
            notes=[
                f"lacrimosa idle: {_describe(ours['idle'])}",
                *(
                    [f"mprocs (reference) idle: {_describe(theirs['idle'])}"]
                    if theirs is not None
                    else []
                ),
            ],
        )
    )
    return rows


if __name__ == "__main__":
    from bench._common import main

    sys.exit(main(run, __doc__))
