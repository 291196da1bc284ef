"""What ``lacrimosa up --headless`` prints: every captured line, and every state change, on stdout.

Text, as ``docker compose up`` and honcho print it::

    12:00:01 web    * started (pid 4242)
    12:00:01 web    | listening on :5000
    12:00:02 worker ! a line the worker wrote on stderr
    12:00:03 test   * exited with code 3

a column-aligned prefix (the time the line was read, the process, a mark: ``|`` stdout, ``!``
stderr, ``*`` a state change), coloured only when stdout is a terminal and ``NO_COLOR`` is
unset. ``--no-timestamps`` drops the time; ``--no-prefix`` prints the lines bare (the state
changes then go to stderr as ``lacrimosa: web started (pid 4242)``, so stdout holds only what
the children wrote). ``--output json`` prints one object per line: a line as ``logs --json``
prints it (``{"id", "time", "process", "stream", "text"}``), a state change as ``{"time",
"process", "stream": "system", "state", "pid", "exit_code", "text"}``.

Child text is made safe for a terminal (engine/terminal_text.py: colours kept on a terminal and
stripped elsewhere, every other control sequence shown inert); JSON escapes every control
character.

It never slows the console: the printer is a reader of the log store like any other (the
capture never waits for it), and what it formats waits for stdout in a buffer of at most
``OUTPUT_BUFFER_BYTES``, written by a thread of its own. When stdout stops reading (a stalled
pipe, a paused terminal), lines that do not fit are dropped, not formatted, and counted; once
stdout takes bytes again, a line says how many (``lacrimosa: 1234 lines dropped: stdout did not
keep up``; JSON ``{"time", "dropped": N, "text"}``). ``status`` shows the counts (``headless``).
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..engine.console import Console
from ..engine.humanize import describe_exit
from ..engine.logs.query import LogQuery, LogView
from ..engine.logs.store import STDERR, SYSTEM, Block, StoreSnapshot
from ..engine.processes.supervisor import ProcessInfo, State
from ..engine.terminal_text import TextMode, json_text, terminal_safe
from .bulk import jsonl_bytes, runs, text_bytes

OutputForm = Literal["text", "json"]
OUTPUT_FORMS: tuple[OutputForm, ...] = ("text", "json")

OUTPUT_BUFFER_BYTES = 1 << 20  # formatted output waiting for stdout; past it lines are dropped
POLL_INTERVAL = 0.05  # how often the printer looks for new lines (the store is polled, not pushed)
BATCH_LINES = 1024  # lines formatted at a time
# State changes waiting to be printed, at most (a crash-looping project makes a few a second;
# past this they are dropped and counted like lines).
MAX_PENDING_CHANGES = 4096
FLUSH_TIMEOUT = 2.0  # at exit, how long stdout gets to take what is still waiting for it

STDOUT_MARK, STDERR_MARK, STATE_MARK = "|", "!", "*"
# Process names cycle through these colours (SGR foreground codes), as honcho's do.
NAME_COLOURS = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")
_RED, _DIM, _RESET = "\x1b[31m", "\x1b[2m", "\x1b[0m"


@dataclass(frozen=True)
class OutputStyle:
    """How the headless output looks (``up``'s flags)."""

    form: OutputForm = "text"
    prefix: bool = True  # False: --no-prefix
    timestamps: bool = True  # False: --no-timestamps
    colour: bool = False  # SGR codes in the prefix and kept in child text (a terminal)


def describe_change(info: ProcessInfo, stop_signal: str) -> str:
    """A state change in words: ``started (pid 4242)``, ``exited with code 3``, ..."""
    state = info.state
    if state == State.RUNNING:
        again = f", restart {info.restarts}" if info.restarts else ""
        return f"started (pid {info.pid}{again})"
    if state == State.STOPPING:
        return f"stopping ({stop_signal})"
    if info.exit_code is None:
        ended = "could not be started" if state == State.FAILED else state
    elif info.exit_code < 0:
        ended = f"killed by {describe_exit(info.exit_code)}"
    else:
        ended = f"exited with code {info.exit_code}"
    if state == State.STOPPED:
        if info.exit_code is None:
            return "stopped"
        if info.exit_code < 0:
            return f"stopped ({describe_exit(info.exit_code)})"
        return f"stopped (exit code {info.exit_code})"
    if state in State.WAITING and info.restart_in is not None:
        loop = "crash-loop: " if state == State.CRASH_LOOP else ""
        return f"{ended}; {loop}restarting in {info.restart_in:.1f}s"
    return ended


class BoundedWriter:
    """Bytes written to a file descriptor by a thread of its own, through a buffer of at most
    ``bound`` bytes: whoever offers output never waits for the reader of ``fd``. What does not
    fit is dropped and counted; the next offer that fits is preceded by ``notice(count)``."""

    def __init__(self, fd: int, bound: int, notice: Callable[[int], bytes], name: str) -> None:
        self._fd = fd
        self._bound = bound
        self._notice = notice
        self._cond = threading.Condition()
        self._pending: list[bytes] = []
        self._size = 0  # pending bytes plus those being written: the whole buffer
        self._unreported = 0  # lines dropped since the last notice
        self._closing = False
        self.broken = False  # the reader went away (EPIPE): everything is dropped from then on
        self.dropped_lines = 0
        self.written_bytes = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def full(self) -> bool:
        """Nothing more fits now (so a producer need not format what would be dropped)."""
        return self.broken or self._size >= self._bound

    def offer(self, data: bytes, lines: int) -> bool:
        """Queue ``data`` (``lines`` lines of output) for writing, or drop it when it does not
        fit; never blocks on the reader."""
        with self._cond:
            if not self.broken:
                notice = self._notice(self._unreported) if self._unreported else b""
                if self._size + len(notice) + len(data) <= self._bound:
                    if notice:
                        self._pending.append(notice)
                        self._unreported = 0
                    self._pending.append(data)
                    self._size += len(notice) + len(data)
                    self._cond.notify()
                    return True
            self.drop(lines)
            return False

    def drop(self, lines: int) -> None:
        """Count ``lines`` the producer dropped without offering them (``full`` said so)."""
        with self._cond:
            self.dropped_lines += lines
            self._unreported += lines

    def close(self, timeout: float) -> bool:
        """Write what waits (and a last notice of drops), for at most ``timeout`` seconds; True
        when it was all written."""
        with self._cond:
            if self._unreported and not self.broken:
                notice = self._notice(self._unreported)
                self._pending.append(notice)
                self._size += len(notice)
                self._unreported = 0
            self._closing = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive() and not self.broken

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return
                data = b"".join(self._pending)
                self._pending = []
            try:
                self._write_all(data)
            except OSError:  # EPIPE (the reader is gone), EBADF, EIO (the terminal hung up)
                with self._cond:
                    self.broken = True
                    self._pending = []
                    self._size = 0
                return
            with self._cond:
                self._size -= len(data)
                self.written_bytes += len(data)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:  # a descriptor someone set non-blocking: wait for room
                select.select([], [self._fd], [], 1.0)
                continue
            view = view[written:]


class HeadlessPrinter:
    """Prints a console's lines and state changes (see the module docstring) from a thread of
    its own: ``start`` before the console starts (so no state change is missed), ``stop`` after
    it has shut down (so its last lines are printed)."""

    def __init__(
        self, console: Console, style: OutputStyle, out_fd: int = 1, err_fd: int = 2
    ) -> None:
        self._console = console
        self._style = style
        names = console.supervisor.names()
        self._width = max((len(name) for name in names), default=0)
        self._colours = {name: NAME_COLOURS[i % len(NAME_COLOURS)] for i, name in enumerate(names)}
        self._stop_signals = {
            name: describe_exit(-spec.stop_signal)
            for name, spec in console.config.processes.items()
        }
        self._out = self._writer(out_fd, "stdout")
        # --no-prefix: state changes on stderr, so that stdout holds only the children's lines.
        self._state_out = self._out
        if style.form == "text" and not style.prefix:
            self._state_out = self._writer(err_fd, "stderr")
        # (the store's next line id then, unix time, the process then)
        self._changes: collections.deque[tuple[int, float, ProcessInfo]] = collections.deque()
        self._changes_lock = threading.Lock()
        self._changes_dropped = 0
        self._seen: dict[str, tuple[str, int | None]] = {}
        self._after = 0  # the id of the last line handled
        self._lines_printed = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lacrimosa-headless", daemon=True)
        self._unsubscribe: Callable[[], None] | None = None

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        current, self._unsubscribe = self._console.supervisor.subscribe(self._on_change)
        self._seen = {info.name: (info.state, info.pid) for info in current}
        self._out.start()
        if self._state_out is not self._out:
            self._state_out.start()
        self._thread.start()

    def stop(self, timeout: float = FLUSH_TIMEOUT) -> None:
        """Print what is left, then give stdout ``timeout`` seconds to take it."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._stopping.set()
        deadline = time.monotonic() + timeout
        self._thread.join(timeout)
        self._out.close(max(deadline - time.monotonic(), 0.0))
        if self._state_out is not self._out:
            self._state_out.close(max(deadline - time.monotonic(), 0.0))

    def stats(self) -> dict[str, Any]:
        """For ``status`` (``headless``): lines handed to stdout, and those dropped because it
        did not keep up (state changes included, and those dropped before being formatted)."""
        dropped = self._out.dropped_lines + self._changes_dropped
        if self._state_out is not self._out:
            dropped += self._state_out.dropped_lines
        return {
            "lines_printed": self._lines_printed,
            "lines_dropped": dropped,
            "bytes_written": self._out.written_bytes,
            "stdout_closed": self._out.broken,
        }

    def _writer(self, fd: int, what: str) -> BoundedWriter:
        def notice(count: int) -> bytes:
            text = f"{count} lines dropped: {what} did not keep up"
            if self._style.form == "json":
                record = {"time": time.time(), "dropped": count, "text": text}
                return (json_text(record) + "\n").encode()
            return f"lacrimosa: {text}\n".encode()

        return BoundedWriter(fd, OUTPUT_BUFFER_BYTES, notice, f"lacrimosa-headless-{what}")

    # -- state changes (the supervisor's loop thread) -------------------------------------------

    def _on_change(self) -> None:
        """Note each process whose state or pid changed, with the store's next line id: the
        lines stored before the change are printed before it. Runs on the supervisor's loop
        thread right after the change, before any later line is stored."""
        mark = self._console.store.next_id
        now = time.time()
        for info in self._console.supervisor.info():
            key = (info.state, info.pid)
            if self._seen.get(info.name) == key:
                continue
            self._seen[info.name] = key
            with self._changes_lock:
                if len(self._changes) < MAX_PENDING_CHANGES:
                    self._changes.append((mark, now, info))
                else:
                    self._changes_dropped += 1

    # -- the printer's thread --------------------------------------------------------------------

    def _run(self) -> None:
        seen_version = (-1, -1)
        while not self._stopping.wait(POLL_INTERVAL):
            version = self._console.version
            if version != seen_version:
                seen_version = version
                self._print_new()
        self._print_new()

    def _print_new(self) -> None:
        # The snapshot first, then the changes: a change noted after the snapshot was taken
        # marks an id past every line in it, so it is printed after them (never before lines
        # stored ahead of it).
        snapshot = self._console.snapshot()
        view = LogView(snapshot, LogQuery(after_id=self._after))
        with self._changes_lock:
            changes = list(self._changes)
            self._changes.clear()
        lines = _Lines(view, snapshot, self._after)
        position = 0
        for mark, when, info in changes:
            stop = view.position_of(mark)
            self._print_lines(lines, position, stop)
            position = max(position, stop)
            self._print_change(info, when)
        self._print_lines(lines, position, len(view))
        if len(view):
            self._after = view.line(len(view) - 1).id

    def _print_lines(self, lines: _Lines, start: int, stop: int) -> None:
        """The lines at positions [start, stop) of the view; when stdout is not taking what
        waits for it, they are counted as dropped without being read (a stalled stdout costs
        the printer a count, not a pass over every line)."""
        out = self._out
        position = start
        for process, block, indices in lines.view.batches(start, stop, BATCH_LINES):
            if out.full:
                break
            position += len(indices)
            data, count = self._format_lines(process, block, indices)
            if count and out.offer(data, count):
                self._lines_printed += count
        if position < stop:
            out.drop(lines.output_lines(position, stop))

    def _format_lines(self, process: str, block: Block, indices: np.ndarray) -> tuple[bytes, int]:
        """The children's lines among ``indices`` (lacrimosa's own lines about a process are
        left out: its state changes say the same), as bytes, and how many."""
        pieces: list[bytes] = []
        count = 0
        for group, seconds, stream in runs(block, indices):
            if stream == SYSTEM:
                continue
            count += len(group)
            if self._style.form == "json":
                pieces.append(jsonl_bytes(process, block, group))
            else:
                pieces.append(self._text(process, block, group, seconds, stream))
        return b"".join(pieces), count

    def _text(
        self, process: str, block: Block, indices: np.ndarray, seconds: float, stream: int
    ) -> bytes:
        mode: TextMode = "color" if self._style.colour else "plain"
        text = text_bytes(block, indices).decode("utf-8", "replace")
        if terminal_safe(text, mode) is not text:
            # Line by line: each line's own rules (a trailing carriage return, a colour reset).
            text = "".join(terminal_safe(line, mode) + "\n" for line in text.split("\n")[:-1])
        prefix = self._prefix(process, seconds, STDERR_MARK if stream == STDERR else STDOUT_MARK)
        if prefix:
            text = prefix + text[:-1].replace("\n", "\n" + prefix) + "\n"
        return text.encode()

    def _prefix(self, process: str, seconds: float, mark: str) -> str:
        style = self._style
        if not style.prefix:
            return ""
        clock = time.strftime("%H:%M:%S ", time.localtime(seconds)) if style.timestamps else ""
        name = process.ljust(self._width)
        if not style.colour:
            return f"{clock}{name} {mark} "
        colour = self._colours.get(process, NAME_COLOURS[0])
        if mark == STDERR_MARK:
            mark = f"{_RED}{mark}{_RESET}"
        return f"{_DIM}{clock}{_RESET}\x1b[{colour}m{name}{_RESET} {mark} "

    def _print_change(self, info: ProcessInfo, when: float) -> None:
        text = describe_change(info, self._stop_signals.get(info.name, "SIGTERM"))
        style = self._style
        if style.form == "json":
            record = {
                "time": when,
                "process": info.name,
                "stream": "system",
                "state": info.state,
                "pid": info.pid,
                "exit_code": info.exit_code,
                "text": text,
            }
            data = json_text(record) + "\n"
        elif style.prefix:
            data = self._prefix(info.name, when, STATE_MARK) + text + "\n"
        else:
            data = f"lacrimosa: {info.name} {text}\n"
        self._state_out.offer(data.encode(), 1)


class _Lines:
    """One pass's view of the new lines, and how many of a stretch of them are the children's
    (not lacrimosa's own lines about a process, which the printer leaves out): counted from the
    ids at its ends, with a second view of the lacrimosa lines alone."""

    def __init__(self, view: LogView, snapshot: StoreSnapshot, after: int) -> None:
        self.view = view
        self._snapshot = snapshot
        self._after = after
        self._system: LogView | None = None

    def output_lines(self, start: int, stop: int) -> int:
        if start >= stop:
            return 0
        if self._system is None:
            self._system = LogView(self._snapshot, LogQuery(after_id=self._after, stream=SYSTEM))
        first, last = self.view.line(start).id, self.view.line(stop - 1).id
        system = self._system.position_of(last + 1) - self._system.position_of(first)
        return stop - start - system


def stdout_style(form: OutputForm, prefix: bool, timestamps: bool) -> OutputStyle:
    """The style for this process's stdout: colour only on a terminal, and not with NO_COLOR."""
    colour = False
    with contextlib.suppress(OSError, ValueError):
        colour = form == "text" and os.isatty(1) and not os.environ.get("NO_COLOR")
    return OutputStyle(form=form, prefix=prefix, timestamps=timestamps, colour=colour)
