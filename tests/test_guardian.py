"""The guardian: its registry of groups, its two stages, and it is watched: killed on its own, it
is replaced, with the same registry.

The end-to-end case runs a real ``lacrimosa up --headless`` in a child process, so the console
itself can be ``kill -9``-ed after its guardian was.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import group_pids, pid_alive, wait_until

from lacrimosa.engine.console import Console
from lacrimosa.engine.processes.guardian import GroupRegistry, registered_groups
from lacrimosa.engine.processes.supervisor import (
    GUARDIAN_BACKOFF_INITIAL,
    GUARDIAN_FAILING_AFTER,
)

PY = sys.executable
REPO = Path(__file__).resolve().parent.parent
CLI = [PY, "-m", "lacrimosa.api.cli"]
MakeConsole = Callable[..., Console]
GRACE = 2  # every process's stop_timeout: the guardian's wait between SIGTERM and SIGKILL

# Leaders that ignore SIGTERM (so PR_SET_PDEATHSIG does not end them) and have children that
# ignore it too: only a guardian's SIGKILL ends these.
STUBBORN = f"""
[processes.shell]
cmd = "trap '' TERM; sleep 4301 & sleep 4302 & wait"
stop_timeout = {GRACE}

[processes.python]
cmd = "{PY} -c 'import signal, subprocess, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); subprocess.Popen([\\"sleep\\", \\"4303\\"]); time.sleep(4304)'"
stop_timeout = {GRACE}

