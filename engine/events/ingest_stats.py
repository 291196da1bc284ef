"""The ingest process's counters, in a small block of memory it shares with the console.

The console makes the block (``memfd_create``: no file in the state folder, gone with the last
process that maps it) and hands its descriptor to every ingest process it starts; each maps it and
writes its counters there with plain stores after every batch (one writer at a time: the one
running ingest process), and the console reads them without locks, whenever it is asked. Nothing
is sent per event: a reader sees the counters as of the last batch journaled.

Layout: ``WORDS`` little-endian u64 words, then two text fields (``last_error`` and
``failure``, ``TEXT_BYTES`` each, UTF-8). The counters only grow, and a new ingest process goes on
from the values its predecessor left, so the console's figures count from the console's start,
across restarts. A text field is written under a version word (odd while it is being written), so
a reader never takes half of one message for another.
"""

from __future__ import annotations

import mmap
import os

import numpy as np

MAGIC = 0x314B4C4253514C  # "LQSBLK1"
RATE_HISTORY = 120  # seconds of ingest rate kept for the Overview's sparkline
TEXT_BYTES = 1024
WORDS = 32 + RATE_HISTORY
SIZE = WORDS * 8 + 2 * TEXT_BYTES

# Word indices.
(
    _MAGIC,
    RECEIVED,
    ACCEPTED,
    TEXT,
    FRAMED,
    DROP_MALFORMED,
    DROP_BAD_CHECKSUM,
    DROP_OVERSIZE,
    DROP_KERNEL,
    CLOCK_IGNORED,
    INGEST_ERRORS,
    LOST,
    HISTORY_COUNT,  # seconds appended to the history ring so far
    KERNEL_BASE,  # the socket's kernel drop counter when the console opened it
    FAILED,  # 1 once the writer stopped for good (``failure`` says why)
    TEXT_VERSION,  # odd while a text field is being written
    LAST_ERROR_LENGTH,
    FAILURE_LENGTH,
    WRITER_PID,
) = range(19)
DROPS = (DROP_MALFORMED, DROP_BAD_CHECKSUM, DROP_OVERSIZE, DROP_KERNEL)  # as DROP_CAUSES
_HISTORY = 32
_LAST_ERROR_AT = WORDS * 8
_FAILURE_AT = _LAST_ERROR_AT + TEXT_BYTES
_TEXT_TRIES = 100


class SharedStats:
    """A mapping of the block (see the module docstring); ``words`` is its u64 view."""

    def __init__(self, fd: int | None = None) -> None:
        """Map the block behind ``fd``; without one, a private block in this process only
        (a sequencer run outside a console: tests, benchmarks)."""
        if fd is None:
            self._map = mmap.mmap(-1, SIZE)
        else:
            if os.fstat(fd).st_size < SIZE:
                os.ftruncate(fd, SIZE)
            self._map = mmap.mmap(fd, SIZE)
        self.words = np.ndarray((WORDS,), "<u8", buffer=self._map)
        if int(self.words[_MAGIC]) != MAGIC:
            self.words[:] = 0
            self.words[_MAGIC] = MAGIC
        self._bytes = np.ndarray((SIZE,), np.uint8, buffer=self._map)

    @staticmethod
    def create() -> tuple[int, SharedStats]:
        """A new block for a console: its descriptor (to pass to ingest processes) and a map."""
        fd = os.memfd_create("lacrimosa-ingest-stats", os.MFD_CLOEXEC)
        os.ftruncate(fd, SIZE)
        return fd, SharedStats(fd)

    def get(self, index: int) -> int:
        return int(self.words[index])

    def history(self) -> tuple[int, ...]:
        """Events accepted per whole second, oldest first (at most RATE_HISTORY)."""
        count = int(self.words[HISTORY_COUNT])
        ring = self.words[_HISTORY : _HISTORY + RATE_HISTORY].copy()
        held = min(count, RATE_HISTORY)
        order = (np.arange(count - held, count) % RATE_HISTORY).astype(np.int64)
        return tuple(int(x) for x in ring[order])

    def append_history(self, values: list[int]) -> None:
        """Writer: more whole seconds, oldest first."""
        count = int(self.words[HISTORY_COUNT])
        for value in values[-RATE_HISTORY:]:
            self.words[_HISTORY + count % RATE_HISTORY] = value
            count += 1
        self.words[HISTORY_COUNT] = count

    def write_text(self, which: str, text: str | None) -> None:
        """Writer: set ``last_error`` or ``failure`` (None clears it)."""
        data = (text or "").encode("utf-8", "replace")[:TEXT_BYTES]
        at, length = (
            (_LAST_ERROR_AT, LAST_ERROR_LENGTH)
            if which == "last_error"
            else (_FAILURE_AT, FAILURE_LENGTH)
        )
        words = self.words
        words[TEXT_VERSION] += 1  # odd: being written
        self._bytes[at : at + len(data)] = np.frombuffer(data, np.uint8)
        words[length] = len(data) if text is not None else 0
        words[TEXT_VERSION] += 1

    def read_text(self, which: str) -> str | None:
        at, length = (
            (_LAST_ERROR_AT, LAST_ERROR_LENGTH)
            if which == "last_error"
            else (_FAILURE_AT, FAILURE_LENGTH)
        )
        words = self.words
        for _ in range(_TEXT_TRIES):
            version = int(words[TEXT_VERSION])
            if version % 2:
                continue
            size = int(words[length])
            data = bytes(self._bytes[at : at + min(size, TEXT_BYTES)])
            if int(words[TEXT_VERSION]) == version:
                return data.decode("utf-8", "replace") if size else None
        return None  # a writer that died mid-write: nothing trustworthy to say
