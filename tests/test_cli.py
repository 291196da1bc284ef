"""The real CLI against a real running console (``lacrimosa up --headless`` in a child process)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from helpers import HEAVY_FOR_ONE_SHOT, Terminal, bare_python, pid_alive, wait_until

from lacrimosa.api.client import ConsoleLost, ControlClient
from lacrimosa.api.protocol import dispatch, follow
from lacrimosa.api.server import ControlServer
from lacrimosa.engine.errors import ConsoleError
from lacrimosa.engine.paths import socket_path

CLI = [sys.executable, "-m", "lacrimosa.api.cli"]
REPO = Path(__file__).resolve().parent.parent

CONFIG = f"""
[processes.ticker]
cmd = "{sys.executable} -u -c 'import time\\nfor i in range(100000):\\n    print(\\"tick\\", i, flush=True); time.sleep(0.05)'"

[processes.mixed]
cmd = "echo out-line; echo err-line >&2; echo 'needle here'; sleep 300"

[processes.grand]
cmd = "sleep 300 & sleep 300"
stop_timeout = 2
"""


def cli_env() -> dict[str, str]:
    """The environment of a CLI call: this checkout's packages, no console chosen by env."""
    env = {k: v for k, v in os.environ.items() if k != "LACRIMOSA_HOME"}
    env["PYTHONPATH"] = str(REPO)
    return env


def cli(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, env=cli_env(), timeout=timeout
    )


_started: list[RunningConsole] = []


class RunningConsole:
    def __init__(self, folder: Path, proc: subprocess.Popen[str]) -> None:
        self.folder = folder
        self.proc = proc

    def stop(self) -> int:
        """``lacrimosa shutdown`` if it still runs (SIGKILL if that fails); its exit status."""
        if self.proc.poll() is None:
            try:
                self.run("shutdown")
                self.proc.wait(20)
            except subprocess.TimeoutExpired:  # a console that stopped answering
                self.proc.kill()
        self.proc.communicate()
        return self.proc.returncode

    @contextlib.contextmanager
    def follow(self, *args: str) -> Iterator[IO[str]]:
        """A long-running CLI call (``logs -f``); yields its stdout, ends it on the way out."""
        proc = subprocess.Popen(
            [*CLI, *args], cwd=self.folder, env=cli_env(), stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        try:
            yield proc.stdout
        finally:
            proc.terminate()
            proc.wait(10)
            proc.stdout.close()

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return cli(*args, cwd=self.folder, timeout=timeout)

    def ps(self) -> dict[str, dict]:
        result = self.run("ps", "--json")
        assert result.returncode == 0, result.stderr
        return {p["name"]: p for p in json.loads(result.stdout)["processes"]}

    def child_pids(self) -> list[int]:
        """Every process in the console's child process groups (grandchildren included)."""
        groups = {p["pid"] for p in self.ps().values() if p["pid"]}
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[2]) in groups and fields[0] != "Z":
                    pids.append(int(entry.name))
        return pids


def start_console(
    folder: Path,
    config: str = CONFIG,
    config_name: str = "lacrimosa.toml",
    up_args: tuple[str, ...] = (),
) -> RunningConsole:
    """``lacrimosa up --headless`` in ``folder`` with this config, once its socket answers."""
    (folder / config_name).write_text(config)
    proc = subprocess.Popen(
        [*CLI, "up", "--headless", *up_args],
        cwd=folder,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    console = RunningConsole(folder, proc)
    _started.append(console)
    wait_until(lambda: proc.poll() is not None or console.run("ps").returncode == 0, timeout=20)
    assert proc.poll() is None, proc.communicate()
    return console


@pytest.fixture(autouse=True)
def _no_console_left_behind() -> Iterator[None]:
    """Whatever a test did or failed to do, every console it started is stopped after it."""
    yield
    while _started:
        _started.pop().stop()


@pytest.fixture
def console(tmp_path: Path) -> RunningConsole:
    running = start_console(tmp_path)
    wait_until(lambda: all(p["state"] == "running" for p in running.ps().values()))
    return running


def test_ps_lists_every_process_as_text_and_json(console: RunningConsole) -> None:
    text = console.run("ps")
    assert text.returncode == 0
    header, *rows = text.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "STATE", "PID"]
    assert [row.split()[0] for row in rows] == ["ticker", "mixed", "grand"]
    procs = console.ps()
    assert set(procs) == {"ticker", "mixed", "grand"}
    for info in procs.values():
        assert info["state"] == "running"
        assert pid_alive(info["pid"])
        assert info["restarts"] == 0


def test_logs_selects_by_stream_grep_lines_and_since(console: RunningConsole) -> None:
    wait_until(lambda: console.ps()["mixed"]["stderr_lines"] == 1)
    assert console.run("logs", "mixed", "--stdout").stdout.splitlines() == [
        "out-line",
        "needle here",
    ]
    assert console.run("logs", "mixed", "--stderr").stdout.splitlines() == ["err-line"]
    assert console.run("logs", "mixed", "--grep", "needle").stdout.splitlines() == ["needle here"]
    wait_until(lambda: console.ps()["ticker"]["stdout_lines"] >= 10)
    last3 = console.run("logs", "ticker", "--lines", "3").stdout.splitlines()
    assert len(last3) == 3 and all(line.startswith("tick ") for line in last3)
    numbers = [int(line.split()[1]) for line in last3]
    assert numbers == sorted(numbers) and numbers[2] - numbers[0] == 2
    # --since: nothing older than the window (the mixed lines were written at start-up).
    time.sleep(1.2)
    assert console.run("logs", "mixed", "--since", "1s").stdout == ""
    assert "tick" in console.run("logs", "ticker", "--since", "5m").stdout


