"""The query language's executor: a parsed :class:`Query` over a store snapshot or the journal.

How a query over logs is read (cheapest first, so most lines never reach Python):

1. sources become processes (a type names its instances; ``api.stderr`` one stream), and SINCE a
   bisection of each block's run times: lines before it are not looked at;
2. the WHERE clause's top-level conditions that every match must meet give a stream and
   substrings the raw line must contain (``msg CONTAINS "timeout"``, ``level = "error"``: the
   value; ``status >= 500``: the key). The stream and the longest substring are scanned over
   whole blocks with numpy (logs/query.py's ``block_matches``, cached on the block); the other
   substrings are checked on each surviving line's bytes;
3. only then is a line decoded, and parsed (JSON or logfmt) when the WHERE clause asks for one of
   its keys;
4. lines of several processes are merged by id one block per process at a time, so a query in
   the store's order (none given, or ``ORDER BY ts|id [DESC]``) stops as soon as it has LIMIT
   rows; DESC walks the blocks from the newest.

Memory is bounded: GROUP BY holds one accumulator row per group (at most ``MAX_GROUPS``), a sort
with LIMIT holds at most twice LIMIT rows (pruned back to LIMIT), a reply at most ``MAX_ROWS``
rows (``truncated`` says more matched) with cells of at most ``MAX_CELL_CHARS``. Events are read
from the journal ``EVENTS_CHUNK`` slots at a time (node, stream and time filtered as arrays before
any record is read), never as a copy of the ring. A deadline and a cancel flag are checked as it
goes.
"""

from __future__ import annotations

import fnmatch
import heapq
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ..errors import Cancelled, ConsoleError, InvalidRequest, NoSuchProcess, TimedOut
from ..events.frames import COUNTER_BITS, Event, matching
from ..events.journal import Journal
from ..logs.query import block_matches, first_ms_at_or_after
from ..logs.store import (
    FLAG_NO_NEWLINE,
    STREAM_MASK,
    STREAM_NAMES,
    Block,
    BlockRef,
    StoreSnapshot,
)
from .syntax import And, Column, Compare, Exists, Expr, In, Not, Or, Query, Text, parse_time
from .values import (
    MISSING,
    as_number,
    compile_expr,
    group_key,
    lookup,
    raw_fields,
    sort_key,
    structured_fields,
)

MAX_ROWS = 10_000  # rows in a reply; more matching: ``truncated``
MAX_GROUPS = 10_000  # groups a GROUP BY may make (past that the query is refused)
MAX_SORTED = 100_000  # OFFSET + LIMIT of a query that sorts (it holds up to twice that)
MAX_CELL_CHARS = 4096  # a longer text cell is cut (with "…")
MAX_REPLY_BYTES = 8 << 20  # about this many bytes of cells in a reply; more: ``truncated``
MAX_SORT_BYTES = 32 << 20  # cells a sort may hold while it looks for the first LIMIT rows
EVENTS_CHUNK = 1024  # journal slots read at a time
CHECK_EVERY = 256  # rows between deadline / cancel checks (and at every block)
_PER_LINE_COPY = 64  # fewer candidate lines in a block than this: copied one by one

LINE_FIELDS = ("ts", "process", "stream", "id", "line")
EVENT_FIELDS = ("seq", "lamport", "ts", "node", "stream", "flags", "payload")
_STORE_ORDER = {"ts", "id"}  # orders the store's own order (ids) gives
_JOURNAL_ORDER = {"ts", "seq", "lamport"}
_ALL_STREAMS = -1
_LINE_BUILTINS = frozenset(LINE_FIELDS)


@dataclass(frozen=True, slots=True)
class Result:
    columns: list[str]
    rows: list[list[Any]]
    scanned: int  # lines or events the query looked at (after SINCE and the block scans' ranges)
    elapsed_ms: float
    truncated: bool  # more rows matched than the reply holds (MAX_ROWS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "rows": self.rows,
            "scanned": self.scanned,
            "elapsed_ms": round(self.elapsed_ms, 3),
            "truncated": self.truncated,
        }


