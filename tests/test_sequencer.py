"""The sequencer in a real console: real UDP datagrams on loopback, a real journal file."""

from __future__ import annotations

import errno
import functools
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import send_events, wait_until

from lacrimosa.api import cli as cli_module
from lacrimosa.api.protocol import PIECE_BYTES, dispatch, follow, reply_bytes
from lacrimosa.api.wire import encode
from lacrimosa.engine.config import SequencerSettings, load_config
from lacrimosa.engine.console import Console
from lacrimosa.engine.errors import ConsoleError, JournalError
from lacrimosa.engine.events import sequencer as sequencer_module
from lacrimosa.engine.events.frames import (
    MAX_CLOCK_AHEAD_MS,
    TEXT,
    Event,
    encode_frame,
    lamport_wall_time,
)
from lacrimosa.engine.events.journal import BLOB_HEAD, Journal
from lacrimosa.engine.events.receivers import Receiver, RecvIntoReceiver
from lacrimosa.engine.events.sequencer import Sequencer
from lacrimosa.engine.logs.query import LogQuery

SEQUENCED = """
[processes.idle]
cmd = "sleep 300"

[sequencer]
udp = "127.0.0.1:0"
capacity = 4096
blob = "4MiB"
"""


def test_text_and_framed_events_are_journaled_in_order(
    console: Callable[..., Console], udp_sender: socket.socket
) -> None:
    instance = console(SEQUENCED)
    send_events(
        instance,
        udp_sender,
        b"deploy started\n",
        encode_frame(b"\x00\x01\x02", node=7, stream=3, flags=0x15),
        "über\nzwei".encode(),
    )
    assert instance.sequencer is not None
    events = instance.sequencer.events(10)
    assert [e.seq for e in events] == [0, 1, 2]
    assert events[0].payload == b"deploy started"  # one trailing newline dropped
    assert events[0].is_text and (events[0].node, events[0].stream) == (0, 0)
    assert (events[1].node, events[1].stream, events[1].sender_flags) == (7, 3, 0x15)
    assert events[1].payload == b"\x00\x01\x02" and events[1].payload_text() is None
    assert events[1].sender_clock == 0 and not events[1].is_text
    assert events[2].payload_text() == "über\nzwei"
    assert all(e.valid for e in events)
    lamports = [e.lamport for e in events]
    assert lamports == sorted(set(lamports))
    assert abs(events[0].time - time.time()) < 5


def test_every_bad_datagram_is_counted_by_cause_and_the_rest_kept(
    console: Callable[..., Console], udp_sender: socket.socket
) -> None:
    instance = console(SEQUENCED)
    good = encode_frame(b"ok", node=1, stream=1)
    corrupt = bytearray(encode_frame(b"payload", node=1))
    corrupt[-1] ^= 0x40
    other_version = b"\xa7LQ\x02" + good[4:]
    reserved_flags = bytearray(good)
    reserved_flags[23] = 0x80  # flags bit 15 belongs to the sequencer
    send_events(
        instance,
        udp_sender,
        b"",  # empty
        b"\xa7LQ",  # a frame cut short
        other_version,
        bytes(reserved_flags),
        b"\xff\xfe not utf-8",
        b"\n",  # nothing left after the newline
        bytes(corrupt),
        b"x" * 5000,  # larger than a staging row
        good,
        b"still here",
    )
    assert instance.sequencer is not None
    stats = instance.sequencer.stats()
    assert stats.drops == {"malformed": 6, "bad_checksum": 1, "oversize": 1, "kernel": 0}
    assert (stats.accepted, stats.framed, stats.text) == (2, 1, 1)
    assert [e.payload for e in instance.sequencer.events(10)] == [b"ok", b"still here"]