def test_logs_json_is_one_object_per_line(console: RunningConsole) -> None:
    wait_until(lambda: console.ps()["mixed"]["stdout_lines"] == 2)
    result = console.run("logs", "mixed", "--json")
    assert result.returncode == 0 and result.stderr == ""
    lines = [json.loads(raw) for raw in result.stdout.splitlines()]
    # Order holds within a stream; stdout and stderr are separate pipes, read as they come.
    assert [x["text"] for x in lines if x["stream"] == "stdout"] == ["out-line", "needle here"]
    assert [x["text"] for x in lines if x["stream"] == "stderr"] == ["err-line"]
    assert all(x["process"] == "mixed" and isinstance(x["id"], int) for x in lines)
    assert [x["id"] for x in lines] == sorted(x["id"] for x in lines)


def test_logs_without_name_merges_every_process(console: RunningConsole) -> None:
    wait_until(lambda: console.ps()["mixed"]["stdout_lines"] == 2)
    merged = console.run("logs", "--lines", "1000").stdout.splitlines()
    assert "mixed | err-line" in merged
    assert any(line.startswith("ticker | tick") for line in merged)


def test_logs_follow_streams_new_lines(console: RunningConsole) -> None:
    with console.follow("logs", "ticker", "--follow", "--lines", "1", "--json") as output:
        seen = [json.loads(output.readline()) for _ in range(5)]
        ticks = [int(x["text"].split()[1]) for x in seen]
        assert ticks == list(range(ticks[0], ticks[0] + 5))  # consecutive, none lost, in order


def test_restart_stop_start_change_the_process(console: RunningConsole) -> None:
    before = console.ps()["ticker"]
    result = console.run("restart", "ticker")
    assert result.returncode == 0, result.stderr
    after = console.ps()["ticker"]
    assert after["state"] == "running" and after["restarts"] == 1
    assert after["pid"] != before["pid"] and not pid_alive(before["pid"])

    stopped = console.run("stop", "ticker", "--json")
    assert stopped.returncode == 0
    assert json.loads(stopped.stdout)["process"]["state"] == "stopped"
    assert not pid_alive(after["pid"])

    started = console.run("start", "ticker")
    assert started.returncode == 0
    assert console.ps()["ticker"]["state"] == "running"


def test_stop_takes_the_whole_process_group(console: RunningConsole) -> None:
    group = console.child_pids()
    grand_pid = console.ps()["grand"]["pid"]
    members = [pid for pid in group if os.getpgid(pid) == grand_pid]
    assert len(members) >= 2  # the shell (if it did not exec) and both sleeps
    assert console.run("stop", "grand").returncode == 0
    wait_until(lambda: not any(pid_alive(pid) for pid in members))


def test_exit_codes_for_errors(console: RunningConsole, tmp_path: Path) -> None:
    missing = console.run("restart", "nope")
    assert missing.returncode == 3 and "no such process" in missing.stderr
    missing_json = console.run("logs", "nope", "--json")
    assert missing_json.returncode == 3
    assert json.loads(missing_json.stderr)["error"]["code"] == "no_such_process"
    assert console.run("logs", "ticker", "--lines", "-1").returncode == 2
    assert console.run("logs", "ticker", "--since", "yesterday").returncode == 2
    assert console.run("frobnicate").returncode == 2
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "Procfile").write_text("web: sleep 1\n")
    nobody = cli("ps", cwd=elsewhere)
    assert nobody.returncode == 4 and "no console running" in nobody.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("ps", "--home", str(empty / ".lacrimosa"), cwd=empty).returncode == 4


def test_status_json(console: RunningConsole) -> None:
    status = json.loads(console.run("status", "--json").stdout)
    assert status["pid"] == console.proc.pid
    assert status["processes"] == 3 and status["running"] == 3
    assert status["config"] == str(console.folder / "lacrimosa.toml")


def test_socket_is_owner_only(console: RunningConsole) -> None:
    path = socket_path(console.folder / ".lacrimosa")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600


def _raw_exchange(path: Path, payloads: list[bytes]) -> list[dict]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        reader = sock.makefile("rb")
        replies = []
        for payload in payloads:
            sock.sendall(payload)
            replies.append(json.loads(reader.readline()))
        reader.close()
        return replies


def test_malformed_requests_get_errors_and_the_server_keeps_serving(
    console: RunningConsole,
) -> None:
    path = socket_path(console.folder / ".lacrimosa")
    replies = _raw_exchange(
        path,
        [
            b"this is not json\n",
            b"[1, 2, 3]\n",
            b'{"op": "explode"}\n',
            b'{"op": "logs", "name": "ticker", "lines": "many"}\n',
            b'{"op": "restart"}\n',
            b"\xff\xfe\n",
            b'{"op": "logs", "name": "mixed", "since": Infinity}\n',
            b'{"op": "logs", "name": "mixed", "since": NaN}\n',
            b'{"op": "logs", "name": "mixed", "since": 1e308}\n',
            b'{"op": "logs", "name": "mixed", "since": -1}\n',
            b'{"op": "logs", "name": "mixed", "grep": "\\ud800"}\n',
            b'{"op": "logs", "name": "mixed", "stream": []}\n',
            b'{"op": "logs", "name": "mixed", "stream": "stdin"}\n',
            b'{"op": "ps"}\n',
        ],
    )
    assert [r["ok"] for r in replies] == [False] * 13 + [True]
    assert all(r["error"]["code"] == "invalid_request" for r in replies[:13])
    assert all("malformed JSON" in r["error"]["message"] for r in replies[6:8])
    assert {p["name"] for p in replies[-1]["result"]["processes"]} == {"ticker", "mixed", "grand"}
    # An oversized request is skipped whole and refused; the connection goes on.
    too_large, after = _raw_exchange(path, [b"x" * (2 << 20) + b"\n", b'{"op": "ping"}\n'])
    assert too_large["error"]["message"] == "request too large"
    assert after["result"]["pid"] == console.proc.pid


def test_second_console_for_the_same_project_is_refused(console: RunningConsole) -> None:
    second = console.run("up", "--headless", timeout=30)
    assert second.returncode == 1
    assert "already running" in second.stderr
    assert console.run("ps").returncode == 0


