"""Events: the 32-byte ``CausalEvent`` slot, the datagram formats, the order, and the clock.

Two datagram formats arrive on the sequencer's UDP port:

* **plain text** — any UTF-8 datagram (``echo "deploy started" | nc -u -w1 127.0.0.1 9000``); one
  trailing newline is dropped. It is node 0, stream 0, and carries the ``TEXT`` flag.
* **framed binary** — a 24-byte header, then the payload (all little-endian)::

      0  4  magic      A7 4C 51 01  (0xA7 never starts UTF-8 text, so the two cannot be confused)
      4  4  checksum   CRC-32 (zlib/IEEE) of bytes 8..end
      8  8  clock      the sender's hybrid logical clock, or 0 if it keeps none
     16  4  node_id
     20  2  stream_id
     22  2  flags      bits 0-11 are the sender's; bits 12-15 belong to the sequencer and must be 0

Each accepted event becomes one ``CausalEvent`` slot in the journal, and its *record* goes to the
journal's blob region: the frame from byte 8 on (so the sender's clock is kept) or the text. The
slot checksum is the record's CRC-32 folded with a digest of the slot's own fields, so recovery can
tell a completely written slot from a torn one with one CRC per slot.

Events are ordered by ``(lamport, node, stream)``. ``lamport`` is a hybrid logical clock stamped on
arrival: milliseconds since the epoch in the high 48 bits and a counter in the low 16, strictly
increasing, never below a sender's clock + 1 (so causality carried by senders is kept), and
recovered from the journal so that it stays monotonic across restarts.
"""

from __future__ import annotations

import re
import struct
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

EVENT_DTYPE = np.dtype(
    [
        ("lamport", "<u8"),
        ("node", "<u4"),
        ("stream", "<u2"),
        ("flags", "<u2"),
        ("payload_offset", "<u8"),  # logical offset of the record in the journal's blob region
        ("checksum", "<u4"),
        # The reference layout leaves these 4 bytes as padding; they hold the record's length.
        ("payload_len", "<u4"),
    ]
)
assert EVENT_DTYPE.itemsize == 32

MAGIC = b"\xa7LQ\x01"
FRAME_HEADER = struct.Struct("<4sIQIHH")
assert FRAME_HEADER.size == 24
# What of the frame header a record keeps: clock, node, stream, flags.
RECORD_HEADER_SIZE = FRAME_HEADER.size - 8
RECORD_HEADER = struct.Struct("<QIHH")
CHECKSUM = struct.Struct("<I")

# What makes a UTF-8 payload binary data rather than text, shown as hex: NUL, DEL and the C0
# controls text does not carry. Tab, newline, carriage return, backspace, BEL and ESC are text
# (coloured log lines carry ESC, and OSC sequences end in BEL); a text payload reaches a terminal
# only through terminal_safe, which makes its escapes inert.
_BINARY = re.compile("[\x00-\x06\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]")

SENDER_FLAGS = 0x0FFF
TEXT = 0x8000  # the record is plain text (no record header)
CLOCK_IGNORED = 0x4000  # the sender's clock was too far ahead of ours and was not followed

# A sender clock more than this far ahead of the physical clock is not followed: one wrong sender
# would otherwise drag every later timestamp into the future.
MAX_CLOCK_AHEAD_MS = 60_000
COUNTER_BITS = 16
# A lamport read back from a journal is believed only if its time is at most this far ahead of
# now (and it is below 2**63, where the clock's int64 arithmetic ends): a damaged journal must not
# move the clock years ahead, nor overflow it.
MAX_LAMPORT_AHEAD_MS = 86_400_000
LAMPORT_LIMIT = 1 << 63

_DIGEST_MULTIPLIERS = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93],
    dtype=np.uint64,
)


def encode_frame(
    payload: bytes, *, node: int = 0, stream: int = 0, flags: int = 0, clock: int = 0
) -> bytes:
    """One framed datagram (what a sender puts on the wire)."""
    if flags & ~SENDER_FLAGS:
        raise ValueError("flags bits 12-15 are reserved for the sequencer")
    body = RECORD_HEADER.pack(clock, node, stream, flags) + payload
    return MAGIC + CHECKSUM.pack(zlib.crc32(body)) + body