def _size(cells: list[Any]) -> int:
    """About how many bytes a row's cells take in a reply."""
    return sum(len(c) + 3 if isinstance(c, str) else 8 for c in cells)


def format_time(seconds: float) -> str:
    """RFC 3339 in UTC with milliseconds: ``2026-11-23T10:00:00.000Z``."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# -- rows ---------------------------------------------------------------------------------------


class LineRow:
    """One stored line as a query sees it; its text and fields are made when first asked for."""

    __slots__ = ("_fields", "_text", "block", "flags", "id", "index", "ms", "process", "raw")

    def __init__(
        self, process: str, block: Block, index: int, line_id: int, ms: int, flags: int, raw: bytes
    ) -> None:
        self.process = process
        self.block = block  # where the line is stored (LogLine(process, block, index))
        self.index = index
        self.id = line_id
        self.ms = ms
        self.flags = flags
        self.raw = raw  # the line's bytes, without its newline
        self._text: str | None = None
        self._fields: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self.raw.decode("utf-8", "replace")
        return self._text

    def get(self, name: str) -> Any:
        if name in _LINE_BUILTINS:
            if name == "line":
                return self.text
            if name == "ts":
                return self.ms / 1000.0
            if name == "stream":
                return STREAM_NAMES[self.flags & STREAM_MASK]
            if name == "process":
                return self.process
            return self.id
        fields = self._fields
        if fields is None:
            fields = self._fields = raw_fields(self.raw, self._decoded)
        return lookup(fields, name)

    def _decoded(self) -> str:
        return self.text


class EventRow:
    """One journaled event as a query sees it."""

    __slots__ = ("_fields", "_payload", "event")

    def __init__(self, event: Event) -> None:
        self.event = event
        self._payload: str | None = None
        self._fields: dict[str, Any] | None = None

    @property
    def id(self) -> int:
        return self.event.seq

    @property
    def payload(self) -> str:
        if self._payload is None:
            text = self.event.payload_text()
            self._payload = text if text is not None else self.event.payload.hex()
        return self._payload

    def get(self, name: str) -> Any:
        if name == "payload":
            return self.payload
        builtin = _EVENT_BUILTINS.get(name)
        if builtin is not None:
            return builtin(self.event)
        if self._fields is None:
            text = self.event.payload_text()
            self._fields = structured_fields(text) if text is not None else {}
        return lookup(self._fields, name)


# An event's fields (but its payload, decoded once by EventRow) by name.
_EVENT_BUILTINS: dict[str, Callable[[Event], Any]] = {
    "seq": lambda event: event.seq,
    "lamport": lambda event: event.lamport,
    "ts": lambda event: event.time,
    "node": lambda event: event.node,
    "stream": lambda event: event.stream,
    "flags": lambda event: event.sender_flags,
}


Row = LineRow | EventRow


def cell(row: Row, name: str) -> Any:
    """A row's value for an output column: times as RFC 3339, long text cut, missing as null."""
    value = row.get(name)
    if value is MISSING:
        return None
    if name == "ts":
        return format_time(value)
    if isinstance(value, str) and len(value) > MAX_CELL_CHARS:
        return value[: MAX_CELL_CHARS - 1] + "…"
    return value


# -- cheap filters ------------------------------------------------------------------------------

_UNSAFE = frozenset("\"\\/<>&'")  # characters a JSON or logfmt writer may escape


def _verbatim(text: str) -> bool:
    """Whether ``text`` appears in a line's bytes as it is wherever a JSON or logfmt value (or
    key) holds it: printable ASCII that no writer escapes."""
    return bool(text) and all(" " <= c <= "~" and c not in _UNSAFE for c in text)


def _plain_string(value: object) -> bool:
    """A string literal that ``=`` matches only as itself (not as a number or a boolean)."""
    return (
        isinstance(value, str)
        and as_number(value) is None
        and value.lower() not in ("true", "false")
    )


def _conjuncts(expr: Expr | None) -> list[Expr]:
    if expr is None:
        return []
    if isinstance(expr, And):
        return [c for operand in expr.operands for c in _conjuncts(operand)]
    return [expr]


