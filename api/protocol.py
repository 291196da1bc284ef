"""Server side of the control protocol: one request in, one reply out (see wire.py).

Every transport (the Unix socket, the HTTP API to come) sends what ``replies`` yields, or the
bytes of ``reply_bytes``: a ``logs`` or ``events`` reply is built and sent in pieces of about
``PIECE_BYTES`` (``LOGS_CHUNK_LINES`` lines or ``EVENTS_CHUNK`` events are read and turned into
JSON at a time), never as a whole list, so a million-line or 100,000-event reply costs the console
a piece, not the reply. ``dispatch`` builds one reply whole: for the small ops, tests and
in-process callers, never for a transport serving ``logs`` or ``events``.

An ``events`` reply reads the journal chunk by chunk while its reader takes the pieces, so events
may be overwritten before their chunk is read: they are left out and counted in ``"lapped"``
(present only when not 0), as in a follow batch. ``first_seq`` and ``next_seq`` are the journal's
bounds when the request was answered (a follow goes on from ``next_seq``).

``events`` with ``after`` (a seq) pages forward instead: the oldest ``lines`` seqs from ``after``
on, matching ``node``/``stream`` if given, and ``next_seq`` where the next page starts.

Until the console has started, every request but ``ping`` gets a ``starting`` error reply.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import math
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator
from typing import Any

import numpy as np

from ..engine.audit import MAX_RECORDS, Actor
from ..engine.console import Console
from ..engine.dsl import parse_where, select_rows
from ..engine.dsl.executor import EventRow
from ..engine.dsl.syntax import And, Compare, Expr, Query, Source, Text
from ..engine.errors import (
    ConsoleError,
    InvalidRequest,
    LacrimosaError,
    QuerySyntaxError,
    Starting,
)
from ..engine.events.frames import Event, matching
from ..engine.events.journal import Journal
from ..engine.fastjson import escape_controls_utf8
from ..engine.logs.query import LogQuery, LogView
from ..engine.logs.store import (
    STDERR,
    STDOUT,
    SYSTEM,
    Block,
    BlockRef,
    LogLine,
    LogSnapshot,
    LogStore,
    StoreSnapshot,
)
from ..engine.processes.supervisor import ACTION_MARGIN
from .bulk import jsonl_bytes, text_bytes
from .wire import OPS, encode, error, ok

DEFAULT_LINES = 100
DEFAULT_EVENTS = 20
DEFAULT_AUDIT = 20  # audit records in a reply unless ``lines`` says otherwise
MAX_EVENTS = 100_000
MAX_LINES = 1_000_000
FOLLOW_POLL = 0.05
FOLLOWER_NICE = 19  # the niceness of a following connection's thread (see _lower_priority)
MAX_SINCE = 10 * 365 * 86400  # seconds: ten years back is "everything"
PIECE_BYTES = 64 << 10  # a streamed reply is handed to the transport in pieces of about this
LOGS_CHUNK_LINES = 256  # log lines read from a view at a time
FRAME_LINES = 1024  # log lines turned into bytes at a time for a frame (``format``)
FORMATS = ("text", "jsonl")  # the bulk forms of a logs reply, sent in frames (see wire.py)
# Events read from the journal at a time: 64 records of at most a datagram (4 KiB: udp's
# DEFAULT_STRIDE), so a reply in progress holds about 256 KiB of records and a piece of JSON.
EVENTS_CHUNK = 64
# A follow batch holds at most this many lines or events, and lines of about this many bytes: a
# follower that fell far behind catches up in bounded batches (events: `lapped` says what it lost).
FOLLOW_BATCH_LINES = 1000
FOLLOW_BATCH_BYTES = 256 << 10
FOLLOW_BATCH_EVENTS = 1000
# Follow batches of events kept, encoded, for other followers at the same position: at most this
# many per journal, and this many bytes (a batch is at most FOLLOW_BATCH_EVENTS records of a
# datagram each, as JSON).
SHARED_BATCHES = 8
SHARED_BATCH_BYTES = 32 << 20
MAX_WINDOW_LINES = 1000  # lines one log_window reply carries at most
SUBSCRIBE_INTERVAL = 0.05  # a subscriber gets at most 20 updates a second...
SUBSCRIBE_FULL_INTERVAL = 1.0  # ...and every process, warning and counter at least this often
_STREAM_BY_NAME = {"stdout": STDOUT, "stderr": STDERR, "system": SYSTEM}
QUERY_TIMEOUT = 10.0  # seconds a ``query`` may run unless it asks for another deadline
MAX_QUERY_TIMEOUT = 60.0
# ``logs`` with ``where``: the newest ``lines`` matching lines, at most this many and about this
# many bytes of text (the oldest are left out past that); the query language's bounds.
MAX_WHERE_LINES = 10_000
MAX_WHERE_BYTES = 8 << 20


def line_to_dict(line: LogLine, raw: bool = False) -> dict[str, Any]:
    """A line as the protocol sends it. ``raw``: its bytes losslessly, as ``"text"`` when they
    are valid UTF-8, else as ``"b64"`` (base64) in its place (see wire.py)."""
    out: dict[str, Any] = {
        "id": line.id,
        "time": line.time,
        "process": line.process,
        "stream": line.stream_name,
    }
    data = bytes(line.content)
    if not raw:
        out["text"] = data.decode("utf-8", "replace")
    else:
        try:
            out["text"] = data.decode("utf-8")
        except UnicodeDecodeError:
            out["b64"] = base64.b64encode(data).decode("ascii")
    if line.continued:
        out["continued"] = True
    return out


def internal_error(exc: Exception) -> dict[str, Any]:
    """The reply for a failure nobody foresaw: the client learns what broke, the server goes on."""
    return error("internal", f"internal error: {type(exc).__name__}: {exc}")


def error_reply(exc: Exception) -> dict[str, Any]:
    """The reply for a failure: a LacrimosaError's own code and message, else ``internal``. A
    query that does not parse also says where (``position``: 0-based offset) and what was
    ``expected`` there, so that a client can point at it."""
    if isinstance(exc, QuerySyntaxError):
        reply = error(exc.code, exc.message)
        reply["error"].update(position=exc.position, expected=exc.expected)
        return reply
    if isinstance(exc, LacrimosaError):
        return error(exc.code, exc.message)
    return internal_error(exc)


def dispatch(console: Console, request: Any, actor: Actor | None = None) -> dict[str, Any]:
    """Carry out one request; every failure becomes an error reply, never an exception.

    ``actor`` is who asks, as the transport knows it (never taken from the request): actions are
    recorded in the audit log under it. None: the console's own user, from this process. The
    one thing a request may add is ``"via": "tui"`` on the socket, an attached TUI naming
    itself as the source; the user stays the one the kernel vouched for."""
    try:
        op = _op(request)
        _check_started(console, op)
        actor = actor or Actor.local("console")
        if actor.source == "cli" and request.get("via") == "tui":
            actor = dataclasses.replace(actor, source="tui")
        return ok(_HANDLERS[op](console, request, actor))
    except Exception as exc:
        return error_reply(exc)


class ReplyState:
    """What a transport may ask of the replies in progress on a connection while it waits to
    send them a piece: to let go of log blocks the store has evicted, when the store's retired
    bytes pass their bound (see ``_LogReader.let_go``)."""

    def __init__(self) -> None:
        self.readers: list[_LogReader] = []

    def let_go(self) -> None:
        for reader in self.readers:
            reader.let_go()


def replies(
    console: Console,
    request: Any,
    alive: Callable[[], bool],
    state: ReplyState | None = None,
    actor: Actor | None = None,
) -> Generator[dict[str, Any] | bytes, None, None]:
    """Everything a streaming transport sends for one request, in order: whole replies (dicts)
    and pieces of one reply line (bytes; the last piece of a line ends with its newline).

    Failures before the first piece become an error reply; one after a reply line was begun
    (a bug) is raised, and the transport must drop the connection, as the line cannot be ended.
    The caller closes the generator when done or dropped: what a reply read is freed then.
    """
    try:
        op = _op(request)
        _check_started(console, op)
        if op in FOLLOWABLE and request.get("follow"):
            pieces: Iterator[dict[str, Any] | bytes] = follow(console, request, alive, state)
        elif op == "subscribe":
            pieces = _subscribe(console, alive)
        elif op == "logs":
            pieces = _select_logs(console, request).pieces(state)
        elif op in _STREAMED:
            pieces = _STREAMED[op](console, request).pieces()
        else:
            pieces = iter([dispatch(console, request, actor)])
    except Exception as exc:
        yield error_reply(exc)
        return
    yield from pieces


def reply_bytes(
    console: Console,
    request: Any,
    alive: Callable[[], bool],
    state: ReplyState | None = None,
    actor: Actor | None = None,
) -> Generator[bytes, None, None]:
    """``replies`` as bytes only, for a transport that just writes them out (an HTTP response
    body, chunked): each whole reply encoded as its line, pieces passed on as they are."""
    pieces = replies(console, request, alive, state, actor)
    try:
        for piece in pieces:
            yield piece if isinstance(piece, bytes) else encode(piece)
    finally:
        pieces.close()


def follow(
    console: Console,
    request: dict[str, Any],
    alive: Callable[[], bool],
    state: ReplyState | None = None,
) -> Iterator[dict[str, Any] | bytes]:
    """Replies for a following request (``logs`` or ``events`` with ``follow``): the first reply
    as without ``follow`` (for ``logs``, in pieces), then one reply for each batch of new lines
    or events, and ``{"end": ...}`` when the console stops (a follow that ends without it was
    cut off: the console died, or dropped a reader that did not keep up).

    A failure ends the stream with one error reply rather than an exception.
    """
    try:
        first, step, wait = _FOLLOWERS[_op(request)](console, request, state)
    except Exception as exc:
        yield error_reply(exc)
        return
    yield from first
    _lower_priority()
    try:
        while alive() and not console.shutdown_requested.is_set():
            result = step()
            if result is None:
                wait()
            elif isinstance(result, bytes):
                yield result  # a whole reply line, encoded once for every follower here
            else:
                yield ok(result)  # full batches come back to back until the reader caught up
        if console.shutdown_requested.is_set():
            yield ok({"end": "the console is stopping"})
    except Exception as exc:
        yield internal_error(exc)


def _lower_priority() -> None:
    """A follower's thread (a connection's own, ended with it) runs at nice FOLLOWER_NICE: on a
    busy machine the kernel gives ingest, the processes and the TUI the CPU first, and followers
    what is left (a follower that cannot keep up is told it was lapped). Linux sets niceness per
    thread; the main thread (an in-process caller) is left as it is."""
    if threading.current_thread() is threading.main_thread():
        return
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current < FOLLOWER_NICE:
            os.setpriority(os.PRIO_PROCESS, tid, FOLLOWER_NICE)


def _check_started(console: Console, op: str) -> None:
    if op != "ping" and not console.started.is_set():
        raise Starting("the console is still starting; try again in a moment")


Step = Callable[[], "dict[str, Any] | bytes | None"]
Follower = tuple[Iterator[dict[str, Any] | bytes], Step, Callable[[], None]]


def _sleep() -> None:
    time.sleep(FOLLOW_POLL)


def _follow_logs(
    console: Console, request: dict[str, Any], state: ReplyState | None = None
) -> Follower:
    selection = _select_logs(console, request)
    query = selection.query
    after = selection.next_id
    raw = selection.raw  # not the selection: its view would hold its snapshot for the follow
    where = selection.where if isinstance(selection, _WhereSelection) else None
    seen = console.store.version

    def new_lines() -> Iterator[LogLine]:
        if where is not None:
            rows = select_rows(where, console.snapshot(), resolve=console.select, after_id=after)
            return (LogLine(row.process, row.block, row.index) for row in rows)  # type: ignore[union-attr]
        view = LogView(console.snapshot(), dataclasses.replace(query, after_id=after))
        return _iterate(view, 0, len(view))

    def step() -> dict[str, Any] | None:
        nonlocal after, seen
        version = console.store.version
        if version == seen:
            return None
        lines: list[dict[str, Any]] = []
        size = 0
        for line in new_lines():
            lines.append(line_to_dict(line, raw))
            size += len(line.content)
            if len(lines) >= FOLLOW_BATCH_LINES or size >= FOLLOW_BATCH_BYTES:
                break
        else:
            seen = version  # caught up with this version: wait for the next one
        if not lines:
            return None
        after = lines[-1]["id"]
        return {"lines": lines, "next_id": after}

    return selection.pieces(state), step, _sleep


def _follow_events(
    console: Console, request: dict[str, Any], state: ReplyState | None = None
) -> Follower:
    """Events as they are journaled, in batches cut at the head the head watcher published
    (see ``IngestProcess.wait_for_events``) and at every multiple of FOLLOW_BATCH_EVENTS:
    followers at the same position, woken together, or reading the same stretch behind the
    head, ask for the same batch, which is read and encoded once and shared (``_SharedBatches``).
    ``state`` is for log replies (the log blocks they hold): an events reply holds none."""
    selection = _select_events(console, request)
    sequencer = console.sequencer
    assert sequencer is not None
    journal = selection.journal
    position = selection.head
    node, stream = selection.node, selection.stream
    shared = _shared_batches(journal)

    def step() -> dict[str, Any] | bytes | None:
        nonlocal position
        if journal.closed:
            return None  # the console is stopping
        head = sequencer.published_head()
        if head <= position:
            return None
        tail = journal.tail
        if position < tail:
            # Overwritten before this follower got to them: said in one reply, not in one per
            # batch's worth (a follower lapped by a flood was sent thousands of empty batches).
            lapped, position = tail - position, tail
            return {"events": [], "next_seq": position, "lapped": lapped}
        # Cut at multiples of FOLLOW_BATCH_EVENTS, not FOLLOW_BATCH_EVENTS after each one's own
        # position: followers that started apart (or fell behind apart) then ask for the same
        # batches and share them. Cut at `position + N`, 20 followers in a flood each asked
        # for batches of their own: 56 batches made for 322 asked (bench/ingest_readers.py).
        stop = min(head, (position // FOLLOW_BATCH_EVENTS + 1) * FOLLOW_BATCH_EVENTS)
        start, position = position, stop
        return shared.get(
            (start, stop, node, stream),
            lambda: _event_batch(journal, start, stop, node, stream),
        )

    def wait() -> None:
        sequencer.wait_for_events(position, FOLLOW_POLL)

    return selection.pieces(), step, wait


def _event_batch(
    journal: Journal, start: int, stop: int, node: int | None, stream: int | None
) -> bytes | None:
    """The follow reply for events ``[start, stop)``, encoded (None: nothing to say)."""
    batch = journal.read_slots(start, stop)
    wanted = batch.seqs[matching(batch.slots, node, stream)]
    events = journal.read_events(wanted)
    # Overwritten before this reader got to them: before the slots were copied, or between
    # that and reading the records.
    lapped = batch.lapped + len(wanted) - len(events)
    if not events and not lapped:
        return None
    reply: dict[str, Any] = {"events": [event.to_json() for event in events], "next_seq": stop}
    if lapped:
        reply["lapped"] = lapped
    return encode(ok(reply))


class _SharedBatches:
    """The latest follow batches of one journal, encoded, by (start, stop, node, stream): a
    batch is made once (under the lock, so followers asking at once wait for the first) and
    handed to every follower that asks for it. Bounded by SHARED_BATCHES and SHARED_BATCH_BYTES."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches: OrderedDict[tuple[Any, ...], bytes | None] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple[Any, ...], make: Callable[[], bytes | None]) -> bytes | None:
        with self._lock:
            if key in self._batches:
                self._batches.move_to_end(key)
                return self._batches[key]
            made = make()
            self._batches[key] = made
            self._bytes += len(made or b"")
            while len(self._batches) > SHARED_BATCHES or self._bytes > SHARED_BATCH_BYTES:
                _, old = self._batches.popitem(last=False)
                self._bytes -= len(old or b"")
            return made


