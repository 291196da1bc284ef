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

**Opening: the counters are cross-checked, never just believed.** The header counters are hints;
the slots (each with its own checksum) are the ground truth. A slot is *intact* when its checksum
matches its fields and record, its record lies inside the blob region, and its lamport is a
plausible hybrid-logical-clock value (below 2**63, its millisecond part at most
``MAX_LAMPORT_AHEAD_MS`` (a day) ahead of now). Every open, clean or not:

1. counters no writer could leave (tail above head, more than a ring held, ...) are refused;
2. the *anchor* is found: the newest held slot that is intact and follows the one before it.
   Held slots above it (a damaged newest event) are dropped and zeroed; if none of the newest
   ``ANCHOR_SEARCH`` held slots is intact, the file is refused (and left unchanged);
3. from the anchor on, slots that are intact and follow in order (lamport greater, record at the
   previous record's end or the next lap's start) are kept: after a crash that is the interrupted
   batch ``[head, reserve)``; past that (a head counter that is too low) a repair. The first that
   does not follow ends the journal; claimed slots after it are zeroed (torn);
4. ``blob_head`` and ``last_lamport`` are set from the newest kept slot, never from the counters
   (so a bad value never reaches the clock or the blob placement), and the tail is retired as an
   append would (ring and blob bounds);
5. leading held slots that are not intact, or whose record the blob head has passed, are retired
   (a tail that is too low); intact older slots that follow into the tail and are still within the
   ring and blob bounds are taken back (a tail that is too high).

A clean journal whose counters agree with its boundary slots costs a few checksums; only a
disagreement (or an unclean close) reads more. After an unclean close every held slot is verified
too, and mismatches (between intact ones) are counted as corrupt and read as invalid. Every repair
is listed in :meth:`RecoveryReport.describe` (and so in ``status`` and the Overview).

**The file itself.** It is opened with ``O_NOFOLLOW``: a journal path that is a symbolic link (one
planted in the state folder by another user, say) is refused, as is anything but a regular file,
and a file another user owns or that group or others may write (they could change its events and
counters while we run).
A new journal is built under a random temporary name made with ``O_CREAT | O_EXCL | O_NOFOLLOW``
and linked into place only if nothing has the name meanwhile (never written through a link).

Single writer: the sequencer's ingest thread, in the ingest process (see ingest.py). Any number
of readers, in any thread of any process: the console maps the file read-only
(:meth:`Journal.open_reader`) and reads it while the ingest process writes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import secrets
import stat
import struct
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import (
    DEFAULT_JOURNAL_BLOB,
    DEFAULT_JOURNAL_CAPACITY,
    MIN_JOURNAL_BLOB,
    MIN_JOURNAL_CAPACITY,
)
from ..errors import JournalError
from .frames import (
    EVENT_DTYPE,
    Event,
    crc32_slices,
    decode_records,
    fields_digest,
    matching,
    plausible_lamports,
)

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
# Slots (32 bytes each) read at a time by newest_seqs when it filters by node or stream.
SELECT_CHUNK = 1 << 14
# How far below the head counter opening looks for an intact newest event before refusing.
ANCHOR_SEARCH = 4096
# Slots examined at once when scanning for the true extent of the journal (grows to this).
_SCAN_CHUNK = 1 << 16


@dataclass(frozen=True)
class RecoveryReport:
    created: bool  # a new journal was made
    clean: bool  # the last writer closed it cleanly
    events: int  # events held after opening
    kept: int  # events of an interrupted batch that were complete and kept
    torn: int  # slots of an interrupted batch that were rejected
    corrupt: int  # held slots whose checksum does not match
    seconds: float
    repairs: tuple[str, ...] = ()  # counters found wrong on opening, and what was done

    def describe(self) -> str:
        if self.created:
            return "new journal"
        state = "clean" if self.clean else "recovered after an unclean stop"
        parts = [f"{self.events:,} events, {state}"]
        if self.kept or self.torn:
            parts.append(f"{self.kept} kept and {self.torn} torn from the interrupted write")
        if self.corrupt:
            parts.append(f"{self.corrupt} corrupt")
        parts.extend(f"repaired: {repair}" for repair in self.repairs)
        return ", ".join(parts) + f" ({self.seconds * 1000:.0f} ms)"