def fields_digest(slots: np.ndarray) -> np.ndarray:
    """A 32-bit digest of every slot field but the checksum (vectorised, uint32 per slot)."""
    m = _DIGEST_MULTIPLIERS
    h = slots["lamport"] * m[0]
    ids = (
        (slots["node"].astype(np.uint64) << np.uint64(32))
        | (slots["stream"].astype(np.uint64) << np.uint64(16))
        | slots["flags"].astype(np.uint64)
    )
    h ^= ids * m[1]
    h ^= slots["payload_offset"] * m[2]
    h ^= slots["payload_len"].astype(np.uint64) * m[3]
    h ^= h >> np.uint64(29)
    h *= m[0]
    h ^= h >> np.uint64(32)
    digest: np.ndarray = (h & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return digest


def crc32_slices(buffer: memoryview, begins: np.ndarray, ends: np.ndarray) -> list[int]:
    """CRC-32 of ``buffer[begins[i]:ends[i]]`` for each i: one ``zlib.crc32`` call each, driven
    by ``map`` so that no Python bytecode runs per slice (this is the sequencer's hot path)."""
    return list(
        map(zlib.crc32, map(buffer.__getitem__, map(slice, begins.tolist(), ends.tolist())))
    )


def matching(slots: np.ndarray, node: int | None = None, stream: int | None = None) -> np.ndarray:
    """Which ``slots`` are from ``node`` and on ``stream`` (either may be None: any)."""
    keep = np.ones(len(slots), bool)
    if node is not None:
        keep &= slots["node"] == node
    if stream is not None:
        keep &= slots["stream"] == stream
    return keep


def order_key(slots: np.ndarray) -> np.ndarray:
    """Indices that sort ``slots`` by ``(lamport, node, stream)``."""
    return np.lexsort((slots["stream"], slots["node"], slots["lamport"]))


def plausible_lamports(lamports: np.ndarray, now_ms: int | None = None) -> np.ndarray:
    """Which ``lamports`` (uint64) a clock may be set from: below 2**63 and at most
    ``MAX_LAMPORT_AHEAD_MS`` ahead of now (bool per value)."""
    if now_ms is None:
        now_ms = time.time_ns() // 1_000_000
    values = np.asarray(lamports, dtype=np.uint64)
    latest = np.uint64(now_ms + MAX_LAMPORT_AHEAD_MS)
    plausible: np.ndarray = (values < np.uint64(LAMPORT_LIMIT)) & (
        (values >> np.uint64(COUNTER_BITS)) <= latest
    )
    return plausible


def lamport_wall_time(lamport: int) -> float:
    """The wall-clock time (seconds since the epoch) a lamport timestamp carries."""
    return (lamport >> COUNTER_BITS) / 1000.0


class HybridClock:
    """Stamps batches of events with strictly increasing hybrid logical timestamps."""

    def __init__(self, last: int = 0) -> None:
        # The journal checks what it hands over; this is the last line: a value the int64
        # arithmetic below cannot hold would kill the thread that stamps.
        if not 0 <= last < LAMPORT_LIMIT >> 1:
            raise ValueError(f"a clock cannot start from lamport {last}")
        self.last = last
        self.ignored = 0  # sender clocks not followed because they were too far ahead

    def _physical(self) -> int:
        return (time.time_ns() // 1_000_000) << COUNTER_BITS

    def stamp(self, sender_clocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Timestamps for a batch (uint64), and which sender clocks were ignored (bool).

        Each stamp is ``max(previous + 1, physical now, sender clock + 1)``. With ``t_i = s_i - i``
        the recurrence becomes a running maximum, so the batch needs no Python loop.
        """
        n = len(sender_clocks)
        now = self._physical()
        # Compared unsigned: a sender's clock is any 64-bit value, and one at 2**63 or above would
        # turn negative as int64 and slip past the check. Those followed stay far below 2**63.
        clocks = np.asarray(sender_clocks, dtype=np.uint64)
        if n and int(clocks.max()) < now:
            # No sender clock to follow (none at or past our physical time; senders that keep
            # none send 0): the same stamps as below, counting up from max(previous + 1, now),
            # in 2 array operations instead of 12 (this runs once per received batch).
            first = max(self.last + 1, now)
            self.last = first + n - 1
            return np.arange(first, first + n, dtype=np.uint64), np.zeros(n, bool)
        ahead = clocks > np.uint64(now + (MAX_CLOCK_AHEAD_MS << COUNTER_BITS))
        wanted = np.where(ahead, 0, clocks).astype(np.int64) + 1
        np.maximum(wanted, now, out=wanted)
        index = np.arange(n, dtype=np.int64)
        wanted -= index
        wanted[0:1] = np.maximum(wanted[0:1], self.last + 1)
        stamps = np.maximum.accumulate(wanted) + index
        if n:
            self.last = int(stamps[-1])
        self.ignored += int(ahead.sum())
        return stamps.astype(np.uint64), ahead


@dataclass(frozen=True)
class Event:
    """One event read back from the journal, for display and the protocol."""

    seq: int  # position in the journal: 0 for the first event ever written
    lamport: int
    node: int
    stream: int
    flags: int
    payload: bytes  # the event's payload (text or binary), without the record header
    sender_clock: int | None  # framed events: the clock the sender sent (0 if it keeps none)
    valid: bool  # the slot's checksum matches its fields and record

    @property
    def time(self) -> float:
        return lamport_wall_time(self.lamport)

    @property
    def is_text(self) -> bool:
        return bool(self.flags & TEXT)

    @property
    def sender_flags(self) -> int:
        return self.flags & SENDER_FLAGS

    def payload_text(self) -> str | None:
        """The payload as text if it is UTF-8 text, else None (show it as hex): see _BINARY."""
        try:
            text = self.payload.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return None if _BINARY.search(text) else text

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        """The event ``to_json`` made this from (its payload losslessly: text or hex)."""
        flags = int(data["flags"]) & SENDER_FLAGS
        if data.get("kind") == "text":
            flags |= TEXT
        if data.get("clock_ignored"):
            flags |= CLOCK_IGNORED
        payload = data["text"].encode() if "text" in data else bytes.fromhex(data["hex"])
        return cls(
            seq=int(data["seq"]),
            lamport=int(data["lamport"]),
            node=int(data["node"]),
            stream=int(data["stream"]),
            flags=flags,
            payload=payload,
            sender_clock=data.get("sender_clock"),
            valid=bool(data["valid"]),
        )

    def to_json(self) -> dict[str, object]:
        text = self.payload_text()
        out: dict[str, object] = {
            "seq": self.seq,
            "lamport": self.lamport,
            "time": round(self.time, 3),
            "node": self.node,
            "stream": self.stream,
            "flags": self.sender_flags,
            "kind": "text" if self.is_text else "framed",
            "size": len(self.payload),
            "valid": self.valid,
        }
        if self.sender_clock is not None:
            out["sender_clock"] = self.sender_clock
        if self.flags & CLOCK_IGNORED:
            out["clock_ignored"] = True
        if text is not None:
            out["text"] = text
        else:
            out["hex"] = self.payload.hex()
        return out


def decode_record(seq: int, slot: np.void, record: bytes, valid: bool) -> Event:
    """An :class:`Event` from a slot and its record bytes."""
    return decode_records([seq], np.array([slot], dtype=slot.dtype), [record], [valid])[0]


def decode_records(
    seqs: Sequence[int], slots: np.ndarray, records: Sequence[bytes], valid: Sequence[bool]
) -> list[Event]:
    """:class:`Event` i from ``slots[i]``, ``records[i]`` and ``valid[i]``: the fields are taken
    out of the slots a column at a time (reading a numpy record's fields one event at a time
    cost 6 us an event, most of what a follow batch of 1,000 events took to make)."""
    lamports = slots["lamport"].tolist()
    nodes = slots["node"].tolist()
    streams = slots["stream"].tolist()
    flag_values = slots["flags"].tolist()
    unpack = RECORD_HEADER.unpack_from
    events = []
    for seq, lamport, node, stream, flags, record, ok in zip(
        seqs, lamports, nodes, streams, flag_values, records, valid, strict=True
    ):
        if flags & TEXT or len(record) < RECORD_HEADER_SIZE:
            payload, sender_clock = record, None
        else:
            sender_clock = unpack(record)[0]
            payload = record[RECORD_HEADER_SIZE:]
        events.append(Event(seq, lamport, node, stream, flags, payload, sender_clock, ok))
    return events
