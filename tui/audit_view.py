"""The Audit view (key 4): the newest records of the audit log, one a row, oldest at the top.

Each row is a control action from any client (the TUI, the CLI, HTTP): time, actor, source,
action, target and outcome, the outcome green when it is ``ok`` and red (with why) when not. The
cells are made by engine/audit_text.py, as ``lacrimosa audit`` makes them.

Reading is cheap and bounded. The app's 20 Hz poll calls :meth:`AuditView.poll`, which compares
``console.audit.count`` (an integer under a lock) with the count last shown and does nothing more
when it did not move. When it moved, a thread worker reads only the new records from the end of
the file (``AuditLog.records`` reads backwards) and appends them to what is held; the view holds
at most MAX_SHOWN rows (older ones: ``lacrimosa audit --lines N``). The list is virtual: its
height is its row count and ``render_line(y)`` renders only the rows on screen, with an LRU of
rendered strips.

Following (the default) keeps the newest record in view until the user scrolls up.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.cache import LRUCache
from textual.containers import Vertical, VerticalScroll
from textual.geometry import Size
from textual.message import Message
from textual.strip import Strip
from textual.widgets import Static

from ..engine.audit_text import (
    AUDIT_COLUMNS,
    actor_text,
    outcome_text,
    record_cells,
    record_time,
    succeeded,
)
from ..engine.errors import LacrimosaError
from ..engine.facade import AuditReader, ConsoleFacade
from ..engine.terminal_text import field_safe
from .line_memo import RemembersItsLines
from .palette import ERROR, GOOD, WARNING
from .row_strip import row_strip
from .virtual_list import CursorList, OneBuildAtATime

MAX_SHOWN = 1000  # the newest records the view holds
_STRIP_CACHE_SIZE = 256
_BUILD_GROUP = "audit-rows"
# Column widths (time without the year: ``12-01 14:05:09``; the outcome takes what is left).
# Longer cells end with "…"; the whole record is in `lacrimosa audit --json`.
_WIDTHS = (14, 9, 7, 10, 12)
_STYLES = ("dim", "", "dim", "bold", "")


@dataclass(frozen=True, slots=True)
class AuditRow:
    cells: tuple[str, ...]  # under AUDIT_COLUMNS, made safe by engine/audit_text.py
    ok: bool
    seq: int | None  # None for a damaged line
    record: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class AuditRows:
    """The rows held (at most MAX_SHOWN, oldest first) and the log's count and head when read."""

    rows: tuple[AuditRow, ...] = ()
    count: int = 0
    head: str = ""

    @property
    def last_seq(self) -> int | None:
        return self.rows[-1].seq if self.rows else None


def _row(record: dict[str, Any]) -> AuditRow:
    seq = record.get("seq")
    return AuditRow(
        record_cells(record),
        succeeded(record),
        seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
        record,
    )


def build_rows(audit: AuditReader, previous: AuditRows, limit: int = MAX_SHOWN) -> AuditRows:
    """The newest ``limit`` records; only those after ``previous`` are read when they follow on
    from it (else, after a gap or a hand-edited file, the newest ``limit`` again). Any thread."""
    count, head = audit.count, audit.head
    last = previous.last_seq
    if last is not None and 0 <= count - last <= limit:
        fresh = audit.records(count - last) if count > last else []
        # More may have been written since ``count`` was read: then the first is not last + 1.
        if not fresh or _row(fresh[0]).seq == last + 1:
            rows = previous.rows + tuple(_row(record) for record in fresh)
            if fresh:
                head = str(fresh[-1].get("hash", head))
            return AuditRows(rows[-limit:], max(count, rows[-1].seq or 0), head)
    records = audit.records(limit)
    rows = tuple(_row(record) for record in records)
    if records:
        head = str(records[-1].get("hash", head))
    return AuditRows(rows, count, head)


def _short_time(cell: str) -> str:
    """``2026-12-01 14:05:09`` without its year (the status line's count says how far back)."""
    return cell[5:] if len(cell) == 19 and cell[4] == "-" else cell


def audit_row(row: AuditRow, width: int) -> Text:
    """One row at ``width`` cells: fixed columns, the outcome coloured."""
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    cells = (_short_time(row.cells[0]), *row.cells[1:5])
    for cell, cell_width, style in zip(cells, _WIDTHS, _STYLES, strict=True):
        piece = Text(cell, style=style, no_wrap=True, overflow="ellipsis")
        piece.truncate(cell_width, overflow="ellipsis", pad=True)
        text.append_text(piece)
        text.append(" ")
    text.append(row.cells[5], style=GOOD if row.ok else f"bold {ERROR}")
    text.truncate(width, overflow="ellipsis")
    return text


