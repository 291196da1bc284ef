"""Readiness and health probes: what a process's ``ready`` and ``health`` tables ask, and the
small pool that answers them without ever blocking the supervisor's loop.

A probe is one of:

- ``tcp = "HOST:PORT"``: a connection is accepted;
- ``http = "http://HOST:PORT/PATH"``: a GET answers 2xx or 3xx (with httpx, imported on the first
  http probe only);
- ``exec = "COMMAND"``: the command (``/bin/sh -c``, in the process's folder and environment)
  exits 0; it runs in its own process group, killed whole at the timeout;
- ``log = "REGEX"`` (``ready`` only): a line of the process's stdout or stderr matches. It is
  checked by the supervisor's loop on the chunks it reads, and only until the process is ready
  (see :class:`LogMatcher`), so it costs nothing afterwards.

``tcp``, ``http`` and ``exec`` run in :class:`ProbePool`: at most ``MAX_PROBE_WORKERS`` threads,
and the supervisor keeps at most one probe in flight per process, so the pool's queue is bounded
by the number of processes. Each attempt is bounded by its ``timeout``; its result comes back to
the loop as a command (see ``Supervisor._probe_done``).
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

READY_KINDS = ("tcp", "http", "exec", "log")
HEALTH_KINDS = ("tcp", "http", "exec")
DEFAULT_INTERVAL = 1.0  # seconds between attempts (ready: until it passes; health: always)
DEFAULT_TIMEOUT = 2.0  # seconds one attempt may take
DEFAULT_HEALTH_INTERVAL = 10.0
DEFAULT_FAILURES = 3  # health failures in a row before the process is restarted
MAX_PROBE_WORKERS = 4  # threads answering tcp/http/exec probes, for every process together
MAX_ERROR_CHARS = 300  # of a probe's last error, as kept and shown
LOG_MATCH_TAIL = 4096  # bytes of an unfinished line kept to match with the next chunk
EXEC_STDERR_TAIL = 4096  # bytes of an exec probe's stderr kept (its last line is the error)


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """One ``ready`` or ``health`` table of a process."""

    kind: str  # tcp | http | exec | log
    target: str  # HOST:PORT, a URL, a command, a regular expression
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    failures: int = DEFAULT_FAILURES  # health only

    def describe(self) -> str:
        """``tcp 127.0.0.1:5432``: what the probe checks, for ps, why and the log."""
        return f"{self.kind} {self.target}"


@dataclass(frozen=True, slots=True)
class ProbeStatus:
    """What a client sees of one probe of one process at one moment."""

    role: str  # "ready" or "health"
    probe: str  # ProbeSpec.describe()
    passing: bool | None  # None: not checked yet in this run
    failures: int  # in a row, in this run
    last_error: str | None  # of the last failed attempt, in this run
    checked_at: float | None  # unix time of the last attempt

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "probe": self.probe,
            "passing": self.passing,
            "failures": self.failures,
            "last_error": self.last_error,
            "checked_at": self.checked_at,
        }


class ProbeFailed(Exception):
    """An attempt failed; the message says why in a few words."""


def check_tcp(target: str, timeout: float) -> None:
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ProbeFailed(f"connect to {target}: {exc.strerror or exc}") from None


def check_http(target: str, timeout: float) -> None:
    import httpx  # here: only a console with an http probe pays for it

    try:
        response = httpx.get(target, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise ProbeFailed(f"GET {target}: {type(exc).__name__}: {exc}") from None
    if not 200 <= response.status_code < 400:
        raise ProbeFailed(f"GET {target}: HTTP {response.status_code}")


GroupHook = Callable[[int], None]


def check_exec(
    command: str,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    groups: tuple[GroupHook, GroupHook] | None = None,
) -> None:
    """Run ``command`` in its own process group; the whole group is killed at the timeout.
    ``groups``: (register, unregister) for the group, so that the guardian kills it if the
    console dies while it runs (the pool thread that would kill it dies too)."""
    try:
        child = subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
        )
    except (OSError, ValueError) as exc:
        raise ProbeFailed(f"could not run {command!r}: {exc}") from None
    if groups is not None:
        groups[0](child.pid)
    assert child.stderr is not None
    err = b""  # its last EXEC_STDERR_TAIL bytes: what it says is read as it comes, kept bounded
    deadline = time.monotonic() + timeout
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(child.stderr.fileno(), selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise subprocess.TimeoutExpired(command, timeout)
                if selector.select(left):
                    chunk = os.read(child.stderr.fileno(), 1 << 16)
                    if not chunk:  # everything that held its stderr is done with it
                        break
                    err = (err + chunk)[-EXEC_STDERR_TAIL:]
        child.wait(max(deadline - time.monotonic(), 0.0))
    except subprocess.TimeoutExpired:
        raise ProbeFailed(f"{command!r} did not finish within {timeout:g}s") from None
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)  # at the timeout, or what it left behind
        child.stderr.close()
        child.wait()  # SIGKILLed if it was still running: reaped at once
        if groups is not None:
            groups[1](child.pid)
    if child.returncode != 0:
        last = err.decode("utf-8", "replace").strip().splitlines()[-1:] if err else []
        said = f": {last[0]}" if last else ""
        raise ProbeFailed(f"{command!r} exited with {child.returncode}{said}")


class ProbePool:
    """A few threads running tcp/http/exec attempts; ``run`` never blocks its caller."""

    def __init__(
        self,
        workers: int = MAX_PROBE_WORKERS,
        groups: tuple[GroupHook, GroupHook] | None = None,
    ) -> None:
        self._workers = workers
        self._groups = groups  # see check_exec
        self._pool: ThreadPoolExecutor | None = None

    def run(
        self,
        spec: ProbeSpec,
        done: Callable[[str | None], None],
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Start one attempt; ``done(error)`` is called from a pool thread when it ends
        (``error`` None: it passed)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="lacrimosa-probe")

        def attempt() -> None:
            error: str | None = None
            try:
                if spec.kind == "tcp":
                    check_tcp(spec.target, spec.timeout)
                elif spec.kind == "http":
                    check_http(spec.target, spec.timeout)
                else:
                    check_exec(spec.target, spec.timeout, cwd, env, self._groups)
            except ProbeFailed as exc:
                error = str(exc)
            except Exception as exc:  # a probe's bug must still come back as a failed attempt
                error = f"{type(exc).__name__}: {exc}"
            done(None if error is None else error[:MAX_ERROR_CHARS])

        self._pool.submit(attempt)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class LogMatcher:
    """A ``log`` probe: finds a line matching ``pattern`` in the chunks a process writes.

    Matched per line (``^``/``$`` at line ends) over the new chunk and the unfinished line before
    it (at most ``LOG_MATCH_TAIL`` bytes of it, so a line longer than that may be missed)."""

    def __init__(self, pattern: str) -> None:
        self._regex = re.compile(pattern.encode(), re.MULTILINE)
        self._tails: dict[int, bytes] = {}  # per stream: the unfinished line

    def feed(self, stream: int, chunk: bytes | memoryview) -> bool:
        data = self._tails.get(stream, b"") + bytes(chunk)
        cut = data.rfind(b"\n")
        lines, tail = (data[: cut + 1], data[cut + 1 :]) if cut >= 0 else (b"", data)
        self._tails[stream] = tail[-LOG_MATCH_TAIL:]
        return self._regex.search(lines) is not None or (
            bool(tail) and self._regex.search(tail) is not None
        )
