"""The event sequencer: UDP datagrams in, checked, stamped and journaled, in batches.

One thread owns the socket and is the journal's only writer. Each wake-up drains whatever the
kernel holds, a batch (up to a few hundred datagrams) per receive call, and handles each batch with
whole-array numpy operations: classify (framed, text, malformed), parse the frame headers, verify
checksums, stamp lamport timestamps, and append to the journal. The only per-datagram Python work
is one CRC-32 call (driven by ``map``), plus a UTF-8 check for plain-text datagrams.

Every datagram is counted: accepted, or dropped with a cause (``malformed``, ``bad_checksum``,
``oversize``), and the kernel's own drop counter for the socket (``kernel``: the receive buffer
overflowed) is read at most once a second.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import SequencerSettings, parse_address
from .errors import ConsoleError
from .events import (
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
from .journal import Journal
from .udp import Receiver, SocketInfo, kernel_drops, make_receiver, open_udp_socket

DROP_CAUSES = ("malformed", "bad_checksum", "oversize", "kernel")
RATE_HISTORY = 120  # seconds of ingest rate kept for the Overview's sparkline
WAIT_TIMEOUT = 0.2  # how often an idle loop looks at the clock and the stop flag

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

    def __init__(self, settings: SequencerSettings, journal_path: Path) -> None:
        assert settings.udp is not None
        self.settings = settings
        host, port = parse_address(settings.udp)
        # The journal first: a journal that cannot be used stops the console before anything else.
        self.journal = Journal(journal_path, settings.capacity, settings.blob_size)
        try:
            self._socket, self.socket_info = open_udp_socket(host, port, settings.rcvbuf)
        except OSError as exc:
            self.journal.close()
            reason = exc.strerror or str(exc)
            raise ConsoleError(f"cannot receive events on {settings.udp}: {reason}") from None
        self.receiver: Receiver
        self.receiver, self.backend_note = make_receiver(self._socket, settings.backend)
        self.clock = HybridClock(self.journal.last_lamport)
        self._received = 0
        self._accepted = 0
        self._text = 0
        self._framed = 0
        self._drops = dict.fromkeys(DROP_CAUSES, 0)
        self._kernel_base = kernel_drops(self._socket) or 0
        self._history: deque[int] = deque(maxlen=RATE_HISTORY)
        self._second = int(time.monotonic())
        self._this_second = 0
        self._stop = threading.Event()
        # Views of every staging row's record for one record length (see _record_crcs).
        self._uniform_length = -1
        self._uniform_views: list[memoryview] = []
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None

    @property
    def address(self) -> str:
        host, port = self.socket_info.address[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lacrimosa-sequencer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Drain what has arrived, stop the thread, close the socket and the journal cleanly."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.receiver.close()
        self._socket.close()
        self.journal.close()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self.receiver.wait(WAIT_TIMEOUT):
                    self.drain()
                self._tick()
            self.drain()  # what arrived before the stop is kept
        except BaseException as exc:  # reported in status; the console goes on without events
            self.failure = exc

    def drain(self, limit: int = 1 << 30) -> int:
        """Receive and journal until nothing is ready (or ``limit`` datagrams); return the count."""
        done = 0
        while done < limit:
            count = self.receiver.receive()
            if count == 0:
                break
            self.ingest(count)
            done += count
        return done

    def _tick(self) -> None:
        second = int(time.monotonic())
        if second != self._second:
            self._history.append(self._this_second)
            # Seconds with no wake-up at all were idle ones.
            self._history.extend([0] * min(RATE_HISTORY, second - self._second - 1))
            self._second = second
            self._this_second = 0
            kernel = kernel_drops(self._socket)
            if kernel is not None:
                self._drops["kernel"] = kernel - self._kernel_base

    # -- the pipeline ----------------------------------------------------------------------------

    def ingest(self, count: int) -> None:
        """Check, stamp and journal the ``count`` datagrams in the receiver's staging rows."""
        receiver = self.receiver
        staging = receiver.staging
        lengths = receiver.lengths[:count]
        header = staging[:count, : FRAME_HEADER.size].copy().view(_FRAME_HEADER).ravel()
        framed = (header["magic"] == _MAGIC_WORD) & (lengths >= FRAME_HEADER.size)
        framed &= (header["flags"] & _RESERVED_FLAGS) == 0
        every_row_framed = bool(framed.all()) and not receiver.truncated[:count].any()
        if every_row_framed:  # a busy sender's batch: no text or malformed rows to sort out
            starts = np.full(count, _RECORD_START)
            record_lengths = lengths - _RECORD_START
            candidates = framed
        else:
            framed, text, starts, record_lengths = self._sort_out(count, framed)
            candidates = framed | text
        crcs = self._record_crcs(count, candidates, starts, record_lengths, every_row_framed)
        bad_checksum = framed & (crcs != header["checksum"])
        accepted = candidates & ~bad_checksum
        kept = count if every_row_framed else int(accepted.sum())
        if every_row_framed and bad_checksum.any():
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
        self._framed += framed_count
        self._text += kept - framed_count
        self._accepted += kept
        self._this_second += kept
        self._received += count  # last: a reader that sees it sees the events journaled

    def _sort_out(
        self, count: int, framed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The general case: which rows are frames, which text, which are dropped (counted by
        cause here); and where each row's record starts and how long it is."""
        receiver = self.receiver
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
        count: int,
        candidates: np.ndarray,
        starts: np.ndarray,
        lengths: np.ndarray,
        every_row_framed: bool,
    ) -> np.ndarray:
        """CRC-32 of each candidate row's record (0 for the others)."""
        staging = self.receiver.staging
        length = int(lengths[0])
        if every_row_framed and (lengths == length).all():
            # Every record the same size (senders of fixed-size events): views made once.
            if self._uniform_length != length:
                flat = staging.data.cast("B")
                stride = staging.shape[1]
                self._uniform_views = [
                    flat[row * stride + _RECORD_START : row * stride + _RECORD_START + length]
                    for row in range(staging.shape[0])
                ]
                self._uniform_length = length
            return np.array(list(map(zlib.crc32, self._uniform_views[:count])), np.uint32)
        crcs = np.zeros(count, np.uint32)
        rows = np.flatnonzero(candidates)
        begins = rows * staging.shape[1] + starts[rows]
        crcs[rows] = crc32_slices(staging.data.cast("B"), begins, begins + lengths[rows])
        return crcs

    # -- reading ---------------------------------------------------------------------------------

    def stats(self) -> SequencerStats:
        history = tuple(self._history)
        return SequencerStats(
            received=self._received,
            accepted=self._accepted,
            text=self._text,
            framed=self._framed,
            drops=dict(self._drops),
            clock_ignored=self.clock.ignored,
            rate=float(history[-1]) if history else 0.0,
            history=history,
        )

    def events(
        self, lines: int, *, node: int | None = None, stream: int | None = None
    ) -> list[Event]:
        """The newest ``lines`` events, oldest first, from ``node`` / on ``stream`` if given."""
        if node is None and stream is None:
            tail, head = self.journal.bounds()
            return self.journal.read_events(np.arange(max(tail, head - lines), head))
        seqs = self.journal.select(node=node, stream=stream)
        return self.journal.read_events(seqs[max(0, len(seqs) - lines) :])

    def status(self) -> dict[str, Any]:
        stats = self.stats()
        journal = self.journal
        tail, head = journal.bounds()
        ring, blob = journal.utilisation()
        info: SocketInfo = self.socket_info
        out: dict[str, Any] = {
            "udp": self.address,
            "backend": self.receiver.name,
            "backend_note": self.backend_note,
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
        }
        if self.failure is not None:
            out["failure"] = f"{type(self.failure).__name__}: {self.failure}"
        return out