def test_shutdown_stops_every_process_and_the_console(console: RunningConsole) -> None:
    children = console.child_pids()
    assert len(children) >= 4
    assert console.run("shutdown").returncode == 0
    assert console.proc.wait(20) == 0
    wait_until(lambda: not any(pid_alive(pid) for pid in children))
    assert not socket_path(console.folder / ".lacrimosa").exists()
    assert console.run("ps").returncode == 4


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_a_headless_console_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    running = start_console(tmp_path)
    wait_until(lambda: all(p["pid"] for p in running.ps().values()))
    children = running.child_pids()
    running.proc.send_signal(sig)
    assert running.proc.wait(20) == 0
    running.proc.communicate()
    wait_until(lambda: not any(pid_alive(pid) for pid in children))


def test_a_tui_console_whose_terminal_hangs_up_stops_everything_and_exits(
    tmp_path: Path,
) -> None:
    """SSH drops or the terminal window closes under `lacrimosa up` with its TUI: every process
    stops and the console exits, even though the terminal it was drawing on is gone (the TUI's
    writes to it used to block its exit forever, with the socket still answering)."""
    (tmp_path / "lacrimosa.toml").write_text(CONFIG)
    terminal = Terminal([*CLI, "up"], cwd=tmp_path, env=cli_env())
    proc = terminal.proc
    running = RunningConsole(tmp_path, proc)
    _started.append(running)
    reading = threading.Event()
    reading.set()

    def drain() -> None:  # a terminal reads what is drawn; a full pty would block the TUI
        while reading.is_set():
            terminal.shows(b"")
            time.sleep(0.05)

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    try:
        wait_until(lambda: running.run("ps").returncode == 0, timeout=30)
        wait_until(lambda: all(p["pid"] for p in running.ps().values()))
        children = running.child_pids()
    finally:
        reading.clear()
        drainer.join(5)
        terminal.hang_up()  # SIGHUP to the console, its terminal gone
    assert proc.wait(30) in (0, 1)
    wait_until(lambda: not any(pid_alive(pid) for pid in children))
    assert not socket_path(tmp_path / ".lacrimosa").exists()


def test_nothing_survives_kill_9_of_the_console(tmp_path: Path) -> None:
    running = start_console(tmp_path)
    wait_until(lambda: all(p["pid"] for p in running.ps().values()))
    wait_until(lambda: len(running.child_pids()) >= 4)
    children = running.child_pids()
    running.proc.kill()
    running.proc.wait(10)
    running.proc.communicate()
    wait_until(lambda: not any(pid_alive(pid) for pid in children), timeout=15)
    # A new console can start in the same folder: the stale socket is cleaned up.
    assert start_console(tmp_path).stop() == 0


def test_bad_config_is_refused_before_anything_starts(tmp_path: Path) -> None:
    (tmp_path / "lacrimosa.toml").write_text(
        '[processes.ok]\ncmd = "sleep 300"\n\n[processes.bad]\ncmd = "sleep 1"\nrestart = "maybe"\n'
    )
    result = cli("up", "--headless", cwd=tmp_path)
    assert result.returncode == 1
    assert f"{tmp_path / 'lacrimosa.toml'}:6:" in result.stderr
    assert "restart" in result.stderr
    assert not (tmp_path / ".lacrimosa").exists()


def test_procfile_project_and_long_home_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    running = start_console(deep, "hello: echo hello from procfile; sleep 300\n", "Procfile")
    wait_until(lambda: running.run("logs", "hello").stdout == "hello from procfile\n", timeout=20)
    assert len(os.fsencode(socket_path(deep / ".lacrimosa"))) <= 107


class _BrokenConsole:
    """Stands in for a Console whose every call fails with an unexpected (non-lacrimosa) error."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"boom in {name}")


def test_unexpected_errors_become_internal_error_replies(tmp_path: Path) -> None:
    broken: Any = _BrokenConsole(tmp_path / ".lacrimosa")
    reply = dispatch(broken, {"op": "ps"})
    assert reply["ok"] is False and reply["error"]["code"] == "internal"
    assert "RuntimeError" in reply["error"]["message"] and "boom" in reply["error"]["message"]
    followed = list(follow(broken, {"op": "logs", "follow": True}, lambda: True))
    assert [r["error"]["code"] for r in followed] == ["internal"]
    # ping answers without building the whole status.
    assert dispatch(broken, {"op": "ping"}) == {"ok": True, "result": {"pid": os.getpid()}}
    # The server answers (and counts) it on the connection instead of dropping the connection.
    server = ControlServer(broken)
    mine, theirs = socket.socketpair()
    with mine, theirs:
        server._answer(mine, b'{"op": "status"}\n')
        server._answer(mine, b'{"op": "logs", "follow": true}\n')
        theirs.settimeout(10)
        with theirs.makefile("rb") as reader:
            replies = [json.loads(reader.readline()) for _ in range(2)]
    assert [r["error"]["code"] for r in replies] == ["internal", "internal"]
    assert server.internal_errors == 2


def _reader(stream: Any) -> queue.Queue[str]:
    """The lines of ``stream``, as they come, through a queue (so a test can wait with a deadline)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_follow_with_an_empty_first_view_starts_at_the_newest_line(
    console: RunningConsole,
) -> None:
    wait_until(lambda: console.ps()["mixed"]["stdout_lines"] == 2)
    old_ids = [json.loads(raw)["id"] for raw in console.run("logs", "--json").stdout.splitlines()]
    time.sleep(1.2)  # the mixed lines are now older than the --since window below
    with console.follow(
        "logs", "mixed", "-f", "--since", "1s", "--grep", "needle", "--json"
    ) as out:
        lines = _reader(out)
        wait_until(lambda: console.ps()["ticker"]["stdout_lines"] > 40)  # more history, not ours
        assert console.run("restart", "mixed").returncode == 0
        first = json.loads(lines.get(timeout=10))
        assert first["text"] == "needle here" and first["id"] > max(old_ids)
        time.sleep(0.5)
        assert lines.empty()  # the grep is kept: out-line and err-line did not come out