_shared_by_journal: weakref.WeakKeyDictionary[Journal, _SharedBatches] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def _shared_batches(journal: Journal) -> _SharedBatches:
    with _shared_lock:
        shared = _shared_by_journal.get(journal)
        if shared is None:
            shared = _shared_by_journal[journal] = _SharedBatches()
        return shared


def _op(request: Any) -> str:
    if not isinstance(request, dict):
        raise InvalidRequest("a request must be a JSON object")
    op = request.get("op")
    if op not in OPS:
        raise InvalidRequest(f"unknown op {op!r} (known: {', '.join(OPS)})")
    return str(op)


def _name(request: dict[str, Any]) -> str:
    name = request.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("this request needs a process name")
    return name


@dataclasses.dataclass(frozen=True)
class _LogSelection:
    """The lines a ``logs`` request asked for: positions [start, stop) of ``view``."""

    view: LogView
    start: int
    stop: int
    next_id: int
    query: LogQuery
    raw: bool = False  # each line's bytes losslessly (see line_to_dict)
    form: str | None = None  # "text" or "jsonl": the reply is sent in frames (see wire.py)
    snapshot: StoreSnapshot | None = None  # what ``view`` was built from
    store: LogStore | None = None

    def result(self) -> dict[str, Any]:
        lines = [line_to_dict(line, self.raw) for line in self.view.lines(self.start, self.stop)]
        return {"lines": lines, "next_id": self.next_id}

    def pieces(self, state: ReplyState | None = None) -> Iterator[bytes]:
        """The reply line, in pieces of about PIECE_BYTES: the same bytes as ``encode(ok(
        self.result()))``, without ever holding more than a piece of it. With ``form``, the
        frames of the bulk form instead (see ``_frames``). Read through a ``_LogReader``, which
        holds only the blocks of lines not sent yet (not this selection, nor its view)."""
        after = self.query.after_id
        if self.start > 0:
            after = self.view.line(self.start - 1).id
        assert self.snapshot is not None and self.store is not None
        reader = _LogReader(
            self.store, self.snapshot, self.query, after, self.stop - self.start, self.raw
        )
        if state is not None:
            state.readers.append(reader)
        if self.form is not None:
            return _frames(reader, self.form == "jsonl", self.next_id)
        return _json_pieces(reader, self.next_id)


