"""The HTTP server: uvicorn serving the API from the console's process, in a thread of its own
with its own event loop, started and stopped with the console (whether the TUI is shown or not).

The listening socket is bound in ``start``, in the caller's thread, so a port in use (or an
address that is not this machine's) is a clear error before the console goes on. It binds what it
is told (loopback by default, see DEFAULT_BIND); anything but loopback is refused while no API
key exists, as the API would then be open to the network with a key nobody has seen yet.

On the first start with HTTP and no key at all, an admin key is made and written once to
``FIRST_KEY_NAME`` in the state folder (mode 0600): ``first_key`` says where, for the headless
output and a TUI notice.

Bounds: at most ``MAX_CONNECTIONS`` connections at once (uvicorn answers 503 past it), a
keep-alive connection idle for ``KEEP_ALIVE`` seconds is closed, a request must arrive whole
(headers and body) within ``REQUEST_TIMEOUT`` seconds of its first byte or its connection is
closed (uvicorn has no such deadline: 257 clients sending a header line now and then held every
connection forever), a WebSocket message from a client is at most ``MAX_WS_MESSAGE`` bytes, and
routes run in a thread pool of 40.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ...engine.audit import Actor
from ...engine.config import parse_address
from ...engine.console import Console
from ...engine.errors import ConsoleError
from .app import Api, SlowReaderDropped

DEFAULT_BIND = "127.0.0.1:3000"
FIRST_KEY_NAME = "http-admin.key"  # in the state folder, written once
MAX_CONNECTIONS = 256
KEEP_ALIVE = 5  # seconds
MAX_WS_MESSAGE = 64 << 10
REQUEST_TIMEOUT = 10.0  # seconds from a request's first byte to its last (headers and body)
START_TIMEOUT = 10.0  # seconds for uvicorn to start serving on the bound socket
STOP_TIMEOUT = 5  # seconds for open connections to finish when the console stops
BACKLOG = 128


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Problems(logging.Handler):
    """uvicorn's and the app's errors, kept for ``status`` instead of written to a terminal the
    TUI may be drawing on."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and isinstance(record.exc_info[1], SlowReaderDropped):
            return  # a client that stopped reading, dropped on purpose: not a problem
        self.count += 1
        self.last = record.getMessage()[:500]