def test_follow_and_shutdown_wait_have_no_read_timeout(tmp_path: Path) -> None:
    running = start_console(
        tmp_path,
        '[processes.quiet]\ncmd = "echo hello; sleep 300"\n\n'
        "[processes.stubborn]\ncmd = \"trap '' TERM; sleep 300\"\nstop_timeout = 2\n",
    )
    home = tmp_path / ".lacrimosa"
    wait_until(lambda: running.run("logs", "quiet").stdout == "hello\n")
    outcome: list[object] = []
    client = ControlClient(home, timeout=0.3)
    batches = client.stream("logs", name="quiet", follow=True)
    assert [x["text"] for x in next(batches)["lines"]] == ["hello"]

    def follow() -> None:
        try:
            outcome.extend(batches)
        except Exception as exc:
            outcome.append(exc)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    follower.join(2)  # nothing new to print for far longer than the client's timeout
    assert follower.is_alive() and outcome == []
    client._sock.shutdown(socket.SHUT_RDWR)  # the test, not the CLI, ends the follow
    follower.join(10)
    # Cut off without the console's end-of-stream reply: that is a lost console, not an end.
    assert not follower.is_alive() and len(outcome) == 1
    assert isinstance(outcome[0], ConsoleLost)
    client.close()
    # `shutdown` waits for the console to hang up: longer than the timeout, as stubborn ignores TERM.
    with ControlClient(home, timeout=0.3) as client:
        assert client.call("shutdown") == {"stopping": True}
        client.wait_closed()
    assert running.proc.wait(20) == 0


def test_a_console_lost_mid_request_is_exit_4_not_a_traceback(tmp_path: Path) -> None:
    home = tmp_path / ".lacrimosa"
    home.mkdir()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(home / "control.sock"))
    listener.listen(4)

    def hang_up_unread() -> None:
        # Closing with the request unread resets the connection: the client's read fails.
        for _ in range(2):
            conn, _ = listener.accept()
            conn.recv(1, socket.MSG_PEEK)
            conn.close()

    server = threading.Thread(target=hang_up_unread, daemon=True)
    server.start()
    try:
        text = cli("ps", "--home", str(home), cwd=tmp_path)
        assert text.returncode == 4 and "lost the console" in text.stderr, text.stderr
        assert "Traceback" not in text.stderr
        as_json = cli("status", "--json", "--home", str(home), cwd=tmp_path)
        assert as_json.returncode == 4
        assert json.loads(as_json.stderr)["error"]["code"] == "no_console"
    finally:
        server.join(10)
        listener.close()


def test_bad_input_is_an_error_not_a_traceback(console: RunningConsole, tmp_path: Path) -> None:
    # A byte that is not UTF-8 in argv (a surrogate escape in Python) is a usage error.
    for args in (("logs", "mixed", "--grep", "\udcff"), ("restart", "\udcff")):
        result = console.run(*args)
        assert result.returncode == 2, result.stderr
        assert "UTF-8" in result.stderr and "Traceback" not in result.stderr
    # A state folder that cannot be created.
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "Procfile").write_text("web: sleep 300\n")
    up = cli("up", "--headless", "--home", "/proc/nope", cwd=tmp_path / "p")
    assert up.returncode == 1, up.stderr
    assert "/proc/nope" in up.stderr and "Traceback" not in up.stderr


def test_a_failed_bind_is_a_console_error_and_leaks_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[socket.socket] = []

    def refuse(self: socket.socket, address: object) -> None:
        made.append(self)
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(socket.socket, "bind", refuse)
    server = ControlServer(_BrokenConsole(tmp_path / ".lacrimosa"))  # type: ignore[arg-type]
    with pytest.raises(ConsoleError, match="Address already in use"):
        server.start()
    assert len(made) == 1 and made[0].fileno() == -1
    monkeypatch.undo()
    # Nothing is held either: the next attempt takes the lock and serves.
    server = ControlServer(_BrokenConsole(tmp_path / ".lacrimosa"))  # type: ignore[arg-type]
    server.start()
    server.close()


