"""The event journal: one memory-mapped file holding a ring of 32-byte slots and a blob region.

Layout (little-endian)::

    0       4096             header: geometry (checked by CRC) + the live counters below
    4096    capacity * 32    index ring: CausalEvent slots; event ``seq`` lives at ``seq % capacity``
    ...     blob_size        blob region: each event's record, at ``payload_offset % blob_size``

Counters (all only grow; ``seq`` and blob offsets are logical positions since the journal began):

* ``head`` — events written and published; the next event gets ``seq = head``.
* ``tail`` — the oldest event still held. ``[tail, head)`` is what readers can read.
* ``reserve`` / ``blob_reserve`` — how far the batch being written reaches; equal to ``head`` /
  ``blob_head`` between batches. Recovery looks no further than this.

**Overwrite policy.** The journal is a flight recorder: new events are never refused. When the ring
or the blob region is full, the oldest events are retired (``tail`` moves) to make room — an event
is retired when its slot is about to be reused or its record's bytes are about to be overwritten,
whichever comes first. Records never straddle the end of the blob region: a batch that does not
fit before the end starts at the beginning of the next lap. A call with as many events as the ring
holds or more, or more record bytes than half the blob region, is written as two halves (split
again as needed), each a batch of its own.

**Readers and the writer (a seqlock).** The writer, for each batch: (1) publishes the new ``tail``
and the reservation, (2) writes the records, (3) writes the slots, (4) publishes ``head``. A reader
copies what it wants, *then* reads ``tail`` again: anything below the new tail may have been
overwritten while it was copying, so it is dropped and the reader is told it was lapped. Nothing a
reader returns was ever overwritten under it.

**Crash recovery.** The mapping is shared, so a SIGKILLed writer loses nothing it had stored. On
reopen after an unclean close, the slots of the interrupted batch (``[head, reserve)``) are checked
one by one: each is kept if its checksum matches its fields and record and it follows the previous
event in order; the first that does not ends the journal (torn), and the header is fixed up. Then
every held slot's checksum is verified and mismatches are counted as corrupt.

Single writer: the sequencer's ingest thread. Any number of readers, in any thread.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import (
    DEFAULT_JOURNAL_BLOB,
    DEFAULT_JOURNAL_CAPACITY,
    MIN_JOURNAL_BLOB,
    MIN_JOURNAL_CAPACITY,
)
from .errors import JournalError
from .events import EVENT_DTYPE, Event, crc32_slices, decode_record, fields_digest, matching

JOURNAL_MAGIC = b"LQJOURNL"
VERSION = 1
HEADER_SIZE = 4096
SLOT_SIZE = EVENT_DTYPE.itemsize
# magic, version, header size, slot size, (reserved), capacity, blob size, created (ns)
_GEOMETRY = struct.Struct("<8sIIIIQQQ")
_GEOMETRY_CRC = struct.Struct("<I")
_COUNTERS_OFFSET = 64
# Indices into the header's uint64 counters.
HEAD, RESERVE, TAIL, BLOB_HEAD, BLOB_RESERVE, LAST_LAMPORT, CLEAN = range(7)

# Records shorter than this are gathered with one vectorised mask; longer ones one copy each, where
# the per-call cost is small beside the bytes moved.
_MASK_GATHER_MAX = 256


@dataclass(frozen=True)
class RecoveryReport:
    created: bool  # a new journal was made
    clean: bool  # the last writer closed it cleanly
    events: int  # events held after opening
    kept: int  # events of an interrupted batch that were complete and kept
    torn: int  # slots of an interrupted batch that were rejected
    corrupt: int  # held slots whose checksum does not match
    seconds: float

    def describe(self) -> str:
        if self.created:
            return "new journal"
        state = "clean" if self.clean else "recovered after an unclean stop"
        parts = [f"{self.events:,} events, {state}"]
        if self.kept or self.torn:
            parts.append(f"{self.kept} kept and {self.torn} torn from the interrupted write")
        if self.corrupt:
            parts.append(f"{self.corrupt} corrupt")
        return ", ".join(parts) + f" ({self.seconds * 1000:.0f} ms)"


@dataclass(frozen=True)
class SlotBatch:
    """Slots copied out of the journal: ``slots[i]`` is event ``seqs[i]``."""

    seqs: np.ndarray  # int64
    slots: np.ndarray  # EVENT_DTYPE
    lapped: int = 0  # events the reader asked for that had already been overwritten


class Journal:
    """One journal file, open for writing by this process (an exclusive lock is held)."""

    def __init__(
        self,
        path: Path,
        capacity: int = DEFAULT_JOURNAL_CAPACITY,
        blob_size: int = DEFAULT_JOURNAL_BLOB,
    ) -> None:
        self.path = Path(path)
        if capacity < MIN_JOURNAL_CAPACITY or blob_size < MIN_JOURNAL_BLOB:
            raise JournalError(
                f"{self.path}: a journal needs at least {MIN_JOURNAL_CAPACITY} slots and "
                f"{MIN_JOURNAL_BLOB >> 20} MiB of blob space"
            )
        started = time.perf_counter()
        created = not self.path.exists()
        if created:
            self._create(capacity, blob_size)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            self._lock()
            self.capacity, self.blob_size = self._check_geometry(capacity, blob_size)
            self._map = mmap.mmap(self._fd, self._expected_size())
        except BaseException:
            os.close(self._fd)
            raise
        self._counters = np.ndarray((8,), "<u8", buffer=self._map, offset=_COUNTERS_OFFSET)
        self.slots = np.ndarray((self.capacity,), EVENT_DTYPE, buffer=self._map, offset=HEADER_SIZE)
        self.blob = np.ndarray(
            (self.blob_size,),
            np.uint8,
            buffer=self._map,
            offset=HEADER_SIZE + self.capacity * SLOT_SIZE,
        )
        self._blob_view = self.blob.data  # the same bytes, for slicing and CRCs
        self._check_counters()
        clean = bool(self._counters[CLEAN])
        kept = torn = corrupt = 0
        if not created and not clean:
            kept, torn = self._recover_interrupted_batch()
            corrupt = self.verify()
        self._counters[CLEAN] = 0  # until close(): a crash from here on is an unclean stop
        self.recovery = RecoveryReport(
            created=created,
            clean=clean or created,
            events=self.head - self.tail,
            kept=kept,
            torn=torn,
            corrupt=corrupt,
            seconds=time.perf_counter() - started,
        )
        self.closed = False

    # -- opening ---------------------------------------------------------------------------------

    @property
    def _blob_start(self) -> int:
        return HEADER_SIZE + self.capacity * SLOT_SIZE

    def _expected_size(self) -> int:
        return self._blob_start + self.blob_size

    def _create(self, capacity: int, blob_size: int) -> None:
        # Built under a temporary name and renamed: a half-made file never carries the real name.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.new")
        geometry = _GEOMETRY.pack(
            JOURNAL_MAGIC, VERSION, HEADER_SIZE, SLOT_SIZE, 0, capacity, blob_size, time.time_ns()
        )
        size = HEADER_SIZE + capacity * SLOT_SIZE + blob_size
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            try:
                # The disk space is taken now: a full disk is an error here, at start, rather
                # than a SIGBUS (which kills the console) when the mapping first writes a page.
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                os.unlink(temporary)
                raise JournalError(
                    f"{self.path}: cannot make the event journal ({size / 2**20:.0f} MiB): "
                    f"{exc.strerror or exc} (set [sequencer] capacity and blob smaller, or free "
                    "some disk space)"
                ) from None
            os.pwrite(fd, geometry + _GEOMETRY_CRC.pack(zlib.crc32(geometry)), 0)
            os.pwrite(fd, struct.pack("<Q", 1), _COUNTERS_OFFSET + CLEAN * 8)
        finally:
            os.close(fd)
        os.rename(temporary, self.path)

    def _check_counters(self) -> None:
        """Refuse counters that no writer could have left (a damaged file), before trusting them."""
        head, reserve, tail = (int(self._counters[i]) for i in (HEAD, RESERVE, TAIL))
        blob_head, blob_reserve = int(self._counters[BLOB_HEAD]), int(self._counters[BLOB_RESERVE])
        if not (
            tail <= head <= 1 << 62
            and head - tail <= self.capacity
            and head <= reserve <= head + self.capacity
            and blob_head <= blob_reserve <= 1 << 62
        ):
            fcntl.flock(self._fd, fcntl.LOCK_UN)  # the map (freed with this object) holds a dup
            os.close(self._fd)
            raise JournalError(
                f"{self.path}: refusing to use this file as the event journal: its counters are "
                "inconsistent (a damaged file?); move it away to start a new one"
            )

    def _lock(self) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JournalError(f"{self.path}: the journal is in use by another process") from None

    def _check_geometry(self, capacity: int, blob_size: int) -> tuple[int, int]:
        size = os.fstat(self._fd).st_size
        head = os.pread(self._fd, _GEOMETRY.size + _GEOMETRY_CRC.size, 0)
        refuse = f"{self.path}: refusing to use this file as the event journal"
        if len(head) < _GEOMETRY.size + _GEOMETRY_CRC.size or head[:8] != JOURNAL_MAGIC:
            raise JournalError(
                f"{refuse}: it is not a lacrimosa journal (move it away, or set "
                "[sequencer] journal to another path)"
            )
        _, version, header_size, slot_size, _, file_capacity, file_blob, _ = _GEOMETRY.unpack_from(
            head
        )
        if version != VERSION or header_size != HEADER_SIZE or slot_size != SLOT_SIZE:
            raise JournalError(
                f"{refuse}: it is a version {version} journal and this lacrimosa reads version "
                f"{VERSION}"
            )
        (crc,) = _GEOMETRY_CRC.unpack_from(head, _GEOMETRY.size)
        if crc != zlib.crc32(head[: _GEOMETRY.size]):
            raise JournalError(f"{refuse}: its header is damaged (checksum mismatch)")
        expected = HEADER_SIZE + file_capacity * SLOT_SIZE + file_blob
        if size != expected:
            state = "truncated" if size < expected else "longer than its header says"
            raise JournalError(f"{refuse}: it is {state} ({size:,} bytes, expected {expected:,})")
        if (file_capacity, file_blob) != (capacity, blob_size):
            raise JournalError(
                f"{refuse}: it holds {file_capacity:,} slots and {file_blob:,} blob bytes, the "
                f"config asks for {capacity:,} and {blob_size:,} (set them to match, or move the "
                "journal away to start a new one)"
            )
        return int(file_capacity), int(file_blob)

    # -- counters --------------------------------------------------------------------------------

    @property
    def head(self) -> int:
        return int(self._counters[HEAD])

    @property
    def tail(self) -> int:
        return int(self._counters[TAIL])

    @property
    def last_lamport(self) -> int:
        return int(self._counters[LAST_LAMPORT])

    @property
    def blob_head(self) -> int:
        return int(self._counters[BLOB_HEAD])

    def bounds(self) -> tuple[int, int]:
        """``(tail, head)``: the events that can be read now (``tail <= head``)."""
        head = int(self._counters[HEAD])
        # Tail is read second, so it is never older than head; a writer that lapped the ring
        # in between can have moved it past head (then nothing read as of head is left).
        return min(int(self._counters[TAIL]), head), head

    def utilisation(self) -> tuple[float, float]:
        """How full the index ring and the blob region are (0..1 each)."""
        tail, head = self.bounds()
        ring = (head - tail) / self.capacity
        if head == tail:
            return ring, 0.0
        oldest = int(self.slots[tail % self.capacity]["payload_offset"])
        # Under a flood the oldest slot may be reused between the reads: keep the figure in range.
        return ring, min(1.0, max(0.0, (self.blob_head - oldest) / self.blob_size))

    # -- writing ---------------------------------------------------------------------------------

    def append(
        self,
        staging: np.ndarray,
        starts: np.ndarray,
        lengths: np.ndarray,
        fields: np.ndarray,
        record_crcs: np.ndarray,
    ) -> None:
        """Write a batch: event i's record is ``staging[i, starts[i] : starts[i] + lengths[i]]``.

        ``fields`` (EVENT_DTYPE) gives lamport, node, stream and flags; ``record_crcs`` the CRC-32
        of each record. Offsets, lengths and checksums are filled in here.
        """
        n = len(fields)
        if n == 0:
            return
        counters = self._counters
        total = int(lengths.sum())
        if n > 1 and (n >= self.capacity or total > self.blob_size // 2):
            # Too big for one batch (its slots would lap the ring, or its records the blob region,
            # within the batch; recovery could not tell which were written): two batches instead.
            # A whole ring's worth is too big too: its last slot would be the one just below it,
            # which recovery reads to learn where the batch began.
            for part in (slice(0, n // 2), slice(n // 2, n)):
                self.append(
                    staging[part], starts[part], lengths[part], fields[part], record_crcs[part]
                )
            return
        if total > self.blob_size // 2:
            raise ValueError("a record larger than half the blob region")
        start = int(counters[BLOB_HEAD])
        if start % self.blob_size + total > self.blob_size:
            start += self.blob_size - start % self.blob_size  # the next lap's beginning
        end = start + total
        head = int(counters[HEAD])
        new_head = head + n
        tail = max(int(counters[TAIL]), new_head - self.capacity)
        tail = self._first_at_or_above(end - self.blob_size, tail, head)
        counters[TAIL] = tail  # (1) retire, and reserve, before any byte is overwritten
        counters[BLOB_RESERVE] = end
        counters[RESERVE] = new_head

        physical = start % self.blob_size
        _gather(staging, starts, lengths, self.blob[physical : physical + total])  # (2)

        slots = fields.copy()
        ends = np.cumsum(lengths, dtype=np.uint64)
        slots["payload_offset"] = ends - lengths.astype(np.uint64) + np.uint64(start)
        slots["payload_len"] = lengths
        slots["checksum"] = record_crcs.astype(np.uint32) ^ fields_digest(slots)
        position = head % self.capacity
        first = min(n, self.capacity - position)
        self.slots[position : position + first] = slots[:first]  # (3)
        self.slots[: n - first] = slots[first:]

        counters[BLOB_HEAD] = end  # (4) publish
        counters[LAST_LAMPORT] = slots["lamport"][-1]
        counters[HEAD] = new_head

    def append_records(
        self,
        records: Sequence[bytes],
        lamports: Sequence[int],
        *,
        node: int = 0,
        stream: int = 0,
        flags: int = 0,
    ) -> None:
        """Write events whose records are given as bytes (tests, tools; not the hot path)."""
        n = len(records)
        width = max((len(r) for r in records), default=0)
        staging = np.zeros((n, max(width, 1)), np.uint8)
        for i, record in enumerate(records):
            staging[i, : len(record)] = np.frombuffer(record, np.uint8)
        fields = np.zeros(n, EVENT_DTYPE)
        fields["lamport"] = lamports
        fields["node"] = node
        fields["stream"] = stream
        fields["flags"] = flags
        crcs = np.array([zlib.crc32(r) for r in records], np.uint32)
        self.append(
            staging, np.zeros(n, np.int64), np.array([len(r) for r in records], np.int64),
            fields, crcs,
        )  # fmt: skip

    def _offset_of(self, seq: int) -> int:
        return int(self.slots[seq % self.capacity]["payload_offset"])

    def _first_at_or_above(self, floor: int, low: int, high: int) -> int:
        """The first event in ``[low, high)`` whose record starts at ``floor`` or later.

        Record offsets grow with seq, so this is a binary search (``high`` if there is none).
        """
        if floor <= 0 or low >= high or self._offset_of(low) >= floor:
            return low
        while low < high:
            middle = (low + high) // 2
            if self._offset_of(middle) < floor:
                low = middle + 1
            else:
                high = middle
        return low

    # -- reading ---------------------------------------------------------------------------------

    def read_slots(self, start: int, stop: int) -> SlotBatch:
        """Copies of the slots of events ``[start, stop)`` that are still held."""
        start = max(start, 0)
        tail, head = self.bounds()
        low = max(start, tail)
        seqs = np.arange(low, max(low, min(stop, head)), dtype=np.int64)
        slots = self._copy_run(low, len(seqs))
        # Read tail again after copying: what fell below it may have been overwritten mid-copy.
        tail = self.tail
        if len(seqs) and seqs[0] < tail:
            keep = seqs >= tail
            seqs, slots = seqs[keep], slots[keep]
        return SlotBatch(seqs, slots, lapped=max(0, min(tail, stop) - start))

    def _copy_run(self, first: int, count: int) -> np.ndarray:
        """A copy of the slots of ``count`` events from ``first`` (at most two slices of the
        ring: much cheaper than fancy indexing for a long run)."""
        position = first % self.capacity
        head_part = min(count, self.capacity - position)
        run = self.slots[position : position + head_part]
        if head_part == count:
            return run.copy()
        return np.concatenate((run, self.slots[: count - head_part]))

    def read_events(self, seqs: Sequence[int] | np.ndarray) -> list[Event]:
        """The events at ``seqs`` (records included, checksums verified); gone ones are left out."""
        wanted = np.asarray(seqs, dtype=np.int64)
        # Head before copying (a slot at or above it may be half written, or still the one it
        # replaces), tail after too (what fell below it may have been overwritten mid-copy).
        tail, head = self.bounds()
        wanted = wanted[(wanted >= tail) & (wanted < head)]
        if len(wanted) == 0:
            return []
        slots = self.slots[wanted % self.capacity]
        records = [self._record_bytes(slot) for slot in slots]
        tail = self.tail
        digests = fields_digest(slots)
        events = []
        for seq, slot, record, digest in zip(
            wanted.tolist(), slots, records, digests.tolist(), strict=True
        ):
            if not tail <= seq < head:
                continue
            valid = (zlib.crc32(record) ^ digest) == int(slot["checksum"])
            events.append(decode_record(seq, slot, record, valid))
        return events

    def _record_bytes(self, slot: np.void) -> bytes:
        offset = int(slot["payload_offset"]) % self.blob_size
        length = min(int(slot["payload_len"]), self.blob_size - offset)
        return bytes(self._blob_view[offset : offset + length])

    def select(self, node: int | None = None, stream: int | None = None) -> np.ndarray:
        """The seqs of held events from ``node`` and/or on ``stream`` (all held seqs if neither)."""
        tail, head = self.bounds()
        seqs = np.arange(tail, head, dtype=np.int64)
        if (node is None and stream is None) or len(seqs) == 0:
            return seqs
        # The held window is at most two contiguous runs of the ring; view them without copying.
        position = tail % self.capacity
        first = min(len(seqs), self.capacity - position)
        runs = (self.slots[position : position + first], self.slots[: len(seqs) - first])
        selected: np.ndarray = seqs[np.concatenate([matching(run, node, stream) for run in runs])]
        return selected[selected >= self.tail]  # the tail may have moved while this looked

    def cursor(self, position: int | None = None) -> Cursor:
        """A reader that walks the journal in order from ``position`` (default: the oldest held)."""
        return Cursor(self, self.tail if position is None else position)

    # -- recovery and verification ---------------------------------------------------------------

    def _slot_ok(self, slot: np.void, digest: int) -> bool:
        record = self._record_bytes(slot)
        return len(record) == int(slot["payload_len"]) and (zlib.crc32(record) ^ digest) == int(
            slot["checksum"]
        )

    def _recover_interrupted_batch(self) -> tuple[int, int]:
        """Keep the complete slots of a batch cut short by a crash; return (kept, torn)."""
        counters = self._counters
        head, reserve = int(counters[HEAD]), int(counters[RESERVE])
        blob_reserve = int(counters[BLOB_RESERVE])
        reserve = min(max(reserve, head), head + self.capacity)
        # Where the batch began, from the last published event rather than from BLOB_HEAD and
        # LAST_LAMPORT: a crash between publishing those and HEAD would have moved them already.
        # (That slot is intact: a batch never reuses the slot just below it.)
        if head > 0:
            previous = self.slots[(head - 1) % self.capacity]
            last = int(previous["lamport"])
            blob_head = int(previous["payload_offset"]) + int(previous["payload_len"])
        else:
            last = blob_head = 0
        kept = 0
        end = blob_head
        for seq in range(head, reserve):
            slot = self.slots[seq % self.capacity]
            offset, length = int(slot["payload_offset"]), int(slot["payload_len"])
            in_batch = blob_head <= offset and offset + length <= blob_reserve and offset >= end
            digest = int(fields_digest(slot.reshape(1))[0])
            if not (in_batch and int(slot["lamport"]) > last and self._slot_ok(slot, digest)):
                break
            kept += 1
            last = int(slot["lamport"])
            end = offset + length
        torn = reserve - head - kept
        for seq in range(head + kept, reserve):
            self.slots[seq % self.capacity] = np.zeros((), EVENT_DTYPE)
        # Publish what was kept; retirement already happened before the crash (step 1).
        counters[BLOB_HEAD] = end
        counters[BLOB_RESERVE] = end
        counters[LAST_LAMPORT] = last
        counters[HEAD] = head + kept
        counters[RESERVE] = head + kept
        if int(counters[TAIL]) > head + kept:
            counters[TAIL] = head + kept
        return kept, torn

    def verify(self) -> int:
        """Check every held slot (order and checksum); return how many are corrupt."""
        batch = self.read_slots(self.tail, self.head)
        slots = batch.slots
        if len(slots) == 0:
            return 0
        begins = (slots["payload_offset"] % np.uint64(self.blob_size)).astype(np.int64)
        ends = begins + slots["payload_len"]
        crcs = crc32_slices(self._blob_view, begins, ends)
        digests = fields_digest(slots)
        bad = (np.array(crcs, np.uint32) ^ digests) != slots["checksum"]
        lamports = slots["lamport"]
        bad[1:] |= lamports[1:] <= lamports[:-1]  # events are held in strictly increasing order
        return int(bad.sum())

    # -- closing ---------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the mapped pages to disk (a crash of the process loses nothing without this)."""
        self._map.flush()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._counters[CLEAN] = 1
        self.flush()
        # The mapping itself stays until this object goes: a reader in another thread may be
        # copying from it right now, and unmapping under it would crash or garble that read. Late
        # readers see the journal as it was closed. The map holds a duplicate of the file
        # descriptor, so unlock explicitly: the journal can be opened again at once.
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


