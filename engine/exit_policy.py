"""When a console ends on its own, and with what exit status: ``up``'s exit rules for CI jobs and
containers.

- ``exit_with NAME`` (``up --exit-with NAME``): when that process exits on its own (not stopped
  on request), everything is stopped and the console exits with its status. NAME is anything a
  verb takes (``test``, ``test.2``, a type, a glob): the first of those processes to exit.
- ``abort_on_exit`` (``up --abort-on-exit``): the same for whichever process exits first.
- ``exit_when_done`` (``up --exit-when-done``): once no process runs or waits to restart, the
  console exits with the worst (highest) status among the processes that exited on their own
  (one stopped on request counts as 0).

A process's status is its exit code, or 128 + N when signal N killed it (as a shell reports it).
The processes whose exit ends the console (every one for ``abort_on_exit``, NAME's for
``exit_with``) are not restarted whatever their policy (``without_restarts``): their exit is
the end, not a step on the way to a restart.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .config import Config
from .formation import select
from .humanize import describe_exit
from .processes.supervisor import ProcessInfo, State

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .console import Console

# A run that ended by itself: the process exited, whatever its restart policy does next.
ENDED_ON_ITS_OWN = (State.EXITED, State.FAILED, State.BACKOFF, State.CRASH_LOOP)
# Nothing more will happen to the process unless someone asks.
AT_REST = (State.EXITED, State.FAILED, State.STOPPED)


def exit_status(code: int | None) -> int:
    """A process's exit code as a shell reports it: a death by signal N is 128 + N; one that
    could not even be started is 1."""
    if code is None:
        return 1
    return 128 - code if code < 0 else code


@dataclass(frozen=True)
class ExitRule:
    """What ends a console besides a request to (``shutdown``, a signal, the TUI's quit)."""

    exit_with: str | None = None
    abort_on_exit: bool = False
    exit_when_done: bool = False

    @property
    def active(self) -> bool:
        return self.exit_with is not None or self.abort_on_exit or self.exit_when_done


def without_restarts(config: Config, rule: ExitRule) -> Config:
    """``config`` with ``restart = "never"`` for the processes whose exit ends the console.
    NoSuchProcess for an ``exit_with`` that names none."""
    if rule.abort_on_exit:
        ending = set(config.processes)
    elif rule.exit_with is not None:
        ending = set(select(config.processes, rule.exit_with))
    else:
        return config
    processes = {
        name: dataclasses.replace(spec, restart="never") if name in ending else spec
        for name, spec in config.processes.items()
    }
    return dataclasses.replace(config, processes=processes)


class ExitWatch:
    """Watches process states for an :class:`ExitRule`; when it is met, records the status the
    console is to exit with (``status``, and ``reason`` in words) and asks the console to shut
    down. ``start`` before the console starts its processes."""

    def __init__(self, console: Console, rule: ExitRule) -> None:
        # An unknown name is refused here (NoSuchProcess), before anything starts.
        self._watched = set(console.select(rule.exit_with)) if rule.exit_with is not None else set()
        self._console = console
        self._rule = rule
        self._lock = threading.Lock()
        self._states: dict[str, str] = {}
        self._ended: dict[str, int] = {}  # status of each process's last run that ended itself
        self.status: int | None = None
        self.reason = ""
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        current, self._unsubscribe = self._console.supervisor.subscribe(self.check)
        with self._lock:
            self._states = {info.name: info.state for info in current}

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()

    def check(self) -> None:
        """Look at every process now (called on each change, on the supervisor's thread, and
        once by ``up`` when every process has been started)."""
        infos = self._console.processes()
        with self._lock:
            if self.status is not None:
                return
            for info in infos:
                before = self._states.get(info.name)
                self._states[info.name] = info.state
                if info.state == before:
                    continue
                if info.state in ENDED_ON_ITS_OWN:
                    self._ended[info.name] = exit_status(info.exit_code)
                    if self._rule.abort_on_exit or info.name in self._watched:
                        self._fire(self._ended[info.name], _ended_words(info))
                        return
                elif info.state in State.ALIVE:
                    self._ended.pop(info.name, None)
            if self._rule.exit_when_done and self._console.started.is_set() and _all_at_rest(infos):
                worst = max(self._ended.values(), default=0)
                self._fire(worst, f"every process is done (worst status {worst})")

    def _fire(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        self._console.request_shutdown(reason=reason)  # in the audit log, as the console's


def _all_at_rest(infos: list[ProcessInfo]) -> bool:
    return all(info.state in AT_REST for info in infos)


def _ended_words(info: ProcessInfo) -> str:
    if info.exit_code is None:
        return f"{info.name} could not be started"
    if info.exit_code < 0:
        return f"{info.name} was killed by {describe_exit(info.exit_code)}"
    return f"{info.name} exited with code {info.exit_code}"
