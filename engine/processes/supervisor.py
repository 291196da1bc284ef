"""The supervisor: starts, watches, restarts and stops the declared processes.

One thread owns every child (an actor): it waits in a selector on the children's stdout/stderr
pipes, their pidfds (exit notification), and a wake-up pipe for commands; timers (backoff restarts,
stop timeouts, stable-period resets, rate samples) run from a heap in the same loop. Other threads
never touch process state: they submit commands (:meth:`Supervisor.submit`) and get a Future, and
read the published, immutable :class:`ProcessInfo` list.

Each child runs in its own session and process group, stdin from /dev/null, stdout and stderr on
separate pipes read in chunks of up to 1 MiB (into one reused buffer) straight into the log store.
Stop sends the configured signal to the group, waits ``stop_timeout``, then SIGKILL to the group.
Nothing outlives the console: the group is killed when its leader exits, children get
PR_SET_PDEATHSIG, and the guardian process (see guardian.py) kills every registered group when the
console ends, however it ends.

The guardian is watched like a child: its pidfd sits in the same selector. If it dies (``kill -9``
of the guardian alone, the OOM killer), a new one is started at once with the same registry of
live groups (the stray-sweep token travels on its command line), the restart is counted and logged
on stderr, and :attr:`Supervisor.guardian_info` shows it (``status`` does too). A guardian
that keeps dying is not restarted in a tight loop: each quick death (it lived less than
``GUARDIAN_STABLE_AFTER``) doubles the wait before the next start, from ``GUARDIAN_BACKOFF_INITIAL``
up to ``GUARDIAN_BACKOFF_MAX`` (the first restart is immediate), and from
``GUARDIAN_FAILING_AFTER`` quick deaths in a row the guardian shows as ``failing`` until one lives
through the stable period.

Restart policy: ``never``, ``on-failure`` (non-zero exit or killed by a signal) or ``always``; the
delay doubles from ``backoff_initial`` up to ``backoff_max`` on each quick failure, and resets once a
run has lasted ``stable_after`` seconds. Three or more quick failures in a row show as ``crash-loop``.

Dependencies (``depends_on``): a process to start waits (``waiting``, with the reason, e.g.
``db: ready``) until every process it depends on is there: started, ready (its ``ready`` probe
passed; with no probe, as soon as it started) or completed (exited with status 0); on a type, every
instance of it. One that failed for good (or is blocked itself) leaves it ``blocked``, with the
reason; it starts if that one later gets there (started again by hand). Pending processes are
looked at again after every change (``_advance``). A stop waits until the processes depending on
the one stopped that are being stopped too have exited, so shutdown (and ``stop all``, whose
commands arrive dependents first) goes in reverse dependency order.

Probes (see probes.py): a process is ``running`` with ``ready`` false until its ready probe passes;
then its health probe runs every interval, and after ``failures`` failed attempts in a row the
process is stopped (the reason in its log) and counts as failed: its restart policy decides. tcp,
http and exec attempts run in a small pool, at most one per process at a time, never in the loop;
``log`` probes are matched by the loop on the chunks it reads, only until the process is ready.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import fcntl
import functools
import heapq
import itertools
import os
import re
import secrets
import select
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..config import ProcessSpec
from ..errors import ConsoleError, NoSuchProcess
from ..humanize import describe_exit, exit_words
from ..logs.store import STDERR, STDOUT, LogStore
from .guardian import (
    CONSOLE_TAG,
    PROCESS_TAG,
    RUN_TAG,
    SHELL_STAGE,
    GroupRegistry,
    signal_pids,
    tagged_pids,
)
from .probes import LogMatcher, ProbePool, ProbeSpec, ProbeStatus

READ_CHUNK = 1 << 20
PIPE_SIZE = 1 << 20
CRASH_LOOP_FAILURES = 3
PARTIAL_LINE_WAIT = 0.5  # a line without newline is shown after this long without more output
# When the last COALESCE_WAKEUPS wake-ups that read anything read less than COALESCE_BELOW bytes
# in all, the loop lets output gather for COALESCE_WAIT seconds before it selects again (commands
# cut the wait short): lines reach the store at most this much later, and many small writers cost
# one wake-up per wait, not one per line. A bulk writer is never made to wait: once the loop has
# drained its pipe, each wake-up reads what it wrote meanwhile (tens of KiB), which the sum sees.
# (Two small reads in a row used to be enough: `seq` was then held up 5 ms after each drain, 4-5
# times in 2M lines, its 1 MiB pipe full: ~20 ms of a 60 ms capture.)
COALESCE_WAIT = 0.005
COALESCE_BELOW = 64 << 10
COALESCE_WAKEUPS = 4
_TICK = 1.0

_PR_SET_PDEATHSIG = 1
# Resolved here, once: the child calls it between fork and exec, where looking a symbol up
# (and allocating for it) could deadlock on a lock another thread of the console held.
_prctl = ctypes.CDLL(None, use_errno=True).prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int
STRAY_SWEEPS = 3  # sweeps for the descendants of a run that ended, STRAY_SWEEP_INTERVAL apart
STRAY_SWEEP_INTERVAL = 0.1
# At exit, read what a pipe held (at most PIPE_SIZE, twice over for a margin), not a stray writer's
# endless output.
DRAIN_MAX_BYTES = 2 * PIPE_SIZE
PTY_ROWS, PTY_COLUMNS = 24, 80  # the size a child on a pty (pty = true) sees
ACTION_MARGIN = 30.0  # seconds a stop/restart may take beyond the process's stop_timeout
GUARDIAN_BACKOFF_INITIAL = 0.25  # seconds before a restart after a second quick death in a row
GUARDIAN_BACKOFF_MAX = 30.0
GUARDIAN_STABLE_AFTER = 10.0  # a guardian that lived this long resets the count of quick deaths
GUARDIAN_FAILING_AFTER = 3  # quick deaths in a row from which the guardian shows as failing


class ReadHistory:
    """What the last COALESCE_WAKEUPS wake-ups that read anything read, to tell small writers
    (let their output gather) from a bulk writer (never held up)."""

    __slots__ = ("_reads",)

    def __init__(self) -> None:
        # As if the loop had just read a lot: the first small reads after a start do not wait.
        self._reads = collections.deque(
            [COALESCE_BELOW] * COALESCE_WAKEUPS, maxlen=COALESCE_WAKEUPS
        )

    def quiet_after(self, read: int) -> bool:
        """Note a wake-up that read ``read`` bytes; True when the loop should let output gather."""
        if not read:
            return False
        self._reads.append(read)
        return sum(self._reads) < COALESCE_BELOW


class State:
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"  # stopped on request, or never started (autostart = false)
    EXITED = "exited"  # exited with status 0 and the policy does not restart it
    FAILED = "failed"  # exited non-zero / killed, or could not start, and not restarting
    BACKOFF = "backoff"  # waiting to restart after an exit
    CRASH_LOOP = "crash-loop"  # waiting to restart after several quick failures in a row
    WAITING_FOR_DEPENDENCIES = "waiting"  # to start once its dependencies are there
    BLOCKED = "blocked"  # to start, but a dependency failed: it cannot until that one is back

    ALIVE = (RUNNING, STOPPING)
    WAITING = (BACKOFF, CRASH_LOOP)
    HELD = (WAITING_FOR_DEPENDENCIES, BLOCKED)  # not started because of its dependencies


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """What a client sees of one process at one moment."""

    name: str
    cmd: str
    state: str
    pid: int | None
    started_at: float | None  # unix time of the current (or last) start
    restarts: int
    exit_code: int | None  # of the last exit; negative: killed by that signal
    restart_in: float | None  # seconds until the next automatic restart
    stdout_lines: int
    stderr_lines: int
    lines_per_second: float
    restart_policy: str
    process_type: str = ""  # web, for web.2 (and for a lone web)
    instance: str = ""  # web.2; web.1 for a lone web (its PS)
    ready: bool = False  # running, and its ready probe passed (or it has none)
    reason: str | None = None  # why it is waiting or blocked: "db: ready", "migrate failed ..."
    probes: tuple[ProbeStatus, ...] = ()  # its ready and health probes, as last checked
    last_run: float | None = None  # seconds the last run lasted (None: none ended yet)
    last_exit: int | None = None  # how the last run ended, kept while the next one runs
    # How many runs ended with each exit status (negative: killed by that signal), since the
    # console started: (status, count) pairs, for /metrics.
    exits: tuple[tuple[int, int], ...] = ()
    # Summed over the process group, sampled about once a second (resources.py); None until
    # sampled, and while the process does not run.
    cpu_percent: float | None = None  # of one core
    rss_bytes: int | None = None

    @property
    def uptime(self) -> float | None:
        if self.state in State.ALIVE and self.started_at is not None:
            return max(time.time() - self.started_at, 0.0)
        return None

    @property
    def health(self) -> str | None:
        """``ok``, ``failing`` or ``unknown`` (not checked yet); None without a health probe."""
        for probe in self.probes:
            if probe.role == "health":
                return {True: "ok", False: "failing", None: "unknown"}[probe.passing]
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "pid": self.pid,
            "uptime": None if self.uptime is None else round(self.uptime, 3),
            "started_at": self.started_at,
            "restarts": self.restarts,
            "exit_code": self.exit_code,
            "restart_in": self.restart_in,
            "stdout_lines": self.stdout_lines,
            "stderr_lines": self.stderr_lines,
            "lines_per_second": round(self.lines_per_second, 1),
            "restart": self.restart_policy,
            "type": self.process_type,
            "instance": self.instance,
            "ready": self.ready,
            "health": self.health,
            "reason": self.reason,
            "probes": [probe.to_dict() for probe in self.probes],
            "last_run": None if self.last_run is None else round(self.last_run, 3),
            "last_exit": self.last_exit,
            "cmd": self.cmd,
            "cpu_percent": self.cpu_percent,
            "rss_bytes": self.rss_bytes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProcessInfo:
        """The inverse of ``to_dict`` (a client's copy of what the console sent): what it
        leaves out (``exits``, counted for /metrics) keeps its default."""
        values: dict[str, Any] = {}
        for field in fields(cls):
            key = _SENT_AS.get(field.name, field.name)
            if key in data:
                values[field.name] = data[key]
        if "probes" in values:  # sent as dicts
            values["probes"] = tuple(ProbeStatus(**probe) for probe in values["probes"])
        return cls(**values)


# ProcessInfo's fields that to_dict sends under another name.
_SENT_AS = {"restart_policy": "restart", "process_type": "type"}


def _child_setup(parent_pid: int) -> Callable[[], None]:
    def setup() -> None:
        # Runs in the child between fork and exec: the kernel signals it if the console dies.
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the console died before the line above took effect
            os._exit(1)

    return setup


# A command the shell can replace itself with: words of characters that mean nothing to it (no
# quotes, expansions, globs, redirections, lists or pipes), the first neither an assignment nor a
# name the shell keeps for itself.
_SIMPLE_COMMAND = re.compile(r"[\w./:,+@%=-]+(?: +[\w./:,+@%=-]+)*")
_SHELL_WORDS = frozenset(
    {
        ".", ":", "alias", "bg", "break", "case", "cd", "command", "continue", "do", "done",
        "elif", "else", "esac", "eval", "exec", "exit", "export", "fc", "fg", "fi", "for",
        "getopts", "hash", "if", "in", "jobs", "local", "read", "readonly", "return", "set",
        "shift", "source", "then", "times", "trap", "type", "ulimit", "umask", "unalias",
        "unset", "until", "wait", "while",
    }
)  # fmt: skip


def shell_line(cmd: str) -> str:
    """What ``sh -c`` runs for ``cmd``: ``exec cmd`` when it is one simple command, so that the
    program replaces the shell: one process less, the pid shown and signalled is the program's,
    and PR_SET_PDEATHSIG (kept across exec) reaches the program itself. Anything else as written."""
    line = cmd.strip()
    if _SIMPLE_COMMAND.fullmatch(line):
        first = line.split(" ", 1)[0]
        if "=" not in first and first not in _SHELL_WORDS:
            return "exec " + line
    return cmd


@functools.cache
def _setpriv() -> str | None:
    """util-linux's setpriv, if it is here and knows ``--pdeathsig`` (2.33 and later): how a
    child gets PR_SET_PDEATHSIG without running Python between fork and exec. Checked once."""
    path = shutil.which("setpriv")
    if path is None:
        return None
    try:
        done = subprocess.run(
            [path, "--pdeathsig", "TERM", "--", "/bin/sh", "-c", "exit 0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return path if done.returncode == 0 else None


def open_output_pty() -> tuple[int, int]:
    """A pseudo-terminal for a child's stdout (``pty = true``): (our end, the child's end).

    Programs that buffer or colour only on a terminal (C stdio, Perl, Ruby) then print line by
    line. Output processing is off, so the bytes are stored as the child wrote them (a terminal
    would turn each newline into CRLF); the size is 80x24, for programs that ask. Both ends are
    close-on-exec; Popen gives the child its copy as stdout."""
    ours, theirs = os.openpty()
    try:
        attributes = termios.tcgetattr(theirs)
        attributes[1] &= ~termios.OPOST  # oflag
        termios.tcsetattr(theirs, termios.TCSANOW, attributes)
        fcntl.ioctl(theirs, termios.TIOCSWINSZ, struct.pack("HHHH", PTY_ROWS, PTY_COLUMNS, 0, 0))
    except BaseException:
        os.close(ours)
        os.close(theirs)
        raise
    return ours, theirs


class _Guardian:
    """The console's side of the guardian process (see guardian.py): its shell stage, which
    becomes the Python stage when its stdin, this end of a pipe, is closed."""

    def __init__(self, grace: float, token: str, registry: GroupRegistry) -> None:
        script = Path(__file__).with_name("guardian.py")
        python = [sys.executable, "-I", "-S", str(script), str(grace), token, str(registry.fd)]
        self._proc = subprocess.Popen(
            ["/bin/sh", "-c", SHELL_STAGE, "lacrimosa-guardian", *python],
            stdin=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            pass_fds=(registry.fd,),
            # Never write on the terminal: the TUI owns it.
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert self._proc.stdin is not None
        self._pipe = self._proc.stdin
        self.pid = self._proc.pid
        self.started = time.monotonic()
        self.pidfd = -1
        try:
            # Readable once the guardian has exited: the supervisor's loop selects on it.
            self.pidfd = os.pidfd_open(self.pid)
        except OSError:
            self.close()
            raise

    def reap(self) -> int:
        """Collect a guardian that has exited (its pidfd was readable); its exit code."""
        code = self._proc.wait()
        with contextlib.suppress(OSError, ValueError):
            self._pipe.close()
        os.close(self.pidfd)
        self.pidfd = -1
        return code

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._pipe.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


@dataclass(frozen=True, slots=True)
class GuardianInfo:
    """What a client sees of the guardian: ``state`` is ``running``, ``restarting`` (dead, a new
    one is due in ``restart_in`` seconds), ``failing`` (it died quickly
    ``GUARDIAN_FAILING_AFTER`` times in a row; restarts go on with a growing delay, ``alive`` says
    whether one runs now) or ``stopped`` (before start and after shutdown)."""

    pid: int | None
    alive: bool
    restarts: int
    state: str
    restart_at: float | None  # monotonic

    def to_dict(self) -> dict[str, Any]:
        restart_in = None
        if self.restart_at is not None:
            restart_in = round(max(self.restart_at - time.monotonic(), 0.0), 3)
        return {
            "pid": self.pid,
            "alive": self.alive,
            "restarts": self.restarts,
            "state": self.state,
            "restart_in": restart_in,
        }


@dataclass(frozen=True, slots=True)
class _Published:
    """What the loop thread publishes of a process after each change; read by any thread."""

    state: str
    pid: int | None
    started_at: float | None
    restarts: int
    exit_code: int | None
    restart_at: float | None  # monotonic
    rate: float
    ready: bool
    reason: str | None
    probes: tuple[ProbeStatus, ...]
    last_run: float | None
    last_exit: int | None
    exits: tuple[tuple[int, int], ...] = ()


@dataclass(slots=True)
class _Run:
    """One start of a process: its child and its pipes."""

    popen: subprocess.Popen[bytes]
    pid: int
    pidfd: int
    fds: dict[int, int]  # fd -> stream
    started: float  # monotonic
    tag: int  # this run's RUN_TAG value, in the environment of all its descendants
    last_output: float = 0.0


@dataclass(slots=True)
class _ProbeState:
    """One probe of one process, in the current run (loop thread only)."""

    role: str  # "ready" or "health"
    spec: ProbeSpec
    passing: bool | None = None
    failures: int = 0  # in a row
    last_error: str | None = None
    checked_at: float | None = None  # unix time
    in_flight: bool = False  # an attempt is in the pool: never two at once

    def status(self) -> ProbeStatus:
        return ProbeStatus(
            self.role,
            self.spec.describe(),
            self.passing,
            self.failures,
            self.last_error,
            self.checked_at,
        )


class _Managed:
    """The supervisor's own mutable record of a process (loop thread only)."""

    def __init__(self, spec: ProcessSpec) -> None:
        self.spec = spec
        self.state = State.STOPPED
        self.run: _Run | None = None
        self.started_at: float | None = None
        self.restarts = 0
        self.exit_code: int | None = None
        self.exits: dict[int, int] = {}  # runs ended, by exit status (at most one per status)
        self.failures = 0  # quick failures in a row
        self.restart_at: float | None = None  # monotonic
        self.generation = 0  # bumps on every start/stop decision; stale timers compare it
        self.stop_requested = False
        self.start_after_stop = False
        self.stop_waiters: list[Future[Any]] = []
        self.restart_waiters: list[Future[Any]] = []  # resolved when the new run has started
        self.rate = 0.0
        self.rate_sample: tuple[float, int] = (time.monotonic(), 0)
        self.pending = False  # to start once its dependencies are there (see _advance)
        self.reason: str | None = None  # why it is held (waiting or blocked)
        self.stop_deferred = False  # stop asked; not signalled until dependents have stopped
        self.ready = False
        self.probes: dict[str, _ProbeState] = {}  # by role, reset on every start
        self.log_matcher: LogMatcher | None = None  # a log ready probe, until ready
        self.unhealthy = False  # stopped by its health probe: this run counts as failed
        self.last_run: float | None = None
        self.last_exit: int | None = None
        # The processes this one depends on: (process, condition, the type named in depends_on).
        self.requires: list[tuple[_Managed, str, str]] = []
        self.dependents: list[_Managed] = []


