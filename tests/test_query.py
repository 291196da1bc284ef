"""The query layer: LogQuery/LogView against a naive filter of the reference model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from logmodel import (
    GEOMETRY,
    MAX_LINE,
    PROCESSES,
    START_TIME,
    Harness,
    ModelLine,
    line_key,
    op_lists,
)

from lacrimosa.engine.logs import query as query_module
from lacrimosa.engine.logs.query import LogQuery, LogView
from lacrimosa.engine.logs.store import STDERR, STDOUT, SYSTEM, LogStore

NEAR_END_DEFAULT = query_module._NEAR_END_LINES

QUERY = st.fixed_dictionaries(
    {
        "processes": st.none()
        | st.lists(st.sampled_from((*PROCESSES, "ghost")), unique=True, max_size=3).map(tuple),
        "stream": st.none() | st.sampled_from([STDOUT, STDERR, SYSTEM]),
        "after_id": st.none() | st.integers(0, 120),
        # (which line's time, offset from it): at, just before, just after (sub-millisecond), later.
        "since": st.none()
        | st.tuples(st.floats(0, 1), st.sampled_from([-0.0006, 0.0, 0.0004, 0.001])),
        # Explicit bytes, or (process, where, before, after): bytes of one process's output around
        # the end of one of its lines, in the order its blocks hold them; so the needle often
        # straddles the cut between a piece without newline and the piece after it.
        "contains": st.none()
        | st.lists(st.sampled_from(b"aAbB\r\x00\xff\x1b"), max_size=3).map(bytes)
        | st.tuples(
            st.sampled_from(PROCESSES), st.floats(0, 1), st.integers(0, 3), st.integers(0, 3)
        ),
        "ignore_case": st.booleans(),
    }
)
WINDOWS = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=4)
TAILS = st.lists(st.integers(0, 60), max_size=3)


def make_query(spec: dict[str, Any], lines: list[ModelLine]) -> LogQuery:
    spec = dict(spec)
    if spec["since"] is not None:
        fraction, offset = spec["since"]
        times = sorted(line.time for line in lines) or [START_TIME]
        spec["since"] = times[int(fraction * (len(times) - 1))] + offset
    if isinstance(spec["contains"], tuple):
        process, fraction, before, after = spec["contains"]
        own = [line for line in lines if line.process == process]
        # Prefer the end of a piece without newline: that is where a needle can straddle.
        ends = [i for i, line in enumerate(own) if line.continued] or list(range(len(own)))
        needle = b""
        if ends:
            i = ends[int(fraction * (len(ends) - 1))]
            needle = own[i].content[len(own[i].content) - before :] if before else b""
            if own[i].continued and i + 1 < len(own):
                needle += own[i + 1].content[:after]
        spec["contains"] = needle
    return LogQuery(**spec)


def check_view(view: LogView, expected: list[ModelLine], windows: list, tails: list) -> None:
    keys = [line.key() for line in expected]
    assert len(view) == len(expected)
    assert [line_key(line) for line in view] == keys
    for start, stop in windows:
        assert [line_key(line) for line in view.lines(start, stop)] == keys[start:stop]
    for n in tails:
        assert [line_key(line) for line in view.tail(n)] == keys[max(len(keys) - n, 0) :]
    if keys:
        assert line_key(view.line(len(keys) - 1)) == keys[-1]


@settings(max_examples=150, deadline=None)
@given(
    ops=op_lists(min_size=4),
    max_line=MAX_LINE,
    geometry=GEOMETRY,
    queries=st.lists(QUERY, min_size=2, max_size=5),
    windows=WINDOWS,
    tails=TAILS,
)
def test_views_match_a_naive_filter_of_the_model(
    ops: list, max_line: int, geometry: tuple, queries: list, windows: list, tails: list
) -> None:
    """Queries re-run as the store grows (extending the per-block scan caches), then re-run on
    every older snapshot (whose blocks have since grown past what it sees)."""
    # Each query alone, and its substring part alone (so that the other filters, each drawn
    # independently, do not hide most of what the substring scan does).
    queries = queries + [
        {**spec, "processes": None, "stream": None, "after_id": None, "since": None}
        for spec in queries
        if spec["contains"] is not None
    ]
    with Harness(max_line, *geometry).running() as h:
        taken = []
        for op in [*ops, ("check",)]:
            if op[0] != "check":
                h.apply(op)
                continue
            snap = h.store.snapshot()
            lines = list(h.model.lines)
            for spec in queries:
                query = make_query(spec, lines)
                check_view(LogView(snap, query), h.model.select(query), windows, tails)
            taken.append((snap, lines))
        for snap, lines in taken:
            for spec in queries:
                query = make_query(spec, lines)
                check_view(LogView(snap, query), h.model.select(query, lines), windows, tails)


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.sampled_from(PROCESSES), st.integers(1, 40)), max_size=30),
    start=st.integers(0, 400),
    stop=st.integers(0, 400),
    n=st.integers(0, 400),
    near_end=st.sampled_from([0, 50, 1 << 16]),
)
def test_merged_slices_of_several_processes(
    sizes: list, start: int, stop: int, n: int, near_end: int
) -> None:
    """Many lines per process, interleaved in runs: slices bisect across processes by id.

    ``near_end`` moves the point where LogView switches from its binary search to the
    partition it uses near the end, so both ways of positioning are checked.
    """
    store = LogStore()
    expected = []
    for process, count in sizes:
        store.append(
            process,
            STDOUT,
            b"".join(b"%s %d\n" % (process.encode(), len(expected) + k) for k in range(count)),
        )
        expected += [
            (process, b"%s %d" % (process.encode(), len(expected) + k)) for k in range(count)
        ]
    view = LogView(store.snapshot())

    def pairs(lines: list) -> list:
        return [(line.process, bytes(line.content)) for line in lines]

    query_module._NEAR_END_LINES = near_end
    try:
        assert pairs(view.lines(start, stop)) == expected[start:stop]
        assert pairs(view.tail(n)) == expected[max(len(expected) - n, 0) :]
    finally:
        query_module._NEAR_END_LINES = NEAR_END_DEFAULT


# -- the cases the property test found, kept as plain examples ----------------------------------


def test_contains_does_not_match_across_the_pieces_of_a_split_line() -> None:
    store = LogStore(max_line_bytes=256)
    store.append("p", STDOUT, b"a" * 255 + b"XY" + b"b" * 10 + b"\n")  # "XY" straddles the cut
    assert [len(line.content) for line in LogView(store.snapshot())] == [256, 11]
    assert len(LogView(store.snapshot(), LogQuery(contains=b"XY"))) == 0
    assert len(LogView(store.snapshot(), LogQuery(contains=b"X"))) == 1
    assert len(LogView(store.snapshot(), LogQuery(contains=b"Yb"))) == 1


def test_contains_does_not_match_across_a_flushed_partial_and_the_next_line() -> None:
    store = LogStore()
    store.append("p", STDOUT, b"prompt> ", flush=True)
    store.append("p", STDERR, b"oops\n")
    matched = LogView(store.snapshot(), LogQuery(contains=b"> oops"))
    assert [bytes(line.content) for line in matched] == []
    icase = LogView(store.snapshot(), LogQuery(contains=b"PROMPT>", ignore_case=True))
    assert [bytes(line.content) for line in icase] == [b"prompt> "]


def test_since_compares_exact_times_not_truncated_milliseconds() -> None:
    store = LogStore()
    store.append("p", STDOUT, b"one\n")
    line = LogView(store.snapshot()).line(0)
    assert len(LogView(store.snapshot(), LogQuery(since=line.time))) == 1
    assert len(LogView(store.snapshot(), LogQuery(since=line.time + 0.0004))) == 0
    assert len(LogView(store.snapshot(), LogQuery(since=line.time - 0.0004))) == 1


def test_a_view_is_fixed_to_its_snapshot() -> None:
    store = LogStore()
    store.append("a", STDOUT, b"a1\na2\n")
    store.append("b", STDERR, b"b1 needle\n")
    view = LogView(store.snapshot(), LogQuery(contains=b"needle"))
    for i in range(2000):
        store.append("b", STDERR, b"more needle %d\n" % i)
    assert [bytes(line.content) for line in view] == [b"b1 needle"]
    assert len(LogView(store.snapshot(), LogQuery(contains=b"needle"))) == 2001


def test_filters_combine() -> None:
    store = LogStore()
    store.append("a", STDOUT, b"GET /health 200\nGET /api 500\n")
    store.append("b", STDERR, b"get lost\n")
    store.append("a", STDERR, b"Traceback: GET failed\n")
    store.append_system("a", "exited with code 1")
    first_id = LogView(store.snapshot()).line(0).id

    def texts(**kwargs: Any) -> list[bytes]:
        return [bytes(line.content) for line in LogView(store.snapshot(), LogQuery(**kwargs))]

    assert texts(contains=b"GET") == [b"GET /health 200", b"GET /api 500", b"Traceback: GET failed"]
    assert texts(contains=b"get", ignore_case=True, stream=STDERR) == [
        b"get lost",
        b"Traceback: GET failed",
    ]
    assert texts(processes=("a",), stream=SYSTEM) == [b"exited with code 1"]
    assert texts(after_id=first_id, processes=("a",), stream=STDOUT) == [b"GET /api 500"]
    assert texts(processes=("ghost",)) == []


def test_a_substring_with_a_newline_is_refused() -> None:
    with pytest.raises(ValueError):
        LogQuery(contains=b"two\nlines")


def test_views_read_the_shared_blocks_not_copies() -> None:
    store = LogStore()
    store.append("p", STDOUT, b"x\ny\nz\n")
    for line in LogView(store.snapshot(), LogQuery(contains=b"y")):
        assert line.content.obj is line.block.data


# -- bulk reads: a view's lines as bytes, a block slice at a time -------------------------------

# Bytes JSON copies unchanged, and every kind it does not: quote, backslash, controls, DEL, C1 as
# UTF-8 (U+0085), U+2028, valid non-ASCII, invalid UTF-8, a sequence cut by the line's end.
_HOSTILE = st.one_of(
    st.lists(st.sampled_from([b"a", b"Z ", b'"', b"\\", b"\n"]), max_size=20).map(b"".join),
    st.lists(
        st.sampled_from(
            [
                *(b"a", b"Z ", b'"', b"\\", b"\x00", b"\x1b[31m", b"\r", b"\x7f", b"\xc2\x85"),
                *(b"\xe2\x80\xa8", b"\xc3\xa9", b"\xff", b"\xe2\x82", b"\n", b"\n", b"\n"),
            ]
        ),
        max_size=30,
    ).map(b"".join),
)
_BULK_OP = st.one_of(
    st.tuples(
        st.just("append"),
        st.sampled_from(PROCESSES),
        st.sampled_from([STDOUT, STDERR]),
        _HOSTILE,
        st.sampled_from([0.0, 0.0, 0.001, 1.0]),
    ),
    st.tuples(
        st.just("flush"),
        st.sampled_from(PROCESSES),
        st.sampled_from([STDOUT, STDERR]),
        st.just(0.0),
    ),
)


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(_BULK_OP, min_size=1, max_size=30),
    max_line=MAX_LINE,
    geometry=GEOMETRY,
    limit=st.sampled_from([1, 3, 1024]),
    window=st.tuples(st.integers(0, 40), st.integers(0, 80)),
)
def test_bulk_bytes_are_the_per_line_forms_joined(
    ops: list, max_line: int, geometry: tuple, limit: int, window: tuple
) -> None:
    """``LogView.batches`` gives the lines ``lines`` gives, and the bulk text and JSON lines
    built from block slices are byte for byte what the per-line forms give."""
    from lacrimosa.api.bulk import jsonl_bytes, text_bytes
    from lacrimosa.api.protocol import line_to_dict
    from lacrimosa.engine.terminal_text import json_text

    with Harness(max_line, *geometry).running() as h:
        for op in ops:
            h.apply(op)
        snap = h.store.snapshot()
        for query in (
            LogQuery(),
            LogQuery(processes=("api",)),
            LogQuery(processes=("api",), stream=STDERR),
            LogQuery(contains=b"a"),
        ):
            view = LogView(snap, query)
            start, stop = window[0], window[0] + window[1]
            lines = view.lines(start, stop)
            batches = list(view.batches(start, stop, limit))
            assert all(0 < len(indices) <= limit for _, _, indices in batches)
            assert [
                (process, block, int(i)) for process, block, indices in batches for i in indices
            ] == [(line.process, line.block, line.index) for line in lines]
            text = b"".join(text_bytes(block, indices) for _, block, indices in batches)
            assert text == b"".join(bytes(line.content) + b"\n" for line in lines)
            jsonl = b"".join(jsonl_bytes(p, block, indices) for p, block, indices in batches)
            expected = "".join(json_text(line_to_dict(line)) + "\n" for line in lines)
            assert jsonl == expected.encode()


def test_grep_caches_are_compact_and_bounded_within_the_budget() -> None:
    from lacrimosa.engine.logs.store import LogStore

    store = LogStore(budget_bytes=16 << 20)
    for start in range(0, 3_000_000, 100_000):  # 3M short lines: more than the budget holds
        store.append("p", 0, b"".join(b"%d\n" % i for i in range(start, start + 100_000)))
    held = store.stats()["bytes"]
    for digit in b"0123456789ab":  # more filters than a block caches: every line matches some
        view = LogView(store.snapshot(), LogQuery(contains=bytes([digit])))
        assert len(view) or digit > ord("9")
    stats = store.stats()
    blocks = [ref.block for ref in store.snapshot().processes["p"].blocks]
    cached = sum(found.nbytes for b in blocks for _, found in b.scan_cache.values())
    assert all(found.dtype == np.uint32 for b in blocks for _, found in b.scan_cache.values())
    # Accounted exactly, bounded to an eighth of the budget, and inside the budget with the lines.
    assert cached == stats["cache_bytes"] <= stats["cache_budget_bytes"] == 2 << 20
    assert stats["bytes"] + stats["cache_bytes"] <= stats["budget_bytes"]
    assert stats["bytes"] >= held - (2 << 20) - 2 * (1 << 20)  # greps cost lines at most that
    # Before: an int64 per match per filter, outside the budget: tens of MiB here.