@dataclass
class _Cheap:
    """What every match must have, as the block scans can check it."""

    needles: list[bytes]
    stream: int | None = None  # lines: the stream number
    node: int | None = None  # events
    event_stream: int | None = None


def cheap_filters(where: Expr | None, builtins: Sequence[str], events: bool = False) -> _Cheap:
    """The substrings, stream (and for events node) that ``where`` requires of every match."""
    cheap = _Cheap([])
    for part in _conjuncts(where):
        name = getattr(part, "field", None)
        if name is None:
            continue
        if events and isinstance(part, Compare) and part.op == "=":
            value = part.value
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                if name == "node":
                    cheap.node = value
                elif name == "stream":
                    cheap.event_stream = value
        if (
            not events
            and name == "stream"
            and isinstance(part, Compare)
            and part.op == "="
            and part.value in STREAM_NAMES
        ):
            cheap.stream = STREAM_NAMES.index(str(part.value))
        if name == "line" and not events and isinstance(part, Text) and part.op != "matches":
            if part.value and "\n" not in part.value and "\ufffd" not in part.value:
                cheap.needles.append(part.value.encode())
            continue
        if name in builtins:
            continue
        # A key of the structured text: the line must hold the key, and some values verbatim.
        value = None
        if isinstance(part, Text) and part.op != "matches":
            value = part.value
        elif isinstance(part, Compare) and part.op == "=" and _plain_string(part.value):
            value = str(part.value)
        if value is not None and _verbatim(value):
            cheap.needles.append(value.encode())
        elif isinstance(part, Compare | Text | In | Exists):
            key = name.rsplit(".", 1)[-1]
            if _verbatim(key):
                cheap.needles.append(key.encode())
    cheap.needles.sort(key=len, reverse=True)
    return cheap


def _times_resolved(expr: Expr | None, now: float) -> Expr | None:
    """``ts`` compared with a string: the string read as a time (RFC 3339 or a duration back)."""
    if expr is None:
        return None
    if isinstance(expr, Compare):
        if expr.field == "ts" and isinstance(expr.value, str):
            moment = parse_time(expr.value, now)
            if moment is not None:
                return replace(expr, value=moment)
        return expr
    if isinstance(expr, Not):
        return Not(_times_resolved(expr.operand, now))  # type: ignore[arg-type]
    if isinstance(expr, And | Or):
        operands = tuple(_times_resolved(e, now) for e in expr.operands)
        return type(expr)(operands)  # type: ignore[arg-type]
    return expr


# -- reading ------------------------------------------------------------------------------------


class _Budget:
    """The deadline and the cancel flag, and what was scanned."""

    def __init__(self, deadline: float | None, cancel: threading.Event | None) -> None:
        self.deadline = deadline
        self.cancel = cancel
        self.scanned = 0
        self.started = time.monotonic()

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("the query was cancelled")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimedOut(
                f"the query ran past its deadline ({self.deadline - self.started:.3g} s): "
                "narrow it (SINCE, fewer sources, a LIMIT in the store's order)"
            )


@dataclass(frozen=True, slots=True)
class _Candidates:
    """The candidate lines of one block (after the block scan, SINCE and UNTIL), as arrays."""

    block: Block
    indices: np.ndarray  # int64, ascending
    runs: np.ndarray
    ms: np.ndarray  # each line's time (ms since the epoch)


