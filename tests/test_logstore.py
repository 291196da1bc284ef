"""The block log store: bytes kept exactly, partial lines, ids, long lines, budget, snapshots."""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import resource
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from logmodel import GEOMETRY, MAX_LINE, Harness, line_key, op_lists, snapshot_lines

from lacrimosa.engine.logs import store as logstore
from lacrimosa.engine.logs.store import (
    BLOCK_BYTES,
    STDERR,
    STDOUT,
    SYSTEM,
    LogStore,
)

MIN_BUDGET = 4 * BLOCK_BYTES


def contents(store: LogStore, name: str, stream: int | None = None) -> list[bytes]:
    lines = snapshot_lines(store.snapshot([name]).processes[name])
    return [bytes(line.content) for line in lines if stream is None or line.stream == stream]


# -- bytes as written ----------------------------------------------------------------------------


def test_lines_are_stored_exactly_as_written() -> None:
    hostile = [
        b"\xff\xfe invalid utf-8 \xc3\x28",
        b"\x1b[31mred\x1b[0m and \x1b[1;32mbold green\x1b[0m",
        b"carriage\rreturn",
        b"windows line\r",
        b"nul\x00in\x00the\x00middle\x00",
        b"",
        b"\t tabs \x07 bell \x7f del",
    ]
    store = LogStore()
    store.append("p", STDOUT, b"\n".join(hostile) + b"\n")
    assert contents(store, "p") == hostile
    line = snapshot_lines(store.snapshot(["p"]).processes["p"])[0]
    assert line.text == b"\xff\xfe invalid utf-8 \xc3\x28".decode("utf-8", "replace")
    assert store.counts("p").stdout_lines == len(hostile)


def test_partial_lines_are_joined_across_chunks_and_flushed() -> None:
    store = LogStore()
    for chunk in (b"hel", b"lo ", b"wor", b"ld\nsecond ", b"half"):
        store.append("p", STDOUT, chunk)
    assert contents(store, "p") == [b"hello world"]
    assert store.has_partial("p", STDOUT)
    assert not store.has_partial("p", STDERR)

    assert store.flush("p", STDOUT) == 1
    lines = snapshot_lines(store.snapshot(["p"]).processes["p"])
    assert [bytes(line.content) for line in lines] == [b"hello world", b"second half"]
    assert [line.continued for line in lines] == [False, True]
    assert not store.has_partial("p", STDOUT)
    assert store.flush("p", STDOUT) == 0  # nothing pending: nothing stored


def test_stdout_and_stderr_partials_are_kept_apart() -> None:
    store = LogStore()
    store.append("p", STDOUT, b"out-")
    store.append("p", STDERR, b"err-")
    store.append("p", STDERR, b"one\n")
    store.append("p", STDOUT, b"one\nout-two\n")
    store.append_system("p", "exited with code 0")
    assert contents(store, "p", STDOUT) == [b"out-one", b"out-two"]
    assert contents(store, "p", STDERR) == [b"err-one"]
    assert contents(store, "p", SYSTEM) == [b"exited with code 0"]
    counts = store.counts("p")
    assert (counts.stdout_lines, counts.stderr_lines) == (2, 1)
    assert (counts.stdout_bytes, counts.stderr_bytes) == (16, 8)  # newlines included
    assert counts.bytes == 16 + 8 + len(b"exited with code 0\n")


def test_a_reused_read_buffer_may_be_overwritten_after_append() -> None:
    # The supervisor reads every pipe into one buffer and passes a view of it: the store must
    # copy what it keeps (stored lines and the pending partial line) before the next read.
    buffer = bytearray(64)
    store = LogStore()

    def read(data: bytes) -> memoryview:
        buffer[: len(data)] = data
        return memoryview(buffer)[: len(data)]

    store.append("p", STDOUT, read(b"first\nsec"))
    store.append("p", STDERR, read(b"XXXXXXXXXXXXXXXXXXXXXXXX"))
    store.append("p", STDOUT, read(b"ond\nthird"))
    buffer[:] = b"Z" * len(buffer)
    store.flush("p", STDOUT)
    assert contents(store, "p", STDOUT) == [b"first", b"second", b"third"]
    assert store.has_partial("p", STDERR)
    store.append("p", STDERR, read(b"\n"))
    assert contents(store, "p", STDERR) == [b"X" * 24]


