"""The engine facade: the one seam the TUI, the control server and the HTTP API all use.

A :class:`Console` owns the log store, the supervisor and (when configured) the event sequencer
for one project. Everything it hands out is a snapshot (``ProcessInfo`` lists,
``StoreSnapshot``/``LogView``), never live mutable state; the sequencer's journal is read the same
way (copies of slots, checked against the writer's counters).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import Config
from .errors import ConsoleError, NoSuchProcess
from .events.ingest import IngestProcess
from .logs.query import LogQuery, LogView
from .logs.store import LogStore, StoreSnapshot
from .processes.resources import ResourceMonitor
from .processes.supervisor import ACTION_MARGIN, ProcessInfo, State, Supervisor

EVENTS_ADDRESS_VARIABLE = "LACRIMOSA_EVENTS"  # "HOST:PORT" of the sequencer, for every process
JOURNAL_NAME = "events.journal"  # in the state folder, unless [sequencer] journal says otherwise


class Console:
    """One running project: its processes, their logs and its events."""

    def __init__(self, config: Config, home: Path) -> None:
        self.config = config
        self.home = home
        self.store = LogStore(config.log_budget_bytes, config.max_line_bytes)
        self.supervisor = Supervisor(config.processes, self.store, on_crash=self._supervisor_died)
        self.started_at = time.time()
        self._shutdown_requested = threading.Event()
        # Set once start() has finished: until then the control server answers ``starting``.
        self.started = threading.Event()
        # Set once shutdown() has finished: every process gone, the journal closed.
        self.stopped = threading.Event()
        # Extra sections of status() (the control server adds its counters), by name.
        self._status_sections: dict[str, Callable[[], Any]] = {}
        # Made in start(): it binds a port and starts the ingest process (which opens the journal).
        self.sequencer: IngestProcess | None = None
        # CPU and memory of each running process's group, sampled once a second from start().
        self.resources = ResourceMonitor(
            lambda: [info.pid for info in self.supervisor.info() if info.pid is not None]
        )

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the sequencer (if configured), then every process. A sequencer that cannot
        start (port taken, journal refused) stops this before any process is started.

        The sequencer runs in a process of its own (see ingest.py), registered with the
        guardian: the supervisor's loop and guardian start first, the processes last."""
        self.home.mkdir(parents=True, exist_ok=True)
        settings = self.config.sequencer
        if settings.udp is not None and self.sequencer is None:
            sequencer = IngestProcess(
                settings,
                settings.journal or self.home / JOURNAL_NAME,
                register=self.supervisor.add_group,
                unregister=self.supervisor.remove_group,
                token=self.supervisor.token,
            )
            try:
                self.supervisor.start(processes=False)
                sequencer.start()
            except BaseException:
                sequencer.stop()
                raise
            self.sequencer = sequencer
            # Processes learn where to send events (a config env entry can still override it).
            self.supervisor.environment[EVENTS_ADDRESS_VARIABLE] = sequencer.address
        self.supervisor.start()
        self.resources.start()
        self.started.set()

    def _supervisor_died(self, exc: BaseException) -> None:
        # Its children were killed as it died; with nothing supervised, the console ends too.
        self.request_shutdown()

    def request_shutdown(self) -> None:
        """Ask whoever runs the console (TUI or headless loop) to shut it down."""
        self._shutdown_requested.set()

    @property
    def shutdown_requested(self) -> threading.Event:
        return self._shutdown_requested

    def shutdown(self) -> None:
        """Stop every process and the supervisor, then the sequencer (its journal is closed).
        Blocks until they are gone."""
        self._shutdown_requested.set()
        self.resources.stop()
        sequencer = self.sequencer
        # Ingest last (events sent by processes as they stopped are kept), but before the
        # guardian goes (it would kill the ingest process, registered with it, mid-drain).
        self.supervisor.shutdown(before_guardian=sequencer.stop if sequencer else None)
        if sequencer is not None:
            sequencer.stop()  # a no-op when done above
        self.stopped.set()

    # -- reading ---------------------------------------------------------------------------------

    def processes(self) -> list[ProcessInfo]:
        """Every process now, with its group's latest CPU and memory sample."""
        usage = self.resources.usage
        infos = self.supervisor.info()
        for i, info in enumerate(infos):
            sample = usage.get(info.pid) if info.pid is not None else None
            if sample is not None:
                infos[i] = dataclasses.replace(
                    info, cpu_percent=sample.cpu_percent, rss_bytes=sample.rss_bytes
                )
        return infos

    def process(self, name: str) -> ProcessInfo:
        for info in self.processes():
            if info.name == name:
                return info
        raise NoSuchProcess(name, self.supervisor.names())

    def check_names(self, names: list[str] | tuple[str, ...]) -> None:
        known = self.supervisor.names()
        for name in names:
            if name not in known:
                raise NoSuchProcess(name, known)

    def snapshot(self, names: list[str] | None = None) -> StoreSnapshot:
        return self.store.snapshot(names)

    def query(self, query: LogQuery) -> LogView:
        """The lines matching ``query`` in a fresh snapshot."""
        if query.processes is not None:
            self.check_names(query.processes)
        return LogView(self.store.snapshot(), query)

    @property
    def version(self) -> tuple[int, int]:
        """Changes whenever a process changes state or a line arrives (cheap to poll)."""
        return (self.supervisor.version, self.store.version)

    def add_status_section(self, name: str, section: Callable[[], Any]) -> None:
        """Have status() carry ``section()`` under ``name`` (called on every status request)."""
        self._status_sections[name] = section

    def status(self) -> dict[str, Any]:
        infos = self.processes()
        states: dict[str, int] = {}
        for info in infos:
            states[info.state] = states.get(info.state, 0) + 1
        return {
            "pid": os.getpid(),
            "uptime": round(time.time() - self.started_at, 3),
            "config": str(self.config.path),
            "home": str(self.home),
            "processes": len(infos),
            "running": sum(1 for i in infos if i.state == State.RUNNING),
            "states": states,
            "log_store": self.store.stats(),
            "sequencer": self.sequencer.status() if self.sequencer is not None else None,
            "guardian": self.supervisor.guardian_info.to_dict(),
            "warnings": self.warnings(),
            **{name: section() for name, section in self._status_sections.items()},
        }

    def warnings(self) -> list[str]:
        """Console-level problems to show wherever the console is looked at (status, ps, the
        TUI): a sequencer that stopped or lost events, a journal repaired on opening, a guardian
        that keeps dying (then a kill -9 of the console could leave processes behind)."""
        found = self.sequencer.warnings() if self.sequencer is not None else []
        guardian = self.supervisor.guardian_info
        if guardian.state == "failing":
            found.append(
                f"the guardian keeps dying ({guardian.restarts} restarts): if the console is "
                "killed now, processes that ignore SIGTERM may outlive it"
            )
        return found

    # -- actions ---------------------------------------------------------------------------------

    def start_process(self, name: str) -> str:
        return str(self._wait(name, self.supervisor.start_process(name)))

    def stop_process(self, name: str) -> str:
        """Blocks until the process has stopped (signal, stop timeout, SIGKILL).

        The outcome: "stopped", or "not running" when there was nothing to stop."""
        outcome = self._wait(name, self.supervisor.stop_process(name))
        return outcome if isinstance(outcome, str) else "stopped"

    def restart_process(self, name: str) -> str:
        return str(self._wait(name, self.supervisor.restart_process(name)))

    def _wait(self, name: str, future: Any) -> Any:
        # A stop may take the process's whole stop_timeout before SIGKILL, and a little more.
        timeout = self.config.processes[name].stop_timeout + ACTION_MARGIN
        try:
            return future.result(timeout)
        except TimeoutError:
            raise ConsoleError(f"{name}: the action did not complete in {timeout:.0f}s") from None
