"""The guardian: makes sure no supervised process group outlives the console.

Started by the console as a separate small process (standard library only, run by path with
``python -I -S``). The console writes ``+PGID`` when it starts a process group and ``-PGID`` once the
group is gone, on the guardian's stdin. When stdin reaches end of file, the console has ended, in
whatever way, ``kill -9`` included: the guardian sends SIGTERM to every group still registered,
waits up to the grace period (argv[1], seconds), sends SIGKILL to what is left, and exits.

Children also get PR_SET_PDEATHSIG, which covers the group leaders even if the guardian itself is
killed; the guardian is what reaches grandchildren, which the kernel does not signal on its own.
"""

import contextlib
import os
import signal
import sys
import time


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_groups(groups: set[int], sig: int) -> None:
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)


def main() -> None:
    # Terminal signals are for the console; the guardian must outlive it to do its job.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    grace = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    groups: set[int] = set()
    for raw in sys.stdin.buffer:
        line = raw.strip()
        if line[:1] == b"+":
            groups.add(int(line[1:]))
        elif line[:1] == b"-":
            groups.discard(int(line[1:]))
    groups = {g for g in groups if _alive(g)}
    if not groups:
        return
    _signal_groups(groups, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        time.sleep(0.05)
        groups = {g for g in groups if _alive(g)}
    _signal_groups(groups, signal.SIGKILL)


if __name__ == "__main__":
    main()