def _candidate_blocks(
    refs: Sequence[BlockRef],
    stream: int | None,
    needle: bytes | None,
    since: float | None,
    until: float | None,
    descending: bool,
    budget: _Budget,
    after_id: int | None = None,
) -> Iterator[_Candidates]:
    """One process's blocks (newest first if ``descending``), each cut to the lines that pass
    the block scan (stream and ``needle``, cached on the block), ``after_id``, SINCE and UNTIL."""
    since_ms = None if since is None else first_ms_at_or_after(since)
    for ref in reversed(refs) if descending else refs:
        budget.check()
        block, n = ref.block, ref.n
        lo = 0
        if after_id is not None:
            lo = block.index_after_id(after_id, n)
            if lo >= n:
                continue
        if since_ms is not None:
            lo = max(lo, block.index_at_or_after_ms(max(since_ms - block.t0_ms, 0), n))
            if lo >= n:
                continue
        budget.scanned += n - lo
        found = block_matches(block, n, stream, needle)
        if lo:
            found = found[int(np.searchsorted(found, lo)) :]
        if not len(found):
            continue
        indices = found.astype(np.int64)
        runs = block.runs_of(indices)
        ms = block.t0_ms + block.run_times[runs].astype(np.int64)
        if until is not None:
            keep = (ms / 1000.0) < until
            indices, runs, ms = indices[keep], runs[keep], ms[keep]
            if not len(indices):
                continue
        yield _Candidates(block, indices, runs, ms)


def _process_lines(
    process: str,
    refs: Sequence[BlockRef],
    stream: int | None,
    needles: list[bytes],
    since: float | None,
    until: float | None,
    descending: bool,
    budget: _Budget,
    after_id: int | None = None,
) -> Iterator[tuple[int, LineRow]]:
    """``(id, row)`` of one process's candidate lines, in id order (or reversed), a block at a
    time: the block scan (stream, longest needle), then time and the other needles per line."""
    others = needles[1:]
    for candidates in _candidate_blocks(
        refs, stream, needles[0] if needles else None, since, until, descending, budget, after_id
    ):
        block, indices, runs, ms = (
            candidates.block,
            candidates.indices,
            candidates.runs,
            candidates.ms,
        )
        flags = block.run_flags[runs]
        ids = (
            block.run_ids[runs].astype(np.int64) + indices - block.run_starts[runs].astype(np.int64)
        )
        ends = block.ends[indices].astype(np.int64)
        starts = np.where(indices > 0, block.ends[np.maximum(indices - 1, 0)].astype(np.int64), 0)
        stops = ends - ((flags & FLAG_NO_NEWLINE) == 0)
        data = block.data
        if len(indices) >= _PER_LINE_COPY:
            base = int(starts[0])
            chunk = data[base : int(ends[-1])].tobytes()
            pieces: Iterator[bytes] | list[bytes] = map(
                chunk.__getitem__, map(slice, (starts - base).tolist(), (stops - base).tolist())
            )
        else:
            pieces = [
                data[s:e].tobytes() for s, e in zip(starts.tolist(), stops.tolist(), strict=True)
            ]
        batch: Iterable[tuple[int, int, int, int, bytes]] = zip(
            indices.tolist(), ids.tolist(), ms.tolist(), flags.tolist(), pieces, strict=True
        )
        if descending:
            batch = reversed(list(batch))
        for index, line_id, line_ms, line_flags, raw in batch:
            if others and not all(needle in raw for needle in others):
                continue
            yield line_id, LineRow(process, block, index, line_id, line_ms, line_flags, raw)


def _count_by_bucket(
    query: Query,
    snapshot: StoreSnapshot,
    resolve: Callable[[str], list[str]],
    sink: _Groups,
    budget: _Budget,
) -> None:
    """``count(*)`` alone, by a time bucket or over everything, with no WHERE: counted per block
    from the lines' times with numpy (no line is read). The same buckets as the row by row path:
    ``floor(ts / bucket) * bucket`` computed in float64 alike."""
    bucket = query.group_by[0].bucket if query.group_by else None
    for name, stream in _processes(query, snapshot, resolve).items():
        if name not in snapshot.processes:
            continue
        wanted = None if stream == _ALL_STREAMS else stream
        for candidates in _candidate_blocks(
            snapshot.processes[name].blocks, wanted, None, query.since, query.until, False, budget
        ):
            if bucket is None:
                sink.add_counts({(): ([], len(candidates.indices))})
                continue
            starts = np.floor((candidates.ms / 1000.0) / bucket) * bucket
            values, counts = np.unique(starts, return_counts=True)
            sink.add_counts(
                {
                    (value,): ([value], count)
                    for value, count in zip(values.tolist(), counts.tolist(), strict=True)
                }
            )


