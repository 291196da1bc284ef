"""Log lines turned into reply bytes a block at a time: the bulk form of a ``logs`` reply.

A ``logs`` request with ``"format": "text"`` or ``"jsonl"`` is answered in frames (see wire.py)
whose bytes are built here from a block's byte buffer and offsets, never from line objects:

- ``text``: each line's bytes as written, then a newline (a piece the child ended without one
  gets one here too, as the CLI prints it). A stretch of lines that lie next to each other in the
  block is one slice of its buffer.
- ``jsonl``: each line as the CLI's ``--json`` prints it, ``json_text(line_to_dict(line))`` and a
  newline, byte for byte. Lines whose bytes are printable ASCII without ``"`` or ``\\`` (what
  JSON writes unchanged) are put together from slices of the block and per-run constants (time,
  process, stream), the only per-line work being the id; any other line (control characters,
  non-ASCII, invalid UTF-8) goes the per-line way, ``json_text`` of its decoded text, so what it
  escapes and replaces stays exactly as before.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

from ..engine.logs.store import FLAG_NO_NEWLINE, STREAM_MASK, STREAM_NAMES, Block
from ..engine.terminal_text import json_text

# Bytes that JSON (as json_text writes it) does not copy unchanged into a string: controls, the
# quote, the backslash, DEL, and every non-ASCII byte (checked the slow way, per line).
_JSON_UNSAFE = np.ones(256, dtype=bool)
_JSON_UNSAFE[0x20:0x7F] = False
_JSON_UNSAFE[[ord('"'), ord("\\")]] = True
_JSON_UNSAFE[0x0A] = False  # in a block, a newline only ever ends a line: never in its text


def _groups(block: Block, indices: np.ndarray) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Cut ``indices`` into groups of lines adjacent in the block, in one run (so sharing time
    and flags), where only the last line may lack its newline. Returns the group boundaries
    (positions in ``indices``, first 0, last len), and per line its run and flags."""
    runs = block.runs_of(indices)
    flags = block.run_flags[runs]
    nonl = (flags & FLAG_NO_NEWLINE) != 0
    cut = (np.diff(indices) != 1) | (np.diff(runs) != 0) | nonl[:-1]
    bounds = [0, *(np.flatnonzero(cut) + 1).tolist(), len(indices)]
    return bounds, runs, flags


def runs(block: Block, indices: np.ndarray) -> Iterator[tuple[np.ndarray, float, int]]:
    """The lines at ``indices`` (ascending) of ``block`` cut into groups that share a receive
    time and a stream (a run, or part of one): ``(indices, unix seconds, stream)`` each, for
    readers that put a per-line prefix on them (``up --headless``)."""
    if not len(indices):
        return
    bounds, run_of_line, flags = _groups(block, indices)
    for a, b in itertools.pairwise(bounds):
        seconds = (block.t0_ms + int(block.run_times[int(run_of_line[a])])) / 1000.0
        yield indices[a:b], seconds, int(flags[a]) & STREAM_MASK


def text_bytes(block: Block, indices: np.ndarray) -> bytes:
    """The lines at ``indices`` (ascending) of ``block``, each ended by a newline."""
    if not len(indices):
        return b""
    data = memoryview(block.data)  # type: ignore[arg-type]  # numpy arrays are buffers
    ends = block.ends
    first, last = int(indices[0]), int(indices[-1])
    runs = block.runs_of(indices)
    nonl = (block.run_flags[runs] & FLAG_NO_NEWLINE) != 0
    if last - first + 1 == len(indices) and not nonl.any():
        return data[block.start_of(first) : int(ends[last])].tobytes()
    pieces: list[memoryview | bytes] = []
    cut = (np.diff(indices) != 1) | nonl[:-1]
    bounds = [0, *(np.flatnonzero(cut) + 1).tolist(), len(indices)]
    for a, b in itertools.pairwise(bounds):
        pieces.append(data[block.start_of(int(indices[a])) : int(ends[int(indices[b - 1])])])
        if nonl[b - 1]:
            pieces.append(b"\n")
    return b"".join(pieces)


def jsonl_bytes(process: str, block: Block, indices: np.ndarray) -> bytes:
    """The lines at ``indices`` (ascending) of ``block`` as JSON lines, exactly as
    ``json_text(line_to_dict(line)) + "\\n"`` writes each."""
    if not len(indices):
        return b""
    data = block.data
    view = memoryview(data)  # type: ignore[arg-type]  # numpy arrays are buffers
    ends = block.ends
    ids = block.ids_at(indices).tolist()
    bounds, runs, flags = _groups(block, indices)
    name = json_text(process).encode()
    out: list[bytes | memoryview] = []
    for a, b in itertools.pairwise(bounds):
        run = int(runs[a])
        flag = int(flags[a])
        seconds = (block.t0_ms + int(block.run_times[run])) / 1000.0
        middle = b', "time": %s, "process": %s, "stream": "%s", "text": "' % (
            repr(seconds).encode(),
            name,
            STREAM_NAMES[flag & STREAM_MASK].encode(),
        )
        continued = bool(flag & FLAG_NO_NEWLINE)
        suffix = b'", "continued": true}\n' if continued else b'"}\n'
        lo, hi = int(indices[a]), int(indices[b - 1])
        start, stop = block.start_of(lo), int(ends[hi])
        chunk = view[start:stop].tobytes()
        if continued:  # a single piece with no newline (a group ends at one)
            contents = [chunk]
        else:
            contents = chunk.split(b"\n")
            contents.pop()  # after the last newline
        unsafe = np.flatnonzero(_JSON_UNSAFE[data[start:stop]])
        if len(unsafe):
            # The lines holding such bytes (a newline ends each line; it is not one of them).
            line_ends = ends[lo : hi + 1].astype(np.int64) - start
            for k in np.unique(np.searchsorted(line_ends, unsafe, side="right")).tolist():
                if k < len(contents):
                    text = contents[k].decode("utf-8", "replace")
                    contents[k] = json_text(text)[1:-1].encode()
        count = b - a
        fragments: list[bytes | None] = [None] * (4 * count)
        fragments[0::4] = [b'{"id": %d' % i for i in ids[a:b]]
        fragments[1::4] = [middle] * count
        fragments[2::4] = contents
        fragments[3::4] = [suffix] * count
        out.append(b"".join(fragments))  # type: ignore[arg-type]  # every slot was filled
    return b"".join(out)