def test_ids_are_strictly_increasing_and_global_across_processes() -> None:
    store = LogStore()
    expected: list[tuple[str, bytes]] = []
    for i in range(300):
        name = ("a", "b", "c")[i % 3]
        stream = (STDOUT, STDERR)[i % 2]
        store.append(name, stream, b"line %d\n" % i + b"more %d\n" % i)
        expected += [(name, b"line %d" % i), (name, b"more %d" % i)]
    lines = [line for snap in store.snapshot().processes.values() for line in snapshot_lines(snap)]
    ids = [line.id for line in lines]
    assert sorted(ids) == list(range(1, len(expected) + 1))  # unique, no gaps, start at 1
    for name in ("a", "b", "c"):
        own = [line.id for line in lines if line.process == name]
        assert all(x < y for x, y in itertools.pairwise(own))
    by_id = sorted(lines, key=lambda line: line.id)
    assert [(line.process, bytes(line.content)) for line in by_id] == expected
    assert store.stats()["next_id"] == len(expected) + 1


# -- long lines ----------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1 << 20, 50 << 20], ids=["1MiB-reads", "one-50MB-chunk"])
def test_a_50mb_line_without_newline_is_split_within_budget(chunk_size: int) -> None:
    total = 50 << 20
    max_line = 64 << 10
    budget = 8 << 20
    data = (np.arange(total, dtype=np.uint64) % 251).astype(np.uint8)
    data[data == 10] = 11  # no newline anywhere
    raw = data.tobytes()
    store = LogStore(budget_bytes=budget, max_line_bytes=max_line)
    for start in range(0, total, chunk_size):
        store.append("p", STDOUT, raw[start : start + chunk_size])
        assert store.stats()["bytes"] <= budget
    assert not store.has_partial("p", STDOUT)  # 50 MiB is a whole number of pieces
    counts = store.counts("p")
    assert counts.split_lines == total // max_line
    assert counts.stdout_lines == total // max_line
    assert store.stats()["evicted_blocks"] > 0

    lines = snapshot_lines(store.snapshot(["p"]).processes["p"])
    assert lines and all(line.continued for line in lines)
    assert all(len(line.content) == max_line for line in lines)
    kept = b"".join(bytes(line.content) for line in lines)
    assert kept == raw[-len(kept) :]  # the newest pieces survive, byte for byte

    store.append("p", STDOUT, b"the end\n")
    last = snapshot_lines(store.snapshot(["p"]).processes["p"])[-1]
    assert (bytes(last.content), last.continued) == (b"the end", False)


def test_a_long_line_with_newline_is_split_and_its_last_piece_ends_it() -> None:
    store = LogStore(max_line_bytes=256)
    line = bytes(range(32, 127)) * 10  # 950 bytes
    store.append("p", STDOUT, line[:300])
    store.append("p", STDOUT, line[300:] + b"\nshort\n")
    got = snapshot_lines(store.snapshot(["p"]).processes["p"])
    assert [len(x.content) for x in got] == [256, 256, 256, 182, 5]
    assert [x.continued for x in got] == [True, True, True, False, False]
    assert b"".join(bytes(x.content) for x in got[:4]) == line
    assert store.counts("p").split_lines == 3


def test_split_lines_counts_only_pieces_cut_for_length() -> None:
    store = LogStore(max_line_bytes=256)
    store.append("p", STDOUT, b"x" * 256)  # exactly one full piece, cut while pending
    assert store.counts("p").split_lines == 1
    store.append("p", STDOUT, b"y" * 600 + b"\n" + b"partial", flush=True)
    # y-line: 256 + 256 cut for length, 88 + newline ends it; "partial" flushed, not split.
    assert store.counts("p").split_lines == 3
    assert contents(store, "p")[-1] == b"partial"


@settings(max_examples=300, deadline=None)
@given(lengths=st.lists(st.integers(1, 40), min_size=1, max_size=60), max_line=st.integers(1, 30))
def test_the_cheap_line_length_probe_never_misses_a_long_line(
    lengths: list[int], max_line: int
) -> None:
    ends = np.cumsum(lengths)
    if logstore._no_line_longer_than(ends, max_line):
        assert max(lengths) <= max_line


