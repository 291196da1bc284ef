"""sequencer: UDP events in, checked, stamped and journaled, against a C recvmmsg receiver.

Two small C programs are built here with gcc (into a temporary folder, never the checkout; no gcc,
and the benchmark is reported as skipped): ``bench/c/sender.c`` sends valid framed events (the
24-byte header, CRC-32 of bytes 8..end) with ``sendmmsg``, as fast as it can or paced, and
``bench/c/receiver.c`` is the physical reference, ``recvmmsg`` into fixed buffers, batch 512. The
same sender feeds both receivers, over 127.0.0.1, with 64-byte and 512-byte datagrams (the
whole datagram, header included).

- **Drain rate.** The receiver's socket gets a big buffer (256 MiB asked, SO_RCVBUFFORCE) and is
  filled by the sender *before* the clock starts (nothing reads meanwhile; the kernel's drop
  counter is checked to be 0), then the timed part empties it. For lacrimosa that is
  ``Sequencer.drain()`` (receive, classify, CRC check, stamp, journal write, through the same
  receive and ingest threads as a running console) on a sequencer that is not started; for C,
  the receiver's ``drain`` command. So the sender never
  shares a core with the receiver being timed. Each round times C then lacrimosa; the ratio is
  the median of the per-round ratios.
- **Full speed.** The sequencer's threads run (the default 64 MiB buffer, as a user gets) while
  the sender sends as fast as it can for 3 s; sent, accepted and the kernel's drops are counted.
  The reference is the C receiver, polling and draining live, under the same sender.
- **Paced, zero loss.** The sender paces batches (~200 us apart) at absolute deadlines at a rate
  R for 10 s; zero loss means every datagram sent was accepted and the kernel dropped none. R is
  searched below the top = the lower of the drain rate (what the sequencer can sustain at best)
  and the sender's full speed into the C receiver: first at 0.8x the top (at the top itself if
  full speed lost nothing: a few seconds without loss may only mean the buffer absorbed them),
  then by bisection, 4 steps in all; every step is printed. The reference is the C receiver's
  full-speed run: with no loss there, its zero-loss rate is at least the sender's full speed.
- **Journal recovery.** A child process fills a 1M-slot journal completely (64-byte records,
  appended in batches of 64k) and is SIGKILLed with it open; then the time to reopen it
  (``Journal(path, capacity, blob_size)``, which checks the interrupted batch and verifies every
  slot's CRC) is measured in fresh children, each SIGKILLed after opening, so every reopen is an
  unclean one. The reference is reopening the same journal after a clean close. The file is in
  the page cache: this is the CPU cost of recovery, not the disk's.

The journals of the drain and live parts are filled first (the ring and the blob region written
once over), so they are measured in the steady state of a flight recorder that has wrapped, not
paying for a sparse file's first touch.

Targets (from the issue): a drain rate of at least 500k events/s (ahead of the 469k events/s
headline of the event store in ../shared/seeds/allsource-event-store-status.md) and at least
0.5x the C receiver's. The other rows are reported without a target.
"""

from __future__ import annotations

import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    Row,
    Skip,
    code_root,
    fmt_mb,
    fmt_ms,
    fmt_rate,
    main,
    median,
    require,
    use_root,
)

C_SOURCES = Path(__file__).resolve().parent / "c"
HOST = "127.0.0.1"
SIZES = (64, 512)
RECORD_SKIP = 8  # a framed event's journal record is the frame from byte 8 on

DRAIN_EVENTS = {64: 300_000, 512: 200_000}
QUICK_DRAIN_EVENTS = {64: 30_000, 512: 20_000}
DRAIN_RCVBUF = 256 << 20  # asked for; the kernel doubles it (bookkeeping overhead)
ROUNDS, QUICK_ROUNDS = 5, 3
CAPACITY, QUICK_CAPACITY = 1 << 20, 1 << 16
BLOB, QUICK_BLOB = 64 << 20, 8 << 20

FULL_SPEED_SECONDS, QUICK_FULL_SPEED_SECONDS = 3.0, 1.0
PACED_SECONDS, QUICK_PACED_SECONDS = 10.0, 2.0
PACED_STEPS, QUICK_PACED_STEPS = 4, 2

