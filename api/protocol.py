"""Server side of the control protocol: one request in, one reply out (see wire.py).

``dispatch`` is transport-free, so the Unix-socket server and the HTTP API share it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..engine.console import Console
from ..engine.errors import ConsoleError, InvalidRequest, LacrimosaError
from ..engine.events import matching
from ..engine.logstore import STDERR, STDOUT, SYSTEM, LogLine
from ..engine.query import LogQuery, LogView
from .wire import OPS, error, ok

DEFAULT_LINES = 100
DEFAULT_EVENTS = 20
MAX_EVENTS = 100_000
MAX_LINES = 1_000_000
FOLLOW_POLL = 0.05
MAX_SINCE = 10 * 365 * 86400  # seconds: ten years back is "everything"
_STREAM_BY_NAME = {"stdout": STDOUT, "stderr": STDERR, "system": SYSTEM}


def line_to_dict(line: LogLine) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": line.id,
        "time": line.time,
        "process": line.process,
        "stream": line.stream_name,
        "text": line.text,
    }
    if line.continued:
        out["continued"] = True
    return out


def internal_error(exc: Exception) -> dict[str, Any]:
    """The reply for a failure nobody foresaw: the client learns what broke, the server goes on."""
    return error("internal", f"internal error: {type(exc).__name__}: {exc}")


def dispatch(console: Console, request: Any) -> dict[str, Any]:
    """Carry out one request; every failure becomes an error reply, never an exception."""
    try:
        return ok(_HANDLERS[_op(request)](console, request))
    except LacrimosaError as exc:
        return error(exc.code, exc.message)
    except Exception as exc:
        return internal_error(exc)


def follow(
    console: Console, request: dict[str, Any], alive: Callable[[], bool]
) -> Iterator[dict[str, Any]]:
    """Replies for a following request (``logs`` or ``events`` with ``follow``): the first reply
    as without ``follow``, then one reply for each batch of new lines or events.

    A failure ends the stream with one error reply rather than an exception.
    """
    try:
        first, step = _FOLLOWERS[_op(request)](console, request)
    except LacrimosaError as exc:
        yield error(exc.code, exc.message)
        return
    except Exception as exc:
        yield internal_error(exc)
        return
    yield ok(first)
    try:
        while alive() and not console.shutdown_requested.is_set():
            time.sleep(FOLLOW_POLL)
            result = step()
            if result is not None:
                yield ok(result)
    except Exception as exc:
        yield internal_error(exc)


Step = Callable[[], "dict[str, Any] | None"]


def _follow_logs(console: Console, request: dict[str, Any]) -> tuple[dict[str, Any], Step]:
    result, query = _logs(console, request)
    after = result["next_id"]
    seen = console.store.version

    def step() -> dict[str, Any] | None:
        nonlocal after, seen
        if console.store.version == seen:
            return None
        seen = console.store.version
        view = LogView(console.snapshot(), dataclasses.replace(query, after_id=after))
        lines = [line_to_dict(line) for line in view]
        if not lines:
            return None
        after = lines[-1]["id"]
        return {"lines": lines, "next_id": after}

    return result, step


def _follow_events(console: Console, request: dict[str, Any]) -> tuple[dict[str, Any], Step]:
    result = _events(console, request)
    sequencer = console.sequencer
    assert sequencer is not None
    journal = sequencer.journal
    cursor = journal.cursor(result["next_seq"])
    node, stream = request.get("node"), request.get("stream")

    def step() -> dict[str, Any] | None:
        if journal.closed:
            return None  # the console is stopping
        batch = cursor.poll(MAX_EVENTS)
        if len(batch.seqs) == 0 and not batch.lapped:
            return None
        wanted = batch.seqs[matching(batch.slots, node, stream)]
        events = journal.read_events(wanted)
        # Overwritten before this reader got to them: before the slots were copied, or between
        # that and reading the records.
        lapped = batch.lapped + len(wanted) - len(events)
        reply: dict[str, Any] = {
            "events": [event.to_json() for event in events],
            "next_seq": cursor.position,
        }
        if lapped:
            reply["lapped"] = lapped
        return reply if events or lapped else None

    return result, step


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


def _logs(console: Console, request: dict[str, Any]) -> tuple[dict[str, Any], LogQuery]:
    name = request.get("name")
    if name is not None and not isinstance(name, str):
        raise InvalidRequest("name must be a string")
    lines = request.get("lines", DEFAULT_LINES)
    if isinstance(lines, bool) or not isinstance(lines, int) or not 0 <= lines <= MAX_LINES:
        raise InvalidRequest(f"lines must be an integer from 0 to {MAX_LINES}")
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
    since = request.get("since")
    if since is not None and (
        isinstance(since, bool)
        or not isinstance(since, (int, float))
        or not (math.isfinite(since) and 0 <= since <= MAX_SINCE)
    ):
        raise InvalidRequest(f"since must be a number of seconds from 0 to {MAX_SINCE}")
    after_id = request.get("after_id")
    if after_id is not None and (isinstance(after_id, bool) or not isinstance(after_id, int)):
        raise InvalidRequest("after_id must be an integer")
    query = LogQuery(
        processes=(name,) if name else None,
        stream=_STREAM_BY_NAME[stream_name] if stream_name else None,
        contains=needle,
        since=time.time() - since if since is not None else None,
        after_id=after_id,
    )
    if query.processes is not None:
        console.check_names(query.processes)
    snapshot = console.snapshot()
    view = LogView(snapshot, query)
    selected = view.tail(lines) if lines else []
    if selected:
        next_id = selected[-1].id
    elif len(view):
        next_id = view.line(len(view) - 1).id
    else:
        # Nothing matched: a follow starts after the newest line of this very snapshot (not 0,
        # which would replay the whole history through the follow query).
        every = LogView(snapshot, LogQuery(processes=query.processes))
        next_id = every.line(len(every) - 1).id if len(every) else 0
    return {"lines": [line_to_dict(line) for line in selected], "next_id": next_id}, query


def _events(console: Console, request: dict[str, Any]) -> dict[str, Any]:
    sequencer = console.sequencer
    if sequencer is None:
        raise ConsoleError(
            "this console receives no events: set udp in the [sequencer] section of the config, "
            "or start it with `lacrimosa up --udp HOST:PORT`"
        )
    lines = _integer(request, "lines", DEFAULT_EVENTS, 0, MAX_EVENTS)
    node = _integer(request, "node", None, 0, 2**32 - 1)
    stream = _integer(request, "stream", None, 0, 2**16 - 1)
    # Bounds first: a follow goes on from ``head``, so the reply must hold every event below it.
    tail, head = sequencer.journal.bounds()
    events = sequencer.events(lines, node=node, stream=stream, below=head)
    return {
        "events": [event.to_json() for event in events],
        "first_seq": tail,
        "next_seq": head,
    }


def _integer(request: dict[str, Any], key: str, default: Any, low: int, high: int) -> Any:
    value = request.get(key, default)
    if value is default:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f"{key} must be an integer from {low} to {high}")
    return value


def _action(verb: str) -> Callable[[Console, dict[str, Any]], Any]:
    def run(console: Console, request: dict[str, Any]) -> Any:
        name = _name(request)
        outcome = getattr(console, f"{verb}_process")(name)
        return {"name": name, "outcome": outcome, "process": console.process(name).to_dict()}

    return run


def _shutdown(console: Console, request: dict[str, Any]) -> Any:
    console.request_shutdown()
    return {"stopping": True}


_FOLLOWERS: dict[str, Callable[[Console, dict[str, Any]], tuple[dict[str, Any], Step]]] = {
    "logs": _follow_logs,
    "events": _follow_events,
}
FOLLOWABLE = frozenset(_FOLLOWERS)  # the ops that take ``follow``

_HANDLERS: dict[str, Callable[[Console, dict[str, Any]], Any]] = {
    "ping": lambda console, request: {"pid": os.getpid()},
    "ps": lambda console, request: {
        "processes": [p.to_dict() for p in console.processes()],
        "warnings": console.warnings(),
    },
    "status": lambda console, request: console.status(),
    "logs": lambda console, request: _logs(console, request)[0],
    "events": _events,
    "start": _action("start"),
    "stop": _action("stop"),
    "restart": _action("restart"),
    "shutdown": _shutdown,
}