class _LogReader:
    """The lines a streamed ``logs`` reply has yet to send: ``left`` lines after the id
    ``after``, in a snapshot of which it keeps only the blocks holding such lines (those it has
    passed are let go as it goes, so a slow reader does not pin what it has read).

    Blocks the store evicted meanwhile stay readable while the store's retired bytes are within
    their bound (LogStore.retired_bound); past it, ``let_go`` drops them and counts their lines
    not yet sent as ``lapped``: the log was evicted faster than the client read it, and the
    reply goes on with the lines still held. Called before each piece and by the transport while
    it waits to send one; so evicted blocks pinned by replies stay within about that bound."""

    def __init__(
        self,
        store: LogStore,
        snapshot: StoreSnapshot,
        query: LogQuery,
        after: int | None,
        left: int,
        raw: bool,
    ) -> None:
        self.store = store
        names = query.processes if query.processes is not None else list(snapshot.processes)
        self.refs = {
            name: snapshot.processes[name].blocks for name in names if name in snapshot.processes
        }
        self.query = query
        self.raw = raw
        self.after = after  # the id of the last line sent (or before the first to send)
        self.left = left
        self.lapped = 0
        self._view: LogView | None = None
        self._position = 0  # in _view: the next line to send

    def _current_view(self) -> LogView:
        """The view of the lines after ``after`` in the blocks held (built again when blocks
        were let go, so that it holds none of them)."""
        changed = False
        if self.after is not None:
            for name, refs in self.refs.items():
                passed = 0
                while passed < len(refs) and refs[passed].block.id_at(refs[passed].n - 1) <= (
                    self.after
                ):
                    passed += 1
                if passed:
                    self.refs[name] = refs[passed:]
                    changed = True
        if self._view is None or changed:
            self._view = None  # before building the next: one view at a time
            query = dataclasses.replace(self.query, after_id=self.after)
            self._view = LogView(_snapshot_of(self.refs), query)
            self._position = 0
            self.left = min(self.left, len(self._view))
        return self._view

    def let_go(self) -> None:
        """Past the store's bound on retired bytes, drop the evicted blocks held (their lines
        not sent yet count as lapped)."""
        store = self.store
        if store.retired_bytes <= store.retired_bound():
            return
        gone = {name: tuple(r for r in refs if r.block.evicted) for name, refs in self.refs.items()}
        if not any(gone.values()):
            return
        query = dataclasses.replace(self.query, after_id=self.after)
        lost = min(len(LogView(_snapshot_of(gone), query)), self.left)
        self.lapped += lost
        self.left -= lost
        self.refs = {
            name: tuple(r for r in refs if not r.block.evicted) for name, refs in self.refs.items()
        }
        self._view = None

    def take(self, convert: Callable[[str, Block, np.ndarray], bytes]) -> list[tuple[str, bytes]]:
        """The next lines, about PIECE_BYTES of them as ``(process, convert(process, block,
        indices))``; [] when none is left. Holds no block once it returns (but in ``_view``)."""
        self.let_go()
        if self.left <= 0:
            return []
        view = self._current_view()
        out: list[tuple[str, bytes]] = []
        size = 0
        start = self._position
        for process, block, indices in view.batches(start, start + self.left, FRAME_LINES):
            data = convert(process, block, indices)
            out.append((process, data))
            size += len(data)
            self._position += len(indices)
            self.left -= len(indices)
            self.after = block.id_at(int(indices[-1]))
            if size >= PIECE_BYTES:
                break
        else:
            self.left = 0  # the view ran out (its lines are all sent)
        return out


