"""The guardian: makes sure no supervised process group outlives the console.

Started by the console as a separate small process, in two stages. Until the console ends it is a
shell waiting for end of file on its stdin, a pipe only the console holds: ~1 ms to start and
nothing to run, where a Python interpreter took ~10 ms of CPU from the processes starting beside
it (a capture of 2M lines of ``seq``: ~25% slower; bench/capture.py). When stdin reaches end of
file, the console has ended, in whatever way, ``kill -9`` included, and the shell runs this
script (standard library only, by path with ``python -I -S``): it reads the groups still
registered, sends SIGTERM to every live one, waits up to the grace period (argv[1], seconds),
sends SIGKILL to what is left, and exits.

The registry (``GroupRegistry``) is a memfd the console and the guardian both hold (argv[3] is its
descriptor): one int32 slot per process group, written by the console with one ``pwrite`` when a
group starts and one when it is gone, so a console killed in the middle of an update leaves every
other slot whole. It outlives the guardian: a replacement started after a guardian died gets the
same one.

Children also get PR_SET_PDEATHSIG, which covers the group leaders even if the guardian itself is
killed; the guardian is what reaches grandchildren, which the kernel does not signal on its own.

A descendant that leaves its process group (``setsid``, a shell with job control) is out of
reach of group signals, so every child is also started with ``LACRIMOSA_CONSOLE=<token>`` (and
``LACRIMOSA_PROCESS=<name>``, ``LACRIMOSA_RUN=<n>`` for each start) in its environment, which its
descendants inherit: the guardian (argv[2] is the token) and the supervisor sweep /proc for
processes carrying it. Only a process that drops its whole environment escapes that.
"""

import contextlib
import os
import signal
import struct
import sys
import threading
import time
import weakref

# The shell stage: terminal signals are for the console (the guardian must outlive it), then it
# waits for the console's end and becomes the Python stage ("$@": the interpreter and this script).
SHELL_STAGE = 'trap "" INT HUP; read -r _; exec "$@"'
_SLOT = struct.Struct("=i")  # a registry slot: a process group id, 0 when free


class GroupRegistry:
    """The console's side of the registry of process groups (see the module docstring).
    Any thread. ``fd`` is close-on-exec: only a guardian is given it (``pass_fds``)."""

    def __init__(self) -> None:
        self.fd = os.memfd_create("lacrimosa-guardian", os.MFD_CLOEXEC)
        self._close = weakref.finalize(self, os.close, self.fd)
        self._slots: dict[int, int] = {}  # group id -> its slot
        self._free: list[int] = []  # slots of groups gone, reused first
        self._lock = threading.Lock()

    def add(self, pgid: int) -> None:
        with self._lock:
            if pgid in self._slots or not self._close.alive:
                return
            # With no free slot, every slot is taken: the next one is past them all.
            slot = self._free.pop() if self._free else len(self._slots)
            os.pwrite(self.fd, _SLOT.pack(pgid), slot * _SLOT.size)
            self._slots[pgid] = slot

    def remove(self, pgid: int) -> None:
        with self._lock:
            slot = self._slots.pop(pgid, None)
            if slot is not None and self._close.alive:
                os.pwrite(self.fd, _SLOT.pack(0), slot * _SLOT.size)
                self._free.append(slot)

    def __len__(self) -> int:
        return len(self._slots)

    def close(self) -> None:
        """Close the descriptor; later calls change nothing (its number may be another's)."""
        with self._lock:
            self._close()


def registered_groups(fd: int) -> set[int]:
    """The groups a registry holds (its descriptor), as the guardian reads them."""
    data = os.pread(fd, os.fstat(fd).st_size, 0)
    whole = len(data) - len(data) % _SLOT.size
    return {pgid for (pgid,) in _SLOT.iter_unpack(data[:whole]) if pgid > 0}


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
    grace = float(sys.argv[1])
    token = sys.argv[2] or None
    registry = int(sys.argv[3])
    # The shell stage returns at the console's end; this also waits when run without it.
    sys.stdin.buffer.read()
    groups = {g for g in registered_groups(registry) if _alive(g)}
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