def describe_record(row: AuditRow) -> Text:
    """Every field of the record of ``row``, each on its own lines, made visible."""
    record = row.record
    out = Text(end="")

    def line(name: str, value: str, style: str = "") -> None:
        out.append(f"{name:<8} ", style="bold")
        out.append(field_safe(value), style=style)
        out.append("\n")

    if "damaged" in record:
        line("damaged", "this line is not a record (lacrimosa audit --verify says where)", ERROR)
        line("text", str(record["damaged"]))
        return out
    line("seq", str(record.get("seq", "?")))
    line("time", f"{record_time(record)} ({record.get('time')})")
    actor = record.get("actor")
    line("actor", f"{actor_text(actor)}  {json.dumps(actor, sort_keys=True)}")
    line("action", str(record.get("action", "?")))
    line("target", str(record.get("target")))
    line("args", json.dumps(record.get("args"), sort_keys=True))
    line("outcome", outcome_text(record), GOOD if row.ok else f"bold {ERROR}")
    line("prev", str(record.get("prev", "?")), "dim")
    line("hash", str(record.get("hash", "?")), "dim")
    return out


def header_text(width: int) -> Text:
    text = Text(no_wrap=True, end="")
    for name, cell_width in zip(AUDIT_COLUMNS, (*_WIDTHS, 0), strict=True):
        text.append(name.lower().ljust(cell_width + 1) if cell_width else name.lower())
    text.truncate(width)
    return text


