"""The real CLI against a real running console (``lacrimosa up --headless`` in a child process)."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import pid_alive, wait_until

from engine.paths import socket_path

CLI = [sys.executable, "-m", "api.cli"]
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
            self.run("shutdown")
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.communicate()
        return self.proc.returncode

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
    folder: Path, config: str = CONFIG, config_name: str = "lacrimosa.toml"
) -> RunningConsole:
    """``lacrimosa up --headless`` in ``folder`` with this config, once its socket answers."""
    (folder / config_name).write_text(config)
    proc = subprocess.Popen(
        [*CLI, "up", "--headless"],
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
    follower = subprocess.Popen(
        [*CLI, "logs", "ticker", "--follow", "--lines", "1", "--json"],
        cwd=console.folder,
        env=cli_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        seen = [json.loads(follower.stdout.readline()) for _ in range(5)]
        ticks = [int(x["text"].split()[1]) for x in seen]
        assert ticks == list(range(ticks[0], ticks[0] + 5))  # consecutive, none lost, in order
    finally:
        follower.terminate()
        follower.wait(10)
        follower.stdout.close()


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
            b'{"op": "ps"}\n',
        ],
    )
    assert [r["ok"] for r in replies] == [False] * 6 + [True]
    assert all(r["error"]["code"] == "invalid_request" for r in replies[:6])
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
