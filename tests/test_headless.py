"""``lacrimosa up --headless``: its output (text, JSON, a stalled stdout) and how it ends
(``--exit-with``, ``--abort-on-exit``, ``--exit-when-done``, SIGTERM), through the real CLI."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import pid_alive, wait_until

from lacrimosa.api.headless import OUTPUT_BUFFER_BYTES, BoundedWriter

CLI = [sys.executable, "-m", "lacrimosa.api.cli"]
REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LACRIMOSA_HOME", "NO_COLOR")}
    env["PYTHONPATH"] = str(REPO)
    return env


def up(
    folder: Path, config: str, *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``lacrimosa up --headless ARGS`` in ``folder``, run to its end."""
    (folder / "lacrimosa.toml").write_text(config)
    return subprocess.run(
        [*CLI, "up", "--headless", *args],
        cwd=folder,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextlib.contextmanager
def running_up(folder: Path, config: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``lacrimosa up --headless ARGS`` started in ``folder`` (its output piped); killed on the
    way out if it is still running."""
    (folder / "lacrimosa.toml").write_text(config)
    proc = subprocess.Popen(
        [*CLI, "up", "--headless", *args],
        cwd=folder,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=folder, env=cli_env(), capture_output=True, text=True, timeout=30
    )


SHAPES = r"""
[processes.web]
cmd = "echo hello; echo 'to stderr' >&2; printf 'bell\\007 esc\\033[2J end\\n'"
restart = "never"

[processes.worker-long]
cmd = "sleep 0.3; echo done"
restart = "never"
"""
LINE = re.compile(r"^(\d\d:\d\d:\d\d) (\S+ *) ([|!*]) (.*)$")


def test_text_output_is_prefixed_aligned_marked_and_safe(tmp_path: Path) -> None:
    result = up(tmp_path, SHAPES, "--exit-when-done")
    assert result.returncode == 0, result.stderr
    rows = [LINE.match(line) for line in result.stdout.splitlines()]
    assert all(rows), result.stdout
    # One column for every name (the longest is 11), so the marks line up.
    assert {len(row.group(2)) for row in rows if row} == {len("worker-long")}
    seen = [(row.group(2).strip(), row.group(3), row.group(4)) for row in rows if row]
    assert ("web", "|", "hello") in seen
    assert ("web", "!", "to stderr") in seen
    # Child control characters are shown inert: BEL as its picture, ESC as ␛.
    assert ("web", "|", "bell␇ esc␛[2J end") in seen
    assert ("worker-long", "|", "done") in seen
    for name in ("web", "worker-long"):
        changes = [text for who, mark, text in seen if who == name and mark == "*"]
        assert changes[0].startswith("started (pid ")
        assert changes[-1] == "exited with code 0"
    # A state change comes after the lines its process wrote before it.
    web = [(mark, text) for who, mark, text in seen if who == "web"]
    assert web.index(("*", "exited with code 0")) > web.index(("|", "hello"))
    assert "\x1b" not in result.stdout  # not a terminal: no colour either


def test_json_output_and_the_prefix_flags(tmp_path: Path) -> None:
    result = up(tmp_path, SHAPES, "--exit-when-done", "--output", "json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    lines = [r for r in records if r["stream"] != "system"]
    assert {(r["process"], r["stream"], r["text"]) for r in lines} == {
        ("web", "stdout", "hello"),
        ("web", "stderr", "to stderr"),
        ("web", "stdout", "bell\x07 esc\x1b[2J end"),  # JSON carries it exactly, escaped
        ("worker-long", "stdout", "done"),
    }
    assert all(isinstance(r["id"], int) and isinstance(r["time"], float) for r in lines)
    assert "\\u001b[2J" in result.stdout and "\x1b" not in result.stdout
    changes = [r for r in records if r["stream"] == "system"]
    assert [r["state"] for r in changes if r["process"] == "web"] == ["running", "exited"]
    assert changes[-1]["exit_code"] == 0

    bare = up(tmp_path, SHAPES, "--exit-when-done", "--no-prefix")
    assert bare.returncode == 0, bare.stderr
    assert sorted(bare.stdout.splitlines()) == sorted(
        ["hello", "to stderr", "bell␇ esc␛[2J end", "done"]
    )
    assert "lacrimosa: web exited with code 0" in bare.stderr  # state changes: on stderr

    untimed = up(tmp_path, SHAPES, "--exit-when-done", "--no-timestamps")
    assert "web         | hello" in untimed.stdout.splitlines()


CONTAINER = f"""
[processes.db]
cmd = "sleep 300 & sleep 300"

[processes.web]
cmd = "{PY} -c 'import time; print(\\"serving\\", flush=True); time.sleep(300)'"

[processes.test]
cmd = "sleep 0.5; echo 'ran 3 tests, 1 failed'; exit 3"
"""


def test_exit_with_a_failing_test_process_exits_with_its_code_and_stops_the_rest(
    tmp_path: Path,
) -> None:
    """The container/CI case: `up --headless --exit-with test` exits as `test` did."""
    with running_up(tmp_path, CONTAINER, "--exit-with", "test") as proc:
        leaders = wait_until(
            lambda: (p := _pids(tmp_path)) and p.get("db") and p.get("web") and p,
            timeout=20,
        )
        group = {pid for leader in leaders.values() for pid in _group(leader)}
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err
    assert "test | ran 3 tests, 1 failed" in out
    assert "test * exited with code 3\n" in out  # on-failure, but its exit is the end
    assert "web  * stopped (SIGTERM)" in out and "db   * stopped (SIGTERM)" in out
    assert "stopping every process (test exited with code 3)" in err
    assert not any(pid_alive(pid) for pid in group)


def _pids(folder: Path) -> dict[str, int] | None:
    result = cli(folder, "ps", "--json")
    if result.returncode:
        return None
    return {p["name"]: p["pid"] for p in json.loads(result.stdout)["processes"] if p["pid"]}


def _group(pgid: int) -> set[int]:
    from helpers import group_pids

    return group_pids(pgid) | {pgid}


def test_abort_on_exit_takes_the_first_exit_and_a_signal_is_128_plus_it(tmp_path: Path) -> None:
    config = """
    [processes.steady]
    cmd = "sleep 300"

    [processes.crasher]
    cmd = "sleep 0.3; kill -9 $$"
    """
    result = up(tmp_path, config.replace("\n    ", "\n"), "--abort-on-exit")
    assert result.returncode == 128 + signal.SIGKILL, result.stderr
    assert "crasher * killed by SIGKILL" in result.stdout
    assert "steady  * stopped (SIGTERM)" in result.stdout


def test_exit_when_done_waits_for_every_process_and_takes_the_worst_code(tmp_path: Path) -> None:
    config = """
    [processes.fine]
    cmd = "exit 0"
    restart = "never"

    [processes.bad]
    cmd = "sleep 0.4; exit 2"
    restart = "never"

    [processes.meh]
    cmd = "sleep 0.2; exit 1"
    restart = "never"

    [processes.manual]
    cmd = "sleep 300"
    autostart = false
    """
    started = time.monotonic()
    result = up(tmp_path, config.replace("\n    ", "\n"), "--exit-when-done")
    assert result.returncode == 2, result.stderr
    assert "every process is done (worst status 2)" in result.stderr
    assert time.monotonic() - started < 15


def test_exit_with_an_unknown_process_is_refused_before_anything_starts(tmp_path: Path) -> None:
    result = up(tmp_path, SHAPES, "--exit-with", "nope")
    assert result.returncode == 3
    assert "nope" in result.stderr
    usage = up(tmp_path, SHAPES, "--exit-with", "web", "--abort-on-exit")
    assert usage.returncode == 2 and "not allowed with" in usage.stderr


@pytest.mark.parametrize(("stubborn", "status"), [(False, 0), (True, 143)])
def test_sigterm_stops_everything_and_exits_0_or_143_when_a_stop_needed_sigkill(
    tmp_path: Path, stubborn: bool, status: int
) -> None:
    config = '[processes.calm]\ncmd = "sleep 300"\n'
    if stubborn:
        config += "\n[processes.stubborn]\ncmd = \"trap '' TERM; sleep 300\"\nstop_timeout = 0.5\n"
    with running_up(tmp_path, config) as proc:
        names = {"calm", "stubborn"} if stubborn else {"calm"}
        wait_until(lambda: (p := _pids(tmp_path)) is not None and set(p) == names, timeout=20)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == status
    if stubborn:
        assert "stubborn * stopped (SIGKILL)" in out


FLOOD_LINES = 200_000
FLOOD = f"""
[processes.flood]
cmd = "sleep 0.5; seq 1 {FLOOD_LINES}; sleep 300"

[processes.quiet]
cmd = "sleep 300"
"""


def test_a_stalled_stdout_drops_lines_says_how_many_and_capture_goes_on(tmp_path: Path) -> None:
    """Nobody reads the console's stdout (a real pipe, full): capture, ps and shutdown go on;
    lines that did not fit are dropped and counted, and the output says how many."""
    (tmp_path / "lacrimosa.toml").write_text(FLOOD)
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [*CLI, "up", "--headless"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=write_end,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: _read_all(read_end, chunks), daemon=True)
    try:
        # Capture goes on: every line reaches the store while stdout takes nothing.
        def flood_lines() -> int:
            result = cli(tmp_path, "ps", "--json")
            if result.returncode:
                return 0
            processes = json.loads(result.stdout)["processes"]
            return sum(p["stdout_lines"] for p in processes if p["name"] == "flood")

        wait_until(lambda: flood_lines() == FLOOD_LINES, timeout=30)
        status = json.loads(cli(tmp_path, "status", "--json").stdout)["headless"]
        assert status["lines_dropped"] > 0
        assert re.search(
            r"^output +[\d,]+ lines printed on stdout, [\d,]+ dropped",
            cli(tmp_path, "status").stdout,
            re.M,
        )
        # What waits for stdout is bounded: the pipe's 64 KiB plus the printer's buffer.
        assert status["lines_printed"] * 20 < OUTPUT_BUFFER_BYTES + (1 << 20)
        started = time.monotonic()
        assert cli(tmp_path, "ps").returncode == 0
        assert time.monotonic() - started < 5
        reader.start()  # stdout reads again: the printer says what it dropped
        assert cli(tmp_path, "shutdown").returncode == 0
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if reader.is_alive():
            reader.join(10)
        os.close(read_end)
    text = b"".join(chunks).decode()
    dropped = [
        int(n)
        for n in re.findall(r"^lacrimosa: (\d+) lines dropped: stdout did not keep up$", text, re.M)
    ]
    assert dropped, text[-500:]
    printed = [int(m.group(1)) for m in re.finditer(r"^\S+ flood \| (\d+)$", text, re.M)]
    assert printed[0] == 1 and printed == sorted(printed)
    assert len(printed) + sum(dropped) == FLOOD_LINES


def _read_all(fd: int, into: list[bytes]) -> None:
    while data := os.read(fd, 1 << 16):
        into.append(data)


def test_the_writer_never_holds_more_than_its_bound_and_reports_drops_when_read_again() -> None:
    read_end, write_end = os.pipe()
    writer = BoundedWriter(write_end, 4096, lambda n: f"dropped {n}\n".encode(), "test-writer")
    writer.start()
    try:
        line = b"x" * 99 + b"\n"
        accepted = sum(writer.offer(line, 1) for _ in range(2000))  # 200 KB into a 64 KiB pipe
        assert accepted < 2000 and writer.dropped_lines == 2000 - accepted
        assert writer._size <= 4096  # what waits is within the bound, whatever was offered
        got = bytearray()
        os.set_blocking(read_end, False)

        def drained() -> bool:
            with contextlib.suppress(BlockingIOError):
                got.extend(os.read(read_end, 1 << 16))
            return writer._size == 0

        wait_until(drained)
        os.set_blocking(read_end, True)
        assert writer.offer(b"after\n", 1)
        assert writer.close(5)
        os.close(write_end)
        write_end = -1
        while data := os.read(read_end, 1 << 16):
            got.extend(data)
        # Each time the writer gets going again it says how many it dropped meanwhile (under
        # load that can be more than once while the lines are offered): together, all of them.
        notices = [int(n) for n in re.findall(rb"^dropped (\d+)$", bytes(got), re.M)]
        assert notices and sum(notices) == 2000 - accepted
        assert got.endswith(f"dropped {notices[-1]}\nafter\n".encode())
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


HONCHO_PROCFILE = (
    "web: echo hello from web; echo oops >&2; sleep 0.5; exit 3\nworker: echo working; sleep 300\n"
)
HONCHO_LINE = re.compile(r"^(\d\d:\d\d:\d\d) (\S+ *) \| (.*)$")


def test_the_headless_output_has_honchos_shape_and_abort_on_exit_its_status(
    tmp_path: Path,
) -> None:
    """The same Procfile through `honcho start` and `lacrimosa up --headless --abort-on-exit`:
    the same lines with the same `HH:MM:SS name | line` prefix (a column for the names), and
    the same exit status when a process exits. lacrimosa marks stderr with `!` and writes its
    state changes under each process's name (`*`); honcho has a `system` pseudo-process."""
    (tmp_path / "Procfile").write_text(HONCHO_PROCFILE)
    honcho = subprocess.run(
        [sys.executable, "-m", "honcho", "start"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    ours = subprocess.run(
        [*CLI, "up", "--headless", "--abort-on-exit"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert honcho.returncode == ours.returncode == 3, ours.stderr
    theirs_rows = [HONCHO_LINE.match(line) for line in honcho.stdout.splitlines()]
    assert all(theirs_rows), honcho.stdout
    our_rows = [LINE.match(line) for line in ours.stdout.splitlines()]
    assert all(our_rows), ours.stdout
    # Each aligns its names in one column.
    assert len({len(row.group(2)) for row in theirs_rows if row}) == 1
    assert len({len(row.group(2)) for row in our_rows if row}) == 1
    child_lines = {
        (row.group(2).strip().removesuffix(".1"), row.group(3))
        for row in theirs_rows
        if row and row.group(2).strip() != "system"
    }
    assert child_lines == {("web", "hello from web"), ("web", "oops"), ("worker", "working")}
    assert {
        (row.group(2).strip(), row.group(4)) for row in our_rows if row and row.group(3) != "*"
    } == child_lines
    assert "web    * exited with code 3" in ours.stdout  # honcho: `web.1 stopped (rc=3)`
    assert "worker * stopped (SIGTERM)" in ours.stdout  # honcho: `worker.1 stopped (rc=-15)`


def test_state_changes_waiting_to_be_printed_are_bounded(console) -> None:
    """More changes than MAX_PENDING_CHANGES before the printer takes them: the oldest are
    kept, the rest dropped and counted (a crash-looping project cannot grow the queue)."""
    from lacrimosa.api.headless import MAX_PENDING_CHANGES, HeadlessPrinter, OutputStyle

    c = console('[processes.a]\ncmd = "sleep 300"\n')
    read_end, write_end = os.pipe()
    printer = HeadlessPrinter(c, OutputStyle(), out_fd=write_end, err_fd=write_end)
    try:
        for _ in range(MAX_PENDING_CHANGES + 100):
            printer._seen.clear()  # every call now sees a change of `a`
            printer._on_change()
        assert len(printer._changes) == MAX_PENDING_CHANGES
        assert printer.stats()["lines_dropped"] == 100
    finally:
        os.close(read_end)
        os.close(write_end)


def test_exit_with_takes_an_instance_of_a_formation(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text(
        'test: if [ "$PS" = test.2 ]; then sleep 0.3; exit 7; fi; sleep 300\n'
    )
    result = subprocess.run(
        [*CLI, "up", "--headless", "-m", "test=2", "--exit-with", "test.2"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 7, result.stderr
    assert "test.2 * exited with code 7" in result.stdout
    assert "test.1 * stopped (SIGTERM)" in result.stdout
