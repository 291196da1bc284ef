"""The UDP receive path of the event sequencer: one socket, pluggable receive backends.

Every backend fills the same staging area, allocated once and reused: ``staging`` is a
``(batch, stride)`` uint8 array, and one :meth:`Receiver.receive` call puts up to ``batch`` ready
datagrams in rows ``0..k-1``, their lengths in ``lengths[:k]`` and whether each was cut at
``stride`` in ``truncated[:k]``. A length is the datagram's full length even when its row holds only
``stride`` bytes of it (MSG_TRUNC semantics), so the sequencer can report what it refused. Bytes
of a row past its datagram's length are left over from earlier datagrams.

Backends:

- ``recvmmsg``: one libc ``recvmmsg`` call (through ctypes) per batch, over ``mmsghdr``/``iovec``
  arrays built once with iovec ``i`` pointing at staging row ``i``; lengths are read out of the
  ``mmsghdr`` array as one strided numpy view, with no Python loop per datagram. The default.
- ``recv_into``: ``socket.recv_into`` per datagram into pre-made row views; for a libc without
  ``recvmmsg``.
- ``io_uring``: the ``liburing`` package (the ``io-uring`` extra), a chain of linked, non-blocking
  ``recv`` requests per call. Only on request, and only after :func:`probe_io_uring` has done a
  real receive with it in a child process: the current liburing wheel is built with AVX-512
  instructions and kills the process with SIGILL on CPUs without them, which must never take the
  console down. It is not faster here, since each request and completion costs Python calls.

Loss happens in the kernel's socket buffer, not here: :func:`open_udp_socket` asks for a large
buffer (SO_RCVBUFFORCE, then SO_RCVBUF capped by ``net.core.rmem_max``) and :func:`kernel_drops`
reads the kernel's drop counter for the socket.

A receiver is used by one thread at a time (the sequencer hands each one from its receive thread
to its ingest thread and back). This module imports only the standard library and numpy (and
liburing, lazily, for that backend), so the probe child can load it on its own from its file.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import importlib.util
import math
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

DEFAULT_BATCH = 512  # datagrams per receive call
DEFAULT_STRIDE = 4096  # bytes per staging row = the largest event accepted; longer ones are cut
DEFAULT_RCVBUF = 64 << 20  # requested kernel receive buffer

BACKENDS = ("auto", "recvmmsg", "recv_into", "io_uring")

# Linux's value on every architecture that uses the generic socket options (x86, arm, riscv);
# the socket module does not export it.
_SO_RCVBUFFORCE: int = getattr(socket, "SO_RCVBUFFORCE", 33)
_INT_MAX = (1 << 31) - 1
# MSG_TRUNC as a receive *flag* makes UDP return the datagram's real length, not what was copied.
# Plain ints, not the socket module's IntFlag members: numpy probes an enum member for array
# attributes through the enum's slow __getattr__ (a ufunc call with one took 3.1 us, with an int
# 1.7 us, in the receive thread's hold of the GIL after every batch).
_MSG_TRUNC = int(socket.MSG_TRUNC)
_RECV_FLAGS = int(socket.MSG_DONTWAIT | socket.MSG_TRUNC)
_WOULD_BLOCK = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)


@dataclass(frozen=True, slots=True)
class SocketInfo:
    """What :func:`open_udp_socket` got from the kernel."""

    address: tuple[str, int]  # the bound address (the port resolved if 0 was asked)
    rcvbuf: int  # effective SO_RCVBUF as the kernel reports it (it doubles what was asked)
    forced: bool  # SO_RCVBUFFORCE worked (CAP_NET_ADMIN); else SO_RCVBUF, capped by rmem_max


def open_udp_socket(
    host: str, port: int, rcvbuf: int = DEFAULT_RCVBUF
) -> tuple[socket.socket, SocketInfo]:
    """A non-blocking UDP socket bound to ``host:port`` (IPv4 or IPv6, by what ``host`` is).

    The receive buffer is set with SO_RCVBUFFORCE, which ignores ``net.core.rmem_max`` but needs
    CAP_NET_ADMIN, and otherwise with SO_RCVBUF. Raises OSError with a message naming the address.
    """
    if rcvbuf <= 0:
        raise ValueError(f"rcvbuf must be positive, not {rcvbuf}")
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        raise OSError(exc.errno, f"cannot resolve UDP address {host!r}: {exc.strerror}") from exc
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        forced = _set_rcvbuf(sock, min(rcvbuf, _INT_MAX))
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot bind UDP socket to {host}:{port}: {exc.strerror}"
            ) from exc
        info = socket_info(sock, forced)
    except BaseException:
        sock.close()
        raise
    return sock, info


def socket_info(sock: socket.socket, forced: bool | None = None) -> SocketInfo:
    """What the kernel says of a bound socket (one opened by another process included).

    ``forced`` unknown: whether the granted buffer exceeds ``net.core.rmem_max`` tells."""
    bound = sock.getsockname()
    rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    if forced is None:
        try:
            with open("/proc/sys/net/core/rmem_max", encoding="ascii") as limit:
                forced = rcvbuf > 2 * int(limit.read())
        except (OSError, ValueError):
            forced = False
    return SocketInfo(address=(str(bound[0]), int(bound[1])), rcvbuf=rcvbuf, forced=forced)


def _set_rcvbuf(sock: socket.socket, size: int) -> bool:
    """Ask for ``size`` bytes of receive buffer; True if the forced option worked."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size)
        return True
    except OSError as exc:  # EPERM without CAP_NET_ADMIN; ENOPROTOOPT off Linux
        if exc.errno not in (errno.EPERM, errno.EACCES, errno.ENOPROTOOPT, errno.EINVAL):
            raise
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return False