def _snapshot_of(refs: dict[str, tuple[BlockRef, ...]]) -> StoreSnapshot:
    return StoreSnapshot({name: LogSnapshot(name, blocks) for name, blocks in refs.items()}, 0)


def _json_pieces(reader: _LogReader, next_id: int) -> Iterator[bytes]:
    """The JSON reply line ``{"lines": [...], "next_id": N, "lapped"?: N}`` in pieces."""
    raw = reader.raw

    def convert(process: str, block: Block, indices: np.ndarray) -> bytes:
        return b",".join(
            _json(line_to_dict(LogLine(process, block, index), raw)) for index in indices.tolist()
        )

    head = b'{"ok":true,"result":{"lines":['
    separator = b""
    while chunks := reader.take(convert):
        data = separator + b",".join(data for _, data in chunks)
        separator = b","
        yield head + data
        head = b""
    footer = b'],"next_id":%d' % next_id
    if reader.lapped:
        footer += b',"lapped":%d' % reader.lapped
    yield head + footer + b"}}\n"


def _frames(reader: _LogReader, jsonl: bool, next_id: int) -> Iterator[bytes]:
    """The bulk form (see wire.py): frames of about PIECE_BYTES, each a header reply line
    ``{"frame": N, "process": NAME}`` and N bytes of lines (``text``: as written, each ended by
    a newline; ``jsonl``: each line as ``json_text(line_to_dict(line))`` and a newline), built a
    block's slice at a time (api/bulk.py); then ``{"next_id": N, "lapped"?: N}``. A frame holds
    the lines of one process (a merged view changes process between frames)."""

    def convert(process: str, block: Block, indices: np.ndarray) -> bytes:
        return jsonl_bytes(process, block, indices) if jsonl else text_bytes(block, indices)

    while chunks := reader.take(convert):
        pending: list[bytes] = []
        owner = chunks[0][0]
        out: list[bytes] = []
        for process, data in chunks:
            if process != owner and pending:
                out.append(_frame(owner, pending))
                pending = []
            owner = process
            pending.append(data)
        out.append(_frame(owner, pending))
        yield b"".join(out)
    last: dict[str, Any] = {"next_id": next_id}
    if reader.lapped:
        last["lapped"] = reader.lapped
    yield encode(ok(last))


