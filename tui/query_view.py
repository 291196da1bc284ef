"""The Query view (key 5): a console for the query language (engine/dsl, README "Query language").

Top to bottom: the input (Enter runs the query; up/down walk the history, which is kept in the
state folder as ``query_history`` across restarts, at most HISTORY_MAX entries), a status line
(rows, lines scanned, time; or the error with the query and a caret under the offending column),
and the result table.

A query runs in a thread worker (``Console.run_query``, one at a time: a new one cancels the
last), so the UI never waits for it; Escape cancels it: the view lets go of it at once and the
executor stops at its next check (it checks a cancel flag as it reads). Escape with no query
running gives the keys to the result table, where ``1``-``5`` switch views again (the input takes
them as text). Results are bounded by the
executor (10,000 rows, cells of 4,096 characters); cells are shown made safe (controls visible)
and cut to MAX_CELL_WIDTH columns.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Input, Static

from ..engine.errors import LacrimosaError, QuerySyntaxError
from ..engine.facade import ConsoleFacade
from ..engine.terminal_text import field_safe
from .line_memo import RemembersItsLines
from .palette import ERROR, WARNING

HISTORY_NAME = "query_history"  # in the state folder: one query a line, oldest first
HISTORY_MAX = 200
QUERY_DEADLINE = 30.0  # seconds a query from the TUI may run
MAX_CELL_WIDTH = 80
_GROUP = "query"


def cell_text(value: Any) -> str:
    """A result cell as one safe line of at most MAX_CELL_WIDTH characters."""
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = f"{value:.6g}"
    else:
        text = str(value)
    text = field_safe(text)
    return text if len(text) <= MAX_CELL_WIDTH else text[: MAX_CELL_WIDTH - 1] + "…"


class QueryHistory:
    """The queries run, oldest first, kept in a file (one a line) across restarts."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: list[str] = []
        if path is not None:
            with contextlib.suppress(OSError):
                text = path.read_text(encoding="utf-8", errors="replace")
                self.entries = [line for line in text.splitlines() if line.strip()][-HISTORY_MAX:]
        self._position = len(self.entries)

    def add(self, query: str) -> None:
        query = " ".join(query.split())  # one line
        if self.entries and self.entries[-1] == query:
            self._position = len(self.entries)
            return
        self.entries = [*self.entries, query][-HISTORY_MAX:]
        self._position = len(self.entries)
        if self.path is not None:
            # Whole and in place at once (a reader never sees half a file); a failure to write
            # loses only the history.
            temporary = self.path.with_name(f".{HISTORY_NAME}.{os.getpid()}")
            try:
                temporary.write_text("".join(e + "\n" for e in self.entries), encoding="utf-8")
                os.chmod(temporary, 0o600)
                temporary.replace(self.path)
            except OSError:
                with contextlib.suppress(OSError):
                    temporary.unlink()

    def step(self, direction: int) -> str | None:
        """The previous (-1) or next (+1) entry; "" past the newest; None when there is none."""
        if not self.entries:
            return None
        self._position = min(max(self._position + direction, 0), len(self.entries))
        return self.entries[self._position] if self._position < len(self.entries) else ""


class QueryInput(Input):
    # Shown: while the input has the focus, the app's keys (1-5, q) are letters it takes as
    # text, and the footer had nothing to show.
    BINDINGS = [
        Binding("enter", "submit", "run"),
        Binding("up", "history(-1)", "older"),
        Binding("down", "history(1)", "newer"),
        Binding("escape", "cancel_query", "cancel/leave"),
    ]

    def action_history(self, direction: int) -> None:
        view = self.parent
        assert isinstance(view, QueryView)
        entry = view.history.step(direction)
        if entry is not None:
            self.value = entry
            self.cursor_position = len(entry)

    def action_cancel_query(self) -> None:
        """Escape: cancel the query running; with none, give the keys to the table (where
        1-5 switch views again)."""
        view = self.parent
        assert isinstance(view, QueryView)
        if view.running:
            view.cancel()
        else:
            view.table.focus()