class HttpServer:
    def __init__(
        self,
        console: Console,
        bind: str | None = None,
        metrics_public: bool = False,
        max_connections: int = MAX_CONNECTIONS,
        request_timeout: float = REQUEST_TIMEOUT,
    ):
        self.console = console
        self.bind = bind or DEFAULT_BIND
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        try:
            loopback = is_loopback(parse_address(self.bind)[0])
        except ValueError:
            loopback = False  # start() says what is wrong with the address
        self.api = Api(console, metrics_public=metrics_public, loopback=loopback)
        self.first_key: Path | None = None  # where a first admin key was written, if it was
        self.address = ""  # "host:port" once bound (the port the kernel gave, for port 0)
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._problems = _Problems()
        self.slow_requests = _Count()  # connections closed as their request took too long
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's, while it runs

    def start(self) -> None:
        """Bind, make the first key if there is none, and serve; raises ConsoleError if it
        cannot (port in use, a non-loopback address with no key)."""
        try:
            host, port = parse_address(self.bind)
        except ValueError as exc:
            raise ConsoleError(f"http: {exc}") from None
        if not is_loopback(host) and len(self.console.keys) == 0:
            raise ConsoleError(
                f"http: refusing to serve {self.bind} (not loopback) with no API key yet: start "
                "once on 127.0.0.1 (an admin key is made then) or make one with `lacrimosa keys "
                "create --scope admin`, then bind it"
            )
        self._socket = _listen(host, port, self.bind)
        bound = self._socket.getsockname()
        self.address = f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}"
        if len(self.console.keys) == 0:
            self.first_key = _write_first_key(self.console)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "fastapi"):
            logger = logging.getLogger(name)
            logger.addHandler(self._problems)
            logger.propagate = False
        config = uvicorn.Config(
            self.api.asgi,
            lifespan="off",
            log_config=None,
            access_log=False,
            ws="websockets-sansio",
            http=_deadlined(self.slow_requests, self.request_timeout),
            ws_max_size=MAX_WS_MESSAGE,
            # uvicorn counts the new connection too: this serves max_connections at once.
            limit_concurrency=self.max_connections + 1,
            timeout_keep_alive=KEEP_ALIVE,
            timeout_graceful_shutdown=STOP_TIMEOUT,
            server_header=False,
            # X-Forwarded-For from a loopback client would otherwise be believed: any local
            # process could write any client address into the audit log's refusals.
            proxy_headers=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="lacrimosa-http", daemon=True)
        self._thread.start()
        deadline = START_TIMEOUT
        while not self._server.started and self._thread.is_alive() and deadline > 0:
            self._thread.join(0.01)
            deadline -= 0.01
        if not self._server.started:
            self.close()
            raise ConsoleError(f"http: the server did not start on {self.address}")

    def _serve(self) -> None:
        assert self._server is not None and self._socket is not None
        asyncio.run(self._run(self._server, self._socket))

    async def _run(self, server: uvicorn.Server, sock: socket.socket) -> None:
        self.loop = asyncio.get_running_loop()
        flusher = asyncio.create_task(self._flush_refusals())
        try:
            await server.serve(sockets=[sock])
        finally:
            flusher.cancel()
            self.api.refusals.flush()

    async def _flush_refusals(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.api.refusals.flush()

    def stats(self) -> dict[str, Any]:
        """For ``status``: where it serves and what went wrong."""
        server = self._server
        out: dict[str, Any] = {
            "address": self.address,
            "connections": len(server.server_state.connections) if server else 0,
            "refused": self.api.refusals.refused,
            "slow_requests": self.slow_requests.value,
            "busy": self.api.waits.refused + self.api.where_windows.refused,
            "stream_subscribers": len(self.api.hub.subscribers),
            "stream_bad_messages": self.api.hub.bad_messages,
            "problems": self._problems.count,
        }
        if self._problems.last:
            out["last_problem"] = self._problems.last
        return out

    def close(self) -> None:
        """Stop serving (open connections get STOP_TIMEOUT seconds) and wait for the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT + 2)
        if self._socket is not None:
            self._socket.close()
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "fastapi"):
            logging.getLogger(name).removeHandler(self._problems)


class _Count:
    def __init__(self) -> None:
        self.value = 0


def _deadlined(closed: _Count, timeout: float) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol with a deadline on each request: from its first byte (the
    connection's opening, for the first) to its last, headers and body. A connection past it is
    closed (its route, if one waits on the body, sees a disconnect) and counted in ``closed``."""

    class DeadlinedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _before: object = None  # the request/response cycle before the one the deadline is for

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
                self._arm()  # the first byte of the next request on a kept-alive connection
            super().data_received(data)
            cycle = self.cycle
            if self._deadline is not None and cycle is not self._before and not cycle.more_body:
                self._deadline.cancel()  # this request arrived whole
                self._deadline = None

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._before = self.cycle
            self._deadline = self.loop.call_later(timeout, self._too_slow)

        def _too_slow(self) -> None:
            self._deadline = None
            # Upgraded to a WebSocket, the transport is that protocol's: leave it be.
            if self.transport.get_protocol() is self and not self.transport.is_closing():
                closed.value += 1
                self.transport.close()

    return DeadlinedH11Protocol


def _listen(host: str, port: int, bind: str) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConsoleError(f"http: cannot listen on {bind}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ConsoleError(f"http: cannot listen on {bind}: {exc.strerror or exc}") from None
    sock.set_inheritable(False)
    return sock


def _write_first_key(console: Console) -> Path:
    """An admin key, written once to FIRST_KEY_NAME (0600), and recorded in the audit log."""
    record, key = console.keys.create("admin", "first admin key")
    console.audit.record(
        Actor.local("console"), "key_create", record.id, {"scope": "admin", "name": record.name}
    )
    path = console.home / FIRST_KEY_NAME
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a file left from a key store since removed: this key replaces it
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return path