def _frame(process: str | None, pieces: list[bytes]) -> bytes:
    payload = b"".join(pieces)
    return encode(ok({"frame": len(payload), "process": process})) + payload


def _json(value: Any) -> bytes:
    """``value`` as ``encode`` writes it (without the newline): a piece of a reply line."""
    data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    return escape_controls_utf8(data)


def _iterate(view: LogView, start: int, stop: int) -> Iterator[LogLine]:
    """The lines at positions [start, stop) of ``view``, read LOGS_CHUNK_LINES at a time."""
    for chunk in range(start, stop, LOGS_CHUNK_LINES):
        yield from view.lines(chunk, min(chunk + LOGS_CHUNK_LINES, stop))


@dataclasses.dataclass(frozen=True)
class _WhereSelection:
    """The lines a ``logs`` request with ``where`` asked for: the newest ``lines`` matching
    lines, found with the query language (bounded by MAX_WHERE_LINES and MAX_WHERE_BYTES)."""

    lines: list[LogLine]
    next_id: int
    query: LogQuery  # the request's plain filters (a follow's fallback shape)
    where: Query  # the request as a query (what a follow runs on new lines)
    raw: bool = False

    def result(self) -> dict[str, Any]:
        return {
            "lines": [line_to_dict(line, self.raw) for line in self.lines],
            "next_id": self.next_id,
        }

    def pieces(self, state: ReplyState | None = None) -> Iterator[bytes]:
        yield encode(ok(self.result()))


def _where_query(request: dict[str, Any], expr: Expr, query: LogQuery) -> Query:
    """A ``logs`` request with ``where`` as a query: its name, stream, grep and since too."""
    conditions = [expr]
    stream_name = request.get("stream")
    if stream_name:
        conditions.append(Compare("stream", "=", stream_name))
    if query.contains:
        conditions.append(Text("line", "contains", query.contains.decode()))
    name = request.get("name")
    return Query(
        columns=(),
        sources=(Source(name if name else "*"),),
        where=conditions[0] if len(conditions) == 1 else And(tuple(conditions)),
        since=query.since,
    )


def _select_where(
    console: Console, request: dict[str, Any], query: LogQuery, lines: int
) -> _WhereSelection:
    text = request.get("where")
    if not isinstance(text, str):
        raise InvalidRequest("where must be a string (the WHERE part of a query)")
    if lines > MAX_WHERE_LINES:
        raise InvalidRequest(f"with where, lines is at most {MAX_WHERE_LINES}")
    raw = request.get("raw", False)
    if request.get("format") is not None:
        raise InvalidRequest("format cannot be combined with where")
    where = _where_query(request, parse_where(text), query)
    snapshot = console.snapshot()
    found: list[LogLine] = []
    size = 0
    newest = None
    if lines:
        for row in select_rows(
            where, snapshot, resolve=console.select, descending=True, timeout=QUERY_TIMEOUT
        ):
            assert not isinstance(row, EventRow)
            newest = newest or row.id
            size += len(row.raw)
            if size > MAX_WHERE_BYTES and found:
                break
            found.append(LogLine(row.process, row.block, row.index))
            if len(found) >= lines:
                break
    found.reverse()
    # A follow goes on after the newest line of this snapshot, matching or not.
    every = LogView(snapshot, LogQuery(processes=query.processes))
    next_id = every.line(len(every) - 1).id if len(every) else 0
    return _WhereSelection(found, next_id, query, where, bool(raw))


def _query(console: Console, request: dict[str, Any]) -> dict[str, Any]:
    """``query``: a statement of the query language (engine/dsl), run within ``deadline``
    seconds (TimedOut past it)."""
    text = request.get("query")
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest("this request needs a query (SELECT … FROM …)")
    deadline = request.get("deadline", QUERY_TIMEOUT)
    if (
        isinstance(deadline, bool)
        or not isinstance(deadline, (int, float))
        or not 0 < deadline <= MAX_QUERY_TIMEOUT
    ):
        raise InvalidRequest(
            f"deadline must be a number of seconds above 0, at most {MAX_QUERY_TIMEOUT:g}"
        )
    return console.run_query(text, float(deadline))


def _logs(console: Console, request: dict[str, Any]) -> dict[str, Any]:
    return _select_logs(console, request).result()


