"""The supervisor with real child processes: capture, restart policies, backoff, stop, cleanup.

Commands run under ``/bin/sh -c``; ``{PY}`` is this interpreter. Nothing here sleeps to wait:
every wait is ``wait_until`` with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import group_pids, pid_alive, wait_until, write_config

from lacrimosa.engine.console import Console
from lacrimosa.engine.errors import ConsoleError, NoSuchProcess
from lacrimosa.engine.logs.query import LogQuery, LogView
from lacrimosa.engine.logs.store import STDERR, STDOUT, SYSTEM
from lacrimosa.engine.processes import supervisor
from lacrimosa.engine.processes.guardian import tagged_pids
from lacrimosa.engine.processes.supervisor import (
    COALESCE_BELOW,
    COALESCE_WAKEUPS,
    STRAY_SWEEP_INTERVAL,
    STRAY_SWEEPS,
    ProcessInfo,
    ReadHistory,
)

PY = sys.executable
REPO = Path(__file__).resolve().parent.parent
MakeConsole = Callable[..., Console]


def texts(console: Console, name: str, stream: int | None = None) -> list[str]:
    view = console.query(LogQuery(processes=(name,), stream=stream))
    return [line.text for line in view]


def state_of(console: Console, name: str) -> str:
    return console.process(name).state


def all_group_pids(infos: list[ProcessInfo]) -> set[int]:
    return {pid for info in infos if info.pid for pid in group_pids(info.pid)}


# -- capture -------------------------------------------------------------------------------------


def test_stdout_and_stderr_are_captured_apart(console: MakeConsole) -> None:
    c = console("""
        [processes.both]
        cmd = '''printf 'out one\\nout two\\n'; printf 'err one\\n' >&2
                 printf 'last words'; exit 0'''
        restart = "never"
    """)
    wait_until(lambda: state_of(c, "both") == "exited")
    assert texts(c, "both", STDOUT) == ["out one", "out two", "last words"]
    assert texts(c, "both", STDERR) == ["err one"]
    # The partial last line was flushed before the exit was recorded.
    assert texts(c, "both")[-2:] == ["last words", "exited with code 0"]
    info = c.process("both")
    assert (info.stdout_lines, info.stderr_lines, info.exit_code) == (3, 1, 0)


GET_PDEATHSIG = (
    "import ctypes; libc = ctypes.CDLL(None); sig = ctypes.c_int(); "
    "libc.prctl(2, ctypes.byref(sig), 0, 0, 0); print('pdeathsig', sig.value)"
)


@pytest.mark.parametrize("launcher", ["setpriv", "preexec_fn"])
def test_every_child_gets_pdeathsig_with_or_without_setpriv(
    console: MakeConsole, monkeypatch: pytest.MonkeyPatch, launcher: str
) -> None:
    # setpriv (when present) sets PR_SET_PDEATHSIG so that Popen can vfork; without it, a
    # preexec_fn does. Either way the leader has it, and its output is untouched.
    from lacrimosa.engine.processes import supervisor as supervisor_module

    if launcher == "setpriv" and supervisor_module._setpriv() is None:
        pytest.skip("no setpriv with --pdeathsig here")
    if launcher == "preexec_fn":
        monkeypatch.setattr(supervisor_module, "_setpriv", lambda: None)
    c = console(f"""
        [processes.probe]
        cmd = "exec {PY} -c \\"{GET_PDEATHSIG}\\"; echo never"
        restart = "never"
    """)
    wait_until(lambda: state_of(c, "probe") == "exited")
    assert texts(c, "probe") == [f"pdeathsig {int(signal.SIGTERM)}", "exited with code 0"]


@pytest.mark.parametrize(
    ("cmd", "line"),
    [
        ("sleep 5", "exec sleep 5"),
        ("  ./serve --port=80 -v  ", "exec ./serve --port=80 -v"),
        ("python -m http.server 8000", "exec python -m http.server 8000"),
        # Anything the shell must read stays as written: lists, pipes, quotes, expansions,
        # redirections, assignments and the shell's own words.
        ("cd web && make", None),
        ("a | b", None),
        ("sleep 1 & sleep 2", None),
        ("python -c 'print(1)'", None),
        ("echo $HOME", None),
        ("cat < file", None),
        ("PORT=80 serve", None),
        ("exit 3", None),
        ("cd /tmp", None),
    ],
)
def test_a_simple_command_replaces_its_shell(cmd: str, line: str | None) -> None:
    assert supervisor.shell_line(cmd) == (line if line is not None else cmd)


def test_the_pid_of_a_simple_command_is_the_programs(console: MakeConsole) -> None:
    # No shell in between: the pid shown (and signalled) is the program's, alone in its group.
    c = console(
        '[processes.plain]\ncmd = "sleep 4307"\n\n[processes.list]\ncmd = "sleep 4308; true"\n'
    )
    wait_until(lambda: all(c.process(n).pid for n in ("plain", "list")))
    wait_until(lambda: len(group_pids(c.process("list").pid or -1)) == 2)
    plain = c.process("plain").pid
    with open(f"/proc/{plain}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"4307"]
    assert group_pids(plain or -1) == {plain}


def test_a_partial_line_is_shown_while_the_process_still_runs(console: MakeConsole) -> None:
    c = console("""
        [processes.prompt]
        cmd = "printf 'password: '; sleep 300"
        stop_timeout = 1
    """)
    wait_until(lambda: texts(c, "prompt", STDOUT) == ["password: "])
    line = c.query(LogQuery(processes=("prompt",))).line(0)
    assert line.continued
    assert state_of(c, "prompt") == "running"


def test_output_as_fast_as_it_comes_is_captured_whole(console: MakeConsole, tmp_path: Path) -> None:
    (tmp_path / "writer.py").write_text(
        "import sys\n"
        "out, err = sys.stdout.buffer, sys.stderr.buffer\n"
        "for i in range(200):\n"
        "    out.write((b'o' * 99 + b'\\n') * 500)\n"
        "    err.write((b'e' * 49 + b'\\n') * 300)\n"
        "out.flush(); err.flush()\n"
    )
    c = console(f"""
        [processes.seq]
        cmd = "seq 1 2000000"
        restart = "never"

        [processes.py]
        cmd = "{PY} writer.py"
        restart = "never"

        [logs]
        budget = "128MiB"
    """)
    wait_until(lambda: state_of(c, "seq") == "exited" and state_of(c, "py") == "exited", timeout=60)
    assert c.process("seq").stdout_lines == 2_000_000
    # Every byte, in order: the blocks hold seq's output and then the exit line, nothing else.
    held = b"".join(
        ref.block.data[: int(ref.block.ends[ref.n - 1])].tobytes()
        for ref in c.snapshot(["seq"]).processes["seq"].blocks
    )
    expected = "".join(f"{i}\n" for i in range(1, 2_000_001)).encode()
    assert held == expected + b"exited with code 0\n"
    assert c.store.counts("seq").split_lines == 0

    info = c.process("py")
    assert (info.stdout_lines, info.stderr_lines) == (100_000, 60_000)
    snap = c.snapshot(["py"])
    assert len(LogView(snap, LogQuery(stream=STDOUT, contains=b"o" * 99))) == 100_000
    assert len(LogView(snap, LogQuery(stream=STDERR, contains=b"e" * 49))) == 60_000
    assert len(LogView(snap, LogQuery(stream=STDERR, contains=b"o"))) == 0


def test_a_full_pipe_at_exit_is_read_whole_whatever_the_read_size(
    console: MakeConsole, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process that fills its pipe and exits at once: at its exit the pipe may hold all of it,
    # and the drain reads it whole, however many reads that takes (it was 4 reads, fine only
    # while a read was as large as the pipe).
    monkeypatch.setattr(supervisor, "READ_CHUNK", 16 << 10)
    line = "x" * 99
    count = (1 << 20) // 100 - 1  # just under the 1 MiB pipe: the write never blocks
    c = console(f"""
        [processes.burst]
        cmd = "{PY} -c 'import os, time; time.sleep(0.5); os.write(1, b\\"{line}\\\\n\\" * {count})'"
        restart = "never"
    """)
    pid = c.process("burst").pid
    assert pid is not None
    with c.store._lock:  # the supervisor's first append waits: the pipe is full when it exits
        # Exited, a zombie: the supervisor cannot reap it while it waits for the lock.
        wait_until(lambda: not pid_alive(pid), timeout=30, message="the writer exited")
    wait_until(lambda: state_of(c, "burst") == "exited", timeout=30)
    assert c.process("burst").stdout_lines == count
    assert texts(c, "burst", STDOUT) == [line] * count


def test_output_gathers_for_small_writers_and_never_for_a_bulk_writer_draining() -> None:
    history = ReadHistory()
    # A start, then small writers' wake-ups: they wait once COALESCE_WAKEUPS of them read little.
    assert [history.quiet_after(200) for _ in range(COALESCE_WAKEUPS)] == [False] * (
        COALESCE_WAKEUPS - 1
    ) + [True]
    assert not history.quiet_after(0)  # a wake-up for a command or a timer says nothing
    assert history.quiet_after(300)
    # A bulk writer: a full pipe, then what it wrote while the loop stored that (tens of KiB a
    # wake-up once the pipe is drained, as `seq` does): never held up.
    drained = [1 << 20, 466_944, 57_344, 49_152, 45_056, 40_960, 36_864, 1 << 20, 49_152]
    assert not any(history.quiet_after(read) for read in drained)
    # It stops: small reads again, and the loop waits once they are all that is remembered.
    small = [history.quiet_after(COALESCE_BELOW // (2 * COALESCE_WAKEUPS)) for _ in range(4)]
    assert small == [False] * (COALESCE_WAKEUPS - 1) + [True]


def test_many_small_writers_share_wake_ups(console: MakeConsole) -> None:
    writers = "\n".join(
        f'''
        [processes.w{i}]
        cmd = "{PY} -u -c 'import time\\nfor i in range(40): print(i); time.sleep(0.01)'"
        restart = "never"
        '''
        for i in range(10)
    )
    c = console(writers)
    names = [f"w{i}" for i in range(10)]
    wait_until(lambda: all(state_of(c, n) == "exited" for n in names), timeout=30)
    assert all(c.process(n).stdout_lines == 40 for n in names)
    assert c.supervisor.gathers > 0  # ~1000 lines/s from 10 pipes: output was let gather


# -- restart policies and backoff ----------------------------------------------------------------


@pytest.mark.parametrize(
    "policy, ending, words, restarts",
    [
        ("never", "exit 1", "exited with code 1", False),
        ("never", "exit 0", "exited with code 0", False),
        ("on-failure", "exit 0", "exited with code 0", False),
        ("on-failure", "exit 3", "exited with code 3", True),
        ("on-failure", "kill -9 $$", "killed by SIGKILL", True),
        ("always", "exit 0", "exited with code 0", True),
    ],
)
def test_restart_policies(
    console: MakeConsole, policy: str, ending: str, words: str, restarts: bool
) -> None:
    c = console(f"""
        [processes.job]
        cmd = "echo run; {ending}"
        restart = "{policy}"
        backoff_initial = 0.05
        backoff_max = 0.1
    """)
    if restarts:
        wait_until(lambda: c.process("job").restarts >= 2)
        wait_until(lambda: texts(c, "job", STDOUT)[:3] == ["run", "run", "run"])
        assert texts(c, "job", SYSTEM)[0].startswith(f"{words}; restarting in ")
    else:
        final = "exited" if ending == "exit 0" else "failed"
        wait_until(lambda: state_of(c, "job") == final)
        info = c.process("job")
        # A final state: no restart is scheduled (backoff or crash-loop would say so).
        assert (info.restarts, info.restart_in, info.pid) == (0, None, None)
        assert info.exit_code == int(ending.split()[-1])
        assert texts(c, "job", STDOUT) == ["run"]
        assert texts(c, "job", SYSTEM) == [words]


def test_backoff_grows_to_its_cap_resets_after_a_stable_run_and_shows_crash_loop(
    console: MakeConsole,
) -> None:
    # It counts its runs in a file: runs 1-4 fail at once, run 5 lasts longer than stable_after
    # and then fails, runs 6 and on fail at once.
    c = console(
        """
        [processes.flaky]
        cmd = '''n=$(cat runs 2>/dev/null || echo 0); n=$((n+1)); echo $n > runs
                 if [ $n -eq 5 ]; then sleep 3; fi; exit 1'''
        backoff_initial = 0.1
        backoff_max = 0.4
        stable_after = 2
    """,
        start=False,
    )
    states: list[str] = []
    lock = threading.Lock()

    def on_change() -> None:
        with lock:
            state = c.supervisor.info()[0].state
            if not states or states[-1] != state:
                states.append(state)

    _, unsubscribe = c.supervisor.subscribe(on_change)
    c.start()

    def delays() -> list[str]:
        return [t.rsplit(" ", 1)[-1] for t in texts(c, "flaky", SYSTEM) if "restarting in" in t]

    wait_until(lambda: len(delays()) >= 7, timeout=30)
    c.stop_process("flaky")
    unsubscribe()
    assert delays()[:7] == ["0.1s", "0.2s", "0.4s", "0.4s", "0.1s", "0.1s", "0.2s"]
    with lock:
        seen = list(states)
    # Two quick failures back off; the third in a row is a crash loop; a stable run ends it.
    assert seen[:8] == [
        "running",
        "backoff",
        "running",
        "backoff",
        "running",
        "crash-loop",
        "running",
        "crash-loop",
    ]
    assert "backoff" in seen[8:]
    assert seen[-1] == "stopped"
    assert c.process("flaky").restarts >= 6


def test_a_crash_loop_is_visible_and_a_stop_cancels_it(console: MakeConsole) -> None:
    c = console("""
        [processes.broken]
        cmd = "exit 2"
        backoff_initial = 0.5
        backoff_max = 5
    """)
    info = wait_until(lambda: (i := c.process("broken")).state == "crash-loop" and i, timeout=20)
    assert info.exit_code == 2 and info.restart_in is not None and info.pid is None
    assert c.stop_process("broken") == "stopped"
    info = c.process("broken")
    assert (info.state, info.restart_in) == ("stopped", None)
    assert texts(c, "broken", SYSTEM)[-1] == "stopped (restart cancelled)"


# -- stop, restart, start ------------------------------------------------------------------------


def test_stop_sends_the_configured_signal_to_the_group(console: MakeConsole) -> None:
    c = console("""
        [processes.polite]
        cmd = "trap 'echo got USR1; exit 0' USR1; echo ready; while :; do sleep 0.1; done"
        stop_signal = "USR1"
        stop_timeout = 60
    """)
    wait_until(lambda: texts(c, "polite", STDOUT) == ["ready"])  # the trap is set
    assert c.stop_process("polite") == "stopped"
    info = c.process("polite")
    assert (info.state, info.exit_code, info.pid) == ("stopped", 0, None)
    assert texts(c, "polite", STDOUT) == ["ready", "got USR1"]
    assert texts(c, "polite", SYSTEM)[-1] == "stopped (exited with code 0)"


def test_stop_escalates_to_sigkill_for_a_group_that_ignores_sigterm(console: MakeConsole) -> None:
    c = console("""
        [processes.stubborn]
        cmd = "trap '' TERM; sleep 300 & sleep 300"
        stop_timeout = 0.5
    """)
    pid = wait_until(lambda: c.process("stubborn").pid)
    pids = wait_until(lambda: len(group_pids(pid)) >= 3 and group_pids(pid))
    c.stop_process("stubborn")
    info = c.process("stubborn")
    assert (info.state, info.exit_code) == ("stopped", -signal.SIGKILL)
    assert texts(c, "stubborn", SYSTEM)[-1] == "stopped (killed by SIGKILL)"
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=5)


def test_stop_leaves_no_grandchild_behind(console: MakeConsole) -> None:
    # The leader dies of SIGTERM at once; the grandchild ignores it and must still go.
    c = console("""
        [processes.tree]
        cmd = "(trap '' TERM; sleep 300; true) & sleep 300"
        stop_timeout = 60
    """)
    pid = wait_until(lambda: c.process("tree").pid)
    # sh, the subshell, its sleep (so its trap is set), the other sleep.
    pids = wait_until(lambda: len(group_pids(pid)) >= 4 and group_pids(pid))
    c.supervisor.stop_process("tree").result(timeout=20)
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=5)
    assert c.process("tree").exit_code == -signal.SIGTERM


def test_restart_gives_a_new_pid_and_counts(console: MakeConsole) -> None:
    c = console("""
        [processes.svc]
        cmd = "echo started; sleep 300"
        stop_timeout = 2
    """)
    first = wait_until(lambda: c.process("svc").pid)
    wait_until(lambda: texts(c, "svc", STDOUT) == ["started"])
    c.restart_process("svc")
    second = c.process("svc")
    assert second.state == "running" and second.pid not in (None, first)
    assert second.restarts == 1
    wait_until(lambda: not pid_alive(first), timeout=5)
    wait_until(lambda: texts(c, "svc", STDOUT) == ["started"] * 2)
    c.restart_process("svc")
    assert c.process("svc").restarts == 2
    wait_until(lambda: texts(c, "svc", STDOUT) == ["started"] * 3)
    assert texts(c, "svc", SYSTEM) == ["stopped (killed by SIGTERM)"] * 2


def test_start_after_stop(console: MakeConsole) -> None:
    c = console("""
        [processes.svc]
        cmd = "sleep 300"
        stop_timeout = 2
        [processes.later]
        cmd = "sleep 300"
        autostart = false
    """)
    first = wait_until(lambda: c.process("svc").pid)
    assert state_of(c, "later") == "stopped" and c.process("later").pid is None
    assert c.start_process("svc") == "already running"
    c.stop_process("svc")
    assert (state_of(c, "svc"), c.process("svc").pid) == ("stopped", None)
    assert not pid_alive(first)
    c.start_process("svc")
    c.start_process("later")
    assert state_of(c, "svc") == "running" and c.process("svc").pid not in (None, first)
    assert state_of(c, "later") == "running"


def test_unknown_names_are_refused(console: MakeConsole) -> None:
    c = console('[processes.svc]\ncmd = "sleep 300"\nstop_timeout = 1\n')
    for action in (c.start_process, c.stop_process, c.restart_process, c.process):
        with pytest.raises(NoSuchProcess):
            action("ghost")
    with pytest.raises(NoSuchProcess):
        c.query(LogQuery(processes=("ghost",)))


# -- commands that cannot start ------------------------------------------------------------------


def test_a_missing_binary_is_reported_not_a_crash(console: MakeConsole) -> None:
    c = console("""
        [processes.typo]
        cmd = "/no/such/binary --serve"
        restart = "never"
        [processes.fine]
        cmd = "sleep 300"
        stop_timeout = 1
    """)
    wait_until(lambda: state_of(c, "typo") == "failed")
    assert c.process("typo").exit_code == 127
    assert any("not found" in t for t in texts(c, "typo", STDERR))
    assert state_of(c, "fine") == "running"
    assert c.supervisor.crashed is None


def test_a_cwd_removed_after_loading_is_reported_not_a_crash(
    console: MakeConsole, tmp_path: Path
) -> None:
    (tmp_path / "gone").mkdir()
    c = console(
        """
        [processes.lost]
        cmd = "sleep 300"
        cwd = "gone"
        restart = "always"
        [processes.fine]
        cmd = "sleep 300"
        stop_timeout = 1
    """,
        start=False,
    )
    (tmp_path / "gone").rmdir()
    c.start()
    assert state_of(c, "lost") == "failed"
    assert texts(c, "lost", SYSTEM)[-1].startswith("could not start:")
    assert state_of(c, "fine") == "running"
    with pytest.raises(ConsoleError, match="could not start"):
        c.start_process("lost")
    with pytest.raises(ConsoleError, match="could not start"):
        c.restart_process("lost")
    assert state_of(c, "lost") == "failed"
    (tmp_path / "gone").mkdir()
    c.start_process("lost")
    assert state_of(c, "lost") == "running"
    assert c.supervisor.crashed is None


def test_a_command_exec_refuses_is_reported_and_the_rest_still_start(console: MakeConsole) -> None:
    # A Procfile is taken as is; a NUL in a command only shows when it is started.
    c = console("first: sleep 300\nbad: echo a\0b\nlast: sleep 300\n", name="Procfile")
    assert state_of(c, "bad") == "failed"
    assert texts(c, "bad", SYSTEM)[-1].startswith("could not start:")
    assert state_of(c, "first") == "running" and state_of(c, "last") == "running"


# -- file descriptors ----------------------------------------------------------------------------


def test_a_pipe_closed_early_does_not_close_another_process_descriptors(
    console: MakeConsole, tmp_path: Path
) -> None:
    # "early" closes its output long before it exits. The numbers of its pipes are free by then
    # and go to the next process started; early's exit must not close them a second time.
    c = console("""
        [processes.early]
        cmd = "exec >/dev/null 2>&1; while [ ! -f go ]; do sleep 0.05; done"
        restart = "never"
        [processes.next]
        cmd = "while :; do echo tick; sleep 0.05; done"
        autostart = false
        stop_timeout = 2
    """)
    early = c.supervisor._managed["early"]
    wait_until(lambda: early.run is not None and not early.run.fds)
    c.start_process("next")
    (tmp_path / "go").touch()
    wait_until(lambda: state_of(c, "early") == "exited")
    pid = c.process("next").pid
    lines = c.process("next").stdout_lines
    wait_until(lambda: c.process("next").stdout_lines >= lines + 5)
    c.supervisor.stop_process("next").result(timeout=20)
    assert c.process("next").restarts == 0 and not pid_alive(pid)
    assert c.supervisor.crashed is None


# -- nothing outlives the console ----------------------------------------------------------------

# How many processes each group has once fully started (and its traps set).
GROUP_SIZES = {"tree": 3, "stubborn": 3, "grand": 4}
MIXED = """
    [processes.tree]
    cmd = "sleep 300 & sleep 300"
    stop_timeout = 1
    [processes.stubborn]
    cmd = "trap '' TERM; sleep 300 & sleep 300"
    stop_timeout = 0.5
    [processes.grand]
    cmd = "(trap '' TERM; sleep 300; true) & sleep 300"
    stop_timeout = 1
    [processes.looping]
    cmd = "exit 1"
    backoff_initial = 0.2
    stop_timeout = 1
