"""A running console reached over its control socket or its HTTP API, as the TUI reads it
(``ConsoleFacade``).

``lacrimosa tui`` hands a :class:`RemoteConsole` to the same app ``lacrimosa up`` runs on an
in-process ``Console``. What it reads and does is written once here; how it gets there is a
``Transport``: :class:`SocketTransport` (the Unix socket, below) or ``HttpTransport``
(api/remote_http.py: ``lacrimosa tui --url``, the same ops as HTTP routes and a WebSocket).
Three kinds of connection, so that none waits on another:

- one ``subscribe`` connection, read by a thread: the state (processes, versions, warnings, the
  sequencer's counters) and then what changed, pushed by the console at most 20 times a second;
  the TUI's 20 Hz poll reads the copy kept here and never waits on the socket;
- one request connection for log windows (``log_window``): the TUI fetches only the lines it
  draws (a screenful and a page on each side; a new view comes with its newest lines, as many as
  a followed pane last drew), so its memory does not grow with the console's store;
- a connection per action (start/stop/restart/shutdown), which may block for a stop timeout.

Over the socket, the journal of events is mapped read-only from its file, as the console itself
reads it (a Unix socket: the attached TUI is on the same machine, and reads it zero-copy too);
over HTTP it is read through ``/api/events`` (see api/remote_http.py).

Errors: a failed request raises the client's errors (``RemoteError``, ``ConsoleLost``: all
``LacrimosaError``), which the TUI shows as notifications. When the subscription ends (the console
stopped, or the connection was lost), ``shutdown_requested`` is set and ``ended`` says why.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..engine.audit import Actor
from ..engine.errors import LacrimosaError, NoConsole
from ..engine.events.ingest import Restart
from ..engine.events.journal import Journal, RecoveryReport
from ..engine.events.sequencer import SequencerStats
from ..engine.facade import JournalReader
from ..engine.logs.query import LogQuery
from ..engine.logs.store import STREAM_NAMES, SYSTEM
from ..engine.processes.supervisor import ProcessInfo
from .client import (
    DEFAULT_ACTION_TIMEOUT,
    DEFAULT_TIMEOUT,
    ConsoleLost,
    ControlClient,
    action_timeouts,
)
from .protocol import MAX_QUERY_TIMEOUT, MAX_WINDOW_LINES, QUERY_TIMEOUT

# The newest lines sent with a new view, at first; then as many as the pane last drew of a
# view's end (a screenful and a page above: what a followed pane shows), at least MIN_TAIL.
TAIL_PREFETCH = 200
MIN_TAIL = 32
ACTION_MARGIN = 5.0  # seconds past the console's own bound on an action before giving up
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
    and its journal as the transport reads it (``open_journal``, given the pushed section)."""

    def __init__(
        self,
        section: dict[str, Any],
        open_journal: Callable[[RemoteSequencer], JournalReader],
    ) -> None:
        self._section = section
        self._open_journal = open_journal
        self._journal: JournalReader | None = None
        self._journal_lock = threading.Lock()

    def update(self, section: dict[str, Any]) -> None:
        self._section = section

    @property
    def address(self) -> str:
        return str(self._section["udp"])

    @property
    def journal(self) -> JournalReader:
        with self._journal_lock:
            if self._journal is None:
                self._journal = self._open_journal(self)
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
            if isinstance(self._journal, Journal):
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


class Subscription(Protocol):
    """The ``subscribe`` op's results as they come (ending at ``{"end": ...}``)."""

    def __iter__(self) -> Iterator[Any]: ...

    def __next__(self) -> Any: ...

    def interrupt(self) -> None:
        """Wake the thread reading it (it sees the end) and close it."""
        ...


class Transport(Protocol):
    """How a :class:`RemoteConsole` reaches the console. Errors: ``LacrimosaError`` (a refused
    request is a ``RemoteError`` with the protocol's code; an unreachable console ``NoConsole``)."""

    @property
    def home(self) -> str | None:
        """The console's state folder when it is on this machine (the socket's), else None."""
        ...

    def subscribe(self) -> Subscription: ...

    def request(self, op: str, **args: Any) -> Any:
        """One read (``log_window``, ``audit``, ``ps``, ``events``): its reply's result."""
        ...

    def act(self, verb: str, name: str) -> Any:
        """start/stop/restart ``name`` (``via`` tui), waiting as long as the console lets it."""
        ...

    def query(self, text: str, seconds: float) -> Any:
        """The ``query`` op, which the console stops after ``seconds``, on a connection of its
        own (the log windows' one stays free while it runs)."""
        ...

    def request_shutdown(self) -> None:
        """Ask the console to stop (``NoConsole``: it is gone already)."""
        ...

    def wait_shutdown(self, timeout: float) -> None:
        """After ``request_shutdown``: until the console has gone, for at most ``timeout``."""
        ...

    def open_journal(self, sequencer: RemoteSequencer) -> JournalReader: ...

    def close(self) -> None: ...


class _SocketSubscription:
    def __init__(self, client: ControlClient) -> None:
        self._client = client
        self.ended = False  # the stream ended (the console stopped) or failed
        try:
            self._updates = client.stream("subscribe")
            self._first = next(self._updates)
        except BaseException:
            client.close()
            raise

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        try:
            return next(self._updates)
        except BaseException:
            self.ended = True
            raise

    def interrupt(self) -> None:
        self._client.interrupt()