def _log_query(console: Console, request: dict[str, Any]) -> LogQuery:
    """The LogQuery of a ``logs`` or ``log_window`` request (its name, stream, grep, since,
    after_id, ignore_case and where), every argument checked."""
    name = request.get("name")
    if name is not None and not isinstance(name, str):
        raise InvalidRequest("name must be a string")
    stream_name = request.get("stream")
    if stream_name is not None and (
        not isinstance(stream_name, str) or stream_name not in _STREAM_BY_NAME
    ):
        raise InvalidRequest("stream must be stdout, stderr or system")
    grep = request.get("grep")
    if grep is not None and not isinstance(grep, str):
        raise InvalidRequest("grep must be a string")
    if grep and "\n" in grep:
        raise InvalidRequest("grep text cannot contain a newline")
    try:
        needle = grep.encode() if grep else None
    except UnicodeEncodeError:
        raise InvalidRequest("grep must be valid Unicode text (no lone surrogates)") from None
    since = _since(request)
    after_id = request.get("after_id")
    if after_id is not None and (isinstance(after_id, bool) or not isinstance(after_id, int)):
        raise InvalidRequest("after_id must be an integer")
    ignore_case = request.get("ignore_case", False)
    if not isinstance(ignore_case, bool):
        raise InvalidRequest("ignore_case must be true or false")
    where = request.get("where")
    if where is not None and not isinstance(where, str):
        raise InvalidRequest("where must be a string (the WHERE part of a query)")
    query = LogQuery(
        # A process, an instance, a type (its instances merged), all, or a glob.
        processes=tuple(console.select(name)) if name else None,
        stream=_STREAM_BY_NAME[stream_name] if stream_name else None,
        contains=needle,
        since=time.time() - since if since is not None else None,
        after_id=after_id,
        ignore_case=ignore_case and needle is not None,
        where=where,
    )
    if query.processes is not None:
        console.check_names(query.processes)
    return query


def _select_logs(console: Console, request: dict[str, Any]) -> _LogSelection | _WhereSelection:
    lines = request.get("lines", DEFAULT_LINES)
    if isinstance(lines, bool) or not isinstance(lines, int) or not 0 <= lines <= MAX_LINES:
        raise InvalidRequest(f"lines must be an integer from 0 to {MAX_LINES}")
    raw = request.get("raw", False)
    if not isinstance(raw, bool):
        raise InvalidRequest("raw must be true or false")
    form = request.get("format")
    if form is not None and form not in FORMATS:
        raise InvalidRequest(f"format must be one of {', '.join(FORMATS)}")
    if form is not None and (raw or request.get("follow")):
        raise InvalidRequest("format cannot be combined with raw or follow")
    query = _log_query(console, request)
    if request.get("where") is not None:
        return _select_where(console, request, query, lines)
    snapshot = console.snapshot()
    view = LogView(snapshot, query)
    total = len(view)
    start = max(total - lines, 0)
    if total:
        next_id = view.line(total - 1).id
    else:
        # Nothing matched: a follow starts after the newest line of this very snapshot (not 0,
        # which would replay the whole history through the follow query).
        every = LogView(snapshot, LogQuery(processes=query.processes))
        next_id = every.line(len(every) - 1).id if len(every) else 0
    return _LogSelection(view, start, total, next_id, query, raw, form, snapshot, console.store)


@dataclasses.dataclass(frozen=True)
class _EventSelection:
    """The events an ``events`` request asked for: seqs ``[start, head)`` of the journal, or
    ``seqs`` (those of one node/stream) when filtered; ``tail``/``head``: its bounds then."""

    journal: Journal
    tail: int
    head: int
    start: int
    seqs: np.ndarray | None
    node: int | None
    stream: int | None

    def _chunks(self) -> Iterator[np.ndarray]:
        if self.seqs is None:
            for first in range(self.start, self.head, EVENTS_CHUNK):
                yield np.arange(first, min(first + EVENTS_CHUNK, self.head), dtype=np.int64)
        else:
            for first in range(0, len(self.seqs), EVENTS_CHUNK):
                yield self.seqs[first : first + EVENTS_CHUNK]

    def _read(self) -> Iterator[Event | int]:
        """The events, oldest first, read EVENTS_CHUNK at a time; after each chunk, how many of
        it were overwritten before it was read (0 mostly)."""
        for chunk in self._chunks():
            events = self.journal.read_events(chunk)
            yield from events
            yield len(chunk) - len(events)

    def _footer(self, lapped: int) -> dict[str, Any]:
        footer = {"first_seq": self.tail, "next_seq": self.head}
        if lapped:
            footer["lapped"] = lapped
        return footer

    def result(self) -> dict[str, Any]:
        events: list[dict[str, object]] = []
        lapped = 0
        for item in self._read():
            if isinstance(item, int):
                lapped += item
            else:
                events.append(item.to_json())
        return {"events": events, **self._footer(lapped)}

    def pieces(self) -> Iterator[bytes]:
        """The reply line, in pieces of about PIECE_BYTES: the same bytes as ``encode(ok(
        self.result()))`` would be, holding at most a chunk of events and a piece of JSON."""
        buffer = [b'{"ok":true,"result":{"events":[']
        size = 0
        separator = b""
        lapped = 0
        for item in self._read():
            if isinstance(item, int):
                lapped += item
                continue
            data = separator + _json(item.to_json())
            separator = b","
            buffer.append(data)
            size += len(data)
            if size >= PIECE_BYTES:
                yield b"".join(buffer)
                buffer, size = [], 0
        buffer.append(b"]," + _json(self._footer(lapped))[1:-1] + b"}}\n")
        yield b"".join(buffer)


def _events(console: Console, request: dict[str, Any]) -> dict[str, Any]:
    return _select_events(console, request).result()


