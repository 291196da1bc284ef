"""The control client: talks to a running console over its Unix socket.

Light by design (standard library only): every one-shot CLI call pays for its imports.

Deadlines: connecting waits at most ``connect_timeout`` for room in the socket's queue (a full
queue is ``Busy``, exit 6, not "no console"); a request waits at most ``timeout`` for its reply,
or the ``timeout`` given to ``call`` (the CLI gives start/stop/restart the process's
``action_timeout`` from ``ps`` plus a margin). A console that is ``busy`` (every connection slot
taken) or still ``starting`` is asked again, with a short backoff, for up to ``retry_for`` seconds.
Following a log has no read timeout after its first reply, but a follow the console cut off
(it died, or dropped a reader that did not keep up) raises :class:`ConsoleLost`, as does a
socket failure mid-request (closed, reset: exit 4). A reply that does not come within its
deadline raises :class:`TimedOut` (exit 5): the console is there, but stopped or overloaded.

Right after ``up``: a socket that is missing or refuses connections while the state folder's
``console.lock`` is held (``up`` takes it before it even imports the engine, and holds it until
the console exits) is a console still starting, not "no console": the client tries again, with a
short backoff, for up to ``retry_for`` seconds, then raises ``Starting`` (exit 6). A stale socket
(refusing connections) with the lock free is looked at again for ``STALE_GRACE`` seconds first:
a ``up`` started at the same moment may not have taken the lock yet.

Trust: the socket must be a socket owned by this user, and the process answering on it must run
as this user (``SO_PEERCRED``); otherwise nothing is sent and nothing it says is believed.
"""

from __future__ import annotations

import os
import stat
import sys
import time

# The C socket module under ``socket``: ``socket`` itself imports ``enum`` and ``selectors``, a few
# milliseconds of every one-shot call, for what this client does not use (``makefile``: see
# ``_Reader``; enum-typed families).
from _socket import AF_UNIX, SHUT_RDWR, SO_PEERCRED, SO_SNDTIMEO, SOCK_STREAM, SOL_SOCKET
from _socket import socket as Socket

from ..engine.errors import (
    Busy,
    ConsoleError,
    InvalidRequest,
    LacrimosaError,
    NoConsole,
    Starting,
    TimedOut,
    exit_code_for,
)
from ..engine.fastjson import loads
from ..engine.paths import LOCK_NAME, console_starting, socket_file
from .wire import encode

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

DEFAULT_TIMEOUT = 30.0  # seconds for a reply
CONNECT_TIMEOUT = 5.0  # seconds to wait for room in the console's accept queue
RETRY_FOR = 10.0  # seconds to keep asking a console that is busy or starting
# How long the console lets an action (start/stop/restart) take, when ``ps`` does not say (an
# older console); ``ps`` gives each process's ``action_timeout``: its stop_timeout and a margin.
DEFAULT_ACTION_TIMEOUT = 35.0
# Seconds a socket that refuses connections (left by a console that was killed) is looked at
# again before "no console": a console started at the same moment takes the lock soon.
STALE_GRACE = 0.5
_RETRY_CODES = ("busy", "starting")
_CHUNK = 1 << 16  # bytes asked of the socket at a time for reply lines
# C structs packed by hand, not with ``struct`` (two more modules, one a shared library, on every
# call): ``struct ucred`` is three ints, ``struct timeval`` two longs (as wide as a pointer on
# Linux).
_INT = 4
_LONG = 8 if sys.maxsize > 2**32 else 4


def _timeval(seconds: int, micros: int) -> bytes:
    return seconds.to_bytes(_LONG, sys.byteorder) + micros.to_bytes(_LONG, sys.byteorder)


