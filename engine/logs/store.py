"""The block log store: per-process lines in fixed-capacity blocks, zero-copy snapshots.

Model (see DESIGN.md, "The log store"):

- Each process owns a list of blocks. A block is one contiguous byte buffer (the lines exactly as
  written, newlines included) plus compact metadata in numpy arrays: per line only its end offset
  (u32); the rest per *run*, a stretch of lines appended together (one read chunk of one pipe
  shares its receive time and stream, and takes consecutive ids): the run's first line index
  (u32), first global id (u64), milliseconds since the block opened (u32) and flags (u8: stream,
  no-newline). So a line costs 4 bytes of metadata plus its share of a run's 17 (for 10M
  ``seq`` lines read from a pipe: 4.0 bytes a line; a line per append at worst: 21). A run is
  extended rather than a new one begun when the next append continues it (same process and
  stream, same millisecond, next id, same flags); a line's id is its run's first id plus its
  offset in the run, so ids stay global and strictly increasing in a block.
- Blocks are append-only: bytes and metadata below a block's published line count never change.
  A snapshot is therefore just ``(sealed blocks tuple, active block, its line count)``, read with one
  attribute load, with no lock and no copy: appends that continue after it write only past what it
  sees. A block's arrays are mapped at full capacity (pages are touched only as lines arrive) and
  never move; sealing narrows the metadata arrays to views of what is held, over the same memory, so
  a reader holding either sees the same lines.
- Appends take whole read chunks: newlines are found in one pass over the chunk (C, in
  ``_newlines.c``; numpy where that was not built), and the chunk's bytes land in the block with
  one write per block touched.
- Memory is bounded by a global budget: when the store holds more than that, whole sealed blocks are
  dropped, oldest first across all processes. The budget covers the lines, their metadata and the
  query layer's per-block caches of matching lines (``cache_scan``), which may take at most
  ``CACHE_SHARE`` of it (past that, the caches computed longest ago are dropped). A snapshot that
  still references a dropped block keeps it alive until the snapshot is dropped (plain reference
  counting): such "retired" blocks are counted (``retired_bytes``, via ``weakref.finalize``),
  and a long reader holding some while they exceed ``retired_bound()`` is expected to let go of
  them and report the lines as lapped (api/protocol.py does).
- A block's memory is a memfd (shared memory with a file descriptor), mapped for readers. Bulk
  appends write into it with ``pwrite`` rather than through the mapping: the kernel then allocates
  each page inside the write call, which on this class of machine costs ~1 µs a page against ~3.5
  µs for a page faulted in by a first store through a mapping (anonymous or shared, faulted one by
  one or populated ahead). For 2M lines of ``seq`` that is ~6,000 faults the capture no longer
  takes (bench/capture.py). Small appends, a page's worth over many calls, write through the
  mapping. A block keeps its descriptor while it takes appends and closes it when it seals; where
  no memfd can be made (out of descriptors), a block is a plain anonymous mapping written through.
- Hostile output: a line longer than ``max_line_bytes`` is split into pieces flagged
  ``FLAG_NO_NEWLINE`` (counted as ``split_lines``); any bytes are kept as written (invalid UTF-8,
  ANSI codes, ``\\r``, NUL); the renderers decide how to show them.
"""

from __future__ import annotations

import functools
import mmap
import os
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

try:  # the C newline scan (setup.py builds it where a compiler is at hand)
    from lacrimosa.engine.logs import _newlines
except ImportError:  # pragma: no cover - an install without a compiler
    _newlines = None  # type: ignore[assignment]

STDOUT = 0
STDERR = 1
SYSTEM = 2  # lines written by lacrimosa itself about a process (exits, restarts)
STREAM_NAMES = ("stdout", "stderr", "system")
STREAM_MASK = 0b011
FLAG_NO_NEWLINE = 0b100  # this piece did not end in a newline (split long line, or flushed partial)

BLOCK_BYTES = 1 << 20
BLOCK_LINES = 1 << 17
MAX_LINE_BYTES = 64 << 10
SMALL_APPEND = 2048  # appends up to this many bytes (with the pending partial line) skip numpy
META_BYTES_PER_LINE = 4  # the end offset; the rest is per run
META_BYTES_PER_RUN = 4 + 8 + 4 + 1  # first line index, first id, time, flags
_MAX_BLOCK_AGE_MS = (1 << 32) - 1
CACHE_SHARE = 8  # query caches take at most 1/CACHE_SHARE of the budget
CACHE_KEYS_PER_BLOCK = 8  # predicates cached per block (the oldest dropped past that)
RETIRED_MIN = 16 << 20  # evicted blocks that readers still hold: max(this, budget / 8) at most

_NEWLINE = 10