RECOVERY_CAPACITY, QUICK_RECOVERY_CAPACITY = 1 << 20, 1 << 17
RECOVERY_BLOB = 128 << 20  # 1M records of 64 bytes fit without wrapping: the ring is what is full
RECOVERY_RECORD = 64
RECOVERY_ROUNDS, QUICK_RECOVERY_ROUNDS = 3, 1
FILL_BATCH = 1 << 16

TARGET_RATE = 500_000
TARGET_RATIO = 0.5
COMMAND_TIMEOUT = 60.0


# -- the C programs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tools:
    sender: Path
    receiver: Path


def build_tools(folder: Path) -> Tools:
    """Compile the sender and the reference receiver into ``folder``."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise Skip("no gcc: the C sender and reference receiver cannot be built")
    built = {}
    for name in ("sender", "receiver"):
        binary = folder / name
        done = subprocess.run(
            [gcc, "-O2", "-Wall", "-o", str(binary), str(C_SOURCES / f"{name}.c")],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"gcc could not build {name}.c:\n{done.stderr}")
        built[name] = binary
    return Tools(**built)


def send(
    tools: Tools,
    port: int,
    count: int,
    size: int,
    rate: float = 0,
    seconds: float = 0,
    own_session: bool = False,
) -> tuple[int, float]:
    """Run the C sender; return (datagrams sent, seconds it took). ``own_session``: in a session
    of its own, which Linux's scheduler gives a share of the CPU of its own (autogroups), as a
    supervised process or a program started from another terminal has."""
    limit = 30 + 3 * (seconds or count / (rate or 50_000))
    done = subprocess.run(
        [str(tools.sender), HOST, str(port), str(count), str(size), str(rate), str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        timeout=limit,
        stdin=subprocess.DEVNULL,
        start_new_session=own_session,
    )
    sent, nanoseconds = done.stdout.split()
    return int(sent), int(nanoseconds) / 1e9


class CReceiver:
    """The reference receiver, kept running and driven by commands on its stdin."""

    def __init__(self, tools: Tools, rcvbuf: int) -> None:
        self.process = subprocess.Popen(
            [str(tools.receiver), HOST, str(rcvbuf)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._pending = b""
        try:
            port, got, forced = self._line().split()
        except BaseException:
            self.process.kill()
            self.close()
            raise
        self.port, self.rcvbuf, self.forced = int(port), int(got), forced == "1"

    def _line(self) -> str:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise RuntimeError(f"the C receiver did not answer within {COMMAND_TIMEOUT:g} s")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"the C receiver exited ({self.process.wait()})")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode()

    def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def result(self) -> tuple[int, int, float]:
        """(datagrams, bytes, seconds) of the last command."""
        datagrams, nbytes, nanoseconds = self._line().split()
        return int(datagrams), int(nbytes), int(nanoseconds) / 1e9

    def drain(self) -> tuple[int, int, float]:
        self.command("drain")
        return self.result()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


# -- the kernel's view of a socket ---------------------------------------------------------------


def udp_socket_state(port: int) -> tuple[int, int]:
    """(bytes queued, datagrams dropped) of the UDP socket bound to ``port``, from /proc/net/udp.

    The queued bytes are the kernel's accounting (``sk_rmem_alloc``: each datagram's buffer
    overhead included), what it compares with the receive buffer size before dropping.
    """
    local = f"0100007F:{port:04X}"  # 127.0.0.1, as /proc/net/udp writes it (little-endian)
    with open("/proc/net/udp", encoding="ascii") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[1] == local:
                return int(fields[4].split(":")[1], 16), int(fields[12])
    raise RuntimeError(f"no UDP socket on port {port} in /proc/net/udp")


def softnet_drops() -> int:
    """Packets the kernel dropped before any socket (a full per-CPU backlog), all CPUs."""
    try:
        with open("/proc/net/softnet_stat", encoding="ascii") as table:
            return sum(int(line.split()[1], 16) for line in table)
    except OSError:
        return 0


def settle(port: int, timeout: float = 5.0) -> int:
    """Wait until the socket's queue stops changing (datagrams still in the kernel's backlog have
    landed); return the bytes queued."""
    deadline = time.monotonic() + timeout
    last, same = -1, 0
    while time.monotonic() < deadline:
        queued, _ = udp_socket_state(port)
        same = same + 1 if queued == last else 0
        if same >= 3:
            break
        last = queued
        time.sleep(0.005)
    return last


def probe_truesize(tools: Tools, port: int, size: int, drain: Any) -> float:
    """Bytes of receive buffer one datagram of ``size`` takes (the kernel's accounting)."""
    probe = 2000
    send(tools, port, probe, size)
    queued = settle(port)
    drain()
    return queued / probe


# -- journals ------------------------------------------------------------------------------------


def fill_journal(journal: Any, events: int, record_size: int) -> None:
    """Append ``events`` distinct framed-event records of ``record_size`` bytes, in big batches
    (vectorised: one CRC call per record, no Python loop per record)."""
    import numpy as np

    from lacrimosa.engine.events.frames import EVENT_DTYPE

    width = max(record_size, 16)
    batch = max(1, min(FILL_BATCH, journal.blob_size // (4 * record_size)))
    staging = np.full((batch, width), ord("r"), np.uint8)
    staging[:, 0:8] = 0  # the sender's clock: none
    staging[:, 8:12] = np.frombuffer((1).to_bytes(4, "little"), np.uint8)  # node 1
    staging[:, 14:16] = 0  # flags
    lamport = max((time.time_ns() // 1_000_000) << 16, journal.last_lamport + 1)
    starts = np.zeros(batch, np.int64)
    lengths = np.full(batch, record_size, np.int64)
    for first in range(0, events, batch):
        n = min(batch, events - first)
        index = np.arange(first, first + n, dtype=np.uint64)
        rows = staging[:n]
        rows[:, 12:14] = (index % np.uint64(4)).astype("<u2").view(np.uint8).reshape(n, 2)
        if record_size >= 24:
            rows[:, 16:24] = index.astype("<u8").view(np.uint8).reshape(n, 8)
        crcs = np.fromiter(map(zlib.crc32, (row[:record_size] for row in rows)), np.uint32, count=n)
        fields = np.zeros(n, EVENT_DTYPE)
        fields["lamport"] = np.uint64(lamport) + index
        fields["node"] = 1
        fields["stream"] = index % np.uint64(4)
        journal.append(rows, starts[:n], lengths[:n], fields, crcs)
    journal.flush()


def prepare_journal(path: Path, capacity: int, blob_size: int, record_size: int) -> None:
    """A journal whose ring and blob region have both been written over once."""
    from lacrimosa.engine.events.journal import Journal

    journal = Journal(path, capacity, blob_size)
    try:
        fill_journal(journal, max(capacity, blob_size // record_size + 1), record_size)
    finally:
        journal.close()


def make_sequencer(journal: Path, capacity: int, blob_size: int, rcvbuf: int | None) -> Any:
    from lacrimosa.engine.config import SequencerSettings
    from lacrimosa.engine.events.sequencer import Sequencer

    extra = {} if rcvbuf is None else {"rcvbuf": rcvbuf}
    settings = SequencerSettings(udp=f"{HOST}:0", capacity=capacity, blob_size=blob_size, **extra)
    return Sequencer(settings, journal)


def sequencer_port(sequencer: Any) -> int:
    return int(sequencer.socket_info.address[1])


def describe_rcvbuf(rcvbuf: int, forced: bool) -> str:
    how = "SO_RCVBUFFORCE" if forced else "SO_RCVBUF, capped by net.core.rmem_max"
    return f"rcvbuf {rcvbuf / (1 << 20):.0f} MiB ({how})"


# -- drain rate ----------------------------------------------------------------------------------


def drain_rates(
    tools: Tools, size: int, events: int, rounds: int, journal: Path, capacity: int, blob: int
) -> dict[str, Any]:
    """Prefill, then time the drain: the C receiver and lacrimosa, alternately."""
    sequencer = make_sequencer(journal, capacity, blob, DRAIN_RCVBUF)
    try:
        reference = CReceiver(tools, DRAIN_RCVBUF)
    except BaseException:
        sequencer.stop()
        raise
    try:
        port = sequencer_port(sequencer)
        info = sequencer.socket_info
        truesize = probe_truesize(tools, port, size, sequencer.drain)
        probe_truesize(tools, reference.port, size, reference.drain)
        # Both buffers must hold every datagram of a round; keep a margin.
        fits = int(0.85 * min(info.rcvbuf, reference.rcvbuf) / truesize)
        n = min(events, fits)
        lacrimosa: list[float] = []
        c_runs: list[float] = []
        faults: list[int] = []
        for round_ in range(rounds + 1):  # the first round warms up and is not counted
            c_seconds = _c_drain_round(tools, reference, size, n)
            seconds, minflt = _lacrimosa_drain_round(tools, sequencer, port, size, n)
            if round_:
                c_runs.append(c_seconds)
                lacrimosa.append(seconds)
                faults.append(minflt)
        if any(sequencer.stats().drops.values()):
            raise RuntimeError(f"the sequencer dropped events: {sequencer.stats().drops}")
    finally:
        reference.close()
        sequencer.stop()
    return {
        "size": size,
        "events": n,
        "truesize": truesize,
        "rcvbuf": info.rcvbuf,
        "forced": info.forced,
        "lacrimosa_seconds": lacrimosa,
        "c_seconds": c_runs,
        "ratios": [c / lac for lac, c in zip(lacrimosa, c_runs, strict=True)],
        "minor_faults": faults,
    }


def _prefill(tools: Tools, port: int, size: int, n: int) -> None:
    _, drops_before = udp_socket_state(port)
    sent, _ = send(tools, port, n, size)
    settle(port)
    _, drops_after = udp_socket_state(port)
    if sent != n or drops_after != drops_before:
        raise RuntimeError(
            f"prefill of port {port}: sent {sent} of {n}, the kernel dropped "
            f"{drops_after - drops_before} (receive buffer too small?)"
        )


def _c_drain_round(tools: Tools, reference: CReceiver, size: int, n: int) -> float:
    _prefill(tools, reference.port, size, n)
    datagrams, nbytes, seconds = reference.drain()
    if datagrams != n or nbytes != n * size:
        raise RuntimeError(f"C receiver drained {datagrams} datagrams / {nbytes} B, sent {n}")
    return seconds


def _lacrimosa_drain_round(
    tools: Tools, sequencer: Any, port: int, size: int, n: int
) -> tuple[float, int]:
    _prefill(tools, port, size, n)
    accepted = sequencer.stats().accepted
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    started = time.perf_counter()
    drained = sequencer.drain()
    seconds = time.perf_counter() - started
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    accepted = sequencer.stats().accepted - accepted
    if drained != n or accepted != n:
        raise RuntimeError(f"lacrimosa drained {drained} and accepted {accepted}; {n} were sent")
    return seconds, faults


# -- live: full speed and paced ------------------------------------------------------------------


@dataclass(frozen=True)
class LiveRun:
    rate: float  # asked for; 0 = as fast as the sender goes
    sent: int
    seconds: float  # the sender's
    accepted: int
    kernel_drops: int
    softnet_drops: int

    @property
    def lost(self) -> int:
        return self.sent - self.accepted

    @property
    def sent_rate(self) -> float:
        return self.sent / self.seconds

    @property
    def zero_loss(self) -> bool:
        return self.lost == 0 and self.kernel_drops == 0

    def loss_percent(self) -> float:
        return 100.0 * self.lost / self.sent if self.sent else 0.0

    def summary(self) -> dict[str, Any]:
        return asdict(self) | {
            "lost": self.lost,
            "sent_rate": self.sent_rate,
            "loss_percent": self.loss_percent(),
            "zero_loss": self.zero_loss,
        }


def live_lacrimosa(tools: Tools, sequencer: Any, size: int, rate: float, seconds: float) -> LiveRun:
    """The sender at ``rate`` (0: full speed) for ``seconds`` into the running sequencer."""
    port = sequencer_port(sequencer)
    accepted0 = sequencer.stats().accepted
    _, kernel0 = udp_socket_state(port)
    softnet0 = softnet_drops()
    count = int(rate * seconds) if rate else 1 << 60
    sent, took = send(tools, port, count, size, rate, 0 if rate else seconds)
    # Let the sequencer finish what is queued: done when the queue is empty and nothing moves.
    deadline = time.monotonic() + 60
    last, same = -1, 0
    while time.monotonic() < deadline:
        accepted = sequencer.stats().accepted - accepted0
        if accepted >= sent:
            break
        queued, _ = udp_socket_state(port)
        same = same + 1 if (accepted == last and queued == 0) else 0
        if same >= 5:
            break
        last = accepted
        time.sleep(0.01)
    if sequencer.failure is not None:
        raise RuntimeError(f"the sequencer failed: {sequencer.failure!r}")
    _, kernel = udp_socket_state(port)
    return LiveRun(
        rate,
        sent,
        took,
        sequencer.stats().accepted - accepted0,
        kernel - kernel0,
        softnet_drops() - softnet0,
    )


def live_c(tools: Tools, reference: CReceiver, size: int, seconds: float) -> LiveRun:
    """The sender at full speed for ``seconds`` into the C receiver, receiving live."""
    _, kernel0 = udp_socket_state(reference.port)
    softnet0 = softnet_drops()
    reference.command("live")
    sent, took = send(tools, reference.port, 1 << 60, size, 0, seconds)
    settle(reference.port)
    reference.command("stop")
    received, _, _ = reference.result()
    _, kernel = udp_socket_state(reference.port)
    return LiveRun(0, sent, took, received, kernel - kernel0, softnet_drops() - softnet0)


def _round_rate(rate: float) -> int:
    step = 10_000 if rate >= 50_000 else 1_000
    return max(step, int(rate // step) * step)


def live_rates(
    tools: Tools,
    size: int,
    journal: Path,
    capacity: int,
    blob: int,
    drain_rate: float,
    quick: bool,
) -> dict[str, Any]:
    """Full speed (C, then lacrimosa), then the highest paced rate lacrimosa takes without loss."""
    full_seconds = QUICK_FULL_SPEED_SECONDS if quick else FULL_SPEED_SECONDS
    paced_seconds = QUICK_PACED_SECONDS if quick else PACED_SECONDS
    steps = QUICK_PACED_STEPS if quick else PACED_STEPS
    sequencer = make_sequencer(journal, capacity, blob, None)  # the default buffer
    info = sequencer.socket_info
    try:
        reference = CReceiver(tools, sequencer.settings.rcvbuf)
    except BaseException:
        sequencer.stop()
        raise
    try:
        c_full = live_c(tools, reference, size, full_seconds)
        sequencer.start()
        full = live_lacrimosa(tools, sequencer, size, 0, full_seconds)
        # What the sender pushes while a receiver keeps up (into one that drops, it goes faster).
        ceiling = c_full.sent_rate if c_full.zero_loss else c_full.accepted / c_full.seconds
        paced: list[LiveRun] = []
        best, lossy = 0.0, None  # the highest rate with no loss, the lowest with loss
        # The drain rate bounds what the sequencer can sustain: search below it. A few seconds
        # without loss at full speed may only mean the buffer absorbed them: start at the top.
        top = _round_rate(min(ceiling, drain_rate))
        rate = top if full.zero_loss else _round_rate(0.8 * top)
        for _ in range(steps):
            run = live_lacrimosa(tools, sequencer, size, rate, paced_seconds)
            paced.append(run)
            if run.zero_loss:
                best = max(best, rate)
            else:
                lossy = rate if lossy is None else min(lossy, rate)
            rate = _round_rate((best + (top if lossy is None else lossy)) / 2)
            if any(rate == run.rate for run in paced):
                break
    finally:
        reference.close()
        sequencer.stop()
    return {
        "size": size,
        "rcvbuf": info.rcvbuf,
        "forced": info.forced,
        "c_rcvbuf": reference.rcvbuf,
        "full": full.summary(),
        "c_full": c_full.summary(),
        "paced": [run.summary() for run in paced],
        "zero_loss_rate": best,
        "lossy_rate": lossy,
        "ceiling": ceiling,
        "paced_seconds": paced_seconds,
        "full_seconds": full_seconds,
    }


# -- journal recovery ----------------------------------------------------------------------------


def journal_child(mode: str, path: Path, capacity: int, blob_size: int) -> None:
    """Runs in a fresh interpreter. ``fill``: make and fill the journal; ``unclean``: time a
    reopen; both then SIGKILL themselves with the journal open. ``clean``: time a reopen and
    close properly."""
    from lacrimosa.engine.events.journal import Journal

    started = time.perf_counter()
    journal = Journal(path, capacity, blob_size)
    seconds = time.perf_counter() - started
    if mode == "fill":
        started = time.perf_counter()
        fill_journal(journal, capacity, RECOVERY_RECORD)
        seconds = time.perf_counter() - started
    report = journal.recovery
    print(
        json.dumps(
            {
                "seconds": seconds,
                "events": journal.head - journal.tail,
                "clean": report.clean,
                "kept": report.kept,
                "torn": report.torn,
                "corrupt": report.corrupt,
                "recovery_seconds": report.seconds,
            }
        ),
        flush=True,
    )
    if mode == "clean":
        journal.close()
    else:
        os.kill(os.getpid(), signal.SIGKILL)


def _journal_child(mode: str, path: Path, capacity: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--journal-child", mode, str(path), str(capacity),
         str(RECOVERY_BLOB), str(code_root())],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    expected = 0 if mode == "clean" else -signal.SIGKILL
    if done.returncode != expected or not done.stdout.strip():
        raise RuntimeError(f"journal child ({mode}) exited {done.returncode}:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["events"] != capacity or result["corrupt"]:
        raise RuntimeError(f"journal child ({mode}): {result}, expected {capacity} sound events")
    return result


def recovery_times(folder: Path, capacity: int, rounds: int) -> dict[str, Any]:
    path = folder / "recovery.journal"
    fill = _journal_child("fill", path, capacity)
    unclean = [_journal_child("unclean", path, capacity) for _ in range(rounds)]
    if any(run["clean"] for run in unclean):
        raise RuntimeError("a reopen after SIGKILL found the journal clean")
    _journal_child("clean", path, capacity)  # recovers once more, then closes cleanly
    clean = [_journal_child("clean", path, capacity) for _ in range(rounds)]
    if not all(run["clean"] for run in clean):
        raise RuntimeError("a reopen after a clean close found the journal unclean")
    return {
        "capacity": capacity,
        "record": RECOVERY_RECORD,
        "fill_seconds": fill["seconds"],
        "unclean": unclean,
        "clean": clean,
        "file_bytes": path.stat().st_size,
    }


# -- the table -----------------------------------------------------------------------------------


def _size_label(size: int) -> str:
    return f"{size} B"


def drain_row(d: dict[str, Any]) -> Row:
    n = d["events"]
    lac = median(d["lacrimosa_seconds"])
    ref = median(d["c_seconds"])
    ratio = median(d["ratios"])
    rate = n / lac
    return Row(
        f"sequencer drain: {n // 1000}k x {_size_label(d['size'])} (recv+crc+stamp+journal)",
        fmt_rate(rate, "ev/s"),
        f"{fmt_rate(n / ref, 'ev/s')} C recvmmsg",
        ratio,
        f">= {TARGET_RATE // 1000}k ev/s and >= {TARGET_RATIO}x C",
        rate >= TARGET_RATE and ratio >= TARGET_RATIO,
        notes=[
            f"{_size_label(d['size'])}: median of {len(d['ratios'])} rounds, prefilled "
            f"{describe_rcvbuf(d['rcvbuf'], d['forced'])}, {d['truesize']:.0f} B of it per "
            "datagram; lacrimosa (ms): "
            + " ".join(f"{s * 1e3:.0f}" for s in d["lacrimosa_seconds"])
            + "; C (ms): "
            + " ".join(f"{s * 1e3:.1f}" for s in d["c_seconds"])
            + f"; minor faults per drain {median(d['minor_faults']):.0f}",
        ],
        data=d,
    )


def full_speed_row(live: dict[str, Any]) -> Row:
    full, c_full = live["full"], live["c_full"]
    label = _size_label(live["size"])
    return Row(
        f"sequencer full speed {live['full_seconds']:g} s, {label}: loss",
        f"{full['loss_percent']:.2f}% of {full['sent'] / 1e6:.2f}M "
        f"({fmt_rate(full['sent'] / full['seconds'], 'ev/s')} sent)",
        f"{c_full['loss_percent']:.2f}% of {c_full['sent'] / 1e6:.2f}M C "
        f"({fmt_rate(c_full['sent'] / c_full['seconds'], 'ev/s')} sent)",
        None,
        "",
        None,
        notes=[
            f"{label} full speed: {describe_rcvbuf(live['rcvbuf'], live['forced'])} (the default "
            f"settings); sent {full['sent']:,}, accepted {full['accepted']:,}, kernel drops "
            f"{full['kernel_drops']:,}; C received {c_full['accepted']:,} of {c_full['sent']:,}"
            + (
                f"; softnet backlog drops {full['softnet_drops'] + c_full['softnet_drops']}"
                if full["softnet_drops"] or c_full["softnet_drops"]
                else ""
            ),
        ],
        data={k: live[k] for k in ("size", "rcvbuf", "forced", "full", "c_full")},
    )


def paced_row(live: dict[str, Any]) -> Row:
    label = _size_label(live["size"])
    best, lossy, c_full = live["zero_loss_rate"], live["lossy_rate"], live["c_full"]
    shown = fmt_rate(best, "ev/s") if best else "none found"
    shown += f" (loss at {fmt_rate(lossy, 'ev/s')})" if lossy else " (the highest tried)"
    if c_full["zero_loss"]:
        reference = f">= {fmt_rate(live['ceiling'], 'ev/s')} C (no loss at full speed)"
    else:
        reference = f"C lost {c_full['loss_percent']:.2f}% at full speed"
    steps = "; ".join(
        f"{fmt_rate(run['rate'], '/s')} -> sent {fmt_rate(run['sent_rate'], '/s')}, "
        + ("no loss" if run["zero_loss"] else
           f"lost {run['lost']:,} ({run['loss_percent']:.2f}%)")
        for run in live["paced"]
    )  # fmt: skip
    return Row(
        f"sequencer paced {live['paced_seconds']:g} s zero loss, {label}",
        shown,
        reference,
        best / live["ceiling"] if live["ceiling"] else None,
        "",
        None,
        notes=[
            f"{label} paced: {describe_rcvbuf(live['rcvbuf'], live['forced'])}; the C sender "
            "paces batches at absolute deadlines (~200 us apart); the C reference's rate is the "
            "sender's full speed into it, so the ratio is an upper bound; steps: "
            + (steps or "none needed")
        ],
        data={k: live[k] for k in ("size", "rcvbuf", "forced", "paced", "zero_loss_rate",
                                   "lossy_rate", "ceiling", "paced_seconds")},
    )  # fmt: skip


def recovery_row(r: dict[str, Any]) -> Row:
    unclean = median([run["seconds"] for run in r["unclean"]])
    clean = median([run["seconds"] for run in r["clean"]])
    capacity = r["capacity"]
    slots = f"{capacity >> 20}M" if capacity >= 1 << 20 else f"{capacity >> 10}k"
    return Row(
        f"journal recovery: {slots} slots full, reopen after SIGKILL",
        fmt_ms(unclean),
        f"{fmt_ms(clean)} clean reopen",
        unclean / clean,
        "",
        None,
        notes=[
            f"recovery: {capacity:,} records of {r['record']} B, file {fmt_mb(r['file_bytes'])} "
            f"(in the page cache), filled in {fmt_ms(r['fill_seconds'])}; median of "
            f"{len(r['unclean'])}; unclean (ms): "
            + " ".join(f"{run['seconds'] * 1e3:.0f}" for run in r["unclean"])
            + "; clean (ms): "
            + " ".join(f"{run['seconds'] * 1e3:.1f}" for run in r["clean"])
        ],
        data=r,
    )


def run(quick: bool) -> list[Row]:
    require("lacrimosa.engine.events.sequencer")
    capacity = QUICK_CAPACITY if quick else CAPACITY
    blob = QUICK_BLOB if quick else BLOB
    events = QUICK_DRAIN_EVENTS if quick else DRAIN_EVENTS
    rounds = QUICK_ROUNDS if quick else ROUNDS
    rows: list[Row] = []
    live_rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="lacrimosa-bench-seq-") as tmp:
        folder = Path(tmp)
        tools = build_tools(folder)
        for size in SIZES:
            journal = folder / f"events-{size}.journal"
            prepare_journal(journal, capacity, blob, size - RECORD_SKIP)
            drained = drain_rates(tools, size, events[size], rounds, journal, capacity, blob)
            rows.append(drain_row(drained))
            rate = drained["events"] / median(drained["lacrimosa_seconds"])
            live = live_rates(tools, size, journal, capacity, blob, rate, quick)
            live_rows += [paced_row(live), full_speed_row(live)]
            journal.unlink()
        recovery = recovery_times(
            folder,
            QUICK_RECOVERY_CAPACITY if quick else RECOVERY_CAPACITY,
            QUICK_RECOVERY_ROUNDS if quick else RECOVERY_ROUNDS,
        )
    return [*rows, *live_rows, recovery_row(recovery)]


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--journal-child":
        use_root(Path(sys.argv[6]))
        journal_child(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        sys.exit(0)
    sys.exit(main(run, __doc__))
