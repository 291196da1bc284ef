"""The HTTP API's routes: each translates a request into the control protocol's vocabulary
(``dispatch``, or ``replies`` for the long ``logs``/``events`` replies, sent as they are read)
and its reply into a status code and JSON. No operation is written here.

Every JSON body is the socket's reply envelope: ``{"ok": true, "result": ...}`` or ``{"ok":
false, "error": {"code": ..., "message": ...}}``, with the status code from ``STATUS_BY_CODE``.
FastAPI (on Starlette) was chosen for its typed routes: the OpenAPI document at /openapi.json
is generated from them, and schemathesis fuzzes the API from it in the tests.

Routes are plain functions: FastAPI runs them in its thread pool (at most 40 at once, anyio's
default), so a ``stop`` waiting for its process never holds the event loop.

A streamed reply is bounded as on the socket (api/server.py): while a piece waits for the client
to take it, the reply lets go of log blocks the store evicted (every SEND_SLICE seconds), and a
client that does not take a piece within SEND_TIMEOUT seconds has its reply ended (uvicorn says
no more than that a piece went: a reader slower than a piece in that time goes too, where the
socket keeps any reader that takes some bytes): its snapshot is let go at once, and uvicorn
closes the connection once what it had buffered is read (or the client goes). Before, a client
that stopped reading held its reply's snapshot (up to the whole log budget) for as long as it
kept the connection open.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Send

from ...engine.console import Console
from ...engine.dsl.syntax import MAX_QUERY_CHARS
from ...engine.errors import Busy, InvalidRequest, NoSuchProcess
from ...engine.fastjson import escape_controls
from ...engine.keys import MAX_NAME
from ..protocol import (
    MAX_QUERY_TIMEOUT,
    MAX_WINDOW_LINES,
    ReplyState,
    dispatch,
    error_reply,
    replies,
)
from ..server import SEND_SLICE, SEND_TIMEOUT
from ..version import __version__
from ..wire import encode, error, parse_duration
from .auth import AuthMiddleware, HttpMetrics, RefusalLog, actor_of, check_route_table
from .metrics import ConsoleCollector
from .stream import StreamHub, serve_stream
from .subscription import Subscriptions

# The status code of each protocol error code (any other: 500).
STATUS_BY_CODE = {
    "invalid_request": 400,
    "query_syntax": 400,  # the error also carries position and expected
    "no_such_process": 404,
    "no_such_key": 404,
    "failed": 409,  # the action could not be carried out in the console's present state
    "unavailable": 503,
    "busy": 503,
    "starting": 503,
    "internal": 500,
    "timeout": 504,  # a query ran past its deadline
}
# Routes share one thread pool of 40; those that may hold a thread long are bounded, and one
# more is refused busy (503) rather than queued. A wait holds one up to 24 h: 40 waits from a
# read key had every other route (an admin's restart too) wait with them. A log_window with a
# `where` scans the whole store the first time (1.3-2.5 s for 400k lines; no deadline).
WAITS_AT_ONCE = 16
WHERE_WINDOWS_AT_ONCE = 4
WHOLE_REPLY_BYTES = 256 << 10  # a logs/events reply up to this is sent whole, past it streamed
MAX_QUERY_INT = 2**53  # integers in queries: larger ones are refused (400), not overflowed


def status_for(reply: dict[str, Any]) -> int:
    return 200 if reply["ok"] else STATUS_BY_CODE.get(reply["error"]["code"], 500)


class EscapedJSONResponse(JSONResponse):
    """JSON with every control character escaped, as the socket protocol writes it: a reply
    read with ``curl`` on a terminal carries no child's C1 control (CSI, OSC) raw."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return escape_controls(text).encode()


class SlowReaderDropped(Exception):
    """A client took no piece of a streamed reply within its send timeout: raised mid-response,
    so uvicorn closes the connection (after what it buffered; not an HTTP problem)."""


