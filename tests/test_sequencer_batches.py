"""The sequencer's batches of same-size frames (a busy sender's), which take a shorter path
than mixed batches: every event must come out as the general path makes it (checked, stamped,
journaled, recoverable), and any batch it cannot take whole goes the general way.

A sequencer that is not started, drained in the test's thread (as the benchmark does), on a real
UDP socket on 127.0.0.1 and a real journal file."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_journal import raw_journal

from lacrimosa.engine.config import SequencerSettings
from lacrimosa.engine.events.frames import MAX_CLOCK_AHEAD_MS, TEXT, encode_frame
from lacrimosa.engine.events.journal import CLEAN, Journal
from lacrimosa.engine.events.receivers import DEFAULT_BATCH
from lacrimosa.engine.events.sequencer import Sequencer

CAPACITY = 8192
BLOB = 4 << 20
PAYLOAD = 40  # every frame of a test the same size: the batches are uniform
# Receive-buffer bytes one small datagram may take on loopback (the kernel's accounting): each
# round sends only what the buffer surely holds, so nothing is lost before the drain.
TRUESIZE_BOUND = 2048


@pytest.fixture
def sequencer(tmp_path: Path) -> Iterator[Sequencer]:
    settings = SequencerSettings(udp="127.0.0.1:0", capacity=CAPACITY, blob_size=BLOB)
    made = Sequencer(settings, tmp_path / "events.journal")
    yield made
    made.stop()


def frame(index: int, *, clock: int = 0) -> bytes:
    payload = f"event {index:08d} ".encode().ljust(PAYLOAD, b".")
    return encode_frame(
        payload, node=index % 7, stream=index % 3, flags=index % 0x1000, clock=clock
    )


def send_and_drain(sequencer: Sequencer, datagrams: list[bytes]) -> None:
    """Send in rounds the receive buffer holds, each journaled by one drain (several batches)."""
    per_round = max(1, sequencer.socket_info.rcvbuf // TRUESIZE_BOUND)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for first in range(0, len(datagrams), per_round):
            chunk = datagrams[first : first + per_round]
            for datagram in chunk:
                sender.sendto(datagram, sequencer.socket_info.address)
            assert sequencer.drain() == len(chunk)  # loopback: sent is queued
    assert sequencer.stats().drops["kernel"] == 0


def test_batches_of_same_size_frames_are_journaled_whole_and_recoverable(
    sequencer: Sequencer, tmp_path: Path
) -> None:
    count = 3 * DEFAULT_BATCH + 7  # past the batch bound: full batches, then a partial one
    now = (time.time_ns() // 1_000_000) << 16
    too_far = now + ((MAX_CLOCK_AHEAD_MS + 60_000) << 16)  # not followed: flagged
    ahead = now + (5_000 << 16)  # followed: later stamps come after it
    clocks = {10: too_far, 600: ahead, 601: 0, 1200: too_far}
    datagrams = [frame(i, clock=clocks.get(i, 0)) for i in range(count)]
    send_and_drain(sequencer, datagrams)

    stats = sequencer.stats()
    assert (stats.received, stats.accepted, stats.framed, stats.text) == (count, count, count, 0)
    assert stats.drops == {"malformed": 0, "bad_checksum": 0, "oversize": 0, "kernel": 0}
    assert stats.clock_ignored == 2
    events = sequencer.events(count)
    assert [e.seq for e in events] == list(range(count))
    for index, event in enumerate(events):
        assert event.valid
        assert event.payload == datagrams[index][24:]
        assert (event.node, event.stream, event.sender_flags) == (
            index % 7,
            index % 3,
            index % 0x1000,
        )
        assert event.sender_clock == clocks.get(index, 0)
        assert (event.to_json().get("clock_ignored") is True) == (clocks.get(index) == too_far)
        assert not event.is_text
    lamports = np.array([e.lamport for e in events], np.uint64)
    assert (np.diff(lamports.astype(np.int64)) > 0).all()
    assert events[600].lamport > ahead and events[601].lamport > events[600].lamport
    assert events[10].lamport < too_far

    # What was written is what recovery reads back: reopened after a clean close, and again as
    # after a crash (the clean flag cleared in the file), every slot checks.
    sequencer.stop()
    path = tmp_path / "events.journal"
    for crashed in (False, True):
        if crashed:
            with raw_journal(path, CAPACITY) as (counters, _, _):
                counters[CLEAN] = 0
        journal = Journal(path, CAPACITY, BLOB)
        try:
            report = journal.recovery
            assert report.clean is not crashed
            assert (report.events, report.corrupt, report.torn, report.repairs) == (count, 0, 0, ())
            assert journal.verify() == 0
        finally:
            journal.close()


def test_a_same_size_batch_with_bad_frames_keeps_the_good_ones_in_order(
    sequencer: Sequencer,
) -> None:
    datagrams = [frame(i) for i in range(100)]
    corrupt = bytearray(datagrams[17])
    corrupt[-1] ^= 0x01  # same size, wrong checksum
    datagrams[17] = bytes(corrupt)
    reserved = bytearray(datagrams[42])
    reserved[23] |= 0x80  # flags bit 15 belongs to the sequencer: malformed
    datagrams[42] = bytes(reserved)
    send_and_drain(sequencer, datagrams)

    stats = sequencer.stats()
    assert stats.received == 100 and stats.accepted == 98
    assert stats.drops["bad_checksum"] == 1 and stats.drops["malformed"] == 1
    kept = [i for i in range(100) if i not in (17, 42)]
    events = sequencer.events(100)
    assert [e.payload for e in events] == [datagrams[i][24:] for i in kept]
    assert all(e.valid for e in events)


def test_a_text_datagram_of_the_same_size_is_text(sequencer: Sequencer) -> None:
    size = len(frame(0))
    text = b"t" * size  # as long as the frames, but not one
    send_and_drain(sequencer, [frame(0), text, frame(2)])
    events = sequencer.events(3)
    assert [e.is_text for e in events] == [False, True, False]
    assert events[1].payload == text and events[1].flags & TEXT
    assert sequencer.stats().text == 1
