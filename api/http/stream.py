"""/api/stream: a WebSocket of what happens in the console as it happens.

The server sends ``{"type": "connected", ...}``, then ``{"type": "batch", "window_start",
"window_end", "lines": [...], "events": [...], "processes": [...]}`` every BATCH_INTERVAL seconds
while something changed (nothing when idle): new log lines (as ``logs -f`` sends them), new
journaled events, and the processes whose state changed. A client sends ``{"type": "filter",
"processes": [...], "streams": [...], "nodes": [...], "event_streams": [...]}`` (each list
optional; empty or absent: everything), ``{"type": "pause"}``, ``{"type": "resume"}``,
``{"type": "history", "since": "5m"}`` (the lines since then that pass the filter, at most
HISTORY_LINES and about HISTORY_BYTES of text, newest kept, looked for among the newest
HISTORY_SCAN_LINES of the processes and stream asked for) and ``{"type": "ping"}`` (answered ``pong``). A malformed message
gets ``{"type": "error", "message": ...}``, is counted, and the stream goes on.

One ``StreamHub`` per server reads the console for every subscriber: each tick it takes the
lines after the last it read (at most HUB_BATCH_LINES: past that, the oldest are skipped and
every subscriber is told it missed them), turned into JSON from the blocks' bytes by api/bulk.py
(no per-line objects), the events after the last seq it read (at most
HUB_BATCH_EVENTS) and the process states, builds one batch, and offers it to each subscriber,
which keeps only what passes its filter (references to the same line dicts; a subscriber with no
filter shares the batch itself, encoded once for all of them).

A subscriber holds at most QUEUE_BATCHES batches waiting for its socket. A slow client (or one
whose TCP window is shut) never slows the hub or others: when its queue is full, what waits is
dropped, counted, and the next batch it gets says ``"missed": N`` (lines) and carries on from the
newest. A paused subscriber gets nothing and is told on resume how many lines it missed. At most
MAX_SUBSCRIBERS at once; one more is closed with code 1013 (try again later).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections import deque
from typing import Any

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from ...engine.console import Console
from ...engine.logs.query import LogQuery, LogView
from ...engine.logs.store import STREAM_MASK, STREAM_NAMES
from ..bulk import jsonl_bytes
from ..protocol import line_to_dict
from ..wire import parse_duration
from .auth import REVOKED_CLOSE, until_revoked

_log = logging.getLogger("uvicorn.error")  # counted in the server's status (server._Problems)

BATCH_INTERVAL = 0.05  # seconds between batches while something changes
HUB_BATCH_LINES = 2000  # lines read from the store a tick (40,000 a second); the rest skipped
HUB_BATCH_EVENTS = 1000  # events read from the journal a tick
QUEUE_BATCHES = 8  # batches one subscriber may have waiting for its socket
MAX_SUBSCRIBERS = 64
HISTORY_LINES = 5000  # the most lines a history reply holds
HISTORY_BYTES = 4 << 20  # and about the most bytes of text
MAX_FILTER_ITEMS = 100  # entries in one list of a filter
HISTORY_SCAN_LINES = 200_000  # the newest lines a history request looks through, at most


class Segment:
    """Lines of one process and stream, in order, as JSON objects joined by commas (built from
    the block's bytes by api/bulk.py, as ``logs --json`` prints them: no per-line objects)."""

    __slots__ = ("count", "data", "process", "stream")

    def __init__(self, process: str, stream: str, count: int, data: bytes) -> None:
        self.process = process
        self.stream = stream
        self.count = count
        self.data = data


class Batch:
    """What changed in one window: shared, read-only, by every subscriber it is offered to."""

    __slots__ = (
        "encoded",
        "events",
        "missed",
        "processes",
        "segments",
        "window_end",
        "window_start",
    )

    def __init__(
        self,
        window_start: float,
        window_end: float,
        segments: list[Segment],
        events: list[dict[str, Any]],
        processes: list[dict[str, Any]],
        missed: int = 0,
    ) -> None:
        self.window_start = window_start
        self.window_end = window_end
        self.segments = segments
        self.events = events
        self.processes = processes
        self.missed = missed  # lines skipped before this batch's (told to the client)
        self.encoded: str | None = None

    @property
    def lines(self) -> int:
        return sum(segment.count for segment in self.segments)

    def __bool__(self) -> bool:
        return bool(self.segments or self.events or self.processes or self.missed)

    def message(self) -> str:
        if self.encoded is None:
            head = {
                "type": "batch",
                "window_start": round(self.window_start, 6),
                "window_end": round(self.window_end, 6),
            }
            tail: dict[str, Any] = {"events": self.events, "processes": self.processes}
            if self.missed:
                tail["missed"] = self.missed
            lines = b",".join(segment.data for segment in self.segments).decode()
            self.encoded = (
                json.dumps(head, separators=(",", ":"))[:-1]
                + ',"lines":['
                + lines
                + "],"
                + json.dumps(tail, separators=(",", ":"))[1:]
            )
        return self.encoded


class Filter:
    """What one subscriber wants; None in a field: everything."""

    def __init__(self) -> None:
        self.processes: frozenset[str] | None = None
        self.streams: frozenset[str] | None = None
        self.nodes: frozenset[int] | None = None
        self.event_streams: frozenset[int] | None = None

    @property
    def everything(self) -> bool:
        return not (self.processes or self.streams or self.nodes or self.event_streams)

    def set(self, message: dict[str, Any]) -> None:
        """From a ``filter`` message; raises ValueError with a reason."""
        self.processes = _names(message, "processes", str)
        self.streams = _names(message, "streams", str)
        if self.streams and not self.streams <= set(STREAM_NAMES):
            raise ValueError(f"streams must be among {', '.join(STREAM_NAMES)}")
        self.nodes = _names(message, "nodes", int)
        self.event_streams = _names(message, "event_streams", int)

    def line(self, line: dict[str, Any]) -> bool:
        return self.wants(line["process"], line["stream"])

    def wants(self, process: str, stream: str) -> bool:
        return (not self.processes or process in self.processes) and (
            not self.streams or stream in self.streams
        )

    def event(self, event: dict[str, Any]) -> bool:
        return (not self.nodes or event.get("node") in self.nodes) and (
            not self.event_streams or event.get("stream") in self.event_streams
        )

    def apply(self, batch: Batch, missed: int) -> Batch:
        if self.everything and not missed:
            return batch  # shared, encoded once for every such subscriber
        segments = [x for x in batch.segments if self.wants(x.process, x.stream)]
        events = [event for event in batch.events if self.event(event)]
        processes = [
            p for p in batch.processes if not self.processes or p["name"] in self.processes
        ]
        return Batch(
            batch.window_start, batch.window_end, segments, events, processes, batch.missed + missed
        )


def _names(message: dict[str, Any], key: str, kind: type) -> frozenset[Any] | None:
    value = message.get(key)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > MAX_FILTER_ITEMS
        or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(
            f"{key} must be a list of at most {MAX_FILTER_ITEMS} {kind.__name__} values"
        )
    return frozenset(value) or None


class Subscriber:
    def __init__(self) -> None:
        self.filter = Filter()
        self.paused = False
        self.queue: deque[Batch] = deque()
        self.ready = asyncio.Event()
        self.missed = 0  # lines dropped (queue full, paused) not yet told to the client
        self.missed_total = 0

    def offer(self, batch: Batch) -> None:
        if self.paused:
            self._miss(
                sum(x.count for x in batch.segments if self.filter.wants(x.process, x.stream))
            )
            return
        if len(self.queue) >= QUEUE_BATCHES:
            # The client is behind: drop what waits and go on from the newest.
            self._miss(sum(waiting.lines for waiting in self.queue))
            self.queue.clear()
        mine = self.filter.apply(batch, self.missed)
        self.missed = 0
        if mine:
            self.queue.append(mine)
            self.ready.set()

    def _miss(self, lines: int) -> None:
        self.missed += lines
        self.missed_total += lines


class StreamHub:
    """Reads the console once a tick for every subscriber (see the module docstring)."""

    def __init__(self, console: Console, max_subscribers: int = MAX_SUBSCRIBERS) -> None:
        self.console = console
        self.max_subscribers = max_subscribers
        self.subscribers: set[Subscriber] = set()
        self.bad_messages = 0
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None
        self._after_id: int | None = None
        self._seq: int | None = None
        self._states: dict[str, tuple[Any, ...]] = {}
        self._versions: tuple[Any, ...] = ()
        self._window = time.time()

    def subscribe(self) -> Subscriber | None:
        if len(self.subscribers) >= self.max_subscribers:
            return None
        subscriber = Subscriber()
        if not self.subscribers:
            self._catch_up()
        self.subscribers.add(subscriber)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def _catch_up(self) -> None:
        """Start from now: the first subscriber gets what happens after it came."""
        self._after_id = self.console.store.stats()["next_id"] - 1
        sequencer = self.console.sequencer
        self._seq = sequencer.published_head() if sequencer is not None else None
        self._states = {info.name: _state_key(info.to_dict()) for info in self.console.processes()}
        self._window = time.time()

    async def _run(self) -> None:
        while self.subscribers:
            await asyncio.sleep(BATCH_INTERVAL)
            batch = self.tick()
            if batch:
                for subscriber in list(self.subscribers):
                    subscriber.offer(batch)

    def tick(self) -> Batch | None:
        self.ticks += 1
        sequencer = self.console.sequencer
        versions = (
            self.console.version,
            sequencer.published_head() if sequencer is not None else None,
        )
        start, end = self._window, time.time()
        self._window = end
        if versions == self._versions:
            return None
        self._versions = versions
        lines, missed = self._lines()
        events = self._events()
        processes = self._processes()
        return Batch(start, end, lines, events, processes, missed)

    def _lines(self) -> tuple[list[Segment], int]:
        view = LogView(self.console.snapshot(), LogQuery(after_id=self._after_id))
        total = len(view)
        if not total:
            return [], 0
        skipped = max(0, total - HUB_BATCH_LINES)
        segments: list[Segment] = []
        for process, block, indices in view.batches(skipped, total, HUB_BATCH_LINES):
            streams = block.run_flags[block.runs_of(indices)] & STREAM_MASK
            cuts = [0, *(np.flatnonzero(np.diff(streams)) + 1).tolist(), len(indices)]
            for a, b in itertools.pairwise(cuts):
                data = jsonl_bytes(process, block, indices[a:b])
                segments.append(
                    Segment(
                        process,
                        STREAM_NAMES[int(streams[a])],
                        b - a,
                        data[:-1].replace(b"\n", b","),
                    )
                )
            self._after_id = block.id_at(int(indices[-1]))
        return segments, skipped

    def _events(self) -> list[dict[str, Any]]:
        sequencer = self.console.sequencer
        if sequencer is None or self._seq is None:
            return []
        journal = sequencer.journal
        if journal.closed:
            return []
        head = sequencer.published_head()
        start = max(self._seq, head - HUB_BATCH_EVENTS)
        self._seq = head
        if head <= start:
            return []
        batch = journal.read_slots(start, head)
        return [event.to_json() for event in journal.read_events(batch.seqs)]

    def _processes(self) -> list[dict[str, Any]]:
        changed = []
        for info in self.console.processes():
            entry = info.to_dict()
            key = _state_key(entry)
            if self._states.get(info.name) != key:
                self._states[info.name] = key
                changed.append(entry)
        return changed


def _state_key(entry: dict[str, Any]) -> tuple[Any, ...]:
    return (entry["state"], entry["pid"], entry["restarts"], entry["exit_code"])


async def serve_stream(hub: StreamHub, websocket: WebSocket) -> None:
    """One subscriber's connection: a sender and a receiver until either side ends it."""
    await websocket.accept()
    subscriber = hub.subscribe()
    if subscriber is None:
        await websocket.close(
            code=1013, reason=f"at most {hub.max_subscribers} stream subscribers: try again later"
        )
        return
    try:
        await websocket.send_text(json.dumps(_connected(hub.console)))
        sender = asyncio.create_task(_send(websocket, subscriber))
        receiver = asyncio.create_task(_receive(hub, websocket, subscriber))
        stopping = asyncio.create_task(_until_shutdown(hub.console))
        revoked = asyncio.create_task(until_revoked(hub.console, websocket.scope))
        done, pending = await asyncio.wait(
            {sender, receiver, stopping, revoked}, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        failures = [t.exception() for t in done if not t.cancelled() and t.exception()]
        if any(isinstance(exc, WebSocketDisconnect) for exc in failures):
            return
        if failures:
            # A bug: said where the server's problems go (status shows them), and the client is
            # told, rather than left waiting on a stream that stopped.
            _log.error("stream subscriber failed: %r", failures[0])
            await websocket.close(code=1011, reason="internal error")
        elif stopping in done:
            await websocket.close(code=1001, reason="the console is stopping")
        elif revoked in done:
            await websocket.close(*REVOKED_CLOSE)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client went away (RuntimeError: sent to a socket already closed)
    finally:
        hub.unsubscribe(subscriber)


def _connected(console: Console) -> dict[str, Any]:
    sequencer = console.sequencer
    return {
        "type": "connected",
        "processes": [info.to_dict() for info in console.processes()],
        "next_id": console.store.stats()["next_id"],
        "next_seq": sequencer.published_head() if sequencer is not None else None,
        "batch_interval": BATCH_INTERVAL,
        "max_batch_lines": HUB_BATCH_LINES,
    }


async def _until_shutdown(console: Console) -> None:
    while not console.shutdown_requested.is_set():
        await asyncio.sleep(0.2)


async def _send(websocket: WebSocket, subscriber: Subscriber) -> None:
    while True:
        await subscriber.ready.wait()
        subscriber.ready.clear()
        while subscriber.queue:
            await websocket.send_text(subscriber.queue.popleft().message())


async def _receive(hub: StreamHub, websocket: WebSocket, subscriber: Subscriber) -> None:
    while True:
        text = await websocket.receive_text()
        try:
            try:
                message = json.loads(text)
            except RecursionError:  # 64 KiB of "[": a 1011 and a logged failure, before
                raise ValueError("a message may nest at most as deep as Python's stack") from None
            if not isinstance(message, dict):
                raise ValueError("a message must be a JSON object")
            reply = await _answer(hub, subscriber, message)
        except ValueError as exc:
            hub.bad_messages += 1
            reply = {"type": "error", "message": str(exc)[:300]}
        if reply is not None:
            await websocket.send_text(json.dumps(reply, separators=(",", ":")))


async def _answer(
    hub: StreamHub, subscriber: Subscriber, message: dict[str, Any]
) -> dict[str, Any] | None:
    kind = message.get("type")
    if kind == "ping":
        return {"type": "pong", "time": time.time()}
    if kind == "filter":
        subscriber.filter.set(message)
        return None
    if kind == "pause":
        subscriber.paused = True
        return None
    if kind == "resume":
        subscriber.paused = False
        if subscriber.missed:
            # Told at once, not with the next batch (there may be none for a while).
            missed, subscriber.missed = subscriber.missed, 0
            return {"type": "resumed", "missed": missed}
        return {"type": "resumed", "missed": 0}
    if kind == "history":
        since = message.get("since")
        if not isinstance(since, str):
            raise ValueError('history needs "since", a duration such as "5m"')
        seconds = parse_duration(since)
        lines = await asyncio.to_thread(_history, hub.console, subscriber.filter, seconds)
        return {"type": "history", "since": since, "lines": lines}
    raise ValueError(f"unknown message type {kind!r} (filter, pause, resume, history, ping)")


def _history(console: Console, wanted: Filter, seconds: float) -> list[dict[str, Any]]:
    """The newest lines of the last ``seconds`` that pass ``wanted``: at most HISTORY_LINES of
    them, and about HISTORY_BYTES of text (lines may be up to the store's max_line each)."""
    names = tuple(wanted.processes) if wanted.processes else None
    if names is not None:
        names = tuple(name for name in names if name in console.supervisor.names())
        if not names:
            return []
    # One stream wanted: the store's own stream filter skips the others without a line object
    # each (a filter on stderr over 400k stdout lines took 2.4 s, and a full store ~50 s).
    streams = wanted.streams or ()
    stream = STREAM_NAMES.index(next(iter(streams))) if len(streams) == 1 else None
    query = LogQuery(processes=names, since=time.time() - seconds, stream=stream)
    view = LogView(console.snapshot(), query)
    found: list[dict[str, Any]] = []
    size = 0
    position = len(view)
    lowest = max(0, position - HISTORY_SCAN_LINES)  # what else is wanted is looked for this far
    while position > lowest and len(found) < HISTORY_LINES and size < HISTORY_BYTES:
        start = max(lowest, position - 1000)
        chunk = [
            line for line in map(line_to_dict, view.lines(start, position)) if wanted.line(line)
        ]
        for line in reversed(chunk):
            if len(found) >= HISTORY_LINES or size >= HISTORY_BYTES:
                break
            found.append(line)
            size += len(line["text"])
        position = start
    found.reverse()
    return found