@dataclass(frozen=True)
class SlotBatch:
    """Slots copied out of the journal: ``slots[i]`` is event ``seqs[i]``."""

    seqs: np.ndarray  # int64
    slots: np.ndarray  # EVENT_DTYPE
    lapped: int = 0  # events the reader asked for that had already been overwritten


@dataclass(frozen=True)
class _OpeningPlan:
    """What opening found the counters should be (written only once everything was checked)."""

    head: int
    tail: int
    blob_head: int
    last_lamport: int
    zero_from: int  # slots [zero_from, zero_to) were claimed but are not intact: zeroed
    zero_to: int
    kept: int  # events of an interrupted batch that were kept
    torn: int  # slots of an interrupted batch that were rejected
    repairs: list[str]


def _refuse_if_others_can_write(path: Path, fd: int) -> None:
    """A journal another user owns, or that group or others may write, could have its events
    and counters changed under us while we run: refused, like a state folder of that kind."""
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise JournalError(
            f"{path}: refusing to use this file as the event journal: it is owned by uid "
            f"{info.st_uid} with mode {stat.S_IMODE(info.st_mode):o}; it must be yours and "
            "writable by you alone (chown it, or chmod go-w)"
        )


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
        created = False
        if not self._existing():
            created = self._create(capacity, blob_size)
        self._fd = self._open()
        try:
            self._lock()
            self.capacity, self.blob_size = self._check_geometry(capacity, blob_size)
            self._map = mmap.mmap(self._fd, self._expected_size())
        except BaseException:
            os.close(self._fd)
            raise
        self._writer = True
        self._map_arrays()
        clean = bool(self._counters[CLEAN])
        try:
            self._check_counters()
            plan = self._plan_opening(clean)
        except JournalError:
            fcntl.flock(self._fd, fcntl.LOCK_UN)  # the map (freed with this object) holds a dup
            os.close(self._fd)
            raise
        self._counters[CLEAN] = 0  # from here on (repairs included) a crash is an unclean stop
        self._apply(plan)
        corrupt = 0 if created or clean else self.verify()
        self.recovery = RecoveryReport(
            created=created,
            clean=clean or created,
            events=self.head - self.tail,
            kept=plan.kept,
            torn=plan.torn,
            corrupt=corrupt,
            seconds=time.perf_counter() - started,
            repairs=tuple(plan.repairs),
        )
        self.closed = False

    @classmethod
    def open_reader(
        cls, path: Path, capacity: int, blob_size: int, recovery: RecoveryReport
    ) -> Journal:
        """The journal another process writes (the ingest process), mapped read-only here.

        No lock and no recovery: the writer did both when it opened the file (``recovery`` is
        its report). Every reading method works as on the writer's own object (the seqlock
        protocol in the module docstring is what makes reading beside a writer safe; it never
        needed the two to share a process). Writing through it fails (the arrays are read-only).
        """
        self = cls.__new__(cls)
        self.path = Path(path)
        self._writer = False
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            raise JournalError(
                f"{self.path}: cannot open the event journal: {exc.strerror or exc}"
            ) from None
        self._fd = fd
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise JournalError(f"{self.path}: the event journal is not a regular file")
            _refuse_if_others_can_write(self.path, fd)
            self.capacity, self.blob_size = self._check_geometry(capacity, blob_size)
            self._map = mmap.mmap(fd, self._expected_size(), access=mmap.ACCESS_READ)
        except BaseException:
            os.close(fd)
            raise
        self._map_arrays()
        self.recovery = recovery
        self.closed = False
        return self

    def _map_arrays(self) -> None:
        self._counters = np.ndarray((8,), "<u8", buffer=self._map, offset=_COUNTERS_OFFSET)
        self.slots = np.ndarray((self.capacity,), EVENT_DTYPE, buffer=self._map, offset=HEADER_SIZE)
        self.blob = np.ndarray(
            (self.blob_size,),
            np.uint8,
            buffer=self._map,
            offset=HEADER_SIZE + self.capacity * SLOT_SIZE,
        )
        self._blob_view = self.blob.data  # the same bytes, for slicing and CRCs
        self._slot_words = _slot_words(self.slots)  # the same slots, for copying (_slot_words)

    def identity(self) -> tuple[int, int]:
        """(device, inode) of the open file: another writer may have made a new one since."""
        info = os.fstat(self._fd) if not self.closed else os.stat(self.path)
        return info.st_dev, info.st_ino

    # -- opening ---------------------------------------------------------------------------------

    @property
    def _blob_start(self) -> int:
        return HEADER_SIZE + self.capacity * SLOT_SIZE

    def _expected_size(self) -> int:
        return self._blob_start + self.blob_size

    def _existing(self) -> bool:
        """Whether something has the journal's name (a symbolic link counts, and is refused)."""
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return False
        if stat.S_ISLNK(info.st_mode):
            raise JournalError(self._symlink_message())
        return True

    def _symlink_message(self) -> str:
        return (
            f"{self.path}: refusing to use this path as the event journal: it is a symbolic "
            "link (anyone who can write the folder could point it at another file); set "
            "[sequencer] journal to the real file, or remove the link"
        )

    def _open(self) -> int:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise JournalError(self._symlink_message()) from None
            raise JournalError(
                f"{self.path}: cannot open the event journal: {exc.strerror or exc}"
            ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise JournalError(
                f"{self.path}: refusing to use this path as the event journal: it is not a "
                "regular file"
            )
        try:
            _refuse_if_others_can_write(self.path, fd)
        except JournalError:
            os.close(fd)
            raise
        return fd

    def _create(self, capacity: int, blob_size: int) -> bool:
        """Make a new journal file; False if another one took the name meanwhile."""
        # Built under a temporary name and linked into place: a half-made file never carries the
        # real name. The temporary name is random and made with O_EXCL | O_NOFOLLOW, so a file or
        # link planted in the folder is never truncated or written through.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        geometry = _GEOMETRY.pack(
            JOURNAL_MAGIC, VERSION, HEADER_SIZE, SLOT_SIZE, 0, capacity, blob_size, time.time_ns()
        )
        size = HEADER_SIZE + capacity * SLOT_SIZE + blob_size
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(8)}.new")
        try:
            fd = os.open(temporary, flags, 0o600)
        except OSError as exc:
            raise JournalError(
                f"{self.path}: cannot make the event journal: {exc.strerror or exc}"
            ) from None
        try:
            try:
                # The disk space is taken now: a full disk is an error here, at start, rather
                # than a SIGBUS (which kills the console) when the mapping first writes a page.
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                raise JournalError(
                    f"{self.path}: cannot make the event journal ({size / 2**20:.0f} MiB): "
                    f"{exc.strerror or exc} (set [sequencer] capacity and blob smaller, or free "
                    "some disk space)"
                ) from None
            os.pwrite(fd, geometry + _GEOMETRY_CRC.pack(zlib.crc32(geometry)), 0)
            os.pwrite(fd, struct.pack("<Q", 1), _COUNTERS_OFFSET + CLEAN * 8)
            try:
                # link() never replaces what has the name (a link planted meanwhile included).
                os.link(temporary, self.path, follow_symlinks=False)
            except FileExistsError:
                return False  # opened as an existing file (and checked) by the caller
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                os.rename(temporary, self.path)  # no hard links here: replaces the name itself
                return True
            return True
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)

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
        starts: np.ndarray | int,
        lengths: np.ndarray | int,
        fields: np.ndarray,
        record_crcs: np.ndarray,
    ) -> None:
        """Write a batch: event i's record is ``staging[i, starts[i] : starts[i] + lengths[i]]``.

        ``starts`` and ``lengths`` may each be one int for every event (fixed-size records, a
        busy sender's batch: then the records are gathered with one copy and placed with one
        ``arange``). ``fields`` (EVENT_DTYPE) gives lamport, node, stream and flags;
        ``record_crcs`` the CRC-32 of each record. Offsets, lengths and checksums are filled in
        here.
        """
        n = len(fields)
        if n == 0:
            return
        counters = self._counters
        total = n * lengths if isinstance(lengths, int) else int(lengths.sum())
        if n > 1 and (n >= self.capacity or total > self.blob_size // 2):
            # Too big for one batch (its slots would lap the ring, or its records the blob region,
            # within the batch; recovery could not tell which were written): two batches instead.
            # A whole ring's worth is too big too: its last slot would be the one just below it,
            # which recovery reads to learn where the batch began.
            for part in (slice(0, n // 2), slice(n // 2, n)):
                self.append(
                    staging[part],
                    starts if isinstance(starts, int) else starts[part],
                    lengths if isinstance(lengths, int) else lengths[part],
                    fields[part],
                    record_crcs[part],
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
        _gather(staging, n, starts, lengths, self.blob[physical : physical + total])  # (2)

        slots = _slot_words(np.ascontiguousarray(fields)).copy().view(EVENT_DTYPE).ravel()
        if isinstance(lengths, int):
            slots["payload_offset"] = (
                np.arange(start, end, lengths, dtype=np.uint64) if lengths else start
            )
        else:
            ends = np.cumsum(lengths, dtype=np.uint64)
            slots["payload_offset"] = ends - lengths.astype(np.uint64) + np.uint64(start)
        slots["payload_len"] = lengths
        slots["checksum"] = record_crcs.astype(np.uint32) ^ fields_digest(slots)
        position = head % self.capacity
        first = min(n, self.capacity - position)
        words = _slot_words(slots)
        self._slot_words[position : position + first] = words[:first]  # (3)
        self._slot_words[: n - first] = words[first:]

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
        # A column at a time: per-event access to a numpy record's fields is what cost the most.
        offsets = slots["payload_offset"] % np.uint64(self.blob_size)
        lengths = np.minimum(slots["payload_len"].astype(np.uint64), self.blob_size - offsets)
        view = self._blob_view
        records = [
            bytes(view[offset : offset + length])
            for offset, length in zip(offsets.tolist(), lengths.tolist(), strict=True)
        ]
        tail = self.tail
        checksums = slots["checksum"].tolist()
        digests = fields_digest(slots).tolist()
        numbers: list[int] = wanted.tolist()
        # Overwritten while being copied (below the tail read after the copy): left out.
        held = [i for i, seq in enumerate(numbers) if tail <= seq < head]
        if len(held) < len(numbers):
            numbers = [numbers[i] for i in held]
            slots = slots[held]
            records = [records[i] for i in held]
            checksums = [checksums[i] for i in held]
            digests = [digests[i] for i in held]
        valid = [
            (zlib.crc32(record) ^ digest) == checksum
            for record, digest, checksum in zip(records, digests, checksums, strict=True)
        ]
        return decode_records(numbers, slots, records, valid)

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

    def newest_seqs(
        self,
        lines: int,
        node: int | None = None,
        stream: int | None = None,
        tail: int | None = None,
        head: int | None = None,
    ) -> np.ndarray:
        """The seqs of the newest ``lines`` held events in ``[tail, head)`` (default: all held)
        from ``node`` / on ``stream`` if given, oldest first. Filtering reads the ring backwards
        SELECT_CHUNK slots at a time, so it holds a chunk of slots and at most ``lines`` seqs,
        never a whole ring's worth (as :meth:`select` does); what is overwritten meanwhile is left
        out."""
        held_tail, held_head = self.bounds()
        tail = held_tail if tail is None else tail
        head = held_head if head is None else head
        if node is None and stream is None:
            return np.arange(max(tail, head - lines), head, dtype=np.int64)
        found: list[np.ndarray] = []
        count = 0
        stop = head
        while stop > tail and count < lines:
            start = max(tail, stop - SELECT_CHUNK)
            batch = self.read_slots(start, stop)
            found.append(batch.seqs[matching(batch.slots, node, stream)])
            count += len(found[-1])
            stop = start
        if not found:
            return np.empty(0, dtype=np.int64)
        every = np.concatenate(found[::-1])
        return every[max(0, len(every) - lines) :].copy()

    def newest_events(
        self,
        lines: int,
        node: int | None = None,
        stream: int | None = None,
        below: int | None = None,
    ) -> list[Event]:
        """The newest ``lines`` events, oldest first, from ``node`` / on ``stream`` if given. With
        ``below`` (a head read earlier), only events before that seq: a reader that goes on from
        ``below`` then misses none that arrived meanwhile."""
        head = self.head if below is None else min(self.head, below)
        return self.read_events(self.newest_seqs(lines, node, stream, head=head))

    def cursor(self, position: int | None = None) -> Cursor:
        """A reader that walks the journal in order from ``position`` (default: the oldest held)."""
        return Cursor(self, self.tail if position is None else position)

    # -- recovery and verification ---------------------------------------------------------------

    def _examine(self, first: int, count: int, now_ms: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the slots of events ``[first, first + count)`` and which are intact on their
        own: checksum, record inside the blob region, plausible lamport (see the docstring)."""
        slots = self._copy_run(first, count)
        begins = (slots["payload_offset"] % np.uint64(self.blob_size)).astype(np.int64)
        lengths = slots["payload_len"].astype(np.int64)
        fits = (lengths <= self.blob_size // 2) & (begins + lengths <= self.blob_size)
        ends = np.where(fits, begins + lengths, begins)
        crcs = np.array(crc32_slices(self._blob_view, begins, ends), np.uint32)
        intact = fits & ((crcs ^ fields_digest(slots)) == slots["checksum"])
        intact &= plausible_lamports(slots["lamport"], now_ms)
        return slots, intact

    def _follows(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """Whether each ``after`` slot can be the event written just after ``before``: a greater
        lamport, and its record where the writer puts the next one (the previous record's end,
        or the next lap's beginning when the batch did not fit before the end)."""
        blob = np.uint64(self.blob_size)
        end = before["payload_offset"] + before["payload_len"].astype(np.uint64)
        next_lap = end + (blob - end % blob) % blob
        offset = after["payload_offset"]
        follows: np.ndarray = (after["lamport"] > before["lamport"]) & (
            (offset == end) | (offset == next_lap)
        )
        return follows

    def _plan_opening(self, clean: bool) -> _OpeningPlan:
        """Decide, without writing anything, what the counters should be (see the module
        docstring); refuse with a JournalError if the slots cannot tell."""
        counters = self._counters
        now_ms = time.time_ns() // 1_000_000
        head0, tail0 = int(counters[HEAD]), int(counters[TAIL])
        reserve0 = int(counters[RESERVE]) if not clean else head0
        blob_head0, blob_reserve0 = int(counters[BLOB_HEAD]), int(counters[BLOB_RESERVE])
        last0 = int(counters[LAST_LAMPORT])
        repairs: list[str] = []

        # 1. The anchor: the newest held slot that is intact and follows the one before it.
        if head0 > tail0:
            count = min(head0 - tail0, ANCHOR_SEARCH)
            slots, intact = self._examine(head0 - count, count, now_ms)
            good = intact.copy()
            good[1:] &= ~intact[:-1] | self._follows(slots[:-1], slots[1:])
            found = np.flatnonzero(good)
            if len(found) == 0:
                which = "" if count == head0 - tail0 else f"the newest {count:,} of "
                raise JournalError(
                    f"{self.path}: refusing to use this file as the event journal: none of "
                    f"{which}its {head0 - tail0:,} held events is intact (a damaged file?); "
                    "move it away to start a new one"
                )
            anchor = head0 - count + int(found[-1])
            previous = slots[int(found[-1])].copy()
            if anchor < head0 - 1:
                repairs.append(
                    f"the newest {head0 - 1 - anchor:,} events were damaged (checksum, order or "
                    "an impossible timestamp) and were dropped"
                )
        else:
            # Nothing held to check against (a new journal, or every event retired): the slot
            # just below the head if it is plausible, else the counters if they are.
            anchor = head0 - 1
            previous = np.zeros((), EVENT_DTYPE)
            if head0 > 0:
                below = self.slots[anchor % self.capacity].copy()
                if bool(plausible_lamports(below["lamport"].reshape(1), now_ms)[0]):
                    previous = below
                else:
                    previous["payload_offset"] = blob_head0
                    if bool(plausible_lamports(np.array([last0], np.uint64), now_ms)[0]):
                        previous["lamport"] = last0

        # 2. Forward from the anchor: the interrupted batch, or events past a head too low.
        limit = min(tail0, anchor + 1) + self.capacity  # never the anchor's own slot again
        kept_from = anchor + 1
        run = self._scan_forward(previous, kept_from, limit, now_ms)
        if run:
            previous = self.slots[(kept_from + run - 1) % self.capacity].copy()
        head = kept_from + run
        claimed = min(max(head0, reserve0), min(tail0, head) + self.capacity)
        torn_from, torn_to = head, claimed  # claimed by the counters, not intact: zeroed
        kept = max(0, min(head, reserve0) - head0)
        torn = max(0, reserve0 - max(head, head0))
        beyond = head - max(head0, reserve0)
        if beyond > 0:
            repairs.append(
                f"the head counter was {beyond:,} events behind the slots: they were kept"
            )

        # 3. Blob head and clock from the newest kept slot; the tail retired as an append would.
        blob_head = int(previous["payload_offset"]) + int(previous["payload_len"])
        last = int(previous["lamport"])
        tail = max(min(tail0, head), head - self.capacity)
        tail = self._first_at_or_above(blob_head - self.blob_size, tail, head)
        if tail > min(tail0, head):
            repairs.append(
                f"{tail - min(tail0, head):,} events whose slots or records were reused were "
                "retired"
            )

        # 4. Leading slots that are not intact, or whose record was passed: a tail too low.
        if tail < head:
            tail = self._first_held(tail, head, blob_head, now_ms, repairs)
        # 5. Older intact slots that follow into the tail: a tail too high.
        if 0 < tail < head:
            floor_blob = max(blob_head, blob_head0, blob_reserve0) - self.blob_size
            floor_seq = max(head, head0, reserve0) - self.capacity
            tail = self._taken_back(tail, max(0, floor_seq), floor_blob, now_ms, repairs)

        # After a crash the counters may legitimately be ahead of the slots (step 4 was cut
        # short); a clean journal's must match, and an impossible value is reported either way.
        last0_plausible = bool(plausible_lamports(np.array([last0], np.uint64), now_ms)[0])
        if last != last0 and (clean or not last0_plausible):
            repairs.append(f"the last lamport counter was {last0}, the newest event's is {last}")
        if blob_head != blob_head0 and clean:
            repairs.append(
                f"the blob head counter was {blob_head0:,}, the newest record ends at {blob_head:,}"
            )
        return _OpeningPlan(
            head=head,
            tail=tail,
            blob_head=blob_head,
            last_lamport=last,
            zero_from=torn_from,
            zero_to=max(torn_from, torn_to),
            kept=kept,
            torn=torn,
            repairs=repairs,
        )

    def _scan_forward(self, previous: np.ndarray, first: int, limit: int, now_ms: int) -> int:
        """How many slots from event ``first`` (below ``limit``) are intact and follow in order
        from ``previous`` (read a growing chunk at a time: a clean journal reads one slot)."""
        run = 0
        chunk = 1
        while first + run < limit:
            count = min(chunk, limit - first - run)
            slots, intact = self._examine(first + run, count, now_ms)
            befores = np.concatenate((previous.reshape(1), slots[:-1]))
            good = intact & self._follows(befores, slots)
            bad = np.flatnonzero(~good)
            if len(bad):
                return run + int(bad[0])
            run += count
            previous = slots[-1]
            chunk = min(chunk * 16, _SCAN_CHUNK)
        return run

    def _first_held(
        self, tail: int, head: int, blob_head: int, now_ms: int, repairs: list[str]
    ) -> int:
        """The first event at or above ``tail`` that is intact, whose record the blob head has
        not passed, and that the next event follows (slots below it were retired or reused).
        Slot ``tail`` is checked first: only if it fails is the whole window read."""
        floor = np.uint64(max(0, blob_head - self.blob_size))

        def good(first: int, count: int) -> np.ndarray:
            slots, intact = self._examine(first, count, now_ms)
            ok: np.ndarray = intact & (slots["payload_offset"] >= floor)
            if first + count < head:  # the last one's follower was not read: judged next time
                ok[-1] = False
            ok[:-1] &= self._follows(slots[:-1], slots[1:])
            return ok

        if good(tail, min(2, head - tail))[0]:
            return tail
        found = np.flatnonzero(good(tail, head - tail))
        first = tail + int(found[0]) if len(found) else head - 1  # the anchor is always good
        repairs.append(
            f"the tail counter was {first - tail:,} events too low (records overwritten or slots "
            "damaged): they were retired"
        )
        return first

    def _taken_back(
        self, tail: int, floor_seq: int, floor_blob: int, now_ms: int, repairs: list[str]
    ) -> int:
        """The oldest event at or above ``floor_seq`` from which every slot up to ``tail`` is
        intact, follows in order and has its record still in place (a tail too high). Slot
        ``tail - 1`` is checked first: only if it qualifies are more read."""
        floor = np.uint64(max(0, floor_blob))

        def good(first: int) -> np.ndarray:
            slots, intact = self._examine(first, tail + 1 - first, now_ms)
            ok: np.ndarray = intact[:-1] & (slots["payload_offset"][:-1] >= floor)
            ok &= self._follows(slots[:-1], slots[1:])
            return ok

        if floor_seq >= tail or not good(tail - 1)[0]:
            return tail
        ok = good(floor_seq)
        bad = np.flatnonzero(~ok)
        back = len(ok) - (int(bad[-1]) + 1 if len(bad) else 0)
        repairs.append(f"the tail counter was {back:,} events too high: they were kept")
        return tail - back

    def _apply(self, plan: _OpeningPlan) -> None:
        """Write what :meth:`_plan_opening` decided: zero the torn slots, then the counters in
        the order an append publishes them."""
        for seq in range(plan.zero_from, plan.zero_to):
            self.slots[seq % self.capacity] = np.zeros((), EVENT_DTYPE)
        counters = self._counters
        counters[TAIL] = min(int(counters[TAIL]), plan.tail, plan.head)
        counters[BLOB_RESERVE] = max(plan.blob_head, int(counters[BLOB_RESERVE]))
        counters[RESERVE] = min(max(int(counters[RESERVE]), plan.head), plan.tail + self.capacity)
        counters[BLOB_HEAD] = plan.blob_head
        counters[LAST_LAMPORT] = plan.last_lamport
        counters[HEAD] = plan.head
        counters[TAIL] = plan.tail
        counters[RESERVE] = plan.head
        counters[BLOB_RESERVE] = plan.blob_head

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
        if not self._writer:
            os.close(self._fd)  # the read-only mapping stays until this object goes (see below)
            return
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


def _slot_words(slots: np.ndarray) -> np.ndarray:
    """Slots (EVENT_DTYPE, contiguous) as rows of 4 u64 words, the same bytes: numpy copies a
    structured array field by field, measured 10x slower than these words (10 us against 1 us
    for a batch of 512)."""
    words: np.ndarray = slots.view(np.uint64).reshape(len(slots), SLOT_SIZE // 8)
    return words


def _gather(
    staging: np.ndarray,
    n: int,
    starts: np.ndarray | int,
    lengths: np.ndarray | int,
    out: np.ndarray,
) -> None:
    """Copy the record of each of the first ``n`` rows (``staging[i, starts[i]:starts[i] +
    lengths[i]]``) into ``out``, in order, back to back (``starts``, ``lengths``: one int for
    every row, or an array)."""
    if isinstance(starts, int) and isinstance(lengths, int):  # fixed-size records: one copy
        out.reshape(n, lengths)[:] = staging[:n, starts : starts + lengths]
        return
    starts = np.broadcast_to(np.asarray(starts, np.int64), (n,))
    lengths = np.broadcast_to(np.asarray(lengths, np.int64), (n,))
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
