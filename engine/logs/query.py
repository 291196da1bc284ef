"""The query layer: LogQuery filters a StoreSnapshot into a LogView of line references.

Stateless over snapshots: a LogView is built from a snapshot and a query, and answers "how many
lines match", "the i-th matching line" and "the last n" in the merged order of line ids (ids are
global, so merging several processes by id gives the order the console received their output).

Cost: range restrictions (after id, since) bisect the per-block runs (see logs/store.py). Predicates (stream,
substring) scan blocks with numpy and cache the matching indices (uint32, 4 bytes a match) on the
block itself, keyed by the predicate: lines below a block's published count never change, so a
cached result only ever needs extending by the lines appended since. The caches count in the
store's budget and are bounded there (LogStore.cache_scan). Re-querying a growing snapshot every frame therefore costs
what is new, not what is stored.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .store import CACHE_KEYS_PER_BLOCK, STREAM_MASK, Block, BlockRef, LogLine, StoreSnapshot

_LOWER = np.arange(256, dtype=np.uint8)
_LOWER[ord("A") : ord("Z") + 1] += 32
_NO_LINES = np.empty(0, dtype=np.uint32)
_NEAR_END_LINES = 1 << 16  # within this many lines of the end, LogView positions by partition


@dataclass(frozen=True, slots=True)
class LogQuery:
    """What to select. Every field narrows; the default selects everything."""

    processes: tuple[str, ...] | None = None  # None: all processes in the snapshot
    stream: int | None = None  # STDOUT, STDERR or SYSTEM; None: all
    after_id: int | None = None  # only lines with a larger id (for follow / paging)
    since: float | None = None  # unix time; only lines received at or after it
    contains: bytes | None = None  # substring; may not contain a newline
    ignore_case: bool = False  # ASCII case folding for `contains`
    # A WHERE expression of the query language (engine/dsl), as typed: Console.query answers a
    # query with one by a WhereView (dsl/where_view.py); a LogView cannot, and refuses it.
    where: str | None = None

    def __post_init__(self) -> None:
        if self.contains is not None and b"\n" in self.contains:
            raise ValueError("a substring filter cannot contain a newline")

    @property
    def predicate_key(self) -> tuple[int | None, bytes | None, bool] | None:
        needle = self.contains or None
        if self.stream is None and needle is None:
            return None
        return (self.stream, needle, self.ignore_case and needle is not None)


@dataclass(slots=True)
class _Segment:
    block: Block
    lo: int
    hi: int
    indices: np.ndarray | None  # matching line indices in [lo, hi), or None for all of them
    _ids: np.ndarray | None = None

    @property
    def count(self) -> int:
        return self.hi - self.lo if self.indices is None else len(self.indices)

    def index(self, k: int) -> int:
        return self.lo + k if self.indices is None else int(self.indices[k])

    def ids(self) -> np.ndarray:
        if self._ids is None:
            block = self.block
            self._ids = (
                block.ids_of(self.lo, self.hi)
                if self.indices is None
                else block.ids_at(self.indices)
            )
        return self._ids

    def last_ids(self, m: int) -> np.ndarray:
        """The ids of the last ``m`` lines of the segment (all of them if it has fewer)."""
        if self._ids is not None or m >= self.count:
            return self.ids()[-m:] if m else self.ids()[:0]
        if self.indices is None:
            return self.block.ids_of(self.hi - m, self.hi)
        return self.block.ids_at(self.indices[-m:])

    def count_le(self, v: int) -> int:
        """How many lines of the segment have an id <= v."""
        below = self.block.index_after_id(v, self.hi)  # lines of the block with ids <= v
        if self.indices is None:
            return min(max(below - self.lo, 0), self.hi - self.lo)
        return int(np.searchsorted(self.indices, below, side="left"))


class _ProcessSelection:
    """The matching lines of one process snapshot, as segments of blocks."""

    def __init__(self, process: str, segments: list[_Segment]) -> None:
        self.process = process
        self.segments = segments
        counts = np.fromiter((s.count for s in segments), dtype=np.int64, count=len(segments))
        self.cum = np.concatenate(([0], np.cumsum(counts)))
        self.total = int(self.cum[-1])
        self._first_ids: np.ndarray | None = None

    @property
    def first_ids(self) -> np.ndarray:
        """The id of each segment's first line: built when first needed (a tail never does)."""
        if self._first_ids is None:
            segments = self.segments
            self._first_ids = np.fromiter(
                (s.block.id_at(s.index(0)) for s in segments), dtype=np.int64, count=len(segments)
            )
        return self._first_ids

    def last_ids(self, m: int) -> np.ndarray:
        """The ids of the last ``m`` selected lines (all of them if there are fewer)."""
        pieces: list[np.ndarray] = []
        need = m
        for segment in reversed(self.segments):
            pieces.append(segment.last_ids(need))
            need -= len(pieces[-1])
            if need <= 0:
                break
        pieces.reverse()
        return np.concatenate(pieces)

    def locate(self, i: int) -> tuple[_Segment, int]:
        seg = int(np.searchsorted(self.cum, i, side="right")) - 1
        segment = self.segments[seg]
        return segment, segment.index(i - int(self.cum[seg]))

    def line(self, i: int) -> LogLine:
        segment, index = self.locate(i)
        return LogLine(self.process, segment.block, index)

    def id_at(self, i: int) -> int:
        segment, index = self.locate(i)
        return segment.block.id_at(index)

    def count_le(self, v: int) -> int:
        """How many selected lines have an id <= v."""
        seg = int(np.searchsorted(self.first_ids, v, side="right")) - 1
        if seg < 0:
            return 0
        return int(self.cum[seg]) + self.segments[seg].count_le(v)