def test_the_cheap_line_length_probe_passes_ordinary_output() -> None:
    # The point of the probe: a chunk of short lines is proven without measuring each line.
    ends = np.cumsum(np.full(100_000, 11))
    assert logstore._no_line_longer_than(ends, logstore.MAX_LINE_BYTES)
    assert not logstore._no_line_longer_than(np.append(ends, ends[-1] + 70_000), 65_536)


def test_max_line_above_the_block_size_is_refused() -> None:
    # A piece must fit in a block; a larger limit would make the writer loop forever.
    with pytest.raises(ValueError):
        LogStore(max_line_bytes=BLOCK_BYTES + 1)


# -- memory budget -------------------------------------------------------------------------------


def test_metadata_is_an_end_offset_a_line_plus_a_run_per_append() -> None:
    store = LogStore()
    seq = b"".join(b"%d\n" % i for i in range(1, 100_001))
    for start in range(0, len(seq), 4096):  # pipe-sized reads that cut lines anywhere
        store.append("seq", STDOUT, seq[start : start + 4096])
    (ref,) = store.snapshot().processes["seq"].blocks
    block = ref.block
    assert block.n == 100_000
    # One read, one run (or none, when it continued the last one in the same millisecond).
    assert block.runs <= len(range(0, len(seq), 4096))
    assert store.stats()["bytes"] == len(seq) + 4 * 100_000 + 17 * block.runs
    assert store.stats()["bytes"] - len(seq) < 4.2 * 100_000  # was 17 bytes a line
    assert [bytes(line.content) for line in snapshot_lines(store.snapshot().processes["seq"])][
        -3:
    ] == [b"99998", b"99999", b"100000"]


def test_runs_keep_ids_times_and_streams_of_interleaved_appends() -> None:
    store = LogStore()
    store.append("a", STDOUT, b"a1\na2\n")
    store.append("b", STDOUT, b"b1\n")  # takes id 3: a's next lines start a new run
    store.append("a", STDOUT, b"a3\n")
    store.append("a", STDERR, b"e1\n")  # another stream: another run
    store.append("a", STDERR, b"partial")
    store.flush("a", STDERR)  # no newline: flagged, a run of its own
    store.append("a", STDERR, b"e2\n")
    lines = snapshot_lines(store.snapshot().processes["a"])
    assert [(line.id, line.stream, line.continued, bytes(line.content)) for line in lines] == [
        (1, STDOUT, False, b"a1"),
        (2, STDOUT, False, b"a2"),
        (4, STDOUT, False, b"a3"),
        (5, STDERR, False, b"e1"),
        (6, STDERR, True, b"partial"),
        (7, STDERR, False, b"e2"),
    ]
    block = lines[0].block
    assert block.runs == 5  # a1-a2, a3, e1, partial, e2
    assert block.index_after_id(3, block.n) == 2 and block.index_after_id(4, block.n) == 3
    assert block.index_after_id(0, block.n) == 0 and block.index_after_id(7, block.n) == 6
    assert block.ids_of(0, 6).tolist() == [1, 2, 4, 5, 6, 7]
    assert block.flags_of(1, 5).tolist() == [STDOUT, STDOUT, STDERR, STDERR | 0b100]


def test_budget_evicts_whole_oldest_blocks() -> None:
    budget = MIN_BUDGET
    store = LogStore(budget_bytes=budget)
    expected: dict[int, tuple[str, bytes]] = {}
    next_id = 1
    for i in range(400):
        name = "a" if i % 3 else "b"
        lines = [b"%s %06d %s" % (name.encode(), i * 1000 + k, b"." * 60) for k in range(1000)]
        store.append(name, STDOUT, b"\n".join(lines) + b"\n")
        for line in lines:
            expected[next_id] = (name, line)
            next_id += 1
        assert store.stats()["bytes"] <= budget
    stats = store.stats()
    assert stats["evicted_blocks"] > 0
    snap = store.snapshot()
    held = 0
    for name, process in snap.processes.items():
        lines = snapshot_lines(process)
        held += sum(ref.block.nbytes() for ref in process.blocks)
        # What is left of each process is its newest lines, with no hole: whole blocks went.
        ids = [line.id for line in lines]
        own_ids = [i for i, (owner, _) in expected.items() if owner == name]
        assert ids == own_ids[len(own_ids) - len(ids) :]
        assert all(bytes(line.content) == expected[line.id][1] for line in lines)
    assert held == stats["bytes"]  # the accounting matches the blocks actually held