class SocketTransport:
    """The console's Unix socket (``home``: its state folder)."""

    def __init__(self, home: str | Path, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.home = str(home)
        self.timeout = timeout
        self._requests: ControlClient | None = None
        self._requests_lock = threading.Lock()
        self._shutdown: ControlClient | None = None  # the connection that asked for a shutdown
        self._subscription: _SocketSubscription | None = None
        self._closed = False

    def subscribe(self) -> Subscription:
        subscription = _SocketSubscription(ControlClient(self.home, timeout=self.timeout))
        try:
            with self._requests_lock:  # the one for reads, made at once as well
                self._requests = ControlClient(self.home, timeout=self.timeout)
        except BaseException:
            subscription.interrupt()
            raise
        self._subscription = subscription
        return subscription

    def request(self, op: str, **args: Any) -> Any:
        """On the one connection for reads (made at the first)."""
        with self._requests_lock:
            if self._requests is None:  # subscribe() makes it: only if a read comes first
                self._requests = ControlClient(self.home, timeout=self.timeout)
            try:
                return self._requests.call(op, **args)
            except ConsoleLost:
                if self._closed or (self._subscription is not None and self._subscription.ended):
                    raise
                # The console closes a connection idle for a minute (a view that stood still):
                # while the subscription says it is there, a new connection is all it takes.
                self._requests.close()
                self._requests = ControlClient(self.home, timeout=self.timeout)
                return self._requests.call(op, **args)

    def act(self, verb: str, name: str) -> Any:
        # A connection of its own: a stop may take its process's whole stop timeout.
        with ControlClient(self.home, timeout=self.timeout) as client:
            timeout = action_timeouts(client.call("ps")).get(name, DEFAULT_ACTION_TIMEOUT)
            return client.call(verb, timeout=timeout + ACTION_MARGIN, name=name, via="tui")

    def query(self, text: str, seconds: float) -> Any:
        with ControlClient(self.home, timeout=seconds + ACTION_MARGIN) as client:
            return client.call("query", query=text, deadline=seconds)

    def request_shutdown(self) -> None:
        client = ControlClient(self.home, timeout=self.timeout)
        try:
            client.call("shutdown", via="tui")
        except BaseException:
            client.close()
            raise
        self._shutdown = client  # the console hangs up on it last, once everything stopped

    def wait_shutdown(self, timeout: float) -> None:
        if self._shutdown is None:
            return
        try:
            with contextlib.suppress(NoConsole):
                self._shutdown.wait_closed(timeout=timeout)
        finally:
            self._shutdown.close()

    def open_journal(self, sequencer: RemoteSequencer) -> JournalReader:
        info = sequencer.status()["journal"]
        # What the console's own reader found on opening is in its status; this reader does no
        # recovery (the ingest process did it), so it reports none of its own.
        report = RecoveryReport(
            created=False, clean=True, events=0, kept=0, torn=0, corrupt=0, seconds=0.0
        )
        return Journal.open_reader(Path(info["path"]), info["capacity"], info["blob_bytes"], report)

    def close(self) -> None:
        self._closed = True
        if self._requests is not None:
            self._requests.interrupt()


class RemoteConsole:
    """A running console reached through a ``Transport`` (the socket of the state folder
    ``home`` unless one is given); see the module docstring. ``close()`` detaches."""

    def __init__(
        self,
        home: str | Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: Transport | None = None,
    ) -> None:
        if transport is None:
            if home is None:
                raise ValueError("RemoteConsole needs a home or a transport")
            transport = SocketTransport(home, timeout)
        self.transport = transport
        self.home = transport.home  # the Query view keeps its history there (None: in memory)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._closed = False
        self.ended: str | None = None  # why the subscription ended, once it has
        self._shutdown_asked = False
        self._shutdown_wait = DEFAULT_ACTION_TIMEOUT
        self.tail_lines = TAIL_PREFETCH  # see TAIL_PREFETCH
        try:
            self._subscription = transport.subscribe()
        except BaseException:
            transport.close()
            raise
        try:
            first = next(self._subscription)
            self._version: tuple[int, int] = (0, 0)
            self._processes: list[ProcessInfo] = []
            self._warnings: list[str] = []
            self._sequencer: RemoteSequencer | None = None
            self._audit = RemoteAudit(self)
            self.newest_ids: dict[str, int] = {}
            self._apply(first)
        except BaseException:
            self._subscription.interrupt()
            transport.close()
            raise
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
                    self._sequencer = RemoteSequencer(section, self.transport.open_journal)
                else:
                    self._sequencer.update(section)

    def _read_updates(self) -> None:
        try:
            for update in self._subscription:
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
        result: dict[str, Any] = self.transport.query(text, seconds)
        return result

    def request(self, op: str, **args: Any) -> Any:
        """One read (log windows, audit records), through the transport."""
        return self.transport.request(op, **args)

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
        return str(self.transport.act(verb, name)["outcome"])

    def request_shutdown(self, actor: Actor | None = None, reason: str | None = None) -> None:
        """Ask the console to stop every process and itself (``shutdown`` waits for it)."""
        if self._shutdown_asked:
            return
        try:
            timeouts = action_timeouts(self.request("ps"))
            self._shutdown_wait = max(max(timeouts.values(), default=0.0), DEFAULT_ACTION_TIMEOUT)
            self.transport.request_shutdown()
        except NoConsole:
            return  # gone already (ConsoleLost is a NoConsole: it went as we asked)
        self._shutdown_asked = True

    def shutdown(self) -> None:
        """Stop every process and the console; returns once the console has gone (at once if it
        is gone already)."""
        try:
            self.request_shutdown()
            if self._shutdown_asked:
                self.transport.wait_shutdown(self._shutdown_wait + ACTION_MARGIN)
        finally:
            self.close()

    def close(self) -> None:
        """Detach: close every connection (the console and its processes go on)."""
        if self._closed:
            return
        self._closed = True
        self._subscription.interrupt()
        self.transport.close()
        if self._sequencer is not None:
            self._sequencer.close()
