"""Which journal events the Events view lists: every held event, or those of one node/stream.

An :class:`EventRows` is an immutable index from list row to journal seq. Unfiltered, it is just
the held range ``[tail, head)`` (no array, however many events are held); filtered, it is the
ascending array of matching seqs, built with the journal's vectorised ``select`` and then grown
incrementally: when only the head moved, only the new slots are read and matched.

No Textual here: the Events view builds these in a thread worker and installs them on its own
thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.events.frames import matching
from ..engine.facade import JournalReader


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Events from ``node`` and/or on ``stream``; None matches any."""

    node: int | None = None
    stream: int | None = None

    @property
    def active(self) -> bool:
        return self.node is not None or self.stream is not None

    def describe(self) -> str:
        parts = []
        if self.node is not None:
            parts.append(f"node {self.node}")
        if self.stream is not None:
            parts.append(f"stream {self.stream}")
        return " · ".join(parts)


@dataclass(frozen=True, slots=True, eq=False)
class EventRows:
    """Row ``i`` of the list is event ``seq_at(i)``; built from the journal at ``(tail, head)``."""

    tail: int
    head: int
    filter: EventFilter = EventFilter()
    seqs: np.ndarray | None = None  # int64, ascending; None: every seq in [tail, head)

    def __len__(self) -> int:
        return self.head - self.tail if self.seqs is None else len(self.seqs)

    def seq_at(self, row: int) -> int:
        return self.tail + row if self.seqs is None else int(self.seqs[row])

    def seqs_between(self, start: int, stop: int) -> np.ndarray:
        """The seqs of rows ``[start, stop)`` (clipped to the rows there are)."""
        start, stop = max(start, 0), min(stop, len(self))
        if self.seqs is None:
            return np.arange(self.tail + start, self.tail + max(stop, start), dtype=np.int64)
        return self.seqs[start:stop]

    def row_at_or_after(self, seq: int) -> int:
        """The row of ``seq``, or of the first listed event after it (``len`` if none)."""
        if self.seqs is None:
            return min(max(seq - self.tail, 0), len(self))
        return int(np.searchsorted(self.seqs, seq, side="left"))

    def holds(self, seq: int) -> bool:
        row = self.row_at_or_after(seq)
        return row < len(self) and self.seq_at(row) == seq


def build_rows(
    journal: JournalReader, wanted: EventFilter, previous: EventRows | None
) -> EventRows:
    """The rows for ``wanted`` now; reuses ``previous`` (same filter, not lapped) when it can.

    Safe in any thread: the journal's readers copy what they read and drop what was overwritten
    meanwhile.
    """
    if not wanted.active:
        tail, head = journal.bounds()
        return EventRows(tail, head, wanted)
    tail, head = journal.bounds()
    if previous is not None and previous.filter == wanted and previous.head >= tail:
        assert previous.seqs is not None
        batch = journal.read_slots(previous.head, head)
        fresh = batch.seqs[matching(batch.slots, wanted.node, wanted.stream)]
        seqs = np.concatenate([previous.seqs, fresh]) if len(fresh) else previous.seqs
    else:
        # select() reads the bounds again itself; what it found past ``head`` is left for the
        # next build, which continues from ``head``.
        seqs = journal.select(node=wanted.node, stream=wanted.stream)
        seqs = seqs[: np.searchsorted(seqs, head, side="left")]
    tail = journal.tail  # after reading: what fell below it is gone
    seqs = seqs[np.searchsorted(seqs, tail, side="left") :]
    return EventRows(tail, head, wanted, seqs)
