"""Server side of the control protocol: one request in, one reply out (see wire.py).

``dispatch`` is transport-free, so the Unix-socket server and the HTTP API share it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from engine.console import Console
from engine.errors import InvalidRequest, LacrimosaError
from engine.logstore import STDERR, STDOUT, SYSTEM, LogLine
from engine.query import LogQuery, LogView

from .wire import OPS, error, ok

DEFAULT_LINES = 100
MAX_LINES = 1_000_000
FOLLOW_POLL = 0.05
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


def dispatch(console: Console, request: Any) -> dict[str, Any]:
    """Carry out one request; every failure becomes an error reply, never an exception."""
    try:
        op = _op(request)
        if op == "logs":
            result, _ = _logs(console, request)
            return ok(result)
        handler: Callable[[Console, dict[str, Any]], Any] = _HANDLERS[op]
        return ok(handler(console, request))
    except LacrimosaError as exc:
        return error(exc.code, exc.message)


def follow_logs(
    console: Console, request: dict[str, Any], alive: Callable[[], bool]
) -> Iterator[dict[str, Any]]:
    """Replies for a following ``logs`` request: the last lines, then each batch of new ones."""
    try:
        result, query = _logs(console, request)
    except LacrimosaError as exc:
        yield error(exc.code, exc.message)
        return
    yield ok(result)
    after = result["next_id"]
    seen = console.store.version
    while alive() and not console.shutdown_requested.is_set():
        time.sleep(FOLLOW_POLL)
        if console.store.version == seen:
            continue
        seen = console.store.version
        view = LogView(console.snapshot(), _replace_after(query, after))
        lines = [line_to_dict(line) for line in view]
        if lines:
            after = lines[-1]["id"]
            yield ok({"lines": lines, "next_id": after})


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
    if stream_name is not None and stream_name not in _STREAM_BY_NAME:
        raise InvalidRequest("stream must be stdout, stderr or system")
    grep = request.get("grep")
    if grep is not None and not isinstance(grep, str):
        raise InvalidRequest("grep must be a string")
    if grep and "\n" in grep:
        raise InvalidRequest("grep text cannot contain a newline")
    since = request.get("since")
    if since is not None and (
        isinstance(since, bool) or not isinstance(since, (int, float)) or since < 0
    ):
        raise InvalidRequest("since must be a number of seconds")
    after_id = request.get("after_id")
    if after_id is not None and (isinstance(after_id, bool) or not isinstance(after_id, int)):
        raise InvalidRequest("after_id must be an integer")
    query = LogQuery(
        processes=(name,) if name else None,
        stream=_STREAM_BY_NAME[stream_name] if stream_name else None,
        contains=grep.encode() if grep else None,
        since=time.time() - since if since is not None else None,
        after_id=after_id,
    )
    view = console.query(query)
    selected = view.tail(lines) if lines else []
    next_id = selected[-1].id if selected else _last_id(view)
    return {"lines": [line_to_dict(line) for line in selected], "next_id": next_id}, query


def _last_id(view: LogView) -> int:
    return view.line(len(view) - 1).id if len(view) else 0


def _replace_after(query: LogQuery, after: int) -> LogQuery:
    return LogQuery(
        processes=query.processes,
        stream=query.stream,
        contains=query.contains,
        ignore_case=query.ignore_case,
        after_id=after,
    )


def _action(verb: str) -> Callable[[Console, dict[str, Any]], Any]:
    def run(console: Console, request: dict[str, Any]) -> Any:
        name = _name(request)
        outcome = getattr(console, f"{verb}_process")(name)
        return {"name": name, "outcome": outcome, "process": console.process(name).to_dict()}

    return run


def _shutdown(console: Console, request: dict[str, Any]) -> Any:
    console.request_shutdown()
    return {"stopping": True}


_HANDLERS: dict[str, Callable[[Console, dict[str, Any]], Any]] = {
    "ping": lambda console, request: {"pid": console.status()["pid"]},
    "ps": lambda console, request: {"processes": [p.to_dict() for p in console.processes()]},
    "status": lambda console, request: console.status(),
    "start": _action("start"),
    "stop": _action("stop"),
    "restart": _action("restart"),
    "shutdown": _shutdown,
}
