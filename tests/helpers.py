"""Small helpers shared by the tests (imported as ``helpers``: tests/ is on sys.path).

Keep this module stable and dependency-free:

- ``wait_until(predicate)``: deadline-bounded polling, never a bare sleep.
- ``write_config(tmp_path, text)``: a config file from dedented text.
- ``pid_alive(pid)`` / ``group_pids(pgid)``: what still runs, with zombies counted as gone
  (a reparented child nobody reaps stays a zombie here, but it runs nothing).
- ``wait_for(pilot, predicate, what)``: ``wait_until`` for a Textual app under Pilot.
- ``send_events(console, sock, *datagrams)``: UDP to a console's sequencer, until it counted them.
- ``Terminal(argv, cwd, env)``: a program on a terminal of its own (a pty, 80x24), as in a user's
  terminal window; ``shows(text)`` reads what it drew, ``hang_up()`` closes the window.
- ``HEAVY_FOR_ONE_SHOT`` / ``bare_python(tmp_path)``: the modules a one-shot CLI call must not
  load, and a command and environment that run Python without ``site`` (so no ``.pth`` file, no
  editable finder, loads anything first) with ``lacrimosa`` importable from this checkout.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0


def wait_until(
    predicate: Callable[[], T],
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.02,
    message: str | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; fail at the deadline.

    The predicate is called once more at the deadline, so a slow machine only costs time.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    result = predicate()
    if result:
        return result
    what = message or getattr(predicate, "__name__", "condition")
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def wait_for(
    pilot: Any, predicate: Callable[[], object], what: str, timeout: float = 8.0
) -> None:
    """Let the app under ``pilot`` run until ``predicate()`` is true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.05)


def send_events(console: Any, sock: Any, *datagrams: bytes) -> None:
    """Send ``datagrams`` to the console's sequencer; return once it has counted every one."""
    sequencer = console.sequencer
    assert sequencer is not None
    expected = sequencer.stats().received + len(datagrams)
    for datagram in datagrams:
        sock.sendto(datagram, sequencer.socket_info.address)
    wait_until(
        lambda: sequencer.stats().received >= expected,
        message=f"the sequencer to receive {len(datagrams)} datagrams",
    )


def write_config(tmp_path: Path, text: str, name: str = "lacrimosa.toml") -> Path:
    """Write ``text`` (dedented, so it can be indented in the test) as ``tmp_path / name``."""
    path = Path(tmp_path) / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state is [0], pgid is [2])."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw[raw.rindex(")") + 2 :].split()


def process_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat ("R", "S", "T" stopped, "Z" zombie), None once gone."""
    stat = _proc_stat(pid)
    return stat[0] if stat is not None else None


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def group_pids(pgid: int) -> set[int]:
    """Every live (non-zombie) process whose process group is ``pgid``."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _proc_stat(int(entry))
        if stat is not None and stat[0] not in ("Z", "X") and int(stat[2]) == pgid:
            found.add(int(entry))
    return found


class Terminal:
    """A program on a terminal of its own, as in a user's terminal window: a pty of 80x24 that is
    its controlling terminal (it leads a session of its own), its stdin, stdout and stderr. What it
    drew gathers in ``screen`` as ``shows`` reads it; ``hang_up()`` closes the window (the kernel
    then sends SIGHUP and SIGCONT); leaving the ``with`` kills what still runs."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))

        def own_terminal() -> None:  # in the child: a session of its own, the pty its terminal
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=follower,
                stdout=follower,
                stderr=follower,
                env={**env, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"},
                preexec_fn=own_terminal,
            )
        finally:
            os.close(follower)
        self.screen = bytearray()

    def shows(self, text: bytes) -> bool:
        """Read what was drawn so far (a terminal that stops reading blocks its program), then
        whether ``text`` is in it."""
        with contextlib.suppress(OSError):  # EIO: nothing has the terminal open any more
            while self.leader >= 0 and select.select([self.leader], [], [], 0)[0]:
                self.screen.extend(os.read(self.leader, 65536))
        return text in self.screen

    def type(self, keys: bytes) -> None:
        os.write(self.leader, keys)

    def hang_up(self) -> None:
        os.close(self.leader)
        self.leader = -1

    def __enter__(self) -> Terminal:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.leader >= 0:
            self.hang_up()


# Each costs milliseconds of every `lacrimosa ps` (see api/cli.py), and some came in before through
# innocent-looking imports: typing, pathlib (with urllib, fnmatch, re), socket (with enum,
# selectors), json (with re), signal (with enum), argparse (with gettext, shutil, locale).
HEAVY_FOR_ONE_SHOT = (
    *("argparse", "gettext", "shutil", "locale", "json", "re", "enum", "functools"),
    *("collections", "socket", "selectors", "struct", "fcntl", "signal", "pathlib"),
    *("urllib", "fnmatch", "ipaddress", "typing", "dataclasses", "importlib.util"),
    *("textual", "rich", "numpy"),
)


def bare_python(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """``python -S`` (no site: nothing loaded but the interpreter's own) and an environment whose
    PYTHONPATH holds a ``lacrimosa`` package pointing at this checkout."""
    import sys

    shim = tmp_path / "shim" / "lacrimosa"
    shim.mkdir(parents=True, exist_ok=True)
    repo = Path(__file__).resolve().parent.parent
    (shim / "__init__.py").write_text(f"__path__ = [{str(repo)!r}]\n")
    env = {k: v for k, v in os.environ.items() if k != "LACRIMOSA_HOME"}
    env["PYTHONPATH"] = str(shim.parent)
    return [sys.executable, "-S"], env