def kernel_drops(sock: socket.socket) -> int | None:
    """The kernel's count of datagrams dropped for this socket (a full buffer, mostly).

    Found by the socket's inode in /proc/net/udp and /proc/net/udp6 (the ``drops`` column);
    None if the socket is closed or not listed there.
    """
    try:
        token = str(os.fstat(sock.fileno()).st_ino)
    except (OSError, ValueError):
        return None
    needle = f" {token} "
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table, encoding="ascii") as stream:
                lines = stream.readlines()
        except OSError:
            continue
        for line in lines[1:]:
            if needle not in line:  # cheap filter: most lines are other sockets
                continue
            # sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
            fields = line.split()
            if len(fields) >= 13 and fields[9] == token:
                return int(fields[12])
    return None


class Receiver:
    """Receives ready datagrams into a staging area allocated once (see the module docstring).

    The receiver owns the socket from then on: it makes it non-blocking, and :meth:`close`
    closes it (closing the socket again afterwards is harmless).
    """

    name = "receiver"

    def __init__(self, sock: socket.socket, batch: int, stride: int) -> None:
        if batch < 1:
            raise ValueError(f"batch must be at least 1, not {batch}")
        if stride < 1:
            raise ValueError(f"stride must be at least 1, not {stride}")
        # A socket with a timeout would make recv_into wait; receive() must never block.
        sock.setblocking(False)
        self.sock = sock
        self.batch = batch
        self.stride = stride
        self.staging: npt.NDArray[np.uint8] = np.zeros((batch, stride), dtype=np.uint8)
        self.lengths: npt.NDArray[np.int64] = np.zeros(batch, dtype=np.int64)
        self.truncated: npt.NDArray[np.bool_] = np.zeros(batch, dtype=np.bool_)
        self._poll = select.poll()
        self._poll_fd = sock.fileno()
        self._poll.register(self._poll_fd, select.POLLIN)
        self._deferred: OSError | None = None  # see _defer_error

    def receive(self) -> int:
        """Receive up to ``batch`` ready datagrams into rows ``0..k-1``; return k (0: none ready).

        Never blocks. Raises OSError for a socket error other than "nothing ready"; one met after
        some datagrams of the batch were received may be raised by the next call instead.
        """
        raise NotImplementedError

    def _raise_deferred(self) -> None:
        """Raise the error that a previous call put off, if there is one (once)."""
        if self._deferred is not None:
            deferred, self._deferred = self._deferred, None
            raise deferred

    def _defer_error(self, error: OSError, count: int) -> None:
        """``error`` ended a batch after ``count`` datagrams: raise it now if there are none.

        Otherwise keep it for the next call: the datagrams already received are good and are
        handed out first.
        """
        if count == 0:
            raise error
        self._deferred = error

    def wait(self, timeout: float) -> bool:
        """Block until a datagram is ready or ``timeout`` seconds pass; True if one is ready."""
        # poll() takes an int of milliseconds: a day bounds it (and makes inf usable).
        milliseconds = math.ceil(min(timeout, 86400.0) * 1000) if timeout > 0 else 0
        return bool(self._poll.poll(milliseconds))

    def close(self) -> None:
        """Release the backend's resources and close the socket."""
        with contextlib.suppress(KeyError):  # closed twice
            self._poll.unregister(self._poll_fd)
        self.sock.close()


