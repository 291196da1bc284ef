"""The control server: the console's Unix socket (mode 0600), newline-delimited JSON.

One thread accepts; each connection gets a thread that answers requests in order until the client
hangs up. A malformed request gets an error reply and the connection keeps being served; requests
that could not be parsed are counted in ``malformed_requests``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from engine.console import Console
from engine.errors import ConsoleError
from engine.paths import socket_path

from .protocol import dispatch, follow_logs
from .wire import MAX_REQUEST_BYTES, encode, error

CLOSE_GRACE = 2.0  # seconds that requests in flight get to finish when the console stops


def console_running(path: Path) -> bool:
    """Whether something answers on the socket at ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _peer_connected(conn: socket.socket) -> bool:
    """False once the client has hung up (an orderly close reads as zero bytes)."""
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


class ControlServer:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.path = socket_path(console.home)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._lock = threading.Lock()
        self.malformed_requests = 0

    def start(self) -> None:
        """Bind the socket (refusing if another console already answers on it) and serve."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if console_running(self.path):
                raise ConsoleError(f"a console is already running here ({self.path})")
            self.path.unlink()  # left behind by a console that was killed
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is created 0600: owner only, from the start
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old_umask)
        sock.listen(64)
        self._sock = sock
        self._thread = threading.Thread(
            target=self._accept_loop, name="lacrimosa-control", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, let requests in flight send their replies, then remove the socket.

        Connections are shut for reading only, so a reply being written (the one to
        ``shutdown`` itself, say) still reaches its client before the console exits.
        """
        self._closing.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            connections = dict(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RD)
        deadline = time.monotonic() + CLOSE_GRACE
        for thread in connections.values():
            thread.join(max(deadline - time.monotonic(), 0))
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            thread = threading.Thread(
                target=self._serve, args=(conn,), name="lacrimosa-control-conn", daemon=True
            )
            with self._lock:
                self._connections[conn] = thread
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn, conn.makefile("rb") as reader:
                while not self._closing.is_set():
                    raw = reader.readline(MAX_REQUEST_BYTES + 1)
                    if not raw:
                        return
                    if len(raw) > MAX_REQUEST_BYTES:
                        while raw and not raw.endswith(b"\n"):  # skip the rest of that line
                            raw = reader.readline(MAX_REQUEST_BYTES)
                        self.malformed_requests += 1
                        conn.sendall(encode(error("invalid_request", "request too large")))
                        continue
                    self._answer(conn, raw)
        except OSError:
            return  # the client went away
        finally:
            with self._lock:
                self._connections.pop(conn, None)

    def _answer(self, conn: socket.socket, raw: bytes) -> None:
        try:
            request: Any = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            self.malformed_requests += 1
            conn.sendall(encode(error("invalid_request", f"malformed JSON: {exc}")))
            return
        if isinstance(request, dict) and request.get("op") == "logs" and request.get("follow"):

            def alive() -> bool:
                return not self._closing.is_set() and _peer_connected(conn)

            for reply in follow_logs(self.console, request, alive):
                conn.sendall(encode(reply))
            return
        reply = dispatch(self.console, request)
        if not reply["ok"] and reply["error"]["code"] == "invalid_request":
            self.malformed_requests += 1
        conn.sendall(encode(reply))