class RemoteError(LacrimosaError):
    """An error reply from the console, carrying the protocol's error code."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.exit_code = exit_code_for(code)
        self.details = details or {}  # the error object as sent (a query's ``position``)


class ConsoleLost(NoConsole):
    """The connection to the console failed mid-request (closed, reset, cut off, ...)."""

    def __init__(self, exc: OSError | str) -> None:
        detail = exc if isinstance(exc, str) else exc.strerror or str(exc)
        super().__init__(f"lost the console: {detail}")


def _no_answer(sock: Socket) -> TimedOut:
    timeout = sock.gettimeout()
    within = f" within {timeout:g}s" if timeout else " in time"
    return TimedOut(f"the console did not answer{within} (stopped or overloaded?)")


def _check_socket(path: str) -> None:
    """Refuse a socket file another user could have put there (see the module docstring)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return  # connect() says "no console"
    except OSError as exc:
        raise NoConsole(f"cannot reach the console at {path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(info.st_mode):
        raise ConsoleError(f"refusing {path}: it is not a socket (remove it if it is yours)")
    if info.st_uid != os.getuid():
        raise ConsoleError(
            f"refusing {path}: it belongs to another user (uid {info.st_uid}), not to you"
        )


def _check_peer(sock: Socket, path: str) -> None:
    creds = sock.getsockopt(SOL_SOCKET, SO_PEERCRED, 3 * _INT)  # pid, uid, gid
    uid = int.from_bytes(creds[_INT : 2 * _INT], sys.byteorder)
    if uid != os.getuid():
        raise ConsoleError(f"refusing {path}: the process answering there runs as uid {uid}")


def _parent(path: str) -> str:
    """``Path(path).parent`` for an absolute, normalized ``path``."""
    return os.path.dirname(path) or "."


class _Reader:
    """What ``socket.makefile("rb")`` gave this client, on a ``_socket`` socket: reply lines
    (``readline``) and frames (``read``), through one buffer."""

    def __init__(self, sock: Socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def readline(self) -> bytes:
        """The next line, its newline included; what is left at end of stream; b"" after it."""
        buffer = self._buffer
        scanned = 0
        while True:
            end = buffer.find(b"\n", scanned)
            if end >= 0:
                line = bytes(buffer[: end + 1])
                del buffer[: end + 1]  # cheap: a bytearray drops its head without moving the rest
                return line
            scanned = len(buffer)
            chunk = self._sock.recv(_CHUNK)
            if not chunk:
                line = bytes(buffer)
                buffer.clear()
                return line
            buffer += chunk

    def read(self, size: int) -> bytes:
        """The next ``size`` bytes; fewer only at end of stream."""
        buffer = self._buffer
        if len(buffer) >= size:
            data = bytes(buffer[:size])
            del buffer[:size]
            return data
        whole = bytearray(size)
        have = len(buffer)
        whole[:have] = buffer
        buffer.clear()
        with memoryview(whole) as view:
            while have < size:
                got = self._sock.recv_into(view[have:])
                if not got:
                    break
                have += got
        return bytes(whole[:have]) if have < size else bytes(whole)

    def close(self) -> None:
        self._buffer = bytearray()


class ControlClient:
    """One connection to the console whose state folder is ``home`` (absolute and normalized,
    as a ``Path`` is: the console derives its socket's path from it the same way)."""

    def __init__(
        self,
        home: str | os.PathLike[str],
        timeout: float | None = DEFAULT_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        retry_for: float = RETRY_FOR,
    ) -> None:
        self.home = os.fspath(home)
        self.path = socket_file(self.home)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retry_for = retry_for
        self._sock, self._reader = self._connect()

    def _connect(self) -> tuple[Socket, _Reader]:
        """Connect, waiting (up to ``retry_for``) for a console that is starting."""
        now = time.monotonic()
        give_up = now + self.retry_for
        stale_until = now + STALE_GRACE
        delay = 0.02
        while True:
            try:
                return self._connect_once()
            except NoConsole:
                if not console_starting(self.home):
                    # A socket left by a console that was killed: one being started right now
                    # may not have taken the lock yet. Looked at again for a moment.
                    stale = os.path.exists(self.path)
                    if not stale or time.monotonic() + delay > stale_until:
                        raise
                if time.monotonic() + delay > give_up:
                    raise Starting(
                        f"a console is starting for {_parent(self.home)} (it holds "
                        f"{os.path.join(self.home, LOCK_NAME)}) but its socket did not answer within "
                        f"{self.retry_for:g}s; try again"
                    ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def _connect_once(self) -> tuple[Socket, _Reader]:
        path = self.path
        _check_socket(path)
        sock = Socket(AF_UNIX, SOCK_STREAM)
        try:
            # Blocking, bounded by SO_SNDTIMEO: with a Python timeout the socket would be
            # non-blocking, and a full accept queue would fail at once with EAGAIN.
            seconds = int(self.connect_timeout)
            micros = int((self.connect_timeout - seconds) * 1e6)
            sock.setsockopt(SOL_SOCKET, SO_SNDTIMEO, _timeval(seconds, micros))
            sock.connect(path)
            sock.setsockopt(SOL_SOCKET, SO_SNDTIMEO, _timeval(0, 0))
            _check_peer(sock, path)
            sock.settimeout(self.timeout)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise NoConsole(
                f"no console running for {_parent(self.home)} (looked for {path})"
            ) from None
        except (BlockingIOError, TimeoutError):
            sock.close()
            raise Busy(
                f"the console at {path} is busy: its connection queue stayed full for "
                f"{self.connect_timeout:g}s; try again"
            ) from None
        except OSError as exc:
            sock.close()
            raise NoConsole(f"cannot reach the console at {path}: {exc}") from None
        except BaseException:
            sock.close()
            raise
        return sock, _Reader(sock)

    def close(self) -> None:
        self._reader.close()
        self._sock.close()

    def interrupt(self) -> None:
        """Wake a thread blocked reading this connection (it sees the stream end), then close:
        closing alone does not wake a blocked ``recv`` on Linux."""
        try:
            self._sock.shutdown(SHUT_RDWR)
        except OSError:  # not connected any more: nothing is blocked on it
            self.close()
            return
        self.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, op: str, **args: Any) -> None:
        try:
            data = encode({"op": op, **args})
        except UnicodeEncodeError:  # argv held bytes that are not UTF-8 (surrogate escapes)
            raise InvalidRequest("arguments must be valid UTF-8 text") from None
        try:
            self._sock.sendall(data)
        except TimeoutError:  # the console takes no requests: it reads none
            raise _no_answer(self._sock) from None
        except OSError as exc:
            raise ConsoleLost(exc) from None

    def _readline(self) -> bytes:
        try:
            line: bytes = self._reader.readline()
        except TimeoutError:
            raise _no_answer(self._sock) from None
        except OSError as exc:
            raise ConsoleLost(exc) from None
        return line

    def receive(self) -> Any:
        """The next reply's result; an error reply is raised as RemoteError (code, exit code)."""
        raw = self._readline()
        if not raw:
            raise ConsoleLost("the console closed the connection")
        try:
            reply = loads(raw)
            ok = bool(reply.get("ok"))
        except (ValueError, AttributeError):
            raise ConsoleLost("the console sent a reply that is not JSON") from None
        if ok:
            return reply.get("result")
        err = reply.get("error") or {}
        code, message = err.get("code", "failed"), err.get("message", "request failed")
        raise RemoteError(code, message, err if isinstance(err, dict) else None)

    def call(self, op: str, timeout: float | None = None, **args: Any) -> Any:
        """Send one request and return its reply's result, waiting at most ``timeout`` (else
        the client's) for it; a busy or starting console is asked again for a while."""
        give_up = time.monotonic() + self.retry_for
        delay = 0.05
        while True:
            self._sock.settimeout(timeout if timeout is not None else self.timeout)
            try:
                try:
                    self.send(op, **args)
                except ConsoleLost as lost:
                    # A console that refused this connection (busy) closed it before the request
                    # went out: its reply may be waiting all the same.
                    try:
                        self.receive()
                    except RemoteError:
                        raise
                    except LacrimosaError:
                        pass
                    raise lost from None
                return self.receive()
            except LacrimosaError as exc:
                if exc.code not in _RETRY_CODES or time.monotonic() + delay > give_up:
                    raise
                closed = exc.code == "busy"
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
            if closed:  # the console closed this connection: make another
                self.close()
                self._sock, self._reader = self._connect()

    def wait_closed(self, timeout: float | None = None) -> None:
        """Block until the console hangs up (it does so last when it shuts down, once every
        process has stopped), for at most ``timeout`` seconds (None: however long it takes)."""
        self._sock.settimeout(timeout)
        while self._readline():
            pass

    def frames(self, op: str, **args: Any) -> Iterator[tuple[Any, bytes]]:
        """Send one request answered in frames (``logs`` with ``format``, see wire.py) and
        yield ``(header, payload bytes)`` per frame, then ``(last reply's result, b"")``. A
        console that does not know frames answers with one plain reply: that is the last."""
        result = self.call(op, **args)
        while isinstance(result, dict) and isinstance(result.get("frame"), int):
            size = result["frame"]
            try:
                payload: bytes = self._reader.read(size)
            except TimeoutError:
                raise _no_answer(self._sock) from None
            except OSError as exc:
                raise ConsoleLost(exc) from None
            if len(payload) != size:
                raise ConsoleLost("the console closed the connection mid-frame")
            yield result, payload
            result = self.receive()
        yield result, b""

    def stream(self, op: str, **args: Any) -> Iterator[Any]:
        """Send one request and yield every reply until the console says the stream ended.
        The first reply has the usual deadline; later ones none: a followed log may stay quiet
        for hours. A stream cut off without its end raises ConsoleLost."""
        yield self.call(op, **args)
        self._sock.settimeout(None)
        while True:
            result = self.receive()
            if isinstance(result, dict) and "end" in result:
                return
            yield result


def action_timeouts(ps: dict[str, Any]) -> dict[str, float]:
    """How long the console lets an action on each process take, from a ``ps`` reply."""
    return {
        p["name"]: float(p.get("action_timeout", DEFAULT_ACTION_TIMEOUT)) for p in ps["processes"]
    }