# ---- recvmmsg -------------------------------------------------------------------------------


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


def _numpy_layout(
    struct: type[ctypes.Structure], fields: dict[str, tuple[int, Any]]
) -> np.dtype[Any]:
    """A numpy dtype with C's layout of ``struct``, naming only ``fields`` (offset, ctype)."""
    return np.dtype(
        {
            "names": list(fields),
            "formats": [np.dtype(ctype) for _, ctype in fields.values()],
            "offsets": [offset for offset, _ in fields.values()],
            "itemsize": ctypes.sizeof(struct),
        }
    )


# Built from the ctypes structures so the offsets are C's, whatever the platform's padding.
_IOVEC_DTYPE = _numpy_layout(
    _Iovec,
    {
        "base": (_Iovec.iov_base.offset, ctypes.c_size_t),
        "len": (_Iovec.iov_len.offset, ctypes.c_size_t),
    },
)
_MMSGHDR_DTYPE = _numpy_layout(
    _Mmsghdr,
    {
        "iov": (_Msghdr.msg_iov.offset, ctypes.c_size_t),
        "iovlen": (_Msghdr.msg_iovlen.offset, ctypes.c_size_t),
        "flags": (_Msghdr.msg_flags.offset, ctypes.c_int),
        "len": (_Mmsghdr.msg_len.offset, ctypes.c_uint),
    },
)


