"""The console's side of event ingest: the sequencer runs in a process of its own.

Receive, check, stamp and journal write need an interpreter lock of their own: in the console's,
every reader of the journal (the TUI, each ``events -f`` follower) competed with them for it, and
the more people looked at the events the more were lost. So :class:`IngestProcess` starts the
sequencer as a child (events/ingest_child.py) and the console only reads:

* **The socket** is bound here, before any process starts (so a taken port is an error at ``up``,
  and every process can be told the address), and its descriptor is passed to each ingest process.
  Datagrams that arrive while ingest restarts wait in the kernel's receive buffer.
* **The journal** is opened, locked and recovered by the ingest process, its only writer; the
  console maps the same file read-only (:meth:`Journal.open_reader`), so every reader works as
  before, zero-copy from the mapping.
* **The counters** (received, accepted, drops by cause, rate history, errors) are in a small block
  of shared memory (ingest_stats.py) that the ingest process writes after each batch and the
  console reads without locks. Nothing is sent per event.
* **The life cycle.** The ingest process runs in its own process group, registered with the
  guardian like every supervised process, with ``LACRIMOSA_CONSOLE`` in its environment and
  PR_SET_PDEATHSIG: nothing survives a ``kill -9`` of the console. Its first line on stdout says
  it is ready (with the journal's recovery report) or why it cannot start, which stops the console
  before any process starts. If it dies later, it is restarted (the journal recovered by the new
  one, which goes on counting where the last stopped): at once after a first quick death, then
  after a doubling delay (``RESTART_BACKOFF_INITIAL`` up to ``RESTART_BACKOFF_MAX``); from
  ``FAILING_AFTER`` quick deaths in a row it shows as ``failing``. Every restart is counted and
  shown (``status``, ``ps`` warnings, the Overview) with how long events were not ingested, how the
  journal was recovered, and what the kernel dropped meanwhile. Its stderr is passed on to the
  console's.

**Why a session of its own.** Linux's scheduler gives each session an equal share of the CPU
(autogroups) before sharing it among the session's threads. In a session of its own, ingest under
a flood does not compete thread by thread with the console's own threads (the control server
feeding ``events -f`` followers, the TUI). Tried in the console's session (bench/ingest_readers.py):
0.85-0.89x the rate with 20 followers, against 0.82-0.95x in its own in the same hour, a difference
the noise hides; it keeps its own for the isolation it gives by construction. The other side: a
sender started in the console's session (a background job of the same shell) shares the TUI's
share, and the TUI's thread then waited on the run queue for 50 to 90 ms at a time (its schedstat;
bench/tui_events.py starts its sender in a session of its own, as a supervised process or a
program started from another terminal is).

One thread (``lacrimosa-ingest``) starts, watches and restarts the child for the console's whole
life: PR_SET_PDEATHSIG follows the thread that started a child, so it must outlive the child.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import SequencerSettings, parse_address
from ..errors import ConsoleError, JournalError
from ..humanize import exit_words
from ..processes.guardian import CONSOLE_TAG, PROCESS_TAG
from . import ingest_stats as shared
from .frames import Event
from .ingest_stats import SharedStats
from .journal import Journal, RecoveryReport
from .receivers import kernel_drops, open_udp_socket
from .sequencer import DROP_CAUSES, STOP_DRAIN_SECONDS, SequencerStats, sequencer_status

PROCESS_NAME = "(ingest)"  # LACRIMOSA_PROCESS of the ingest process (no configured name has it)
READY_TIMEOUT = 120.0  # seconds an ingest process may take to open (recover) the journal
STOP_TIMEOUT = STOP_DRAIN_SECONDS + 8.0  # then SIGKILL: a stop never hangs on it
RESTART_BACKOFF_INITIAL = 0.25
RESTART_BACKOFF_MAX = 30.0
STABLE_AFTER = 10.0  # an ingest process that lived this long resets the count of quick deaths
FAILING_AFTER = 3
HEAD_POLL = 0.005  # seconds between two looks at the journal's head while followers wait
HEAD_WATCH_LINGER = 1.0  # the head watcher ends after this long with no follower waiting
MAX_FORWARDED_LINES = 200  # lines of an ingest process's stderr passed on (the rest counted)
# Datagrams a killed ingest process may have received but not journaled: its staging buffers.
_IN_FLIGHT_BOUND = "a few thousand"


@dataclasses.dataclass(frozen=True)
class Restart:
    """One death of the ingest process and what followed."""

    exit: str  # "killed by SIGKILL", "exited with code 1"
    lived: float  # seconds
    error: str | None  # what it said before dying (its failure), if anything
    down: float | None  # seconds until the next one was ready (None: not yet)
    recovery: str | None  # how the next one found the journal
    kernel_drops: int | None  # datagrams the kernel dropped while none ran

    def to_dict(self) -> dict[str, Any]:
        return {
            "exit": self.exit,
            "lived": round(self.lived, 3),
            "error": self.error,
            "down": None if self.down is None else round(self.down, 3),
            "recovery": self.recovery,
            "kernel_drops": self.kernel_drops,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Restart:
        """The inverse of ``to_dict`` (a client's copy of what the console sent)."""
        return cls(**{field.name: data[field.name] for field in dataclasses.fields(cls)})

    def describe(self) -> str:
        parts = [f"{self.exit} after {self.lived:.1f}s"]
        if self.error:
            parts.append(f"({self.error})")
        if self.down is not None:
            parts.append(f"; back in {self.down:.2f}s")
        if self.recovery:
            parts.append(f"; journal: {self.recovery}")
        if self.kernel_drops:
            parts.append(f"; {self.kernel_drops:,} datagrams dropped by the kernel meanwhile")
        return " ".join(parts).replace(" ;", ";")


class IngestProcess:
    """The sequencer, run in a child process; the console's view of it (see the docstring).

    It reads like the in-process :class:`Sequencer` did: ``journal`` (read-only), ``stats()``,
    ``status()``, ``warnings()``, ``events()``, ``failure``, ``address``, ``socket_info``."""

    def __init__(
        self,
        settings: SequencerSettings,
        journal_path: Path,
        *,
        register: Callable[[int], None] | None = None,
        unregister: Callable[[int], None] | None = None,
        token: str | None = None,
    ) -> None:
        assert settings.udp is not None
        self.settings = settings
        self.journal_path = Path(journal_path)
        self._register = register or (lambda pgid: None)
        self._unregister = unregister or (lambda pgid: None)
        self._token = token
        host, port = parse_address(settings.udp)
        try:
            self._socket, self.socket_info = open_udp_socket(host, port, settings.rcvbuf)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConsoleError(f"cannot receive events on {settings.udp}: {reason}") from None
        try:
            self._stats_fd, self.shared = SharedStats.create()
        except BaseException:
            self._socket.close()
            raise
        self.shared.words[shared.KERNEL_BASE] = kernel_drops(self._socket) or 0
        self._journal: Journal | None = None
        self.backend = "?"
        self.backend_note: str | None = None
        self.pid: int | None = None
        self.restarts = 0
        self.history: list[Restart] = []  # the last few deaths, oldest first
        self._state = "starting"  # running | restarting | failing | stopped
        self._failure: str | None = None  # why none runs now
        self._failures_in_a_row = 0
        self._restart_at: float | None = None  # monotonic, while one is due
        self._first = threading.Event()  # the first start finished (ready or not)
        self._first_error: BaseException | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Lock()
        self._forwarded = 0
        self.stderr_lines_dropped = 0
        self._closed = False
        self._head_changed = threading.Condition()
        self._head_watcher: threading.Thread | None = None
        self._head_waiters = 0
        self._published_head = 0

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the ingest process and wait until it is ready; raise (and free everything) if
        it cannot start (a journal refused, say): then nothing is left running."""
        self._thread = threading.Thread(target=self._run, name="lacrimosa-ingest", daemon=True)
        self._thread.start()
        self._first.wait()
        if self._first_error is not None:
            self._thread.join()
            self._close()
            raise self._first_error

    def stop(self) -> None:
        """Stop the ingest process (it journals what arrived, for at most STOP_DRAIN_SECONDS,
        and closes the journal cleanly; SIGKILL after STOP_TIMEOUT), then close the socket and
        the console's view of the journal. Idempotent; blocks until done."""
        with self._stopping:
            if self._closed:
                return
            self._stop.set()
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
            if self._thread is not None:
                self._thread.join()
            self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._state = "stopped"
        if self._journal is not None:
            self._journal.close()
        self._socket.close()
        os.close(self._stats_fd)
        os.close(self._wake_r)
        os.close(self._wake_w)

    @property
    def journal(self) -> Journal:
        """The journal, mapped read-only (the ingest process writes it)."""
        assert self._journal is not None, "the ingest process has not started"
        return self._journal

    @property
    def address(self) -> str:
        host, port = self.socket_info.address[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    # -- the watching thread ---------------------------------------------------------------------

    def _run(self) -> None:
        first = True
        try:
            while not self._stop.is_set():
                spawned_at = time.monotonic()
                child = self._spawn()
                if child is None:
                    if first:
                        return
                else:
                    ready = self._await_ready(child)
                    if ready is not None:
                        self._on_ready(ready, spawned_at, first)
                        first = False
                        self._watch(child)
                    elif first:
                        self._reap(child, kill=True)
                        return
                    else:
                        self._watch(child)
                    if self._stop.is_set():
                        return
                if not self._wait_restart():
                    return
        except BaseException as exc:  # a bug here: said, and shown as the ingest's failure
            self._failure = f"the ingest watcher failed: {type(exc).__name__}: {exc}"
            self._state = "failing"
            _report(self._failure)
            if self._first_error is None and not self._first.is_set():
                self._first_error = ConsoleError(self._failure)
        finally:
            self._first.set()

    def _kernel_drops(self) -> int | None:
        return kernel_drops(self._socket)

    def _spawn(self) -> _Child | None:
        config = {
            "udp": self.settings.udp,
            "journal": str(self.journal_path),
            "capacity": self.settings.capacity,
            "blob_size": self.settings.blob_size,
            "backend": self.settings.backend,
            "rcvbuf": self.settings.rcvbuf,
            "socket_fd": self._socket.fileno(),
            "stats_fd": self._stats_fd,
            "console_pid": os.getpid(),
        }
        env = dict(os.environ)
        if self._token is not None:
            env[CONSOLE_TAG] = self._token
            env[PROCESS_TAG] = PROCESS_NAME
        try:
            popen = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-m",
                    "lacrimosa.engine.events.ingest_child",
                    json.dumps(config),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
                close_fds=True,
                pass_fds=(self._socket.fileno(), self._stats_fd),
            )
        except OSError as exc:
            self._died(None, f"could not start the ingest process: {exc}")
            if not self._first.is_set():
                self._first_error = ConsoleError(f"cannot start event ingest: {exc}")
            return None
        self._register(popen.pid)
        child = _Child(popen, os.pidfd_open(popen.pid), time.monotonic(), self._wake_r)
        self.pid = popen.pid
        return child

    def _await_ready(self, child: _Child) -> dict[str, Any] | None:
        """The child's first line: its ready report, or None (it refused to start, or died)."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline and not self._stop.is_set():
            line = child.read_line(self, min(0.5, deadline - time.monotonic()))
            if line is None:
                if child.exited():
                    break
                continue
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "ready" in message:
                ready: dict[str, Any] = message["ready"]
                return ready
            if "error" in message:
                error = message["error"]
                text = str(error.get("message"))
                cls = JournalError if error.get("kind") == "journal" else ConsoleError
                child.error = text
                if not self._first.is_set():
                    self._first_error = cls(text)
                return None
        if not self._first.is_set() and self._first_error is None:
            why = "the ingest process stopped before it was ready"
            if not child.exited():
                why = f"the ingest process was not ready within {READY_TIMEOUT:.0f}s"
            self._first_error = ConsoleError(f"cannot start event ingest: {why}")
        return None

    def _on_ready(self, ready: dict[str, Any], spawned_at: float, first: bool) -> None:
        fields = dict(ready["recovery"])
        fields["repairs"] = tuple(fields.get("repairs", ()))
        recovery = RecoveryReport(**fields)
        self.backend = str(ready["backend"])
        self.backend_note = ready.get("backend_note")
        journal = self._journal
        if journal is None or recovery.created:
            # The first start, or the journal file was made anew (moved away meanwhile).
            journal = Journal.open_reader(
                self.journal_path, self.settings.capacity, self.settings.blob_size, recovery
            )
            old, self._journal = self._journal, journal
            if old is not None:
                old.close()
        journal.recovery = recovery
        if not first and self.history:
            drops_after = self._kernel_drops()
            dropped = None
            if self._drops_at_death is not None and drops_after is not None:
                dropped = drops_after - self._drops_at_death
            last = self.history[-1]
            self.history[-1] = dataclasses.replace(
                last,
                down=time.monotonic() - spawned_at + self._down_before_spawn,
                recovery=recovery.describe(),
                kernel_drops=dropped,
            )
        self._failure = None
        self._restart_at = None
        self._state = "failing" if self._failures_in_a_row >= FAILING_AFTER else "running"
        self._first.set()

    _down_before_spawn = 0.0  # seconds from the death to the spawn (the backoff), for ``down``
    _drops_at_death: int | None = None  # the socket's kernel drop counter then

    def _watch(self, child: _Child) -> None:
        """Until the child exits (or the console stops: then stop it)."""
        while True:
            if self._stop.is_set():
                self._stop_child(child)
                return
            if child.wait_event(self, 1.0):
                break
        self._drops_at_death = self._kernel_drops()
        code = self._reap(child, kill=False)
        lived = time.monotonic() - child.started
        error = child.error or self.shared.read_text("failure")
        quick = lived < STABLE_AFTER
        self._failures_in_a_row = self._failures_in_a_row + 1 if quick else 1
        self.restarts += 1
        self._died(code, error, lived)

    def _died(self, code: int | None, error: str | None, lived: float = 0.0) -> None:
        words = exit_words(code) if code is not None else "could not start"
        self.history.append(Restart(words, lived, error, None, None, None))
        del self.history[:-5]
        verb = "was " if words.startswith("killed") else ""
        self._failure = f"the ingest process {verb}{words}" + (f": {error}" if error else "")
        self._state = "failing" if self._failures_in_a_row >= FAILING_AFTER else "restarting"
        self.pid = None
        self._died_at = time.monotonic()
        if self._first.is_set():
            _report(f"{self._failure}; restarting it")

    def _wait_restart(self) -> bool:
        """Wait out the backoff; False if the console stops meanwhile."""
        failures = max(self._failures_in_a_row, 1)
        delay = (
            0.0
            if failures <= 1
            else min(RESTART_BACKOFF_INITIAL * 2 ** (failures - 2), RESTART_BACKOFF_MAX)
        )
        self._restart_at = time.monotonic() + delay
        stopped = self._stop.wait(delay)
        self._down_before_spawn = delay
        return not stopped

    def _stop_child(self, child: _Child) -> None:
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(child.pidfd, signal.SIGTERM)
        if not child.wait_event(self, STOP_TIMEOUT, stoppable=False):
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(child.pidfd, signal.SIGKILL)
        self._reap(child, kill=True)

    def _reap(self, child: _Child, *, kill: bool) -> int:
        if kill and not child.exited():
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(child.pidfd, signal.SIGKILL)
        code = child.popen.wait()
        child.drain_stderr(self)
        child.close()
        self._unregister(child.popen.pid)
        return code

    def forward(self, line: bytes) -> None:
        """A line of an ingest process's stderr, passed on to the console's (bounded)."""
        if self._forwarded >= MAX_FORWARDED_LINES:
            self.stderr_lines_dropped += 1
            return
        self._forwarded += 1
        with contextlib.suppress(OSError, ValueError):
            print(line.decode("utf-8", "replace").rstrip("\n"), file=sys.stderr, flush=True)

    # -- waiting for events ----------------------------------------------------------------------

    def published_head(self) -> int:
        """The journal's head as the head watcher last published it (read now if none runs):
        followers woken together see the same value, so they cut the same batches and share
        them (see protocol.py)."""
        with self._head_changed:
            if self._head_watcher is not None:
                return self._published_head
        return self.journal.head

    def wait_for_events(self, seen: int, timeout: float) -> int:
        """Block until the journal's head is above ``seen`` (or ``timeout`` passes, or the
        console stops); the head. One thread reads the head every ``HEAD_POLL`` seconds (one
        8-byte load from the mapping) while anyone waits, and wakes every waiter at once: no
        follower copies or checks a slot to learn that nothing arrived."""
        journal = self.journal
        with self._head_changed:
            head = journal.head
            if head > seen or journal.closed:
                return head
            if self._head_watcher is None:
                self._published_head = head
                self._head_watcher = threading.Thread(
                    target=self._watch_head, name="lacrimosa-events-head", daemon=True
                )
                self._head_watcher.start()
            self._head_waiters += 1
            try:
                self._head_changed.wait_for(
                    lambda: self._published_head > seen or journal.closed, timeout
                )
            finally:
                self._head_waiters -= 1
            return self._published_head

    def _watch_head(self) -> None:
        idle_since = time.monotonic()
        journal = self.journal
        while True:
            time.sleep(HEAD_POLL)
            head = journal.head
            with self._head_changed:
                if head != self._published_head or journal.closed:
                    self._published_head = head
                    self._head_changed.notify_all()
                if self._head_waiters:
                    idle_since = time.monotonic()
                elif journal.closed or time.monotonic() - idle_since > HEAD_WATCH_LINGER:
                    self._head_watcher = None
                    return

    # -- reading ---------------------------------------------------------------------------------

    @property
    def failure(self) -> str | None:
        """Why events are not being ingested now (None while they are)."""
        if self._failure is not None:
            return self._failure
        if self.shared.get(shared.FAILED):
            return self.shared.read_text("failure") or "the sequencer stopped"
        return None

    @property
    def ingest_errors(self) -> int:
        return self.shared.get(shared.INGEST_ERRORS)

    @property
    def lost(self) -> int:
        return self.shared.get(shared.LOST)

    @property
    def last_error(self) -> str | None:
        return self.shared.read_text("last_error")

    @property
    def state(self) -> str:
        return self._state

    def stats(self) -> SequencerStats:
        words = self.shared.words
        history = self.shared.history()
        # Accepted before received: the writer stores received last.
        accepted = int(words[shared.ACCEPTED])
        return SequencerStats(
            received=int(words[shared.RECEIVED]),
            accepted=accepted,
            text=int(words[shared.TEXT]),
            framed=int(words[shared.FRAMED]),
            drops={
                cause: int(words[index])
                for cause, index in zip(DROP_CAUSES, shared.DROPS, strict=True)
            },
            clock_ignored=int(words[shared.CLOCK_IGNORED]),
            rate=float(history[-1]) if history else 0.0,
            history=history,
        )

    def events(
        self,
        lines: int,
        *,
        node: int | None = None,
        stream: int | None = None,
        below: int | None = None,
    ) -> list[Event]:
        """The newest ``lines`` events (see :meth:`Journal.newest_events`)."""
        return self.journal.newest_events(lines, node, stream, below)

    def ingest_status(self) -> dict[str, Any]:
        restart_in = None
        if self._restart_at is not None and self.pid is None:
            restart_in = round(max(self._restart_at - time.monotonic(), 0.0), 3)
        return {
            "pid": self.pid,
            "state": self._state,
            "restarts": self.restarts,
            "restart_in": restart_in,
            "last_restart": self.history[-1].to_dict() if self.history else None,
        }

    def status(self) -> dict[str, Any]:
        out = sequencer_status(self, self.backend, last_error=self.last_error, failure=self.failure)
        out["ingest"] = self.ingest_status()
        return out

    def warnings(self) -> list[str]:
        """What is wrong with event ingest, in a sentence each (empty when all is well)."""
        out = []
        failure = self.failure
        if failure is not None:
            out.append(f"the event sequencer stopped: {failure} (events are not being received)")
        elif self.ingest_errors:
            out.append(
                f"the event sequencer lost {self.lost:,} datagrams in {self.ingest_errors:,} "
                f"failed batches (last: {self.last_error})"
            )
        if self.restarts:
            failing = " (failing: it keeps dying)" if self._state == "failing" else ""
            out.append(
                f"the event ingest process was restarted {self.restarts:,} "
                f"time{'s' if self.restarts != 1 else ''}{failing}; last: "
                f"{self.history[-1].describe()}; datagrams it had received but not yet "
                f"journaled ({_IN_FLIGHT_BOUND} at most) were lost"
            )
        if self._journal is not None:
            repairs = self._journal.recovery.repairs
            if repairs:
                out.append(f"the event journal was repaired on opening: {'; '.join(repairs)}")
        return out


class _Child:
    """One ingest process: its Popen, pidfd and pipes (the watching thread only)."""

    def __init__(
        self, popen: subprocess.Popen[bytes], pidfd: int, started: float, wake: int
    ) -> None:
        assert popen.stdout is not None and popen.stderr is not None
        self.popen = popen
        self.pidfd = pidfd
        self.started = started
        self.error: str | None = None
        self._out = popen.stdout.fileno()
        self._err = popen.stderr.fileno()
        os.set_blocking(self._out, False)
        os.set_blocking(self._err, False)
        self._pending = {self._out: b"", self._err: b""}
        self._lines: list[bytes] = []
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._out, selectors.EVENT_READ)
        self._selector.register(self._err, selectors.EVENT_READ)
        self._selector.register(pidfd, selectors.EVENT_READ)
        self._wake = wake  # readable once the console stops
        self._selector.register(wake, selectors.EVENT_READ)
        self._exited = False
        self.woken = False

    def exited(self) -> bool:
        return self._exited or self.popen.poll() is not None

    def _pump(self, owner: IngestProcess | None, timeout: float | None) -> bool:
        """Read what the pipes hold (stderr passed on, stdout lines kept); True once exited."""
        for key, _ in self._selector.select(timeout):
            fd = key.fd
            if fd == self._wake:
                self.woken = True
                self._selector.unregister(fd)  # left unread: stop() wrote it for good
                continue
            if fd == self.pidfd:
                self._exited = True
                self._selector.unregister(fd)
                continue
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self._selector.unregister(fd)
                continue
            data = self._pending[fd] + chunk
            *lines, self._pending[fd] = data.split(b"\n")
            if len(self._pending[fd]) > 65536:  # a line without end: passed on in pieces
                lines.append(self._pending[fd])
                self._pending[fd] = b""
            if fd == self._out:
                self._lines.extend(lines)
            elif owner is not None:
                for line in lines:
                    owner.forward(line)
        return self._exited

    def read_line(self, owner: IngestProcess, timeout: float) -> str | None:
        if not self._lines:
            self._pump(owner, max(timeout, 0.0))
        if self._lines:
            return self._lines.pop(0).decode("utf-8", "replace")
        return None

    def wait_event(self, owner: IngestProcess, timeout: float, stoppable: bool = True) -> bool:
        """Pump until the child exits (True), or ``timeout`` passes or (``stoppable``) the
        console stops (False)."""
        deadline = time.monotonic() + timeout
        while True:
            if self._pump(owner, max(0.0, deadline - time.monotonic())):
                return True
            if time.monotonic() >= deadline or (stoppable and self.woken):
                return False

    def drain_stderr(self, owner: IngestProcess) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._pump(owner, 0)
        tail = self._pending.get(self._err, b"")
        if tail:
            owner.forward(tail)

    def close(self) -> None:
        self._selector.close()
        os.close(self.pidfd)
        for pipe in (self.popen.stdout, self.popen.stderr):
            if pipe is not None:
                pipe.close()


def _report(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"lacrimosa: event ingest: {message}", file=sys.stderr, flush=True)