def _counts_only(query: Query) -> bool:
    """Whether ``_count_by_bucket`` answers ``query``: count(*) columns only, no WHERE, and a
    GROUP BY of at most one time bucket."""
    return (
        query.where is None
        and bool(query.columns)
        and all(c.aggregate == "count" and c.field == "*" for c in query.columns)
        and (
            not query.group_by
            or (len(query.group_by) == 1 and query.group_by[0].bucket is not None)
        )
    )


def _event_rows(
    journal: Journal,
    cheap: _Cheap,
    since: float | None,
    until: float | None,
    descending: bool,
    budget: _Budget,
) -> Iterator[tuple[int, EventRow]]:
    """``(seq, row)`` of the candidate events, in seq order (or reversed), EVENTS_CHUNK slots
    at a time: node, stream and time filtered on the slots before any record is read."""
    tail, head = journal.bounds()
    starts = range(tail, head, EVENTS_CHUNK)
    for start in reversed(starts) if descending else starts:
        budget.check()
        batch = journal.read_slots(start, min(start + EVENTS_CHUNK, head))
        budget.scanned += len(batch.seqs)
        keep = matching(batch.slots, cheap.node, cheap.event_stream)
        if since is not None or until is not None:
            seconds = (batch.slots["lamport"] >> np.uint64(COUNTER_BITS)).astype(np.int64) / 1000.0
            if since is not None:
                keep &= seconds >= since
            if until is not None:
                keep &= seconds < until
        events = journal.read_events(batch.seqs[keep])
        if descending:
            events.reverse()
        for event in events:
            if cheap.needles and not all(n in event.payload for n in cheap.needles):
                continue
            yield event.seq, EventRow(event)


def default_resolver(names: Sequence[str]) -> Callable[[str], list[str]]:
    """Sources as names of ``names``: a name, its instances (``web`` → ``web.1``...), a glob."""

    def resolve(source: str) -> list[str]:
        found = [
            n
            for n in names
            if n == source or n.startswith(source + ".") or fnmatch.fnmatchcase(n, source)
        ]
        if not found:
            raise NoSuchProcess(source, list(names))
        return found

    return resolve


def _processes(
    query: Query, snapshot: StoreSnapshot, resolve: Callable[[str], list[str]]
) -> dict[str, int]:
    """Each process the sources name, with the one stream asked for (or _ALL_STREAMS)."""
    chosen: dict[str, int] = {}

    def add(name: str, stream: int) -> None:
        previous = chosen.get(name)
        chosen[name] = stream if previous is None or previous == stream else _ALL_STREAMS

    for source in query.sources:
        if source.name == "*":
            for name in snapshot.processes:
                add(name, _ALL_STREAMS)
            continue
        try:
            names, stream = resolve(source.name), _ALL_STREAMS
        except NoSuchProcess:
            base, _, suffix = source.name.rpartition(".")
            if not base or suffix not in STREAM_NAMES:
                raise
            names, stream = resolve(base), STREAM_NAMES.index(suffix)
        for name in names:
            add(name, stream)
    return chosen


# -- sinks --------------------------------------------------------------------------------------


class _Rows:
    """Rows in the order they come (the store's or the journal's): stops at OFFSET + LIMIT."""

    def __init__(self, columns: list[str], query: Query, max_rows: int) -> None:
        self.columns = columns
        self.skip = query.offset
        self.room = query.limit if query.limit is not None else max_rows
        self.capped = query.limit is None or query.limit > max_rows
        self.room = min(self.room, max_rows)
        self.rows: list[list[Any]] = []
        self.bytes = 0
        self.truncated = False

    def add(self, row: Row) -> bool:
        """Take a matching row; False when no more are wanted."""
        if self.skip:
            self.skip -= 1
            return True
        if len(self.rows) >= self.room:
            self.truncated = self.capped
            return False
        cells = [cell(row, c) for c in self.columns]
        self.bytes += _size(cells)
        if self.bytes > MAX_REPLY_BYTES and self.rows:
            self.truncated = True
            return False
        self.rows.append(cells)
        return True

    def finish(self) -> tuple[list[list[Any]], bool]:
        return self.rows, self.truncated


