"""The ingest process: the sequencer (receive, check, stamp, journal write) in an interpreter of
its own, started by the console (see ingest.py), never by hand.

Run as ``python -I -m lacrimosa.engine.events.ingest_child CONFIG`` where CONFIG is a JSON object: the
sequencer settings, the journal path, the descriptors of the UDP socket (bound by the console) and
of the shared counters block (ingest_stats.py), and the console's pid. It

1. asks the kernel to send it SIGTERM when the console dies (and exits if it already has);
2. opens the journal (the exclusive lock, recovery) and starts the sequencer's threads;
3. writes one JSON line on stdout: ``{"ready": {...}}`` with the recovery report and the receive
   backend, or ``{"error": {"kind": "journal" | "console", "message": ...}}`` and exits 2;
4. ingests until SIGTERM (then journals what arrived, for at most ``STOP_DRAIN_SECONDS``, closes
   the journal cleanly and exits 0), or until the sequencer stops for good (a receive failure,
   or ``MAX_CONSECUTIVE_INGEST_ERRORS`` failed batches: exits 1, and the console restarts it).

Errors are said on stderr, which the console reads and passes on to its own.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from ..config import SequencerSettings
from ..errors import JournalError, LacrimosaError
from .ingest_stats import SharedStats
from .sequencer import Sequencer

_PR_SET_PDEATHSIG = 1
FAILURE_CHECK_INTERVAL = 0.2  # how often the main thread looks at the sequencer's threads


def _say(message: dict[str, Any]) -> None:
    try:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):  # the console is gone: nobody to tell
        pass


def main(argv: list[str]) -> int:
    config = json.loads(argv[0])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    # Terminal signals are for the console (this process has its own session anyway).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != config["console_pid"]:  # the console died before the line above
        return 1
    settings = SequencerSettings(
        udp=config["udp"],
        capacity=config["capacity"],
        blob_size=config["blob_size"],
        backend=config["backend"],
        rcvbuf=config["rcvbuf"],
    )
    sock = socket.socket(fileno=config["socket_fd"])
    stats = SharedStats(config["stats_fd"])
    os.close(config["stats_fd"])  # the mapping holds its own reference
    try:
        sequencer = Sequencer(settings, Path(config["journal"]), sock=sock, stats=stats)
    except LacrimosaError as exc:
        kind = "journal" if isinstance(exc, JournalError) else "console"
        _say({"error": {"kind": kind, "message": exc.message}})
        return 2
    sequencer.start()
    _say(
        {
            "ready": {
                "pid": os.getpid(),
                "recovery": dataclasses.asdict(sequencer.journal.recovery),
                "backend": sequencer.receiver.name,
                "backend_note": sequencer.backend_note,
            }
        }
    )
    while not stop.wait(FAILURE_CHECK_INTERVAL):
        if sequencer.failure is not None:
            break
    sequencer.stop()
    return 0 if sequencer.failure is None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