def test_budget_holds_with_many_processes_each_with_a_partly_filled_block() -> None:
    budget = MIN_BUDGET
    store = LogStore(budget_bytes=budget)
    line = b"z" * 99 + b"\n"
    for round_ in range(3):
        for p in range(12):
            store.append(f"p{p}", STDOUT, line * 3000)  # ~300 KB each round, no block fills
            assert store.stats()["bytes"] <= budget, (round_, p)
    held = sum(
        ref.block.nbytes() for snap in store.snapshot().processes.values() for ref in snap.blocks
    )
    assert held == store.stats()["bytes"]
    # The newest lines are still there.
    assert contents(store, "p11")[-1] == line[:-1]


def test_a_snapshot_keeps_an_evicted_block_readable() -> None:
    store = LogStore(budget_bytes=MIN_BUDGET)
    store.append("p", STDOUT, b"".join(b"old line %d\n" % i for i in range(50_000)))
    snapshot = store.snapshot(["p"])
    before = [line_key(line) for line in snapshot_lines(snapshot.processes["p"])]
    first_block = snapshot.processes["p"].blocks[0].block
    filler = b"f" * 199 + b"\n"
    for _ in range(100):  # 1 MB a round: the first block must be gone well before the end
        if all(ref.block is not first_block for ref in store.snapshot(["p"]).processes["p"].blocks):
            break
        store.append("p", STDOUT, filler * 5000)
    else:
        pytest.fail("the oldest block was never evicted")
    assert [line_key(line) for line in snapshot_lines(snapshot.processes["p"])] == before


# -- snapshots -----------------------------------------------------------------------------------


def test_snapshots_copy_no_line_bytes() -> None:
    store = LogStore()
    store.append("p", STDOUT, b"first\nsecond\nthird\n")
    one = store.snapshot(["p"]).processes["p"]
    two = store.snapshot(["p"]).processes["p"]
    lines = snapshot_lines(one)
    block = one.blocks[0].block
    for line in lines:
        view = line.content
        assert isinstance(view, memoryview)
        assert view.obj is block.data  # a window on the block's own buffer
        assert np.shares_memory(np.frombuffer(view, dtype=np.uint8), block.data)
    assert [ref.block for ref in one.blocks] == [ref.block for ref in two.blocks]
    assert all(a.block is b.block for a, b in zip(one.blocks, two.blocks, strict=True))


@pytest.mark.parametrize("run", range(3))
def test_a_snapshot_stays_unchanged_while_a_writer_appends(run: int) -> None:
    store = LogStore(budget_bytes=MIN_BUDGET)
    # Enough short lines that the active block's metadata spans several pages.
    store.append("p", STDOUT, b"".join(b"before %d\n" % i for i in range(3000)))
    store.append("p", STDERR, b"an error\n")
    store.append("p", STDOUT, b"pending without newline")
    snapshot = store.snapshot(["p"])
    assert snapshot.processes["p"].blocks[-1].block.sealed is False  # the live block
    expected = [line_key(line) for line in snapshot_lines(snapshot.processes["p"])]
    assert len(expected) == 3001

    live_block = snapshot.processes["p"].blocks[-1].block
    failed = threading.Event()

    def writer() -> None:
        # Short and long lines, both streams, ~7 MB: the snapshot's live block fills and seals
        # (its metadata narrowed, its spare pages given back), and the budget evicts it.
        for _ in range(1500):
            if failed.is_set():
                return
            store.append(
                "p", STDOUT, b" tail\n" + b"".join(b"w %d %d\n" % (run, j) for j in range(200))
            )
            store.append("p", STDERR, b"e" * 3000 + b"\n")

    thread = threading.Thread(target=writer)
    thread.start()
    reads = 0
    try:
        while thread.is_alive() or reads == 0:
            assert [line_key(line) for line in snapshot_lines(snapshot.processes["p"])] == expected
            reads += 1
    except BaseException:
        failed.set()
        raise
    finally:
        thread.join()
    current = store.snapshot(["p"]).processes["p"].blocks
    assert all(ref.block is not live_block for ref in current)  # evicted meanwhile
    assert [line_key(line) for line in snapshot_lines(snapshot.processes["p"])] == expected


# -- the reference model -------------------------------------------------------------------------