class _Sorted:
    """The first OFFSET + LIMIT rows by ORDER BY: at most twice that many held, then pruned."""

    def __init__(self, columns: list[str], query: Query, max_rows: int) -> None:
        self.columns = columns
        assert query.order_by is not None
        self.key_field = query.order_by
        self.descending = query.descending
        self.limit = min(query.limit if query.limit is not None else max_rows, max_rows)
        self.capped = query.limit is None or query.limit > max_rows
        self.offset = query.offset
        self.keep = self.offset + self.limit
        if self.keep > MAX_SORTED:
            raise InvalidRequest(
                f"OFFSET + LIMIT of a sorted query is {self.keep} (at most {MAX_SORTED})"
            )
        self.held: list[tuple[Any, int, list[Any], int]] = []  # key, id, cells, their size
        self.bytes = 0
        self.matched = 0

    def add(self, row: Row) -> bool:
        self.matched += 1
        key = sort_key(row.get(self.key_field))
        cells = [cell(row, c) for c in self.columns]
        size = _size(cells)
        self.held.append((key, row.id, cells, size))
        self.bytes += size
        if len(self.held) >= 2 * self.keep + 64 or self.bytes > MAX_SORT_BYTES:
            self._prune()
            if self.bytes > MAX_SORT_BYTES:
                raise InvalidRequest(
                    f"the {self.keep} rows this sort keeps take more than {MAX_SORT_BYTES >> 20} "
                    "MiB: select fewer or narrower columns, or a lower LIMIT"
                )
        return True

    def _prune(self) -> None:
        pick = heapq.nlargest if self.descending else heapq.nsmallest
        self.held = pick(self.keep, self.held, key=lambda item: (item[0], item[1]))
        self.bytes = sum(item[3] for item in self.held)

    def finish(self) -> tuple[list[list[Any]], bool]:
        self._prune()
        rows: list[list[Any]] = []
        size = 0
        for item in self.held[self.offset : self.offset + self.limit]:
            size += item[3]
            if size > MAX_REPLY_BYTES and rows:
                return rows, True
            rows.append(item[2])
        return rows, self.capped and self.matched - self.offset > self.limit


class _Accumulator:
    __slots__ = ("count", "high", "low", "numbers", "total")

    def __init__(self) -> None:
        self.count = 0  # rows that have the field (count(*): every row)
        self.numbers = 0  # of which numeric
        self.total: float = 0
        self.low: float | None = None
        self.high: float | None = None


