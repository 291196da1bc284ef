"""Fuzzers of the query language: the parser never raises anything but its syntax error (with a
position inside the text), and the executor gives the same answers as a naive reference that
reads every line one by one, on random stores (small blocks, several processes and streams)."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lacrimosa.engine.dsl import execute, parse
from lacrimosa.engine.dsl.executor import LineRow, _times_resolved, cell, output_columns
from lacrimosa.engine.dsl.syntax import Query
from lacrimosa.engine.dsl.values import MISSING, as_number, compile_expr, group_key, sort_key
from lacrimosa.engine.errors import LacrimosaError, QuerySyntaxError
from lacrimosa.engine.logs import store as logstore
from lacrimosa.engine.logs.query import LogView
from lacrimosa.engine.logs.store import STREAM_NAMES, LogStore, StoreSnapshot

NOW = 1_800_000_000.0
FUZZ = settings(
    max_examples=int(__import__("os").environ.get("DSL_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
VALID = [
    'SELECT * FROM api, worker WHERE level = "error" AND msg CONTAINS "timeout" SINCE 5m LIMIT 50',
    "SELECT ts, process, msg FROM * WHERE status >= 500 ORDER BY ts DESC LIMIT 20",
    "SELECT * FROM events WHERE node = 3 AND stream = 7 SINCE 2026-11-23T10:00:00Z",
    "SELECT count(*) FROM api WHERE status >= 500 SINCE 1h GROUP BY 1m",
    'SELECT count(*), process FROM * WHERE stream = "stderr" GROUP BY process',
    "SELECT a.b, max(x) FROM p1 WHERE NOT (a IN (1, 'x') OR b MATCHES '^z') GROUP BY a.b",
]


# -- the parser ---------------------------------------------------------------------------------


def check_parse(text: str) -> Query | None:
    try:
        return parse(text, now=NOW)
    except QuerySyntaxError as error:
        assert 0 <= error.position <= len(text)
        assert error.message
        return None


@FUZZ
@given(st.text(max_size=200))
def test_random_text_parses_or_fails_with_a_position(text: str) -> None:
    check_parse(text)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "cut"]))
        piece = draw(
            st.sampled_from(["(", ")", ",", "'", '"', "`", "*", "=", "!", " ", "NOT", "AND", "\\"])
            | st.text(max_size=3)
        )
        if kind == "insert":
            text = text[:at] + piece + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + 1 :]
        elif kind == "replace":
            text = text[:at] + piece + text[at + 1 :]
        else:
            text = text[:at]
    return text


@FUZZ
@given(mutated())
def test_mutated_queries_parse_or_fail_with_a_position_and_run_or_fail_cleanly(text: str) -> None:
    query = check_parse(text)
    if query is None or any(s.name == "events" for s in query.sources):
        return
    logs = LogStore(budget_bytes=64 << 20)
    for i in range(20):
        logs.append(
            "api", i % 2, f'{{"level": "error", "status": {500 + i}, "a": {{"b": {i}}}}}\n'.encode()
        )
        logs.append("p1", 0, f"x={i} a=z{i}\n".encode())
    with contextlib.suppress(LacrimosaError):  # a process that is not there...: the tree only
        execute(query, logs.snapshot(), now=NOW)


# -- the executor against a naive reference -----------------------------------------------------

PROCESSES = ("api", "worker", "web.1", "web.2")
LEVELS = ("error", "info", "warn", "ERROR")
FIELDS = ("level", "status", "msg", "a.b", "k", "ts", "id", "stream", "process", "line")


@st.composite
def a_line(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["json", "logfmt", "plain"]))
    status = draw(st.one_of(st.integers(100, 599), st.integers(100, 599).map(str), st.just("n/a")))
    level = draw(st.sampled_from(LEVELS))
    msg = draw(st.sampled_from(["upstream timeout", "ok", "time out", "a=b", 'x"y', "é timeout"]))
    if kind == "json":
        record: dict[str, Any] = {}
        if draw(st.booleans()):
            record["level"] = level
        if draw(st.booleans()):
            record["status"] = status
        if draw(st.booleans()):
            record["msg"] = msg
        if draw(st.booleans()):
            record["a"] = {"b": draw(st.integers(-3, 3))}
        return json.dumps(record, ensure_ascii=draw(st.booleans())).encode()
    if kind == "logfmt":
        return f'level={level} status={status} k={draw(st.integers(0, 5))} msg="{msg}"'.encode()
    return draw(st.sampled_from([b"plain timeout line", b"GET /index 200", b"\xff\xfe bad", b""]))


def a_value(field: str) -> st.SearchStrategy[str]:
    if field in ("status", "k", "a.b", "id"):
        return st.one_of(
            st.integers(-5, 600).map(str), st.sampled_from(['"500"', '"n/a"', "true", "null"])
        )
    return st.sampled_from(
        [
            '"error"',
            '"info"',
            '"ERROR"',
            '"ok"',
            '"upstream timeout"',
            '"stderr"',
            '"api"',
            "1",
            "true",
        ]
    )


@st.composite
def a_predicate(draw: st.DrawFn) -> str:
    field = draw(st.sampled_from([f for f in FIELDS if f != "ts"]))
    kind = draw(st.sampled_from(["compare", "text", "text", "in", "exists"]))
    if kind == "compare":
        op = draw(st.sampled_from(["=", "!=", ">", ">=", "<", "<="]))
        return f"{field} {op} {draw(a_value(field))}"
    if kind == "text":
        field = draw(st.sampled_from(["msg", "msg", "line", "level", field]))
        op = draw(st.sampled_from(["CONTAINS", "STARTSWITH", "MATCHES", "NOT CONTAINS"]))
        needle = draw(st.sampled_from(["time", "up", "o", "^u.*t$", "a=", "é", 'x\\"y', "é"]))
        return f'{field} {op} "{needle}"'
    if kind == "in":
        values = draw(st.lists(a_value(field), min_size=1, max_size=3))
        return f"{field} IN ({', '.join(values)})"
    return f"{field} {draw(st.sampled_from(['EXISTS', 'NOT EXISTS']))}"


def an_expression(depth: int = 2) -> st.SearchStrategy[str]:
    if depth == 0:
        return a_predicate()
    inner = an_expression(depth - 1)
    return st.one_of(
        a_predicate(),
        a_predicate(),
        st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        inner.map(lambda e: f"NOT {e}"),
    )


@st.composite
def a_query(draw: st.DrawFn) -> str:
    sources = draw(
        st.lists(
            st.sampled_from(["*", "api", "worker", "web", "web.2", "api.stderr", "worker.stdout"]),
            min_size=1,
            max_size=3,
        )
    )
    grouped = draw(st.booleans())
    parts = []
    if grouped:
        groups = draw(
            st.lists(
                st.sampled_from(["level", "process", "k", "5s", "1m"]), max_size=2, unique=True
            )
        )
        if sum(g in ("5s", "1m") for g in groups) > 1:
            groups = groups[:1]
        aggregates = draw(
            st.lists(
                st.sampled_from(
                    [
                        "count(*)",
                        "count(status)",
                        "min(status)",
                        "max(k)",
                        "avg(status)",
                        "sum(a.b)",
                    ]
                ),
                min_size=1,
                max_size=3,
            )
        )
        plain = [g for g in groups if g not in ("5s", "1m")]
        if plain:
            aggregates += draw(st.lists(st.sampled_from(plain), max_size=1))
        columns = ", ".join(aggregates)
        parts.append(f"SELECT {columns} FROM {', '.join(sources)}")
    else:
        columns = draw(
            st.one_of(
                st.just("*"),
                st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3).map(", ".join),
            )
        )
        parts.append(f"SELECT {columns} FROM {', '.join(sources)}")
    if draw(st.integers(0, 3)):
        # Mostly conditions ANDed at the top: what the block scans take their substrings from.
        conditions = draw(st.lists(an_expression(1), min_size=1, max_size=3))
        parts.append(f"WHERE {' AND '.join(conditions)}")
    if not draw(st.integers(0, 3)):
        parts.append(f"SINCE {draw(st.integers(1, 120))}s")
    if not draw(st.integers(0, 3)):
        parts.append(f"UNTIL {draw(st.integers(0, 120))}s")
    if grouped and groups:
        parts.append(f"GROUP BY {', '.join(groups)}")
    if draw(st.booleans()):
        if grouped:  # by one of its columns
            order = draw(st.sampled_from([c.strip() for c in columns.split(", ")]))
        else:
            order = draw(st.sampled_from(["ts", "id", "status", "level", "a.b", "line"]))
        parts.append(f"ORDER BY {order} {draw(st.sampled_from(['', 'ASC', 'DESC']))}")
    if draw(st.booleans()):
        parts.append(f"LIMIT {draw(st.integers(0, 30))}")
    if draw(st.booleans()):
        parts.append(f"OFFSET {draw(st.integers(0, 10))}")
    return " ".join(parts)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def time(self) -> float:
        return self.now


def reference(query: Query, snapshot: StoreSnapshot, max_rows: int) -> dict[str, Any]:
    """What the query means, read the slow way: every line, one at a time, in id order."""
    wanted: dict[str, set[int]] = {}
    names = list(snapshot.processes)
    for source in query.sources:
        matched = [n for n in names if source.name in ("*", n) or n.startswith(source.name + ".")]
        streams = {0, 1, 2}
        if not matched and source.name != "*":
            base, _, suffix = source.name.rpartition(".")
            matched = [n for n in names if base in ("*", n) or n.startswith(base + ".")]
            streams = {STREAM_NAMES.index(suffix)}
        for name in matched:
            wanted.setdefault(name, set()).update(streams)
    where = _times_resolved(query.where, NOW)
    predicate = compile_expr(where) if where is not None else None
    rows: list[LineRow] = []
    for line in LogView(snapshot):
        if line.stream not in wanted.get(line.process, ()):
            continue
        if query.since is not None and not line.time >= query.since:
            continue
        if query.until is not None and not line.time < query.until:
            continue
        ms = line.block.time_ms_at(line.index)
        row = LineRow(
            line.process,
            line.block,
            line.index,
            line.id,
            ms,
            line.block.flags_at(line.index),
            bytes(line.content),
        )
        if predicate is None or predicate(row.get):
            rows.append(row)
    columns = output_columns(query, False)
    limit = min(query.limit if query.limit is not None else max_rows, max_rows)
    capped = query.limit is None or query.limit > max_rows
    if not query.aggregated:
        if query.order_by is not None:
            rows.sort(
                key=lambda r: (sort_key(r.get(query.order_by)), r.id), reverse=query.descending
            )
        table = [[cell(r, c) for c in columns] for r in rows]
        picked = table[query.offset : query.offset + limit]
        return {
            "columns": columns,
            "rows": picked,
            "truncated": capped and len(table) - query.offset > limit,
        }
    groups: dict[tuple[Any, ...], tuple[list[Any], list[LineRow]]] = {}
    for row in rows:
        key, shown = [], []
        for group in query.group_by:
            if group.bucket is not None:
                value: Any = math.floor(row.get("ts") / group.bucket) * group.bucket
                key.append(value)
            else:
                value = row.get(group.field or "")
                value = None if value is MISSING else value
                key.append(group_key(value))
            shown.append(value)
        groups.setdefault(tuple(key), (shown, []))[1].append(row)
    if not query.group_by and not groups:
        groups[()] = ([], [])
    out = []
    for shown, members in groups.values():
        values: dict[str, Any] = {}
        for group, value in zip(query.group_by, shown, strict=True):
            if group.bucket is not None:
                values["ts"] = cell_time(value)
            else:
                values[group.field or ""] = value
        for column in query.columns:
            if not column.aggregate:
                continue
            present = [
                r.get(column.field)
                for r in members
                if column.field == "*" or r.get(column.field) is not MISSING
            ]
            numbers = [
                n for n in (as_number(v) for v in present) if n is not None and not math.isinf(n)
            ]
            if column.aggregate == "count":
                values[column.name] = len(present)
            elif not numbers:
                values[column.name] = None
            elif column.aggregate == "sum":
                values[column.name] = sum_in_order(numbers)
            elif column.aggregate == "avg":
                values[column.name] = sum_in_order(numbers) / len(numbers)
            else:
                values[column.name] = (min if column.aggregate == "min" else max)(numbers)
        out.append((shown, [values.get(c) for c in columns]))
    if query.order_by is not None:
        at = columns.index(query.order_by)
        out.sort(
            key=lambda item: (sort_key(item[1][at]), [sort_key(v) for v in item[0]]),
            reverse=query.descending,
        )
    else:
        out.sort(key=lambda item: [sort_key(v) for v in item[0]])
    picked = [row for _, row in out[query.offset : query.offset + limit]]
    return {
        "columns": columns,
        "rows": picked,
        "truncated": capped and len(out) - query.offset > limit,
    }


def sum_in_order(numbers: list[float]) -> float:
    """Left to right, as the executor adds (so the same float comes out)."""
    total: float = 0
    for n in numbers:
        total += n
    return total


def cell_time(seconds: float) -> str:
    from lacrimosa.engine.dsl import format_time

    return format_time(seconds)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    clock = Clock()
    monkeypatch.setattr(logstore, "time", clock)
    monkeypatch.setattr(logstore, "BLOCK_BYTES", 512)
    monkeypatch.setattr(logstore, "BLOCK_LINES", 8)
    yield clock


@FUZZ
@given(
    lines=st.lists(
        st.tuples(st.sampled_from(PROCESSES), st.integers(0, 1), a_line(), st.integers(0, 4)),
        max_size=80,
    ),
    text=a_query(),
    max_rows=st.sampled_from([5, 10_000]),
)
def test_the_executor_answers_as_the_naive_reference(
    small_blocks: Clock, lines: list[tuple[str, int, bytes, int]], text: str, max_rows: int
) -> None:
    small_blocks.now = NOW - 100
    logs = LogStore(budget_bytes=64 << 20, max_line_bytes=256)
    for name in PROCESSES:
        logs.add_process(name)
    for process, stream, data, step in lines:
        small_blocks.now += step
        logs.append(process, stream, data + b"\n")
    query = parse(text, now=NOW)
    snapshot = logs.snapshot()
    try:
        got = execute(query, snapshot, now=NOW, max_rows=max_rows).to_dict()
    except LacrimosaError:  # past a bound (too many rows to sort...): the reference has none
        return
    expected = reference(query, snapshot, max_rows)
    assert {k: got[k] for k in expected} == expected, text


TRICKY_VALUES = ['x"y', "é timeout", "a/b", "<b>&", "it's", "tab\there", "upstream timeout", "ok"]


@st.composite
def a_tricky_line(draw: st.DrawFn) -> bytes:
    """Values that JSON and logfmt writers escape (quotes, slashes, HTML, non-ASCII, tabs)."""
    value = draw(st.sampled_from(TRICKY_VALUES))
    kind = draw(st.sampled_from(["json", "json-ascii", "json-slash", "logfmt", "plain"]))
    if kind.startswith("json"):
        text = json.dumps({"msg": value, "n": draw(st.integers(0, 3))}, ensure_ascii=kind != "json")
        return (text.replace("/", "\\/") if kind == "json-slash" else text).encode()
    if kind == "logfmt":
        return ("msg=" + json.dumps(value, ensure_ascii=False) + " n=1").encode()
    return value.encode()


@FUZZ
@given(
    lines=st.lists(st.tuples(st.sampled_from(PROCESSES), a_tricky_line()), min_size=1, max_size=30),
    predicates=st.lists(
        st.tuples(
            st.sampled_from(["msg", "line", "n"]),
            st.sampled_from(["CONTAINS", "STARTSWITH", "=", "EXISTS"]),
            st.sampled_from([*TRICKY_VALUES, "time", "é", "/", '"', "&"]),
        ),
        min_size=1,
        max_size=2,
    ),
)
def test_the_block_scans_never_drop_a_match(
    small_blocks: Clock, lines: list[tuple[str, bytes]], predicates: list[tuple[str, str, str]]
) -> None:
    """The substrings the WHERE clause lends the block scans must be in every matching line's
    bytes, however its writer escaped the value: the same answers as the reference."""
    logs = LogStore(budget_bytes=64 << 20, max_line_bytes=256)
    for process, data in lines:
        logs.append(process, 0, data + b"\n")
    conditions = [
        f"{field} EXISTS" if op == "EXISTS" else f"{field} {op} {json.dumps(value)}"
        for field, op, value in predicates
    ]
    query = parse(f"SELECT id, line FROM * WHERE {' AND '.join(conditions)}", now=NOW)
    snapshot = logs.snapshot()
    got = execute(query, snapshot, now=NOW).to_dict()
    assert got["rows"] == reference(query, snapshot, 10_000)["rows"], conditions


@FUZZ
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(PROCESSES), st.integers(0, 1), st.integers(0, 40)), max_size=60
    ),
    sources=st.lists(st.sampled_from(["*", "api", "web", "worker.stderr"]), min_size=1, max_size=2),
    bucket=st.sampled_from(["", " GROUP BY 1s", " GROUP BY 7s", " GROUP BY 1m", " GROUP BY 250ms"]),
    since=st.sampled_from(["", " SINCE 90s", " SINCE 10s"]),
    until=st.sampled_from(["", " UNTIL 30s"]),
)
def test_counts_by_time_bucket_from_block_times_match_the_reference(
    small_blocks: Clock,
    steps: list[tuple[str, int, int]],
    sources: list[str],
    bucket: str,
    since: str,
    until: str,
) -> None:
    """``count(*)`` with no WHERE is counted from the blocks' times (no line read): the same
    buckets and counts as reading every line."""
    small_blocks.now = NOW - 100
    logs = LogStore(budget_bytes=64 << 20, max_line_bytes=256)
    for name in PROCESSES:
        logs.add_process(name)
    for process, stream, step in steps:
        small_blocks.now += step / 7
        logs.append(process, stream, b"x\n")
    text = f"SELECT count(*), count(*) FROM {', '.join(sources)}{since}{until}{bucket}"
    query = parse(text, now=NOW)
    snapshot = logs.snapshot()
    got = execute(query, snapshot, now=NOW).to_dict()
    assert {k: got[k] for k in ("columns", "rows")} == {
        k: v for k, v in reference(query, snapshot, 10_000).items() if k != "truncated"
    }, text