def test_sender_clocks_order_events_after_their_causes(
    console: Callable[..., Console], udp_sender: socket.socket
) -> None:
    instance = console(SEQUENCED)
    now = (time.time_ns() // 1_000_000) << 16
    ahead = now + (5_000 << 16)  # 5 s ahead: followed
    too_far = now + ((MAX_CLOCK_AHEAD_MS + 60_000) << 16)  # not followed
    send_events(
        instance,
        udp_sender,
        encode_frame(b"caused", clock=ahead),
        b"next",
        encode_frame(b"liar", clock=too_far),
    )
    assert instance.sequencer is not None
    caused, following, liar = instance.sequencer.events(3)
    assert caused.lamport > ahead and following.lamport > caused.lamport
    assert caused.sender_clock == ahead
    assert liar.lamport < too_far and liar.to_json()["clock_ignored"] is True
    assert lamport_wall_time(liar.lamport) < time.time() + 10
    assert instance.sequencer.stats().clock_ignored == 1


def test_events_survive_a_restart_and_the_clock_goes_on(
    tmp_path: Path, udp_sender: socket.socket
) -> None:
    (tmp_path / "lacrimosa.toml").write_text(SEQUENCED)
    config = load_config(tmp_path / "lacrimosa.toml")
    lamports = []
    for run in range(2):
        instance = Console(config, tmp_path / ".lacrimosa")
        instance.start()
        try:
            send_events(instance, udp_sender, f"run {run}".encode())
            assert instance.sequencer is not None
            events = instance.sequencer.events(10)
            assert [e.payload for e in events] == [f"run {i}".encode() for i in range(run + 1)]
            lamports = [e.lamport for e in events]
            assert instance.sequencer.journal.recovery.clean
        finally:
            instance.shutdown()
    assert lamports[1] > lamports[0]
    assert (tmp_path / ".lacrimosa" / "events.journal").exists()


def test_a_journal_that_is_not_ours_stops_the_console_before_any_process(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "precious.db"
    journal.write_bytes(b"someone else's data" * 100)
    (tmp_path / "lacrimosa.toml").write_text(
        SEQUENCED.replace("[sequencer]", '[sequencer]\njournal = "precious.db"')
    )
    instance = Console(load_config(tmp_path / "lacrimosa.toml"), tmp_path / ".lacrimosa")
    with pytest.raises(JournalError, match="not a lacrimosa journal"):
        instance.start()
    try:
        assert [p.pid for p in instance.processes()] == [None]
        assert journal.read_bytes() == b"someone else's data" * 100
    finally:
        instance.shutdown()


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    (tmp_path / "lacrimosa.toml").write_text(SEQUENCED.replace("127.0.0.1:0", f"127.0.0.1:{port}"))
    instance = Console(load_config(tmp_path / "lacrimosa.toml"), tmp_path / ".lacrimosa")
    try:
        with pytest.raises(ConsoleError, match=f"cannot receive events on 127.0.0.1:{port}"):
            instance.start()
        # The journal it opened first was closed again: a second try can take it.
        taken.close()
        instance.start()
        assert instance.sequencer is not None
    finally:
        taken.close()
        instance.shutdown()


def test_processes_learn_the_events_address(
    console: Callable[..., Console], tmp_path: Path
) -> None:
    instance = console(
        SEQUENCED.replace('cmd = "sleep 300"', 'cmd = "echo to=$LACRIMOSA_EVENTS; sleep 300"')
    )
    assert instance.sequencer is not None
    address = instance.sequencer.address
    assert address.startswith("127.0.0.1:") and not address.endswith(":0")
    view = lambda: instance.query(LogQuery(processes=("idle",)))  # noqa: E731
    wait_until(lambda: len(view()) > 0)
    assert view().line(0).text == f"to={address}"


def test_protocol_events_and_status(
    console: Callable[..., Console], udp_sender: socket.socket
) -> None:
    instance = console(SEQUENCED)
    send_events(
        instance,
        udp_sender,
        *[encode_frame(f"e{i}".encode(), node=i % 2, stream=i % 3) for i in range(9)],
    )
    reply = dispatch(instance, {"op": "events", "lines": 2, "stream": 0})
    assert reply["ok"], reply
    assert [e["text"] for e in reply["result"]["events"]] == ["e3", "e6"]
    assert reply["result"]["next_seq"] == 9
    reply = dispatch(instance, {"op": "events", "node": 1})
    assert [e["seq"] for e in reply["result"]["events"]] == [1, 3, 5, 7]
    for bad in ({"lines": -1}, {"stream": 70000}, {"node": "1"}, {"lines": True}):
        reply = dispatch(instance, {"op": "events", **bad})
        assert reply["error"]["code"] == "invalid_request", bad
    status = dispatch(instance, {"op": "status"})["result"]["sequencer"]
    assert status["accepted"] == 9 and status["journal"]["events"] == 9
    assert status["journal"]["capacity"] == 4096 and status["backend"] in ("recvmmsg", "recv_into")
    assert status["rcvbuf"] > 0


def test_events_without_a_sequencer_is_an_error_that_says_how(
    console: Callable[..., Console],
) -> None:
    instance = console('[processes.idle]\ncmd = "sleep 300"\n')
    reply = dispatch(instance, {"op": "events"})
    assert reply["error"]["code"] == "failed"
    assert "[sequencer]" in reply["error"]["message"]
    assert dispatch(instance, {"op": "status"})["result"]["sequencer"] is None


def test_the_journal_ring_overwrites_the_oldest_events(
    console: Callable[..., Console], udp_sender: socket.socket
) -> None:
    instance = console(SEQUENCED.replace("capacity = 4096", "capacity = 64"))
    for i in range(200):
        send_events(instance, udp_sender, f"n{i}".encode())  # one at a time: none lost
    assert instance.sequencer is not None
    events = instance.sequencer.events(1000)
    assert [e.payload for e in events] == [f"n{i}".encode() for i in range(136, 200)]
    assert dispatch(instance, {"op": "status"})["result"]["sequencer"]["journal"]["ring_used"] == 1
    assert events[0].flags & TEXT


def test_events_that_arrive_while_the_first_reply_is_made_reach_a_follower(
    console: Callable[..., Console], udp_sender: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = console(SEQUENCED)
    sequencer = instance.sequencer
    assert sequencer is not None
    send_events(instance, udp_sender, b"before")
    journal = sequencer.journal
    read_events = journal.read_events

    def events_then_one_more(*args: Any, **kwargs: Any) -> list[Event]:
        read = read_events(*args, **kwargs)
        if len(read) == 1 and read[0].payload == b"before":
            send_events(instance, udp_sender, b"meanwhile")  # after the read, before the reply
        return read

    monkeypatch.setattr(journal, "read_events", events_then_one_more)
    deadline = time.monotonic() + 5
    replies = follow(
        instance, {"op": "events", "follow": True}, lambda: time.monotonic() < deadline
    )
    first = next(replies)
    assert isinstance(first, bytes) and first.endswith(b"\n")  # the first reply, streamed
    assert [e["text"] for e in json.loads(first)["result"]["events"]] == ["before"]
    later = next(replies, None)
    assert later is not None, "the event that arrived meanwhile never reached the follower"
    # A follow batch of events is one encoded reply line, shared by followers at its position.
    assert isinstance(later, bytes) and later.endswith(b"\n")
    assert [e["text"] for e in json.loads(later)["result"]["events"]] == ["meanwhile"]
    replies.close()


def _reply(console: Console, request: dict[str, Any]) -> tuple[bytes, list[bytes]]:
    """The streamed reply to ``request``: its whole line and the pieces it came in."""
    pieces = list(reply_bytes(console, request, lambda: True))
    return b"".join(pieces), pieces


def test_an_events_reply_is_streamed_in_pieces_with_the_bytes_of_the_whole_reply(
    console: Callable[..., Console], udp_sender: socket.socket
) -> None:
    instance = console(SEQUENCED)
    payloads = [bytes([0xFF, i]) * 1500 for i in range(40)]  # binary: hex, 6 KB of JSON each
    for start in range(0, len(payloads), 10):
        send_events(instance, udp_sender, *map(encode_frame, payloads[start : start + 10]))
    send_events(instance, udp_sender, encode_frame(b"framed", node=3, stream=2))
    for request in (
        {"op": "events", "lines": 1000},
        {"op": "events", "lines": 7},
        {"op": "events", "node": 3},
        {"op": "events", "stream": 2, "lines": 0},
        {"op": "events", "node": 99},
    ):
        line, pieces = _reply(instance, request)
        assert line == encode(dispatch(instance, request)), request
        assert all(len(piece) < PIECE_BYTES + 16 << 10 for piece in pieces)
    line, pieces = _reply(instance, {"op": "events", "lines": 1000})
    assert len(pieces) >= 3 and pieces[-1].endswith(b"\n")
    result = json.loads(line)["result"]
    assert [bytes.fromhex(e["hex"]) for e in result["events"][:-1]] == payloads
    assert list(result) == ["events", "first_seq", "next_seq"]
    assert (result["first_seq"], result["next_seq"]) == (0, 41)
    # Errors are whole replies, as before.
    assert json.loads(_reply(instance, {"op": "events", "lines": -1})[0])["ok"] is False


def test_events_overwritten_while_a_reply_is_sent_are_counted_as_lapped(
    console: Callable[..., Console], udp_sender: socket.socket
) -> None:
    instance = console(SEQUENCED.replace('blob = "4MiB"', 'blob = "1MiB"'))
    sequencer = instance.sequencer
    assert sequencer is not None
    for _ in range(512 // 32):
        send_events(instance, udp_sender, *[encode_frame(b"\xff" * 1000)] * 32)
    pieces = reply_bytes(instance, {"op": "events", "lines": 512}, lambda: True)
    first = next(pieces)  # ~30 events of the first chunk; the rest is read as the reader reads
    tail, head = sequencer.journal.bounds()
    while sequencer.journal.tail < head:  # the writer laps everything not yet read
        send_events(instance, udp_sender, *[encode_frame(b"\xfe" * 1000)] * 32)
    line = first + b"".join(pieces)
    result = json.loads(line)["result"]
    seqs = [e["seq"] for e in result["events"]]
    assert seqs == list(range(head - 512, head - 512 + len(seqs)))  # oldest first, no gap
    assert 0 < len(seqs) < 512 and result["lapped"] == 512 - len(seqs)
    assert (result["first_seq"], result["next_seq"]) == (tail, head)
    assert all(e["hex"] == "ff" * 1000 for e in result["events"])  # nothing read was overwritten


def test_a_stop_ends_while_a_sender_floods(tmp_path: Path) -> None:
    settings = SequencerSettings(udp="127.0.0.1:0", capacity=4096, blob_size=1 << 20)
    sequencer = Sequencer(settings, tmp_path / "events.journal")
    sequencer.start()

    def flood(receiver: Receiver) -> int:  # a socket that is never empty
        receiver.staging[0, :5] = np.frombuffer(b"flood", np.uint8)
        receiver.lengths[0], receiver.truncated[0] = 5, False
        return 1

    for receiver in sequencer._receivers:
        receiver.receive = functools.partial(flood, receiver)  # type: ignore[method-assign]
    stopping = threading.Thread(target=sequencer.stop, daemon=True)
    stopping.start()
    try:
        stopping.join(15)  # the drain at a stop is bounded (STOP_DRAIN_SECONDS)
        assert not stopping.is_alive(), "stop() went on draining a socket that never empties"
        assert sequencer.journal.closed
    finally:
        sequencer.failure = RuntimeError("test over")  # ends the drain if it went on
        stopping.join(10)


def test_a_receive_backend_that_fails_after_the_journal_and_port_were_taken_frees_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Receiver] = []

    class RingsRunOut(RecvIntoReceiver):
        """The first staging buffer's receiver is made; the next one fails (io_uring rings can
        run out of locked memory, say)."""

        def __init__(self, sock: socket.socket, *args: int) -> None:
            if made:
                raise OSError(errno.ENOMEM, "io_uring_queue_init: Cannot allocate memory")
            super().__init__(sock, *args)
            made.append(self)

    monkeypatch.setattr(
        sequencer_module, "make_receiver", lambda sock, backend: (RingsRunOut(sock), "test")
    )
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    path = tmp_path / "events.journal"
    settings = SequencerSettings(udp=f"127.0.0.1:{port}", capacity=4096, blob_size=1 << 20)
    with pytest.raises(ConsoleError, match=r"cannot receive events on .*Cannot allocate memory"):
        Sequencer(settings, path)
    Journal(path, 4096, 1 << 20).close()  # its lock was released
    again = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        again.bind(("127.0.0.1", port))  # the port was closed
    finally:
        again.close()


@pytest.mark.parametrize(
    "kind",
    ["last-lamport-max", "last-lamport-bit-62", "newest-slot-lamport", "head-minus-1000"],
)
def test_a_tampered_journal_is_repaired_and_real_datagrams_get_sane_lamports(
    tmp_path: Path, udp_sender: socket.socket, kind: str
) -> None:
    from test_journal import TAMPER_CAPACITY, tampered_journal

    path = tmp_path / "events.journal"
    tampered_journal(path, kind, clean=kind != "newest-slot-lamport")
    settings = SequencerSettings(udp="127.0.0.1:0", capacity=TAMPER_CAPACITY, blob_size=1 << 20)
    sequencer = Sequencer(settings, path)
    sequencer.start()
    try:
        assert "repaired" in sequencer.status()["journal"]["opened"]
        assert any("repaired on opening" in w for w in sequencer.warnings())
        for i in range(5):
            udp_sender.sendto(b"fresh %d" % i, sequencer.socket_info.address)
        wait_until(lambda: sequencer.stats().accepted == 5, message="5 events journaled")
        fresh = sequencer.events(5)
        assert [e.payload for e in fresh] == [b"fresh %d" % i for i in range(5)]
        for event in fresh:
            assert abs(lamport_wall_time(event.lamport) - time.time()) < 60
        assert fresh[0].lamport > sequencer.events(6)[0].lamport  # after what was held
        assert "failure" not in sequencer.status() and sequencer.ingest_errors == 0
    finally:
        sequencer.stop()


def test_an_ingest_that_keeps_failing_is_an_error_in_status_ps_and_on_stderr(
    console: Callable[..., Console], udp_sender: socket.socket, capfd: pytest.CaptureFixture[str]
) -> None:
    from test_journal import raw_journal

    instance = console(SEQUENCED)
    send_events(instance, udp_sender, b"before")
    sequencer = instance.sequencer
    assert sequencer is not None
    # Another process writes the live journal file (the mapping is shared): a blob head no
    # writer could leave, which no check on opening could have caught. Every append now fails.
    with raw_journal(sequencer.journal.path, 4096) as (counters, _, _):
        counters[BLOB_HEAD] = 2**64 - 1
    for failed in range(1, sequencer_module.MAX_CONSECUTIVE_INGEST_ERRORS + 1):
        udp_sender.sendto(b"lost %d" % failed, sequencer.socket_info.address)
        wait_until(lambda n=failed: sequencer.ingest_errors >= n, message=f"{failed} failures")
        if failed == 1:  # one failed batch: said, counted, and ingest goes on
            status = dispatch(instance, {"op": "status"})["result"]
            assert "failure" not in status["sequencer"]
            assert status["sequencer"]["lost"] == 1
            assert "OverflowError" in status["sequencer"]["last_error"]
            assert any("lost 1 datagrams" in w for w in status["warnings"])
    # The ingest process gives up and exits; the console restarts it, and the new one refuses the
    # journal (its counters are impossible): ingest stays stopped, and says why.
    wait_until(lambda: sequencer.failure is not None, message="ingest to give up")
    status = dispatch(instance, {"op": "status"})["result"]
    assert "failure" in status["sequencer"]
    assert "OverflowError" in status["sequencer"]["last_error"]
    assert any("sequencer stopped" in w for w in status["warnings"])
    ps = dispatch(instance, {"op": "ps"})["result"]
    assert any("sequencer stopped" in w for w in ps["warnings"])
    text = cli_module._status_text(status)
    assert "sequencer FAILED: " in text
    # Said on stderr by the ingest process and the console, each in its own time: read until
    # both lines are there (under load the last one came after the status above).
    said = [""]

    def stderr_says_all() -> bool:
        said[0] += capfd.readouterr().err
        return all(
            line in said[0]
            for line in (
                "lacrimosa: sequencer ingest failed: OverflowError",
                "events are no longer received",
            )
        )

    wait_until(stderr_says_all, message="the failure said on stderr")
    assert said[0].count("a batch of datagrams was lost") == 1  # the same error is said once


def test_a_filtered_events_reply_finds_the_newest_matches_a_chunk_at_a_time(
    tmp_path: Path,
) -> None:
    from lacrimosa.engine.events.journal import SELECT_CHUNK

    journal = Journal(tmp_path / "j", 1 << 16, 4 << 20)
    try:
        lamport = 1
        for block in range(3 * SELECT_CHUNK // 1000):  # blocks of 1000 from nodes 0, 1, 2, 0, ...
            journal.append_records(
                [b"e"] * 1000, range(lamport, lamport + 1000), node=block % 3, stream=block % 2
            )
            lamport += 1000
        tail, head = journal.bounds()
        for node, stream, lines in [
            (1, None, 100_000),
            (1, None, 1500),
            (2, 1, 100_000),
            (0, 0, 7),
            (None, 1, 20_000),
            (9, None, 100_000),
            (1, None, 0),
        ]:
            expected = journal.select(node=node, stream=stream)
            expected = expected[max(0, len(expected) - lines) :]
            got = journal.newest_seqs(lines, node, stream, tail, head)
            assert np.array_equal(got, expected), (node, stream, lines)
    finally:
        journal.close()