# Appends of a few short lines take a path of their own (``_append_small``); with
# ``SMALL_APPEND`` at 0 every append takes the general one, whose newline scan is C where it was
# built and numpy where not: all three are held to the model.
BOTH_APPEND_PATHS = pytest.mark.parametrize(
    ("small_append", "scan"),
    [(logstore.SMALL_APPEND, "native"), (0, "native"), (0, "numpy")],
    ids=["small-appends", "c-scan", "numpy-scan"],
)


@BOTH_APPEND_PATHS
@settings(max_examples=150, deadline=None)
@given(ops=op_lists(), max_line=MAX_LINE, geometry=GEOMETRY)
def test_store_matches_the_reference_model(
    ops: list, max_line: int, geometry: tuple, small_append: int, scan: str
) -> None:
    harness = Harness(max_line, *geometry, small_append=small_append, scan=scan)
    with harness.running() as h:
        snapshots = []
        for op in [*ops, ("check",)]:
            if op[0] != "check":
                h.apply(op)
                continue
            snap = h.store.snapshot()
            for name in h.store.process_names():
                got = [line_key(line) for line in snapshot_lines(snap.processes[name])]
                assert got == [line.key() for line in h.model.of(name)]
                counts = h.store.counts(name)
                assert [
                    counts.stdout_lines,
                    counts.stderr_lines,
                    counts.bytes,
                    counts.split_lines,
                ] == h.model.counts[name]
                for stream in (STDOUT, STDERR):
                    assert h.store.has_partial(name, stream) == h.model.has_partial(name, stream)
            snapshots.append((snap, [line.key() for line in h.model.lines]))
        # Every earlier snapshot still reads exactly what it read when it was taken.
        for snap, expected in snapshots:
            lines = sorted(
                (line for s in snap.processes.values() for line in snapshot_lines(s)),
                key=lambda line: line.id,
            )
            assert [line_key(line) for line in lines] == expected


@BOTH_APPEND_PATHS
@settings(max_examples=150, deadline=None)
@given(
    ops=op_lists(),
    max_line=MAX_LINE,
    geometry=st.sampled_from([(64, 4), (64, 16)]),
    extra=st.integers(0, 4),
)
def test_eviction_keeps_the_budget_and_the_newest_lines(
    ops: list, max_line: int, geometry: tuple, extra: int, small_append: int, scan: str
) -> None:
    # 16 lines of metadata outweigh 64 bytes of text: three live blocks exceed a small budget.
    budget = (4 + extra) * geometry[0]
    harness = Harness(max_line, *geometry, budget=budget, small_append=small_append, scan=scan)
    with harness.running() as h:
        for op in ops:
            if op[0] == "check":
                continue
            h.apply(op)
            assert h.store.stats()["bytes"] <= budget
        snap = h.store.snapshot()
        held = 0
        for name in h.store.process_names():
            got = [line_key(line) for line in snapshot_lines(snap.processes[name])]
            want = [line.key() for line in h.model.of(name)]
            assert got == want[len(want) - len(got) :]  # a suffix: the oldest went first
            held += sum(ref.block.nbytes() for ref in snap.processes[name].blocks)
        assert held == h.store.stats()["bytes"]


# -- the C newline scan --------------------------------------------------------------------------


def test_the_c_newline_scan_is_built() -> None:
    # setup.py builds it where a compiler is at hand (every machine this project is tested on);
    # without it the store still works, through numpy, but captures fast output ~25% slower.
    assert logstore._newlines is not None, "engine/logs/_newlines.c was not built: pip install -e ."


def numpy_line_ends(data: bytes) -> list[int]:
    return (np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1).tolist()


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=200)
    | st.lists(st.sampled_from([b"\n", b"x", b"\n\n", b"0123456789abcdef"])).map(b"".join),
    skip=st.integers(0, 17),
)
def test_the_c_newline_scan_finds_what_numpy_finds(data: bytes, skip: int) -> None:
    # Offsets from a view that starts anywhere (unaligned loads), lengths across the 16-byte steps.
    view = memoryview(data)[skip:]
    room = np.zeros(len(view) + 1, dtype=np.uint32)
    count = logstore._newlines.line_ends(view, room)
    assert room[:count].tolist() == numpy_line_ends(bytes(view))
    assert not room[count:].any()  # nothing written past what it returned


