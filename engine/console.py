"""The engine facade: the one seam the TUI, the control server and the HTTP API all use.

A :class:`Console` owns the log store, the supervisor and (when configured) the event sequencer
for one project. Everything it hands out is a snapshot (``ProcessInfo`` lists,
``StoreSnapshot``/``LogView``), never live mutable state; the sequencer's journal is read the same
way (copies of slots, checked against the writer's counters).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from .audit import AUDIT_NAME, CONSOLE, Actor, AuditLog
from .config import Config
from .dsl import execute, parse
from .dsl.where_view import WhereView, WhereViews
from .errors import Busy, ConsoleError, InvalidRequest, LacrimosaError, NoSuchProcess
from .events.ingest import IngestProcess
from .formation import select
from .keys import KEYS_NAME, KeyStore
from .logs.query import LogQuery, LogView
from .logs.store import STDERR, LogStore, StoreSnapshot
from .processes.conditions import NEVER, PENDING, REACHED, STATES, UNTIL, explain, verdict
from .processes.resources import ResourceMonitor
from .processes.supervisor import ACTION_MARGIN, ProcessInfo, State, Supervisor

EVENTS_ADDRESS_VARIABLE = "LACRIMOSA_EVENTS"  # "HOST:PORT" of the sequencer, for every process
# Threads waiting on the actions of one `stop web` (the supervisor's loop does the work; each
# thread only waits for its process's stop): past this, the rest wait their turn.
MAX_PARALLEL_ACTIONS = 32
WHY_STDERR_LINES = 5  # the last lines of stderr ``why`` shows
# Queries running at once (any client: socket, HTTP, MCP, the TUI); one more is refused (Busy).
# Each is pure Python holding the GIL in turns: 45 at once from one read key slowed the rest of
# the console 8x (/api/status 0.08 s -> 0.6 s) and held the HTTP thread pool.
QUERIES_AT_ONCE = 4
MAX_WAIT = 24 * 3600.0  # seconds a ``wait`` may be asked to wait
JOURNAL_NAME = "events.journal"  # in the state folder, unless [sequencer] journal says otherwise


class Console:
    """One running project: its processes, their logs and its events."""

    def __init__(self, config: Config, home: Path) -> None:
        self.config = config
        self.home = home
        self._queries = threading.BoundedSemaphore(QUERIES_AT_ONCE)
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
        # Every action from every client is recorded here (see audit.py); keys for the HTTP API.
        self.audit = AuditLog(home / AUDIT_NAME)
        self.keys = KeyStore(home / KEYS_NAME)
        self._where_views = WhereViews()  # the TUI log view's `?` filter, extended as lines come
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
        self.request_shutdown(reason=f"the supervisor died: {exc!r}")

    def request_shutdown(self, actor: Actor = CONSOLE, reason: str | None = None) -> None:
        """Ask whoever runs the console (TUI or headless loop) to shut it down. The first
        request is recorded in the audit log."""
        if not self._shutdown_requested.is_set():
            self._shutdown_requested.set()
            self.audit.record(actor, "shutdown", detail=reason)

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
        self.keys.close()
        self.audit.close()
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

    def select(self, target: str) -> list[str]:
        """The processes a name given to a verb means: ``all``, a process or instance
        (``web.2``), a type (all its instances) or a glob (see formation.select)."""
        return select(self.config.processes, target)

    def snapshot(self, names: list[str] | None = None) -> StoreSnapshot:
        return self.store.snapshot(names)

    def query(self, query: LogQuery) -> LogView | WhereView:
        """The lines matching ``query`` in a fresh snapshot (with ``where``: the newest
        matching lines, see dsl/where_view.py; QuerySyntaxError if it does not parse)."""
        if query.processes is not None:
            self.check_names(query.processes)
        if query.where is not None:
            return self._where_views.build(self.store.snapshot(), query, query.where, self.select)
        return LogView(self.store.snapshot(), query)

    def run_query(
        self, text: str, deadline: float | None = None, cancel: threading.Event | None = None
    ) -> dict[str, Any]:
        """A statement of the query language over the logs or the journal, as the document
        ``{"columns", "rows", "scanned", "elapsed_ms", "truncated"}`` (see engine/dsl): the
        ``query`` op and the TUI's Query view. Raises QuerySyntaxError, TimedOut (past
        ``deadline`` seconds), Cancelled (``cancel`` set), NoSuchProcess, Busy (QUERIES_AT_ONCE
        already run)."""
        query = parse(text)
        if not self._queries.acquire(blocking=False):
            raise Busy(f"at most {QUERIES_AT_ONCE} queries run at once: try again when one ends")
        try:
            journal = self.sequencer.journal if self.sequencer is not None else None
            result = execute(
                query,
                self.store.snapshot(),
                journal,
                resolve=self.select,
                timeout=deadline,
                cancel=cancel,
            )
        finally:
            self._queries.release()
        return result.to_dict()

    def wait_for(
        self,
        targets: list[str] | None,
        until: str = "ready",
        state: str | None = None,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Block until every process ``targets`` mean (None: every autostart process) is there
        (see conditions.verdict), one never can be, or ``timeout`` seconds have passed. Woken
        by the supervisor's state changes (subscribe), not by polling.

        Returns ``outcome`` (``reached``, ``never`` or ``timeout``), each process with its
        verdict, and ``blocking``: the first that can never get there or is still pending."""
        if until not in UNTIL:
            raise InvalidRequest(f"until must be one of {', '.join(UNTIL)}")
        if until == "state" and state not in STATES:
            raise InvalidRequest(f"state must be one of {', '.join(STATES)}")
        if not 0 <= timeout <= MAX_WAIT:
            raise InvalidRequest(f"timeout must be from 0 to {MAX_WAIT:.0f} seconds")
        if targets:
            names = list(dict.fromkeys(n for target in targets for n in self.select(target)))
        else:
            names = [name for name, spec in self.config.processes.items() if spec.autostart]
        changed = threading.Event()
        _, unsubscribe = self.supervisor.subscribe(changed.set)
        began = time.monotonic()
        deadline = began + timeout
        try:
            while True:
                changed.clear()
                infos = {info.name: info for info in self.processes()}
                verdicts = {name: verdict(infos[name], until, state) for name in names}
                if NEVER in verdicts.values():
                    outcome = NEVER
                elif all(v == REACHED for v in verdicts.values()):
                    outcome = REACHED
                elif time.monotonic() >= deadline or self.stopped.is_set():
                    outcome = "timeout"
                else:
                    changed.wait(min(deadline - time.monotonic(), 1.0))
                    continue
                break
        finally:
            unsubscribe()
        blocking = next((n for n in names if verdicts[n] == NEVER), None) or next(
            (n for n in names if verdicts[n] == PENDING), None
        )
        processes = [{**_waited(infos[name]), "verdict": verdicts[name]} for name in names]
        result: dict[str, Any] = {
            "outcome": outcome,
            "until": state if until == "state" else until,
            "waited": round(time.monotonic() - began, 3),
            "processes": processes,
        }
        if blocking is not None and outcome != REACHED:
            result["blocking"] = next(p for p in processes if p["name"] == blocking)
        return result

    def why(self, name: str) -> dict[str, Any]:
        """Why ``name`` is in its state, in a few lines and in fields (see conditions.explain)."""
        infos = {info.name: info for info in self.processes()}
        if name not in infos:
            raise NoSuchProcess(name, list(infos))
        view = self.query(LogQuery(processes=(name,), stream=STDERR))
        total = len(view)
        stderr = [line.text for line in view.lines(max(total - WHY_STDERR_LINES, 0), total)]
        dependencies = [
            infos[other]
            for type_name in self.config.processes[name].depends_on
            for other in self.select(type_name)
        ]
        return explain(infos[name], stderr, dependencies)

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
            "audit": self.audit.status(),
            "warnings": self.warnings(),
            **{name: section() for name, section in self._status_sections.items()},
        }

    def warnings(self) -> list[str]:
        """Console-level problems to show wherever the console is looked at (status, ps, the
        TUI): a sequencer that stopped or lost events, a journal repaired on opening, a guardian
        that keeps dying (then a kill -9 of the console could leave processes behind)."""
        found = list(self.config.warnings)  # Procfile lines skipped, ...
        if self.sequencer is not None:
            found += self.sequencer.warnings()
        guardian = self.supervisor.guardian_info
        if guardian.state == "failing":
            found.append(
                f"the guardian keeps dying ({guardian.restarts} restarts): if the console is "
                "killed now, processes that ignore SIGTERM may outlive it"
            )
        if self.audit.write_errors:
            found.append(
                f"{self.audit.write_errors} audit records could not be written "
                f"({self.audit.last_error})"
            )
        return found

    # -- actions ---------------------------------------------------------------------------------

    # Each takes who asked (default: the console's own user, from a caller in this process),
    # and records the action and its outcome in the audit log, whoever the client.

    def start_process(self, name: str, actor: Actor | None = None) -> str:
        return self._audited(actor, "start", name, self.supervisor.start_process)

    def stop_process(self, name: str, actor: Actor | None = None) -> str:
        """Blocks until the process has stopped (signal, stop timeout, SIGKILL).

        The outcome: "stopped", or "not running" when there was nothing to stop."""
        return self._audited(actor, "stop", name, self.supervisor.stop_process)

    def restart_process(self, name: str, actor: Actor | None = None) -> str:
        return self._audited(actor, "restart", name, self.supervisor.restart_process)

    def _audited(
        self, actor: Actor | None, action: str, name: str, begin: Callable[[str], Any]
    ) -> str:
        return self._finish(actor, action, name, lambda: begin(name))

    def _finish(
        self, actor: Actor | None, action: str, name: str, begun: Callable[[], Future[Any]]
    ) -> str:
        """Wait for an action ``begun()`` started (or raised starting) and record its outcome."""
        actor = actor or Actor.local("console")
        with self.audit.failure_recorded(actor, action, name):
            outcome = self._wait(name, begun())
        outcome = outcome if isinstance(outcome, str) else "stopped"
        self.audit.record(actor, action, name, detail=outcome)
        return outcome

    def act(self, verb: str, target: str, actor: Actor | None = None) -> list[tuple[str, str]]:
        """``start``, ``stop`` or ``restart`` every process ``target`` means (see select), all
        at once (a stop of ten takes one stop_timeout, not ten); each one's outcome, each
        recorded in the audit log. The first failure is raised once every action has finished;
        a target that means no process is recorded as refused."""
        begin: Callable[[str], Future[Any]] = {
            "start": self.supervisor.start_process,
            "stop": self.supervisor.stop_process,
            "restart": self.supervisor.restart_process,
        }[verb]
        with self.audit.failure_recorded(actor or Actor.local("console"), verb, target):
            names = self.select(target)
        if len(names) == 1:
            return [(names[0], self._finish(actor, verb, names[0], lambda: begin(names[0])))]
        # Asked of the supervisor here, in dependency order (dependents first for a stop, so
        # that theirs hold their dependencies'), then waited for together.
        order = self.supervisor.stop_order(names)
        if verb != "stop":
            order.reverse()
        begun: dict[str, Callable[[], Future[Any]]] = {}
        for name in order:
            try:
                future = begin(name)
            except LacrimosaError as exc:
                begun[name] = functools.partial(_raise, exc)
            else:
                begun[name] = functools.partial(lambda f: f, future)
        workers = min(len(names), MAX_PARALLEL_ACTIONS)
        with ThreadPoolExecutor(workers, thread_name_prefix=f"lacrimosa-{verb}") as pool:
            futures = [pool.submit(self._finish, actor, verb, name, begun[name]) for name in names]
            wait(futures)
        return [(name, future.result()) for name, future in zip(names, futures, strict=True)]

    def _wait(self, name: str, future: Any) -> Any:
        # A stop may take the process's whole stop_timeout before SIGKILL, and a little more.
        timeout = self.config.processes[name].stop_timeout + ACTION_MARGIN
        try:
            return future.result(timeout)
        except TimeoutError:
            raise ConsoleError(f"{name}: the action did not complete in {timeout:.0f}s") from None


def _waited(info: ProcessInfo) -> dict[str, Any]:
    """What a ``wait`` reply says of each process."""
    return {
        "name": info.name,
        "state": info.state,
        "ready": info.ready,
        "health": info.health,
        "reason": info.reason,
        "exit_code": info.exit_code,
        "pid": info.pid,
    }


def _raise(exc: BaseException) -> Any:
    raise exc
