"""Event ingest in its own process: started, registered, killed, restarted, and followed."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import pid_alive, send_events, wait_until
from test_cli import start_console
from test_sequencer import SEQUENCED

from lacrimosa.api import protocol
from lacrimosa.api.protocol import follow
from lacrimosa.engine.console import Console
from lacrimosa.engine.processes.guardian import CONSOLE_TAG


def test_ingest_runs_in_a_process_group_of_its_own_tagged_for_the_guardian(
    console: Callable[..., Console],
) -> None:
    instance = console(SEQUENCED)
    sequencer = instance.sequencer
    assert sequencer is not None
    pid = sequencer.pid
    assert pid is not None and pid != os.getpid() and pid_alive(pid)
    assert os.getpgid(pid) == pid  # its own group, which the guardian is told about
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"{CONSOLE_TAG}={instance.supervisor.token}".encode() in environ
    status = instance.status()["sequencer"]
    assert status["ingest"] == {
        "pid": pid,
        "state": "running",
        "restarts": 0,
        "restart_in": None,
        "last_restart": None,
    }
    instance.shutdown()
    assert not pid_alive(pid)
    assert sequencer.journal.closed


def test_a_killed_ingest_process_is_restarted_with_the_journal_recovered(
    console: Callable[..., Console], udp_sender: socket.socket
) -> None:
    instance = console(SEQUENCED)
    sequencer = instance.sequencer
    assert sequencer is not None
    send_events(instance, udp_sender, b"before 1", b"before 2")
    first = sequencer.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(lambda: sequencer.restarts == 1 and sequencer.state == "running", timeout=10)
    assert time.monotonic() - killed_at < 5
    assert sequencer.pid not in (None, first)
    # What was journaled is kept, counting goes on, and new events are taken.
    send_events(instance, udp_sender, b"after")
    assert [e.payload for e in sequencer.events(10)] == [b"before 1", b"before 2", b"after"]
    stats = sequencer.stats()
    assert (stats.received, stats.accepted) == (3, 3)
    status = instance.status()
    restart = status["sequencer"]["ingest"]["last_restart"]
    assert restart["exit"] == "killed by SIGKILL"
    assert restart["down"] is not None and restart["down"] < 5
    assert "recovered after an unclean stop" in restart["recovery"]
    assert "recovered after an unclean stop" in status["sequencer"]["journal"]["opened"]
    assert "failure" not in status["sequencer"]
    assert any("ingest process was restarted 1 time" in w for w in status["warnings"])


def test_events_sent_while_ingest_restarts_wait_in_the_socket(
    console: Callable[..., Console], udp_sender: socket.socket
) -> None:
    instance = console(SEQUENCED)
    sequencer = instance.sequencer
    assert sequencer is not None
    pid = sequencer.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # not reading: what is sent now waits in the socket
    # The signal is asynchronous: until the child has really stopped, a receive call it is in
    # could still take a datagram into its staging buffer, which the SIGKILL below would lose.
    wait_until(lambda: Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T")
    for i in range(5):
        udp_sender.sendto(b"meanwhile %d" % i, sequencer.socket_info.address)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: sequencer.stats().accepted == 5, timeout=10)
    assert [e.payload for e in sequencer.events(5)] == [b"meanwhile %d" % i for i in range(5)]


def test_followers_at_one_position_share_each_batch(
    console: Callable[..., Console], udp_sender: socket.socket
) -> None:
    instance = console(SEQUENCED)
    sequencer = instance.sequencer
    assert sequencer is not None
    deadline = time.monotonic() + 10
    streams = [
        follow(instance, {"op": "events", "follow": True}, lambda: time.monotonic() < deadline)
        for _ in range(3)
    ]
    for stream in streams:
        next(stream)  # the first reply: nothing yet
    got: list[bytes] = []

    def take(stream: object) -> None:
        got.append(next(stream))  # type: ignore[call-overload]

    readers = [threading.Thread(target=take, args=(s,)) for s in streams]
    for reader in readers:
        reader.start()
    time.sleep(0.1)  # every follower waits on the head
    send_events(instance, udp_sender, b"one", b"two")
    for reader in readers:
        reader.join(10)
    assert len(got) == 3
    texts = [[e["text"] for e in json.loads(line)["result"]["events"]] for line in got]
    assert texts in ([["one", "two"]] * 3, [["one"]] * 3)
    assert got[0] is got[1] is got[2]  # read and encoded once, for all three
    for stream in streams:
        stream.close()  # type: ignore[attr-defined]


def test_follow_batches_are_cut_at_multiples_of_the_batch_size_and_shared_behind_the_head(
    console: Callable[..., Console], udp_sender: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(protocol, "FOLLOW_BATCH_EVENTS", 4)
    instance = console(SEQUENCED)
    sequencer = instance.sequencer
    assert sequencer is not None
    deadline = time.monotonic() + 10

    def follower() -> Iterator[bytes]:
        stream = follow(
            instance,
            {"op": "events", "follow": True, "lines": 0},
            lambda: time.monotonic() < deadline,
        )
        next(stream)  # the first reply: it starts after the newest event
        return stream  # type: ignore[return-value]

    send_events(instance, udp_sender, *(b"early %d" % i for i in range(3)))
    wait_until(lambda: sequencer.journal.head == 3)
    at_3 = follower()
    send_events(instance, udp_sender, *(b"e %d" % i for i in range(2)))
    wait_until(lambda: sequencer.journal.head == 5)
    at_5 = follower()
    send_events(instance, udp_sender, *(b"late %d" % i for i in range(8)))
    wait_until(lambda: sequencer.journal.head == 13)

    def batches(stream: Iterator[bytes], count: int) -> list[tuple[list[int], bytes]]:
        out = []
        for _ in range(count):
            line = next(stream)
            out.append(([e["seq"] for e in json.loads(line)["result"]["events"]], line))
        return out

    from_3 = batches(at_3, 4)
    from_5 = batches(at_5, 3)
    assert [seqs for seqs, _ in from_3] == [[3], [4, 5, 6, 7], [8, 9, 10, 11], [12]]
    assert [seqs for seqs, _ in from_5] == [[5, 6, 7], [8, 9, 10, 11], [12]]
    # Once on the grid, the two read the same batches, made and encoded once.
    assert from_3[2][1] is from_5[1][1] and from_3[3][1] is from_5[2][1]
    for stream in (at_3, at_5):
        stream.close()  # type: ignore[attr-defined]


def test_a_lapped_follower_is_told_once_and_goes_on_from_the_oldest_held_event(
    console: Callable[..., Console], udp_sender: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(protocol, "FOLLOW_BATCH_EVENTS", 4)
    instance = console(SEQUENCED.replace("capacity = 4096", "capacity = 64"))
    sequencer = instance.sequencer
    assert sequencer is not None
    deadline = time.monotonic() + 10
    stream = follow(
        instance, {"op": "events", "follow": True, "lines": 0}, lambda: time.monotonic() < deadline
    )
    next(stream)  # the first reply: the follow starts at seq 0
    for start in range(0, 100, 20):  # bursts a small receive buffer takes whole
        send_events(instance, udp_sender, *(b"e %d" % i for i in range(start, start + 20)))
    wait_until(lambda: sequencer.journal.bounds() == (36, 100))
    replies = [next(stream) for _ in range(2)]
    lapped, first = (r if isinstance(r, dict) else json.loads(r) for r in replies)
    assert lapped["result"] == {"events": [], "next_seq": 36, "lapped": 36}
    assert [e["seq"] for e in first["result"]["events"]] == [36, 37, 38, 39]
    stream.close()


def test_nothing_survives_kill_9_of_a_console_with_an_ingest_process(tmp_path: Path) -> None:
    running = start_console(tmp_path, SEQUENCED)
    wait_until(lambda: all(p["pid"] for p in running.ps().values()))
    status = json.loads(running.run("status", "--json").stdout)
    ingest = status["sequencer"]["ingest"]["pid"]
    children = [*running.child_pids(), ingest]
    assert pid_alive(ingest)
    running.proc.kill()
    running.proc.wait(10)
    running.proc.communicate()
    wait_until(lambda: not any(pid_alive(pid) for pid in children), timeout=15)
    # The journal was left usable: a new console opens it.
    assert start_console(tmp_path, SEQUENCED).stop() == 0