[processes.plain]
cmd = "sleep 4305 & sleep 4306"
stop_timeout = {GRACE}
"""
GROUP_SIZES = {"shell": 3, "python": 2, "plain": 2}


def guardian_pid(c: Console) -> int | None:
    return c.supervisor.guardian_info.pid


def test_the_registry_holds_the_live_groups_and_reuses_the_slots_of_those_gone() -> None:
    registry = GroupRegistry()
    for pgid in (101, 102, 103):
        registry.add(pgid)
    registry.add(102)  # twice: one slot
    assert registered_groups(registry.fd) == {101, 102, 103} and len(registry) == 3
    registry.remove(102)
    registry.remove(999)  # never registered: nothing happens
    assert registered_groups(registry.fd) == {101, 103}
    registry.add(104)  # into 102's slot: the file does not grow
    assert os.fstat(registry.fd).st_size == 3 * 4
    assert registered_groups(registry.fd) == {101, 103, 104}
    registry.close()
    registry.add(105)  # after close: ignored, the descriptor's number may be another file's now
    registry.remove(101)
    registry.close()


def process_exe(pid: int) -> str:
    return os.path.basename(os.readlink(f"/proc/{pid}/exe"))


def test_the_guardian_is_a_waiting_shell_until_the_console_ends(console: MakeConsole) -> None:
    # No interpreter starts beside the processes (~10 ms of a core): the Python stage runs only
    # at the end, and still finds every group registered while the shell waited.
    c = console(STUBBORN)
    guardian = guardian_pid(c)
    assert guardian is not None
    wait_until(lambda: all(c.process(n).pid for n in GROUP_SIZES))
    assert "python" not in process_exe(guardian)  # /bin/sh: dash or bash
    leaders = {c.process(n).pid for n in GROUP_SIZES}
    assert leaders <= registered_groups(c.supervisor._groups.fd)
    pids = {p for leader in leaders for p in group_pids(leader or -1)}
    supervisor_guardian = c.supervisor._guardian
    assert supervisor_guardian is not None
    supervisor_guardian._pipe.close()  # as at the console's end: the Python stage takes over
    assert wait_until(lambda: "python" in process_exe(guardian), timeout=5)
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=GRACE + 8)


def test_a_killed_guardian_is_replaced_and_a_guardian_that_keeps_dying_backs_off(
    console: MakeConsole,
) -> None:
    c = console('[processes.idle]\ncmd = "sleep 4300"\nstop_timeout = 1\n')
    first = guardian_pid(c)
    assert first is not None and pid_alive(first)
    assert c.status()["guardian"] == {
        "pid": first,
        "alive": True,
        "restarts": 0,
        "state": "running",
        "restart_in": None,
    }
    seen = [first]
    for death in range(1, GUARDIAN_FAILING_AFTER + 1):
        os.kill(seen[-1], signal.SIGKILL)
        # The first restart is immediate; later quick deaths wait GUARDIAN_BACKOFF_INITIAL, then
        # twice that: well under the wait below.
        seen.append(
            wait_until(
                lambda: (p := guardian_pid(c)) not in seen and p,
                timeout=5,
                message=f"guardian restart {death}",
            )
        )
        assert c.supervisor.guardian_info.restarts == death
    assert len(set(seen)) == len(seen) and not any(pid_alive(p) for p in seen[:-1])
    info = c.status()["guardian"]
    assert (info["alive"], info["state"]) == (True, "failing")

    # Once failing, a death is not answered at once: the delay shows before the restart.
    os.kill(seen[-1], signal.SIGKILL)
    waiting = wait_until(lambda: (g := c.status()["guardian"])["pid"] is None and g, timeout=5)
    assert waiting["state"] == "failing" and waiting["alive"] is False
    expected = GUARDIAN_BACKOFF_INITIAL * 2 ** (GUARDIAN_FAILING_AFTER - 1)
    assert 0 < waiting["restart_in"] <= expected
    wait_until(lambda: c.supervisor.guardian_info.alive, timeout=5 + expected)
    assert c.supervisor.guardian_info.restarts == GUARDIAN_FAILING_AFTER + 1

    last = guardian_pid(c)
    assert last is not None
    c.shutdown()  # the replacement is ended with the console, like the first one
    assert not pid_alive(last)
    assert c.status()["guardian"]["state"] == "stopped"


# -- a real console, kill -9 -------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LACRIMOSA_HOME"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=30
    )


def status(folder: Path) -> dict[str, Any]:
    result = cli("status", "--json", cwd=folder)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def headless(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """``lacrimosa up --headless`` with the STUBBORN processes, once they all run."""
    (tmp_path / "lacrimosa.toml").write_text(STUBBORN)
    env = {k: v for k, v in os.environ.items() if k != "LACRIMOSA_HOME"}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [*CLI, "up", "--headless"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: proc.poll() is not None or cli("ps", cwd=tmp_path).returncode == 0, timeout=20
        )
        assert proc.poll() is None, proc.communicate()
        yield proc
    finally:
        if proc.poll() is None:
            cli("shutdown", cwd=tmp_path)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.communicate()


def test_nothing_survives_kill_9_of_the_guardian_then_of_the_console(
    tmp_path: Path, headless: subprocess.Popen[str]
) -> None:
    def leader_pids() -> dict[str, int] | None:
        listed = json.loads(cli("ps", "--json", cwd=tmp_path).stdout)["processes"]
        pids = {p["name"]: p["pid"] for p in listed}
        return pids if all(pids.values()) else None

    leaders = wait_until(leader_pids)
    wait_until(lambda: all(len(group_pids(leaders[n])) >= k for n, k in GROUP_SIZES.items()))
    pids = {p for leader in leaders.values() for p in group_pids(leader)}
    assert len(pids) >= sum(GROUP_SIZES.values())

    before = status(tmp_path)["guardian"]
    assert before["alive"] and before["restarts"] == 0
    os.kill(before["pid"], signal.SIGKILL)
    after = wait_until(
        lambda: (g := status(tmp_path)["guardian"])["restarts"] == 1 and g["alive"] and g,
        message="status to show a new guardian",
    )
    assert after["pid"] != before["pid"] and pid_alive(after["pid"])
    human = cli("status", cwd=tmp_path).stdout
    assert f"guardian  running, pid {after['pid']}, restarts 1" in human

    headless.kill()
    headless.wait(10)
    started = time.monotonic()
    wait_until(
        lambda: not any(pid_alive(p) for p in pids | {after["pid"]}),
        timeout=GRACE + 8,
        message="every process, child and the guardian to end",
    )
    assert time.monotonic() - started <= GRACE + 8
    assert headless.stderr is not None
    stderr = headless.stderr.read()
    assert stderr.count(f"the guardian (pid {before['pid']}) killed by SIGKILL") == 1, stderr