def _scan_block(
    block: Block, start: int, stop: int, key: tuple[int | None, bytes | None, bool]
) -> np.ndarray:
    """Indices in [start, stop) of the lines of ``block`` matching the predicate ``key``."""
    stream, needle, icase = key
    mask = np.ones(stop - start, dtype=bool)
    if stream is not None:
        mask &= (block.flags_of(start, stop) & STREAM_MASK) == stream
    if needle:
        b0 = block.start_of(start)
        ends = block.ends[start:stop].astype(np.int64) - b0
        data = block.data[b0 : b0 + int(ends[-1])]
        pattern = np.frombuffer(needle, dtype=np.uint8)
        if icase:
            data = _LOWER[data]
            pattern = _LOWER[pattern]
        m = len(pattern)
        candidates = np.flatnonzero(data[: max(len(data) - m + 1, 0)] == pattern[0])
        for j in range(1, m):
            if not len(candidates):
                break
            candidates = candidates[data[candidates + j] == pattern[j]]
        # A match must end inside its line: pieces of a split line, or a flushed partial line,
        # lie next to the following piece with no newline between them.
        owner = np.searchsorted(ends, candidates, side="right")
        owner = owner[candidates + m <= ends[owner]]
        hits = np.zeros(stop - start, dtype=bool)
        hits[owner] = True
        mask &= hits
    found = np.flatnonzero(mask).astype(np.uint32)  # a block holds fewer than 2**32 lines
    found += start
    return found


def _matching(block: Block, n: int, key: tuple[int | None, bytes | None, bool]) -> np.ndarray:
    """Matching indices (uint32) among the first n lines, extending the block's cached result.

    The cache is the store's to bound (LogStore.cache_scan: counted in its budget); a block
    outside a store keeps its own, an evicted one none."""
    cached = block.scan_cache.get(key)
    scanned, found = cached if cached is not None else (0, _NO_LINES)
    if scanned < n:
        found = np.concatenate((found, _scan_block(block, scanned, n, key)))
        if block.store is not None:
            block.store.cache_scan(block, key, n, found)
        elif not block.evicted:
            if key not in block.scan_cache and len(block.scan_cache) >= CACHE_KEYS_PER_BLOCK:
                block.scan_cache.pop(next(iter(block.scan_cache)))
            block.scan_cache[key] = (n, found)
    elif scanned > n:
        found = found[: int(np.searchsorted(found, n))]
    return found


def block_matches(block: Block, n: int, stream: int | None, contains: bytes | None) -> np.ndarray:
    """The indices (uint32, ascending) among the first ``n`` lines of ``block`` on ``stream``
    and containing ``contains`` (either may be None: any), from the block's cached scan (for
    readers that walk blocks themselves, such as the query language's executor)."""
    if stream is None and not contains:
        return np.arange(n, dtype=np.uint32)
    return _matching(block, n, (stream, contains or None, False))


def first_ms_at_or_after(t: float) -> int:
    """The first whole millisecond whose line time (``ms / 1000``, as LogLine.time) is >= t."""
    ms = math.ceil(t * 1000)
    while (ms - 1) / 1000 >= t:  # t * 1000 rounded up past it
        ms -= 1
    while ms / 1000 < t:  # or fell short of it
        ms += 1
    return ms


def _select(process: str, refs: tuple[BlockRef, ...], query: LogQuery) -> _ProcessSelection:
    key = query.predicate_key
    since_ms = None if query.since is None else first_ms_at_or_after(query.since)
    segments: list[_Segment] = []
    for ref in refs:
        block, hi = ref.block, ref.n
        lo = 0
        if query.after_id is not None:
            lo = block.index_after_id(query.after_id, hi)
            if lo >= hi:
                continue
        if since_ms is not None:
            lo = max(lo, block.index_at_or_after_ms(max(since_ms - block.t0_ms, 0), hi))
            if lo >= hi:
                continue
        indices = None
        if key is not None:
            indices = _matching(block, hi, key)
            indices = indices[int(np.searchsorted(indices, lo)) :]
            if not len(indices):
                continue
        if hi > lo:
            segments.append(_Segment(block, lo, hi, indices))
    return _ProcessSelection(process, segments)


