"""ingest readers: events accepted during a flood while people follow the events, and ingest
killed mid-flood.

A real ``Console`` (one idle process, ``[sequencer] udp = "127.0.0.1:0"``, the default journal
and receive buffer) and its real control server (the Unix socket) run in this process. The
issue's setting: two C senders (``bench/c/sender.c``, built as in ``sequencer.py``) send 512 B
framed events at full speed for a few seconds each round.

- **Followers.** 0, 5 or 20 ``events -f`` clients are connected to the control socket
  (``{"op": "events", "follow": true, "lines": 0}``), each a thread here reading its replies as
  they come (``recv`` of 64 KiB at a time, bytes counted) while the senders flood. What is
  measured is the events the sequencer accepted per second of sending (and the kernel's drops);
  the reference is the same with no follower, in the same rounds (alternated, medians).
- **SIGKILL mid-flood** (when ingest runs in a process of its own): one sender floods, and after
  1 s the ingest process is killed with SIGKILL. Measured: the time until a new one is ready
  (``state == "running"``, restarts counted), whether every event held before the kill is still
  there with a valid checksum, the torn/kept counts of the recovery, and that the gap is reported
  (a warning). Target: back within 1 s, nothing complete lost.

Target (issue 7): the accepted rate with 20 followers at least 0.9x the rate with none.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import Row, fmt_ms, fmt_rate, main, median, require
from bench.sequencer import HOST, Tools, build_tools

CONFIG = """\
[processes.idle]
cmd = "sleep 3600"

