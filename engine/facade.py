"""What the TUI reads and does: the one interface it is written against (STYLE habit 10).

Two implementations: the in-process :class:`~lacrimosa.engine.console.Console` (``lacrimosa up``)
and a client over the control socket (``api/remote_console.py``, ``lacrimosa tui``). The CLI picks
one and hands it to the TUI, which therefore imports neither ``api/`` nor a socket.

Everything here is read as a snapshot: a ``LineWindow`` is the matching lines of the log at one
moment (a ``LogView`` in process; positions counted back from its newest line over the socket), a
``ProcessInfo`` list is copied, the journal is read through its own seqlock.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from .audit import Actor
from .events.frames import Event
from .events.journal import SlotBatch
from .events.sequencer import SequencerStats
from .logs.query import LogQuery
from .processes.supervisor import ProcessInfo


class ShownLine(Protocol):
    """One log line as the TUI draws it: ``LogLine`` (a reference into a block) in process, a
    copy of it when attached."""

    @property
    def process(self) -> str: ...
    @property
    def id(self) -> int: ...
    @property
    def time(self) -> float: ...
    @property
    def stream(self) -> int: ...
    @property
    def stream_name(self) -> str: ...
    @property
    def continued(self) -> bool: ...
    @property
    def content(self) -> bytes | memoryview: ...
    @property
    def text(self) -> str: ...


class LineWindow(Protocol):
    """The lines matching one query at one moment, addressed by position (0 = the oldest)."""

    def __len__(self) -> int: ...

    def lines(self, start: int, stop: int) -> Sequence[ShownLine]:
        """The lines at positions [start, stop) (fewer if some were evicted meanwhile)."""
        ...

    def position_of(self, line_id: int) -> int:
        """How many matching lines come before the line with this id."""
        ...


class JournalReader(Protocol):
    """The event journal, read-only (the ingest process writes it)."""

    @property
    def tail(self) -> int: ...

    def bounds(self) -> tuple[int, int]: ...
    def utilisation(self) -> tuple[float, float]: ...
    def read_slots(self, start: int, stop: int) -> SlotBatch: ...
    def read_events(self, seqs: Sequence[int] | np.ndarray) -> list[Event]: ...
    def select(self, node: int | None = None, stream: int | None = None) -> np.ndarray: ...


class RestartRecord(Protocol):
    def describe(self) -> str: ...


class SequencerView(Protocol):
    """The event sequencer as the Overview and Events views read it."""

    @property
    def address(self) -> str: ...
    @property
    def journal(self) -> JournalReader: ...
    @property
    def failure(self) -> str | None: ...
    @property
    def ingest_errors(self) -> int: ...
    @property
    def state(self) -> str: ...

    @property
    def restarts(self) -> int: ...
    @property
    def history(self) -> Sequence[RestartRecord]:
        """The last few deaths of the ingest process, oldest first."""
        ...

    def stats(self) -> SequencerStats: ...
    def status(self) -> dict[str, Any]: ...
    def warnings(self) -> list[str]: ...


class AuditReader(Protocol):
    """The audit log, as the Audit view reads it."""

    @property
    def count(self) -> int:
        """Records written so far (the newest record's seq)."""
        ...

    @property
    def head(self) -> str: ...
    @property
    def write_errors(self) -> int: ...

    def records(self, limit: int = 100, since: float | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` records, oldest first."""
        ...


class ConsoleFacade(Protocol):
    """One running console, as the TUI reads it and acts on it."""

    @property
    def version(self) -> tuple[int, int]:
        """(process states, log lines): changes whenever either does; cheap to poll."""
        ...

    @property
    def sequencer(self) -> SequencerView | None: ...
    @property
    def audit(self) -> AuditReader: ...

    @property
    def shutdown_requested(self) -> threading.Event:
        """Set when the console is stopping (or, attached, once it can no longer be reached)."""
        ...

    def processes(self) -> list[ProcessInfo]: ...
    def query(self, query: LogQuery) -> LineWindow: ...
    def warnings(self) -> list[str]: ...
    def run_query(
        self, text: str, deadline: float | None = None, cancel: threading.Event | None = None
    ) -> dict[str, Any]:
        """A statement of the query language: ``{"columns", "rows", "scanned", "elapsed_ms",
        "truncated"}`` (engine/dsl); QuerySyntaxError, TimedOut, Cancelled as it fails."""
        ...

    # Actions: each blocks until done and returns its outcome ("stopped", ...). ``actor``: who
    # asks, for the audit log (over the socket, the console records the socket's peer instead).
    def start_process(self, name: str, actor: Actor | None = None) -> str: ...
    def stop_process(self, name: str, actor: Actor | None = None) -> str: ...
    def restart_process(self, name: str, actor: Actor | None = None) -> str: ...

    def request_shutdown(self, actor: Actor = ..., reason: str | None = None) -> None:
        """Ask for every process and the console to stop (returns at once)."""
        ...

    def shutdown(self) -> None:
        """Stop every process and the console; blocks until they are gone."""
        ...