def test_two_consoles_for_one_project_are_refused_even_without_the_socket(
    console: RunningConsole,
) -> None:
    # What a race of two `up`s (or a stray rm) leaves: the first console runs, its socket is gone.
    socket_path(console.folder / ".lacrimosa").unlink()
    second = subprocess.Popen(
        [*CLI, "up", "--headless"],
        cwd=console.folder,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = second.communicate(timeout=15)
        assert second.returncode == 1
        assert "already running" in err
    finally:
        if second.poll() is None:
            second.terminate()
            second.communicate(timeout=20)
        console.proc.terminate()  # unreachable through the CLI now
        console.proc.wait(20)


def test_a_shared_socket_folder_open_to_others_is_refused(tmp_path: Path) -> None:
    temp = Path(tempfile.mkdtemp(prefix="lc", dir="/tmp"))
    try:
        shared = temp / f"lacrimosa-{os.getuid()}"
        shared.mkdir()
        shared.chmod(0o777)
        deep = tmp_path / ("d" * 60) / ("e" * 60)
        deep.mkdir(parents=True)
        (deep / "Procfile").write_text("web: sleep 300\n")
        result = subprocess.run(
            [*CLI, "up", "--headless"],
            cwd=deep,
            env={**cli_env(), "TMPDIR": str(temp)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 1, result.stderr
        assert str(shared) in result.stderr and "Traceback" not in result.stderr
        assert list(shared.iterdir()) == []
    finally:
        shutil.rmtree(temp)


def test_usage_errors_are_json_with_json(tmp_path: Path) -> None:
    for args in (
        ("logs", "x", "--lines", "-1", "--json"),
        ("ps", "--json", "--bogus"),
        ("frobnicate", "--json"),
        ("--json",),
    ):
        result = cli(*args, cwd=tmp_path)
        assert result.returncode == 2, args
        assert result.stdout == ""
        assert json.loads(result.stderr)["error"]["code"] == "usage", result.stderr
    plain = cli("logs", "x", "--lines", "-1", cwd=tmp_path)
    assert plain.returncode == 2 and plain.stderr.startswith("usage:")


EVENTS_CONFIG = """
[processes.idle]
cmd = "sleep 300"

[sequencer]
udp = "127.0.0.1:0"
capacity = 1024
blob = "2MiB"
"""


def _events_address(console: RunningConsole) -> tuple[str, int]:
    status = json.loads(console.run("status", "--json").stdout)
    host, _, port = status["sequencer"]["udp"].rpartition(":")
    return host, int(port)


def test_events_are_sent_with_udp_and_read_with_the_cli(tmp_path: Path) -> None:
    from lacrimosa.engine.events.frames import encode_frame

    running = start_console(tmp_path, EVENTS_CONFIG)
    address = _events_address(running)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(b"deploy started\n", address)
        sender.sendto(encode_frame(b"\x00\xffraw", node=4, stream=2), address)
        sender.sendto(b"\xa7LQ", address)  # malformed
        wait_until(
            lambda: json.loads(running.run("status", "--json").stdout)["sequencer"]["received"] == 3
        )

    text = running.run("events")
    assert text.returncode == 0, text.stderr
    first, second = text.stdout.splitlines()
    assert first.startswith("#0 ") and first.endswith("node=0 stream=0  deploy started")
    assert second.startswith("#1 ") and second.endswith("node=4 stream=2  hex:00ff726177")

    document = json.loads(running.run("events", "--json").stdout)  # one JSON document
    assert [e["seq"] for e in document["events"]] == [0, 1]
    assert document["events"][1]["hex"] == "00ff726177" and document["next_seq"] == 2
    only = json.loads(running.run("events", "--stream", "2", "-n", "5", "--json").stdout)
    assert [e["node"] for e in only["events"]] == [4]

    status = running.run("status")
    assert "events    udp 127.0.0.1:" in status.stdout
    assert "malformed 1, bad_checksum 0" in status.stdout

    with running.follow("events", "-f", "--node", "9", "--json") as out:
        lines = _reader(out)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(encode_frame(b"other node", node=1), address)
            sender.sendto(encode_frame(b"followed", node=9), address)
        event = json.loads(lines.get(timeout=10))
        assert (event["text"], event["node"], event["seq"]) == ("followed", 9, 3)
        time.sleep(0.3)
        assert lines.empty()


def test_events_without_a_sequencer_and_up_udp(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    running = start_console(plain, '[processes.idle]\ncmd = "sleep 300"\n')
    result = running.run("events")
    assert result.returncode == 1 and "[sequencer]" in result.stderr
    assert "events    not received" in running.run("status").stdout
    running.stop()

    flagged = tmp_path / "flagged"
    flagged.mkdir()
    (flagged / "lacrimosa.toml").write_text('[processes.idle]\ncmd = "sleep 300"\n')
    bad = cli("up", "--headless", "--udp", "nonsense", cwd=flagged)
    assert bad.returncode == 2 and "--udp" in bad.stderr
    console = start_console(
        flagged, '[processes.idle]\ncmd = "sleep 300"\n', up_args=("--udp", "127.0.0.1:0")
    )
    address = _events_address(console)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(b"via --udp", address)
    wait_until(lambda: "via --udp" in console.run("events").stdout)


def test_a_follower_that_was_lapped_is_told_how_many_it_missed(tmp_path: Path) -> None:
    running = start_console(tmp_path, EVENTS_CONFIG.replace("capacity = 1024", "capacity = 64"))
    address = _events_address(running)
    with running.follow("events", "-f", "--json") as out:
        lines = _reader(out)
        time.sleep(0.3)  # the follower is polling
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for i in range(200):  # in far less than one poll: the 64-slot ring laps
                sender.sendto(f"burst {i}".encode(), address)
        # On a loaded machine the kernel may drop some datagrams: count what was accepted.
        time.sleep(0.5)
        accepted = json.loads(running.run("status", "--json").stdout)["sequencer"]["accepted"]
        assert accepted > 64
        seen, lapped = [], 0
        while len(seen) + lapped < accepted:
            record = json.loads(lines.get(timeout=10))
            if "lapped" in record:
                lapped += record["lapped"]
            else:
                seen.append(record["seq"])
    assert lapped > 0 and seen == sorted(set(seen))  # told, and never a seq twice or back
    assert len(seen) + lapped == accepted and seen[-1] == accepted - 1  # all seen or counted


# -- nothing a child or a datagram writes drives the user's terminal -------------------------------

HOSTILE_CHILD = r"""
import sys
out = sys.stdout.buffer
out.write(b"clip \x1b]52;c;aGVsbG8=\x07 end\n")
out.write(b"title \x1b]0;pwned\x07 end\n")
out.write(b"clear \x1b[2J end\n")
out.write(b"report \x1b[6n end\n")
out.write(b"paste \x1b[201~ end\n")
out.write(b"link \x1b]8;;https://evil.example/\x1b\\shown\x1b]8;;\x1b\\ end\n")
out.write(b"dcs \x1bP1$r\x1b\\ apc \x1b_x\x1b\\ end\n")
out.write(b"c1 \xc2\x9b2J \xc2\x9d0;t\xc2\x9c end\n")
out.write(b"\x1b[31mred\x1b[0m \x1b[1;32mgreen\x1b[0m end\n")
out.write(b"open \x1b]0;never terminated, the rest stays\n")
out.write(b"del \x7f nul \x00 cr \r hidden\n")
out.write(b"crlf\r\n")
out.write(b"hostile done\n")
out.flush()
"""

HOSTILE_SHOWN = [
    "clip ␛]52;c;aGVsbG8=␇ end",
    "title ␛]0;pwned␇ end",
    "clear ␛[2J end",
    "report ␛[6n end",
    "paste ␛[201~ end",
    "link ␛]8;;https://evil.example/␛\\shown␛]8;;␛\\ end",
    "dcs ␛P1$r␛\\ apc ␛_x␛\\ end",
    "c1 \\x9b2J \\x9d0;t\\x9c end",
    "red green end",
    "open ␛]0;never terminated, the rest stays",
    "del ␡ nul ␀ cr ␍ hidden",
    "crlf",
    "hostile done",
]
COLOURED = "\x1b[31mred\x1b[0m \x1b[1;32mgreen\x1b[0m end\x1b[0m"
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
SGR = re.compile("\x1b\\[[0-9;:]*m")


def _hostile_console(tmp_path: Path) -> RunningConsole:
    (tmp_path / "hostile.py").write_text(HOSTILE_CHILD)
    running = start_console(
        tmp_path,
        f'[processes.hostile]\ncmd = "{sys.executable} hostile.py; exec sleep 300"\n'
        '[sequencer]\nudp = "127.0.0.1:0"\n',
    )
    wait_until(lambda: "hostile done" in running.run("logs", "hostile").stdout)
    return running


def _on_a_terminal(
    console: RunningConsole, *args: str, env: dict[str, str] | None = None, timeout: float = 20
) -> str:
    """The CLI's stdout when stdout is a terminal (a pty), newlines as written (no CR added)."""
    master, slave = os.openpty()
    attributes = termios.tcgetattr(slave)
    attributes[1] &= ~termios.OPOST  # the pty passes bytes as written: no \n -> \r\n
    termios.tcsetattr(slave, termios.TCSANOW, attributes)
    try:
        proc = subprocess.Popen(
            [*CLI, *args],
            cwd=console.folder,
            env={**cli_env(), **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not data:
                break
            chunks.append(data)
        _, err = proc.communicate(timeout=timeout)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return b"".join(chunks).decode()


def _assert_inert(output: str, colours: bool) -> None:
    rest = SGR.sub("", output) if colours else output
    assert RAW_CONTROL.search(rest) is None, repr(rest)


def test_logs_show_a_childs_control_sequences_inert(tmp_path: Path) -> None:
    running = _hostile_console(tmp_path)

    piped = running.run("logs", "hostile")  # stdout a pipe: colours stripped too
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.splitlines() == HOSTILE_SHOWN
    _assert_inert(piped.stdout, colours=False)

    merged = running.run("logs", "--grep", "report")  # the merged view's prefix is ours
    assert merged.stdout == "hostile | report ␛[6n end\n"

    on_terminal = _on_a_terminal(running, "logs", "hostile").splitlines()
    assert on_terminal[8] == COLOURED  # colours kept on a terminal, and reset after
    assert on_terminal[:8] + on_terminal[9:] == HOSTILE_SHOWN[:8] + HOSTILE_SHOWN[9:]
    _assert_inert("\n".join(on_terminal), colours=True)

    for no_colour, env in [
        (("--no-color",), {}),
        (("--color=never",), {}),
        ((), {"NO_COLOR": "1"}),
    ]:
        stripped = _on_a_terminal(running, "logs", "hostile", *no_colour, env=env)
        assert stripped.splitlines() == HOSTILE_SHOWN
    # NO_COLOR set but empty is unset; --color=always wins over NO_COLOR and a pipe.
    assert COLOURED in _on_a_terminal(running, "logs", "hostile", env={"NO_COLOR": ""})
    always = cli_env() | {"NO_COLOR": "1"}
    forced = subprocess.run(
        [*CLI, "logs", "hostile", "--color=always"],
        cwd=running.folder,
        env=always,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert COLOURED in forced.stdout.splitlines()
    _assert_inert(forced.stdout, colours=True)

    # --raw: the text as the child wrote it, for a file.
    raw = running.run("logs", "hostile", "--raw").stdout
    for sequence in ("\x1b]52;c;aGVsbG8=\x07", "\x1b[6n", "\x1b[201~", "\x9b2J \x9d0;t\x9c"):
        assert sequence in raw
    assert "\x1b]8;;https://evil.example/\x1b\\shown" in _on_a_terminal(
        running, "logs", "hostile", "--raw"
    )

    # JSON: every control character escaped, the text itself unchanged.
    for output in (running.run("logs", "hostile", "--json").stdout,):
        assert RAW_CONTROL.search(output) is None
        texts = [json.loads(line)["text"] for line in output.splitlines()]
        assert texts[0] == "clip \x1b]52;c;aGVsbG8=\x07 end"
        assert texts[7] == "c1 \x9b2J \x9d0;t\x9c end" and texts[11] == "crlf\r"
    assert RAW_CONTROL.search(_on_a_terminal(running, "logs", "hostile", "--json")) is None

    with running.follow("logs", "hostile", "-f", "--lines", "13") as out:
        followed = [out.readline() for _ in range(13)]
    assert [line.rstrip("\n") for line in followed] == HOSTILE_SHOWN

    refused = running.run("logs", "hostile", "--raw", "--json")
    assert refused.returncode == 2 and "--raw" in json.loads(refused.stderr)["error"]["message"]
    both = running.run("logs", "hostile", "--raw", "--no-color")
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_events_show_c1_controls_inert(tmp_path: Path) -> None:
    running = _hostile_console(tmp_path)
    payload = "csi \x9b6n osc \x9d52;c;aGk=\x9c end"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(payload.encode(), _events_address(running))
    wait_until(lambda: "end" in running.run("events").stdout)
    shown = "csi \\x9b6n osc \\x9d52;c;aGk=\\x9c end"

    piped = running.run("events").stdout
    assert piped.rstrip("\n").endswith("  " + shown)
    _assert_inert(piped, colours=False)
    on_terminal = _on_a_terminal(running, "events")
    assert on_terminal.rstrip("\n").endswith("  " + shown)
    _assert_inert(on_terminal, colours=True)
    assert running.run("events", "--raw").stdout.rstrip("\n").endswith("  " + payload)

    document = running.run("events", "--json").stdout
    assert RAW_CONTROL.search(document) is None and "\\u009b6n" in document
    assert json.loads(document)["events"][0]["text"] == payload
    with running.follow("events", "-f", "--json", "--lines", "1") as out:
        line = out.readline()
    assert RAW_CONTROL.search(line) is None and json.loads(line)["text"] == payload


def test_a_coloured_text_event_is_text_not_hex(tmp_path: Path) -> None:
    """A plain-text event with colour codes (a log line sent as an event) is text: shown with
    its colours kept or stripped and its other escapes inert, as a log line is; a payload with
    NUL or other controls text never carries is binary and shown as hex."""
    running = _hostile_console(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(
            b"plain \x1b[31mred\x1b[0m text \x1b]0;title\x07\r\n", _events_address(running)
        )
        sender.sendto(b"bin \x00\x01\x02", _events_address(running))
    wait_until(lambda: "hex:" in running.run("events").stdout)
    piped = running.run("events").stdout.splitlines()
    assert piped[-2].endswith("  plain red text ␛]0;title␇"), piped
    assert piped[-1].endswith("  hex:62696e20000102"), piped
    coloured = running.run("events", "--color=always").stdout.splitlines()[-2]
    assert coloured.endswith("  plain \x1b[31mred\x1b[0m text ␛]0;title␇\x1b[0m"), coloured
    events = json.loads(running.run("events", "--json").stdout)["events"]
    assert events[-2]["text"] == "plain \x1b[31mred\x1b[0m text \x1b]0;title\x07\r"
    assert events[-1]["hex"] == "62696e20000102" and "text" not in events[-1]


def test_home_and_file_work_before_or_after_the_verb(tmp_path: Path) -> None:
    """The README's first command starts the demo from the repository root (``up -f
    demo/lacrimosa.toml``); the next commands, run in the same root, reach that console with
    ``-f``/``--file`` or ``--home`` on either side of the verb."""
    project = tmp_path / "demo"
    project.mkdir()
    running = start_console(project)
    home = str(project / ".lacrimosa")
    root = tmp_path
    for args in (
        ("ps", "-f", "demo/lacrimosa.toml"),
        ("-f", "demo/lacrimosa.toml", "ps"),
        ("--file", "demo/lacrimosa.toml", "ps"),
        ("ps", "--file", "demo/lacrimosa.toml"),
        ("--home", home, "ps"),
        ("ps", "--home", home),
        ("--home", "/nowhere", "ps", "--home", home),  # after the verb wins
        ("logs", "mixed", "--file", "demo/lacrimosa.toml", "--lines", "1"),
        ("-f", "demo/lacrimosa.toml", "logs", "mixed", "--lines", "1"),
    ):
        result = cli(*args, cwd=root)
        assert result.returncode == 0, (args, result.stderr)
    # logs -f stays --follow after the verb (the CLI contract); before it, -f is the file.
    with running.follow("logs", "mixed", "-f") as out:
        assert _reader(out).get(timeout=10)


def test_no_console_names_the_folder_it_looked_in_and_how(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "lacrimosa.toml").write_text('[processes.idle]\ncmd = "sleep 300"\n')

    nothing_here = cli("ps", cwd=tmp_path)
    assert nothing_here.returncode == 4
    assert "no lacrimosa.toml or Procfile" in nothing_here.stderr
    assert "-f demo/lacrimosa.toml" in nothing_here.stderr  # the config one folder down
    assert "--home" in nothing_here.stderr

    by_file = cli("ps", "-f", "demo/lacrimosa.toml", cwd=tmp_path)
    assert by_file.returncode == 4
    assert (
        "no console running for demo/ (state folder demo/.lacrimosa, from --file)" in by_file.stderr
    ), by_file.stderr

    by_home = cli("--home", str(tmp_path / "state"), "status", "--json", cwd=tmp_path)
    assert by_home.returncode == 4
    message = json.loads(by_home.stderr)["error"]["message"]
    assert message == "no console running with state folder state (from --home)", message

    walked = cli("ps", cwd=demo)
    assert walked.returncode == 4
    assert "state folder .lacrimosa, found lacrimosa.toml" in walked.stderr, walked.stderr

    missing = cli("ps", "-f", "nope.toml", "--json", cwd=tmp_path)
    assert missing.returncode == 2
    assert json.loads(missing.stderr)["error"]["code"] == "invalid_request"


def test_stop_on_a_stopped_process_says_so(console: RunningConsole) -> None:
    first = console.run("stop", "mixed")
    assert first.returncode == 0 and first.stdout == "mixed: stopped, now stopped\n"
    again = console.run("stop", "mixed")
    assert again.returncode == 0 and again.stdout == "mixed: not running, now stopped\n"
    assert json.loads(console.run("stop", "mixed", "--json").stdout)["outcome"] == "not running"


def test_human_status_shows_the_receive_buffer(tmp_path: Path) -> None:
    running = start_console(tmp_path, EVENTS_CONFIG)
    status = json.loads(running.run("status", "--json").stdout)["sequencer"]
    text = running.run("status").stdout
    buffer = next(line for line in text.splitlines() if line.startswith("buffer "))
    granted = status["rcvbuf"]  # as the kernel reports it: twice what it keeps for data
    assert f"{granted // 2 / 2**20:.1f} MiB receive buffer for data" in buffer
    assert f"the kernel reports {granted / 2**20:.1f} MiB" in buffer
    assert ("capped by net.core.rmem_max" in buffer) == (not status["rcvbuf_forced"])
    ingest = next(line for line in text.splitlines() if line.startswith("ingest "))
    assert f"running, pid {status['ingest']['pid']}, restarts 0" in ingest


def test_a_stopped_process_writes_zero_lines_per_second(console: RunningConsole) -> None:
    wait_until(lambda: console.ps()["ticker"]["lines_per_second"] > 0)
    assert console.run("stop", "ticker").returncode == 0
    assert console.ps()["ticker"]["lines_per_second"] == 0  # at once, not a second later


BYTES_CHILD = r"""
import sys, time
out = sys.stdout.buffer
out.write(b"bad \xff\xfe utf8 \xc3\xa9 kept\n")
out.write(b"c1 \x9b2J single byte\n")
out.write(b"esc \x1b]52;c;aGk=\x07 \x1b[31mred\x1b[0m \x1b[6n\n")
out.write(b"surrogate \xed\xa0\x80 overlong \xc0\xaf\n")
out.write(b"crlf\r\n")
out.write(b"prompt> ")
out.flush()
time.sleep(1)  # longer than the store waits for the rest of a line: stored as a piece
out.write(b"answer\nbytes done\n")
out.flush()
"""
BYTES_WRITTEN = (
    b"bad \xff\xfe utf8 \xc3\xa9 kept\n"
    b"c1 \x9b2J single byte\n"
    b"esc \x1b]52;c;aGk=\x07 \x1b[31mred\x1b[0m \x1b[6n\n"
    b"surrogate \xed\xa0\x80 overlong \xc0\xaf\n"
    b"crlf\r\n"
    b"prompt> answer\n"
    b"bytes done\n"
)


def _raw_cli(console: RunningConsole, *args: str) -> bytes:
    result = subprocess.run(
        [*CLI, *args], cwd=console.folder, capture_output=True, env=cli_env(), timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_logs_raw_writes_the_bytes_a_child_wrote(tmp_path: Path) -> None:
    (tmp_path / "bytes.py").write_text(BYTES_CHILD)
    running = start_console(
        tmp_path, f'[processes.bytes]\ncmd = "{sys.executable} bytes.py; exec sleep 300"\n'
    )
    wait_until(lambda: "bytes done" in running.run("logs", "bytes").stdout)

    assert _raw_cli(running, "logs", "bytes", "--raw") == BYTES_WRITTEN
    assert _raw_cli(running, "logs", "--raw", "--grep", "c1") == b"bytes | c1 \x9b2J single byte\n"
    # The wire carries them: text when the line is UTF-8, else base64.
    with ControlClient(tmp_path / ".lacrimosa") as client:
        lines = client.call("logs", name="bytes", raw=True)["lines"]
        assert lines[0]["b64"] == "YmFkIP/+IHV0Zjggw6kga2VwdA==" and "text" not in lines[0]
        assert lines[2]["text"] == "esc \x1b]52;c;aGk=\x07 \x1b[31mred\x1b[0m \x1b[6n"
        assert [line.get("continued", False) for line in lines[5:7]] == [True, False]
        assert client.call("logs", name="bytes")["lines"][0]["text"] == "bad �� utf8 é kept"

    # Following: the same bytes (the first reply and later batches both carry them).
    proc = subprocess.Popen(
        [*CLI, "logs", "bytes", "--raw", "-f"],
        cwd=running.folder,
        env=cli_env(),
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        got = b""
        deadline = time.monotonic() + 20
        fd = proc.stdout.fileno()
        while len(got) < len(BYTES_WRITTEN) and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                got += os.read(fd, 65536)
        assert got == BYTES_WRITTEN
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()

    # Without --raw: shown inert, as before (invalid UTF-8 as U+FFFD, a lone 0x9b included).
    shown = running.run("logs", "bytes").stdout
    _assert_inert(shown, colours=False)
    assert shown.splitlines()[:3] == [
        "bad �� utf8 é kept",
        "c1 �2J single byte",
        "esc ␛]52;c;aGk=␇ red ␛[6n",
    ]
    bad = running.run("logs", "bytes", "--json").stdout.splitlines()[0]
    assert json.loads(bad)["text"] == "bad �� utf8 é kept"


def test_events_raw_writes_the_payload_bytes_as_sent(tmp_path: Path) -> None:
    from lacrimosa.engine.events.frames import encode_frame

    running = start_console(tmp_path, EVENTS_CONFIG)
    binary = b"bin \x00\xff\x1b[2J\x9b end\nsecond line"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(encode_frame(binary, node=5), _events_address(running))
        sender.sendto("esc \x1b]0;t\x07 c1 \x9b6n".encode(), _events_address(running))
        wait_until(
            lambda: json.loads(running.run("status", "--json").stdout)["sequencer"]["received"] == 2
        )
    raw = _raw_cli(running, "events", "--raw")
    first, second = raw.split(b"\n#1 ")
    assert first.startswith(b"#0 ") and first.endswith(b"node=5 stream=0  " + binary)
    assert second.endswith(b"  esc \x1b]0;t\x07 c1 \xc2\x9b6n\n")
    shown = running.run("events").stdout  # without --raw: as before
    assert shown.splitlines()[0].endswith("  hex:" + binary.hex())
    _assert_inert(shown, colours=False)


def test_ps_json_loads_no_heavy_module(console: RunningConsole, tmp_path: Path) -> None:
    """A real `ps --json` round trip, in an interpreter where nothing else loaded anything first
    (no site): none of the modules that made one-shot calls slow come back (api/cli.py)."""
    python, env = bare_python(tmp_path)
    modules = tmp_path / "modules.txt"
    probe = (
        "import sys\n"
        "from lacrimosa.api.cli import main\n"
        "code = main(sys.argv[2:])\n"
        "open(sys.argv[1], 'w').write('\\n'.join(sorted(sys.modules)))\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run(
        [*python, "-c", probe, str(modules), "ps", "--json"],
        cwd=console.folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert {p["name"] for p in json.loads(result.stdout)["processes"]} == {
        "ticker",
        "mixed",
        "grand",
    }
    loaded = set(modules.read_text().split())
    assert "lacrimosa.api.client" in loaded
    assert sorted(loaded & set(HEAVY_FOR_ONE_SHOT)) == []
