"""The control server: the console's Unix socket (mode 0600), newline-delimited JSON.

One thread accepts; each connection gets a thread that answers requests in order until the client
hangs up. A malformed request gets an error reply and the connection keeps being served; requests
that could not be parsed are counted in ``malformed_requests``. An unexpected exception while
answering (a bug) becomes an ``internal`` error reply, counted in ``internal_errors``.

Bounds (observing costs the observed nothing):
- at most ``MAX_CONNECTIONS`` connections at once; one more gets a ``busy`` error reply and is
  closed (the client retries for a moment, then exits 6);
- a connection with no complete request for ``IDLE_TIMEOUT`` seconds is closed (a follow is not
  idle), and a request must be complete (its newline received) within ``REQUEST_TIMEOUT``
  seconds of its first byte, or it gets an ``invalid_request`` reply and the connection is closed:
  a client trickling a byte at a time cannot keep a connection slot (slowloris);
- a request is at most ``MAX_REQUEST_BYTES`` of JSON, its newline not counted; a longer one is
  skipped whole (within the same deadline) and refused with ``request too large``;
- replies are sent in pieces (see protocol.py) through a send buffer of ``SEND_BUFFER`` bytes; a
  reader that takes nothing for ``SEND_TIMEOUT`` seconds is dropped. So a connection costs the
  console at most about SEND_BUFFER + 2 * PIECE_BYTES + one request (MAX_REQUEST_BYTES), plus
  the log blocks its reply has yet to read (only those: a block it has passed is let go; those
  the store evicted meanwhile count as its "retired" bytes, and past their bound the reply lets
  go of them and reports their lines as ``lapped``: see protocol._LogReader)
  or, for ``events``, one chunk of EVENTS_CHUNK records (at most 64 * 4 KiB) and the seqs it
  selected (8 bytes an event, when filtered by node or stream);
- running out of file descriptors or threads does not end the accept loop: it says so once on
  stderr, counts it in ``status`` and goes on. Out of descriptors, it uses one it keeps in
  reserve: closes it, accepts the waiting connection, replies ``busy`` and closes it, and opens
  the reserve again, so queued clients hear ``busy`` at once (and retry, then exit 6) instead of
  waiting for a reply until their deadline; without a reserve it backs off (up to
  ``ACCEPT_BACKOFF_MAX``) until descriptors are freed.

One console per state folder: the server holds an exclusive ``flock`` on ``console.lock`` there for
the console's whole life, from before it binds the socket, so two ``up`` racing past the socket
probe cannot both run, and a client that finds no socket (or a stale one refusing connections)
while the lock is held knows a console is starting (client.py). The state
folder must be the user's own with no group/other write access (others could swap the socket).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..engine.audit import Actor
from ..engine.console import Console
from ..engine.errors import ConsoleError
from ..engine.paths import lock_console, socket_path
from .protocol import ReplyState, internal_error, replies
from .wire import MAX_REQUEST_BYTES, encode, error

CLOSE_GRACE = 2.0  # seconds that requests in flight get to finish when the console stops
MAX_CONNECTIONS = 64
IDLE_TIMEOUT = 60.0  # seconds without a complete request before a connection is closed
REQUEST_TIMEOUT = 10.0  # seconds from a request's first byte to its newline
RECV_BYTES = 64 << 10  # read from a connection at a time
SEND_TIMEOUT = 10.0  # seconds a reader may take no bytes at all before it is dropped
SEND_BUFFER = 256 << 10  # bytes of the kernel's send buffer per connection
# A reply waiting to send wakes this often to let go of evicted log blocks when the store's
# retired bytes are over their bound (protocol.ReplyState).
SEND_SLICE = 0.25
LISTEN_BACKLOG = 1024  # connections waiting to be accepted (the kernel may cap it: somaxconn)
ACCEPT_BACKOFF_MIN = 0.01
ACCEPT_BACKOFF_MAX = 0.5
_NO_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def _open_spare() -> int | None:
    """A descriptor held in reserve (see ControlServer._refuse_with_spare), None if none is
    left."""
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


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


_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def _peer(conn: socket.socket) -> Actor:
    """Who is at the other end, as the kernel says (SO_PEERCRED), for the audit log. The socket
    is the owner's alone (mode 0600), so this is the console's user, or root."""
    try:
        _, uid, _ = _UCRED.unpack(
            conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        )
    except OSError:
        return Actor("cli")
    return Actor("cli", uid)


def _peer_connected(conn: socket.socket) -> bool:
    """False once the client has hung up (an orderly close reads as zero bytes)."""
    timeout = conn.gettimeout()
    conn.settimeout(0)  # with a timeout, Python would wait for data first, MSG_DONTWAIT or not
    try:
        return conn.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        conn.settimeout(timeout)


_TOO_LARGE = b"\0too large"  # what _read_request returns for a line over MAX_REQUEST_BYTES


class _Dropped(Exception):
    """A connection is closed without a reply: idle, or a reader that stopped reading."""


class ControlServer:
    def __init__(
        self,
        console: Console,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
        send_timeout: float = SEND_TIMEOUT,
        request_timeout: float = REQUEST_TIMEOUT,
        lock_fd: int | None = None,
    ) -> None:
        self.console = console
        self.path = socket_path(console.home)
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.send_timeout = send_timeout
        self.request_timeout = request_timeout
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._lock = threading.Lock()
        self.malformed_requests = 0
        self.internal_errors = 0
        self.refused_busy = 0
        self.idle_closed = 0
        self.slow_requests = 0
        self.slow_dropped = 0
        self.accept_failures: dict[str, int] = {}  # "EMFILE", "thread", ... → how many times
        self._lock_fd: int | None = None
        self._early_lock_fd = lock_fd  # the console lock, if ``up`` took it already
        # Kept open to be freed when accept() fails for want of descriptors (_refuse_with_spare).
        self._spare_fd: int | None = None

    def stats(self) -> dict[str, Any]:
        """The server's counters, for ``status``."""
        with self._lock:
            return {
                "connections": len(self._connections),
                "max_connections": self.max_connections,
                "refused_busy": self.refused_busy,
                "idle_closed": self.idle_closed,
                "slow_requests": self.slow_requests,
                "slow_dropped": self.slow_dropped,
                "malformed_requests": self.malformed_requests,
                "internal_errors": self.internal_errors,
                "accept_failures": dict(self.accept_failures),
            }

    def start(self) -> None:
        """Take the console lock, bind the socket (refusing if another console runs) and serve."""
        lock_fd = self._early_lock_fd
        if lock_fd is None:
            lock_fd = lock_console(self.console.home)
        try:
            self._sock = self._bind()
        except BaseException:
            os.close(lock_fd)
            raise
        self._lock_fd = lock_fd
        self._spare_fd = _open_spare()
        self._thread = threading.Thread(
            target=self._accept_loop, name="lacrimosa-control", daemon=True
        )
        self._thread.start()

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
            sock.listen(LISTEN_BACKLOG)
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
        if self._spare_fd is not None:
            os.close(self._spare_fd)
            self._spare_fd = None
        if self._lock_fd is not None:  # last: the next console may start from here on
            os.close(self._lock_fd)
            self._lock_fd = None

    def _accept_loop(self) -> None:
        assert self._sock is not None
        backoff = ACCEPT_BACKOFF_MIN
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError as exc:
                if self._closing.is_set():
                    return
                if exc.errno in (errno.EMFILE, errno.ENFILE) and self._refuse_with_spare():
                    name = errno.errorcode.get(exc.errno or 0, str(exc))
                    self._accept_failed(name, f"accept failed ({exc.strerror or exc})")
                    continue
                # Out of descriptors (or kernel memory): the connection stays queued; wait for
                # some to be freed rather than spin, or end, as this loop once did.
                name = errno.errorcode.get(exc.errno or 0, str(exc))
                self._accept_failed(name, f"accept failed ({exc.strerror or exc})")
                self._closing.wait(backoff)
                backoff = min(backoff * 2, ACCEPT_BACKOFF_MAX)
                continue
            backoff = ACCEPT_BACKOFF_MIN
            with self._lock:
                full = len(self._connections) >= self.max_connections
                if full:
                    self.refused_busy += 1
            if full:
                self._refuse(conn, f"the console serves {self.max_connections} connections")
                continue
            thread = threading.Thread(
                target=self._serve, args=(conn,), name="lacrimosa-control-conn", daemon=True
            )
            with self._lock:
                self._connections[conn] = thread
            try:
                thread.start()
            except RuntimeError as exc:  # can't start new thread (a pids cgroup, a ulimit)
                with self._lock:
                    self._connections.pop(conn, None)
                    self.refused_busy += 1
                self._refuse(conn, "the console cannot start another thread")
                self._accept_failed("thread", f"cannot start a thread ({exc})")
                self._closing.wait(backoff)
                backoff = min(backoff * 2, ACCEPT_BACKOFF_MAX)

    def _refuse_with_spare(self) -> bool:
        """Out of descriptors with a connection waiting: free the spare descriptor, accept the
        connection with it, tell it ``busy`` and close it, then take the spare back. So clients
        queued while the console is out of descriptors hear ``busy`` at once (and retry) rather
        than wait for a reply that never comes. False when there is no spare to use."""
        assert self._sock is not None
        if self._spare_fd is None:
            self._spare_fd = _open_spare()
            if self._spare_fd is None:
                return False
        os.close(self._spare_fd)
        self._spare_fd = None
        try:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return False  # taken by another thread meanwhile: back off as usual
            with self._lock:
                self.refused_busy += 1
            self._refuse(conn, "the console is out of file descriptors")
            return True
        finally:
            self._spare_fd = _open_spare()

    def _accept_failed(self, name: str, what: str) -> None:
        with self._lock:
            first = name not in self.accept_failures
            self.accept_failures[name] = self.accept_failures.get(name, 0) + 1
        if first:  # once per kind; status counts every time
            print(
                f"lacrimosa: control socket: {what}; backing off and still accepting "
                "(see `lacrimosa status`)",
                file=sys.stderr,
                flush=True,
            )

    @staticmethod
    def _refuse(conn: socket.socket, why: str, code: str = "busy", close: bool = True) -> None:
        """Tell a connection why it is refused (``busy``: try again; if its buffer takes the reply
        now) and close it (``close``; else the caller does)."""
        conn.setblocking(False)
        message = f"{why}; try again in a moment" if code == "busy" else why
        with contextlib.suppress(OSError):
            conn.send(encode(error(code, message)))
        if close:
            conn.close()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                with contextlib.suppress(OSError):
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
                pending = bytearray()  # bytes received past the last request (pipelined)
                while not self._closing.is_set():
                    raw = self._read_request(conn, pending)
                    if raw is None:
                        return
                    conn.settimeout(self.send_timeout)
                    if raw is _TOO_LARGE:
                        reply = error("invalid_request", "request too large")
                        self._count(reply)
                        self._send(conn, encode(reply))
                        continue
                    self._answer(conn, raw)
        except _Dropped:
            return
        except OSError:
            return  # the client went away
        finally:
            with self._lock:
                self._connections.pop(conn, None)

    def _read_request(self, conn: socket.socket, pending: bytearray) -> bytes | None:
        """The next request line (without its newline), ``_TOO_LARGE``, or None when the client
        hung up. Raises _Dropped when the connection had no complete request for
        ``idle_timeout`` seconds, or a request was begun and not ended within
        ``request_timeout``: deadlines for the whole line, not per read."""
        now = time.monotonic()
        idle_deadline = now + self.idle_timeout
        request_deadline = now + self.request_timeout if pending else None
        scanned = 0  # bytes of ``pending`` known to hold no newline
        skipped = False  # the line is longer than allowed: its bytes are being thrown away
        while True:
            newline = pending.find(b"\n", scanned)
            if newline >= 0:
                line = bytes(pending[:newline])
                del pending[: newline + 1]
                return _TOO_LARGE if skipped or len(line) > MAX_REQUEST_BYTES else line
            if len(pending) > MAX_REQUEST_BYTES:
                skipped = True
                pending.clear()
            scanned = len(pending)
            deadline = idle_deadline if request_deadline is None else request_deadline
            deadline = min(deadline, idle_deadline)
            left = deadline - time.monotonic()
            if left <= 0 or self._closing.is_set():
                if self._closing.is_set():
                    return None
                if request_deadline is not None and request_deadline <= idle_deadline:
                    with self._lock:
                        self.slow_requests += 1
                    self._refuse(
                        conn,
                        f"request not complete within {self.request_timeout:g}s of its first byte",
                        code="invalid_request",
                        close=False,
                    )
                else:
                    with self._lock:
                        self.idle_closed += 1
                raise _Dropped
            conn.settimeout(min(left, 1.0))  # wakes to notice the console closing
            try:
                chunk = conn.recv(RECV_BYTES)
            except TimeoutError:
                continue
            if not chunk:  # the client hung up; a last line without its newline still counts
                if skipped or len(pending) > MAX_REQUEST_BYTES:
                    return _TOO_LARGE
                if not pending:
                    return None
                line = bytes(pending)
                pending.clear()
                return line
            if request_deadline is None:
                request_deadline = time.monotonic() + self.request_timeout
            pending += chunk

    def _send(self, conn: socket.socket, data: bytes, state: ReplyState | None = None) -> None:
        """Send ``data``, dropping a reader that takes no bytes for ``send_timeout`` seconds.
        Waits in slices of SEND_SLICE, between which the reply in progress (``state``) lets go
        of log blocks the store evicted, when it must (see protocol._LogReader)."""
        view = memoryview(data)
        stalled_since = time.monotonic()
        while view:
            conn.settimeout(min(SEND_SLICE, self.send_timeout))
            try:
                sent = conn.send(view)
            except TimeoutError:
                if state is not None:
                    state.let_go()
                if time.monotonic() - stalled_since >= self.send_timeout:
                    with self._lock:
                        self.slow_dropped += 1
                    raise _Dropped from None
                continue
            view = view[sent:]
            stalled_since = time.monotonic()

    def _answer(self, conn: socket.socket, raw: bytes) -> None:
        try:
            request: Any = json.loads(raw, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            reply = error("invalid_request", f"malformed JSON: {exc}")
            self._count(reply)
            self._send(conn, encode(reply))
            return

        def alive() -> bool:
            return not self._closing.is_set() and _peer_connected(conn)

        # replies() turns every failure into an error reply, except one in the middle of a line.
        in_line = False
        state = ReplyState()
        pieces = replies(self.console, request, alive, state, _peer(conn))
        try:
            for piece in pieces:
                if isinstance(piece, bytes):
                    in_line = not piece.endswith(b"\n")
                    self._send(conn, piece, state)
                    continue
                try:
                    data = encode(piece)
                except Exception as exc:  # a reply that cannot be written is a bug too
                    piece = internal_error(exc)
                    data = encode(piece)
                self._count(piece)
                self._send(conn, data)
        except Exception as exc:
            if isinstance(exc, (_Dropped, OSError)):
                raise
            self._count(internal_error(exc))
            if in_line:  # half a line went out: it cannot be ended, so the connection is
                raise _Dropped from None
            self._send(conn, encode(internal_error(exc)))
        finally:
            pieces.close()  # the snapshot a reply read goes now, not whenever

    def _count(self, reply: dict[str, Any]) -> None:
        if reply["ok"]:
            return
        code = reply["error"]["code"]
        with self._lock:
            if code == "invalid_request":
                self.malformed_requests += 1
            elif code == "internal":
                self.internal_errors += 1