class _Groups:
    """GROUP BY: one accumulator row per group, at most MAX_GROUPS groups."""

    def __init__(self, columns: list[Column], query: Query, max_rows: int) -> None:
        self.query = query
        self.columns = columns
        self.max_rows = max_rows
        self.groups: dict[tuple[Any, ...], tuple[list[Any], list[_Accumulator]]] = {}
        self.aggregated = [(i, c) for i, c in enumerate(columns) if c.aggregate]
        self.counts_only = all(c.field == "*" for _, c in self.aggregated)

    def _key(self, row: Row) -> tuple[tuple[Any, ...], list[Any]]:
        key: list[Any] = []
        shown: list[Any] = []
        for group in self.query.group_by:
            if group.bucket is not None:
                start = math.floor(row.get("ts") / group.bucket) * group.bucket
                key.append(start)
                shown.append(start)
            else:
                assert group.field is not None
                value = row.get(group.field)
                value = None if value is MISSING else value
                key.append(group_key(value))
                shown.append(value)
        return tuple(key), shown

    def _entry(
        self, key: tuple[Any, ...], shown: list[Any]
    ) -> tuple[list[Any], list[_Accumulator]]:
        entry = self.groups.get(key)
        if entry is None:
            if len(self.groups) >= MAX_GROUPS:
                raise InvalidRequest(
                    f"GROUP BY made more than {MAX_GROUPS} groups: group by fewer values "
                    "(a coarser time bucket, a narrower WHERE or SINCE)"
                )
            entry = self.groups[key] = (shown, [_Accumulator() for _ in self.aggregated])
        return entry

    def add_counts(self, counts: dict[tuple[Any, ...], tuple[list[Any], int]]) -> None:
        """Rows counted elsewhere (``_count_by_bucket``): every column is count(*)."""
        for key, (shown, count) in counts.items():
            for accumulator in self._entry(key, shown)[1]:
                accumulator.count += count

    def add(self, row: Row) -> bool:
        key, shown = self._key(row)
        entry = self._entry(key, shown)
        if self.counts_only:  # count(*) alone: no field to read
            for accumulator in entry[1]:
                accumulator.count += 1
            return True
        for accumulator, (_, column) in zip(entry[1], self.aggregated, strict=True):
            if column.field == "*":
                accumulator.count += 1
                continue
            value = row.get(column.field)
            if value is MISSING:
                continue
            accumulator.count += 1
            number = as_number(value)
            if number is None or math.isinf(number):
                continue
            accumulator.numbers += 1
            accumulator.total += number
            if accumulator.low is None or number < accumulator.low:
                accumulator.low = number
            if accumulator.high is None or number > accumulator.high:
                accumulator.high = number
        return True

    def finish(self, names: list[str]) -> tuple[list[list[Any]], bool]:
        query = self.query
        if not query.group_by and not self.groups:
            self.groups[()] = ([], [_Accumulator() for _ in self.aggregated])
        group_names = [g.field if g.field is not None else "ts" for g in query.group_by]
        rows: list[tuple[list[Any], list[Any]]] = []  # (sort values, output row)
        for shown, accumulators in self.groups.values():
            values: dict[str, Any] = {}
            for name, value, group in zip(group_names, shown, query.group_by, strict=True):
                values[name] = format_time(value) if group.bucket is not None else value
            for accumulator, (_, column) in zip(accumulators, self.aggregated, strict=True):
                values[column.name] = _aggregate(column.aggregate or "", accumulator)
            rows.append((shown, [values.get(name) for name in names]))
        if query.order_by is not None:
            if query.order_by not in names:
                raise InvalidRequest(
                    f"ORDER BY {query.order_by}: a grouped query is ordered by one of its "
                    f"columns ({', '.join(names)})"
                )
            at = names.index(query.order_by)
            rows.sort(
                key=lambda item: (sort_key(item[1][at]), [sort_key(v) for v in item[0]]),
                reverse=query.descending,
            )
        else:
            rows.sort(key=lambda item: [sort_key(v) for v in item[0]])
        limit = min(query.limit if query.limit is not None else self.max_rows, self.max_rows)
        capped = query.limit is None or query.limit > self.max_rows
        picked = rows[query.offset : query.offset + limit]
        return [row for _, row in picked], capped and len(rows) - query.offset > limit


def _aggregate(name: str, accumulator: _Accumulator) -> Any:
    if name == "count":
        return accumulator.count
    if not accumulator.numbers:
        return None
    if name == "sum":
        return accumulator.total
    if name == "avg":
        return accumulator.total / accumulator.numbers
    return accumulator.low if name == "min" else accumulator.high


# -- the executor -------------------------------------------------------------------------------


def output_columns(query: Query, events: bool) -> list[str]:
    """The reply's columns: ``*`` as the source's fields; a grouped query's keys first."""
    if not query.columns:
        return list(EVENT_FIELDS if events else LINE_FIELDS)
    names = [c.name for c in query.columns]
    keys = [g.field if g.field is not None else "ts" for g in query.group_by]
    return [k for k in keys if k not in names] + names


