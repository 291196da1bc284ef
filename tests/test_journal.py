"""The event journal: overwrite policy, cursors, the seqlock, crash recovery, refusals.

Everything runs on real journal files under a temporary folder; the crash tests SIGKILL a real
child process that is writing to one.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import os
import random
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import wait_until
from hypothesis import given, settings
from hypothesis import strategies as st

from lacrimosa.engine.config import MIN_JOURNAL_BLOB, MIN_JOURNAL_CAPACITY
from lacrimosa.engine.errors import JournalError
from lacrimosa.engine.events import journal as journal_module
from lacrimosa.engine.events.frames import (
    CLOCK_IGNORED,
    EVENT_DTYPE,
    RECORD_HEADER_SIZE,
    SENDER_FLAGS,
    TEXT,
    Event,
    HybridClock,
    fields_digest,
    lamport_wall_time,
)
from lacrimosa.engine.events.journal import (
    BLOB_HEAD,
    BLOB_RESERVE,
    CLEAN,
    HEAD,
    HEADER_SIZE,
    LAST_LAMPORT,
    RESERVE,
    SLOT_SIZE,
    TAIL,
    Journal,
    SlotBatch,
)

REPO = Path(__file__).resolve().parent.parent
COUNTERS_AT = journal_module._COUNTERS_OFFSET  # the layout, as the module docstring shows it
GEOMETRY_CRC_AT = journal_module._GEOMETRY.size
BLOB = MIN_JOURNAL_BLOB  # 1 MiB: small enough that tests lap it often


def file_size(capacity: int, blob_size: int = BLOB) -> int:
    return HEADER_SIZE + capacity * SLOT_SIZE + blob_size


def expected_payload(record: bytes, flags: int) -> tuple[bytes, int | None]:
    """What an Event made from this record carries: (payload, sender clock)."""
    if flags & TEXT or len(record) < RECORD_HEADER_SIZE:
        return record, None
    return record[RECORD_HEADER_SIZE:], int.from_bytes(record[:8], "little")


def slot_checksum_ok(slot: np.void, record: bytes) -> bool:
    return (zlib.crc32(record) ^ int(fields_digest(slot.reshape(1))[0])) == int(slot["checksum"])


# -- deterministic content: what event ``seq`` holds, derivable by any reader --------------------
# These functions are also sent, as source, to the child processes of the crash tests.


def det_record(seq: int) -> bytes:
    rng = random.Random(seq * 2654435761 + 17)
    length = rng.choice((1, 5, 16, 40, 100, 255, 256, 257, 300, 700, 2000, rng.randrange(1, 30000)))
    return seq.to_bytes(8, "little") + rng.randbytes(length)


def det_fields(seq: int) -> tuple[int, int, int]:
    """(node, stream, flags) of event ``seq``."""
    flags = TEXT if seq % 5 == 0 else seq * 7 % 4096
    return seq % 7, seq % 3, flags


def det_batch_size(head: int) -> int:
    return random.Random(head).choice((1, 2, 3, 8, 30, 64, 100, 200, 300))


def det_append(journal: Journal, clock: HybridClock, n: int) -> np.ndarray:
    """Append events ``head .. head+n-1`` with their deterministic content; return the lamports."""
    head = journal.head
    records = [det_record(seq) for seq in range(head, head + n)]
    width = max(len(r) for r in records) + 3
    staging = np.full((n, width), 0xEE, np.uint8)  # junk around each record
    starts = np.array([seq % 4 for seq in range(head, head + n)], np.int64)
    for i, record in enumerate(records):
        staging[i, starts[i] : starts[i] + len(record)] = np.frombuffer(record, np.uint8)
    fields = np.zeros(n, EVENT_DTYPE)
    fields["lamport"], _ = clock.stamp(np.zeros(n, np.uint64))
    for i, seq in enumerate(range(head, head + n)):
        fields[i]["node"], fields[i]["stream"], fields[i]["flags"] = det_fields(seq)
    lengths = np.array([len(r) for r in records], np.int64)
    crcs = np.array([zlib.crc32(r) for r in records], np.uint32)
    journal.append(staging, starts, lengths, fields, crcs)
    return fields["lamport"].copy()


def check_det_events(journal: Journal) -> list[Event]:
    """Every held event has its deterministic content, a valid checksum, and they are in order."""
    tail, head = journal.bounds()
    events = journal.read_events(range(tail, head))
    assert [e.seq for e in events] == list(range(tail, head))
    for event in events:
        node, stream, flags = det_fields(event.seq)
        record = det_record(event.seq)
        assert (event.node, event.stream, event.flags) == (node, stream, flags), event.seq
        assert (event.payload, event.sender_clock) == expected_payload(record, flags), event.seq
        assert event.valid, event.seq
    lamports = [e.lamport for e in events]
    assert all(x < y for x, y in itertools.pairwise(lamports))
    if events:
        assert journal.last_lamport >= lamports[-1]
    return events


# -- the reference model -------------------------------------------------------------------------


class JournalModel:
    """What the journal must hold, stated the plain way.

    Placement: a call's records go back to back from the blob head; a batch that does not fit
    before the end of the blob region starts at the next lap. A call with as many events as the
    ring holds or more, or more record bytes than half the blob region, is written as two halves
    (each split again as needed). Retirement: after a call the tail is the smallest value at or above
    the old tail such that every event from it to the head still has its own slot
    (``seq >= head - capacity``) and its own record bytes (tracked here byte by byte).
    """

    def __init__(self, capacity: int, blob_size: int) -> None:
        self.capacity, self.blob_size = capacity, blob_size
        self.head = self.tail = self.blob_head = self.last_lamport = 0
        self.records: dict[int, bytes] = {}
        self.slots: dict[
            int, tuple[int, int, int, int, int]
        ] = {}  # lamport node stream flags offset
        self.owner = np.full(blob_size, -1, np.int64)  # which seq wrote each blob byte last

    def _place(self, lengths: list[int]) -> list[int]:
        n, total = len(lengths), sum(lengths)
        if n > 1 and (n >= self.capacity or total > self.blob_size // 2):
            return self._place(lengths[: n // 2]) + self._place(lengths[n // 2 :])
        start = self.blob_head
        if start % self.blob_size + total > self.blob_size:
            start += self.blob_size - start % self.blob_size
        offsets = (start + np.cumsum([0, *lengths[:-1]])).tolist()
        self.blob_head = start + total
        return offsets

    def _intact(self, seq: int) -> bool:
        offset = self.slots[seq][4] % self.blob_size
        return bool((self.owner[offset : offset + len(self.records[seq])] == seq).all())

    def append(self, records: list[bytes], fields: np.ndarray) -> None:
        offsets = self._place([len(r) for r in records])
        for i, (record, offset) in enumerate(zip(records, offsets, strict=True)):
            seq = self.head + i
            physical = offset % self.blob_size
            self.owner[physical : physical + len(record)] = seq
            self.records[seq] = record
            row = fields[i]
            self.slots[seq] = (
                int(row["lamport"]),
                int(row["node"]),
                int(row["stream"]),
                int(row["flags"]),
                offset,
            )
        self.head += len(records)
        self.last_lamport = int(fields["lamport"][-1])
        tail = max(self.tail, self.head - self.capacity)
        for seq in range(self.head - 1, tail - 1, -1):
            if not self._intact(seq):
                tail = seq + 1
                break
        for seq in range(self.tail, tail):
            del self.records[seq], self.slots[seq]
        self.tail = tail

    def held(self) -> range:
        return range(self.tail, self.head)

    def check_slots(self, batch: SlotBatch) -> None:
        for seq, slot in zip(batch.seqs.tolist(), batch.slots, strict=True):
            lamport, node, stream, flags, offset = self.slots[seq]
            record = self.records[seq]
            got = (int(slot["lamport"]), int(slot["node"]), int(slot["stream"]), int(slot["flags"]))
            assert got == (lamport, node, stream, flags), seq
            assert (int(slot["payload_offset"]), int(slot["payload_len"])) == (offset, len(record))
            assert slot_checksum_ok(slot, record), seq

    def check_events(self, events: list[Event]) -> None:
        for event in events:
            lamport, node, stream, flags, _ = self.slots[event.seq]
            record = self.records[event.seq]
            assert (event.lamport, event.node, event.stream, event.flags) == (
                lamport,
                node,
                stream,
                flags,
            )
            assert (event.payload, event.sender_clock) == expected_payload(record, flags)
            assert event.valid


RECORD_SIZES = {
    "small": (1, 64),  # one vectorised mask gathers them
    "mixed": (1, 700),  # some above 256 bytes: one copy each
    "large": (8_000, 90_000),  # one or two calls lap the 1 MiB blob region
}

appends = st.tuples(
    st.just("append"),
    st.integers(1, 300),
    st.sampled_from(sorted(RECORD_SIZES)),
    st.integers(0, 2**32),
)
polls = st.tuples(st.just("poll"), st.integers(0, 2), st.integers(1, 400))
slot_reads = st.tuples(st.just("read_slots"), st.integers(-300, 300), st.integers(0, 400))
event_reads = st.tuples(
    st.just("read_events"), st.integers(-300, 300), st.integers(0, 60), st.integers(0, 2**32)
)
selects = st.tuples(st.just("select"), st.none() | st.integers(0, 4), st.none() | st.integers(0, 3))
reopens = st.tuples(st.just("reopen"))
# Appends about half of the time, so that the ring and the blob region are lapped in most runs.
operation = st.sampled_from(
    [appends] * 6 + [polls] * 2 + [slot_reads, event_reads, selects, reopens]
)
operations = st.lists(operation.flatmap(lambda strategy: strategy), min_size=10, max_size=50)


def random_batch(
    model: JournalModel, n: int, kind: str, seed: int
) -> tuple[list[bytes], np.ndarray, np.ndarray, np.ndarray]:
    """Records and fields for one call: records at random starts in a staging array full of junk."""
    rng = random.Random(seed)
    low, high = RECORD_SIZES[kind]
    if kind == "large":
        n = 1 + n % 40
    records = [rng.randbytes(rng.randint(low, high)) for _ in range(n)]
    fields = np.zeros(n, EVENT_DTYPE)
    lamport = model.last_lamport
    for i in range(n):
        lamport += rng.randint(1, 1 << 20)
        flags = rng.choice((0, TEXT, CLOCK_IGNORED)) | rng.randrange(SENDER_FLAGS + 1)
        fields[i] = (lamport, rng.randrange(5), rng.randrange(4), flags, 0, 0, 0)
    # What the caller leaves in payload_offset, checksum and payload_len must not matter.
    fields["payload_offset"] = rng.randrange(2**64)
    fields["checksum"] = rng.randrange(2**32)
    fields["payload_len"] = rng.randrange(2**32)
    starts = np.array([rng.randrange(9) for _ in range(n)], np.int64)
    width = max(int(s) + len(r) for s, r in zip(starts, records, strict=True))
    staging = np.frombuffer(rng.randbytes(n * width), np.uint8).reshape(n, width).copy()
    for i, record in enumerate(records):
        staging[i, starts[i] : starts[i] + len(record)] = np.frombuffer(record, np.uint8)
    return records, fields, staging, starts


@contextlib.contextmanager
def journal_path() -> Iterator[Path]:
    """A journal path in a new temporary folder (hypothesis examples cannot share ``tmp_path``)."""
    with tempfile.TemporaryDirectory(prefix="lacrimosa-journal-") as folder:
        yield Path(folder) / "events.journal"


@settings(max_examples=100, deadline=None)
@given(capacity=st.sampled_from([64, 100, 256]), ops=operations)
def test_journal_matches_the_reference_model(capacity: int, ops: list[tuple]) -> None:
    model = JournalModel(capacity, BLOB)
    with journal_path() as path:
        opened = [Journal(path, capacity, BLOB)]  # reopen ops add to it; all are closed at the end
        try:
            run_model_operations(path, opened, model, ops)
        finally:
            for journal in opened:
                journal.close()


def run_model_operations(
    path: Path, opened: list[Journal], model: JournalModel, ops: list[tuple]
) -> None:
    capacity = model.capacity
    journal = opened[0]
    cursors = [journal.cursor(), journal.cursor(0)]
    starts = [0, 0]
    seen = [0, 0]
    for op in ops:
        kind = op[0]
        tail_before = journal.tail
        if kind == "append":
            records, fields, staging, starts_ = random_batch(model, *op[1:])
            lengths = np.array([len(r) for r in records], np.int64)
            crcs = np.array([zlib.crc32(r) for r in records], np.uint32)
            journal.append(staging, starts_, lengths, fields, crcs)
            model.append(records, fields)
        elif kind == "poll":
            index, limit = op[1], op[2]
            if index == len(cursors):  # a third cursor joins late, at the oldest held event
                cursors.append(journal.cursor())
                starts.append(journal.tail)
                seen.append(0)
            index = min(index, len(cursors) - 1)
            cursor = cursors[index]
            position = cursor.position
            batch = cursor.poll(limit)
            # Lapped exactly by what was retired before it got there, and then every event
            # once, in order, with no gap.
            assert batch.lapped == max(0, model.tail - position)
            first = max(position, model.tail)
            assert batch.seqs.tolist() == list(range(first, min(first + limit, model.head)))
            assert cursor.position == first + len(batch.seqs)
            model.check_slots(batch)
            seen[index] += len(batch.seqs)
            assert seen[index] + cursor.lapped == cursor.position - starts[index]
        elif kind == "read_slots":
            start = max(0, model.tail + op[1])
            stop = start + op[2]
            batch = journal.read_slots(start, stop)
            low = max(start, model.tail)
            assert batch.seqs.tolist() == list(range(low, max(low, min(stop, model.head))))
            assert batch.lapped == max(0, min(model.tail, stop) - start)
            model.check_slots(batch)
        elif kind == "read_events":
            rng = random.Random(op[3])
            low = max(0, model.tail + op[1])
            wanted = [rng.randrange(low, max(low, model.head) + 50) for _ in range(op[2])]
            events = journal.read_events(wanted)
            assert [e.seq for e in events] == [s for s in wanted if s in model.held()]
            model.check_events(events)
        elif kind == "select":
            node, stream = op[1], op[2]
            expected = [
                seq
                for seq in model.held()
                if (node is None or model.slots[seq][1] == node)
                and (stream is None or model.slots[seq][2] == stream)
            ]
            assert journal.select(node=node, stream=stream).tolist() == expected
        elif kind == "reopen":
            journal.close()
            journal = Journal(path, capacity, BLOB)
            opened.append(journal)
            report = journal.recovery
            assert (report.created, report.clean) == (False, True)
            assert (report.kept, report.torn, report.corrupt) == (0, 0, 0)
            assert report.events == model.head - model.tail
            for cursor in cursors:
                cursor.journal = journal

        # The invariants, after every operation.
        assert journal.bounds() == (model.tail, model.head)
        assert tail_before <= journal.tail  # the tail only grows
        assert model.head - model.tail <= capacity
        assert journal.blob_head == model.blob_head
        assert journal.last_lamport == model.last_lamport
        if kind in ("append", "reopen"):
            # Every held event intact: slot, record bytes, checksum.
            held = journal.read_slots(model.tail, model.head)
            assert held.seqs.tolist() == list(model.held())
            model.check_slots(held)
            model.check_events(journal.read_events(model.held()))
            assert journal.verify() == 0


# -- the overwrite policy, case by case ----------------------------------------------------------


def test_a_full_ring_retires_exactly_the_oldest_events(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", 64, BLOB)
    try:
        clock = HybridClock()
        for _ in range(10):
            det_append(journal, clock, 13)
        assert journal.bounds() == (130 - 64, 130)
        check_det_events(journal)
        assert journal.read_slots(0, 130).lapped == 130 - 64
    finally:
        journal.close()


def test_a_full_blob_region_retires_the_oldest_events_before_the_ring_is_full(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "j", 256, BLOB)
    try:
        big = [bytes([i]) * 100_000 for i in range(15)]  # 1.5 MB: one and a half laps
        for i, record in enumerate(big):
            journal.append_records([record], [i + 1])
            tail, head = journal.bounds()
            assert head == i + 1
            # Ten records of 100 kB fit in 1 MiB; the eleventh overwrites the first.
            assert tail == max(0, head - 10)
        events = journal.read_events(range(15))
        assert [e.seq for e in events] == list(range(5, 15))
        assert [e.payload for e in events] == [r[RECORD_HEADER_SIZE:] for r in big[5:]]
    finally:
        journal.close()


def test_a_batch_that_does_not_fit_before_the_end_starts_the_next_lap(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", 64, BLOB)
    try:
        journal.append_records([b"a" * 400_000], [1])
        journal.append_records([b"b" * 400_000], [2])
        journal.append_records([b"c" * 200_000, b"d" * 200_000], [3, 4])  # 400 kB: too long
        slots = journal.read_slots(0, 4)
        assert slots.seqs.tolist() == [1, 2, 3]  # "a" sat where the batch went
        assert slots.slots["payload_offset"].tolist() == [400_000, BLOB, BLOB + 200_000]
        assert journal.blob_head == BLOB + 400_000
        assert [e.payload[:1] for e in journal.read_events([1, 2, 3])] == [b"b", b"c", b"d"]
    finally:
        journal.close()


def test_a_call_longer_than_the_ring_keeps_its_newest_events(tmp_path: Path) -> None:
    # The sequencer receives up to 512 datagrams at once, and a ring may hold only 64.
    journal = Journal(tmp_path / "j", 64, BLOB)
    try:
        clock = HybridClock()
        det_append(journal, clock, 10)
        det_append(journal, clock, 500)
        assert journal.bounds() == (510 - 64, 510)
        check_det_events(journal)
        assert journal.verify() == 0
    finally:
        journal.close()


def test_a_call_with_more_bytes_than_half_the_blob_region_is_written(tmp_path: Path) -> None:
    # 512 datagrams of 4 kB (the sequencer's batch and stride) are 2 MiB: twice a 1 MiB blob.
    journal = Journal(tmp_path / "j", 1024, BLOB)
    try:
        records = [i.to_bytes(4, "little") * 1024 for i in range(512)]
        journal.append_records(records, range(1, 513))
        tail, head = journal.bounds()
        assert head == 512 and 256 - 64 <= tail < 512 - 200
        events = journal.read_events(range(tail, head))
        assert [e.payload for e in events] == [r[16:] for r in records[tail:]]
        assert all(e.valid for e in events) and journal.verify() == 0
        with pytest.raises(ValueError, match="half the blob"):
            journal.append_records([b"x" * (BLOB // 2 + 1)], [1000])
    finally:
        journal.close()


def test_empty_records_round_trip(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", 64, BLOB)
    try:
        journal.append_records([b"", b"x", b""], [1, 2, 3], flags=TEXT)
        journal.append_records([b""], [4], node=3)
        events = journal.read_events(range(4))
        assert [(e.payload, e.valid, e.node) for e in events] == [
            (b"", True, 0),
            (b"x", True, 0),
            (b"", True, 0),
            (b"", True, 3),
        ]
        assert journal.verify() == 0
    finally:
        journal.close()


# -- readers against a concurrent writer (the seqlock) -------------------------------------------

PATTERN_WIDTH = 8 + 400


def seq_lengths(seqs: np.ndarray) -> np.ndarray:
    return 16 + (seqs * 37) % 380  # 16..395: batches with and without records over 256 bytes


def seq_records(seqs: np.ndarray) -> np.ndarray:
    """Row i: event ``seqs[i]``'s record (its seq, then a pattern), padded to PATTERN_WIDTH."""
    columns = np.arange(PATTERN_WIDTH, dtype=np.int64)
    rows = ((seqs[:, None] * 131 + columns[None, :] * 7) & 0xFF).astype(np.uint8)
    rows[:, :8] = seqs.astype("<u8").view(np.uint8).reshape(-1, 8)
    return rows


