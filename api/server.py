"""The control server: the console's Unix socket (mode 0600), newline-delimited JSON.

One thread accepts; each connection gets a thread that answers requests in order until the client
hangs up. A malformed request gets an error reply and the connection keeps being served; requests
that could not be parsed are counted in ``malformed_requests``. An unexpected exception while
answering (a bug) becomes an ``internal`` error reply, counted in ``internal_errors``.

One console per state folder: the server holds an exclusive ``flock`` on ``console.lock`` there for
the console's whole life, so two ``up`` racing past the socket probe cannot both run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..engine.console import Console
from ..engine.errors import ConsoleError
from ..engine.paths import socket_path
from .protocol import FOLLOWABLE, dispatch, follow, internal_error
from .wire import MAX_REQUEST_BYTES, encode, error

CLOSE_GRACE = 2.0  # seconds that requests in flight get to finish when the console stops
LOCK_NAME = "console.lock"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_private(folder: Path) -> None:
    """A socket folder shared with others (under the temp folder) must be ours alone."""
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise ConsoleError(f"the socket folder {folder} is not a folder")
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ConsoleError(
            f"the socket folder {folder} is not private (owner uid {info.st_uid}, mode "
            f"{stat.S_IMODE(info.st_mode):o}); it must be yours with mode 700"
        )


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
        self.internal_errors = 0
        self._lock_fd: int | None = None

    def start(self) -> None:
        """Take the console lock, bind the socket (refusing if another console runs) and serve."""
        lock_fd = self._take_lock()
        try:
            self._sock = self._bind()
        except BaseException:
            os.close(lock_fd)
            raise
        self._lock_fd = lock_fd
        self._thread = threading.Thread(
            target=self._accept_loop, name="lacrimosa-control", daemon=True
        )
        self._thread.start()

    def _take_lock(self) -> int:
        home = self.console.home
        try:
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConsoleError(f"cannot create the state folder {home}: {exc.strerror}") from None
        lock_path = home / LOCK_NAME
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConsoleError(f"cannot open {lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConsoleError(f"a console is already running here ({home})") from None
        except OSError as exc:
            os.close(fd)
            raise ConsoleError(f"cannot lock {lock_path}: {exc.strerror}") from None
        return fd

    def _bind(self) -> socket.socket:
        folder = self.path.parent
        try:
            if folder != self.console.home:  # the short fallback path under the temp folder
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                _check_private(folder)
            if self.path.exists() or self.path.is_symlink():
                if console_running(self.path):
                    raise ConsoleError(f"a console is already running here ({self.path})")
                self.path.unlink()  # left behind by a console that was killed
        except OSError as exc:
            raise ConsoleError(f"cannot prepare the socket {self.path}: {exc.strerror}") from None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old_umask = os.umask(0o177)  # the socket is created 0600: owner only, from the start
            try:
                sock.bind(str(self.path))
            finally:
                os.umask(old_umask)
            sock.listen(64)
        except OSError as exc:
            sock.close()
            raise ConsoleError(f"cannot listen on {self.path}: {exc.strerror or exc}") from None
        except BaseException:
            sock.close()
            raise
        return sock

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
        if self._lock_fd is not None:  # last: the next console may start from here on
            os.close(self._lock_fd)
            self._lock_fd = None

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
                        reply = error("invalid_request", "request too large")
                        self._count(reply)
                        conn.sendall(encode(reply))
                        continue
                    self._answer(conn, raw)
        except OSError:
            return  # the client went away
        finally:
            with self._lock:
                self._connections.pop(conn, None)

    def _answer(self, conn: socket.socket, raw: bytes) -> None:
        for reply in self._replies(conn, raw):
            try:
                data = encode(reply)
            except Exception as exc:  # a reply that cannot be written is a bug too
                reply = internal_error(exc)
                data = encode(reply)
            self._count(reply)
            conn.sendall(data)

    def _replies(self, conn: socket.socket, raw: bytes) -> Iterator[dict[str, Any]]:
        try:
            request: Any = json.loads(raw, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            yield error("invalid_request", f"malformed JSON: {exc}")
            return
        # dispatch and follow turn every failure into an error reply themselves.
        following = (
            isinstance(request, dict) and request.get("op") in FOLLOWABLE and request.get("follow")
        )
        if not following:
            yield dispatch(self.console, request)
            return

        def alive() -> bool:
            return not self._closing.is_set() and _peer_connected(conn)

        yield from follow(self.console, request, alive)

    def _count(self, reply: dict[str, Any]) -> None:
        if reply["ok"]:
            return
        code = reply["error"]["code"]
        with self._lock:
            if code == "invalid_request":
                self.malformed_requests += 1
            elif code == "internal":
                self.internal_errors += 1