def select_rows(
    query: Query,
    snapshot: StoreSnapshot | None = None,
    journal: Journal | None = None,
    *,
    resolve: Callable[[str], list[str]] | None = None,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
    now: float | None = None,
    descending: bool = False,
    after_id: int | None = None,
    budget: _Budget | None = None,
) -> Iterator[Row]:
    """The rows of ``query``'s sources that match its WHERE, SINCE and UNTIL, in the store's
    (or journal's) order, newest first if ``descending``; ``after_id``: only lines after it.
    Lazy: a reader that stops early reads no further (``logs --where`` and follows use this)."""
    budget = budget or _Budget(None if timeout is None else time.monotonic() + timeout, cancel)
    events = any(s.name == "events" for s in query.sources)
    where = _times_resolved(query.where, time.time() if now is None else now)
    predicate = compile_expr(where) if where is not None else None
    rows: Iterator[tuple[int, Row]]
    if events:
        if journal is None:
            raise ConsoleError(
                "this console receives no events: set udp in the [sequencer] section of the "
                "config, or start it with `lacrimosa up --udp HOST:PORT`"
            )
        cheap = cheap_filters(where, EVENT_FIELDS, events=True)
        rows = _event_rows(journal, cheap, query.since, query.until, descending, budget)
    else:
        if snapshot is None:
            raise ValueError("a query over processes needs a store snapshot")
        resolve = resolve or default_resolver(list(snapshot.processes))
        cheap = cheap_filters(where, LINE_FIELDS)
        streams: list[Iterator[tuple[int, Row]]] = []
        for name, stream in _processes(query, snapshot, resolve).items():
            if name not in snapshot.processes:
                continue
            wanted = None if stream == _ALL_STREAMS else stream
            if cheap.stream is not None:
                if wanted is not None and wanted != cheap.stream:
                    continue  # this process's lines asked for are on another stream
                wanted = cheap.stream
            refs = snapshot.processes[name].blocks
            streams.append(
                _process_lines(
                    name,
                    refs,
                    wanted,
                    cheap.needles,
                    query.since,
                    query.until,
                    descending,
                    budget,
                    after_id,
                )
            )
        if len(streams) == 1:  # in order already (merging one costs a call a line)
            rows = streams[0]
        else:
            rows = heapq.merge(*streams, key=lambda item: item[0], reverse=descending)
    cancel = budget.cancel
    for seen, (_, row) in enumerate(rows, 1):
        # The deadline every CHECK_EVERY rows; a cancel at every row (a reader is waiting).
        if seen % CHECK_EVERY == 0 or (cancel is not None and cancel.is_set()):
            budget.check()
        if predicate is None or predicate(row.get):
            yield row


def execute(
    query: Query,
    snapshot: StoreSnapshot | None = None,
    journal: Journal | None = None,
    *,
    resolve: Callable[[str], list[str]] | None = None,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
    max_rows: int = MAX_ROWS,
    now: float | None = None,
) -> Result:
    """Run ``query`` over ``snapshot`` (processes) or ``journal`` (FROM events).

    ``resolve`` turns a source name into process names (the console's ``select``: a type names
    its instances); ``timeout`` (seconds) and ``cancel`` stop it with TimedOut / Cancelled."""
    budget = _Budget(None if timeout is None else time.monotonic() + timeout, cancel)
    events = any(s.name == "events" for s in query.sources)
    names = output_columns(query, events)
    natural = _JOURNAL_ORDER if events else _STORE_ORDER
    sink: _Rows | _Sorted | _Groups
    if query.aggregated:
        sink = _Groups(list(query.columns), query, max_rows)
    elif query.order_by is None or query.order_by in natural:
        sink = _Rows(names, query, max_rows)
    else:
        sink = _Sorted(names, query, max_rows)
    descending = query.descending and query.order_by in natural
    if isinstance(sink, _Groups) and not events and snapshot is not None and _counts_only(query):
        resolve = resolve or default_resolver(list(snapshot.processes))
        _count_by_bucket(query, snapshot, resolve, sink, budget)
    else:
        for row in select_rows(
            query, snapshot, journal, resolve=resolve, now=now, descending=descending, budget=budget
        ):
            if not sink.add(row):
                break
    if isinstance(sink, _Groups):
        out, truncated = sink.finish(names)
    else:
        out, truncated = sink.finish()
    elapsed = (time.monotonic() - budget.started) * 1000
    return Result(names, out, budget.scanned, elapsed, truncated)