class BoundedStreamingResponse(StreamingResponse):
    """A streamed ``logs``/``events`` reply that lets go of evicted log blocks while a piece
    waits to be sent, and ends one whose client takes no piece within ``send_timeout``."""

    def __init__(self, content: Iterator[bytes], state: ReplyState, send_timeout: float) -> None:
        super().__init__(content, media_type="application/json")
        self.content = content
        self.state = state
        self.send_timeout = send_timeout

    async def stream_response(self, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        try:
            async for chunk in self.body_iterator:
                await self._send_piece(send, chunk)
        except SlowReaderDropped:
            # Its snapshot goes now, not when the collector finds the exception's frames.
            close = getattr(self.content, "close", None)
            if close is not None:
                await run_in_threadpool(close)
            self.state.readers.clear()
            raise
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_piece(self, send: Send, chunk: str | bytes | memoryview[int]) -> None:
        piece = {"type": "http.response.body", "body": chunk, "more_body": True}
        sending = asyncio.ensure_future(send(piece))
        stalled = 0.0
        while True:
            done, _ = await asyncio.wait({sending}, timeout=SEND_SLICE)
            if done:
                sending.result()
                return
            stalled += SEND_SLICE
            if stalled >= self.send_timeout:
                sending.cancel()
                raise SlowReaderDropped(f"took no bytes for {self.send_timeout:g}s")
            # The body's generator is suspended between pieces: its readers may be changed.
            await run_in_threadpool(self.state.let_go)


def _answer(reply: dict[str, Any], status: int | None = None) -> JSONResponse:
    return EscapedJSONResponse(reply, status_code=status or status_for(reply))


class Slots:
    """At most ``limit`` calls of one kind at once (see WAITS_AT_ONCE); ``refused``: past it."""

    def __init__(self, limit: int, what: str) -> None:
        self.limit = limit
        self.what = what
        self.free = threading.BoundedSemaphore(limit)
        self.refused = 0


class KeyRequest(BaseModel):
    scope: Literal["read", "write", "admin"] = "read"
    name: str | None = Field(default=None, max_length=MAX_NAME)


class QueryRequest(BaseModel):
    query: str = Field(max_length=MAX_QUERY_CHARS, description="SELECT … FROM … WHERE …")
    deadline: float | None = Field(
        default=None, gt=0, le=MAX_QUERY_TIMEOUT, description="seconds it may run (default 10)"
    )


Lines = Annotated[int | None, Query(ge=0, le=MAX_QUERY_INT, description="how many, newest")]
Since = Annotated[str | None, Query(description="how far back: 30s, 5m, 2h, 1d", max_length=32)]
# The filters of the two logs routes (one process, every process merged).
LogStream = Literal["stdout", "stderr", "system"] | None
Grep = Annotated[str | None, Query(max_length=4096, description="lines containing this")]
AfterId = Annotated[int | None, Query(ge=0, le=MAX_QUERY_INT, description="lines after this id")]


class Api:
    """The routes, bound to one console."""

    def __init__(
        self, console: Console, metrics_public: bool = False, loopback: bool = False
    ) -> None:
        self.console = console
        self.send_timeout = SEND_TIMEOUT  # seconds a client may take to take a piece of a reply
        self.registry = CollectorRegistry()
        self.http_metrics = HttpMetrics(self.registry)
        self.refusals = RefusalLog(console)
        self.registry.register(ConsoleCollector(console, lambda: self.refusals.refused))
        self.hub = StreamHub(console)
        self.subscriptions = Subscriptions(console)
        self.waits = Slots(WAITS_AT_ONCE, "waits")
        self.where_windows = Slots(WHERE_WINDOWS_AT_ONCE, "log windows with a where")
        self.app = FastAPI(
            title="lacrimosa",
            version=__version__,
            default_response_class=EscapedJSONResponse,
            docs_url=None,  # no pages pulling scripts from elsewhere; the document is enough
            redoc_url=None,
            description="The console's control protocol over HTTP. Every route but /health "
            "needs `Authorization: Bearer KEY`.",
        )
        self._routes(self.app)
        self.app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
        self.app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
        check_route_table(self.app.routes)
        self.asgi: ASGIApp = AuthMiddleware(
            self.app,
            console,
            self.app.routes,
            self.http_metrics,
            self.refusals,
            metrics_public=metrics_public,
            loopback=loopback,
        )

    def call(self, request: Request, op: str, **arguments: Any) -> JSONResponse:
        return _answer(dispatch(self.console, {"op": op, **arguments}, actor_of(request.scope)))

    def bounded(self, slots: Slots, request: Request, op: str, **arguments: Any) -> JSONResponse:
        """``call``, if one of ``slots`` is free; else refused busy (see WAITS_AT_ONCE)."""
        if not slots.free.acquire(blocking=False):
            slots.refused += 1
            busy = Busy(f"at most {slots.limit} {slots.what} at once over HTTP: try again")
            return _answer(error_reply(busy))
        try:
            return self.call(request, op, **arguments)
        finally:
            slots.free.release()

    def streamed(self, request: Request, op: str, **arguments: Any) -> Response:
        """A ``logs`` or ``events`` reply, sent as the protocol hands it out in pieces (a
        million-line reply never sits whole in memory); an error found before the first piece
        gets its status code."""
        wanted = {"op": op, **{k: v for k, v in arguments.items() if v is not None}}
        state = ReplyState()
        pieces = replies(self.console, wanted, lambda: True, state, actor_of(request.scope))
        first = next(pieces)
        if isinstance(first, dict):
            pieces.close()
            return _answer(first)
        # A short reply (most are) is sent in one go from here; a long one is streamed, which
        # costs a hop to the thread pool for every piece.
        ahead = [first]
        size = len(first)
        for piece in pieces:
            ahead.append(piece if isinstance(piece, bytes) else encode(piece))
            size += len(ahead[-1])
            if size >= WHOLE_REPLY_BYTES:
                break
        else:
            return Response(b"".join(ahead), media_type="application/json")

        def body() -> Iterator[bytes]:
            try:
                yield b"".join(ahead)
                for piece in pieces:
                    yield piece if isinstance(piece, bytes) else encode(piece)
            finally:
                pieces.close()

        return BoundedStreamingResponse(body(), state, self.send_timeout)

    def _routes(self, app: FastAPI) -> None:
        console = self.console

        @app.get("/health", tags=["public"])
        def health() -> dict[str, Any]:
            """Liveness for load balancers: says the console answers, nothing about processes."""
            state = "starting" if not console.started.is_set() else "ok"
            if console.shutdown_requested.is_set():
                state = "stopping"
            return {"ok": True, "result": {"status": state}}

        @app.get("/api/status")
        def status(request: Request) -> JSONResponse:
            return self.call(request, "status")

        @app.get("/api/processes")
        def processes(request: Request) -> JSONResponse:
            return self.call(request, "ps")

        @app.get("/api/processes/{name}")
        def process(request: Request, name: str) -> JSONResponse:
            reply = dispatch(console, {"op": "ps"}, actor_of(request.scope))
            if not reply["ok"]:
                return _answer(reply)
            for entry in reply["result"]["processes"]:
                if entry["name"] == name:
                    return _answer({"ok": True, "result": entry})
            known = [entry["name"] for entry in reply["result"]["processes"]]
            return _answer(error_reply(NoSuchProcess(name, known)))

        @app.get("/api/processes/{name}/logs")
        def process_logs(
            request: Request,
            name: str,
            lines: Lines = None,
            stream: LogStream = None,
            grep: Grep = None,
            since: Since = None,
            after_id: AfterId = None,
        ) -> Response:
            """The newest ``lines`` lines of one process (as ``lacrimosa logs NAME``)."""
            return self._logs(request, name, lines, stream, grep, since, after_id)

        @app.get("/api/logs")
        def logs(
            request: Request,
            lines: Lines = None,
            stream: LogStream = None,
            grep: Grep = None,
            since: Since = None,
            after_id: AfterId = None,
        ) -> Response:
            """The newest lines of every process, merged in the order they arrived."""
            return self._logs(request, None, lines, stream, grep, since, after_id)

        @app.get("/api/events")
        def events(
            request: Request,
            lines: Lines = None,
            node: Annotated[int | None, Query(ge=0, le=MAX_QUERY_INT)] = None,
            stream: Annotated[int | None, Query(ge=0, le=MAX_QUERY_INT)] = None,
            after: Annotated[int | None, Query(ge=0, le=MAX_QUERY_INT)] = None,
        ) -> Response:
            """Journaled events: the newest ``lines``, or with ``after`` the oldest ``lines``
            from that seq on (page on with the reply's ``next_seq``)."""
            return self.streamed(
                request, "events", lines=lines, node=node, stream=stream, after=after
            )

        for verb in ("start", "stop", "restart"):
            self._action_route(app, verb)

        @app.get("/api/processes/{name}/why")
        def why(request: Request, name: str) -> JSONResponse:
            """Why a process is in its state (as ``lacrimosa why NAME --json``)."""
            return self.call(request, "why", name=name)

        @app.get("/api/wait")
        def wait(
            request: Request,
            name: Annotated[
                list[str] | None,
                Query(description="processes, types or globs (repeat); none: every autostart one"),
            ] = None,
            until: Literal["ready", "exited", "state"] = "ready",
            state: Annotated[str | None, Query(max_length=32)] = None,
            timeout: Annotated[str, Query(description="e.g. 30s, 2m", max_length=32)] = "60s",
        ) -> JSONResponse:
            """Answers once every process is there (``outcome``: ``reached``), one never can be
            (``never``) or at the timeout (``timeout``), as ``lacrimosa wait --json``."""
            try:
                within = parse_duration(timeout)
            except ValueError as exc:
                return _answer(error_reply(InvalidRequest(f"timeout: {exc}")))
            arguments = {"names": name, "until": until, "state": state, "within": within}
            return self.bounded(self.waits, request, "wait", **_present(arguments))

        @app.get("/api/audit")
        def audit(
            request: Request,
            limit: Annotated[int | None, Query(ge=0, le=MAX_QUERY_INT)] = None,
            since: Since = None,
        ) -> JSONResponse:
            """The newest audit records, oldest first."""
            try:
                arguments: dict[str, Any] = {"since": _seconds(since)}
            except InvalidRequest as exc:
                return _answer(error_reply(exc))
            if limit is not None:
                arguments["lines"] = limit
            return self.call(request, "audit", **_present(arguments))

        @app.get("/api/audit/verify")
        def audit_verify(request: Request) -> JSONResponse:
            """Check the audit log's hash chain: which records were edited, removed or moved."""
            return self.call(request, "audit_verify")

        @app.get("/api/keys")
        def key_list(request: Request) -> JSONResponse:
            return self.call(request, "key_list")

        @app.post("/api/keys", status_code=201)
        def key_create(request: Request, body: KeyRequest) -> JSONResponse:
            """A new key, shown in this reply only."""
            reply = dispatch(
                console,
                {"op": "key_create", "scope": body.scope, "name": body.name},
                actor_of(request.scope),
            )
            return _answer(reply, 201 if reply["ok"] else None)

        @app.delete("/api/keys/{key_id}")
        def key_revoke(request: Request, key_id: str) -> JSONResponse:
            return self.call(request, "key_revoke", id=key_id)

        @app.post("/api/query")
        def query(request: Request, body: QueryRequest) -> JSONResponse:
            """A statement of the query language over the logs or the events; the result is
            ``{"columns", "rows", "scanned", "elapsed_ms", "truncated"}``, as `lacrimosa query
            --json` prints it. A query that does not parse: 400, ``query_syntax``, with its
            ``position`` and what was ``expected``."""
            arguments = _present({"query": body.query, "deadline": body.deadline})
            return self.call(request, "query", **arguments)

        @app.websocket("/api/stream")
        async def stream(websocket: WebSocket) -> None:
            """Lines, events and state changes as they happen (see stream.py)."""
            await serve_stream(self.hub, websocket)

        @app.get("/api/log_window")
        def log_window(
            request: Request,
            name: Annotated[str | None, Query(max_length=MAX_NAME)] = None,
            stream: LogStream = None,
            grep: Grep = None,
            ignore_case: bool = False,
            where: Annotated[
                str | None,
                Query(max_length=MAX_QUERY_CHARS, description="the WHERE part of a query"),
            ] = None,
            tail: Annotated[int | None, Query(ge=0, le=MAX_WINDOW_LINES)] = None,
            end_id: Annotated[int | None, Query(ge=-1, le=MAX_QUERY_INT)] = None,
            total: Annotated[int | None, Query(ge=0, le=MAX_QUERY_INT)] = None,
            start: Annotated[int | None, Query(ge=0, le=MAX_QUERY_INT)] = None,
            stop: Annotated[int | None, Query(ge=0, le=MAX_QUERY_INT)] = None,
            position_of: Annotated[int | None, Query(ge=0, le=MAX_QUERY_INT)] = None,
        ) -> JSONResponse:
            """Lines of one query by position, for an attached TUI (the ``log_window`` op): the
            first request gives ``tail``, later ones send back ``end_id`` and ``total`` with
            ``start``/``stop`` or ``position_of``; at most 1000 lines a reply, always raw."""
            arguments = {
                "name": name,
                "stream": stream,
                "grep": grep,
                "ignore_case": ignore_case,
                "where": where,
                "tail": tail,
                "end_id": end_id,
                "total": total,
                "start": start,
                "stop": stop,
                "position_of": position_of,
            }
            if where is None:
                return self.call(request, "log_window", **_present(arguments))
            return self.bounded(self.where_windows, request, "log_window", **_present(arguments))

        @app.websocket("/api/subscribe")
        async def subscribe(websocket: WebSocket) -> None:
            """The ``subscribe`` op's replies, for an attached TUI (see subscription.py)."""
            await self.subscriptions.serve(websocket)

        @app.post("/api/shutdown")
        def shutdown(request: Request) -> JSONResponse:
            """Stop every process and the console (answers at once; the console then goes)."""
            return self.call(request, "shutdown")

        @app.get("/metrics", response_class=Response)
        def metrics() -> Response:
            """The console's state in the Prometheus text format."""
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    def _action_route(self, app: FastAPI, verb: str) -> None:
        def action(request: Request, name: str) -> JSONResponse:
            return self.call(request, verb, name=name)

        action.__name__ = f"{verb}_process"
        action.__doc__ = f"{verb.capitalize()} a process; answers once it is done."
        app.post(f"/api/processes/{{name}}/{verb}")(action)

    def _logs(
        self,
        request: Request,
        name: str | None,
        lines: int | None,
        stream: str | None,
        grep: str | None,
        since: str | None,
        after_id: int | None,
    ) -> Response:
        try:
            seconds = _seconds(since)
        except InvalidRequest as exc:
            return _answer(error_reply(exc))
        return self.streamed(
            request,
            "logs",
            name=name,
            lines=lines,
            stream=stream,
            grep=grep,
            since=seconds,
            after_id=after_id,
        )


def _seconds(since: str | None) -> float | None:
    if since is None:
        return None
    try:
        return parse_duration(since)
    except ValueError as exc:
        raise InvalidRequest(f"since: {exc}") from None


def _present(arguments: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in arguments.items() if v is not None}


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
        for problem in exc.errors()[:5]
    )
    return EscapedJSONResponse(error("invalid_request", problems), status_code=422)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request")
    return EscapedJSONResponse(error(code, str(exc.detail)), status_code=exc.status_code)