class AuditList(CursorList):
    """The held records, oldest at the top; a cursor row; follows the newest by default."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows = AuditRows()
        self._strips = LRUCache(_STRIP_CACHE_SIZE)  # (row, width, is the cursor row)

    @property
    def row_count(self) -> int:
        return len(self.rows.rows)

    @property
    def cursor_row(self) -> AuditRow | None:
        rows = self.rows.rows
        return rows[self.cursor] if 0 <= self.cursor < len(rows) else None

    def install(self, rows: AuditRows) -> None:
        old, cursor_row = self.rows.rows, self.cursor_row
        self.rows = rows
        if rows.rows != old:
            self.set_virtual_size(Size(self.size.width, len(rows.rows)))
            if self.follow:
                self.cursor = max(len(rows.rows) - 1, 0)
                self._scroll_to_end()
            else:
                # The cursor stays on its record, and the screen with it, when the oldest rows
                # were let go (the bound) or new ones came below.
                moved = _index_of(rows.rows, cursor_row) - self.cursor
                self.cursor = min(max(self.cursor + moved, 0), max(len(rows.rows) - 1, 0))
                if moved:
                    y = max(self.scroll_y + moved, 0)
                    self.scroll_to(y=y, animate=False, immediate=True, force=True)
            self.refresh()
        self.post_message(self.Changed())

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base_style, cursor_style = self._styles()
        index = round(self.scroll_y) + y
        rows = self.rows.rows
        if index >= len(rows):
            if y == 0 and not rows:
                text = Text("no audit records yet", style="dim", end="")
                return row_strip(text, width, base_style, self.app.console)
            return Strip.blank(width, base_style)
        row = rows[index]
        is_cursor = index == self.cursor
        key = (row, width, is_cursor)
        strip = self._strips.get(key)
        if strip is None:
            over = cursor_style if is_cursor else None
            strip = row_strip(audit_row(row, width), width, base_style, self.app.console, over)
            self._strips[key] = strip
        return strip

    def visible_rows(self) -> list[str]:
        """The text of each row on screen, trailing blanks removed (for tests and debugging)."""
        return [self.render_line(y).text.rstrip() for y in range(self.size.height)]


def _index_of(rows: tuple[AuditRow, ...], row: AuditRow | None) -> int:
    """Where ``row`` (by seq) is in ``rows`` now; the last row if it is not there."""
    if row is not None and row.seq is not None:
        for index in range(len(rows) - 1, -1, -1):
            if rows[index].seq == row.seq:
                return index
    return max(len(rows) - 1, 0)


class AuditView(RemembersItsLines, Vertical):
    """The status line, the column header and the list; see the module docstring."""

    DEFAULT_CSS = """
    AuditView {
        #audit-status {
            height: 1;
            background: $panel;
            color: $text;
        }
        #audit-header {
            height: 1;
            color: $text-muted;
        }
        #audit-detail {
            display: none;
            height: 50%;
            border-top: solid $primary;
            padding: 0 1;
            scrollbar-size-vertical: 1;
            &.-shown { display: block; }
        }
    }
    """

    BINDINGS = [
        Binding("enter", "toggle_detail", "detail"),
        Binding("f", "toggle_follow", "follow"),
        Binding("escape", "close_detail", show=False),
    ]

    class _RowsBuilt(Message):
        def __init__(self, rows: AuditRows | None, error: str | None) -> None:
            super().__init__()
            self.rows = rows
            self.error = error

    def __init__(self, console: ConsoleFacade, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._engine = console
        self._seen: tuple[int, int] | None = None  # (count, write errors) last read
        self._released = False
        self._builds = OneBuildAtATime(
            self, self._prepare_build, group=_BUILD_GROUP, description="read the audit log"
        )

    def compose(self) -> ComposeResult:
        yield Static(id="audit-status")
        yield Static(id="audit-header")
        yield AuditList(id="audit-list")
        with VerticalScroll(id="audit-detail"):
            yield Static(id="audit-detail-text")

    @property
    def audit_list(self) -> AuditList:
        return self.query_one("#audit-list", AuditList)

    def on_mount(self) -> None:
        self._update_status()

    def focus_default(self) -> None:
        self.audit_list.focus()

    def poll(self) -> None:
        """From the app's timer: read the new records when the log's count moved."""
        if self._released:
            return
        audit = self._engine.audit
        seen = (audit.count, audit.write_errors)
        if seen != self._seen:
            self._seen = seen
            self._builds.request()

    def release(self) -> None:
        """The console is shutting down: read the log no more (it is about to be closed)."""
        self._released = True

    def _prepare_build(self) -> Callable[[], None]:
        audit, previous = self._engine.audit, self.audit_list.rows

        def build() -> None:
            try:
                rows, error = build_rows(audit, previous), None
            except LacrimosaError as exc:  # the log cannot be read: said once a change
                rows, error = None, exc.message
            except (OSError, ValueError) as exc:
                rows, error = None, f"{type(exc).__name__}: {exc}"
            self.post_message(self._RowsBuilt(rows, error))

        return build

    @on(_RowsBuilt)
    def _rows_built(self, message: _RowsBuilt) -> None:
        message.stop()
        build_again = self._builds.finished()
        if self._released:
            return
        if message.error is not None:
            self.notify(f"audit: {message.error}", severity="error", markup=False)
            self._update_status()  # the count of records not written, at least
        elif message.rows is not None:
            self.audit_list.install(message.rows)
        if build_again:
            self._builds.request()

    @property
    def detail_shown(self) -> bool:
        return self.query_one("#audit-detail").has_class("-shown")

    def action_toggle_detail(self) -> None:
        detail = self.query_one("#audit-detail")
        detail.toggle_class("-shown")
        self._show_detail()
        self.call_after_refresh(self.audit_list._show_cursor)

    def action_close_detail(self) -> None:
        if self.detail_shown:
            self.action_toggle_detail()

    def _show_detail(self) -> None:
        if not self.detail_shown:
            return
        row = self.audit_list.cursor_row
        text = Text("no record selected", style="dim") if row is None else describe_record(row)
        self.query_one("#audit-detail-text", Static).update(text)

    @on(CursorList.Changed)
    def _list_changed(self) -> None:
        self._update_status()
        self._show_detail()

    def _update_status(self) -> None:
        audit_list = self.audit_list
        rows = audit_list.rows
        status = Text(no_wrap=True, overflow="ellipsis")
        status.append(" audit ", style="bold reverse")
        status.append("  follow: ")
        if audit_list.follow:
            status.append("on", style=f"bold {GOOD}")
        else:
            status.append("off", style=f"bold {WARNING}")
        status.append(f"  {rows.count:,} records")
        if rows.count > len(rows.rows):
            status.append(f" (newest {len(rows.rows):,} shown)", style="dim")
        failed = sum(1 for row in rows.rows if not row.ok)
        if failed:
            status.append(f"  {failed:,} failed", style=f"bold {ERROR}")
        errors = self._engine.audit.write_errors
        if errors:
            status.append(f"  {errors:,} not written!", style=f"bold {ERROR}")
        if rows.head:
            status.append(f"  head {rows.head[:12]}", style="dim")
        self.query_one("#audit-status", Static).update(status)
        width = max(audit_list.size.width, 1)
        self.query_one("#audit-header", Static).update(header_text(width))

    def on_resize(self) -> None:
        self._update_status()

    def action_toggle_follow(self) -> None:
        self.audit_list.follow = not self.audit_list.follow
