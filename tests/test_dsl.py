"""The query language (engine/dsl): the parser's errors, every operator, the executor's reads of
real log stores (small blocks, so queries cross many) and of a real journal file, and its bounds."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lacrimosa.engine.dsl import execute, parse, parse_where
from lacrimosa.engine.dsl import executor as execute_module
from lacrimosa.engine.dsl.executor import _Sorted, format_time, select_rows
from lacrimosa.engine.dsl.syntax import Query
from lacrimosa.engine.dsl.where_view import WhereViews
from lacrimosa.engine.errors import Cancelled, InvalidRequest, QuerySyntaxError, TimedOut
from lacrimosa.engine.events.frames import COUNTER_BITS, TEXT
from lacrimosa.engine.events.journal import Journal
from lacrimosa.engine.logs import store as logstore
from lacrimosa.engine.logs.query import LogQuery, LogView
from lacrimosa.engine.logs.store import STDERR, STDOUT, LogStore

NOW = 1_800_000_000.0  # the fake clock's start (2027-01-15)

EXAMPLES = [
    'SELECT * FROM api, worker WHERE level = "error" AND msg CONTAINS "timeout" SINCE 5m LIMIT 50',
    "SELECT ts, process, msg FROM * WHERE status >= 500 ORDER BY ts DESC LIMIT 20",
    "SELECT * FROM events WHERE node = 3 AND stream = 7 SINCE 2026-11-23T10:00:00Z",
    "SELECT count(*) FROM api WHERE status >= 500 SINCE 1h GROUP BY 1m",
    'SELECT count(*), process FROM * WHERE stream = "stderr" GROUP BY process',
]


class Clock:
    """Stands in for the store's ``time`` module: lines get the times a test chooses."""

    def __init__(self) -> None:
        self.now = NOW

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(logstore, "time", fake)
    # Small blocks: a few hundred lines cross many blocks, as millions do at full size.
    monkeypatch.setattr(logstore, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(logstore, "BLOCK_LINES", 16)
    return fake


def api_line(i: int) -> bytes:
    record = {
        "level": "error" if i % 7 == 0 else "info",
        "msg": "upstream timeout" if i % 5 == 0 else "ok",
        "status": 200 + (i * 37) % 400,
        "http": {"path": f"/v1/{i % 3}", "ms": i % 50},
    }
    return (json.dumps(record) + "\n").encode()


@pytest.fixture
def store(clock: Clock) -> LogStore:
    """api: JSON lines (stdout), every 10th on stderr; worker: logfmt; web.1/web.2: plain.
    One line a second from NOW on, 300 of each."""
    logs = LogStore(budget_bytes=64 << 20, max_line_bytes=1024)
    for i in range(300):
        logs.append("api", STDERR if i % 10 == 0 else STDOUT, api_line(i))
        logs.append(
            "worker", STDOUT, f'level=info job={i} status="{500 + i % 3}" took=1.5\n'.encode()
        )
        logs.append(f"web.{1 + i % 2}", STDOUT, f"GET /index {i}\n".encode())
        clock.now += 1
    return logs


def run(store: LogStore, text: str, **options: Any) -> dict[str, Any]:
    return execute(parse(text, now=NOW + 300), store.snapshot(), now=NOW + 300, **options).to_dict()


# -- the parser ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", EXAMPLES)
def test_the_issues_examples_parse(text: str) -> None:
    query = parse(text)
    assert isinstance(query, Query) and query.sources


@pytest.mark.parametrize(
    ("text", "column", "expected"),
    [
        ("", 1, "SELECT"),
        ("SELEC * FROM api", 1, "SELECT"),
        ("SELECT FROM api", 8, "a field"),
        ("SELECT * api", 10, "FROM"),
        ("SELECT * FROM", 14, "a source"),
        ("SELECT * FROM api WHERE", 24, "a field name"),
        ("SELECT * FROM api WHERE status >=", 34, "a value"),
        ("SELECT * FROM api WHERE status >= AND", 35, "a value"),
        ('SELECT * FROM api WHERE status = "x', 34, "never closed"),
        ("SELECT * FROM api WHERE (a = 1", 31, "')'"),
        ("SELECT * FROM api WHERE a IN (1, 2", 35, "',' or ')'"),
        ("SELECT * FROM api WHERE a CONTAINS 3", 36, "a quoted string"),
        ('SELECT * FROM api WHERE a MATCHES "("', 35, "regular expression"),
        ("SELECT * FROM api WHERE a ~ 1", 27, "an operator"),
        ("SELECT * FROM api SINCE yesterday", 25, "a time"),
        ("SELECT * FROM api LIMIT -1", 25, "a whole number"),
        ("SELECT * FROM api LIMIT 5 LIMIT 6", 27, "each clause once"),
        ("SELECT * FROM api GROUP 1m", 25, "BY"),
        ("SELECT * FROM api ORDER BY", 27, "a field or an aggregate"),
        ("SELECT sum(*) FROM api", 12, "sum(*) is not defined"),
        ("SELECT process, count(*) FROM api", 8, "GROUP BY"),
        ("SELECT * FROM api GROUP BY 1m", 8, "aggregates"),
        ("SELECT * FROM api, events", 20, "events alone"),
        ("SELECT * FROM api trailing", 19, "WHERE, SINCE"),
        ("SELECT * FROM api WHERE a ! 1", 27, "'!' must be followed"),
        ("SELECT * FROM api WHERE a = 'x\\q'", 31, "unknown escape"),
    ],
)
def test_a_query_that_does_not_parse_says_where_and_what_was_expected(
    text: str, column: int, expected: str
) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse(text)
    error = caught.value
    assert error.position + 1 == column, error.message
    assert expected in error.message + " " + error.expected
    assert error.code == "query_syntax" and error.exit_code == 2


def test_nesting_and_length_are_bounded_with_a_syntax_error_not_a_crash() -> None:
    deep = "SELECT * FROM a WHERE " + "(" * 500 + "x = 1" + ")" * 500
    with pytest.raises(QuerySyntaxError, match="nested at most"):
        parse(deep)
    with pytest.raises(QuerySyntaxError, match="NOT"):
        parse("SELECT * FROM a WHERE " + "NOT " * 500 + "x = 1")
    with pytest.raises(QuerySyntaxError, match="at most 8192"):
        parse("SELECT * FROM a WHERE x = '" + "y" * 9000 + "'")
    with pytest.raises(QuerySyntaxError, match="at most 64 columns"):
        parse("SELECT " + ", ".join(["a"] * 65) + " FROM a")


def test_keywords_are_case_insensitive_and_backquotes_name_odd_fields() -> None:
    query = parse("select `order`, `x-y.z` from api where `order` exists limit 2 offset 1")
    assert [c.name for c in query.columns] == ["order", "x-y.z"]
    assert query.limit == 2 and query.offset == 1
    assert parse_where("a.b = 'x' or not c exists") is not None
    with pytest.raises(QuerySyntaxError, match="AND, OR or the end of the expression"):
        parse_where("a = 1 b")


def test_times_are_rfc3339_or_relative() -> None:
    query = parse(
        "SELECT * FROM a SINCE 2026-11-23T10:00:00Z UNTIL 2026-11-23T12:00:00+02:00", now=NOW
    )
    assert query.since == 1795428000.0 and query.until == query.since
    assert parse("SELECT * FROM a SINCE 90s", now=NOW).since == NOW - 90
    assert parse("SELECT * FROM a SINCE 2d", now=NOW).since == NOW - 2 * 86400
    assert parse("SELECT * FROM a SINCE '250ms'", now=NOW).since == NOW - 0.25


# -- every operator -----------------------------------------------------------------------------


def ids(store: LogStore, where: str, source: str = "api") -> list[int]:
    """Which api lines (by their i) match ``where``."""
    result = run(store, f"SELECT http.ms, status, msg FROM {source} WHERE {where}")
    return [row for row in result["rows"]]  # type: ignore[misc]


def matching_i(store: LogStore, where: str) -> set[int]:
    result = run(store, f"SELECT line FROM api WHERE {where}")
    lines = {json.dumps(json.loads(api_line(i))): i for i in range(300)}
    return {lines[json.dumps(json.loads(row[0]))] for row in result["rows"]}


@pytest.mark.parametrize(
    ("where", "predicate"),
    [
        ('level = "error"', lambda i: i % 7 == 0),
        ('level != "error"', lambda i: i % 7 != 0),
        ("status > 500", lambda i: 200 + (i * 37) % 400 > 500),
        ("status >= 500", lambda i: 200 + (i * 37) % 400 >= 500),
        ("status < 300", lambda i: 200 + (i * 37) % 400 < 300),
        ("status <= 300", lambda i: 200 + (i * 37) % 400 <= 300),
        ('status = "237"', lambda i: 200 + (i * 37) % 400 == 237),  # a number-like string
        ('msg CONTAINS "time"', lambda i: i % 5 == 0),
        ('msg STARTSWITH "up"', lambda i: i % 5 == 0),
        ('msg MATCHES "^o.$"', lambda i: i % 5 != 0),
        ('http.path IN ("/v1/0", "/v1/2")', lambda i: i % 3 != 1),
        ("http.ms IN (1, 2)", lambda i: i % 50 in (1, 2)),
        ("http.ms EXISTS", lambda i: True),
        ("nope EXISTS", lambda i: False),
        ("NOT nope EXISTS", lambda i: True),
        ("nope != 1", lambda i: False),  # a line without the field does not match
        ('msg NOT CONTAINS "time"', lambda i: i % 5 != 0),
        ('level = "error" AND status >= 400', lambda i: i % 7 == 0 and 200 + (i * 37) % 400 >= 400),
        ('level = "error" OR msg = "upstream timeout"', lambda i: i % 7 == 0 or i % 5 == 0),
        ('NOT (level = "error" OR status < 250)', lambda i: i % 7 and 200 + (i * 37) % 400 >= 250),
        ('stream = "stderr"', lambda i: i % 10 == 0),
        ('line CONTAINS "\\"level\\": \\"error\\""', lambda i: i % 7 == 0),
        ("id > 0 AND ts >= '2027-01-15T08:01:40Z'", lambda i: i >= 100),
        ("ts < '2027-01-15T08:01:40Z'", lambda i: i < 100),
    ],
)
def test_every_operator_selects_the_lines_it_means(
    store: LogStore, where: str, predicate: Any
) -> None:
    assert matching_i(store, where) == {i for i in range(300) if predicate(i)}


def test_logfmt_fields_and_number_like_strings_compare_as_numbers(store: LogStore) -> None:
    rows = run(store, "SELECT job, status FROM worker WHERE status >= 502 AND took < 2 LIMIT 3")
    assert rows["rows"] == [["2", "502"], ["5", "502"], ["8", "502"]]
    assert run(store, "SELECT count(*) FROM worker WHERE status = 501")["rows"] == [[100]]
    assert run(store, "SELECT max(status), sum(took) FROM worker")["rows"] == [[502, 450.0]]


def test_sources_name_processes_types_instances_streams_and_globs(store: LogStore) -> None:
    count = "SELECT count(*), process FROM {} GROUP BY process"
    assert run(store, count.format("web"))["rows"] == [[150, "web.1"], [150, "web.2"]]
    assert run(store, count.format("web.2"))["rows"] == [[150, "web.2"]]
    assert run(store, count.format("'w*'"))["rows"] == [
        [150, "web.1"],
        [150, "web.2"],
        [300, "worker"],
    ]
    assert run(store, count.format("api.stderr"))["rows"] == [[30, "api"]]
    assert run(store, count.format("api.stderr, api"))["rows"] == [[300, "api"]]
    assert len(run(store, count.format("*"))["rows"]) == 4
    with pytest.raises(InvalidRequest.__mro__[1], match="no such process"):
        run(store, count.format("nope"))


def test_since_until_order_limit_offset(store: LogStore) -> None:
    newest = run(store, "SELECT id, ts FROM api ORDER BY ts DESC LIMIT 2")
    assert newest["rows"][0][1] == format_time(NOW + 299) and newest["rows"][1][1] == format_time(
        NOW + 298
    )
    window = run(store, "SELECT ts FROM api SINCE 2027-01-15T08:00:10Z UNTIL 2027-01-15T08:00:13Z")
    assert [r[0] for r in window["rows"]] == [format_time(NOW + s) for s in (10, 11, 12)]
    assert run(store, "SELECT ts FROM api SINCE 5s")["rows"] == [
        [format_time(NOW + s)] for s in range(295, 300)
    ]
    paged = run(store, "SELECT status FROM api ORDER BY status DESC LIMIT 3 OFFSET 1")
    statuses = sorted((200 + (i * 37) % 400 for i in range(300)), reverse=True)
    assert [r[0] for r in paged["rows"]] == statuses[1:4]
    ascending = run(store, "SELECT http.ms FROM api ORDER BY http.ms LIMIT 4")
    assert [r[0] for r in ascending["rows"]] == [0, 0, 0, 0]


def test_group_by_a_time_bucket_and_fields_with_every_aggregate(store: LogStore) -> None:
    by_minute = run(store, "SELECT count(*) FROM api WHERE level = 'error' GROUP BY 1m")
    expected = {}
    for i in range(0, 300, 7):
        minute = format_time((NOW + i) // 60 * 60)
        expected[minute] = expected.get(minute, 0) + 1
    assert by_minute["columns"] == ["ts", "count(*)"]
    assert by_minute["rows"] == [[k, v] for k, v in sorted(expected.items())]
    stats = run(
        store,
        "SELECT level, count(*), count(nope), min(status), max(status), avg(http.ms), sum(http.ms) "
        "FROM api GROUP BY level ORDER BY count(*) DESC",
    )
    info = [i for i in range(300) if i % 7]
    assert stats["rows"][0] == [
        "info",
        len(info),
        0,
        min(200 + (i * 37) % 400 for i in info),
        max(200 + (i * 37) % 400 for i in info),
        sum(i % 50 for i in info) / len(info),
        sum(i % 50 for i in info),
    ]
    empty = run(store, "SELECT count(*), avg(status) FROM api WHERE nope EXISTS")
    assert empty["rows"] == [[0, None]]
    assert run(store, "SELECT count(*) FROM api WHERE nope EXISTS GROUP BY level")["rows"] == []


# -- cost and bounds ----------------------------------------------------------------------------


def test_a_limit_in_store_order_stops_early_and_cheap_filters_skip_blocks(store: LogStore) -> None:
    every = run(store, "SELECT id FROM api")
    assert every["scanned"] == 300 and len(every["rows"]) == 300
    first = run(store, "SELECT id FROM api LIMIT 3")
    assert len(first["rows"]) == 3 and first["scanned"] <= 32  # one or two blocks of 16
    last = run(store, "SELECT id FROM api ORDER BY id DESC LIMIT 3")
    assert last["scanned"] <= 32 and last["rows"] == [[r[0]] for r in every["rows"][-1:-4:-1]]


def test_only_lines_that_survive_the_block_scans_are_parsed(
    store: LogStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[bytes] = []
    original = execute_module.raw_fields

    def counting(raw: bytes, text: Any) -> dict[str, Any]:
        parsed.append(raw)
        return original(raw, text)

    monkeypatch.setattr(execute_module, "raw_fields", counting)
    result = run(store, 'SELECT count(*) FROM * WHERE msg = "upstream timeout"')
    assert result["rows"] == [[60]]
    assert len(parsed) == 60  # the other 1,140 lines never held the text: never parsed
    parsed.clear()
    run(store, "SELECT count(*) FROM * WHERE took EXISTS")
    assert len(parsed) == 300  # the key "took": only worker's lines


def test_reply_rows_are_bounded_and_say_truncated(store: LogStore) -> None:
    capped = run(store, "SELECT id FROM *", max_rows=50)
    assert len(capped["rows"]) == 50 and capped["truncated"] is True
    sorted_capped = run(store, "SELECT id FROM * ORDER BY status", max_rows=50)
    assert len(sorted_capped["rows"]) == 50 and sorted_capped["truncated"] is True
    asked = run(store, "SELECT id FROM * LIMIT 40", max_rows=50)
    assert len(asked["rows"]) == 40 and asked["truncated"] is False


def test_a_sort_holds_at_most_twice_its_limit() -> None:
    query = parse("SELECT n FROM a ORDER BY n DESC LIMIT 10")
    sink = _Sorted(["n"], query, 10_000)
    largest = 0

    class Row:
        def __init__(self, n: int) -> None:
            self.id = n
            self.n = n

        def get(self, name: str) -> Any:
            return self.n

    for n in range(100_000):
        sink.add(Row(n))  # type: ignore[arg-type]
        largest = max(largest, len(sink.held))
    assert largest <= 2 * 10 + 64
    assert sink.finish()[0] == [[n] for n in range(99_999, 99_989, -1)]
    with pytest.raises(InvalidRequest, match="OFFSET \\+ LIMIT"):
        _Sorted(["n"], parse("SELECT n FROM a ORDER BY n LIMIT 99999 OFFSET 2"), 10**6)


def test_group_by_past_its_bound_is_refused(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(execute_module, "MAX_GROUPS", 50)
    logs = LogStore(budget_bytes=64 << 20, max_line_bytes=1024)
    for i in range(60):
        logs.append("api", STDOUT, f"k={i}\n".encode())
    assert len(run(logs, "SELECT count(*), k FROM api WHERE k < 50 GROUP BY k")["rows"]) == 50
    with pytest.raises(InvalidRequest, match="more than 50 groups"):
        run(logs, "SELECT count(*), k FROM api GROUP BY k")


def test_a_deadline_or_a_cancel_stops_a_query(store: LogStore) -> None:
    with pytest.raises(TimedOut, match="deadline"):
        run(store, "SELECT * FROM *", timeout=0.0)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        run(store, "SELECT * FROM *", cancel=cancel)


def test_long_cells_are_cut(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logstore, "BLOCK_BYTES", 1 << 20)
    logs = LogStore(budget_bytes=64 << 20)
    logs.append("api", STDOUT, b"x" * 10_000 + b"\n")
    (cell,) = run(logs, "SELECT line FROM api")["rows"][0]
    assert len(cell) == execute_module.MAX_CELL_CHARS and cell.endswith("…")


def test_select_rows_after_an_id_reads_only_newer_lines(store: LogStore) -> None:
    query = parse("SELECT * FROM api WHERE level = 'error'")
    rows = list(select_rows(query, store.snapshot()))
    later = list(select_rows(query, store.snapshot(), after_id=rows[-3].id))
    assert [r.id for r in later] == [r.id for r in rows[-2:]]


# -- events -------------------------------------------------------------------------------------


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    opened = Journal(tmp_path / "events.journal", 256, 1 << 20)
    base = int(NOW * 1000) << COUNTER_BITS
    for node in (1, 2, 3):
        for stream in (7, 8):
            records = [
                json.dumps({"node": node, "n": i, "kind": "tick" if i % 2 else "tock"}).encode()
                for i in range(10)
            ]
            lamports = [
                base + ((node * 100 + stream * 10 + i) * 1000 << COUNTER_BITS) for i in range(10)
            ]
            opened.append_records(records, lamports, node=node, stream=stream, flags=TEXT)
    opened.append_records([b"plain text event"], [base + (10_000_000 << COUNTER_BITS)], flags=TEXT)
    yield opened
    opened.close()


def run_events(journal: Journal, text: str) -> dict[str, Any]:
    return execute(parse(text, now=NOW), None, journal, now=NOW).to_dict()


def test_events_are_queried_by_node_stream_time_and_payload_keys(journal: Journal) -> None:
    result = run_events(
        journal, "SELECT seq, node, stream, n, kind FROM events WHERE node = 3 AND stream = 7"
    )
    assert [row[1:4] for row in result["rows"]] == [[3, 7, i] for i in range(10)]
    assert result["columns"] == ["seq", "node", "stream", "n", "kind"]
    ticks = run_events(
        journal, "SELECT count(*), node FROM events WHERE kind = 'tick' GROUP BY node"
    )
    assert ticks["rows"] == [[10, 1], [10, 2], [10, 3]]
    since = format_time(NOW + 380)  # node 3, stream 8 from i = 0
    late = run_events(journal, f"SELECT n FROM events WHERE node = 3 SINCE {since}")
    assert [r[0] for r in late["rows"]] == list(range(10))
    newest = run_events(journal, "SELECT payload FROM events ORDER BY seq DESC LIMIT 1")
    assert newest["rows"] == [["plain text event"]]
    star = run_events(journal, "SELECT * FROM events WHERE payload CONTAINS 'plain'")
    assert star["columns"] == ["seq", "lamport", "ts", "node", "stream", "flags", "payload"]
    assert star["rows"][0][6] == "plain text event"


def test_events_without_a_journal_is_a_clear_error(store: LogStore) -> None:
    with pytest.raises(Exception, match="receives no events"):
        run(store, "SELECT * FROM events")


# -- the log view's ``?`` filter ---------------------------------------------------------------


def test_a_where_view_holds_the_newest_matches_and_reads_only_new_lines(
    store: LogStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    views = WhereViews(limit=10)
    query = LogQuery(processes=("api",), where='level = "error"')
    first = views.build(store.snapshot(), query, 'level = "error"')
    errors = [i for i in range(300) if i % 7 == 0]
    assert len(first) == 10  # the newest 10 of 43
    assert [json.loads(line.text)["status"] for line in first.lines(0, 10)] == [
        200 + (i * 37) % 400 for i in errors[-10:]
    ]
    assert first.position_of(first.line(3).id) == 3 and first.tail(2) == first.lines(8, 10)
    parsed: list[str] = []
    original = execute_module.raw_fields
    monkeypatch.setattr(
        execute_module, "raw_fields", lambda raw, text: parsed.append(raw) or original(raw, text)
    )
    for i in range(300, 310):
        store.append("api", STDOUT, api_line(i))
    second = views.build(store.snapshot(), query, 'level = "error"')
    assert len(parsed) == 2  # of the 10 new lines, the 2 holding "error"; none of the 300 old
    assert [line.id for line in second.lines(0, 10)] == [
        *[line.id for line in first.lines(2, 10)],
        *[line.id for line in second.lines(8, 10)],
    ]
    with pytest.raises(QuerySyntaxError):
        views.build(store.snapshot(), query, "level =")
    with pytest.raises(ValueError, match="WHERE"):
        LogView(store.snapshot(), query)


def test_a_reply_stops_at_its_byte_bound_and_says_truncated(
    store: LogStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(execute_module, "MAX_REPLY_BYTES", 8 << 10)
    plain = run(store, "SELECT line FROM api")
    assert plain["truncated"] is True and 0 < len(plain["rows"]) < 300
    assert sum(len(row[0]) for row in plain["rows"]) <= 8 << 10
    ordered = run(store, "SELECT line FROM api ORDER BY status DESC")
    assert ordered["truncated"] is True and len(ordered["rows"]) == len(plain["rows"])