def _load_recvmmsg() -> Any:
    try:
        # Indexing makes a function object of our own: setting argtypes on the attribute would
        # change it for every other user of CDLL(None) in the process.
        func = ctypes.CDLL(None, use_errno=True)["recvmmsg"]
    except (AttributeError, OSError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    func.restype = ctypes.c_int
    return func


_recvmmsg = _load_recvmmsg()


def have_recvmmsg() -> bool:
    """Whether the C library has ``recvmmsg`` (glibc and musl on Linux do)."""
    return _recvmmsg is not None


class RecvmmsgReceiver(Receiver):
    """One ``recvmmsg`` system call per batch; lengths read out with numpy."""

    name = "recvmmsg"

    def __init__(
        self, sock: socket.socket, batch: int = DEFAULT_BATCH, stride: int = DEFAULT_STRIDE
    ) -> None:
        if _recvmmsg is None:
            raise OSError(errno.ENOSYS, "this C library has no recvmmsg")
        super().__init__(sock, batch, stride)
        self._iovecs = np.zeros(batch, dtype=_IOVEC_DTYPE)
        self._iovecs["base"] = self.staging.ctypes.data + stride * np.arange(batch, dtype=np.uint64)
        self._iovecs["len"] = stride
        self._msgs = np.zeros(batch, dtype=_MMSGHDR_DTYPE)
        self._msgs["iov"] = self._iovecs.ctypes.data + _IOVEC_DTYPE.itemsize * np.arange(
            batch, dtype=np.uint64
        )
        self._msgs["iovlen"] = 1
        # Field views of the array the kernel writes into: strided, no copy.
        self._msg_len = self._msgs["len"]
        self._msg_flags = self._msgs["flags"]
        self._flag_bits = np.zeros(batch, dtype=self._msg_flags.dtype)
        # Everything the hot call needs, resolved once: ctypes converts plain ints cheaply.
        self._fd = sock.fileno()
        self._msgs_address = self._msgs.ctypes.data

    def receive(self) -> int:
        count: int = _recvmmsg(self._fd, self._msgs_address, self.batch, _RECV_FLAGS, None)
        if count <= 0:
            if count == 0:
                return 0
            code = ctypes.get_errno()
            if code in _WOULD_BLOCK:
                return 0
            raise OSError(code, f"recvmmsg: {os.strerror(code)}")
        np.copyto(self.lengths[:count], self._msg_len[:count])
        # The kernel's own word on truncation, though lengths > stride says the same.
        np.bitwise_and(self._msg_flags[:count], _MSG_TRUNC, out=self._flag_bits[:count])
        np.not_equal(self._flag_bits[:count], 0, out=self.truncated[:count])
        return count

    def close(self) -> None:
        self._fd = -1  # a late receive() fails with EBADF rather than reading another file
        super().close()


# ---- recv_into ------------------------------------------------------------------------------


class RecvIntoReceiver(Receiver):
    """``socket.recv_into`` per datagram, into row views made once."""

    name = "recv_into"

    def __init__(
        self, sock: socket.socket, batch: int = DEFAULT_BATCH, stride: int = DEFAULT_STRIDE
    ) -> None:
        super().__init__(sock, batch, stride)
        self._rows = [memoryview(row) for row in self.staging]
        self._length_slots = self.lengths.data  # item assignment is cheaper than numpy's

    def receive(self) -> int:
        self._raise_deferred()
        recv_into = self.sock.recv_into
        stride = self.stride
        slots = self._length_slots
        count = 0
        try:
            for row in self._rows:
                slots[count] = recv_into(row, stride, _RECV_FLAGS)
                count += 1
        except BlockingIOError:
            pass  # nothing more ready: the normal end of a batch
        except OSError as exc:
            self._defer_error(exc, count)
        np.greater(self.lengths[:count], stride, out=self.truncated[:count])
        return count


# ---- io_uring -------------------------------------------------------------------------------

_IO_URING_MIN_CHAIN = 16


class IoUringReceiver(Receiver):
    """A chain of linked non-blocking ``recv`` requests through liburing, per call.

    Each request carries MSG_DONTWAIT, so it completes at once with a datagram or -EAGAIN, and
    the requests are linked, so the first -EAGAIN cancels the rest: the datagrams land in rows
    0..k-1 in arrival order and nothing is left in flight between calls (the kernel never writes
    a row the caller is reading). liburing's ``prep_recv`` takes only a ``bytearray``, so each row
    has one that the kernel fills, copied into ``staging`` afterwards. The chain length follows
    the traffic (twice the last count, at least 16), so an idle call does not prepare a whole
    batch of requests only to cancel them; a poll first skips the ring when nothing is ready.

    Use only after :func:`probe_io_uring` passed: importing liburing can kill the process.
    """

    name = "io_uring"

    def __init__(
        self, sock: socket.socket, batch: int = DEFAULT_BATCH, stride: int = DEFAULT_STRIDE
    ) -> None:
        super().__init__(sock, batch, stride)
        import liburing  # only here: see the class docstring

        self._uring: Any = liburing
        self._ring: Any = liburing.Ring()
        self._cqe: Any = liburing.Cqe()
        result = liburing.io_uring_queue_init(batch, self._ring)
        if result is not None and result < 0:
            raise OSError(-result, f"io_uring_queue_init: {os.strerror(-result)}")
        self._ring_open = True
        self._buffers = [bytearray(stride) for _ in range(batch)]
        self._sources = [memoryview(buffer) for buffer in self._buffers]
        self._rows = [memoryview(row) for row in self.staging]
        self._length_slots = self.lengths.data
        self._chain = min(batch, _IO_URING_MIN_CHAIN)
        self._fd = sock.fileno()

    def receive(self) -> int:
        self._raise_deferred()
        if not self._ring_open:
            raise OSError(errno.EBADF, "io_uring receiver is closed")
        if not self._poll.poll(0):
            return 0
        uring, ring, fd, buffers = self._uring, self._ring, self._fd, self._buffers
        link = uring.IOSQE_IO_LINK
        chain = self._chain
        for index in range(chain):
            sqe = uring.io_uring_get_sqe(ring)
            uring.io_uring_prep_recv(sqe, fd, buffers[index], _RECV_FLAGS)
            uring.io_uring_sqe_set_data64(sqe, index)
            if index < chain - 1:
                sqe.flags = link
        # MSG_DONTWAIT: every request completes during the submit, so this does not wait.
        uring.io_uring_submit_and_wait(ring, chain)
        uring.io_uring_peek_cqe(ring, self._cqe)
        ready = int(uring.io_uring_cq_ready(ring))
        count = chain  # lowered to the first request that got no datagram
        error: OSError | None = None
        slots = self._length_slots
        for position in range(ready):
            completion = self._cqe[position]
            index = int(completion.user_data)
            if index >= count:
                continue  # after the chain broke: cancelled
            try:
                slots[index] = completion.res  # liburing raises OSError for a negative result
            except OSError as exc:
                count = index
                if exc.errno not in (errno.EAGAIN, errno.ECANCELED, errno.EINTR):
                    error = exc
        uring.io_uring_cq_advance(ring, ready)
        stride = self.stride
        for index in range(count):
            size = min(int(self.lengths[index]), stride)
            self._rows[index][:size] = self._sources[index][:size]
        np.greater(self.lengths[:count], stride, out=self.truncated[:count])
        self._chain = min(self.batch, max(_IO_URING_MIN_CHAIN, 2 * count))
        if error is not None:
            self._defer_error(error, count)
        return count

    def close(self) -> None:
        if self._ring_open:
            self._ring_open = False
            self._uring.io_uring_queue_exit(self._ring)
        super().close()


# The probe's child runs this: it loads this file on its own (not the engine package, so nothing
# else is imported) and makes a real receive through io_uring. No core file if it crashes.
_PROBE_CHILD = """
import importlib.util, resource, sys
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
if sys.argv[2]:
    sys.path.insert(0, sys.argv[2])
spec = importlib.util.spec_from_file_location("_lacrimosa_udp_probe", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
module._io_uring_self_test()
print("ok", flush=True)
"""

_probe_lock = threading.Lock()
_probe_result: tuple[bool, str] | None = None


def probe_io_uring(timeout: float = 10.0) -> tuple[bool, str]:
    """Whether the io_uring backend works here: (ok, reason). Never raises; cached per process.

    A child process (``sys.executable``) imports liburing and receives a few datagrams through
    :class:`IoUringReceiver` on 127.0.0.1; if liburing is missing, the kernel refuses io_uring,
    or the child dies (SIGILL from the AVX-512 build on an older CPU), the reason says so.
    """
    global _probe_result
    with _probe_lock:
        if _probe_result is None:
            _probe_result = _probe_io_uring_uncached(timeout)
        return _probe_result


def _probe_io_uring_uncached(timeout: float) -> tuple[bool, str]:
    try:
        spec = importlib.util.find_spec("liburing")  # finds it without running its code
    except (ImportError, ValueError) as exc:
        return False, f"liburing cannot be found: {exc}"
    if spec is None or spec.origin is None:
        return False, "liburing is not installed - the io-uring extra"
    # Where the parent found it, in case the child's sys.path differs (PYTHONPATH set at run time).
    search_root = str(Path(spec.origin).parent.parent)
    return _run_probe_child(_PROBE_CHILD, [str(Path(__file__).resolve()), search_root], timeout)


def _run_probe_child(code: str, args: list[str], timeout: float) -> tuple[bool, str]:
    """Run ``code`` in a child interpreter; ok if it printed "ok" and exited 0. Never raises."""
    if not sys.executable:
        return False, "cannot start the liburing probe: no Python executable known"
    started = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, "-c", code, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:  # run() has killed and reaped the child
        return False, f"liburing probe did not finish within {timeout:g}s"
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"cannot start the liburing probe: {exc}"
    took = time.monotonic() - started
    if result.returncode < 0:
        try:
            name = signal.Signals(-result.returncode).name
        except ValueError:
            name = f"signal {-result.returncode}"
        hint = " (the liburing build needs AVX-512)" if name == "SIGILL" else ""
        return False, f"liburing probe died with {name}{hint}"
    if result.returncode != 0 or result.stdout.strip() != "ok":
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else f"exit status {result.returncode}"
        return False, f"liburing probe failed: {detail}"
    return True, f"liburing probe received through io_uring ({took:.2f}s)"


def _io_uring_self_test() -> None:
    """What the probe's child runs: a real receive through :class:`IoUringReceiver`."""
    sizes = [0, 5, 16, 17, 40]
    receiver = IoUringReceiver(_loopback_socket(), batch=8, stride=16)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if receiver.receive() != 0:
            raise RuntimeError("receive() on an empty socket returned datagrams")
        address = receiver.sock.getsockname()
        for size in sizes:
            sender.sendto(bytes(range(size)), address)
        got: list[tuple[int, bool, bytes]] = []
        deadline = time.monotonic() + 5.0
        while len(got) < len(sizes) and time.monotonic() < deadline:
            receiver.wait(0.1)
            for row in range(receiver.receive()):
                length = int(receiver.lengths[row])
                data = receiver.staging[row, : min(length, 16)].tobytes()
                got.append((length, bool(receiver.truncated[row]), data))
        want = [(size, size > 16, bytes(range(min(size, 16)))) for size in sizes]
        if got != want:
            raise RuntimeError(f"io_uring receive gave {got!r}, not {want!r}")
    finally:
        sender.close()
        receiver.close()


def _loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


# ---- choosing a backend -----------------------------------------------------------------------


def make_receiver(
    sock: socket.socket,
    backend: str = "auto",
    batch: int = DEFAULT_BATCH,
    stride: int = DEFAULT_STRIDE,
) -> tuple[Receiver, str]:
    """A receiver for ``sock`` and a one-line note on which backend it is and why.

    ``auto`` takes recvmmsg if libc has it, else recv_into. ``io_uring`` is used only when asked
    for and :func:`probe_io_uring` passes; an asked-for backend that cannot be used falls back to
    recvmmsg (or recv_into), and the note says why.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown UDP backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if backend == "recv_into":
        return RecvIntoReceiver(sock, batch, stride), "recv_into: asked for"
    if backend == "io_uring":
        ok, reason = probe_io_uring()
        if ok:
            try:
                return IoUringReceiver(sock, batch, stride), f"io_uring: asked for; {reason}"
            except (OSError, ImportError) as exc:
                reason = f"io_uring setup failed: {exc}"
        receiver = _fallback(sock, batch, stride)
        return receiver, f"{receiver.name}: io_uring unusable, {reason}"
    receiver = _fallback(sock, batch, stride)
    if receiver.name == "recvmmsg":
        why = "asked for" if backend == "recvmmsg" else "batched receive through libc (default)"
        return receiver, f"recvmmsg: {why}"
    if backend == "recvmmsg":
        return receiver, "recv_into: recvmmsg unusable (not in this C library)"
    return receiver, "recv_into: this C library has no recvmmsg"


def _fallback(sock: socket.socket, batch: int, stride: int) -> Receiver:
    if have_recvmmsg():
        return RecvmmsgReceiver(sock, batch, stride)
    return RecvIntoReceiver(sock, batch, stride)