"""


def test_console_shutdown_leaves_nothing_running(console: MakeConsole) -> None:
    c = console(MIXED)
    wait_until(
        lambda: all(
            len(group_pids(c.process(name).pid or -1)) >= size for name, size in GROUP_SIZES.items()
        )
    )
    pids = all_group_pids(c.processes())
    guardian = c.supervisor._guardian
    assert guardian is not None and pid_alive(guardian._proc.pid)
    c.shutdown()
    assert {p.state for p in c.processes()} == {"stopped"}
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=5)
    assert not pid_alive(guardian._proc.pid)
    c.shutdown()  # idempotent


CONSOLE_SCRIPT = """
import json, os, sys, time
from pathlib import Path
from typing import Any
from lacrimosa.engine.config import load_config
from lacrimosa.engine.console import Console

root = Path(sys.argv[1])
console = Console(load_config(root / "lacrimosa.toml"), root / ".lacrimosa")
console.start()
names = ("tree", "stubborn", "grand")
deadline = time.monotonic() + 30
while not all(console.process(n).pid for n in names) and time.monotonic() < deadline:
    time.sleep(0.02)
print(json.dumps({
    "guardian": console.supervisor._guardian._proc.pid,
    "leaders": [console.process(n).pid for n in names],
}), flush=True)
time.sleep(300)
"""


@contextlib.contextmanager
def console_in_child(tmp_path: Path, config: str, script: str) -> Iterator[Any]:
    """Run ``script`` (which starts a console) in a child Python; yield the JSON it prints first.

    The child is SIGKILLed on the way out: these tests are about what survives that.
    """
    write_config(tmp_path, config)
    path = tmp_path / "console_child.py"
    path.write_text(script)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [PY, str(path), str(tmp_path)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert proc.stdout is not None
        yield json.loads(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_nothing_survives_a_sigkilled_console(tmp_path: Path) -> None:
    with console_in_child(tmp_path, MIXED, CONSOLE_SCRIPT) as started:
        leaders = started["leaders"]
        assert all(leaders), started
        wait_until(
            lambda: all(
                len(group_pids(pid)) >= size
                for pid, size in zip(leaders, GROUP_SIZES.values(), strict=True)
            )
        )
        pids = {p for pid in leaders for p in group_pids(pid)} | {started["guardian"]}
        assert all(pid_alive(p) for p in pids)
    # PR_SET_PDEATHSIG ends the leaders; the guardian ends their groups (SIGTERM, then SIGKILL
    # for the group that ignores it) and then itself.
    wait_until(
        lambda: not any(pid_alive(p) for p in pids),
        timeout=20,
        message=f"{[p for p in pids if pid_alive(p)]} to end",
    )


# -- descendants that leave their process group ----------------------------------------------


ESCAPEE = """
    [processes.escapee]
    cmd = "setsid sleep 4242 & exec sleep 4343"
    stop_timeout = 2
