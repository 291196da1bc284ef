"""The event sequencer: UDP datagrams in, checked, stamped and journaled, in batches.

Two threads, a pipeline over a few staging buffers (one receiver each, on the same socket):

* the **receive** thread waits for the socket and receives a batch (up to a few hundred
  datagrams, one ``recvmmsg`` call) into a free buffer, then hands the buffer on;
* the **ingest** thread, the journal's only writer, handles each batch with whole-array numpy
  operations: classify (framed, text, malformed), parse the frame headers, verify checksums,
  stamp lamport timestamps, append to the journal; then gives the buffer back. A batch whose
  datagrams are all frames of one size with good checksums (what a busy sender sends) takes a
  shorter path to the same slots: a few whole-batch checks, node/stream/flags copied as one
  64-bit word per event, the records written with one copy (about a third of the per-batch
  array operations; see ``_ingest_fixed_size_frames``).

The kernel's share of receiving (about half the time per datagram) runs without the GIL, so on
two cores it overlaps with the ingest thread's Python work: measured here, this drains about 1.5x
faster than one thread doing both. When every buffer is waiting to be ingested, the receive thread
waits and the kernel's socket buffer absorbs the burst. The only per-datagram Python work is one
CRC-32 call (driven by ``map``), plus a UTF-8 check for plain-text datagrams.

Every datagram is counted: accepted, or dropped with a cause (``malformed``, ``bad_checksum``,
``oversize``), and the kernel's own drop counter for the socket (``kernel``: the receive buffer
overflowed) is read at most once a second.

**Failures are loud, and ingest goes on.** Neither thread dies silently. A batch whose ingest
raises is lost (its datagrams are counted in ``lost``), the error is recorded (``ingest_errors``,
``last_error``) and written to stderr (each distinct error once), and the ingest thread goes on with
the next batch: a fault tied to one batch does not stop the events after it. After
``MAX_CONSECUTIVE_INGEST_ERRORS`` failed batches in a row (a fault that will not pass) ingest stops;
so does everything if the receive thread fails. Then ``failure`` is set, which the console shows as
an error in ``status``, ``ps`` (a warning) and the TUI (a notification and the Overview).
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import socket
import sys
import threading
import time
import traceback
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..config import SequencerSettings, parse_address
from ..errors import ConsoleError
from . import ingest_stats as shared
from .frames import (
    CLOCK_IGNORED,
    EVENT_DTYPE,
    FRAME_HEADER,
    MAGIC,
    SENDER_FLAGS,
    TEXT,
    Event,
    HybridClock,
    crc32_slices,
)
from .ingest_stats import RATE_HISTORY, SharedStats
from .journal import Journal
from .receivers import (
    Receiver,
    SocketInfo,
    kernel_drops,
    make_receiver,
    open_udp_socket,
    socket_info,
)

DROP_CAUSES = ("malformed", "bad_checksum", "oversize", "kernel")
WAIT_TIMEOUT = 0.2  # how often an idle loop looks at the clock and the stop flag
PIPELINE_BUFFERS = 4  # staging buffers between the receive and the ingest thread
GIL_SWITCH_INTERVAL = 0.001
# At a stop, the socket is drained for at most this long: ample for a full receive buffer (the
# default one holds some 10^5 small datagrams, well under a second's drain), and a stop ends even
# while a sender floods.
STOP_DRAIN_SECONDS = 2.0
# Failed batches in a row after which ingest stops for good (each failed batch is lost).
MAX_CONSECUTIVE_INGEST_ERRORS = 8
# Distinct error messages written to stderr (the rest are counted only).
MAX_LOGGED_ERRORS = 16

_MAGIC_WORD = int.from_bytes(MAGIC, "little")
_FRAME_HEADER = np.dtype(
    [
        ("magic", "<u4"),
        ("checksum", "<u4"),
        ("clock", "<u8"),
        ("node", "<u4"),
        ("stream", "<u2"),
        ("flags", "<u2"),
    ]
)
assert _FRAME_HEADER.itemsize == FRAME_HEADER.size
_RESERVED_FLAGS = np.uint16(~SENDER_FLAGS & 0xFFFF)
_RECORD_START = 8  # a framed event's record is the frame from byte 8: clock..flags, then payload
# A frame header's last 8 bytes (node, stream, flags) are laid out as a slot's bytes 8..16: a
# batch of frames fills those slot fields with one copy of one 64-bit word per event.
_HEADER_IDS_WORD, _SLOT_IDS_WORD = 2, 1
_IDS = ("node", "stream", "flags")


def _offsets_in_word(dtype: np.dtype[Any], word: int) -> list[int]:
    assert dtype.fields is not None
    return [int(dtype.fields[name][1]) - 8 * word for name in _IDS]


assert _offsets_in_word(_FRAME_HEADER, _HEADER_IDS_WORD) == _offsets_in_word(
    EVENT_DTYPE, _SLOT_IDS_WORD
)
_NEWLINE = ord("\n")


@dataclass(frozen=True)
class SequencerStats:
    received: int
    accepted: int
    text: int
    framed: int
    drops: dict[str, int]
    clock_ignored: int
    rate: float  # events accepted in the last whole second
    history: tuple[int, ...]  # accepted per second, oldest first


class Sequencer:
    """Receives events on one UDP address and journals them; see the module docstring."""

    def __init__(
        self,
        settings: SequencerSettings,
        journal_path: Path,
        *,
        sock: socket.socket | None = None,
        stats: SharedStats | None = None,
    ) -> None:
        """Open the journal and bind ``settings.udp`` (or receive on ``sock``, bound already).

        ``stats``: where the counters are published after every batch (the block the console
        reads, see ingest_stats.py); counting goes on from the values found there."""
        assert settings.udp is not None
        self.settings = settings
        host, port = parse_address(settings.udp)
        self.shared = stats if stats is not None else SharedStats()
        # A failure below closes what was opened before it (the journal's lock, the bound port).
        with contextlib.ExitStack() as undo:
            # The journal first: a journal that cannot be used stops the console before anything.
            self.journal = Journal(journal_path, settings.capacity, settings.blob_size)
            undo.callback(self.journal.close)
            try:
                if sock is None:
                    self._socket, self.socket_info = open_udp_socket(host, port, settings.rcvbuf)
                else:
                    self._socket, self.socket_info = sock, socket_info(sock)
                undo.callback(self._socket.close)
                self.receiver: Receiver  # the first buffer's; all share its backend and socket
                self.receiver, self.backend_note = make_receiver(self._socket, settings.backend)
                undo.callback(self.receiver.close)
                self._receivers = [self.receiver]
                while len(self._receivers) < PIPELINE_BUFFERS:
                    receiver = type(self.receiver)(
                        self._socket, self.receiver.batch, self.receiver.stride
                    )
                    undo.callback(receiver.close)
                    self._receivers.append(receiver)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise ConsoleError(f"cannot receive events on {settings.udp}: {reason}") from None
            undo.pop_all()
        self._free: queue.SimpleQueue[Receiver] = queue.SimpleQueue()
        self._full: queue.SimpleQueue[tuple[Receiver, int] | None] = queue.SimpleQueue()
        for receiver in self._receivers:
            self._free.put(receiver)
        self.clock = HybridClock(self.journal.last_lamport)
        # Counting goes on from what an earlier ingest process published (0 in a new block).
        words = self.shared.words
        self._received = int(words[shared.RECEIVED])
        self._accepted = int(words[shared.ACCEPTED])
        self._text = int(words[shared.TEXT])
        self._framed = int(words[shared.FRAMED])
        self._drops = {
            cause: int(words[index]) for cause, index in zip(DROP_CAUSES, shared.DROPS, strict=True)
        }
        self._clock_ignored_base = int(words[shared.CLOCK_IGNORED])
        if sock is None:  # a socket of our own: its drops count from now
            words[shared.KERNEL_BASE] = kernel_drops(self._socket) or 0
        self._kernel_base = int(words[shared.KERNEL_BASE])
        words[shared.FAILED] = 0
        words[shared.WRITER_PID] = os.getpid()
        self.shared.write_text("failure", None)
        self._history: deque[int] = deque(maxlen=RATE_HISTORY)
        self._second = int(time.monotonic())
        self._this_second = 0
        self._stop = threading.Event()
        self._stopping = threading.Lock()
        # Per staging buffer: views of every row's record for one record length (_record_crcs).
        self._record_views: dict[int, tuple[int, list[memoryview]]] = {}
        self._threads: list[threading.Thread] = []
        # Set when the sequencer stopped receiving or ingesting for good (see the docstring).
        self.failure: BaseException | None = None
        self.ingest_errors = int(words[shared.INGEST_ERRORS])  # batches that raised (and were lost)
        self.lost = int(words[shared.LOST])  # datagrams in those batches
        self.last_error: str | None = self.shared.read_text("last_error")
        self._failures_in_a_row = 0
        self._logged: set[str] = set()

    @property
    def address(self) -> str:
        host, port = self.socket_info.address[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        _shorten_gil_switch_interval()
        for target, name in ((self._receive_loop, "receive"), (self._ingest_loop, "ingest")):
            thread = threading.Thread(target=target, name=f"lacrimosa-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Journal what has arrived (for at most ``STOP_DRAIN_SECONDS``), stop the threads,
        close the socket and the journal."""
        with self._stopping:  # safe to call twice, and from two threads at once
            if self.journal.closed:
                return
            self._stop.set()
            for thread in self._threads:
                thread.join()
            for receiver in self._receivers:
                receiver.close()
            self._socket.close()
            self.journal.close()

    def drain(self) -> int:
        """Journal what the socket holds now, through the same two threads, and return how many
        datagrams that was. Only while the sequencer is not started (benchmarks, tools)."""
        if self._threads:
            raise RuntimeError("drain() is for a sequencer that is not started")
        _shorten_gil_switch_interval()
        before = self._received
        receiving = threading.Thread(target=self._receive_loop, args=(True,), daemon=True)
        receiving.start()
        self._ingest_loop()
        receiving.join()
        if self.failure is not None:
            raise self.failure
        return self._received - before

    def _receive_loop(self, until_empty: bool = False) -> None:
        receiver = self._free.get()
        try:
            while not (until_empty or self._stop.is_set()):
                if receiver.wait(WAIT_TIMEOUT):
                    receiver = self._hand_over(receiver)
            # What arrived before the stop (or the drain) is journaled too. At a stop, for a
            # bounded time: a sender that keeps flooding would never let the socket run empty.
            deadline = math.inf if until_empty else time.monotonic() + STOP_DRAIN_SECONDS
            while (
                self.failure is None
                and time.monotonic() < deadline
                and (handed := self._hand_over(receiver)) is not receiver
            ):
                receiver = handed
        except BaseException as exc:  # the console goes on, without events: said loudly
            self._failed("receive", exc, final=True)
        finally:
            self._free.put(receiver)
            self._full.put(None)  # the ingest thread ends after what was handed over

    def _hand_over(self, receiver: Receiver) -> Receiver:
        """Receive into ``receiver``'s buffer; if anything came, pass it on and take a free one."""
        count = receiver.receive()
        if count == 0:
            return receiver
        self._full.put((receiver, count))
        return self._free.get()

    def _ingest_loop(self) -> None:
        try:
            while True:
                try:
                    batch = self._full.get(timeout=WAIT_TIMEOUT)
                except queue.Empty:
                    self._tick()
                    continue
                if batch is None:
                    break
                receiver, count = batch
                try:
                    self.ingest(receiver, count)
                    self._failures_in_a_row = 0
                except Exception as exc:
                    self._ingest_failed(exc, count)
                finally:
                    self._free.put(receiver)
                self._tick()
        except BaseException as exc:
            if self.failure is None:
                self._failed("ingest", exc, final=True)
            self._stop.set()  # the receive thread ends too (it may wait for a buffer: give one)
            for receiver in self._receivers:
                self._free.put(receiver)

    def _ingest_failed(self, exc: Exception, count: int) -> None:
        """One batch could not be journaled: count it, say so, and go on (or give up, raising,
        after too many in a row)."""
        self.ingest_errors += 1
        self.lost += count
        self._failures_in_a_row += 1
        final = self._failures_in_a_row >= MAX_CONSECUTIVE_INGEST_ERRORS
        self._failed("ingest", exc, final=final)
        if final:
            raise exc

    def _failed(self, thread: str, exc: BaseException, *, final: bool) -> None:
        text = f"{type(exc).__name__}: {exc}"
        self.last_error = text
        self.shared.write_text("last_error", text)
        if final:
            self.failure = exc
            self.shared.write_text("failure", text)
            self.shared.words[shared.FAILED] = 1
        self._publish()
        if text in self._logged and not final:
            return
        if len(self._logged) < MAX_LOGGED_ERRORS:
            self._logged.add(text)
            outcome = (
                "events are no longer received"
                if final
                else f"a batch of datagrams was lost ({self.lost:,} so far); ingest goes on"
            )
            with contextlib.suppress(OSError, ValueError):  # stderr closed: status still says it
                print(f"lacrimosa: sequencer {thread} failed: {text}; {outcome}", file=sys.stderr)
                if thread == "ingest" and (final or len(self._logged) == 1):
                    traceback.print_exception(exc, file=sys.stderr)

    def _tick(self) -> None:
        second = int(time.monotonic())
        if second != self._second:
            # Seconds with no wake-up at all were idle ones.
            seconds = [self._this_second] + [0] * min(RATE_HISTORY, second - self._second - 1)
            self._history.extend(seconds)
            self.shared.append_history(seconds)
            self._second = second
            self._this_second = 0
            kernel = kernel_drops(self._socket)
            if kernel is not None:
                self._drops["kernel"] = kernel - self._kernel_base
            self._publish()

    # -- the pipeline ----------------------------------------------------------------------------

    def ingest(self, receiver: Receiver, count: int) -> None:
        """Check, stamp and journal the ``count`` datagrams in ``receiver``'s staging rows."""
        staging = receiver.staging
        lengths = receiver.lengths[:count]
        raw_header = staging[:count, : FRAME_HEADER.size].copy()
        header = raw_header.view(_FRAME_HEADER).ravel()
        if self._ingest_fixed_size_frames(receiver, count, raw_header, header):
            return
        framed = (header["magic"] == _MAGIC_WORD) & (lengths >= FRAME_HEADER.size)
        framed &= (header["flags"] & _RESERVED_FLAGS) == 0
        every_row_framed = bool(framed.all()) and not receiver.truncated[:count].any()
        if every_row_framed:  # a busy sender's batch: no text or malformed rows to sort out
            starts = np.full(count, _RECORD_START)
            record_lengths = lengths - _RECORD_START
            candidates = framed
        else:
            framed, text, starts, record_lengths = self._sort_out(receiver, count, framed)
            candidates = framed | text
        crcs = self._record_crcs(
            staging, count, candidates, starts, record_lengths, every_row_framed
        )
        bad_checksum = framed & (crcs != header["checksum"])
        accepted = candidates & ~bad_checksum
        kept = int(accepted.sum())
        self._drops["bad_checksum"] += int(bad_checksum.sum())
        if kept == 0:
            self._received += count
            return
        if kept < count:
            keep = np.flatnonzero(accepted)
            staging, starts, record_lengths = staging[keep], starts[keep], record_lengths[keep]
            header, crcs, framed = header[keep], crcs[keep], framed[keep]
        all_framed = every_row_framed or bool(framed.all())
        fields = np.zeros(kept, EVENT_DTYPE)
        if all_framed:
            stamps, ignored = self.clock.stamp(header["clock"])
            fields["node"] = header["node"]
            fields["stream"] = header["stream"]
            flags = header["flags"].copy()
        else:
            stamps, ignored = self.clock.stamp(np.where(framed, header["clock"], 0))
            fields["node"] = np.where(framed, header["node"], 0)
            fields["stream"] = np.where(framed, header["stream"], 0)
            flags = np.where(framed, header["flags"], TEXT).astype(np.uint16)
        if ignored.any():
            flags[ignored] |= CLOCK_IGNORED
        fields["lamport"] = stamps
        fields["flags"] = flags
        self.journal.append(staging, starts, record_lengths, fields, crcs)
        framed_count = kept if all_framed else int(framed.sum())
        self._count_journaled(count, framed_count, kept - framed_count)

    def _ingest_fixed_size_frames(
        self, receiver: Receiver, count: int, raw_header: np.ndarray, header: np.ndarray
    ) -> bool:
        """A busy sender's batch: every datagram a frame of the same size with a good checksum.
        Journaled here with a third of the general path's array operations (measured per batch
        of 512 64-byte frames: the general path's sorting out, stamping and placing cost about
        as much as the CRCs); False, with nothing done, for any other batch."""
        lengths = receiver.lengths[:count]
        length = int(lengths[0])
        if not FRAME_HEADER.size <= length <= receiver.stride or not (lengths == length).all():
            return False
        if not (header["magic"] == _MAGIC_WORD).all() or (header["flags"] & _RESERVED_FLAGS).any():
            return False
        record_length = length - _RECORD_START
        crcs = self._fixed_size_record_crcs(receiver.staging, count, record_length)
        if (crcs != header["checksum"]).any():
            return False  # the general path counts the bad ones and keeps the others
        stamps, ignored = self.clock.stamp(header["clock"])
        fields = np.empty(count, EVENT_DTYPE)
        slot_words = fields.view(np.uint64).reshape(count, EVENT_DTYPE.itemsize // 8)
        slot_words[:, 0] = stamps  # lamport
        slot_words[:, _SLOT_IDS_WORD] = raw_header.view(np.uint64)[:, _HEADER_IDS_WORD]
        if ignored.any():
            fields["flags"][ignored] |= CLOCK_IGNORED
        self.journal.append(receiver.staging, _RECORD_START, record_length, fields, crcs)
        self._count_journaled(count, count, 0)
        return True

    def _count_journaled(self, received: int, framed: int, text: int) -> None:
        """Count a batch of ``received`` datagrams whose ``framed`` and ``text`` events were
        journaled, and publish the counters."""
        self._framed += framed
        self._text += text
        self._accepted += framed + text
        self._this_second += framed + text
        self._received += received  # last: a reader that sees it sees the events journaled
        self._publish()

    def _publish(self) -> None:
        """Write the counters into the shared block (accepted before received, as in stats())."""
        words = self.shared.words
        words[shared.TEXT] = self._text
        words[shared.FRAMED] = self._framed
        for cause, index in zip(DROP_CAUSES, shared.DROPS, strict=True):
            words[index] = self._drops[cause]
        words[shared.CLOCK_IGNORED] = self._clock_ignored_base + self.clock.ignored
        words[shared.INGEST_ERRORS] = self.ingest_errors
        words[shared.LOST] = self.lost
        words[shared.ACCEPTED] = self._accepted
        words[shared.RECEIVED] = self._received

    def _sort_out(
        self, receiver: Receiver, count: int, framed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The general case: which rows are frames, which text, which are dropped (counted by
        cause here); and where each row's record starts and how long it is."""
        staging = receiver.staging
        lengths = receiver.lengths[:count]
        oversize = receiver.truncated[:count]
        looks_framed = staging[:count, 0] == MAGIC[0]  # 0xA7 never starts UTF-8 text
        framed = framed & ~oversize
        malformed = looks_framed & ~framed & ~oversize
        text = ~looks_framed & ~oversize
        # One trailing newline (echo, nc) is not part of the event.
        last = staging[np.arange(count), np.clip(lengths - 1, 0, staging.shape[1] - 1)]
        text_lengths = lengths - ((lengths > 0) & (last == _NEWLINE))
        malformed |= text & (text_lengths == 0)
        text &= text_lengths > 0
        for row in np.flatnonzero(text).tolist():
            try:
                bytes(staging[row, : text_lengths[row]]).decode("utf-8")
            except UnicodeDecodeError:
                malformed[row] = True
                text[row] = False
        self._drops["oversize"] += int(oversize.sum())
        self._drops["malformed"] += int(malformed.sum())
        starts = np.where(framed, _RECORD_START, 0)
        record_lengths = np.where(framed, lengths - _RECORD_START, text_lengths)
        return framed, text, starts, record_lengths

    def _record_crcs(
        self,
        staging: np.ndarray,
        count: int,
        candidates: np.ndarray,
        starts: np.ndarray,
        lengths: np.ndarray,
        every_row_framed: bool,
    ) -> np.ndarray:
        """CRC-32 of each candidate row's record (0 for the others)."""
        length = int(lengths[0])
        if every_row_framed and (lengths == length).all():
            return self._fixed_size_record_crcs(staging, count, length)
        crcs = np.zeros(count, np.uint32)
        rows = np.flatnonzero(candidates)
        begins = rows * staging.shape[1] + starts[rows]
        crcs[rows] = crc32_slices(staging.data.cast("B"), begins, begins + lengths[rows])
        return crcs

    def _fixed_size_record_crcs(self, staging: np.ndarray, count: int, length: int) -> np.ndarray:
        """CRC-32 of the framed records of the first ``count`` rows, all ``length`` bytes long
        (senders of fixed-size events): over views of the rows made once per staging buffer."""
        cached_length, views = self._record_views.get(id(staging), (-1, []))
        if cached_length != length:
            flat = staging.data.cast("B")
            stride = staging.shape[1]
            views = [
                flat[row * stride + _RECORD_START : row * stride + _RECORD_START + length]
                for row in range(staging.shape[0])
            ]
            self._record_views[id(staging)] = (length, views)
        # A list first: measured faster than np.fromiter over the same map.
        return np.array(list(map(zlib.crc32, views[:count])), np.uint32)

    # -- reading ---------------------------------------------------------------------------------

    def stats(self) -> SequencerStats:
        history = tuple(self._history)
        # Accepted before received: the ingest thread adds to received last, so read this way
        # a snapshot never shows more accepted than received.
        accepted = self._accepted
        return SequencerStats(
            received=self._received,
            accepted=accepted,
            text=self._text,
            framed=self._framed,
            drops=dict(self._drops),
            clock_ignored=self.clock.ignored,
            rate=float(history[-1]) if history else 0.0,
            history=history,
        )

    def events(
        self,
        lines: int,
        *,
        node: int | None = None,
        stream: int | None = None,
        below: int | None = None,
    ) -> list[Event]:
        """The newest ``lines`` events (see :meth:`Journal.newest_events`)."""
        return self.journal.newest_events(lines, node, stream, below)

    def status(self) -> dict[str, Any]:
        failure = self.failure
        return sequencer_status(
            self,
            self.receiver.name,
            last_error=self.last_error,
            failure=None if failure is None else f"{type(failure).__name__}: {failure}",
        )

    def warnings(self) -> list[str]:
        """What is wrong with the sequencer, in a sentence each (empty when all is well)."""
        out = []
        if self.failure is not None:
            out.append(
                f"the event sequencer stopped: {type(self.failure).__name__}: {self.failure} "
                "(events are no longer received)"
            )
        elif self.ingest_errors:
            out.append(
                f"the event sequencer lost {self.lost:,} datagrams in {self.ingest_errors:,} "
                f"failed batches (last: {self.last_error})"
            )
        repairs = self.journal.recovery.repairs
        if repairs:
            out.append(f"the event journal was repaired on opening: {'; '.join(repairs)}")
        return out


class _Reporting(Protocol):
    """What :func:`sequencer_status` reads: a Sequencer, or the console's IngestProcess."""

    @property
    def address(self) -> str: ...
    @property
    def backend_note(self) -> str | None: ...
    @property
    def socket_info(self) -> SocketInfo: ...
    @property
    def journal(self) -> Journal: ...
    @property
    def ingest_errors(self) -> int: ...
    @property
    def lost(self) -> int: ...
    def stats(self) -> SequencerStats: ...


def sequencer_status(
    source: _Reporting, backend: str, last_error: str | None, failure: str | None
) -> dict[str, Any]:
    """The sequencer's part of the console's status (one shape, whichever process ingests)."""
    stats = source.stats()
    journal = source.journal
    tail, head = journal.bounds()
    ring, blob = journal.utilisation()
    info = source.socket_info
    out: dict[str, Any] = {
        "udp": source.address,
        "backend": backend,
        "backend_note": source.backend_note,
        "rcvbuf": info.rcvbuf,
        "rcvbuf_forced": info.forced,
        "received": stats.received,
        "accepted": stats.accepted,
        "text": stats.text,
        "framed": stats.framed,
        "rate": stats.rate,
        "drops": stats.drops,
        "clock_ignored": stats.clock_ignored,
        "journal": {
            "path": str(journal.path),
            "capacity": journal.capacity,
            "blob_bytes": journal.blob_size,
            "events": head - tail,
            "first_seq": tail,
            "next_seq": head,
            "ring_used": round(ring, 4),
            "blob_used": round(blob, 4),
            "last_lamport": journal.last_lamport,
            "opened": journal.recovery.describe(),
        },
        "ingest_errors": source.ingest_errors,
        "lost": source.lost,
    }
    if last_error is not None:
        out["last_error"] = last_error
    if failure is not None:
        out["failure"] = failure
    return out


def _shorten_gil_switch_interval() -> None:
    """The receive thread needs the GIL for a moment between two receive calls; with the default
    5 ms switch interval it would wait that long behind the ingest thread's Python work each
    time. 1 ms keeps it fed (process-wide, and cheap for the other threads: they switch more)."""
    sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL))