def test_the_c_newline_scan_stops_when_its_output_is_full() -> None:
    data = b"a\n" * 40
    room = np.zeros(5, dtype=np.uint32)
    assert logstore._newlines.line_ends(data, room) == 5
    assert room.tolist() == [2, 4, 6, 8, 10]
    assert logstore._newlines.line_ends(b"no newline", room) == 0


def test_the_c_newline_scan_refuses_an_output_that_is_not_uint32() -> None:
    for wrong in (np.zeros(4, dtype=np.int64), np.zeros(4, dtype=np.float32), bytearray(16)):
        with pytest.raises(TypeError, match="uint32"):
            logstore._newlines.line_ends(b"a\n", wrong)
    with pytest.raises(ValueError, match="contiguous"):  # numpy's refusal
        logstore._newlines.line_ends(b"a\n", np.zeros(4, dtype=np.uint32)[::2])
    with pytest.raises(BufferError, match="writable"):
        logstore._newlines.line_ends(b"a\n", bytes(16))
    with pytest.raises(TypeError):
        logstore._newlines.line_ends(b"a\n")


def test_geometry_patch_is_undone() -> None:
    # The harness shrinks blocks for the property tests; nothing of that may leak.
    assert logstore.BLOCK_BYTES == BLOCK_BYTES == 1 << 20
    assert logstore.time.time() > 0 and logstore.time.__name__ == "time"


# -- block memory --------------------------------------------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _identity(fd: int) -> tuple[int, int]:
    stat = os.fstat(fd)
    return stat.st_dev, stat.st_ino


def _open_inodes() -> set[tuple[int, int]]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
            inodes.add(_identity(int(fd)))
    return inodes


def test_a_block_takes_bulk_appends_through_its_memfd_and_closes_it_when_sealed() -> None:
    store = LogStore(budget_bytes=64 << 20)
    line = b"x" * 99 + b"\n"
    chunk = line * ((1 << 20) // len(line))  # just under a block's bytes
    store.append("fast", STDOUT, chunk)
    block = store._logs["fast"]._active
    assert block is not None and block._fd is not None
    assert os.readlink(f"/proc/self/fd/{block._fd}").startswith("/memfd:lacrimosa-block")
    memfd = _identity(block._fd)
    store.append("fast", STDOUT, chunk)  # does not fit: the first block seals
    assert block.sealed and block._fd is None
    second = store._logs["fast"]._active
    assert second is not None and second._fd is not None
    assert memfd not in _open_inodes() and _identity(second._fd) in _open_inodes()
    assert contents(store, "fast") == [line[:-1]] * (2 * len(chunk) // len(line))


def test_blocks_of_a_dropped_store_leave_no_descriptor_open() -> None:
    gc.collect()  # earlier tests' stores
    before = _open_fds()
    store = LogStore(budget_bytes=64 << 20)
    for i in range(20):
        store.append(f"p{i}", STDOUT, b"a line\n" * 1000)
    assert _open_fds() >= before + 20  # one memfd per active block
    del store
    gc.collect()
    assert _open_fds() == before


def test_out_of_descriptors_a_block_is_an_anonymous_mapping_and_loses_nothing() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers: list[int] = []
    store = LogStore(budget_bytes=64 << 20)
    resource.setrlimit(resource.RLIMIT_NOFILE, (_open_fds() + 8, hard))
    try:
        with contextlib.suppress(OSError):
            while True:
                fillers.append(os.open("/dev/null", os.O_RDONLY))
        store.append("p", STDOUT, b"one\ntwo\n" * 500)
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    block = store._logs["p"]._active
    assert block is not None and block._fd is None
    store.append("p", STDOUT, b"three\n")
    assert contents(store, "p") == [b"one", b"two"] * 500 + [b"three"]


def test_a_write_the_memfd_refuses_goes_through_the_mapping() -> None:
    store = LogStore(budget_bytes=64 << 20)
    store.append("p", STDOUT, b"first\n" * 400)
    block = store._logs["p"]._active
    assert block is not None and block._fd is not None and block._close_fd is not None
    block._close_fd()  # the descriptor gone behind the block's back: pwrite fails (EBADF)
    store.append("p", STDOUT, b"second\n" * 400)
    assert contents(store, "p") == [b"first"] * 400 + [b"second"] * 400