[sequencer]
udp = "127.0.0.1:0"
"""
SIZE = 512
FOLLOWERS = (0, 5, 20)
SECONDS, QUICK_SECONDS = 4.0, 1.0
ROUNDS, QUICK_ROUNDS = 3, 1
SENDERS = 2
TARGET_RATIO = 0.9
RESTART_TARGET = 1.0


class Follower:
    """One ``events -f`` connection to the control socket, reading as a client reads."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.sendall(json.dumps({"op": "events", "follow": True, "lines": 0}).encode() + b"\n")
        self.sock.settimeout(0.2)
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buffer = bytearray(1 << 16)
        while not self._stop.is_set():
            try:
                n = self.sock.recv_into(buffer)
            except TimeoutError:
                continue
            except OSError:
                return
            if n == 0:
                return
            self.received += n

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def flood(tools: Tools, port: int, seconds: float, senders: int) -> tuple[int, float]:
    """``senders`` C senders at full speed for ``seconds``; (datagrams sent, seconds)."""
    procs = [
        subprocess.Popen(
            [str(tools.sender), HOST, str(port), str(1 << 60), str(SIZE), "0", str(seconds)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(senders)
    ]
    sent, took = 0, 0.0
    for proc in procs:
        out, _ = proc.communicate(timeout=60 + 3 * seconds)
        count, nanoseconds = out.split()
        sent += int(count)
        took = max(took, int(nanoseconds) / 1e9)
    return sent, took


def settle(sequencer: Any, timeout: float = 30.0) -> None:
    """Until the sequencer has taken what the socket holds (its count stops moving)."""
    deadline = time.monotonic() + timeout
    last, same = -1, 0
    while time.monotonic() < deadline and same < 5:
        received = sequencer.stats().received
        same = same + 1 if received == last else 0
        last = received
        time.sleep(0.02)


def phase(
    tools: Tools, sequencer: Any, path: str, followers: int, seconds: float
) -> dict[str, Any]:
    readers = [Follower(path) for _ in range(followers)]
    try:
        time.sleep(0.3)  # every follower past its first reply
        before = sequencer.stats()
        sent, took = flood(tools, int(sequencer.socket_info.address[1]), seconds, SENDERS)
        settle(sequencer)
        after = sequencer.stats()
    finally:
        for reader in readers:
            reader.close()
    return {
        "followers": followers,
        "sent": sent,
        "seconds": took,
        "accepted": after.accepted - before.accepted,
        "kernel_drops": after.drops["kernel"] - before.drops["kernel"],
        "rate": (after.accepted - before.accepted) / took,
        "follower_bytes": sum(r.received for r in readers),
    }


def kill_mid_flood(tools: Tools, sequencer: Any, seconds: float) -> dict[str, Any]:
    port = int(sequencer.socket_info.address[1])
    result: dict[str, Any] = {}
    sending = threading.Thread(
        target=lambda: result.update(
            zip(("sent", "took"), flood(tools, port, seconds, 1), strict=True)
        ),
        daemon=True,
    )
    restarts = sequencer.restarts
    sending.start()
    time.sleep(min(1.0, seconds / 3))
    journal = sequencer.journal
    held_before = journal.head
    killed_at = time.monotonic()
    os.kill(sequencer.pid, signal.SIGKILL)
    while not (sequencer.restarts > restarts and sequencer.state == "running"):
        if time.monotonic() - killed_at > 30:
            raise RuntimeError("the ingest process did not come back within 30 s")
        time.sleep(0.002)
    back = time.monotonic() - killed_at
    # At once, before the flood goes on to overwrite them: the newest events held at the kill.
    tail, head_back = sequencer.journal.bounds()
    check_from = max(tail, held_before - 4096)
    events = sequencer.journal.read_events(range(check_from, held_before))
    sending.join()
    settle(sequencer)
    head = sequencer.journal.head
    restart = sequencer.history[-1]
    return {
        "back_seconds": back,
        "down": restart.down,
        "held_before_kill": held_before,
        "head_when_back": head_back,
        "head_after": head,
        "checked": held_before - check_from,
        "kept_valid": sum(1 for e in events if e.valid),
        "recovery": restart.recovery,
        "kernel_drops_meanwhile": restart.kernel_drops,
        "reported": any("restarted" in w for w in sequencer.warnings()),
        "sent": result.get("sent", 0),
    }


def run(quick: bool) -> list[Row]:
    require("lacrimosa.engine.events.sequencer", "lacrimosa.api.server")
    from lacrimosa.api.server import ControlServer
    from lacrimosa.engine.config import load_config
    from lacrimosa.engine.console import Console

    seconds = QUICK_SECONDS if quick else SECONDS
    rounds = QUICK_ROUNDS if quick else ROUNDS
    phases: dict[int, list[dict[str, Any]]] = {n: [] for n in FOLLOWERS}
    killed: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="lacrimosa-bench-readers-") as tmp:
        folder = Path(tmp)
        tools = build_tools(folder)
        config = folder / "lacrimosa.toml"
        config.write_text(CONFIG)
        console = Console(load_config(config), folder / ".lacrimosa")
        server = ControlServer(console)
        server.start()
        try:
            console.start()
            sequencer = console.sequencer
            assert sequencer is not None
            # Warm up (and fill part of the journal) once, not counted.
            phase(tools, sequencer, str(server.path), 0, min(seconds, 1.0))
            for round_ in range(rounds):
                order = FOLLOWERS if round_ % 2 == 0 else FOLLOWERS[::-1]
                for n in order:
                    phases[n].append(phase(tools, sequencer, str(server.path), n, seconds))
            if hasattr(sequencer, "pid"):
                killed = kill_mid_flood(tools, sequencer, max(3.0, seconds))
        finally:
            console.shutdown()
            server.close()
    rows = []
    base = median([p["rate"] for p in phases[0]])
    for n in FOLLOWERS[1:]:
        rate = median([p["rate"] for p in phases[n]])
        ratio = median([p["rate"] / q["rate"] for p, q in zip(phases[n], phases[0], strict=True)])
        rows.append(
            Row(
                f"accepted during a flood ({SENDERS} senders, {SIZE} B) with {n} `events -f`",
                fmt_rate(rate, "ev/s"),
                f"{fmt_rate(base, 'ev/s')} with no follower",
                ratio,
                f">= {TARGET_RATIO}x" if n == FOLLOWERS[-1] else "",
                ratio >= TARGET_RATIO if n == FOLLOWERS[-1] else None,
                notes=[
                    f"{n} followers: per round accepted/sent/kernel drops "
                    + "; ".join(
                        f"{p['accepted']:,}/{p['sent']:,}/{p['kernel_drops']:,}" for p in phases[n]
                    )
                    + "; no follower: "
                    + "; ".join(
                        f"{p['accepted']:,}/{p['sent']:,}/{p['kernel_drops']:,}" for p in phases[0]
                    )
                    + f"; followers read {median([p['follower_bytes'] for p in phases[n]]) / 2**20:.0f} MiB a round"
                ],
                data={"followers": phases[n], "none": phases[0]},
            )
        )
    if killed is not None:
        complete = (
            killed["kept_valid"] == killed["checked"] > 0
            and killed["head_when_back"] >= killed["held_before_kill"]
        )
        met = killed["back_seconds"] <= RESTART_TARGET and complete and killed["reported"]
        rows.append(
            Row(
                "ingest process SIGKILLed mid-flood: back, events kept, gap reported",
                f"back in {fmt_ms(killed['back_seconds'])}, "
                f"{killed['kept_valid']:,}/{killed['checked']:,} newest held kept",
                "",
                None,
                f"<= {RESTART_TARGET:g} s, all kept, reported",
                met,
                notes=[
                    f"SIGKILL: recovery {killed['recovery']}; kernel drops while down "
                    f"{killed['kernel_drops_meanwhile']}; warned: {killed['reported']}; "
                    f"head before {killed['held_before_kill']:,}, after {killed['head_after']:,}"
                ],
                data=killed,
            )
        )
    return rows


if __name__ == "__main__":
    sys.exit(main(run, __doc__))
