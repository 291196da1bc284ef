"""CPU and resident memory of each process, summed over its whole process group (a ``npm run
dev`` is a tree: the shell, npm, node and what node starts), sampled from /proc about once a
second.

One sample lists /proc and reads ``/proc/PID/stat`` (pgrp, utime + stime, start time, RSS) of
each process in a supervised group. A process found outside every group is remembered as such
and not read again while it lives (its group does not change: only a process that calls
setpgid/setsid leaves one, and those are ours to find, since they start in our groups), so a
sample costs one listing of /proc plus one small read per process of ours, not per process on
the machine; the remembered set is dropped every ``RECHECK_EVERY`` samples, which also covers a
pid reused between two samples. bench/resources.py measures it: about 0.35% of a core for 50
groups of 3 processes (3.4 ms a sample, about 11 µs a process read), where reading every
process on the machine took 0.9%.

CPU% is of one core (100% = one core busy, as top shows it), over the time since the previous
sample: the CPU time each member used meanwhile, a member that started since then counting all
of its time, one that exited since then none of its last slice. The first sample of a group
has no CPU% yet (None). RSS is the sum of the members' resident sets (shared pages counted in
each, as ps and top count them).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
SAMPLE_INTERVAL = 1.0  # seconds between samples
RECHECK_EVERY = 30  # samples: processes known to be outside every group are read again
_STAT_BYTES = 1024  # /proc/PID/stat is one line, well under this even with a long name


@dataclass(frozen=True, slots=True)
class Usage:
    """One process group's use of the machine at one sample."""

    cpu_percent: float | None  # of one core, since the previous sample; None on the first
    rss_bytes: int
    processes: int  # members of the group


@dataclass(frozen=True, slots=True)
class _Stat:
    pgrp: int
    cpu_ticks: int  # utime + stime
    start_ticks: int  # since boot
    rss_pages: int


def read_stat(pid: int) -> _Stat | None:
    """The fields of /proc/PID/stat a sample needs; None when the process is gone."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, _STAT_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)
    # The command name (field 2) may hold spaces and parentheses: the fields follow the last ")".
    fields = data.rpartition(b")")[2].split()
    if len(fields) < 22:
        return None
    return _Stat(
        pgrp=int(fields[2]),
        cpu_ticks=int(fields[11]) + int(fields[12]),
        start_ticks=int(fields[19]),
        rss_pages=int(fields[21]),
    )


def _boot_ticks() -> float:
    """Now, in clock ticks since boot (the clock of a process's start time in /proc)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) * CLOCK_TICKS


class GroupSampler:
    """Samples the process groups it is given; see the module docstring. One thread at a time."""

    def __init__(self) -> None:
        self._outside: set[int] = set()  # pids seen outside every group, not read again
        self._samples = 0
        self._previous_ticks: dict[tuple[int, int], int] = {}  # (pid, start) -> cpu ticks
        self._previous_at: float | None = None  # boot ticks of the previous sample

    def sample(self, groups: Collection[int]) -> dict[int, Usage]:
        """The usage of each of these process groups now, by group id (a group with no member
        left is not in it)."""
        self._samples += 1
        if self._samples % RECHECK_EVERY == 0:
            self._outside.clear()
        wanted = set(groups)
        now = _boot_ticks()
        previous_at = self._previous_at
        previous = self._previous_ticks
        ticks: dict[tuple[int, int], int] = {}
        used = dict.fromkeys(wanted, 0)
        rss = dict.fromkeys(wanted, 0)
        members = dict.fromkeys(wanted, 0)
        live = set()
        outside = self._outside
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            live.add(pid)
            if pid in outside and pid not in wanted:
                continue
            stat = read_stat(pid)
            if stat is None:
                continue
            if stat.pgrp not in wanted:
                outside.add(pid)
                continue
            key = (pid, stat.start_ticks)
            ticks[key] = stat.cpu_ticks
            before = previous.get(key)
            if before is None:
                # New since the previous sample: all its time is in this interval. Seen only now
                # but older (the first sample): its time is not, and none of it is counted.
                # (Start times are whole ticks, rounded down: compare with the tick it was in.)
                new = previous_at is not None and stat.start_ticks >= int(previous_at)
                before = 0 if new else stat.cpu_ticks
            used[stat.pgrp] += max(stat.cpu_ticks - before, 0)
            rss[stat.pgrp] += stat.rss_pages * PAGE_SIZE
            members[stat.pgrp] += 1
        outside &= live
        self._previous_ticks = ticks
        self._previous_at = now
        elapsed = None if previous_at is None else max(now - previous_at, 1.0)
        return {
            pgid: Usage(
                None if elapsed is None else round(100.0 * used[pgid] / elapsed, 1),
                rss[pgid],
                members[pgid],
            )
            for pgid in wanted
            if members[pgid]
        }


class ResourceMonitor:
    """Samples the process groups ``groups()`` gives every ``SAMPLE_INTERVAL`` on a thread of
    its own; ``usage`` is the latest sample, by group id (a dict replaced whole, so any thread
    may read it)."""

    def __init__(self, groups: Callable[[], Collection[int]]) -> None:
        self._groups = groups
        self._sampler = GroupSampler()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.usage: dict[int, Usage] = {}

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="lacrimosa-resources", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while True:
            # /proc may vanish under a container's feet; a sample that fails is just skipped.
            with contextlib.suppress(OSError, ValueError):
                self.usage = self._sampler.sample(self._groups())
            if self._stop.wait(SAMPLE_INTERVAL):
                return
