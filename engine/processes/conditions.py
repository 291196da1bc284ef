"""What ``wait`` waits for, and ``why`` says: read from a :class:`ProcessInfo`, nothing else.

``wait`` asks, of each process, whether it is there (``reached``), may still get there
(``pending``) or never can without someone acting (``never``: failed, blocked, stopped). For
``ready``, a process that ran to completion (exited 0 and is not restarted) counts as there. ``why`` puts a process's state in a few lines: its last exit
(code, or signal by name), how long that run lasted, restarts and the next one, the dependency it
waits on, its failing probe with the last error; a healthy one says so with uptime and probes.
"""

from __future__ import annotations

from typing import Any

from ..humanize import exit_words, format_duration
from .supervisor import ProcessInfo, State

UNTIL = ("ready", "exited", "state")  # wait --ready (the default), --exited, --state S
STATES = (  # what --state takes
    *(State.RUNNING, State.STOPPING, State.STOPPED, State.EXITED, State.FAILED),
    *(State.BACKOFF, State.CRASH_LOOP, State.WAITING_FOR_DEPENDENCIES, State.BLOCKED),
)
REACHED, PENDING, NEVER = "reached", "pending", "never"
# States a process stays in until someone acts (start, restart), by the wait that cannot end.
_FINAL = (State.FAILED, State.BLOCKED, State.STOPPED, State.EXITED)


def verdict(info: ProcessInfo, until: str, state: str | None = None) -> str:
    """``reached``, ``pending`` or ``never`` for one process and what ``wait`` waits for."""
    if until == "ready":
        # A one-shot job that ran to completion (exit 0, not restarted) did what it was for:
        # ``wait`` with no name must not fail on the project's migration.
        if (info.ready and info.state == State.RUNNING) or info.state == State.EXITED:
            return REACHED
        return NEVER if info.state in _FINAL else PENDING
    if until == "exited":
        if info.state in (State.EXITED, State.FAILED, State.STOPPED):
            return REACHED
        return NEVER if info.state == State.BLOCKED else PENDING
    if info.state == state:
        return REACHED
    return NEVER if info.state in _FINAL else PENDING


def describe(info: ProcessInfo) -> str:
    """A process's state in a few words: ``running, not ready``, ``waiting (db: ready)``."""
    if info.state in State.HELD:
        return f"{info.state} ({info.reason})"
    if info.state == State.RUNNING:
        words = "running, ready" if info.ready else "running, not ready"
        return words + (f", health {info.health}" if info.health else "")
    return info.state


def explain(
    info: ProcessInfo, stderr: list[str], dependencies: list[ProcessInfo] | None = None
) -> dict[str, Any]:
    """``why``: the fields an agent reads, and ``summary``, the lines a person reads (the
    ``stderr`` lines are the process's own text: shown apart, made safe by whoever prints).
    ``dependencies``: the processes it depends on; for one not started, a line for each."""
    name = info.name
    lines: list[str] = []
    failing = [p for p in info.probes if p.passing is False]
    healthy = info.state == State.RUNNING and info.ready and not failing
    if healthy:
        lines.append(f"{name} is healthy: running and ready, up {format_duration(info.uptime)}")
    elif info.state == State.RUNNING:
        lines.append(f"{name} is running (up {format_duration(info.uptime)}) but not ready")
    elif info.state in State.HELD:
        verb = "waits for" if info.state == State.WAITING_FOR_DEPENDENCIES else "is blocked:"
        lines.append(f"{name} has not started: it {verb} {info.reason}")
        for other in dependencies or ():
            failing_there = [p for p in other.probes if p.passing is False]
            text = f"  {other.name}: {describe(other)}"
            if failing_there:
                probe = failing_there[0]
                text += f"; its {probe.role} probe fails: {probe.last_error}"
            lines.append(text)
    elif info.state == State.FAILED:
        lines.append(f"{name} failed and is not restarted (restart = {info.restart_policy})")
    elif info.state == State.EXITED:
        lines.append(f"{name} completed (exit 0) and is not restarted")
    elif info.state in State.WAITING:
        after = "" if info.restart_in is None else f" in {info.restart_in:.1f}s"
        lines.append(f"{name} is in {info.state}: it restarts{after}")
    elif info.state == State.STOPPED:
        lines.append(f"{name} is stopped (on request, or it does not start by itself)")
    else:
        lines.append(f"{name} is {info.state}")
    if info.last_exit is not None:
        ran = f" after running {format_duration(info.last_run)}" if info.last_run else ""
        lines.append(f"last exit: {exit_words(info.last_exit)}{ran}")
    if info.restarts or info.restart_in is not None:
        text = f"restarts: {info.restarts}"
        if info.restart_in is not None:
            text += f", next restart in {info.restart_in:.1f}s"
        lines.append(text)
    for probe in info.probes:
        if probe.passing is None:
            status = "not checked yet"
        elif probe.passing:
            status = "passing"
        else:
            status = f"failing ({probe.failures} in a row): {probe.last_error}"
        lines.append(f"{probe.role} probe ({probe.probe}): {status}")
    return {
        "name": name,
        "state": info.state,
        "healthy": healthy,
        "ready": info.ready,
        "health": info.health,
        "reason": info.reason,
        "uptime": None if info.uptime is None else round(info.uptime, 3),
        "last_exit": info.last_exit,  # its code; negative: the signal that killed it
        "last_exit_words": None if info.last_exit is None else exit_words(info.last_exit),
        "last_run": None if info.last_run is None else round(info.last_run, 3),
        "restarts": info.restarts,
        "restart_in": None if info.restart_in is None else round(info.restart_in, 3),
        "probes": [probe.to_dict() for probe in info.probes],
        "failing_probe": failing[0].to_dict() if failing else None,
        "summary": lines,
        "stderr": stderr,
    }
