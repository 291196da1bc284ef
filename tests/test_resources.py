"""CPU% and RSS per process, summed over its process group, sampled from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until

from lacrimosa.api.protocol import dispatch
from lacrimosa.engine.console import Console
from lacrimosa.engine.processes.resources import GroupSampler, read_stat

MakeConsole = Callable[..., Console]
MIB = 1 << 20
# A tree in one group, as `npm run dev` makes: a shell, a busy loop, a process holding 40 MiB.
TREE = (
    f"{sys.executable} -c 'while True: pass' & "
    f"{sys.executable} -c 'import time; x = b\"x\" * {40 * MIB}; time.sleep(300)' & "
    "wait"
)
TREE_IN_TOML = TREE.replace('"', '\\"')


@pytest.fixture
def groups() -> Iterator[Callable[[str], int]]:
    """Start ``sh -c CMD`` in a new process group; every group is killed after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(cmd: str) -> int:
        started.append(subprocess.Popen(["/bin/sh", "-c", cmd], start_new_session=True))
        return started[-1].pid

    yield start
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_group_is_summed_whole_and_others_are_left_out(groups: Callable[[str], int]) -> None:
    tree = groups(TREE)
    idle = groups("exec sleep 300")
    outsider = groups(f"{sys.executable} -c 'while True: pass'")  # busy, but not asked for
    sampler = GroupSampler()
    wait_until(lambda: (u := sampler.sample([tree, idle]).get(tree)) and u.processes == 3)
    first = GroupSampler().sample([tree])
    assert first[tree].cpu_percent is None  # no interval yet
    time.sleep(0.5)
    usage = sampler.sample([tree, idle])
    assert outsider not in usage
    assert usage[tree].processes == 3 and usage[idle].processes == 1
    # One busy loop: about one core (2 shared cores here: loose bounds).
    assert usage[tree].cpu_percent is not None and 30 <= usage[tree].cpu_percent <= 210
    assert usage[idle].cpu_percent is not None and usage[idle].cpu_percent < 10
    assert usage[tree].rss_bytes >= 40 * MIB
    assert usage[idle].rss_bytes < 10 * MIB


def test_a_child_started_between_samples_counts_and_processes_outside_are_not_read_again(
    groups: Callable[[str], int], tmp_path: Path
) -> None:
    go = tmp_path / "go"
    busy = "import time\nend = time.time() + 0.6\nwhile time.time() < end: pass\ntime.sleep(30)"
    leader = groups(
        f"while [ ! -e {go} ]; do sleep 0.02; done; {sys.executable} -c '{busy}' & sleep 300"
    )
    sampler = GroupSampler()
    sampler.sample([leader])
    assert len(sampler._outside) > 0  # every other process here: remembered, not read again
    assert leader not in sampler._outside
    go.touch()  # a child joins the group after the sample: all its CPU time is in the interval
    time.sleep(0.8)
    usage = sampler.sample([leader])[leader]
    assert usage.processes == 3  # the shell, sleep, python
    assert usage.cpu_percent is not None and usage.cpu_percent >= 20
    # What is remembered of the processes outside is bounded by the processes that exist.
    assert len(sampler._outside) <= sum(1 for e in os.listdir("/proc") if e.isdigit())


def test_read_stat_takes_a_name_with_spaces_and_parentheses(tmp_path: Path) -> None:
    odd = tmp_path / "a (b) c"
    odd.symlink_to("/bin/sleep")
    proc = subprocess.Popen([str(odd), "5"])
    try:
        stat = wait_until(lambda: (s := read_stat(proc.pid)) and s.rss_pages and s)
        assert stat.pgrp == os.getpgid(proc.pid)
        assert stat.rss_pages > 0
    finally:
        proc.kill()
        proc.wait()
    assert read_stat(proc.pid) is None


def test_ps_carries_cpu_and_memory_of_each_running_process(console: MakeConsole) -> None:
    c = console(
        f"""
        [processes.tree]
        cmd = "{TREE_IN_TOML}"

        [processes.off]
        cmd = "sleep 300"
        autostart = false
        """
    )
    entries = wait_until(
        lambda: (
            (ps := {p["name"]: p for p in dispatch(c, {"op": "ps"})["result"]["processes"]})[
                "tree"
            ]["cpu_percent"]
            is not None
            and ps
        ),
        message="a CPU sample of the tree",
    )
    assert entries["tree"]["rss_bytes"] >= 40 * MIB
    assert entries["off"]["cpu_percent"] is None and entries["off"]["rss_bytes"] is None
    assert (
        c.process("tree").rss_bytes == entries["tree"]["rss_bytes"] or c.process("tree").rss_bytes
    )


def test_metrics_carry_cpu_and_memory_of_each_running_process(served: Callable[..., Any]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    s = served()
    admin = s.client(s.admin_key)

    def sampled() -> dict[str, dict[str, float]]:
        families = {f.name: f for f in text_string_to_metric_families(admin.get("/metrics").text)}
        return {
            name: {x.labels["process"]: x.value for x in families[name].samples}
            for name in ("lacrimosa_process_cpu_percent", "lacrimosa_process_resident_bytes")
        }

    found = wait_until(
        lambda: (m := sampled())["lacrimosa_process_cpu_percent"].get("ticker") is not None and m,
        message="a sample of the ticker in /metrics",
    )
    assert found["lacrimosa_process_resident_bytes"]["ticker"] > 0