def _select_events(console: Console, request: dict[str, Any]) -> _EventSelection:
    sequencer = console.sequencer
    if sequencer is None:
        raise ConsoleError(
            "this console receives no events: set udp in the [sequencer] section of the config, "
            "or start it with `lacrimosa up --udp HOST:PORT`"
        )
    lines = _integer(request, "lines", DEFAULT_EVENTS, 0, MAX_EVENTS)
    node = _integer(request, "node", None, 0, 2**32 - 1)
    stream = _integer(request, "stream", None, 0, 2**16 - 1)
    after = _integer(request, "after", None, 0, 2**63 - 1)
    if after is not None and request.get("follow"):
        raise InvalidRequest("after cannot be combined with follow")
    journal = sequencer.journal
    # Bounds first: a follow goes on from ``head``, so the reply must hold every event below it.
    tail, head = journal.bounds()
    if after is not None:
        # Paging forward: the oldest ``lines`` seqs from ``after`` on (those already overwritten
        # are gone), and ``next_seq`` where the next page starts.
        start = max(tail, min(after, head))
        stop = min(head, start + lines)
        if node is None and stream is None:
            return _EventSelection(journal, tail, stop, start, None, None, None)
        seqs = journal.newest_seqs(lines, node, stream, start, stop)
        return _EventSelection(journal, tail, stop, 0, seqs, node, stream)
    if node is None and stream is None:
        return _EventSelection(journal, tail, head, max(tail, head - lines), None, None, None)
    seqs = journal.newest_seqs(lines, node, stream, tail, head)
    return _EventSelection(journal, tail, head, 0, seqs, node, stream)


def _since(request: dict[str, Any]) -> float | None:
    """``since``: how many seconds back (None: no limit)."""
    since = request.get("since")
    if since is not None and (
        isinstance(since, bool)
        or not isinstance(since, (int, float))
        or not (math.isfinite(since) and 0 <= since <= MAX_SINCE)
    ):
        raise InvalidRequest(f"since must be a number of seconds from 0 to {MAX_SINCE}")
    return since


def _integer(request: dict[str, Any], key: str, default: Any, low: int, high: int) -> Any:
    value = request.get(key, default)
    if value is default:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f"{key} must be an integer from {low} to {high}")
    return value


def _action(verb: str) -> Callable[[Console, dict[str, Any], Actor], Any]:
    def run(console: Console, request: dict[str, Any], actor: Actor) -> Any:
        target = _name(request)  # a process, an instance, a type, all, or a glob
        results = [
            {"name": name, "outcome": outcome, "process": console.process(name).to_dict()}
            for name, outcome in console.act(verb, target, actor)
        ]
        reply: dict[str, Any] = {"name": target, "results": results}
        if len(results) == 1:  # the shape a single process had before: outcome and process
            reply.update(outcome=results[0]["outcome"], process=results[0]["process"])
        return reply

    return run


def _log_window(console: Console, request: dict[str, Any]) -> dict[str, Any]:
    """Lines of one query by position, for a reader that shows a window of them (an attached
    TUI): it never holds more than that window, whatever the store holds.

    Positions are counted back from an end: the newest matching line when the window was first
    asked for (``end_id``, sent back by the first reply, and ``total``, the number of matching
    lines up to it then). So a reader's positions stay put while new lines arrive and old ones
    are evicted: a line evicted since reads as missing (``first`` says where the lines returned
    begin), never as another line. The first request gives ``tail`` (the newest N lines); later
    ones give ``end_id``, ``total`` and ``start``/``stop``, or ``position_of`` (a line id: how
    many matching lines come before it, in the same positions)."""
    query = _log_query(console, request)
    view = console.query(query)  # with ``where``: the newest matches (dsl/where_view.py)
    end_id = request.get("end_id")
    if end_id is None:
        total = end = len(view)
        end_id = view.line(total - 1).id if total else -1
    else:
        if isinstance(end_id, bool) or not isinstance(end_id, int):
            raise InvalidRequest("end_id must be an integer")
        total = _integer(request, "total", None, 0, 1 << 62)
        if total is None:
            raise InvalidRequest("end_id needs total, the number of lines up to it")
        end = min(view.position_of(end_id + 1), total)
    result: dict[str, Any] = {"total": total, "end_id": end_id}
    position_of = request.get("position_of")
    if position_of is not None:
        if isinstance(position_of, bool) or not isinstance(position_of, int):
            raise InvalidRequest("position_of must be an integer")
        result["position"] = total - (end - min(view.position_of(position_of), end))
        return result
    tail = _integer(request, "tail", None, 0, MAX_WINDOW_LINES)
    if tail is not None:
        start, stop = max(total - tail, 0), total
    else:
        start = _integer(request, "start", 0, 0, total)
        stop = _integer(request, "stop", start, start, total)
    stop = min(stop, start + MAX_WINDOW_LINES)
    first = max(start, total - end)  # positions below total - end were evicted since
    lines = view.lines(end - (total - first), end - (total - stop)) if stop > first else []
    result["first"] = first
    result["lines"] = [line_to_dict(line, raw=True) for line in lines]
    return result


def _subscription_state(console: Console, full: bool, log_changed: bool = True) -> dict[str, Any]:
    """What a subscriber is sent: the versions, and the parts that changed (all when ``full``)."""
    state: dict[str, Any] = {"version": list(console.version)}
    if full:
        state["processes"] = [info.to_dict() for info in console.processes()]
        state["warnings"] = console.warnings()
        state["audit"] = console.audit.status()
        sequencer = console.sequencer
        if sequencer is None:
            state["sequencer"] = None
        else:
            section = sequencer.status()
            section["history"] = list(sequencer.stats().history)
            section["warnings"] = sequencer.warnings()
            section["restart_history"] = [restart.to_dict() for restart in sequencer.history]
            state["sequencer"] = section
    if log_changed:
        state["newest_ids"] = console.store.newest_ids()
    return state


