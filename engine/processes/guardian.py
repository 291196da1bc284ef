"""The guardian: makes sure no supervised process group outlives the console.

Started by the console as a separate small process (standard library only, run by path with
``python -I -S``). The console writes ``+PGID`` when it starts a process group and ``-PGID`` once the
group is gone, on the guardian's stdin. When stdin reaches end of file, the console has ended, in
whatever way, ``kill -9`` included: the guardian sends SIGTERM to every group still registered,
waits up to the grace period (argv[1], seconds), sends SIGKILL to what is left, and exits.

Children also get PR_SET_PDEATHSIG, which covers the group leaders even if the guardian itself is
killed; the guardian is what reaches grandchildren, which the kernel does not signal on its own.

A descendant that leaves its process group (``setsid``, a shell with job control) is out of
reach of group signals, so every child is also started with ``LACRIMOSA_CONSOLE=<token>`` (and
``LACRIMOSA_PROCESS=<name>``, ``LACRIMOSA_RUN=<n>`` for each start) in its environment, which its descendants inherit: the guardian
(argv[2] is the token) and the supervisor sweep /proc for processes carrying it. Only a process
that drops its whole environment escapes that.
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


CONSOLE_TAG = "LACRIMOSA_CONSOLE"
PROCESS_TAG = "LACRIMOSA_PROCESS"
RUN_TAG = "LACRIMOSA_RUN"


def tagged_pids(token: str, process: str | None = None, run: int | None = None) -> list[int]:
    """Processes whose environment carries this console's token (and this process name, and
    this run of it)."""
    wanted = [f"{CONSOLE_TAG}={token}".encode()]
    if process is not None:
        wanted.append(f"{PROCESS_TAG}={process}".encode())
    if run is not None:
        wanted.append(f"{RUN_TAG}={run}".encode())
    found = []
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:  # gone, or not ours to read
            continue
        if all(item in environ for item in wanted):
            found.append(int(entry.name))
    return found


def signal_pids(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def main() -> None:
    # Terminal signals are for the console; the guardian must outlive it to do its job.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    grace = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    token = sys.argv[2] if len(sys.argv) > 2 else None
    groups: set[int] = set()
    for raw in sys.stdin.buffer:
        line = raw.strip()
        if line[:1] == b"+":
            groups.add(int(line[1:]))
        elif line[:1] == b"-":
            groups.discard(int(line[1:]))
    groups = {g for g in groups if _alive(g)}
    strays = tagged_pids(token) if token else []
    if not groups and not strays:
        return
    _signal_groups(groups, signal.SIGTERM)
    signal_pids(strays, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while (groups or strays) and time.monotonic() < deadline:
        time.sleep(0.05)
        groups = {g for g in groups if _alive(g)}
        strays = tagged_pids(token) if token else []
    _signal_groups(groups, signal.SIGKILL)
    if token:
        _kill_strays(token)


def _kill_strays(token: str, sweeps: int = 10) -> None:
    """SIGKILL every process carrying the token, sweeping /proc until two sweeps in a row find
    none (``sweeps`` at most): a process caught in the middle of an exec shows no environment for
    an instant, so one empty sweep alone does not prove that none is left."""
    empty = 0
    for _ in range(sweeps):
        found = tagged_pids(token)
        signal_pids(found, signal.SIGKILL)
        empty = 0 if found else empty + 1
        if empty == 2:
            return
        time.sleep(0.02)


if __name__ == "__main__":
    main()