class QueryView(RemembersItsLines, Vertical):
    """The query console; see the module docstring."""

    DEFAULT_CSS = """
    QueryView {
        height: 1fr;
    }
    QueryView > #query-input {
        height: 1;
        border: none;
        padding: 0 1;
    }
    QueryView > #query-status {
        height: auto;
        max-height: 4;
        background: $panel;
        padding: 0 1;
    }
    QueryView > #query-result {
        height: 1fr;
    }
    """

    class _Done(Message):
        def __init__(self, serial: int, query: str, result: dict[str, Any]) -> None:
            super().__init__()
            self.serial = serial
            self.query = query
            self.result = result

    class _Failed(Message):
        def __init__(self, serial: int, query: str, error: LacrimosaError) -> None:
            super().__init__()
            self.serial = serial
            self.query = query
            self.error = error

    def __init__(self, console: ConsoleFacade, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._engine = console
        home = getattr(console, "home", None)
        self.history = QueryHistory(Path(home) / HISTORY_NAME if home is not None else None)
        self._serial = 0  # of the query running; a result of an older one is dropped
        self._cancel: threading.Event | None = None
        self.running = False

    def compose(self) -> ComposeResult:
        yield QueryInput(
            placeholder="SELECT … FROM … WHERE … · ⏎ run · ↑↓ history · esc: cancel, or to the keys",
            id="query-input",
        )
        yield Static("", id="query-status")
        yield DataTable(id="query-result", zebra_stripes=True, cursor_type="row")

    @property
    def input(self) -> QueryInput:
        return self.query_one("#query-input", QueryInput)

    @property
    def table(self) -> DataTable[str]:
        return self.query_one("#query-result", DataTable)

    @property
    def status(self) -> Static:
        return self.query_one("#query-status", Static)

    def focus_default(self) -> None:
        self.input.focus()

    @on(Input.Submitted, "#query-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if text:
            self.run_query(text)

    def run_query(self, text: str) -> None:
        self.history.add(text)
        self.cancel(quiet=True)
        self._serial += 1
        self._cancel = threading.Event()
        self.running = True
        self.status.update(Text("running… (esc: cancel)", style=WARNING))
        self._run(self._serial, text, self._cancel)

    def cancel(self, quiet: bool = False) -> None:
        """Let go of the query running (its worker stops at the executor's next check)."""
        if self._cancel is not None:
            self._cancel.set()
            self._cancel = None
        if self.running:
            self.running = False
            self._serial += 1  # whatever it still reports is dropped
            if not quiet:
                self.status.update(Text("cancelled", style=WARNING))

    @work(thread=True, exit_on_error=False, group=_GROUP, description="query")
    def _run(self, serial: int, text: str, cancel: threading.Event) -> None:
        try:
            result = self._engine.run_query(text, deadline=QUERY_DEADLINE, cancel=cancel)
        except LacrimosaError as exc:
            self.post_message(self._Failed(serial, text, exc))
            return
        self.post_message(self._Done(serial, text, result))

    @on(_Done)
    def _done(self, event: _Done) -> None:
        event.stop()
        if event.serial != self._serial:
            return
        self.running = False
        self._cancel = None
        result = event.result
        table = self.table
        table.clear(columns=True)
        for column in result["columns"]:
            table.add_column(cell_text(column), key=None)
        table.add_rows([[cell_text(v) for v in row] for row in result["rows"]])
        count = len(result["rows"])
        summary = Text(f"{count:,} row{'s' if count != 1 else ''}", style="bold")
        summary.append(f" · {result['scanned']:,} scanned · {result['elapsed_ms']:.1f} ms")
        if result["truncated"]:
            summary.append(" · truncated: more rows matched (add a LIMIT)", style=WARNING)
        self.status.update(summary)

    @on(_Failed)
    def _failed(self, event: _Failed) -> None:
        event.stop()
        if event.serial != self._serial:
            return
        self.running = False
        self._cancel = None
        error = event.error
        message = Text(error.message, style=f"bold {ERROR}")
        position = _syntax_position(error)
        if position is not None:
            # The query as one line of single-width characters, and a caret under the column.
            shown = "".join(field_safe(c)[:1] or "?" for c in event.query.replace("\n", " "))
            message.append("\n" + shown + "\n" + " " * position + "^")
        self.status.update(message)


def _syntax_position(error: LacrimosaError) -> int | None:
    """Where a query that does not parse went wrong: the console's own error in process, or the
    ``position`` a reply carried when attached (the client's error keeps the reply's fields)."""
    if isinstance(error, QuerySyntaxError):
        return error.position
    if error.code != QuerySyntaxError.code:
        return None
    position = getattr(error, "details", {}).get("position")
    return position if isinstance(position, int) else None