def _subscribe(console: Console, alive: Callable[[], bool]) -> Iterator[dict[str, Any]]:
    """A subscription: the whole state first, then what changed, at most once every
    SUBSCRIBE_INTERVAL (however fast lines arrive: a subscriber's cost is bounded by time, not
    by the work it watches), and processes, warnings and the sequencer at least every
    SUBSCRIBE_FULL_INTERVAL (rates and counters move without a version change). Ends with
    ``{"end": ...}`` when the console stops."""
    yield ok(_subscription_state(console, full=True))
    seen = console.version
    full_at = time.monotonic()
    stopping = console.shutdown_requested
    while alive() and not stopping.wait(SUBSCRIBE_INTERVAL):
        version = console.version
        now = time.monotonic()
        full = version[0] != seen[0] or now - full_at >= SUBSCRIBE_FULL_INTERVAL
        if version == seen and not full:
            continue
        if full:
            full_at = now
        yield ok(_subscription_state(console, full, log_changed=version[1] != seen[1]))
        seen = version
    if stopping.is_set():
        yield ok({"end": "the console is stopping"})


def _ps(console: Console) -> dict[str, Any]:
    processes = []
    for info in console.processes():
        entry = info.to_dict()
        # How long the console lets start/stop/restart of this process take: a client waits
        # that long (and a little more) for the reply.
        entry["action_timeout"] = console.config.processes[info.name].stop_timeout + ACTION_MARGIN
        processes.append(entry)
    return {"processes": processes, "warnings": console.warnings()}


def _audit(console: Console, request: dict[str, Any]) -> Any:
    limit = _integer(request, "lines", DEFAULT_AUDIT, 0, MAX_RECORDS)
    since = _since(request)
    records = console.audit.records(limit, time.time() - since if since is not None else None)
    return {"records": records, "count": console.audit.count, "head": console.audit.head}


def _audit_verify(console: Console) -> Any:
    check = console.audit.verify()
    return {"ok": check.ok, "records": check.records, "problems": check.problems}


def _key_create(console: Console, request: dict[str, Any], actor: Actor) -> Any:
    scope, name = request.get("scope", "read"), request.get("name")
    if name is not None and not isinstance(name, str):
        raise InvalidRequest("name must be a string")
    args = {"scope": scope, "name": name}
    with console.audit.failure_recorded(actor, "key_create", None, args):
        record, key = console.keys.create(scope, name)
    console.audit.record(actor, "key_create", record.id, args)
    return {**record.to_dict(), "key": key}


def _key_revoke(console: Console, request: dict[str, Any], actor: Actor) -> Any:
    key_id = request.get("id")
    if not isinstance(key_id, str) or not key_id:
        raise InvalidRequest("this request needs a key id")
    with console.audit.failure_recorded(actor, "key_revoke", key_id):
        record = console.keys.revoke(key_id)
    console.audit.record(actor, "key_revoke", key_id)
    return record.to_dict()


def _wait(console: Console, request: dict[str, Any]) -> Any:
    """Waits here, on the connection's thread, woken by the supervisor's changes (see
    Console.wait_for); the client waits ``timeout`` and a margin for the reply."""
    names = request.get("names")
    if names is not None and (
        not isinstance(names, list) or not all(isinstance(n, str) and n for n in names)
    ):
        raise InvalidRequest("names must be a list of process names")
    until = request.get("until", "ready")
    state = request.get("state")
    if state is not None and not isinstance(state, str):
        raise InvalidRequest("state must be a string")
    if not isinstance(until, str):
        raise InvalidRequest("until must be a string")
    within = request.get("within", 60.0)  # not "timeout": clients' call() takes that for theirs
    if isinstance(within, bool) or not isinstance(within, (int, float)) or math.isnan(within):
        raise InvalidRequest("within must be a number of seconds")
    return console.wait_for(names, until, state, float(within))


def _shutdown(console: Console, request: dict[str, Any], actor: Actor) -> Any:
    console.request_shutdown(actor)
    return {"stopping": True}


_FOLLOWERS: dict[str, Callable[[Console, dict[str, Any], ReplyState | None], Follower]] = {
    "logs": _follow_logs,
    "events": _follow_events,
}
FOLLOWABLE = frozenset(_FOLLOWERS)  # the ops that take ``follow``

# The ops whose reply can be long: every transport sends it in pieces (see ``replies``).
_STREAMED: dict[
    str, Callable[[Console, dict[str, Any]], _LogSelection | _WhereSelection | _EventSelection]
] = {
    "logs": _select_logs,
    "events": _select_events,
}

# Each takes the console, the request and who asks (see ``dispatch``).
_HANDLERS: dict[str, Callable[[Console, dict[str, Any], Actor], Any]] = {
    "ping": lambda console, request, actor: {"pid": os.getpid()},
    "ps": lambda console, request, actor: _ps(console),
    "status": lambda console, request, actor: console.status(),
    "logs": lambda console, request, actor: _logs(console, request),
    "events": lambda console, request, actor: _events(console, request),
    "query": lambda console, request, actor: _query(console, request),
    "start": _action("start"),
    "stop": _action("stop"),
    "restart": _action("restart"),
    "shutdown": _shutdown,
    "audit": lambda console, request, actor: _audit(console, request),
    "audit_verify": lambda console, request, actor: _audit_verify(console),
    # Keys are managed on the owner-only socket (and by admin keys over HTTP), never shown again.
    "key_create": _key_create,
    "key_list": lambda console, request, actor: {
        "keys": [k.to_dict() for k in console.keys.list()]
    },
    "key_revoke": _key_revoke,
    "wait": lambda console, request, actor: _wait(console, request),
    "why": lambda console, request, actor: console.why(_name(request)),
    "log_window": lambda console, request, actor: _log_window(console, request),
    "subscribe": lambda console, request, actor: _subscription_state(console, full=True),
}
