"""The UDP receive path (engine/events/receivers.py), on real sockets on 127.0.0.1 with real child processes.

Every backend is held to the same contract; io_uring is tested where the probe passes (liburing
installed and runnable) and skipped with the probe's reason elsewhere.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import wait_until

from lacrimosa.engine.events import receivers as udp

BACKEND_CLASSES: dict[str, type[udp.Receiver]] = {
    "recvmmsg": udp.RecvmmsgReceiver,
    "recv_into": udp.RecvIntoReceiver,
    "io_uring": udp.IoUringReceiver,
}
PROBE_TIMEOUT = 30.0


def payload(index: int, size: int) -> bytes:
    """Bytes that differ per datagram, so order and content are both checked."""
    return bytes((index + offset) % 251 for offset in range(size))


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """Sockets made in a test, all closed after it (an unclosed one is a warning, an error here)."""
    made: list[socket.socket] = []
    yield made
    for sock in made:
        sock.close()


@pytest.fixture
def sender(sockets: list[socket.socket]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockets.append(sock)
    return sock


@pytest.fixture
def make(
    sockets: list[socket.socket],
) -> Iterator[Callable[..., tuple[udp.Receiver, udp.SocketInfo]]]:
    """``make(backend, batch=…, stride=…)``: a receiver of exactly that backend on 127.0.0.1:0."""
    receivers: list[udp.Receiver] = []

    def build(
        backend: str, batch: int = 8, stride: int = 64
    ) -> tuple[udp.Receiver, udp.SocketInfo]:
        if backend == "io_uring":
            ok, reason = udp.probe_io_uring(PROBE_TIMEOUT)
            if not ok:
                pytest.skip(f"io_uring unusable here: {reason}")
        if backend == "recvmmsg" and not udp.have_recvmmsg():
            pytest.skip("this C library has no recvmmsg")
        sock, info = udp.open_udp_socket("127.0.0.1", 0)
        sockets.append(sock)
        receivers.append(BACKEND_CLASSES[backend](sock, batch, stride))
        return receivers[-1], info

    yield build
    for receiver in receivers:
        receiver.close()


def drain(
    receiver: udp.Receiver, count: int, timeout: float = 10.0
) -> list[tuple[int, bool, bytes]]:
    """Receive ``count`` datagrams as (length, truncated, row bytes kept), failing at the deadline."""
    got: list[tuple[int, bool, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        assert time.monotonic() < deadline, f"received {len(got)} of {count} datagrams"
        ready = receiver.receive()
        if ready == 0:
            receiver.wait(0.1)
            continue
        assert 0 < ready <= receiver.batch
        for row in range(ready):
            length = int(receiver.lengths[row])
            kept = receiver.staging[row, : min(length, receiver.stride)].tobytes()
            got.append((length, bool(receiver.truncated[row]), kept))
    return got


# ---- the socket -------------------------------------------------------------------------------


def rmem_max() -> int:
    return int(Path("/proc/sys/net/core/rmem_max").read_text())


def test_open_reports_the_bound_port_and_the_buffer_the_kernel_gave(
    sockets: list[socket.socket],
) -> None:
    asked = 8 << 20
    sock, info = udp.open_udp_socket("127.0.0.1", 0, rcvbuf=asked)
    sockets.append(sock)
    assert info.address == sock.getsockname()
    assert info.address[0] == "127.0.0.1" and info.address[1] > 0
    assert not sock.getblocking()
    assert info.rcvbuf == sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    # The kernel doubles what it is given; without CAP_NET_ADMIN rmem_max caps the request.
    assert info.rcvbuf >= (asked if info.forced else min(asked, rmem_max()))


def test_open_binds_ipv6_by_host(sockets: list[socket.socket]) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        sock, info = udp.open_udp_socket("::1", 0)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    sockets.append(sock)
    assert sock.family == socket.AF_INET6
    assert info.address[0] == "::1" and info.address[1] > 0


def test_open_names_the_address_when_the_port_is_taken(sockets: list[socket.socket]) -> None:
    sock, info = udp.open_udp_socket("127.0.0.1", 0)
    sockets.append(sock)
    with pytest.raises(OSError, match=rf"127\.0\.0\.1:{info.address[1]}") as caught:
        udp.open_udp_socket("127.0.0.1", info.address[1])
    assert caught.value.errno == errno.EADDRINUSE


# ---- every backend ----------------------------------------------------------------------------

backends = pytest.mark.parametrize("backend", list(BACKEND_CLASSES))


@backends
def test_a_burst_arrives_in_order_with_lengths_and_truncation(
    backend: str, make: Callable[..., tuple[udp.Receiver, udp.SocketInfo]], sender: socket.socket
) -> None:
    stride = 64
    receiver, info = make(backend, batch=8, stride=stride)
    sizes = [0, 1, stride - 1, stride, stride + 1, 1000, 7, 3 * stride] * 25  # 200, many batches
    for index, size in enumerate(sizes):
        sender.sendto(payload(index, size), info.address)
    got = drain(receiver, len(sizes))
    want = [
        (size, size > stride, payload(index, size)[:stride]) for index, size in enumerate(sizes)
    ]
    assert got == want
    assert receiver.receive() == 0


@backends
def test_default_staging_is_allocated_once_and_reused(
    backend: str, make: Callable[..., tuple[udp.Receiver, udp.SocketInfo]], sender: socket.socket
) -> None:
    receiver, info = make(backend, batch=udp.DEFAULT_BATCH, stride=udp.DEFAULT_STRIDE)
    staging, lengths, truncated = receiver.staging, receiver.lengths, receiver.truncated
    assert staging.shape == (udp.DEFAULT_BATCH, udp.DEFAULT_STRIDE)
    assert staging.dtype == np.uint8 and staging.flags.c_contiguous
    assert lengths.shape == (udp.DEFAULT_BATCH,) and lengths.dtype == np.int64
    assert truncated.shape == (udp.DEFAULT_BATCH,) and truncated.dtype == np.bool_
    address = staging.ctypes.data
    sizes = [udp.DEFAULT_STRIDE, udp.DEFAULT_STRIDE + 1, 9000]
    for index, size in enumerate(sizes):
        sender.sendto(payload(index, size), info.address)
    got = drain(receiver, len(sizes))
    assert [(length, cut) for length, cut, _ in got] == [(4096, False), (4097, True), (9000, True)]
    assert receiver.staging is staging and staging.ctypes.data == address
    assert receiver.lengths is lengths and receiver.truncated is truncated


@backends
def test_a_full_batch_leaves_the_rest_for_the_next_call(
    backend: str, make: Callable[..., tuple[udp.Receiver, udp.SocketInfo]], sender: socket.socket
) -> None:
    receiver, info = make(backend, batch=4, stride=16)
    for index in range(6):
        sender.sendto(payload(index, 10), info.address)
    wait_until(lambda: receiver.wait(0.1), message="the datagrams to be ready")
    first = receiver.receive()
    assert first == 4  # loopback delivers while sendto runs, so all six are queued
    assert receiver.lengths[:4].tolist() == [10] * 4
    assert drain(receiver, 2) == [(10, False, payload(index, 10)) for index in (4, 5)]


@backends
def test_receive_never_blocks_even_on_a_blocking_socket(
    backend: str, sockets: list[socket.socket]
) -> None:
    if backend == "io_uring":
        ok, reason = udp.probe_io_uring(PROBE_TIMEOUT)
        if not ok:
            pytest.skip(f"io_uring unusable here: {reason}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockets.append(sock)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(30.0)  # recv would wait this long; the receiver must not
    receiver = BACKEND_CLASSES[backend](sock, 8, 64)
    try:
        started = time.monotonic()
        assert [receiver.receive() for _ in range(5)] == [0] * 5
        assert time.monotonic() - started < 2.0
    finally:
        receiver.close()
    assert sock.fileno() == -1  # the receiver owns the socket


@backends
def test_wait_times_out_then_wakes_for_a_datagram(
    backend: str, make: Callable[..., tuple[udp.Receiver, udp.SocketInfo]], sender: socket.socket
) -> None:
    receiver, info = make(backend)
    started = time.monotonic()
    assert receiver.wait(0.2) is False
    assert 0.15 <= time.monotonic() - started < 5.0
    assert receiver.wait(0) is False
    sender.sendto(b"hello", info.address)
    assert receiver.wait(10.0) is True
    assert receiver.receive() == 1
    assert receiver.staging[0, :5].tobytes() == b"hello"


# ---- kernel drops -----------------------------------------------------------------------------


def test_kernel_drops_counts_what_a_tiny_buffer_lost(
    sockets: list[socket.socket], sender: socket.socket
) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockets.append(sock)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind(("127.0.0.1", 0))
    assert udp.kernel_drops(sock) == 0
    receiver, _ = udp.make_receiver(sock, batch=64, stride=128)
    try:
        sent = 2000
        for index in range(sent):
            sender.sendto(payload(index, 64), sock.getsockname())
        received = 0

        def accounted() -> bool:
            nonlocal received
            while (ready := receiver.receive()) > 0:
                received += ready
            drops = udp.kernel_drops(sock)
            return drops is not None and received + drops == sent

        wait_until(accounted, message="received + drops == sent")
        drops = udp.kernel_drops(sock)
        assert drops is not None and drops > 0 and received > 0
    finally:
        receiver.close()
    assert udp.kernel_drops(sock) is None  # closed


# ---- choosing a backend -----------------------------------------------------------------------


def test_auto_takes_recvmmsg_and_says_so(sockets: list[socket.socket]) -> None:
    sock, _ = udp.open_udp_socket("127.0.0.1", 0)
    sockets.append(sock)
    receiver, note = udp.make_receiver(sock)
    try:
        expected = "recvmmsg" if udp.have_recvmmsg() else "recv_into"
        assert receiver.name == expected and note.startswith(expected)
        assert "\n" not in note
    finally:
        receiver.close()


def test_asking_for_recv_into_gets_it(sockets: list[socket.socket]) -> None:
    sock, _ = udp.open_udp_socket("127.0.0.1", 0)
    sockets.append(sock)
    receiver, note = udp.make_receiver(sock, "recv_into", batch=16, stride=256)
    try:
        assert isinstance(receiver, udp.RecvIntoReceiver)
        assert receiver.staging.shape == (16, 256)
        assert "recv_into" in note
    finally:
        receiver.close()


def test_io_uring_only_when_the_probe_passes_else_a_fallback_that_says_why(
    sockets: list[socket.socket], sender: socket.socket
) -> None:
    ok, reason = udp.probe_io_uring(PROBE_TIMEOUT)
    sock, info = udp.open_udp_socket("127.0.0.1", 0)
    sockets.append(sock)
    receiver, note = udp.make_receiver(sock, "io_uring", batch=8, stride=64)
    try:
        if ok:
            assert receiver.name == "io_uring"
        else:
            assert receiver.name in ("recvmmsg", "recv_into")
            assert "io_uring" in note and reason in note
        sender.sendto(b"still works", info.address)
        assert drain(receiver, 1) == [(11, False, b"still works")]
    finally:
        receiver.close()


def test_unknown_backend_and_bad_sizes_are_refused(sockets: list[socket.socket]) -> None:
    sock, _ = udp.open_udp_socket("127.0.0.1", 0)
    sockets.append(sock)
    with pytest.raises(ValueError, match="unknown UDP backend"):
        udp.make_receiver(sock, "epoll")
    with pytest.raises(ValueError, match="batch"):
        udp.make_receiver(sock, "recv_into", batch=0)
    with pytest.raises(ValueError, match="stride"):
        udp.make_receiver(sock, "recv_into", stride=0)


# ---- the io_uring probe -----------------------------------------------------------------------


def test_probe_never_raises_returns_in_time_and_is_cached() -> None:
    started = time.monotonic()
    ok, reason = udp.probe_io_uring(PROBE_TIMEOUT)
    assert time.monotonic() - started < PROBE_TIMEOUT + 5.0
    assert isinstance(ok, bool) and isinstance(reason, str) and reason
    started = time.monotonic()
    assert udp.probe_io_uring(PROBE_TIMEOUT) == (ok, reason)
    assert time.monotonic() - started < 0.1


@pytest.mark.parametrize("signal_name", ["SIGILL", "SIGSEGV"])
def test_probe_survives_a_child_killed_by_a_signal(signal_name: str) -> None:
    code = f"import os, signal; os.kill(os.getpid(), signal.{signal_name})"
    ok, reason = udp._run_probe_child(code, [], 20.0)
    assert not ok
    assert reason.startswith(f"liburing probe died with {signal_name}")


def test_probe_gives_up_on_a_child_that_hangs() -> None:
    started = time.monotonic()
    ok, reason = udp._run_probe_child("import time; time.sleep(60)", [], 0.5)
    assert not ok and "did not finish within 0.5s" in reason
    assert time.monotonic() - started < 10.0


def test_probe_reports_the_childs_error() -> None:
    ok, reason = udp._run_probe_child("raise RuntimeError('no ring for you')", [], 20.0)
    assert not ok and "no ring for you" in reason
    assert udp._run_probe_child("print('ok')", [], 20.0)[0]