class Supervisor:
    """Owns the child processes. Thread-safe entry points: submit, start/stop/restart, info."""

    def __init__(
        self,
        specs: dict[str, ProcessSpec],
        store: LogStore,
        on_crash: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._store = store
        self._on_crash = on_crash  # told (from the loop thread) if the loop dies of a bug
        # In every child's environment, inherited by its descendants: how the guardian and the
        # stray sweep find processes that left their group (see guardian.py).
        self.token = secrets.token_hex(8)
        # Set before start(): more variables for every child (e.g. where to send events).
        self.environment: dict[str, str] = {}
        self._managed = {name: _Managed(spec) for name, spec in specs.items()}
        for name in specs:
            store.add_process(name)
        for managed in self._managed.values():
            for type_name, condition in managed.spec.depends_on.items():
                for other in self._managed.values():
                    if other.spec.process_type == type_name:
                        managed.requires.append((other, condition, type_name))
                        other.dependents.append(managed)
        # exec probes' process groups go to the guardian like the processes' own
        self._probes = ProbePool(groups=(self.add_group, self.remove_group))
        self._dirty = False  # something changed: pending starts and held stops to look at again
        self._selector = selectors.DefaultSelector()
        # Every pipe is read into this one buffer (loop thread only), instead of a new bytes of up
        # to 1 MiB per read; the store copies what it keeps before the next read overwrites it.
        self._read_buffer = bytearray(READ_CHUNK)
        self._read_view = memoryview(self._read_buffer)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wake_poll = select.poll()  # the wake-up pipe alone, for _gather
        self._wake_poll.register(self._wake_r, select.POLLIN)
        # (function, arguments, future, whether the function completes the future itself)
        self._commands: list[tuple[Callable[..., Any], tuple[Any, ...], Future[Any], bool]] = []
        self._commands_lock = threading.Lock()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._guardian: _Guardian | None = None
        self._guardian_grace = 5.0
        self._guardian_restarts = 0
        self._guardian_failures = 0  # quick deaths in a row
        self._guardian_restart_at: float | None = None  # monotonic, while one is due
        # Replaced whole by the loop thread on every change; any thread may read it.
        self.guardian_info = GuardianInfo(None, False, 0, "stopped", None)
        self._running = False
        self._started_all = False
        # The groups the guardian ends with the console: the children's, and event ingest's.
        self._groups = GroupRegistry()
        self._shutdown_lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self._listeners_lock = threading.Lock()
        self.version = 0  # bumped whenever a process changes state
        self.crashed: BaseException | None = None
        self.gathers = 0  # times the loop let output gather (COALESCE_WAIT)
        # Processes that had to be SIGKILLed at the end of their stop timeout during shutdown.
        self.kills_in_shutdown = 0
        self._published: dict[str, _Published] = {}
        for managed in self._managed.values():
            self._publish_one(managed)

    # -- thread-safe API -------------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self._managed)

    def start(self, processes: bool = True) -> None:
        """Start the loop thread and the guardian, then (``processes``) every autostart process.

        The console starts the loop first (``processes=False``), so that the event ingest process
        is registered with the guardian before any process starts, then the processes."""
        if self._thread is None:
            self._start_loop()
        if processes and not self._started_all:
            self._started_all = True
            self.submit(self._start_all).result()

    def add_group(self, pgid: int) -> None:
        """Have the guardian kill this process group when the console ends (a process the
        console runs outside the supervisor: event ingest). Any thread."""
        self._groups.add(pgid)

    def remove_group(self, pgid: int) -> None:
        """The group is gone (its leader was reaped). Any thread."""
        self._groups.remove(pgid)

    def _start_loop(self) -> None:
        self._guardian_grace = max(
            (m.spec.stop_timeout for m in self._managed.values()), default=5.0
        )
        self._guardian = _Guardian(self._guardian_grace, self.token, self._groups)
        self._selector.register(self._guardian.pidfd, selectors.EVENT_READ, ("guardian", None))
        self._publish_guardian()
        self._running = True
        self._selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self._thread = threading.Thread(target=self._loop, name="lacrimosa-supervisor", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` on the loop thread; the Future carries its result or exception."""
        return self._enqueue(fn, args, completes_future=False)

    def _submit_deferred(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args, future)`` on the loop thread; ``fn`` completes the future later."""
        return self._enqueue(fn, args, completes_future=True)

    def _enqueue(
        self, fn: Callable[..., Any], args: tuple[Any, ...], completes_future: bool
    ) -> Future[Any]:
        future: Future[Any] = Future()
        # Checked and queued under the lock that shutdown takes to stop accepting commands, so
        # no command slips in after it and waits forever.
        with self._commands_lock:
            if not self._running:
                future.set_exception(ConsoleError("the console is shutting down"))
                return future
            self._commands.append((fn, args, future, completes_future))
            with contextlib.suppress(BlockingIOError):
                os.write(self._wake_w, b"x")
        return future

    def start_process(self, name: str) -> Future[Any]:
        self._check(name)
        return self.submit(self._cmd_start, name)

    def stop_process(self, name: str) -> Future[Any]:
        """The Future completes once the process has stopped."""
        self._check(name)
        return self._submit_deferred(self._cmd_stop, name)

    def restart_process(self, name: str) -> Future[Any]:
        """The Future completes once the process has stopped and started again."""
        self._check(name)
        return self._submit_deferred(self._cmd_restart, name)

    def info(self) -> list[ProcessInfo]:
        """The current state of every process, in config order (any thread)."""
        out = []
        now = time.monotonic()
        for name, p in self._published.items():
            spec = self._managed[name].spec
            counts = self._store.counts(name)
            out.append(
                ProcessInfo(
                    name=name,
                    cmd=spec.cmd,
                    state=p.state,
                    pid=p.pid,
                    started_at=p.started_at,
                    restarts=p.restarts,
                    exit_code=p.exit_code,
                    restart_in=None if p.restart_at is None else max(p.restart_at - now, 0.0),
                    stdout_lines=counts.stdout_lines,
                    stderr_lines=counts.stderr_lines,
                    # The rate is sampled once a second; a process that no longer runs writes
                    # nothing, whatever its last second did.
                    lines_per_second=p.rate if p.pid is not None else 0.0,
                    restart_policy=spec.restart,
                    process_type=spec.process_type,
                    instance=spec.instance_name,
                    ready=p.ready,
                    reason=p.reason,
                    probes=p.probes,
                    last_run=p.last_run,
                    last_exit=p.last_exit,
                    exits=p.exits,
                )
            )
        return out

    def subscribe(
        self, listener: Callable[[], None]
    ) -> tuple[list[ProcessInfo], Callable[[], None]]:
        """Call ``listener()`` (on the loop thread) after every state change.

        Returns the current state and an unsubscribe function; no change slips in between.
        """
        with self._listeners_lock:
            self._listeners.append(listener)
            current = self.info()

        def unsubscribe() -> None:
            with self._listeners_lock, contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return current, unsubscribe

    def shutdown(
        self, timeout: float | None = None, before_guardian: Callable[[], None] | None = None
    ) -> None:
        """Stop every process (signal, timeout, SIGKILL) and end the loop. Idempotent, and safe
        to call from several threads (the TUI's quit worker and its exit path both do).

        ``before_guardian`` runs once the processes are gone and before the guardian is told
        the console is ending (which would kill what is still registered with it): the console
        stops event ingest there, so that events sent by processes as they stopped are kept."""
        with self._shutdown_lock:
            if self._thread is None:
                return
            if self._running:
                future = self._submit_deferred(self._cmd_shutdown)
                with contextlib.suppress(Exception):
                    future.result(timeout)
            self._thread.join(timeout)
            if self._thread.is_alive():
                return  # timed out; a later call may finish the job
            self._thread = None
            self._probes.close()
            if before_guardian is not None:
                before_guardian()
            if self._guardian is not None:
                self._selector.unregister(self._guardian.pidfd)
                self._guardian.close()
                self._guardian = None
            self._groups.close()
            self._guardian_failures = 0  # a restart still due died with the loop
            self._guardian_restart_at = None
            self._publish_guardian()
            self._selector.close()
            with self._commands_lock:
                os.close(self._wake_r)
                os.close(self._wake_w)

    def _check(self, name: str) -> None:
        if name not in self._managed:
            raise NoSuchProcess(name, list(self._managed))

    # -- the loop --------------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            self._schedule(_TICK, self._tick)
            recent = ReadHistory()
            while self._running or self._has_live_children():
                timeout = _TICK
                if self._timers:
                    timeout = min(max(self._timers[0][0] - time.monotonic(), 0.0), _TICK)
                read = 0
                for key, _ in self._selector.select(timeout):
                    kind, target = key.data
                    if kind == "pipe":
                        read += self._on_pipe(key.fd, *target)
                    elif kind == "exit":
                        self._on_exit(target)
                    elif kind == "guardian":
                        self._on_guardian_exit()
                    else:
                        self._on_wake()
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _, _, callback = heapq.heappop(self._timers)
                    callback()
                if self._dirty:
                    self._advance()
                if recent.quiet_after(read):
                    self._gather()
        except BaseException as exc:  # a bug here must not leave children unsupervised
            self.crashed = exc
            self._kill_everything()
            if self._on_crash is not None:
                self._on_crash(exc)
            raise
        finally:
            self._running = False
            self._fail_pending_commands()

    def _gather(self) -> None:
        """After a wake-up that read only a little, let output gather for ``COALESCE_WAIT``
        before selecting again, so that one wake-up takes in many processes' lines (50
        processes writing a line every 10 ms: ~25 lines per wake-up, not ~1). A command ends
        the wait at once; an exit waits for it (its pidfd is not watched here)."""
        self.gathers += 1
        self._wake_poll.poll(COALESCE_WAIT * 1000)

    def _has_live_children(self) -> bool:
        return any(m.run is not None for m in self._managed.values())

    def _on_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 4096)
        with self._commands_lock:
            commands, self._commands = self._commands, []
        for fn, args, future, completes_future in commands:
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, future) if completes_future else fn(*args)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not completes_future:
                    future.set_result(result)

    def _fail_pending_commands(self) -> None:
        with self._commands_lock:
            commands, self._commands = self._commands, []
        for _, _, future, _ in commands:
            if not future.done():
                future.set_exception(ConsoleError("the console is shutting down"))

    def _schedule(self, delay: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._timer_seq), callback))

    def _schedule_for(self, managed: _Managed, delay: float, callback: Callable[[], None]) -> None:
        """A timer that fires only if the process has not changed course in the meantime."""
        generation = managed.generation

        def fire() -> None:
            if managed.generation == generation:
                callback()

        self._schedule(delay, fire)

    def _tick(self) -> None:
        now = time.monotonic()
        for name, managed in self._managed.items():
            counts = self._store.counts(name)
            lines = counts.stdout_lines + counts.stderr_lines
            then, before = managed.rate_sample
            managed.rate = (lines - before) / max(now - then, 1e-6)
            managed.rate_sample = (now, lines)
            run = managed.run
            if run is not None and now - run.last_output >= PARTIAL_LINE_WAIT:
                for stream in (STDOUT, STDERR):
                    if self._store.has_partial(name, stream):
                        self._store.flush(name, stream)
            self._publish_one(managed, notify=False)
        self._schedule(_TICK, self._tick)

    # -- the guardian (loop thread) --------------------------------------------------------------

    def _on_guardian_exit(self) -> None:
        """The guardian died: reap it, then start another now or after a backoff."""
        guardian = self._guardian
        if guardian is None:
            return
        self._selector.unregister(guardian.pidfd)
        code = guardian.reap()
        self._guardian = None
        quick = time.monotonic() - guardian.started < GUARDIAN_STABLE_AFTER
        self._guardian_failures = self._guardian_failures + 1 if quick else 1
        self._replace_guardian(f"the guardian (pid {guardian.pid}) {exit_words(code)}")

    def _replace_guardian(self, what: str) -> None:
        """Start a guardian now after a first quick death, else after a doubling delay. One
        line on stderr says what happened and what comes next."""
        if self._guardian_failures <= 1 and self._start_guardian():
            assert self._guardian is not None
            _report(f"{what}; restarted as pid {self._guardian.pid}, {self._registered()}")
            return
        if self._guardian_failures <= 1:  # could not even start one: that counts too
            self._guardian_failures += 1
        failures = self._guardian_failures
        delay = min(GUARDIAN_BACKOFF_INITIAL * 2 ** (failures - 2), GUARDIAN_BACKOFF_MAX)
        failing = ""
        if failures >= GUARDIAN_FAILING_AFTER:
            failing = f" (guardian failing: {failures} quick deaths in a row)"
        self._guardian_restart_at = time.monotonic() + delay
        _report(f"{what}; restarting it in {delay:.2f}s{failing}")
        self._schedule(delay, self._delayed_guardian_restart)
        self._publish_guardian()

    def _delayed_guardian_restart(self) -> None:
        self._guardian_restart_at = None
        if self._start_guardian():
            assert self._guardian is not None
            _report(f"the guardian restarted as pid {self._guardian.pid}, {self._registered()}")
        else:
            self._guardian_failures += 1
            self._replace_guardian("the guardian could not be started")

    def _start_guardian(self) -> bool:
        """A new guardian, given the registry of every live group (the token is on its command
        line)."""
        try:
            guardian = _Guardian(self._guardian_grace, self.token, self._groups)
        except (OSError, subprocess.SubprocessError) as exc:
            _report(f"could not start the guardian: {exc}")
            self._publish_guardian()
            return False
        self._guardian = guardian
        self._guardian_restarts += 1
        self._selector.register(guardian.pidfd, selectors.EVENT_READ, ("guardian", None))

        def stable() -> None:
            if self._guardian is guardian:
                self._guardian_failures = 0
                self._publish_guardian()

        self._schedule(GUARDIAN_STABLE_AFTER, stable)
        self._publish_guardian()
        return True

    def _registered(self) -> str:
        groups = len(self._groups)
        return f"{groups} process group{'' if groups == 1 else 's'} in its registry"

    def _publish_guardian(self) -> None:
        guardian = self._guardian
        if self._guardian_failures >= GUARDIAN_FAILING_AFTER:
            state = "failing"
        elif guardian is not None:
            state = "running"
        elif self._guardian_restart_at is not None:
            state = "restarting"
        else:
            state = "stopped"
        self.guardian_info = GuardianInfo(
            guardian.pid if guardian is not None else None,
            guardian is not None,
            self._guardian_restarts,
            state,
            self._guardian_restart_at,
        )
        self.version += 1

    # -- children --------------------------------------------------------------------------------

    def _start_all(self) -> None:
        for managed in self._managed.values():
            if managed.spec.autostart:
                managed.pending = True
        self._advance()

    # -- dependencies ----------------------------------------------------------------------------

    def _advance(self) -> None:
        """Start every pending process whose dependencies are there, mark the others waiting
        or blocked (with the reason), and signal every stop no longer held by dependents; again
        until nothing changes (a start can let another start: ``started``)."""
        self._dirty = False
        changed = True
        while changed:
            changed = False
            for managed in self._managed.values():
                if not managed.pending:
                    continue
                if not self._running:  # shutting down: nothing more starts
                    managed.pending = False
                    continue
                verdict, reason = self._dependencies_of(managed)
                if verdict == "ok":
                    managed.pending = False
                    managed.reason = None
                    self._spawn(managed)
                    changed = True
                    continue
                state = State.BLOCKED if verdict == "blocked" else State.WAITING_FOR_DEPENDENCIES
                if managed.state != state or managed.reason != reason:
                    if state == State.BLOCKED:
                        self._store.append_system(managed.spec.name, f"blocked: {reason}")
                    managed.state, managed.reason = state, reason
                    self._publish_one(managed)
                    changed = True
        for managed in self._managed.values():
            if managed.stop_deferred and not any(
                d.run is not None and d.stop_requested for d in managed.dependents
            ):
                managed.stop_deferred = False
                self._signal_group(managed, managed.spec.stop_signal)
                self._schedule_for(
                    managed, managed.spec.stop_timeout, functools.partial(self._kill_late, managed)
                )
        self._dirty = False

    @staticmethod
    def _dependencies_of(managed: _Managed) -> tuple[str, str | None]:
        """``("ok", None)``, ``("wait", "db: ready")`` or ``("blocked", "db failed (...)")``."""
        waiting_for: str | None = None
        for other, condition, type_name in managed.requires:
            name = other.spec.name
            if other.state == State.FAILED:
                return "blocked", f"{name} failed ({exit_words(other.exit_code)})"
            if other.state == State.BLOCKED:
                return "blocked", f"{name} is blocked ({other.reason})"
            if condition == "completed":
                there = other.state == State.EXITED
            elif condition == "ready":
                there = other.run is not None and other.ready
            else:
                there = other.run is not None or other.state == State.EXITED
            if not there and waiting_for is None:
                waiting_for = f"{type_name}: {condition}"
        return ("ok", None) if waiting_for is None else ("wait", waiting_for)

    def stop_order(self, names: list[str]) -> list[str]:
        """``names`` with every process before those it depends on (the order to stop them
        in); reversed, the order to start them in. Any thread: the graph never changes."""
        placed: list[str] = []
        seen: set[str] = set()

        def place(managed: _Managed) -> None:
            if managed.spec.name in seen:
                return
            seen.add(managed.spec.name)
            for other, _, _ in managed.requires:
                place(other)
            placed.append(managed.spec.name)

        for name in names:
            place(self._managed[name])
        wanted = set(names)
        return [name for name in reversed(placed) if name in wanted]

    def _spawn(self, managed: _Managed) -> None:
        spec = managed.spec
        managed.generation += 1
        managed.restart_at = None
        managed.stop_requested = False
        managed.pending = False
        managed.reason = None
        env = self._environment(managed)
        env[CONSOLE_TAG] = self.token
        env[PROCESS_TAG] = spec.instance_name  # web.1, as PS: unique, also for a lone web
        env[RUN_TAG] = str(managed.generation)  # so a late sweep spares the next run
        setpriv = _setpriv()
        if setpriv is not None:
            # No Python between fork and exec, so Popen can vfork (~0.3 ms, not ~5 ms: a fork
            # copies the console's page tables, and the parent waits for the child's exec).
            # setpriv sets PDEATHSIG, then the shell checks that the console still is its
            # parent (it may have died before PDEATHSIG took effect), as _child_setup does.
            args = [setpriv, "--pdeathsig", "TERM", "--", "/bin/sh", "-c"]
            args.append(f'[ "$PPID" = {os.getpid()} ] || exit 1; {shell_line(spec.cmd)}')
            setup = None
        else:
            args, setup = ["/bin/sh", "-c", shell_line(spec.cmd)], _child_setup(os.getpid())
        terminal: tuple[int, int] | None = None  # (ours, the child's) ends of its pty
        try:
            if spec.pty:
                terminal = open_output_pty()
            popen = subprocess.Popen(
                args,
                cwd=spec.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if terminal is None else terminal[1],
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
                preexec_fn=setup,
            )
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the command or env
            if terminal is not None:
                os.close(terminal[0])
                os.close(terminal[1])
            managed.exit_code = None
            managed.state = State.FAILED
            self._store.append_system(spec.name, f"could not start: {exc}")
            self._publish_one(managed)
            self._resolve(managed.restart_waiters, ConsoleError(f"could not start: {exc}"))
            return
        self._groups.add(popen.pid)
        assert popen.stderr is not None
        if terminal is not None:
            os.close(terminal[1])  # the child has it: its exit then ends our reads (EIO)
            outputs = ((terminal[0], STDOUT), (popen.stderr.fileno(), STDERR))
        else:
            assert popen.stdout is not None
            outputs = ((popen.stdout.fileno(), STDOUT), (popen.stderr.fileno(), STDERR))
        fds = {}
        for fd, stream in outputs:
            os.set_blocking(fd, False)
            with contextlib.suppress(OSError):  # may exceed the user's pipe size limit
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            fds[fd] = stream
        pidfd = os.pidfd_open(popen.pid)
        run = _Run(popen, popen.pid, pidfd, fds, time.monotonic(), managed.generation)
        for fd, stream in fds.items():
            self._selector.register(fd, selectors.EVENT_READ, ("pipe", (managed, run, stream)))
        self._selector.register(pidfd, selectors.EVENT_READ, ("exit", managed))
        managed.run = run
        managed.state = State.RUNNING
        managed.started_at = time.time()
        managed.exit_code = None
        self._schedule_for(managed, spec.stable_after, lambda: self._mark_stable(managed))
        self._begin_probes(managed)
        self._publish_one(managed)
        self._resolve(managed.restart_waiters, "restarted")

    def _environment(self, managed: _Managed) -> dict[str, str]:
        """What a process (and its exec probes) runs with, less the supervisor's tags."""
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")  # Python children would block-buffer a pipe
        env.update(self.environment)
        env.update(managed.spec.environment())  # env files, PORT, PS, the env table
        return env

    # -- probes (loop thread) --------------------------------------------------------------------

    def _begin_probes(self, managed: _Managed) -> None:
        """A new run: not ready until its ready probe passes (ready at once without one)."""
        spec = managed.spec
        managed.unhealthy = False
        managed.ready = False
        managed.log_matcher = None
        managed.probes = {}
        for role, probe in (("ready", spec.ready), ("health", spec.health)):
            if probe is not None:
                managed.probes[role] = _ProbeState(role, probe)
        if spec.ready is None:
            self._mark_ready(managed)
        elif spec.ready.kind == "log":
            managed.log_matcher = LogMatcher(spec.ready.target)
        else:
            self._attempt(managed, "ready")

    def _attempt(self, managed: _Managed, role: str) -> None:
        """One attempt of a probe in the pool; its result comes back through the commands."""
        probe = managed.probes.get(role)
        run = managed.run
        if probe is None or run is None or probe.in_flight:
            return
        probe.in_flight = True

        def done(error: str | None) -> None:  # on a pool thread
            self.submit(self._probe_done, managed, run, role, error)

        self._probes.run(probe.spec, done, managed.spec.cwd, self._environment(managed))

    def _probe_done(self, managed: _Managed, run: _Run, role: str, error: str | None) -> None:
        probe = managed.probes.get(role)
        if managed.run is not run or probe is None:
            return  # that run is over; a new one has probes of its own
        probe.in_flight = False
        probe.checked_at = time.time()
        probe.passing = error is None
        probe.failures = 0 if error is None else probe.failures + 1
        if error is not None:
            probe.last_error = error
        again = functools.partial(self._attempt, managed, role)
        if role == "ready":
            if error is None:
                self._mark_ready(managed)
            else:
                self._schedule_for(managed, probe.spec.interval, again)
                self._publish_one(managed)
            return
        if error is not None and probe.failures >= probe.spec.failures:
            self._stop_unhealthy(managed, probe)
            return
        self._schedule_for(managed, probe.spec.interval, again)
        self._publish_one(managed)

    def _mark_ready(self, managed: _Managed) -> None:
        managed.ready = True
        managed.log_matcher = None
        ready = managed.probes.get("ready")
        if ready is not None:
            ready.passing, ready.failures = True, 0
            ready.checked_at = time.time()
            self._store.append_system(managed.spec.name, f"ready ({ready.spec.describe()})")
        health = managed.probes.get("health")
        if health is not None:
            again = functools.partial(self._attempt, managed, "health")
            self._schedule_for(managed, health.spec.interval, again)
        self._publish_one(managed)

    def _stop_unhealthy(self, managed: _Managed, probe: _ProbeState) -> None:
        """The health probe failed ``failures`` times in a row: stop the process (signal, stop
        timeout, SIGKILL); its exit counts as a failure, so its restart policy decides."""
        policy = managed.spec.restart
        then = "restarting it" if policy in ("on-failure", "always") else "not restarting it"
        self._store.append_system(
            managed.spec.name,
            f"health check failed {probe.failures} times in a row ({probe.spec.describe()}: "
            f"{probe.last_error}); stopping it, {then} (restart = {policy!r})",
        )
        managed.unhealthy = True
        managed.ready = False
        managed.generation += 1  # no more probes or stable-period timer for this run
        self._signal_group(managed, managed.spec.stop_signal)
        self._schedule_for(
            managed, managed.spec.stop_timeout, functools.partial(self._kill_late, managed)
        )
        self._publish_one(managed)

    @staticmethod
    def _resolve(waiters: list[Future[Any]], outcome: object) -> None:
        """Complete every waiting Future with ``outcome`` (an exception fails them)."""
        for waiter in waiters:
            if waiter.done():
                continue
            if isinstance(outcome, BaseException):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)
        waiters.clear()

    def _mark_stable(self, managed: _Managed) -> None:
        if managed.run is not None and managed.failures:
            managed.failures = 0
            self._publish_one(managed)

    def _on_pipe(self, fd: int, managed: _Managed, run: _Run, stream: int) -> int:
        if fd in run.fds:  # else closed earlier in this same batch of events
            return self._read_once(fd, managed, run, stream)
        return 0

    def _read_once(self, fd: int, managed: _Managed, run: _Run, stream: int) -> int:
        """Read one chunk (up to READ_CHUNK) of a pipe into the store.

        The chunk lands in the loop's one reused buffer, which the store copies from before the
        next read. Closes the pipe at end of file. Returns the bytes read: 0 when nothing more
        is readable now (or the pipe is closed).
        """
        try:
            n = os.readv(fd, [self._read_buffer])
        except BlockingIOError:
            return 0
        except OSError:
            n = 0
        if not n:
            self._close_pipe(fd, managed, run, stream)
            return 0
        run.last_output = time.monotonic()
        self._store.append(managed.spec.name, stream, self._read_view[:n])
        matcher = managed.log_matcher
        if matcher is not None and matcher.feed(stream, self._read_view[:n]):
            self._mark_ready(managed)
        return n

    def _close_pipe(self, fd: int, managed: _Managed, run: _Run, stream: int) -> None:
        self._selector.unregister(fd)
        run.fds.pop(fd, None)
        # Close it through its Popen file object: a bare os.close would leave that object to close
        # the same number again at exit, when it may belong to another process's pipe or pidfd.
        pipe = run.popen.stdout if stream == STDOUT else run.popen.stderr
        if pipe is not None:
            pipe.close()
        else:  # a pty's end (pty = true): no Popen object holds it
            os.close(fd)
        self._store.flush(managed.spec.name, stream)

    def _drain(self, managed: _Managed, run: _Run) -> None:
        """Read what the pipes still hold and close them, so a process's last words precede its
        exit line. Bounded: a stray writer outside the group could otherwise keep it going."""
        for fd, stream in list(run.fds.items()):
            drained = 0
            while drained < DRAIN_MAX_BYTES:
                read = self._read_once(fd, managed, run, stream)
                if not read:
                    break
                drained += read
            if fd in run.fds:  # not at end of file: something outside the group holds it open
                self._close_pipe(fd, managed, run, stream)

    def _on_exit(self, managed: _Managed) -> None:
        run = managed.run
        if run is None:
            return
        self._selector.unregister(run.pidfd)
        os.close(run.pidfd)
        # Whatever the leader left behind goes with it: its group, signalled while the unreaped
        # leader still holds the group id (so it cannot be another's yet), and any descendant
        # that left the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.pid, signal.SIGKILL)
        self._sweep_run(managed.spec.instance_name, run.tag, STRAY_SWEEPS)
        _, status = os.waitpid(run.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        run.popen.returncode = code  # we reaped it; keep Popen from trying again
        self._groups.remove(run.pid)
        self._drain(managed, run)
        managed.run = None
        managed.exit_code = code
        managed.ready = False
        managed.log_matcher = None
        managed.exits[code] = managed.exits.get(code, 0) + 1
        lasted = time.monotonic() - run.started
        managed.last_run = lasted
        managed.last_exit = code
        name = managed.spec.name
        if managed.stop_requested:
            managed.state = State.STOPPED
            self._store.append_system(name, f"stopped ({exit_words(code)})")
            self._resolve(managed.stop_waiters, "stopped")
            if managed.start_after_stop and self._running:
                managed.start_after_stop = False
                managed.restarts += 1
                self._spawn(managed)
                return
            self._publish_one(managed)
            return
        policy = managed.spec.restart
        failed = code != 0 or managed.unhealthy  # stopped by its health probe: a failure
        restart = self._running and (policy == "always" or (policy == "on-failure" and failed))
        if not restart:
            managed.state = State.FAILED if failed else State.EXITED
            self._store.append_system(name, f"{exit_words(code)}")
            self._publish_one(managed)
            return
        quick = lasted < managed.spec.stable_after
        managed.failures = managed.failures + 1 if quick else 0
        delay = min(
            managed.spec.backoff_initial * 2 ** max(managed.failures - 1, 0),
            managed.spec.backoff_max,
        )
        managed.state = (
            State.CRASH_LOOP if managed.failures >= CRASH_LOOP_FAILURES else State.BACKOFF
        )
        managed.generation += 1
        managed.restart_at = time.monotonic() + delay
        self._store.append_system(name, f"{exit_words(code)}; restarting in {delay:.1f}s")
        self._schedule_for(managed, delay, lambda: self._auto_restart(managed))
        self._publish_one(managed)

    def _sweep_run(self, name: str, tag: int, sweeps: int) -> None:
        """SIGKILL the descendants of one run that left its group, now and again a little later:
        one caught in the middle of an exec shows no environment for an instant, so a single
        sweep can miss it. The run's tag keeps a later sweep off the process's next run."""
        signal_pids(tagged_pids(self.token, name, tag), signal.SIGKILL)
        if sweeps > 1:
            self._schedule(STRAY_SWEEP_INTERVAL, lambda: self._sweep_run(name, tag, sweeps - 1))

    def _auto_restart(self, managed: _Managed) -> None:
        if self._running and managed.state in State.WAITING:
            managed.restarts += 1
            self._spawn(managed)

    def _signal_group(self, managed: _Managed, sig: int) -> None:
        run = managed.run
        if run is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(run.pid, sig)

    def _begin_stop(self, managed: _Managed) -> None:
        """Stopping; signalled by ``_advance`` once no process depending on it that is being
        stopped too still runs (so dependents stop first)."""
        managed.stop_requested = True
        if managed.state == State.STOPPING:
            return
        managed.state = State.STOPPING
        managed.ready = False
        managed.generation += 1
        managed.stop_deferred = True
        self._publish_one(managed)

    def _kill_late(self, managed: _Managed) -> None:
        """The stop timeout passed with the process still there: SIGKILL its group, and say so
        (in its log, and in ``kills_in_shutdown`` when the console is shutting down: ``up``
        then exits 143)."""
        if managed.run is None:
            return
        if not self._running:
            self.kills_in_shutdown += 1
        timeout = managed.spec.stop_timeout
        self._store.append_system(
            managed.spec.name, f"still running {timeout:g}s after {_signal_name(managed)}: SIGKILL"
        )
        self._signal_group(managed, signal.SIGKILL)

    # -- commands (loop thread) ------------------------------------------------------------------

    def _refuse_when_shutting_down(self) -> None:
        if not self._running:
            raise ConsoleError("the console is shutting down")

    def _cmd_start(self, name: str) -> str:
        self._refuse_when_shutting_down()
        managed = self._managed[name]
        if managed.state == State.RUNNING:
            return "already running"
        if managed.state == State.STOPPING:
            managed.start_after_stop = True
            return "starting after stop"
        managed.failures = 0
        return self._start_when_possible(managed)

    def _start_when_possible(self, managed: _Managed) -> str:
        """Start now if its dependencies are there, else leave it waiting: the outcome. Raises
        if it is blocked (it still starts if the dependency gets there) or could not start."""
        managed.pending = True
        self._advance()
        name = managed.spec.name
        if managed.run is not None:
            return "started"
        if managed.state == State.WAITING_FOR_DEPENDENCIES:
            return f"waiting ({managed.reason})"
        if managed.state == State.BLOCKED:
            raise ConsoleError(f"{name} is blocked: {managed.reason}")
        raise ConsoleError(f"could not start {name}: see its log")

    def _cmd_stop(self, name: str, future: Future[Any]) -> None:
        managed = self._managed[name]
        managed.start_after_stop = False
        self._resolve(managed.restart_waiters, ConsoleError("restart cancelled by a stop"))
        if managed.run is None:
            # Nothing to signal: a restart or a start was pending (now cancelled), or nothing runs.
            waiting = managed.state in State.WAITING or managed.pending
            self._cancel_waiting_restart(managed)
            future.set_result("stopped" if waiting else "not running")
            return
        managed.stop_waiters.append(future)
        self._begin_stop(managed)

    def _cmd_restart(self, name: str, future: Future[Any]) -> None:
        self._refuse_when_shutting_down()
        managed = self._managed[name]
        managed.restart_waiters.append(future)
        if managed.run is None:
            managed.failures = 0
            managed.restarts += 1
            try:
                outcome = self._start_when_possible(managed)
            except ConsoleError as exc:
                self._resolve(managed.restart_waiters, exc)
                return
            self._resolve(managed.restart_waiters, outcome)
            return
        managed.start_after_stop = True
        self._begin_stop(managed)

    def _cmd_shutdown(self, future: Future[Any]) -> None:
        with self._commands_lock:
            self._running = False
        for managed in self._managed.values():
            managed.start_after_stop = False
            self._resolve(managed.restart_waiters, ConsoleError("the console is shutting down"))
            if managed.run is not None:
                self._begin_stop(managed)
            else:
                self._cancel_waiting_restart(managed)
        future.set_result(None)

    def _cancel_waiting_restart(self, managed: _Managed) -> None:
        """A process waiting out its backoff (or for its dependencies) is stopped where it is
        (the timer goes stale)."""
        managed.pending = False
        managed.reason = None
        if managed.state in State.HELD:
            managed.state = State.STOPPED
            self._store.append_system(managed.spec.name, "stopped (start cancelled)")
            self._publish_one(managed)
        if managed.state in State.WAITING:
            managed.generation += 1
            managed.restart_at = None
            managed.state = State.STOPPED
            self._store.append_system(managed.spec.name, "stopped (restart cancelled)")
            self._publish_one(managed)

    def _kill_everything(self) -> None:
        for managed in self._managed.values():
            self._signal_group(managed, signal.SIGKILL)

    # -- publishing ------------------------------------------------------------------------------

    def _publish_one(self, managed: _Managed, notify: bool = True) -> None:
        run = managed.run
        spec = managed.spec
        self._published[spec.name] = _Published(
            managed.state,
            run.pid if run else None,
            managed.started_at,
            managed.restarts,
            managed.exit_code,
            managed.restart_at,
            managed.rate,
            managed.ready and run is not None,
            managed.reason,
            tuple(probe.status() for probe in managed.probes.values()),
            managed.last_run,
            managed.last_exit,
            tuple(sorted(managed.exits.items())),
        )
        self.version += 1
        if notify:
            self._dirty = True
            with self._listeners_lock:
                listeners = list(self._listeners)
            for listener in listeners:
                listener()


def _report(message: str) -> None:
    """One line on the console's stderr (under the TUI, Textual captures it)."""
    with contextlib.suppress(OSError, ValueError):
        print(f"lacrimosa: {message}", file=sys.stderr, flush=True)


def _signal_name(managed: _Managed) -> str:
    return describe_exit(-managed.spec.stop_signal)