"""


def escaped_pids(c: Console, name: str) -> list[int]:
    """Processes of ``name`` in another session than its leader (they left the group)."""
    info = c.process(name)  # tagged with the instance name (escapee.1), as its PS says
    return [
        pid for pid in tagged_pids(c.supervisor.token, info.instance) if os.getsid(pid) != info.pid
    ]


def test_a_descendant_that_left_its_group_goes_on_stop_and_on_shutdown(
    console: MakeConsole,
) -> None:
    c = console(ESCAPEE)
    escaped = wait_until(lambda: c.process("escapee").pid and escaped_pids(c, "escapee"))
    c.stop_process("escapee")
    wait_until(lambda: not any(pid_alive(p) for p in escaped), timeout=5)

    c.start_process("escapee")
    escaped = wait_until(lambda: c.process("escapee").pid and escaped_pids(c, "escapee"))
    # A restart takes the old run's escapee and spares the new one's, also from the late sweeps
    # that follow an exit (they look for the old run's tag only).
    c.restart_process("escapee")
    wait_until(lambda: not any(pid_alive(p) for p in escaped), timeout=5)
    escaped = wait_until(lambda: c.process("escapee").pid and escaped_pids(c, "escapee"))
    time.sleep(STRAY_SWEEPS * STRAY_SWEEP_INTERVAL + 0.3)
    assert all(pid_alive(p) for p in escaped)
    c.shutdown()
    wait_until(lambda: not any(pid_alive(p) for p in escaped), timeout=5)


ESCAPEE_CONSOLE_SCRIPT = """
import json, os, sys, time
from pathlib import Path
from typing import Any
from lacrimosa.engine.config import load_config
from lacrimosa.engine.console import Console
from lacrimosa.engine.processes.guardian import tagged_pids

