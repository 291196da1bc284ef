"""A running console reached over its control socket, as the TUI reads it (``ConsoleFacade``).

``lacrimosa tui`` hands a :class:`RemoteConsole` to the same app ``lacrimosa up`` runs on an
in-process ``Console``. Three kinds of connection, so that none waits on another:

- one ``subscribe`` connection, read by a thread: the state (processes, versions, warnings, the
  sequencer's counters) and then what changed, pushed by the console at most 20 times a second;
  the TUI's 20 Hz poll reads the copy kept here and never waits on the socket;
- one request connection for log windows (``log_window``): the TUI fetches only the lines it
  draws (a screenful and a page on each side; a new view comes with its newest lines, as many as
  a followed pane last drew), so its memory does not grow with the console's store;
- a connection per action (start/stop/restart/shutdown), which may block for a stop timeout.

The journal of events is mapped read-only from its file, as the console itself reads it (the
socket is a Unix socket: the attached TUI is on the same machine, and reads it zero-copy too).

Errors: a failed request raises the client's errors (``RemoteError``, ``ConsoleLost``: all
``LacrimosaError``), which the TUI shows as notifications. When the subscription ends (the console
stopped, or the connection was lost), ``shutdown_requested`` is set and ``ended`` says why.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.audit import Actor
from ..engine.errors import LacrimosaError, NoConsole
from ..engine.events.ingest import Restart
from ..engine.events.journal import Journal, RecoveryReport
from ..engine.events.sequencer import SequencerStats
from ..engine.logs.query import LogQuery
from ..engine.logs.store import STREAM_NAMES, SYSTEM
from ..engine.processes.supervisor import ProcessInfo
from .client import DEFAULT_TIMEOUT, ConsoleLost, ControlClient
from .protocol import MAX_QUERY_TIMEOUT, MAX_WINDOW_LINES, QUERY_TIMEOUT

# The newest lines sent with a new view, at first; then as many as the pane last drew of a
# view's end (a screenful and a page above: what a followed pane shows), at least MIN_TAIL.
TAIL_PREFETCH = 200
MIN_TAIL = 32
ACTION_MARGIN = 5.0  # seconds past the console's own bound on an action before giving up
DEFAULT_ACTION_TIMEOUT = 35.0  # when the console does not say (see ``ps``'s action_timeout)
_STREAM_BY_NAME = {name: stream for stream, name in enumerate(STREAM_NAMES)}
_EVICTED = b"(evicted from the log store before it was shown)"


@dataclass(frozen=True, slots=True)
class RemoteLine:
    """A copy of one log line, as the console sent it (its bytes, losslessly)."""

    process: str
    id: int
    time: float
    stream: int
    continued: bool
    content: bytes

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RemoteLine:
        content = base64.b64decode(data["b64"]) if "b64" in data else data["text"].encode()
        return cls(
            data["process"],
            data["id"],
            data["time"],
            _STREAM_BY_NAME.get(data["stream"], SYSTEM),
            bool(data.get("continued")),
            content,
        )

    @property
    def stream_name(self) -> str:
        return STREAM_NAMES[self.stream]

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class RemoteLogWindow:
    """The lines of one query, addressed by position as a ``LogView`` is: positions are counted
    back from the newest matching line when the window was made (see ``log_window`` in
    protocol.py), so they stay put while lines arrive and old ones are evicted. Holds one window
    of lines at a time (at most ``MAX_WINDOW_LINES``: the last one fetched)."""

    def __init__(self, console: RemoteConsole, query: LogQuery, reply: dict[str, Any]) -> None:
        self._console = console
        self._query = query
        self._total: int = reply["total"]
        self._end_id: int = reply["end_id"]
        self._first: int = reply["first"]
        self._lines = [RemoteLine.from_dict(line) for line in reply["lines"]]

    def __len__(self) -> int:
        return self._total

    def lines(self, start: int, stop: int) -> list[RemoteLine]:
        """Exactly the positions [start, stop) (within the window's length): a line evicted
        since the window was made, or past the most one request carries, is a placeholder
        (the next view, made from what is stored now, has no such line)."""
        start, stop = max(start, 0), min(stop, self._total)
        if start >= stop:
            return []
        if stop == self._total:  # what a followed pane needs of the next view's end
            self._console.tail_lines = min(max(stop - start, MIN_TAIL), MAX_WINDOW_LINES)
        held_from, held_to = self._first, self._first + len(self._lines)
        if not (held_from <= start and stop <= held_to):
            reply = self._ask(start=start, stop=min(stop, start + MAX_WINDOW_LINES))
            self._first = reply["first"]
            self._lines = [RemoteLine.from_dict(line) for line in reply["lines"]]
            held_from, held_to = self._first, self._first + len(self._lines)
        out = self._lines[max(start - held_from, 0) : max(stop - held_from, 0)]
        before = min(max(held_from - start, 0), stop - start)
        after = stop - start - before - len(out)
        if before or after:
            process = out[0].process if out else (self._query.processes or ("",))[0]
            blank = RemoteLine(process, -1, 0.0, SYSTEM, False, _EVICTED)
            out = [blank] * before + out + [blank] * after
        return out

    def position_of(self, line_id: int) -> int:
        for index, line in enumerate(self._lines):
            if line.id == line_id:
                return self._first + index
        return int(self._ask(position_of=line_id)["position"])

    def _ask(self, **args: Any) -> dict[str, Any]:
        return self._console.log_window(self._query, end_id=self._end_id, total=self._total, **args)


class RemoteSequencer:
    """The event sequencer as the console reports it (counters pushed with the subscription),
    and its journal mapped read-only here."""

    def __init__(self, section: dict[str, Any]) -> None:
        self._section = section
        self._journal: Journal | None = None
        self._journal_lock = threading.Lock()

    def update(self, section: dict[str, Any]) -> None:
        self._section = section

    @property
    def address(self) -> str:
        return str(self._section["udp"])

    @property
    def journal(self) -> Journal:
        with self._journal_lock:
            if self._journal is None:
                info = self._section["journal"]
                # What the console's own reader found on opening is in its status; this reader
                # does no recovery (the ingest process did it), so it reports none of its own.
                report = RecoveryReport(
                    created=False, clean=True, events=0, kept=0, torn=0, corrupt=0, seconds=0.0
                )
                self._journal = Journal.open_reader(
                    Path(info["path"]), info["capacity"], info["blob_bytes"], report
                )
            return self._journal

    @property
    def failure(self) -> str | None:
        return self._section.get("failure")

    @property
    def ingest_errors(self) -> int:
        return int(self._section["ingest_errors"])

    @property
    def state(self) -> str:
        return str(self._section["ingest"]["state"])

    @property
    def restarts(self) -> int:
        return int(self._section["ingest"]["restarts"])

    @property
    def history(self) -> list[Restart]:
        return [Restart.from_dict(item) for item in self._section.get("restart_history", ())]

    def stats(self) -> SequencerStats:
        section = self._section
        return SequencerStats(
            received=section["received"],
            accepted=section["accepted"],
            text=section["text"],
            framed=section["framed"],
            drops=dict(section["drops"]),
            clock_ignored=section["clock_ignored"],
            rate=float(section["rate"]),
            history=tuple(section.get("history", ())),
        )

    def status(self) -> dict[str, Any]:
        return self._section

    def warnings(self) -> list[str]:
        return list(self._section.get("warnings", ()))

    def close(self) -> None:
        with self._journal_lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None


class RemoteAudit:
    """The audit log: its counters as the subscription last pushed them, records on request."""

    def __init__(self, console: RemoteConsole) -> None:
        self._console = console
        self._status: dict[str, Any] = {}

    def update(self, status: dict[str, Any]) -> None:
        self._status = status

    @property
    def count(self) -> int:
        return int(self._status.get("records", 0))

    @property
    def head(self) -> str:
        return str(self._status.get("head", ""))

    @property
    def write_errors(self) -> int:
        return int(self._status.get("write_errors", 0))

    def records(self, limit: int = 100, since: float | None = None) -> list[dict[str, Any]]:
        args: dict[str, Any] = {"lines": limit}
        if since is not None:
            args["since"] = max(time.time() - since, 0.0)
        reply = self._console.request("audit", **args)
        return list(reply["records"])


class RemoteConsole:
    """A console reached over its socket; see the module docstring. ``close()`` detaches."""

    def __init__(self, home: str | Path, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.home = str(home)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._closed = False
        self.ended: str | None = None  # why the subscription ended, once it has
        self._shutdown: ControlClient | None = None  # the connection that asked for a shutdown
        self._shutdown_wait = DEFAULT_ACTION_TIMEOUT
        self.tail_lines = TAIL_PREFETCH  # see TAIL_PREFETCH
        self._subscription = ControlClient(self.home, timeout=timeout)
        try:
            self._updates: Iterator[Any] = self._subscription.stream("subscribe")
            first = next(self._updates)
            self._version: tuple[int, int] = (0, 0)
            self._processes: list[ProcessInfo] = []
            self._warnings: list[str] = []
            self._sequencer: RemoteSequencer | None = None
            self._audit = RemoteAudit(self)
            self.newest_ids: dict[str, int] = {}
            self._apply(first)
            self._requests = ControlClient(self.home, timeout=timeout)
        except BaseException:
            self._subscription.close()
            raise
        self._requests_lock = threading.Lock()
        self._reader = threading.Thread(
            target=self._read_updates, name="lacrimosa-subscription", daemon=True
        )
        self._reader.start()

    # -- the subscription ------------------------------------------------------------------------

    def _apply(self, update: dict[str, Any]) -> None:
        with self._lock:
            self._version = (int(update["version"][0]), int(update["version"][1]))
            if "processes" in update:
                self._processes = [ProcessInfo.from_dict(item) for item in update["processes"]]
            if "warnings" in update:
                self._warnings = list(update["warnings"])
            if "audit" in update:
                self._audit.update(update["audit"])
            if "newest_ids" in update:
                self.newest_ids = dict(update["newest_ids"])
            if "sequencer" in update:
                section = update["sequencer"]
                if section is None:
                    self._sequencer = None
                elif self._sequencer is None:
                    self._sequencer = RemoteSequencer(section)
                else:
                    self._sequencer.update(section)

    def _read_updates(self) -> None:
        try:
            for update in self._updates:
                self._apply(update)
            self.ended = "the console stopped"
        except (LacrimosaError, OSError, ValueError, KeyError) as exc:
            if not self._closed:
                message = exc.message if isinstance(exc, LacrimosaError) else repr(exc)
                self.ended = f"lost the console: {message}"
        finally:
            self._stopping.set()

    # -- reading (ConsoleFacade) -----------------------------------------------------------------

    @property
    def version(self) -> tuple[int, int]:
        return self._version

    @property
    def sequencer(self) -> RemoteSequencer | None:
        return self._sequencer

    @property
    def audit(self) -> RemoteAudit:
        return self._audit

    @property
    def shutdown_requested(self) -> threading.Event:
        return self._stopping

    def processes(self) -> list[ProcessInfo]:
        return self._processes

    def warnings(self) -> list[str]:
        return self._warnings

    def query(self, query: LogQuery) -> RemoteLogWindow:
        return RemoteLogWindow(self, query, self.log_window(query, tail=self.tail_lines))

    def log_window(self, query: LogQuery, **args: Any) -> dict[str, Any]:
        """One ``log_window`` request for ``query`` (see protocol.py)."""
        if query.processes is not None:
            args["name"] = query.processes[0]
        if query.stream is not None:
            args["stream"] = STREAM_NAMES[query.stream]
        if query.contains:
            args["grep"] = query.contains.decode("utf-8", "replace")
            args["ignore_case"] = query.ignore_case
        if query.where is not None:
            args["where"] = query.where  # the TUI's `?` filter: the console parses it
        reply: dict[str, Any] = self.request("log_window", **args)
        return reply

    def run_query(
        self, text: str, deadline: float | None = None, cancel: threading.Event | None = None
    ) -> dict[str, Any]:
        """A ``query`` on a connection of its own (the log windows' one stays free while it
        runs). ``cancel`` is not sent: the console stops the query at its deadline."""
        seconds = min(deadline or QUERY_TIMEOUT, MAX_QUERY_TIMEOUT)
        with ControlClient(self.home, timeout=seconds + ACTION_MARGIN) as client:
            result: dict[str, Any] = client.call("query", query=text, deadline=seconds)
            return result

    def request(self, op: str, **args: Any) -> Any:
        """One request on the connection for reads (log windows, audit records)."""
        with self._requests_lock:
            try:
                return self._requests.call(op, **args)
            except ConsoleLost:
                if self._closed or self._stopping.is_set():
                    raise
                # The console closes a connection idle for a minute (a view that stood still):
                # while the subscription says it is there, a new connection is all it takes.
                self._requests.close()
                self._requests = ControlClient(self.home, timeout=self.timeout)
                return self._requests.call(op, **args)

    # -- actions -----------------------------------------------------------------------------------

    # ``actor`` is not sent: the console records who asks as its socket knows them (the peer's
    # uid), never as a client says; ``via`` only names the source (tui) in the audit log.

    def start_process(self, name: str, actor: Actor | None = None) -> str:
        return self._act("start", name)

    def stop_process(self, name: str, actor: Actor | None = None) -> str:
        return self._act("stop", name)

    def restart_process(self, name: str, actor: Actor | None = None) -> str:
        return self._act("restart", name)

    def _act(self, verb: str, name: str) -> str:
        with ControlClient(self.home, timeout=self.timeout) as client:
            timeout = self._action_timeouts(client).get(name, DEFAULT_ACTION_TIMEOUT)
            result = client.call(verb, timeout=timeout + ACTION_MARGIN, name=name, via="tui")
        return str(result["outcome"])

    @staticmethod
    def _action_timeouts(client: ControlClient) -> dict[str, float]:
        processes = client.call("ps")["processes"]
        return {
            p["name"]: float(p.get("action_timeout", DEFAULT_ACTION_TIMEOUT)) for p in processes
        }

    def request_shutdown(self, actor: Actor | None = None, reason: str | None = None) -> None:
        """Ask the console to stop every process and itself (``shutdown`` waits for it)."""
        if self._shutdown is not None:
            return
        try:
            client = ControlClient(self.home, timeout=self.timeout)
        except NoConsole:
            return  # gone already
        try:
            self._shutdown_wait = max(
                max(self._action_timeouts(client).values(), default=0.0), DEFAULT_ACTION_TIMEOUT
            )
            client.call("shutdown", via="tui")
        except NoConsole:
            client.close()  # it went as we asked (ConsoleLost is a NoConsole)
            return
        except BaseException:
            client.close()
            raise
        self._shutdown = client

    def shutdown(self) -> None:
        """Stop every process and the console; returns once the console has gone (at once if it
        is gone already)."""
        try:
            self.request_shutdown()
            if self._shutdown is not None:
                with contextlib.suppress(NoConsole):
                    self._shutdown.wait_closed(timeout=self._shutdown_wait + ACTION_MARGIN)
        finally:
            if self._shutdown is not None:
                self._shutdown.close()
            self.close()

    def close(self) -> None:
        """Detach: close every connection (the console and its processes go on)."""
        if self._closed:
            return
        self._closed = True
        for client in (self._subscription, self._requests):
            client.interrupt()
        if self._sequencer is not None:
            self._sequencer.close()