class LogView:
    """The lines of a snapshot that match a query, in id order, as references (no copies)."""

    def __init__(self, snapshot: StoreSnapshot, query: LogQuery | None = None) -> None:
        self.query = query = query or LogQuery()
        if query.where is not None:
            raise ValueError("a LogView cannot filter by a WHERE expression (see Console.query)")
        names = list(snapshot.processes) if query.processes is None else query.processes
        parts = [
            _select(n, snapshot.processes[n].blocks, query)
            for n in names
            if n in snapshot.processes
        ]
        self._parts = [p for p in parts if p.total]
        self._total = sum(p.total for p in self._parts)

    def __len__(self) -> int:
        return self._total

    def line(self, i: int) -> LogLine:
        return self.lines(i, i + 1)[0]

    def position_of(self, line_id: int) -> int:
        """How many matching lines come before the line with this id (its position, if it
        matches): lets a reader keep its place when old lines are evicted under it."""
        return sum(p.count_le(line_id - 1) for p in self._parts)

    def tail(self, n: int) -> list[LogLine]:
        return self.lines(max(self._total - n, 0), self._total)

    def lines(self, start: int, stop: int) -> list[LogLine]:
        """Matching lines with positions in [start, stop) of the merged order."""
        start = max(start, 0)
        stop = min(stop, self._total)
        if start >= stop:
            return []
        parts = self._parts
        if len(parts) == 1:
            part = parts[0]
            return [part.line(i) for i in range(start, stop)]
        return list(self._merge_from(self._positions_at(start), stop - start))

    def batches(self, start: int, stop: int, limit: int) -> Iterator[tuple[str, Block, np.ndarray]]:
        """The matching lines at positions [start, stop), in order, as ``(process, block, line
        indices)`` of at most ``limit`` lines each: for bulk readers that work on a block's bytes
        and offsets, not on line objects. One process: cut from its segments, no per-line work;
        the merged view of several: merged line by line, grouped by block."""
        start = max(start, 0)
        stop = min(stop, self._total)
        if start >= stop:
            return
        parts = self._parts
        if len(parts) == 1:
            part = parts[0]
            seg = int(np.searchsorted(part.cum, start, side="right")) - 1
            k = start - int(part.cum[seg])
            left = stop - start
            while left > 0:
                segment = part.segments[seg]
                take = min(segment.count - k, left, limit)
                if segment.indices is None:
                    lo = segment.lo + k
                    indices = np.arange(lo, lo + take, dtype=np.int64)
                else:
                    indices = segment.indices[k : k + take]
                yield part.process, segment.block, indices
                left -= take
                k += take
                if k == segment.count:
                    seg += 1
                    k = 0
            return
        batch: list[int] = []
        current: tuple[str, Block] | None = None
        for line in self._merge_from(self._positions_at(start), stop - start):
            key = (line.process, line.block)
            if current is not None and (key[1] is not current[1] or len(batch) >= limit):
                yield current[0], current[1], np.array(batch, dtype=np.int64)
                batch = []
            current = key
            batch.append(line.index)
        if current is not None:
            yield current[0], current[1], np.array(batch, dtype=np.int64)

    def __iter__(self) -> Iterator[LogLine]:
        return self._merge_from([0] * len(self._parts), self._total)

    def _positions_at(self, k: int) -> list[int]:
        """Per part, how many of its lines come before merged position k."""
        parts = self._parts
        back = self._total - k
        if back <= _NEAR_END_LINES:
            # Near the end (tail, follow mode): the k-th line is the back-th largest id among
            # each part's last `back` ids, so one partition replaces the binary search.
            tails = [p.last_ids(back) for p in parts]
            every = np.concatenate(tails)
            threshold = np.partition(every, len(every) - back)[len(every) - back]
            return [
                p.total - int(np.count_nonzero(t >= threshold))
                for p, t in zip(parts, tails, strict=True)
            ]
        lo = min(int(p.first_ids[0]) for p in parts)
        hi = max(p.id_at(p.total - 1) for p in parts)
        # Smallest id v with at least k+1 selected lines <= v: that is the k-th line's id.
        while lo < hi:
            mid = (lo + hi) // 2
            if sum(p.count_le(mid) for p in parts) >= k + 1:
                hi = mid
            else:
                lo = mid + 1
        return [p.count_le(lo - 1) for p in parts]

    def _merge_from(self, positions: list[int], count: int) -> Iterator[LogLine]:
        parts = self._parts
        heap = [
            (p.id_at(pos), i)
            for i, (p, pos) in enumerate(zip(parts, positions, strict=False))
            if pos < p.total
        ]
        heapq.heapify(heap)
        positions = list(positions)
        while heap and count > 0:
            _, i = heapq.heappop(heap)
            part = parts[i]
            yield part.line(positions[i])
            count -= 1
            positions[i] += 1
            if positions[i] < part.total:
                heapq.heappush(heap, (part.id_at(positions[i]), i))
