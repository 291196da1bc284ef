"""A pure-Python reference model of the log store, and a harness that drives both side by side.

The model states the store's rules the plain way, one byte at a time, per (process, stream):

- a byte is added to the stream's pending piece;
- a newline ends the piece: a line whose content is the piece without its newline;
- a piece that reaches ``max_line`` bytes without a newline is stored as it is, flagged
  ``continued`` and counted in ``split_lines`` (so a line of exactly ``max_line`` bytes plus its
  newline becomes a full piece and then an empty line: the newline counts towards the limit);
- ``flush`` stores a non-empty pending piece, flagged ``continued`` (not counted as split);
- every stored piece takes the next global id; a system line is ``text + "\\n"``, same rules.

The harness (:class:`Harness`) shrinks the block geometry so that small generated inputs still
cross block boundaries, seal blocks and evict them, and replaces the store's
clock so that line times are known exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

from hypothesis import strategies as st

from lacrimosa.engine.logs import store as logstore
from lacrimosa.engine.logs.query import LogQuery
from lacrimosa.engine.logs.store import STDERR, STDOUT, SYSTEM, LogLine, LogSnapshot, LogStore

PROCESSES = ("api", "worker", "db")
START_TIME = 1_700_000_000.0


@dataclass(frozen=True)
class ModelLine:
    id: int
    process: str
    stream: int
    content: bytes
    continued: bool
    time: float

    def key(self) -> tuple[int, str, int, bytes, bool, float]:
        return (self.id, self.process, self.stream, self.content, self.continued, self.time)


def line_key(line: LogLine) -> tuple[int, str, int, bytes, bool, float]:
    """The same tuple for a stored line (content copied out only here, in the test)."""
    return (line.id, line.process, line.stream, bytes(line.content), line.continued, line.time)


class LogModel:
    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self.lines: list[ModelLine] = []
        self.next_id = 1
        self._pending: dict[tuple[str, int], bytearray] = {}
        # process -> [stdout lines, stderr lines, bytes stored, split pieces]
        self.counts: dict[str, list[int]] = {}

    def _emit(
        self, process: str, stream: int, piece: bytes, newline: bool, split: bool, now: float
    ) -> None:
        content = piece[:-1] if newline else piece
        ms = int(now * 1000)
        self.lines.append(
            ModelLine(self.next_id, process, stream, content, not newline, ms / 1000.0)
        )
        self.next_id += 1
        counts = self.counts.setdefault(process, [0, 0, 0, 0])
        if stream in (STDOUT, STDERR):
            counts[stream] += 1
        counts[2] += len(piece)
        counts[3] += split

    def append(self, process: str, stream: int, chunk: bytes, flush: bool, now: float) -> None:
        self.counts.setdefault(process, [0, 0, 0, 0])
        pending = (
            bytearray()
            if stream == SYSTEM
            else self._pending.setdefault((process, stream), bytearray())
        )
        for byte in chunk:
            pending.append(byte)
            if byte == 10:
                self._emit(process, stream, bytes(pending), True, False, now)
                pending.clear()
            elif len(pending) == self.max_line:
                self._emit(process, stream, bytes(pending), False, True, now)
                pending.clear()
        if flush and pending:
            self._emit(process, stream, bytes(pending), False, False, now)
            pending.clear()

    def has_partial(self, process: str, stream: int) -> bool:
        return bool(self._pending.get((process, stream)))

    def of(self, process: str) -> list[ModelLine]:
        return [line for line in self.lines if line.process == process]

    def select(self, query: LogQuery, lines: list[ModelLine] | None = None) -> list[ModelLine]:
        """The naive filter: what LogView must return, in id order (of ``lines``, default all)."""
        out = []
        for line in self.lines if lines is None else lines:
            if query.processes is not None and line.process not in query.processes:
                continue
            if query.stream is not None and line.stream != query.stream:
                continue
            if query.after_id is not None and line.id <= query.after_id:
                continue
            if query.since is not None and line.time < query.since:
                continue
            if query.contains:
                if query.ignore_case:
                    if query.contains.lower() not in line.content.lower():
                        continue
                elif query.contains not in line.content:
                    continue
            out.append(line)
        return out


class _Clock:
    def __init__(self) -> None:
        self.now = START_TIME

    def time(self) -> float:
        return self.now


class Harness:
    """A LogStore with a small block geometry and a fake clock, plus its model."""

    def __init__(
        self,
        max_line: int,
        block_bytes: int,
        block_lines: int,
        budget: int | None = None,
        small_append: int | None = None,
        scan: str = "native",
    ) -> None:
        self.clock = _Clock()
        # small_append=0 sends every append down the general path (newlines found by the scan).
        patches: dict[str, Any] = {} if small_append is None else {"SMALL_APPEND": small_append}
        if scan == "numpy":  # as where the C scan was not built
            patches["_newlines"] = None
        self._patches = mock.patch.multiple(
            logstore,
            BLOCK_BYTES=block_bytes,
            BLOCK_LINES=block_lines,
            time=self.clock,
            **patches,
        )
        self.block_bytes = block_bytes
        self.model = LogModel(max_line)
        self._budget = budget
        self.store: LogStore

    @contextlib.contextmanager
    def running(self) -> Iterator[Harness]:
        with self._patches:
            budget = self._budget if self._budget is not None else 1 << 30
            self.store = LogStore(budget_bytes=budget, max_line_bytes=self.model.max_line)
            yield self

    def apply(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind == "append":
            _, process, stream, chunk, step = op
            self.clock.now += step
            self.store.append(process, stream, chunk)
            self.model.append(process, stream, chunk, False, self.clock.now)
        elif kind == "flush":
            _, process, stream, step = op
            self.clock.now += step
            self.store.flush(process, stream)
            self.model.append(process, stream, b"", True, self.clock.now)
        elif kind == "system":
            _, process, text, step = op
            self.clock.now += step
            self.store.append_system(process, text)
            self.model.append(process, SYSTEM, text.encode() + b"\n", False, self.clock.now)


def snapshot_lines(snapshot: LogSnapshot) -> list[LogLine]:
    """Every line a process snapshot holds, read from its blocks directly (no query layer)."""
    return [
        LogLine(snapshot.process, ref.block, i) for ref in snapshot.blocks for i in range(ref.n)
    ]


# -- strategies ----------------------------------------------------------------------------------

# Newline-rich bytes, plus arbitrary bytes (invalid UTF-8, NUL, \r, ESC all welcome).
_BYTES = st.one_of(
    st.binary(max_size=24),
    st.lists(st.sampled_from(b"aAbB\n\n\r\x00\x1b\xff"), max_size=40).map(bytes),
)
# Clock steps: same millisecond, under a millisecond, a few milliseconds, a second.
_STEPS = st.sampled_from([0.0, 0.0, 0.0004, 0.001, 0.0025, 1.0])
_PROCESS = st.sampled_from(PROCESSES)
_STREAM = st.sampled_from([STDOUT, STDERR])

_OP = st.one_of(
    st.tuples(st.just("append"), _PROCESS, _STREAM, _BYTES, _STEPS),
    st.tuples(st.just("append"), _PROCESS, _STREAM, _BYTES, _STEPS),
    st.tuples(st.just("flush"), _PROCESS, _STREAM, _STEPS),
    st.tuples(st.just("system"), _PROCESS, st.text("xyZ \t", max_size=20), _STEPS),
    st.just(("check",)),
)


def op_lists(min_size: int = 0) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    """Sequences of appends, flushes, system lines and checkpoints ("check")."""
    return st.lists(_OP, min_size=min_size, max_size=40)


# (block bytes, block lines): tiny blocks, and the real ones.
GEOMETRY = st.sampled_from([(64, 4), (256, 16), (logstore.BLOCK_BYTES, logstore.BLOCK_LINES)])
MAX_LINE = st.integers(min_value=1, max_value=16)