root = Path(sys.argv[1])
console = Console(load_config(root / "lacrimosa.toml"), root / ".lacrimosa")
console.start()
deadline = time.monotonic() + 30
found: list[int] = []
# One list, the one that held both: a process caught in the middle of an exec has no environment
# to read in /proc for an instant, so a second look may miss it.
while len(found) < 2 and time.monotonic() < deadline:
    time.sleep(0.02)
    found = tagged_pids(console.supervisor.token)
print(json.dumps(found), flush=True)
time.sleep(300)
"""


def test_a_descendant_that_left_its_group_goes_when_the_console_is_sigkilled(
    tmp_path: Path,
) -> None:
    with console_in_child(tmp_path, ESCAPEE, ESCAPEE_CONSOLE_SCRIPT) as pids:
        assert len(pids) >= 2 and all(pid_alive(p) for p in pids)
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=15)


def test_a_stray_writer_holding_the_pipe_does_not_freeze_the_supervisor(
    console: MakeConsole,
) -> None:
    # The writer leaves the group and drops its environment, so nothing can find it to kill it:
    # at the leader's exit the supervisor reads what the pipe held, closes it, and moves on
    # (the writer then dies of SIGPIPE).
    c = console("""
        [processes.leaky]
        cmd = "setsid env -i sh -c 'echo writer $$ >&2; exec yes' & sleep 0.5; exit 3"
        restart = "never"

        [processes.other]
        cmd = "sleep 300"
        stop_timeout = 2
    """)
    writer = wait_until(
        lambda: next((int(t.split()[1]) for t in texts(c, "leaky", STDERR) if "writer" in t), 0)
    )
    wait_until(lambda: state_of(c, "leaky") == "failed", timeout=10)
    assert c.stop_process("other") == "stopped"
    wait_until(lambda: not pid_alive(writer), timeout=10)


def test_commands_that_race_a_shutdown_are_refused_not_run(console: MakeConsole) -> None:
    c = console("""
        [processes.quiet]
        cmd = "sleep 300"
        autostart = false
    """)
    supervisor = c.supervisor
    shutdown = threading.Thread(target=supervisor.shutdown)
    shutdown.start()
    late = [supervisor.start_process("quiet") for _ in range(20)]
    shutdown.join(30)
    assert not shutdown.is_alive()
    for future in late:
        outcome = future.exception(10) or future.result()
        assert isinstance(outcome, ConsoleError) or outcome == "started"
    assert c.process("quiet").pid is None  # anything that started was stopped by the shutdown