class SeqChecker:
    """Checks that what a reader got for a seq is what the writer wrote for that seq."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def slots(self, batch: SlotBatch, what: str) -> None:
        seqs, slots = batch.seqs.astype(np.uint64), batch.slots
        wrong = (
            (slots["lamport"] != seqs + np.uint64(1))
            | (slots["node"] != seqs % np.uint64(7))
            | (slots["stream"] != seqs % np.uint64(5))
            | (slots["payload_len"] != seq_lengths(batch.seqs))
        )
        if wrong.any():
            self.failures.append(f"{what}: wrong slot for seqs {batch.seqs[wrong][:5].tolist()}")

    def events(self, events: list[Event], what: str) -> None:
        if not events:
            return
        seqs = np.array([e.seq for e in events], np.int64)
        rows, lengths = seq_records(seqs), seq_lengths(seqs)
        for event, row, length in zip(events, rows, lengths.tolist(), strict=True):
            expected = (event.seq + 1, event.seq % 7, event.seq % 5, True, event.seq)
            got = (event.lamport, event.node, event.stream, event.valid, event.sender_clock)
            if got != expected or event.payload != row[RECORD_HEADER_SIZE:length].tobytes():
                self.failures.append(f"{what}: wrong event for seq {event.seq}: {got}")
                return


def test_readers_never_get_what_a_concurrent_writer_overwrote(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", 64, BLOB)
    checker = SeqChecker()
    stop = threading.Event()
    counts = {"batches": 0, "cursor_lapped": 0, "cursor_seen": 0, "events_missed": 0, "events": 0}
    counts |= {"selected": 0, "followed": 0}

    def writer() -> None:
        rng = random.Random(7)
        head = 0
        while not stop.is_set():
            n = rng.choice((1, 2, 5, 17, 40, 64, 100))
            seqs = np.arange(head, head + n, dtype=np.int64)
            staging, lengths = seq_records(seqs), seq_lengths(seqs)
            fields = np.zeros(n, EVENT_DTYPE)
            fields["lamport"], fields["node"], fields["stream"] = seqs + 1, seqs % 7, seqs % 5
            crcs = np.array(
                [
                    zlib.crc32(row[:length])
                    for row, length in zip(staging, lengths.tolist(), strict=True)
                ],
                np.uint32,
            )
            journal.append(staging, np.zeros(n, np.int64), lengths, fields, crcs)
            head += n
            counts["batches"] += 1

    def cursor_reader() -> None:
        rng = random.Random(8)
        cursor = journal.cursor(0)
        seen = 0
        while not stop.is_set():
            position = cursor.position
            batch = cursor.poll(rng.randint(1, 50))
            checker.slots(batch, "cursor")
            expected = list(range(position + batch.lapped, cursor.position))
            if batch.seqs.tolist() != expected:
                checker.failures.append(f"cursor: seqs {batch.seqs.tolist()} != {expected}")
            seen += len(batch.seqs)
            if seen + cursor.lapped != cursor.position:
                checker.failures.append("cursor: seen + lapped != position")
        counts["cursor_lapped"], counts["cursor_seen"] = cursor.lapped, seen

    def follower() -> None:
        # Keeps up with the head, like ``events --follow``: the slots it reads were just written.
        cursor = journal.cursor(journal.head)
        while not stop.is_set():
            batch = cursor.poll(4096)
            checker.slots(batch, "follower")
            checker.events(journal.read_events(batch.seqs), "follower")
            counts["followed"] += len(batch.seqs)

    def event_reader() -> None:
        rng = random.Random(9)
        while not stop.is_set():
            tail, head = journal.bounds()
            start = max(0, rng.randint(tail - 20, head + 5))
            wanted = list(range(start, start + rng.randint(1, 80)))
            events = journal.read_events(wanted)
            checker.events(events, "read_events")
            counts["events"] += len(events)
            got = {e.seq for e in events}
            counts["events_missed"] += sum(1 for s in wanted if tail <= s < head and s not in got)
            batch = journal.read_slots(start, start + rng.randint(1, 80))
            checker.slots(batch, "read_slots")

    def select_reader() -> None:
        rng = random.Random(10)
        while not stop.is_set():
            node = rng.randrange(7)
            seqs = journal.select(node=node)
            if len(seqs) and (seqs.tolist() != list(range(int(seqs[0]), int(seqs[-1]) + 1, 7))):
                checker.failures.append(f"select: node {node} gave {seqs[:10].tolist()}...")
            checker.events(journal.read_events(seqs), "select")
            counts["selected"] += len(seqs)

    threads = [
        threading.Thread(target=target, name=f"journal-test-{target.__name__}")
        for target in (writer, cursor_reader, follower, event_reader, select_reader)
    ]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: more interleavings in the time given
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline and not checker.failures:
            stop.wait(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        sys.setswitchinterval(switch)
    try:
        assert not any(thread.is_alive() for thread in threads)
        assert checker.failures == []
        # The test only means something if readers were lapped and still read a lot.
        assert counts["batches"] > 100, counts
        assert counts["cursor_lapped"] > 0 and counts["cursor_seen"] > 0, counts
        assert counts["events"] > 0 and counts["selected"] > 0 and counts["followed"] > 0, counts
        events = journal.read_events(range(*journal.bounds()))
        checker.events(events, "after")
        assert checker.failures == [] and journal.verify() == 0
    finally:
        journal.close()


# -- crash recovery: a writer killed at random points --------------------------------------------

CHILD_PRELUDE = """\
from __future__ import annotations
import random, sys, zlib
import numpy as np
from lacrimosa.engine.events.frames import EVENT_DTYPE, TEXT, HybridClock
from lacrimosa.engine.events.journal import Journal
"""
CHILD_LOOP = """\
journal = Journal(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
clock = HybridClock(journal.last_lamport)
print(journal.head, flush=True)  # the head after opening (and recovering)
while True:
    det_append(journal, clock, det_batch_size(journal.head))
    print(journal.head, flush=True)  # published: a crash from here on must keep it
"""
CHILD_SCRIPT = "\n\n".join(
    [CHILD_PRELUDE]
    + [inspect.getsource(f) for f in (det_record, det_fields, det_batch_size, det_append)]
    + [CHILD_LOOP]
)
CRASH_CAPACITY = 128


def kill_writer_at_random_point(
    path: Path, folder: Path, rng: random.Random, wait_for_open: bool
) -> list[int]:
    """Run a writer child on ``path``, SIGKILL it after a random delay; return the heads it
    reported (the first is its head after opening)."""
    heads_file, errors_file = folder / "heads.txt", folder / "errors.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-c", CHILD_SCRIPT, str(path), str(CRASH_CAPACITY), str(BLOB)]
    with heads_file.open("wb") as out, errors_file.open("wb") as err:
        child = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=folder)
    try:
        if wait_for_open:
            wait_until(
                lambda: child.poll() is not None or heads_file.read_bytes().count(b"\n") >= 1,
                timeout=30,
                message="the writer to open the journal",
            )
        time.sleep(rng.uniform(0.0, 0.25))  # the kill point itself: a random moment, on purpose
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)
    assert child.returncode == -signal.SIGKILL, errors_file.read_text()
    lines = heads_file.read_bytes().split(b"\n")
    return [int(line) for line in lines[:-1]]  # the last may be cut short


def test_a_writer_killed_at_random_points_loses_nothing_it_published(tmp_path: Path) -> None:
    rng = random.Random(20240521)
    path = tmp_path / "events.journal"
    published = 0  # the highest head any writer reported (or we wrote)
    reopened = 0
    for point in range(16):
        # Mostly kill it while it writes; sometimes while it starts (opening, recovering).
        wait_for_open = point == 0 or rng.random() < 0.8
        heads = kill_writer_at_random_point(path, tmp_path, rng, wait_for_open)
        if heads:
            assert heads[0] >= published  # the child's own recovery kept everything published
            assert heads == sorted(heads)
            published = max(published, *heads)
        if point < 15 and rng.random() < 0.3:
            continue  # leave this crash for the next writer to recover
        journal = Journal(path, CRASH_CAPACITY, BLOB)
        try:
            report = journal.recovery
            reopened += 1
            assert not report.created
            if heads:
                assert report.clean is False
            tail, head = journal.bounds()
            assert head >= published, (point, heads[-3:])
            assert head - tail <= CRASH_CAPACITY and report.events == head - tail
            assert report.corrupt == 0 and journal.verify() == 0
            check_det_events(journal)
            # It goes on: appends land after what was kept, and the clock keeps increasing.
            last = journal.last_lamport
            lamports = det_append(journal, HybridClock(last), det_batch_size(head))
            assert int(lamports[0]) > last and journal.last_lamport == int(lamports[-1])
            assert journal.head > head and journal.verify() == 0
            check_det_events(journal)
            published = journal.head
        finally:
            journal.close()
    assert reopened >= 8


# -- crash recovery: an interrupted batch, made by hand ------------------------------------------


@contextlib.contextmanager
def raw_journal(path: Path, capacity: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The counters, slots and blob region of a closed journal file, writable: a crash, by hand."""
    raw = np.memmap(path, np.uint8, mode="r+")
    try:
        counters = raw[COUNTERS_AT : COUNTERS_AT + 64].view("<u8")
        slots = raw[HEADER_SIZE : HEADER_SIZE + capacity * SLOT_SIZE].view(EVENT_DTYPE)
        yield counters, slots, raw[HEADER_SIZE + capacity * SLOT_SIZE :]
        raw.flush()
    finally:
        del raw


INTERRUPTIONS = [
    ("all-written", None),  # killed after the last slot, before head was published
    ("counters-published", None),  # killed in step (4): blob head and lamport out, head not
    ("bad-checksum", 0),
    ("bad-checksum", 7),
    ("bad-checksum", 19),
    ("not-yet-written", 0),  # the slot still holds the event it was going to replace
    ("not-yet-written", 12),
    ("record-cut-short", 5),
    ("out-of-order", 9),  # a complete slot whose lamport does not follow
]


@pytest.mark.parametrize(("damage", "index"), INTERRUPTIONS, ids=lambda x: str(x))
def test_recovery_keeps_the_complete_slots_of_an_interrupted_batch(
    tmp_path: Path, damage: str, index: int | None
) -> None:
    capacity, batch = 64, 20
    path = tmp_path / "events.journal"
    journal = Journal(path, capacity, BLOB)
    clock = HybridClock()
    det_append(journal, clock, 70)  # the ring has lapped: reused slots hold older events
    before = {"head": journal.head, "blob": journal.blob_head, "last": journal.last_lamport}
    replaced = journal.slots.copy()
    det_append(journal, clock, batch)
    after = {"head": journal.head, "blob": journal.blob_head, "tail": journal.tail}
    written = journal.read_slots(before["head"], after["head"]).slots
    journal.close()

    kept = batch if index is None else index
    with raw_journal(path, capacity) as (counters, slots, blob):
        # The state during step (3): reserved, records and slots written, head not published.
        counters[HEAD], counters[RESERVE] = before["head"], after["head"]
        counters[BLOB_HEAD], counters[BLOB_RESERVE] = before["blob"], after["blob"]
        counters[LAST_LAMPORT], counters[CLEAN] = before["last"], 0
        assert counters[TAIL] == after["tail"]
        if damage == "counters-published":
            counters[BLOB_HEAD], counters[LAST_LAMPORT] = after["blob"], written[-1]["lamport"]
        if index is not None:
            position = (before["head"] + index) % capacity
            if damage == "bad-checksum":
                slots[position]["checksum"] ^= 0x10
            elif damage == "not-yet-written":
                slots[position] = replaced[position]
            elif damage == "record-cut-short":
                offset = int(written[index]["payload_offset"]) % BLOB
                blob[offset + int(written[index]["payload_len"]) - 1] ^= 0xFF
            elif damage == "out-of-order":
                slot = slots[position : position + 1]
                record = det_record(before["head"] + index)
                slot["lamport"] = written[index - 1]["lamport"]
                slot["checksum"] = zlib.crc32(record) ^ fields_digest(slot)

    journal = Journal(path, capacity, BLOB)
    try:
        report = journal.recovery
        assert (report.created, report.clean, report.kept, report.torn) == (
            False,
            False,
            kept,
            batch - kept,
        )
        assert report.corrupt == 0 and journal.verify() == 0
        assert journal.head == before["head"] + kept
        if kept:
            end = int(written[kept - 1]["payload_offset"] + written[kept - 1]["payload_len"])
            assert journal.blob_head == end
            assert journal.last_lamport == int(written[kept - 1]["lamport"])
        else:
            assert (journal.blob_head, journal.last_lamport) == (before["blob"], before["last"])
        check_det_events(journal)
        # The torn slots are gone (zeroed), not left to be mistaken for events later.
        for seq in range(journal.head, after["head"]):
            assert journal.slots[seq % capacity].tolist() == (0, 0, 0, 0, 0, 0, 0)
        assert journal.read_events(range(journal.head, after["head"])) == []
        # Writing goes on from the kept events, with a clock past the last kept one.
        det_append(journal, HybridClock(journal.last_lamport), 30)
        assert journal.head == before["head"] + kept + 30
        check_det_events(journal)
        assert journal.verify() == 0
    finally:
        journal.close()
    again = Journal(path, capacity, BLOB)  # recovered and closed: clean from now on
    try:
        assert again.recovery.clean and again.recovery.events == again.head - again.tail
    finally:
        again.close()


def test_a_crash_in_a_call_of_a_whole_ring_of_events_keeps_its_complete_slots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Recovery learns where the interrupted batch began from the slot just below it, so no batch
    # may reuse that slot: a call of exactly ``capacity`` events is split like a longer one.
    capacity = 64
    path = tmp_path / "events.journal"
    journal = Journal(path, capacity, BLOB)
    journal.append_records([b"old %d" % i for i in range(10)], range(1, 11))
    began: list[tuple[int, int, int, int]] = []  # head, reserve, blob head, lamport per batch
    real_gather = journal_module._gather

    def gather(*args: np.ndarray) -> None:  # step (2): the batch is reserved, nothing written
        counters = journal._counters
        began.append(
            (journal.head, int(counters[RESERVE]), journal.blob_head, journal.last_lamport)
        )
        real_gather(*args)

    monkeypatch.setattr(journal_module, "_gather", gather)
    journal.append_records([b"new %d" % i for i in range(capacity)], range(11, 11 + capacity))
    head_after = journal.head
    journal.close()
    head, reserve, blob_head, last = began[-1]
    assert reserve - head < capacity  # the slot just below the batch is left alone
    with raw_journal(path, capacity) as (counters, _, _):
        # Killed in step (3) of the last batch, every slot written, head not yet published.
        counters[HEAD], counters[BLOB_HEAD], counters[LAST_LAMPORT] = head, blob_head, last
        counters[CLEAN] = 0
    journal = Journal(path, capacity, BLOB)
    try:
        assert (journal.recovery.kept, journal.recovery.torn) == (reserve - head, 0)
        assert journal.head == head_after and journal.verify() == 0
        events = journal.read_events(range(journal.tail, journal.head))
        assert [e.payload for e in events][-3:] == [b"new 61", b"new 62", b"new 63"]
    finally:
        journal.close()


def test_a_damaged_held_slot_is_reported_corrupt_and_read_as_invalid(tmp_path: Path) -> None:
    path = tmp_path / "events.journal"
    journal = Journal(path, 64, BLOB)
    det_append(journal, HybridClock(), 40)
    journal.close()
    with raw_journal(path, 64) as (counters, slots, _):
        slots[17]["checksum"] ^= 1
        # A slot whose checksum is right but whose lamport does not follow the one before it.
        slots[30]["lamport"] = slots[29]["lamport"]
        slots[30]["checksum"] = zlib.crc32(det_record(30)) ^ int(fields_digest(slots[30:31])[0])
        counters[CLEAN] = 0
    journal = Journal(path, 64, BLOB)
    try:
        assert (journal.recovery.corrupt, journal.recovery.kept, journal.recovery.torn) == (2, 0, 0)
        assert "2 corrupt" in journal.recovery.describe()
        events = journal.read_events(range(40))
        assert [e.seq for e in events if not e.valid] == [17]
        assert journal.verify() == 2
    finally:
        journal.close()


# -- refusals ------------------------------------------------------------------------------------


def patch_version(data: bytearray) -> None:
    data[8:12] = (2).to_bytes(4, "little")
    data[GEOMETRY_CRC_AT : GEOMETRY_CRC_AT + 4] = zlib.crc32(data[:GEOMETRY_CRC_AT]).to_bytes(
        4, "little"
    )


def damage_header(data: bytearray) -> None:
    data[44] ^= 0x01  # a bit of the creation time: only the header checksum can tell


def damage_counters(data: bytearray) -> None:
    data[COUNTERS_AT + TAIL * 8 + 7] = 0x7F  # a tail far past the head: no writer leaves that


REFUSALS = {
    "random-bytes": (
        lambda data: data.__setitem__(slice(None), os.urandom(5000)),
        "not a lacrimosa",
    ),
    "text-file": (lambda data: data.__setitem__(slice(None), b"x = 1\n" * 100), "not a lacrimosa"),
    "empty-file": (lambda data: data.clear(), "not a lacrimosa"),
    "truncated": (lambda data: data.__delitem__(slice(-4096, None)), "truncated"),
    "longer": (lambda data: data.extend(b"\0" * 10), "longer than its header says"),
    "other-version": (patch_version, "version 2 journal"),
    "damaged-header": (damage_header, "damaged"),
    "damaged-counters": (damage_counters, "counters are inconsistent"),
}


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_a_file_that_is_not_a_usable_journal_is_refused_and_left_unchanged(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "events.journal"
    journal = Journal(path, 64, BLOB)
    det_append(journal, HybridClock(), 10)
    journal.close()
    damage, message = REFUSALS[kind]
    data = bytearray(path.read_bytes())
    damage(data)
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match=message):
        Journal(path, 64, BLOB)
    assert path.read_bytes() == data
    assert os.listdir(tmp_path) == ["events.journal"]


@pytest.mark.parametrize(("capacity", "blob"), [(128, BLOB), (64, 2 * BLOB)])
def test_a_journal_of_another_size_than_the_config_is_refused(
    tmp_path: Path, capacity: int, blob: int
) -> None:
    path = tmp_path / "events.journal"
    Journal(path, 64, BLOB).close()
    data = path.read_bytes()
    with pytest.raises(JournalError, match="holds 64 slots and 1,048,576 blob bytes"):
        Journal(path, capacity, blob)
    assert path.read_bytes() == data


def test_a_journal_in_use_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.journal"
    first = Journal(path, 64, BLOB)
    try:
        det_append(first, HybridClock(), 5)
        data = path.read_bytes()
        with pytest.raises(JournalError, match="in use"):
            Journal(path, 64, BLOB)
        assert path.read_bytes() == data
        det_append(first, HybridClock(first.last_lamport), 5)  # the first one goes on
        check_det_events(first)
    finally:
        first.close()
    second = Journal(path, 64, BLOB)  # free again once closed
    try:
        assert second.recovery.clean and second.head == 10
    finally:
        second.close()


def test_a_closed_journal_is_free_to_reopen_and_late_readers_still_read(tmp_path: Path) -> None:
    path = tmp_path / "events.journal"
    first = Journal(path, 64, BLOB)
    det_append(first, HybridClock(), 10)
    first.close()
    # A reader that was still at work (another thread, at shutdown) reads what was there.
    assert first.bounds() == (0, 10) and len(first.read_events(range(10))) == 10
    assert first.cursor(0).poll().seqs.tolist() == list(range(10))
    second = Journal(path, 64, BLOB)  # the lock is free although the first mapping lives on
    try:
        assert second.recovery.clean and second.head == 10
        check_det_events(second)
    finally:
        second.close()


def test_a_journal_smaller_than_the_minimum_is_not_made(tmp_path: Path) -> None:
    for capacity, blob in ((MIN_JOURNAL_CAPACITY - 1, BLOB), (MIN_JOURNAL_CAPACITY, BLOB - 1)):
        with pytest.raises(JournalError, match="at least"):
            Journal(tmp_path / "events.journal", capacity, blob)
    assert os.listdir(tmp_path) == []


# -- creating and reopening ----------------------------------------------------------------------


def test_a_new_journal_takes_its_space_is_private_and_the_right_size(tmp_path: Path) -> None:
    path = tmp_path / "state" / "events.journal"
    journal = Journal(path, 4096, 8 * BLOB)
    try:
        report = journal.recovery
        assert (report.created, report.clean, report.events) == (True, True, 0)
        assert report.describe() == "new journal"
        info = path.stat()
        assert info.st_size == file_size(4096, 8 * BLOB)
        assert info.st_blocks * 512 >= info.st_size  # allocated now, not when first written
        assert stat.S_IMODE(info.st_mode) == 0o600
        assert os.listdir(path.parent) == ["events.journal"]  # no temporary file left
        assert journal.bounds() == (0, 0) and journal.last_lamport == 0
        assert journal.read_events([0, 1]) == [] and journal.verify() == 0
    finally:
        journal.close()


def test_no_room_for_a_new_journal_is_a_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    # A file size limit stands in for a full disk (in a child: the limit is per process).
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from lacrimosa.engine.errors import JournalError
        from lacrimosa.engine.events.journal import Journal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        try:
            Journal({str(tmp_path / "events.journal")!r}, 4096, 8 << 20)
        except JournalError as exc:
            print(exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "cannot make the event journal (8 MiB)" in done.stdout
    assert os.listdir(tmp_path) == []


def test_reopening_after_a_clean_close_keeps_every_event(tmp_path: Path) -> None:
    path = tmp_path / "events.journal"
    journal = Journal(path, 100, BLOB)
    clock = HybridClock()
    for _ in range(20):
        det_append(journal, clock, det_batch_size(journal.head))
    state = (journal.bounds(), journal.blob_head, journal.last_lamport)
    events = check_det_events(journal)
    assert state[0][0] > 0  # lapped: the reopened journal starts mid-ring
    journal.close()
    journal.close()  # closing twice is harmless

    journal = Journal(path, 100, BLOB)
    try:
        report = journal.recovery
        assert (report.created, report.clean, report.kept, report.torn, report.corrupt) == (
            False,
            True,
            0,
            0,
            0,
        )
        assert report.events == state[0][1] - state[0][0]
        assert "clean" in report.describe()
        assert (journal.bounds(), journal.blob_head, journal.last_lamport) == state
        assert check_det_events(journal) == events
        lamports = det_append(journal, HybridClock(journal.last_lamport), 3)
        assert int(lamports[0]) > state[2]
        check_det_events(journal)
    finally:
        journal.close()


# -- counters cross-checked against the slots on opening (issue 6) -------------------------------

TAMPER_CAPACITY = 4096
TAMPER_EVENTS = 3000


def tampered_journal(path: Path, kind: str, clean: bool) -> tuple[int, int, int]:
    """A journal of ``TAMPER_EVENTS`` now-ish events, closed, then damaged as ``kind`` says;
    return its true (tail, head, last lamport)."""
    journal = Journal(path, TAMPER_CAPACITY, BLOB)
    clock = HybridClock()
    for first in range(0, TAMPER_EVENTS, 500):
        lamports, _ = clock.stamp(np.zeros(500, np.uint64))
        journal.append_records([b"event %d" % i for i in range(first, first + 500)], lamports)
    truth = (journal.tail, journal.head, journal.last_lamport)
    journal.close()
    with raw_journal(path, TAMPER_CAPACITY) as (counters, slots, _):
        newest = (truth[1] - 1) % TAMPER_CAPACITY
        if kind == "last-lamport-max":
            counters[LAST_LAMPORT] = 2**64 - 1
        elif kind == "last-lamport-bit-62":
            counters[LAST_LAMPORT] |= np.uint64(1 << 62)
        elif kind == "newest-slot-lamport":
            slots[newest]["lamport"] = 2**64 - 1
        elif kind == "newest-slot-lamport-checksummed":  # a forger who fixed the checksum too
            slots[newest]["lamport"] |= np.uint64(1 << 62)
            record = b"event %d" % (truth[1] - 1)
            digest = int(fields_digest(slots[newest : newest + 1])[0])
            slots[newest]["checksum"] = zlib.crc32(record) ^ digest
        elif kind == "newest-slot-offset":
            slots[newest]["payload_offset"] += np.uint64(900_000)
        elif kind == "head-minus-1000":
            counters[HEAD] -= np.uint64(1000)
            counters[RESERVE] = counters[HEAD]
        elif kind == "tail-plus-1000":
            counters[TAIL] += np.uint64(1000)
        counters[CLEAN] = int(clean)
    return truth


# kind: (the message, how many of the newest events are lost: only damaged ones)
TAMPERINGS = {
    "last-lamport-max": ("the last lamport counter was 18446744073709551615", 0),
    "last-lamport-bit-62": ("the last lamport counter was", 0),
    "newest-slot-lamport": ("the newest 1 events were damaged", 1),
    "newest-slot-lamport-checksummed": ("the newest 1 events were damaged", 1),
    "newest-slot-offset": ("the newest 1 events were damaged", 1),
    "head-minus-1000": ("the head counter was 1,000 events behind the slots", 0),
    "tail-plus-1000": ("the tail counter was 1,000 events too high", 0),
}


@pytest.mark.parametrize("clean", [True, False], ids=["clean", "unclean"])
@pytest.mark.parametrize("kind", sorted(TAMPERINGS))
def test_tampered_counters_are_repaired_from_the_slots_and_never_reach_the_clock(
    tmp_path: Path, kind: str, clean: bool
) -> None:
    path = tmp_path / "events.journal"
    tail, head, last = tampered_journal(path, kind, clean)
    message, lost = TAMPERINGS[kind]
    journal = Journal(path, TAMPER_CAPACITY, BLOB)
    try:
        report = journal.recovery
        if kind != "head-minus-1000" or clean:  # unclean: [head, reserve) is a crash's batch
            assert message in report.describe(), report.describe()
        assert journal.bounds() == (tail, head - lost)
        if lost:
            assert journal.slots[(head - 1) % TAMPER_CAPACITY].tolist() == (0, 0, 0, 0, 0, 0, 0)
            assert journal.last_lamport < last
        else:
            assert journal.last_lamport == last
        assert journal.verify() == 0
        events = journal.read_events(range(tail, head))
        assert [e.payload for e in events] == [b"event %d" % i for i in range(tail, head - lost)]
        assert all(e.valid for e in events)
        # What the clock starts from is now-ish, and it goes on from there.
        assert abs(lamport_wall_time(journal.last_lamport) - time.time()) < 60
        clock = HybridClock(journal.last_lamport)
        lamports, _ = clock.stamp(np.zeros(5, np.uint64))
        journal.append_records([b"after %d" % i for i in range(5)], lamports)
        assert journal.verify() == 0
        assert journal.bounds() == (tail, head - lost + 5)
    finally:
        journal.close()
    again = Journal(path, TAMPER_CAPACITY, BLOB)  # repaired for good: nothing more to say
    try:
        assert again.recovery.clean and again.recovery.repairs == ()
    finally:
        again.close()


def test_a_journal_whose_held_events_are_all_damaged_is_refused_and_left_unchanged(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.journal"
    tampered_journal(path, "none", clean=True)
    with raw_journal(path, TAMPER_CAPACITY) as (_, _, blob):
        blob[:] = 0  # every record gone: no slot can be trusted
    data = path.read_bytes()
    with pytest.raises(JournalError, match="none of its 3,000 held events is intact"):
        Journal(path, TAMPER_CAPACITY, BLOB)
    assert path.read_bytes() == data


def test_a_journal_path_that_is_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious" * 1000)
    state = tmp_path / "state"
    state.mkdir()
    (state / "events.journal").symlink_to(victim)
    with pytest.raises(JournalError, match="symbolic link"):
        Journal(state / "events.journal", 64, BLOB)
    # A dangling link (to a file it would create) is refused too, and nothing is made.
    (state / "other.journal").symlink_to(tmp_path / "made-through-the-link")
    with pytest.raises(JournalError, match="symbolic link"):
        Journal(state / "other.journal", 64, BLOB)
    assert victim.read_bytes() == b"precious" * 1000
    assert not (tmp_path / "made-through-the-link").exists()
    assert sorted(os.listdir(state)) == ["events.journal", "other.journal"]
    # A real journal linked to: refused as well (the link could be swapped at any time).
    Journal(tmp_path / "real.journal", 64, BLOB).close()
    (state / "linked.journal").symlink_to(tmp_path / "real.journal")
    with pytest.raises(JournalError, match="symbolic link"):
        Journal(state / "linked.journal", 64, BLOB)


def test_a_planted_temporary_name_is_never_written_through(tmp_path: Path) -> None:
    # The old temporary name was predictable (pid-based); whatever is planted, it is left alone.
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    for name in (f".events.journal.{os.getpid()}.new", ".events.journal.new"):
        (tmp_path / name).symlink_to(victim)
    journal = Journal(tmp_path / "events.journal", 64, BLOB)
    journal.close()
    assert victim.read_bytes() == b"precious"
    assert not (tmp_path / "events.journal").is_symlink()
    assert len(os.listdir(tmp_path)) == 4  # victim, two links, the journal: no temporary left


def test_a_journal_others_can_write_or_own_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    # Another user who may write the file could change its events and counters while we run (a
    # journal path outside the state folder, in a project folder anyone may write to).
    path = tmp_path / "events.journal"
    Journal(path, 64, BLOB).close()
    data = path.read_bytes()
    for mode in (0o666, 0o620):
        path.chmod(mode)
        with pytest.raises(JournalError, match="writable by you alone"):
            Journal(path, 64, BLOB)
        with pytest.raises(JournalError, match="writable by you alone"):
            Journal.open_reader(path, 64, BLOB, None)
    assert path.read_bytes() == data
    path.chmod(0o600)
    Journal(path, 64, BLOB).close()  # ours and private: used
    if os.geteuid() == 0:  # root can hand the file to another uid and see it refused
        os.chown(path, 65534, -1)
        with pytest.raises(JournalError, match="owned by uid 65534"):
            Journal(path, 64, BLOB)