class Cursor:
    """Walks the journal in order; tells its reader when events were overwritten before it got
    to them (it was lapped) instead of handing out slots that were reused."""

    def __init__(self, journal: Journal, position: int) -> None:
        self.journal = journal
        self.position = position
        self.lapped = 0  # events skipped because they were overwritten before they were read

    def poll(self, limit: int = 4096) -> SlotBatch:
        """The next events (at most ``limit``); ``lapped`` says how many were lost before it."""
        skipped = max(0, self.journal.tail - self.position)
        self.position += skipped
        batch = self.journal.read_slots(self.position, self.position + limit)
        self.position = int(batch.seqs[-1]) + 1 if len(batch.seqs) else self.position + batch.lapped
        lapped = skipped + batch.lapped
        self.lapped += lapped
        return SlotBatch(batch.seqs, batch.slots, lapped)


def _gather(staging: np.ndarray, starts: np.ndarray, lengths: np.ndarray, out: np.ndarray) -> None:
    """Copy each row's record (``staging[i, starts[i]:starts[i]+lengths[i]]``) into ``out``, in
    order, back to back."""
    n = len(lengths)
    start, length = int(starts[0]), int(lengths[0])
    if (lengths == length).all() and (starts == start).all():  # fixed-size records: one copy
        out.reshape(n, length)[:] = staging[:n, start : start + length]
        return
    ends = starts + lengths
    widest = int(ends.max())
    if int(lengths.max()) <= _MASK_GATHER_MAX:
        columns = np.arange(widest)
        mask = (columns >= starts[:, None]) & (columns < ends[:, None])
        out[:] = staging[:n, :widest][mask]
        return
    # One slice copy per record, driven by map() so that no Python bytecode runs per record.
    row_starts = np.arange(n, dtype=np.int64) * staging.shape[1]
    source = staging.data.cast("B")
    target = out.data
    done = np.cumsum(lengths)
    list(
        map(
            target.__setitem__,
            map(slice, (done - lengths).tolist(), done.tolist()),
            map(
                source.__getitem__,
                map(slice, (row_starts + starts).tolist(), (row_starts + ends).tolist()),
            ),
        )
    )