def _page_ceil(nbytes: int) -> int:
    return -(-nbytes // mmap.PAGESIZE) * mmap.PAGESIZE


# (array name, dtype, capacity, byte offset in the block's mapping) for each array of a block.
_Layout = tuple[tuple[str, "np.dtype[Any]", int, int], ...]


@functools.cache
def _block_layout(block_bytes: int, block_lines: int) -> tuple[_Layout, int]:
    """Where each array of a block lies in its mapping (page-aligned), and the mapping's size.

    Taken from the geometry at hand, not frozen at import: the tests shrink the blocks.
    """
    layout = []
    offset = 0
    for name, dtype, count in (
        ("data", np.dtype(np.uint8), block_bytes),
        ("ends", np.dtype(np.uint32), block_lines),
        ("run_starts", np.dtype(np.uint32), block_lines),
        ("run_ids", np.dtype(np.uint64), block_lines),
        ("run_times", np.dtype(np.uint32), block_lines),
        ("run_flags", np.dtype(np.uint8), block_lines),
    ):
        layout.append((name, dtype, count, offset))
        offset += _page_ceil(count * dtype.itemsize)
    return tuple(layout), offset


class Block:
    """One block of lines of one process. Append-only; see the module docstring."""

    __slots__ = (
        "__weakref__",
        "_close_fd",
        "_fd",
        "_map",
        "_offsets",
        "cache_bytes",
        "data",
        "ends",
        "evicted",
        "n",
        "process",
        "run_flags",
        "run_ids",
        "run_starts",
        "run_times",
        "runs",
        "scan_cache",
        "sealed",
        "store",
        "t0_ms",
        "used",
    )

    def __init__(self, process: str, t0_ms: int, store: LogStore | None = None) -> None:
        self.process = process
        self.store = store  # accounts this block's query cache (None: a block on its own)
        self.evicted = False  # dropped by the store; alive while a reader still holds it
        # One mapping holds the line bytes and the metadata at full capacity, as numpy views.
        # Outside the malloc heap, long-lived blocks never pin the short-lived read chunks and
        # numpy temporaries freed between them (RSS growth for 1M lines of 100 B,
        # bench/store_memory.py: 133 MB with heap arrays, 122 MB so); unwritten pages cost address
        # space only; the metadata is never copied to grow or to seal. The mapping is unmapped
        # when the last view of it dies. ``_fd``: the memfd behind it, for ``write`` (see the
        # module docstring), until the block seals; None for an anonymous mapping.
        layout, size = _block_layout(BLOCK_BYTES, BLOCK_LINES)
        self._map, self._fd = _block_memory(size)
        # Closes the descriptor when the block seals, or dies unsealed (a store dropped whole);
        # at exit, the system does (a daemon thread may still be appending).
        self._close_fd = None
        if self._fd is not None:
            self._close_fd = weakref.finalize(self, os.close, self._fd)
            self._close_fd.atexit = False
        self._offsets = {name: offset for name, _, _, offset in layout}
        views = {
            name: np.frombuffer(self._map, dtype=dtype, count=count, offset=offset)
            for name, dtype, count, offset in layout
        }
        self.data = views["data"]
        self.ends = views["ends"]
        self.run_starts = views["run_starts"]
        self.run_ids = views["run_ids"]
        self.run_times = views["run_times"]
        self.run_flags = views["run_flags"]
        self.t0_ms = t0_ms
        self.n = 0
        self.runs = 0  # written before n: a reader that sees n lines sees the runs holding them
        self.used = 0
        self.sealed = False
        # Query results per (predicate) key: (lines scanned, matching indices as uint32). Valid
        # forever since lines below n never change; kept here so a block's cache dies with the
        # block. Written through LogStore.cache_scan, which counts it in the budget.
        self.scan_cache: dict[object, tuple[int, np.ndarray]] = {}
        self.cache_bytes = 0

    def seal(self) -> None:
        """Trim the arrays to what is held; the block never changes again.

        The metadata arrays become views of what they hold (no copy). In an anonymous block the
        pages past that go back to the system (MADV_DONTNEED), so its RSS is what it holds even
        where transparent huge pages had backed more than was written; a memfd block has no page
        past what was written (and MADV_DONTNEED would not free a shared page anyway).
        """
        anonymous = self._fd is None
        layout, _ = _block_layout(len(self.data), len(self.ends))
        for name, dtype, count, offset in layout:
            items = self.used if name == "data" else self.n if name == "ends" else self.runs
            start = offset + _page_ceil(items * dtype.itemsize)
            stop = offset + _page_ceil(count * dtype.itemsize)
            if anonymous and stop > start:
                _LIBC.drop(self._map, start, stop - start)
            if name != "data":
                setattr(self, name, getattr(self, name)[:items])
        if self._close_fd is not None:
            self._close_fd()
            self._fd = None
        self.sealed = True

    def write(self, name: str, index: int, values: np.ndarray) -> None:
        """Store ``values`` (of the array's dtype, contiguous) at ``index`` of array ``name``.

        Through the memfd with ``pwrite`` while the block has one: the kernel allocates the pages
        inside the call, ~3x cheaper here than a first store through the mapping faults them in.
        Whatever the kernel refuses (out of memory for shared memory) is written through the
        mapping instead, as for an anonymous block.
        """
        view = getattr(self, name)
        fd = self._fd
        if fd is not None:
            at = self._offsets[name] + index * view.itemsize
            done = 0
            raw = memoryview(values).cast("B")  # type: ignore[arg-type]  # numpy arrays are buffers
            try:
                while done < len(raw):
                    wrote = os.pwrite(fd, raw[done:], at + done)
                    if not wrote:
                        break
                    done += wrote
            except OSError:
                pass
            if done == len(raw):
                return
            skip = done // view.itemsize  # whole items already written; the rest, with the part
            index, values = index + skip, values[skip:]
        view[index : index + len(values)] = values

    def nbytes(self) -> int:
        """Bytes counted against the memory budget: line bytes plus metadata."""
        return self.used + self.n * META_BYTES_PER_LINE + self.runs * META_BYTES_PER_RUN

    # -- per-line metadata, from the runs ------------------------------------------------------

    def runs_below(self, n: int) -> int:
        """How many runs hold the first ``n`` lines (a reader's count: later runs may exist,
        written for lines a snapshot does not see yet)."""
        return int(np.searchsorted(self.run_starts[: self.runs], n, side="left"))

    def run_of(self, index: int) -> int:
        runs = self.runs
        if index >= self.run_starts[runs - 1]:  # most lines read (a tail) are in the last run
            return runs - 1
        return int(np.searchsorted(self.run_starts[:runs], index, side="right")) - 1

    def runs_of(self, indices: np.ndarray) -> np.ndarray:
        """The run of each line index (an array of them, ascending or not)."""
        return np.searchsorted(self.run_starts[: self.runs], indices, side="right") - 1

    def id_at(self, index: int) -> int:
        r = self.run_of(index)
        return int(self.run_ids[r]) + index - int(self.run_starts[r])

    def time_ms_at(self, index: int) -> int:
        return self.t0_ms + int(self.run_times[self.run_of(index)])

    def flags_at(self, index: int) -> int:
        return int(self.run_flags[self.run_of(index)])

    def ids_at(self, indices: np.ndarray) -> np.ndarray:
        """The ids of the lines at ``indices`` (int64)."""
        r = self.runs_of(indices)
        ids: np.ndarray = self.run_ids[r].astype(np.int64)
        ids += indices - self.run_starts[r].astype(np.int64)
        return ids

    def ids_of(self, lo: int, hi: int) -> np.ndarray:
        """The ids of lines [lo, hi) (int64)."""
        return self.ids_at(np.arange(lo, hi, dtype=np.int64))

    def flags_of(self, lo: int, hi: int) -> np.ndarray:
        """The flags of lines [lo, hi), expanded from the runs."""
        r0 = self.run_of(lo)
        r1 = self.run_of(hi - 1) + 1
        starts = self.run_starts[r0:r1].astype(np.int64)
        counts = np.diff(np.append(np.maximum(starts, lo), hi))
        return np.repeat(self.run_flags[r0:r1], counts)

    def index_after_id(self, line_id: int, n: int) -> int:
        """The index of the first of the first ``n`` lines with an id above ``line_id``."""
        runs = self.runs_below(n)
        r = int(np.searchsorted(self.run_ids[:runs], line_id, side="right")) - 1
        if r < 0:
            return 0
        run_end = int(self.run_starts[r + 1]) if r + 1 < runs else n
        return min(int(self.run_starts[r]) + line_id - int(self.run_ids[r]) + 1, run_end)

    def index_at_or_after_ms(self, rel_ms: int, n: int) -> int:
        """The index of the first of the first ``n`` lines received at or after ``rel_ms``
        (milliseconds since the block opened); ``n`` if none was."""
        runs = self.runs_below(n)
        r = int(np.searchsorted(self.run_times[:runs], rel_ms, side="left"))
        return int(self.run_starts[r]) if r < runs else n

    def start_of(self, index: int) -> int:
        return int(self.ends[index - 1]) if index > 0 else 0

    def content(self, index: int) -> memoryview:
        """The bytes of one line, without its newline, as a view into the block (no copy)."""
        start = self.start_of(index)
        end = int(self.ends[index])
        if not self.flags_at(index) & FLAG_NO_NEWLINE:
            end -= 1
        return memoryview(self.data)[start:end]  # type: ignore[arg-type]  # numpy arrays are buffers


@dataclass(frozen=True, slots=True)
class LogLine:
    """A reference to one stored line. ``content`` is a view into its block, not a copy."""

    process: str
    block: Block
    index: int

    @property
    def id(self) -> int:
        return self.block.id_at(self.index)

    @property
    def time(self) -> float:
        return self.block.time_ms_at(self.index) / 1000.0

    @property
    def stream(self) -> int:
        return self.block.flags_at(self.index) & STREAM_MASK

    @property
    def stream_name(self) -> str:
        return STREAM_NAMES[self.stream]

    @property
    def continued(self) -> bool:
        """True when the line goes on in the next piece (it was split or flushed without newline)."""
        return bool(self.block.flags_at(self.index) & FLAG_NO_NEWLINE)

    @property
    def content(self) -> memoryview:
        return self.block.content(self.index)

    @property
    def text(self) -> str:
        return bytes(self.content).decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class BlockRef:
    """A block as a snapshot sees it: the block and how many of its lines are visible."""

    block: Block
    n: int


@dataclass(frozen=True, slots=True)
class LogSnapshot:
    """An immutable view of one process's lines at one moment. Copies no line bytes."""

    process: str
    blocks: tuple[BlockRef, ...]

    def __len__(self) -> int:
        return sum(ref.n for ref in self.blocks)


@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    """Snapshots of several processes taken together, plus the store's version at that moment."""

    processes: dict[str, LogSnapshot]
    version: int


@dataclass(frozen=True, slots=True)
class StreamCounts:
    stdout_lines: int
    stderr_lines: int
    bytes: int  # every stream's, lacrimosa's own system lines included
    split_lines: int
    stdout_bytes: int = 0
    stderr_bytes: int = 0


class ProcessLogs:
    """The blocks of one process. Appended to by one writer at a time (the store's lock)."""

    def __init__(self, store: LogStore, name: str) -> None:
        self._store = store
        self.name = name
        self._sealed: tuple[Block, ...] = ()
        self._active: Block | None = None
        # What readers see, swapped in one assignment after each append: (sealed, active, active.n).
        self.published: tuple[tuple[Block, ...], Block | None, int] = ((), None, 0)
        # The refs of the sealed blocks, built once per sealed tuple (it changes only when a block
        # seals or is evicted), not on every snapshot. Two readers racing on a change at worst
        # both build the same refs.
        self._sealed_refs: tuple[tuple[Block, ...], tuple[BlockRef, ...]] = ((), ())
        self._partial: dict[int, bytes] = {STDOUT: b"", STDERR: b""}
        self.line_counts = [0, 0, 0]
        self.byte_counts = [0, 0, 0]  # bytes taken in, by stream (newlines included)
        self.split_lines = 0
        self.evicted_lines = 0

    # -- writing ---------------------------------------------------------------------------------

    def _append(self, chunk: bytes | memoryview, stream: int, flush: bool) -> int:
        """Store every complete line in ``chunk`` (after any pending partial line of ``stream``).

        The bytes after the last newline stay pending until more arrive, or are stored now when
        ``flush`` is set. Returns the number of lines stored. Caller holds the store lock.
        """
        max_line = self._store.max_line_bytes
        pending = self._partial.get(stream, b"")
        if len(chunk) + len(pending) <= SMALL_APPEND:
            stored = self._append_small(pending + chunk, stream, flush, max_line)
            if stored is not None:
                return stored
        buf = pending + chunk if pending else chunk
        if not buf:
            return 0
        arr = np.frombuffer(buf, dtype=np.uint8)
        ends = self._store._line_ends_of(buf)
        complete = int(ends[-1]) if len(ends) else 0
        tail = len(buf) - complete
        nonl: np.ndarray | None = None
        if tail and (flush or tail >= max_line):
            # The pending tail is stored now: all of it on flush, else whole max_line pieces.
            cut = len(buf) if flush else complete + (tail // max_line) * max_line
            ends = np.append(ends, cut)
            nonl = np.zeros(len(ends), dtype=bool)
            nonl[-1] = True
            complete = cut
        if stream != SYSTEM:
            # A copy: the chunk may be the caller's reused read buffer (no copy if already bytes).
            self._partial[stream] = bytes(buf[complete:])
        if not len(ends):
            return 0
        if not _no_line_longer_than(ends, max_line):
            lengths = np.diff(ends, prepend=0)
            if int(lengths.max()) > max_line:
                ends, nonl = _split_long_lines(ends, lengths, nonl, max_line)
        if nonl is not None:
            # Every piece without a newline was cut for length, except a flushed remainder.
            self.split_lines += int(nonl.sum()) - (1 if flush and tail % max_line else 0)
        self._write_lines(arr, ends, nonl, stream)
        self.byte_counts[stream] += complete
        return len(ends)

    def _append_small(self, buf: bytes, stream: int, flush: bool, max_line: int) -> int | None:
        """``_append`` for a few short lines (one line every few ms from many processes is the
        common case): plain bytes methods and a few item writes instead of some twenty numpy
        calls, each dearer than the whole job at this size (~5 µs instead of ~30 µs a call).
        Returns None, having changed nothing, when the general path is needed: a piece without
        newline to store (flush, long tail), a line over ``max_line``, no room in the active
        block, or a block too old for its millisecond times."""
        complete = buf.rfind(b"\n") + 1
        tail = len(buf) - complete
        if tail and (flush or tail >= max_line or stream == SYSTEM):
            return None
        ends = []
        start = 0
        while start < complete:
            end = buf.index(b"\n", start) + 1
            if end - start > max_line:
                return None
            ends.append(end)
            start = end
        count = len(ends)
        block = self._active
        now_ms = int(time.time() * 1000)
        if count and (
            block is None
            or block.used + complete > BLOCK_BYTES
            or block.n + count > BLOCK_LINES
            or now_ms - block.t0_ms > _MAX_BLOCK_AGE_MS
        ):
            return None
        if stream != SYSTEM:
            self._partial[stream] = buf[complete:]
        if not count:
            return 0
        assert block is not None
        store = self._store
        used, n, runs = block.used, block.n, block.runs
        block.data[used : used + complete] = np.frombuffer(buf, np.uint8, complete)
        if count == 1:
            block.ends[n] = used + complete
        else:
            block.ends[n : n + count] = [used + end for end in ends]
        first_id = store._next_id
        rel_ms = max(now_ms - block.t0_ms, 0)
        new_runs = 0
        if runs:
            last = runs - 1
            floor = int(block.run_times[last])
            if rel_ms < floor:  # times never go backwards inside a block
                rel_ms = floor
            continues = (
                rel_ms == floor
                and int(block.run_flags[last]) == stream
                and int(block.run_ids[last]) + n - int(block.run_starts[last]) == first_id
            )
        else:
            continues = False
        if not continues:
            block.run_starts[runs] = n
            block.run_ids[runs] = first_id
            block.run_times[runs] = rel_ms
            block.run_flags[runs] = stream
            block.runs = runs + 1
            new_runs = 1
        store._next_id = first_id + count
        block.used = used + complete
        block.n = n + count  # published last: readers never see a half-written line
        store._bytes += complete + count * META_BYTES_PER_LINE + new_runs * META_BYTES_PER_RUN
        self.line_counts[stream] += count
        self.byte_counts[stream] += complete
        if block.used == BLOCK_BYTES or block.n == BLOCK_LINES:
            self._seal_active()
        self._publish()
        return count

    def _write_lines(
        self, arr: np.ndarray, ends: np.ndarray, nonl: np.ndarray | None, stream: int
    ) -> None:
        store = self._store
        now_ms = int(time.time() * 1000)
        total = len(ends)
        done = 0
        pos = 0  # byte offset in arr where line `done` starts
        while done < total:
            block = self._active
            if block is None or now_ms - block.t0_ms > _MAX_BLOCK_AGE_MS:
                block = self._open_block(now_ms)
            room_bytes = BLOCK_BYTES - block.used
            room_lines = BLOCK_LINES - block.n
            fit = int(np.searchsorted(ends[done:], pos + room_bytes, side="right"))
            fit = min(fit, room_lines, total - done)
            if fit == 0:
                self._seal_active()
                continue
            stop = done + fit
            end = int(ends[stop - 1])
            n = block.n
            block.write("data", block.used, arr[pos:end])
            line_ends = store._line_ends_scratch(fit)
            shift = block.used - pos  # from offsets in the chunk to offsets in the block
            if shift >= 0:
                np.add(ends[done:stop], shift, out=line_ends, casting="unsafe")
            else:  # (a uint32 array takes no negative Python int)
                np.subtract(ends[done:stop], -shift, out=line_ends, casting="unsafe")
            block.write("ends", n, line_ends)
            # Clamped so times never go backwards inside a block (a "since" query bisects them).
            runs = block.runs
            floor = int(block.run_times[runs - 1]) if runs else 0
            rel_ms = max(now_ms - block.t0_ms, floor)
            new_runs = self._add_runs(block, n, fit, store._next_id, rel_ms, stream, nonl, done)
            store._next_id += fit
            block.used += end - pos
            block.n = n + fit  # published last: readers never see a half-written line
            store._bytes += (end - pos) + fit * META_BYTES_PER_LINE + new_runs * META_BYTES_PER_RUN
            self.line_counts[stream] += fit
            done = stop
            pos = end
            if block.used == BLOCK_BYTES or block.n == BLOCK_LINES:
                self._seal_active()
        self._publish()

    @staticmethod
    def _add_runs(
        block: Block,
        n: int,
        fit: int,
        first_id: int,
        rel_ms: int,
        stream: int,
        nonl: np.ndarray | None,
        done: int,
    ) -> int:
        """Record lines [n, n + fit) of ``block`` (ids from ``first_id``) in its runs: a new
        run where the flags change, the last run extended where it continues. Returns how many
        runs were added; ``block.runs`` is updated (before the caller publishes ``n``)."""
        if nonl is None:
            starts = [0]
            flags = [stream]
        else:
            piece = nonl[done : done + fit]
            changes = np.flatnonzero(piece[1:] != piece[:-1]) + 1
            starts = [0, *changes.tolist()]
            flags = [stream | (FLAG_NO_NEWLINE if piece[i] else 0) for i in starts]
        runs = block.runs
        if runs:
            last = runs - 1
            if (
                int(block.run_flags[last]) == flags[0]
                and int(block.run_times[last]) == rel_ms
                and int(block.run_ids[last]) + n - int(block.run_starts[last]) == first_id
            ):
                starts, flags = starts[1:], flags[1:]  # the first lines continue the last run
        for start, flag in zip(starts, flags, strict=True):
            block.run_starts[runs] = n + start
            block.run_ids[runs] = first_id + start
            block.run_times[runs] = rel_ms
            block.run_flags[runs] = flag
            runs += 1
        added = runs - block.runs
        block.runs = runs
        return added

    def _open_block(self, now_ms: int) -> Block:
        if self._active is not None:
            self._seal_active()
        self._active = Block(self.name, now_ms, self._store)
        return self._active

    def _seal_active(self) -> None:
        block = self._active
        if block is None:
            return
        self._active = None
        if block.n:
            block.seal()
            self._sealed = (*self._sealed, block)
            self._store._sealed_order.append(block)
        self._publish()

    def _publish(self) -> None:
        active = self._active
        self.published = (self._sealed, active, active.n if active is not None else 0)

    def _evict(self, block: Block) -> None:
        """Drop a sealed block (the store chose it as the oldest)."""
        self._sealed = tuple(b for b in self._sealed if b is not block)
        self._sealed_refs = ((), ())  # else the refs of the last snapshot would keep it alive
        self.evicted_lines += block.n
        self._publish()

    # -- reading ---------------------------------------------------------------------------------

    def snapshot(self) -> LogSnapshot:
        sealed, active, n = self.published
        cached = self._sealed_refs
        if cached[0] is not sealed:
            cached = (sealed, tuple(BlockRef(b, b.n) for b in sealed))
            self._sealed_refs = cached
        refs = cached[1]
        if active is not None and n:
            refs += (BlockRef(active, n),)
        return LogSnapshot(self.name, refs)

    def counts(self) -> StreamCounts:
        lines, taken = self.line_counts, self.byte_counts
        return StreamCounts(
            lines[STDOUT], lines[STDERR], sum(taken), self.split_lines, taken[STDOUT], taken[STDERR]
        )


def _block_memory(size: int) -> tuple[Any, int | None]:
    """A block's mapping of ``size`` bytes (a ctypes array over it), and its memfd (None: an
    anonymous mapping, no memfd could be made). The memfd is close-on-exec: children never
    inherit it. Mapped through libc, not the mmap module: an ``mmap.mmap`` of a descriptor keeps
    a duplicate of it open for its whole life, a descriptor per block, sealed ones included."""
    try:
        fd = os.memfd_create("lacrimosa-block", os.MFD_CLOEXEC)
    except OSError:
        return _LIBC.map(size, -1), None
    try:
        os.ftruncate(fd, size)  # a sparse size: pages exist only where written
        return _LIBC.map(size, fd), fd
    except BaseException:
        os.close(fd)
        raise


class _Mappings:
    """mmap, munmap and madvise from libc through ctypes, loaded on first use (the one-shot CLI
    never imports this module, but tests and tools that do should not pay for ctypes unasked)."""

    def __init__(self) -> None:
        self._libc: Any = None

    def _load(self) -> Any:
        if self._libc is None:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.mmap.argtypes = [
                ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                ctypes.c_long,
            ]  # fmt: skip
            libc.mmap.restype = ctypes.c_void_p
            libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
            libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            self._libc = libc
        return self._libc

    def map(self, size: int, fd: int) -> Any:
        """``size`` bytes, read-write: of ``fd`` shared, or anonymous and private if ``fd`` is
        -1. Unmapped when the returned array (the base of every view of it) dies."""
        import ctypes

        libc = self._load()
        flags = mmap.MAP_SHARED if fd >= 0 else mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        address = libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, flags, fd, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        memory = (ctypes.c_ubyte * size).from_address(address)
        # Not at interpreter exit (the system unmaps it then): a daemon thread may still be
        # reading or writing the block while the exit handlers run.
        weakref.finalize(memory, libc.munmap, address, size).atexit = False
        return memory

    def drop(self, memory: Any, offset: int, size: int) -> None:
        """Give the pages of ``[offset, offset + size)`` back (MADV_DONTNEED)."""
        import ctypes

        self._load().madvise(ctypes.addressof(memory) + offset, size, mmap.MADV_DONTNEED)


_LIBC = _Mappings()


def _no_line_longer_than(ends: np.ndarray, max_line: int) -> bool:
    """A cheap sufficient test that no line (``ends`` are their end offsets) exceeds ``max_line``.

    Cut ``[0, ends[-1])`` into aligned windows of ``half = max_line // 2`` offsets. A line of
    ``2 * half`` bytes or more has ``2 * half - 1`` or more offsets strictly inside it where no
    line ends, and any that many consecutive offsets contain a whole window. So if every window
    holds an end, every line is under ``2 * half <= max_line`` bytes. That costs two
    searchsorted calls over one probe per window (32 for a 1 MiB chunk) instead of a diff and a
    max over every line. False means "not proven": the caller measures the lines exactly.
    """
    half = max(max_line // 2, 1)
    window_ends = np.arange(half, int(ends[-1]) + 1, half)
    ends_before = np.searchsorted(ends, window_ends, side="left")
    ends_before_start = np.searchsorted(ends, window_ends - half, side="left")
    return bool((ends_before > ends_before_start).all())


def _split_long_lines(
    ends: np.ndarray, lengths: np.ndarray, nonl: np.ndarray | None, max_line: int
) -> tuple[np.ndarray, np.ndarray]:
    """Insert piece boundaries every ``max_line`` bytes inside lines longer than that."""
    if nonl is None:
        nonl = np.zeros(len(ends), dtype=bool)
    pieces_ends: list[np.ndarray] = []
    pieces_nonl: list[np.ndarray] = []
    prev = 0
    for i in np.flatnonzero(lengths > max_line).tolist():
        pieces_ends.append(ends[prev:i])
        pieces_nonl.append(nonl[prev:i])
        start = int(ends[i]) - int(lengths[i])
        cuts = np.arange(start + max_line, int(ends[i]), max_line, dtype=ends.dtype)
        pieces_ends.append(np.append(cuts, ends[i]))
        extra = np.ones(len(cuts) + 1, dtype=bool)
        extra[-1] = nonl[i]
        pieces_nonl.append(extra)
        prev = i + 1
    pieces_ends.append(ends[prev:])
    pieces_nonl.append(nonl[prev:])
    return np.concatenate(pieces_ends), np.concatenate(pieces_nonl)


class LogStore:
    """All processes' logs, under one memory budget. Safe to call from any thread."""

    def __init__(self, budget_bytes: int = 256 << 20, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        if budget_bytes < 4 * BLOCK_BYTES:
            raise ValueError(f"log budget must be at least {4 * BLOCK_BYTES} bytes")
        if not 1 <= max_line_bytes <= BLOCK_BYTES:
            # A piece must fit in one block, or the writer would open blocks forever.
            raise ValueError(f"max line bytes must be between 1 and {BLOCK_BYTES}")
        self.budget_bytes = budget_bytes
        self.max_line_bytes = max_line_bytes
        self._lock = threading.Lock()
        self._logs: dict[str, ProcessLogs] = {}
        self._next_id = 1
        self._bytes = 0
        self._sealed_order: list[Block] = []  # sealed blocks, oldest first, for eviction
        self.evicted_blocks = 0
        # Query caches (see cache_scan): their bytes, and the blocks holding one, oldest first.
        self._cache_lock = threading.Lock()  # never held while taking _lock
        self._cache_bytes = 0
        self._cache_order: dict[Block, None] = {}
        self.cache_budget_bytes = budget_bytes // CACHE_SHARE
        # Evicted blocks still alive (a reader holds them): bytes, lowered as each is freed.
        self._retired_lock = threading.Lock()
        self._retired_bytes = 0
        self.version = 0  # bumped on every append; readers poll it to know when to re-render
        # Scratch for an append's line ends in its chunk, reused under _lock: a fresh array per
        # read was a fresh mapping from malloc, its pages faulted in each time (2M lines of `seq`
        # with numpy's 1 MiB newline mask: 9,500 minor faults and ~46 ms of append, 5,700 and
        # ~26 ms with the mask reused; bench/capture.py). The C scan's room for the worst case,
        # a chunk of newlines, is 4 MiB of address space, of which only what the lines of a
        # chunk use is ever touched (~0.5 MiB for `seq`). numpy's mask is filled now, once
        # (every page touched), so that the first captures do not pay its faults.
        chunk_room = BLOCK_BYTES + MAX_LINE_BYTES
        self._scan = _newlines  # per store: the tests make stores with and without it
        if self._scan is not None:
            self._ends_room = np.empty(chunk_room, dtype=np.uint32)
        else:
            self._mask = np.full(chunk_room, False)
        # Scratch for the line ends an append writes into a block (Block.write), likewise.
        self._line_ends = np.full(BLOCK_LINES, 1, dtype=np.uint32)

    def _line_ends_of(self, chunk: bytes | memoryview) -> np.ndarray:
        """The end offset of each complete line in ``chunk`` (the index after its newline), as
        the C scan finds them (uint32, in a scratch array reused by the next call) or, where
        that was not built, numpy (int64). Caller holds _lock."""
        scan = self._scan
        if scan is None:
            mask = self._mask[: len(chunk)]
            if len(chunk) > len(mask):  # a caller's oversized chunk: a temporary, not kept
                mask = np.empty(len(chunk), dtype=bool)
            arr = np.frombuffer(chunk, dtype=np.uint8)
            ends = np.flatnonzero(np.equal(arr, _NEWLINE, out=mask))
            ends += 1
            return ends
        room = self._ends_room
        if len(chunk) > len(room):  # a caller's oversized chunk: a temporary, not kept
            room = np.empty(len(chunk), dtype=np.uint32)
        return room[: scan.line_ends(chunk, room)]

    def _line_ends_scratch(self, size: int) -> np.ndarray:
        """A u32 array of ``size`` for an append's line ends in a block (caller holds _lock)."""
        if size > len(self._line_ends):  # blocks made bigger since (the tests change geometry)
            self._line_ends = np.full(size, 1, dtype=np.uint32)
        return self._line_ends[:size]

    def add_process(self, name: str) -> None:
        with self._lock:
            if name not in self._logs:
                self._logs[name] = ProcessLogs(self, name)

    def process_names(self) -> list[str]:
        return list(self._logs)

    def append(self, name: str, stream: int, chunk: bytes | memoryview, flush: bool = False) -> int:
        """Append a chunk of raw output of one process and stream; returns lines stored.

        A trailing partial line is held back until its newline arrives, unless ``flush``. The
        store keeps no reference to ``chunk``: the caller may reuse its buffer once this returns.
        """
        with self._lock:
            logs = self._logs.get(name)
            if logs is None:
                logs = self._logs[name] = ProcessLogs(self, name)
            stored = logs._append(chunk, stream, flush)
            if stored:
                self.version += 1
                if self._bytes + self._cache_bytes > self.budget_bytes:
                    self._evict_over_budget()
            return stored

    def flush(self, name: str, stream: int) -> int:
        """Store the pending partial line of a stream (at process exit, or when it has waited)."""
        return self.append(name, stream, b"", flush=True)

    def has_partial(self, name: str, stream: int) -> bool:
        logs = self._logs.get(name)
        return bool(logs and logs._partial.get(stream))

    def append_system(self, name: str, text: str) -> None:
        """Record a line by lacrimosa itself about a process (exit, restart, stop)."""
        self.append(name, SYSTEM, text.encode() + b"\n")

    def _evict_over_budget(self) -> None:
        order = self._sealed_order
        dropped = 0
        while self._bytes + self._cache_bytes > self.budget_bytes:
            if dropped == len(order) and not self._seal_oldest_active():
                break
            block = order[dropped]
            dropped += 1
            nbytes = block.nbytes()
            self._bytes -= nbytes
            self._logs[block.process]._evict(block)
            self.evicted_blocks += 1
            with self._cache_lock:
                block.evicted = True
                self._drop_cache(block)
            with self._retired_lock:
                self._retired_bytes += nbytes
            weakref.finalize(block, self._retired_freed, nbytes)  # at once if nobody holds it
        del order[:dropped]

    def _retired_freed(self, nbytes: int) -> None:
        with self._retired_lock:
            self._retired_bytes -= nbytes

    @property
    def next_id(self) -> int:
        """The id the next stored line will get: every line stored so far has a smaller one."""
        return self._next_id

    @property
    def retired_bytes(self) -> int:
        """Bytes of evicted blocks that are still alive: some reader holds them."""
        return self._retired_bytes

    def retired_bound(self) -> int:
        """How many retired bytes long readers may pin before they must let go (and lap)."""
        return max(RETIRED_MIN, self.budget_bytes // 8)

    # -- query caches --------------------------------------------------------------------------

    def cache_scan(self, block: Block, key: object, scanned: int, found: np.ndarray) -> None:
        """Keep ``found`` (matching indices among the first ``scanned`` lines) as ``block``'s
        cached result for ``key``, counted in the budget. Past CACHE_KEYS_PER_BLOCK keys the
        block's oldest goes; past the store's cache budget, the caches of the blocks cached
        longest ago. An evicted block's results are not kept."""
        with self._cache_lock:
            if block.evicted:
                return
            cache = block.scan_cache
            if key not in cache and len(cache) >= CACHE_KEYS_PER_BLOCK:
                cache.pop(next(iter(cache)))
            cache[key] = (scanned, found)
            size = sum(indices.nbytes for _, indices in cache.values())
            self._cache_bytes += size - block.cache_bytes
            block.cache_bytes = size
            order = self._cache_order
            order.pop(block, None)
            order[block] = None
            while self._cache_bytes > self.cache_budget_bytes and order:
                self._drop_cache(next(iter(order)))
            over = self._bytes + self._cache_bytes > self.budget_bytes
        if over:
            with self._lock:
                self._evict_over_budget()

    def _drop_cache(self, block: Block) -> None:
        """Forget ``block``'s cached results (caller holds _cache_lock). Views built from them
        keep their arrays until they are dropped."""
        self._cache_order.pop(block, None)
        self._cache_bytes -= block.cache_bytes
        block.cache_bytes = 0
        block.scan_cache = {}

    def _seal_oldest_active(self) -> bool:
        """Seal the active block written to least recently, so that eviction can take it.

        Needed when only partly filled active blocks are left (many processes, small budget):
        without it the budget would not hold. Returns False when there is no such block. By its
        newest line, not its oldest: a block that a busy process keeps filling may hold the
        oldest line and the lines just appended, which must not go first.
        """
        active = [
            logs._active
            for logs in self._logs.values()
            if logs._active is not None and logs._active.n
        ]
        if not active:
            return False
        oldest = min(active, key=lambda block: block.id_at(block.n - 1))
        self._logs[oldest.process]._seal_active()
        return True

    def snapshot(self, names: list[str] | None = None) -> StoreSnapshot:
        """Snapshots of the named processes (all when None). No lock, no copy of line bytes."""
        logs = self._logs
        chosen = list(logs) if names is None else names
        return StoreSnapshot({n: logs[n].snapshot() for n in chosen if n in logs}, self.version)

    def counts(self, name: str) -> StreamCounts:
        return self._logs[name].counts()

    def newest_ids(self) -> dict[str, int]:
        """Per process, the id of its newest stored line (none yet: left out). Reads what each
        process published last, without a lock or a snapshot: cheap enough to poll (the
        ``subscribe`` op sends it to attached TUIs)."""
        out: dict[str, int] = {}
        for name, logs in list(self._logs.items()):
            sealed, active, n = logs.published
            if active is not None and n:
                out[name] = active.id_at(n - 1)
            elif sealed:
                out[name] = sealed[-1].id_at(sealed[-1].n - 1)
        return out

    def stats(self) -> dict[str, int]:
        return {
            "bytes": self._bytes,
            "budget_bytes": self.budget_bytes,
            "cache_bytes": self._cache_bytes,
            "cache_budget_bytes": self.cache_budget_bytes,
            "retired_bytes": self._retired_bytes,
            "retired_bound_bytes": self.retired_bound(),
            "evicted_blocks": self.evicted_blocks,
            "next_id": self._next_id,
        }
