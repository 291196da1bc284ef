"""Events: the order ``(lamport, node, stream)``, the hybrid clock, the frame format, the digest."""

from __future__ import annotations

import itertools
import json
import struct
import time
import zlib

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lacrimosa.engine.events.frames import (
    CLOCK_IGNORED,
    COUNTER_BITS,
    EVENT_DTYPE,
    FRAME_HEADER,
    MAGIC,
    MAX_CLOCK_AHEAD_MS,
    RECORD_HEADER_SIZE,
    SENDER_FLAGS,
    TEXT,
    Event,
    HybridClock,
    decode_record,
    encode_frame,
    fields_digest,
    lamport_wall_time,
    order_key,
)

U64 = 2**64 - 1
AHEAD = MAX_CLOCK_AHEAD_MS << COUNTER_BITS  # the clock-ahead limit in lamport units


def physical(ns: int) -> int:
    """The lamport value of a wall-clock time (the clock's own formula, written out)."""
    return (ns // 1_000_000) << COUNTER_BITS


# Small ranges as well as full ones, so that equal lamports (and equal nodes) are common.
lamports = st.one_of(st.integers(0, 3), st.integers(0, U64))
nodes = st.one_of(st.integers(0, 2), st.integers(0, 2**32 - 1))
streams = st.one_of(st.integers(0, 2), st.integers(0, 2**16 - 1))
keys = st.tuples(lamports, nodes, streams)


def slots_of(
    rows: list[tuple[int, int, int]], noise: list[tuple[int, int, int, int]] | None = None
) -> np.ndarray:
    """EVENT_DTYPE slots with these ``(lamport, node, stream)``; ``noise`` fills the other fields."""
    slots = np.zeros(len(rows), EVENT_DTYPE)
    for i, (lamport, node, stream) in enumerate(rows):
        slots[i]["lamport"], slots[i]["node"], slots[i]["stream"] = lamport, node, stream
        if noise is not None:
            flags, offset, checksum, length = noise[i % len(noise)]
            slots[i]["flags"], slots[i]["payload_offset"] = flags, offset
            slots[i]["checksum"], slots[i]["payload_len"] = checksum, length
    return slots


def before(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    """``a`` sorts before ``b`` by ``order_key``, whichever of the two comes first in the input."""
    return list(order_key(slots_of([a, b]))) == [0, 1] and list(order_key(slots_of([b, a]))) == [
        1,
        0,
    ]


# -- the order -----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(a=keys, b=keys, c=keys)
def test_order_is_a_strict_total_order_on_keys(
    a: tuple[int, int, int], b: tuple[int, int, int], c: tuple[int, int, int]
) -> None:
    for x, y in ((a, b), (b, c), (a, c)):
        # Total: of two distinct keys exactly one comes first; of equal keys neither does.
        assert before(x, y) + before(y, x) == (1 if x != y else 0)
        # And it is the lexicographic order of (lamport, node, stream), unsigned, all 64 bits.
        assert before(x, y) == (x < y)
    assert not (before(a, b) and before(b, a))  # antisymmetric
    if before(a, b) and before(b, c):
        assert before(a, c)  # transitive
    assert not before(a, a)  # irreflexive


noise_rows = st.tuples(
    st.integers(0, 2**16 - 1),
    st.integers(0, U64),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(keys, max_size=60),
    noise=st.lists(noise_rows, min_size=1, max_size=8),
    other=st.lists(noise_rows, min_size=1, max_size=8),
)
def test_sorting_by_order_key_is_a_monotone_permutation(
    rows: list[tuple[int, int, int]],
    noise: list[tuple[int, int, int, int]],
    other: list[tuple[int, int, int, int]],
) -> None:
    slots = slots_of(rows, noise)
    order = order_key(slots)
    assert sorted(order.tolist()) == list(range(len(rows)))  # a permutation
    ordered = slots[order]
    got = list(zip(*(ordered[f].tolist() for f in ("lamport", "node", "stream")), strict=True))
    assert all(x <= y for x, y in itertools.pairwise(got))  # non-decreasing
    assert got == sorted(rows)
    # flags, payload_offset, checksum and payload_len take no part in the order (not even in
    # breaking ties: the sort is stable, so equal keys keep their input order).
    assert order_key(slots_of(rows, other)).tolist() == order.tolist()
    assert order.tolist() == sorted(range(len(rows)), key=lambda i: rows[i])


# -- the hybrid clock ----------------------------------------------------------------------------

# A sender clock, as an offset from our physical clock in lamport units, or an absolute value.
relative_clocks = st.one_of(
    st.integers(-(10**6) << COUNTER_BITS, -1),  # in the past
    st.integers(-5, 5),  # about now, same millisecond
    st.integers(1, AHEAD - (2000 << COUNTER_BITS)),  # ahead, but within the limit
    st.integers(AHEAD + (2000 << COUNTER_BITS), AHEAD * 1000),  # too far ahead
)
absolute_clocks = st.one_of(
    st.just(0), st.integers(2**62, U64), st.sampled_from([2**63 - 1, 2**63])
)
sender_clock = st.one_of(
    st.tuples(st.just("relative"), relative_clocks), st.tuples(st.just("absolute"), absolute_clocks)
)
batches = st.lists(st.lists(sender_clock, max_size=40), min_size=1, max_size=12)


def resolve(clock: tuple[str, int], now: int) -> int:
    kind, value = clock
    return value if kind == "absolute" else max(0, now + value)


@settings(max_examples=200, deadline=None)
@given(batches=batches, last=st.one_of(st.just(0), st.integers(0, 2**62 - 1)))
@example(batches=[[("absolute", 2**63)]], last=0)
@example(batches=[[("absolute", U64)], [], [("absolute", 2**63 - 1)]], last=0)
def test_stamps_increase_follow_senders_and_ignore_clocks_too_far_ahead(
    batches: list[list[tuple[str, int]]], last: int
) -> None:
    clock = HybridClock(last)
    previous = last
    ignored_total = 0
    for batch in batches:
        before_ns = time.time_ns()
        senders = [resolve(c, physical(before_ns)) for c in batch]
        stamps, ignored = clock.stamp(np.array(senders, dtype=np.uint64))
        after_ns = time.time_ns()
        assert stamps.dtype == np.uint64 and ignored.dtype == np.bool_
        assert len(stamps) == len(ignored) == len(batch)
        values = stamps.tolist()
        # Strictly increasing, within the batch and from one batch to the next (empty ones too),
        # and never at or below the clock it was recovered with.
        assert all(x < y for x, y in zip([previous, *values], values, strict=False))
        for sender, stamp, was_ignored in zip(senders, values, ignored.tolist(), strict=True):
            if sender > physical(after_ns) + AHEAD:
                assert was_ignored, f"clock {sender} is too far ahead and must be flagged"
            if sender <= physical(before_ns) + AHEAD:
                assert not was_ignored
            if not was_ignored:
                assert stamp >= sender + 1  # causality carried by the sender is kept
            assert stamp >= physical(before_ns)  # never behind our own clock
        ignored_total += int(ignored.sum())
        previous = values[-1] if values else previous
        assert clock.last == previous
    assert clock.ignored == ignored_total


@settings(max_examples=50, deadline=None)
@given(sizes=st.lists(st.integers(0, 2000), min_size=1, max_size=10))
def test_stamps_carry_wall_time_when_no_sender_is_ahead(sizes: list[int]) -> None:
    clock = HybridClock()
    for size in sizes:
        past = physical(time.time_ns()) - (5_000 << COUNTER_BITS)
        stamps, ignored = clock.stamp(np.full(size, past, dtype=np.uint64))
        now = time.time()
        assert not ignored.any()
        for stamp in stamps[[0, -1]].tolist() if size else []:
            assert abs(lamport_wall_time(stamp) - now) < 1.0


def test_a_recovered_clock_far_in_the_future_still_increases() -> None:
    future = physical(time.time_ns()) + (3600_000 << COUNTER_BITS)
    clock = HybridClock(future)
    first, _ = clock.stamp(np.zeros(3, np.uint64))
    assert first.tolist() == [future + 1, future + 2, future + 3]
    empty, flags = clock.stamp(np.zeros(0, np.uint64))
    assert len(empty) == len(flags) == 0 and clock.last == future + 3
    second, _ = clock.stamp(np.zeros(1, np.uint64))
    assert second.tolist() == [future + 4]


# -- the frame -----------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    payload=st.binary(max_size=600),
    node=st.integers(0, 2**32 - 1),
    stream=st.integers(0, 2**16 - 1),
    flags=st.integers(0, SENDER_FLAGS),
    clock=st.integers(0, U64),
)
def test_frame_fields_sit_at_their_documented_offsets(
    payload: bytes, node: int, stream: int, flags: int, clock: int
) -> None:
    frame = encode_frame(payload, node=node, stream=stream, flags=flags, clock=clock)
    assert len(frame) == 24 + len(payload)
    assert frame[0:4] == MAGIC == bytes([0xA7, 0x4C, 0x51, 0x01])
    assert struct.unpack_from("<I", frame, 4)[0] == zlib.crc32(frame[8:])
    assert struct.unpack_from("<Q", frame, 8)[0] == clock
    assert struct.unpack_from("<I", frame, 16)[0] == node
    assert struct.unpack_from("<H", frame, 20)[0] == stream
    assert struct.unpack_from("<H", frame, 22)[0] == flags
    assert frame[24:] == payload
    assert FRAME_HEADER.unpack_from(frame) == (
        MAGIC,
        zlib.crc32(frame[8:]),
        clock,
        node,
        stream,
        flags,
    )
    with pytest.raises(UnicodeDecodeError):
        frame.decode("utf-8")  # 0xA7 never starts UTF-8 text

    # What the journal keeps is the frame from byte 8 on; reading it back gives the frame's fields.
    slot = np.zeros((), EVENT_DTYPE)
    slot["lamport"], slot["node"], slot["stream"], slot["flags"] = 7, node, stream, flags
    event = decode_record(3, slot, frame[8:], True)
    assert (event.payload, event.sender_clock, event.sender_flags) == (payload, clock, flags)
    assert not event.is_text


@settings(max_examples=100, deadline=None)
@given(flags=st.integers(0, 0xFFFF).filter(lambda f: f & 0xF000))
def test_frames_with_reserved_flag_bits_are_refused(flags: int) -> None:
    with pytest.raises(ValueError, match="reserved"):
        encode_frame(b"x", flags=flags)


# -- events as JSON ------------------------------------------------------------------------------


def test_a_text_event_as_json() -> None:
    lamport = (1_700_000_000_123 << COUNTER_BITS) | 5
    slot = np.zeros((), EVENT_DTYPE)
    slot["lamport"], slot["flags"] = lamport, TEXT
    event = decode_record(42, slot, "deploy started ✓".encode(), True)
    assert event.is_text and event.sender_clock is None
    assert event.to_json() == {
        "seq": 42,
        "lamport": lamport,
        "time": 1_700_000_000.123,
        "node": 0,
        "stream": 0,
        "flags": 0,
        "kind": "text",
        "size": len("deploy started ✓".encode()),
        "valid": True,
        "text": "deploy started ✓",
    }
    json.dumps(event.to_json())


def test_a_binary_framed_event_as_json() -> None:
    payload = b"\xff\x00\xfe binary"
    frame = encode_frame(payload, node=9, stream=3, flags=0x0A5, clock=12345)
    slot = np.zeros((), EVENT_DTYPE)
    slot["lamport"], slot["node"], slot["stream"] = 1 << COUNTER_BITS, 9, 3
    slot["flags"] = 0x0A5 | CLOCK_IGNORED  # the sequencer's bit is not a sender flag
    out = decode_record(0, slot, frame[8:], False).to_json()
    assert out == {
        "seq": 0,
        "lamport": 1 << COUNTER_BITS,
        "time": 0.001,
        "node": 9,
        "stream": 3,
        "flags": 0x0A5,
        "kind": "framed",
        "size": len(payload),
        "valid": False,
        "sender_clock": 12345,
        "clock_ignored": True,
        "hex": payload.hex(),
    }
    json.dumps(out)


def test_a_framed_event_with_a_utf8_payload_shows_text() -> None:
    event = Event(1, 2, 3, 4, 0, b"hello", 0, True)
    out = event.to_json()
    assert (out["kind"], out["text"], out["sender_clock"]) == ("framed", "hello", 0)
    assert "hex" not in out and "clock_ignored" not in out
    assert RECORD_HEADER_SIZE == 16


# -- the slot digest -----------------------------------------------------------------------------

FIELD_RANGES = {
    "lamport": U64,
    "node": 2**32 - 1,
    "stream": 2**16 - 1,
    "flags": 2**16 - 1,
    "payload_offset": U64,
    "payload_len": 2**32 - 1,
}
slot_values = st.fixed_dictionaries(
    {name: st.integers(0, top) for name, top in FIELD_RANGES.items()}
    | {"checksum": st.integers(0, 2**32 - 1)}
)


@settings(max_examples=500, deadline=None)
@given(
    values=slot_values,
    field=st.sampled_from(sorted(FIELD_RANGES)),
    new=st.integers(0, U64),
    checksum=st.integers(0, 2**32 - 1),
)
def test_the_digest_changes_with_every_field_but_the_checksum(
    values: dict[str, int], field: str, new: int, checksum: int
) -> None:
    slot = np.zeros(1, EVENT_DTYPE)
    for name, value in values.items():
        slot[name] = value
    digest = int(fields_digest(slot)[0])
    assert fields_digest(slot).dtype == np.uint32

    changed = slot.copy()
    changed["checksum"] = checksum
    assert int(fields_digest(changed)[0]) == digest

    new %= FIELD_RANGES[field] + 1
    if new == values[field]:
        new ^= 1
    changed = slot.copy()
    changed[field] = new
    assert int(fields_digest(changed)[0]) != digest, (field, values[field], new)


def test_the_digest_is_vectorised_per_slot() -> None:
    slots = np.zeros(50, EVENT_DTYPE)
    slots["lamport"] = np.arange(50, dtype=np.uint64) << np.uint64(20)
    slots["payload_offset"] = np.arange(50, dtype=np.uint64) * np.uint64(100)
    digests = fields_digest(slots)
    assert digests.tolist() == [int(fields_digest(slots[i : i + 1])[0]) for i in range(50)]
    assert len(set(digests.tolist())) == 50
