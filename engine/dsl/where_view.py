"""A log view filtered by a WHERE expression: what the TUI's log view shows for a ``?`` filter.

It answers what the log pane asks of a LogView (``len``, ``lines``, ``position_of``, ``tail``)
over the newest ``MAX_WHERE_LINES`` matching lines, held as references (process, block, index)
and their ids, never copies. Built again as lines arrive, it extends the previous view with the
lines after its last id (``select_rows(after_id=...)``): a refresh costs the new lines, not the
store. Lines whose blocks the store evicted are dropped from the front.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace

from ..logs.query import LogQuery
from ..logs.store import STREAM_NAMES, LogLine, StoreSnapshot
from .executor import LineRow, select_rows
from .syntax import And, Compare, Expr, Query, Source, Text, parse_where

MAX_WHERE_LINES = 50_000  # matching lines a filtered log view holds (the newest)


class WhereView:
    """The lines matching a query and a WHERE expression, oldest first, as references."""

    def __init__(
        self, key: tuple[LogQuery, str], lines: Sequence[LogLine], ids: list[int], upto: int
    ) -> None:
        self.key = key
        self._lines = list(lines)
        self._ids = ids
        self.upto = upto  # the newest line id of the snapshot it was built from

    def __len__(self) -> int:
        return len(self._lines)

    def line(self, i: int) -> LogLine:
        return self._lines[i]

    def lines(self, start: int, stop: int) -> list[LogLine]:
        return self._lines[max(start, 0) : max(stop, 0)]

    def tail(self, n: int) -> list[LogLine]:
        return self._lines[-n:] if n > 0 else []

    def position_of(self, line_id: int) -> int:
        return bisect.bisect_left(self._ids, line_id)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._lines)


def as_query(log_query: LogQuery, where: Expr) -> Query:
    """A LogQuery's processes, stream, substring and since, and ``where``, as one query."""
    conditions = [where]
    if log_query.stream is not None:
        conditions.append(Compare("stream", "=", STREAM_NAMES[log_query.stream]))
    if log_query.contains:
        conditions.append(Text("line", "contains", log_query.contains.decode("utf-8", "replace")))
    names = log_query.processes if log_query.processes is not None else ("*",)
    return Query(
        columns=(),
        sources=tuple(Source(name) for name in names),
        where=conditions[0] if len(conditions) == 1 else And(tuple(conditions)),
        since=log_query.since,
    )


class WhereViews:
    """Builds WhereViews, extending the last one built for the same query (one kept)."""

    def __init__(self, limit: int = MAX_WHERE_LINES) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._last: WhereView | None = None

    def build(
        self,
        snapshot: StoreSnapshot,
        log_query: LogQuery,
        where_text: str,
        resolve: Callable[[str], list[str]] | None = None,
    ) -> WhereView:
        key = (replace(log_query, after_id=None), where_text)
        query = as_query(log_query, parse_where(where_text))  # QuerySyntaxError: told as is
        with self._lock:
            previous = self._last if self._last is not None and self._last.key == key else None
        upto = max(
            (
                p.blocks[-1].block.id_at(p.blocks[-1].n - 1)
                for p in snapshot.processes.values()
                if p.blocks
            ),
            default=0,
        )
        if previous is None:
            found = self._newest(query, snapshot, resolve)
        else:
            kept = [line for line in previous.lines(0, len(previous)) if not line.block.evicted]
            newer = select_rows(query, snapshot, resolve=resolve, after_id=previous.upto)
            found = kept + [_line(row) for row in newer]  # type: ignore[arg-type]
            found = found[-self.limit :]
        view = WhereView(key, found, [line.id for line in found], upto)
        with self._lock:
            self._last = view
        return view

    def _newest(
        self, query: Query, snapshot: StoreSnapshot, resolve: Callable[[str], list[str]] | None
    ) -> list[LogLine]:
        found: list[LogLine] = []
        for row in select_rows(query, snapshot, resolve=resolve, descending=True):
            found.append(_line(row))  # type: ignore[arg-type]
            if len(found) >= self.limit:
                break
        found.reverse()
        return found


def _line(row: LineRow) -> LogLine:
    return LogLine(row.process, row.block, row.index)
