"""Attaching: the subscribe and log_window ops, the TUI on a RemoteConsole under Pilot (a real
console behind a real socket), ``up -d`` and ``lacrimosa tui`` as a user runs them.

The Pilot tests serve a real Console (conftest's ``console``) through a real ControlServer and
drive the same app ``lacrimosa tui`` runs, on a RemoteConsole connected to that socket.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    Terminal,
    group_pids,
    pid_alive,
    process_state,
    send_events,
    wait_for,
    wait_until,
    write_config,
)
from test_cli import CLI, cli, cli_env
from test_imports import loaded_after_import
from test_tui_events import overview_text
from textual.pilot import Pilot

from lacrimosa.api.client import ControlClient, RemoteError
from lacrimosa.api.protocol import MAX_WINDOW_LINES, SUBSCRIBE_INTERVAL, dispatch
from lacrimosa.api.remote_console import RemoteConsole
from lacrimosa.api.server import ControlServer
from lacrimosa.engine.console import Console
from lacrimosa.engine.logs.query import LogQuery
from lacrimosa.engine.logs.store import STDOUT
from lacrimosa.engine.processes.supervisor import State
from lacrimosa.tui import LacrimosaApp
from lacrimosa.tui.app import CONSOLE_ENDED, DETACHED
from lacrimosa.tui.events_view import EventList
from lacrimosa.tui.log_pane import LogPane
from lacrimosa.tui.process_table import ProcessTable

SIZE = (80, 24)

IDLE = """
    [processes.api]
    cmd = "echo api ready; exec sleep 60"
    stop_timeout = 2

    [processes.worker]
    cmd = "for i in 1 2 3; do echo worker line $i; done; exec sleep 60"
    stop_timeout = 2
"""


@pytest.fixture
def served(console: Callable[..., Console]) -> Iterator[Callable[..., Console]]:
    """A factory: a started Console (``console``'s) served on its control socket."""
    servers: list[ControlServer] = []

    def make(text: str = IDLE, **bounds: Any) -> Console:
        made = console(text)
        server = ControlServer(made, **bounds)
        server.start()
        made.add_status_section("control", server.stats)
        servers.append(server)

        def run() -> None:  # as `up` does: a shutdown asked for by a client is carried out
            made.shutdown_requested.wait()
            made.shutdown()
            server.close()

        threading.Thread(target=run, name="test-console-runner", daemon=True).start()
        return made

    yield make
    for server in servers:
        server.close()


def lines_of(reply: dict) -> list[str]:
    return [line["text"] for line in reply["lines"]]


def test_the_tui_does_not_import_api() -> None:
    """The TUI is written against engine/facade.py: the CLI hands it a Console or a
    RemoteConsole (DESIGN.md, layout). (asyncio loads ``socket`` itself: not checked.)"""
    loaded = loaded_after_import("lacrimosa.tui.app")
    assert loaded is not None and "textual" in loaded
    assert "api" not in loaded


# -- the protocol --------------------------------------------------------------------------------


def test_log_window_positions_hold_while_lines_arrive_and_are_evicted(
    console: Callable[..., Console],
) -> None:
    made = console(IDLE + '\n    [logs]\n    budget = "8MiB"\n    max_line = "64KiB"\n', start=True)
    made.store.append("worker", STDOUT, b"".join(b"first %d\n" % i for i in range(100)))
    first = dispatch(made, {"op": "log_window", "name": "worker", "grep": "first", "tail": 10})
    assert first["ok"], first
    window = first["result"]
    assert window["total"] == 100 and lines_of(window) == [f"first {i}" for i in range(90, 100)]
    end = {"end_id": window["end_id"], "total": window["total"]}

    # New lines do not move the window's positions.
    made.store.append("worker", STDOUT, b"first new\n")
    again = dispatch(
        made, {"op": "log_window", "name": "worker", "grep": "first", **end, "start": 0, "stop": 3}
    )["result"]
    assert (again["first"], lines_of(again)) == (0, ["first 0", "first 1", "first 2"])
    some = made.query(LogQuery(processes=("worker",), contains=b"first")).lines(5, 6)[0].id
    position = dispatch(
        made, {"op": "log_window", "name": "worker", "grep": "first", **end, "position_of": some}
    )["result"]
    assert position["position"] == 5

    # Evicted lines read as missing (``first`` moves on), never as other lines.
    filler = b"x" * 99 + b"\n"
    made.store.append("worker", STDOUT, filler * 20_000)  # seals worker's first block
    for _ in range(100):
        made.store.append("api", STDOUT, filler * 1000)  # 10 MB through an 8 MiB budget
    evicted = dispatch(
        made,
        {"op": "log_window", "name": "worker", "grep": "first", **end, "start": 0, "stop": 100},
    )["result"]
    assert evicted["first"] == 100 and evicted["lines"] == []


def test_log_window_is_bounded_and_bad_requests_are_refused_and_counted(
    served: Callable[..., Console],
) -> None:
    made = served()
    made.store.append("api", STDOUT, b"".join(b"line %d\n" % i for i in range(3000)))
    with ControlClient(made.home) as client:
        tail = client.call("log_window", name="api", tail=MAX_WINDOW_LINES)
        end = {"end_id": tail["end_id"], "total": tail["total"]}
        wide = client.call("log_window", name="api", start=0, stop=tail["total"], **end)
        assert len(wide["lines"]) == MAX_WINDOW_LINES  # asked for 3000+
        bad = [
            {"tail": MAX_WINDOW_LINES + 1},
            {"end_id": 5},  # without total
            {**end, "position_of": "x"},
            {**end, "start": 10, "stop": 5},
            {"ignore_case": "yes"},
            {"name": "nonesuch", "tail": 5},
        ]
        for args in bad:
            with pytest.raises(RemoteError) as caught:
                client.call("log_window", **args)
            assert caught.value.code in ("invalid_request", "no_such_process"), args
        stats = client.call("status")["control"]
    assert stats["malformed_requests"] == len(bad) - 1  # no_such_process is not malformed


def test_subscription_sends_the_state_then_at_most_20_updates_a_second(
    served: Callable[..., Console],
) -> None:
    # A writer far faster than 20 Hz: the pushes stay coalesced.
    made = served(
        IDLE
        + f"""
    [processes.flood]
    cmd = "{sys.executable} -c 'import sys\\nwhile True: sys.stdout.write(\\"x\\" * 50 + \\"\\\\n\\")'"
    """
    )
    with ControlClient(made.home) as client:
        updates = client.stream("subscribe")
        state = next(updates)
        assert {p["name"] for p in state["processes"]} == {"api", "worker", "flood"}
        assert state["sequencer"] is None and "newest_ids" in state
        started = time.monotonic()
        received = []
        while time.monotonic() - started < 1.5:
            received.append(next(updates))
        elapsed = time.monotonic() - started
        ids = [u["newest_ids"]["flood"] for u in received if "flood" in u.get("newest_ids", {})]
        assert len(received) <= elapsed / SUBSCRIBE_INTERVAL + 2
        assert len(ids) >= 5 and ids == sorted(ids) and ids[-1] > ids[0]
        assert any("processes" in u for u in received)  # every second at least
        made.request_shutdown()
        for _ in updates:  # until the console says the stream ended ({"end": ...})
            pass


# -- the TUI attached, under Pilot ---------------------------------------------------------------


def rows_of(app: LacrimosaApp) -> list[str]:
    pane = app.query_one(LogPane)
    return [pane.render_line(y).text.rstrip() for y in range(pane.size.height)]


def state_of(app: LacrimosaApp, name: str) -> str:
    table = app.query_one(ProcessTable)
    return str(table.get_row(name)[1])


def status_of(app: LacrimosaApp) -> str:
    return str(app.query_one("#status").render())


async def test_attach_detach_reattach_and_two_at_once(served: Callable[..., Console]) -> None:
    made = served()
    wait_until(lambda: made.process("worker").stdout_lines == 3)
    first = RemoteConsole(made.home)
    app = LacrimosaApp(first, attached=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: any("worker line 3" in r for r in rows_of(app)), "lines")
        assert state_of(app, "api").startswith(State.RUNNING)
        await pilot.press("d")
        await wait_for(pilot, lambda: app.return_value is not None, "detach")
    first.close()
    assert app.return_value == DETACHED
    assert made.process("api").state == State.RUNNING and not made.shutdown_requested.is_set()

    # Reattach, twice at once: a stop from one shows in the other.
    one, two = RemoteConsole(made.home), RemoteConsole(made.home)
    app_one, app_two = LacrimosaApp(one, attached=True), LacrimosaApp(two, attached=True)
    async with app_one.run_test(size=SIZE) as pilot_one, app_two.run_test(size=SIZE) as pilot_two:
        await wait_for(pilot_two, lambda: any("api ready" in r for r in rows_of(app_two)), "two")
        await pilot_one.press("down", "down")  # the "* all" row, api, then worker
        await wait_for(pilot_one, lambda: app_one.selected_process == "worker", "selection")
        await pilot_one.press("x")
        await wait_for(pilot_one, lambda: state_of(app_one, "worker") == State.STOPPED, "one")
        await wait_for(pilot_two, lambda: state_of(app_two, "worker") == State.STOPPED, "two")
        # The Audit view, attached: the stop, recorded by the console.
        await the_stop_in_the_audit_view(pilot_one, app_one)
        stop = made.audit.records(limit=1)[0]
        assert (stop["action"], stop["actor"]["source"]) == ("stop", "tui")
        assert stop["actor"]["uid"] == os.getuid()  # the kernel's word, not the client's
        await pilot_one.press("1")
        # The filter works attached as in process: only the line with "2".
        await pilot_two.press("down", "down", "slash", "2", "enter")
        await wait_for(
            pilot_two,
            lambda: [r.strip() for r in rows_of(app_two) if r] == ["worker line 2"],
            "the filtered view",
        )
        await pilot_one.press("d")
        await pilot_two.press("d")
    one.close()
    two.close()
    assert made.process("api").state == State.RUNNING


async def test_q_asks_then_stops_everything(served: Callable[..., Console]) -> None:
    made = served()
    pid = wait_until(lambda: made.process("api").pid)
    remote = RemoteConsole(made.home)
    app = LacrimosaApp(remote, attached=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await wait_for(pilot, lambda: "detach or stop everything?" in status_of(app), "the ask")
        await pilot.press("escape")  # neither
        await wait_for(pilot, lambda: "detach or stop" not in status_of(app), "the ask gone")
        await pilot.press("q", "q")
        await wait_for(pilot, lambda: not app.is_running, "the app to end", timeout=20)
    remote.close()
    assert made.stopped.wait(20)
    assert not pid_alive(pid)


async def test_the_console_stopping_elsewhere_ends_the_attached_app(
    served: Callable[..., Console],
) -> None:
    made = served()
    await the_console_stopping_ends_the_app(RemoteConsole(made.home), made)


async def the_console_stopping_ends_the_app(remote: RemoteConsole, made: Console) -> None:
    """The app attached through ``remote`` ends, saying so, when ``made`` stops elsewhere."""
    app = LacrimosaApp(remote, attached=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: state_of(app, "api").startswith(State.RUNNING), "table")
        made.request_shutdown()  # `lacrimosa shutdown` from another terminal
        await wait_for(pilot, lambda: app.return_value is not None, "the app to end")
    remote.close()
    assert app.return_value == CONSOLE_ENDED and remote.ended == "the console stopped"


async def test_overview_and_events_attached(
    served: Callable[..., Console], udp_sender: socket.socket
) -> None:
    made = served(IDLE + '\n    [sequencer]\n    udp = "127.0.0.1:0"\n')
    send_events(made, udp_sender, b"deploy started\n", b"deploy done\n")
    remote = RemoteConsole(made.home)
    app = LacrimosaApp(remote, attached=True)
    async with app.run_test(size=SIZE) as pilot:
        await events_shown_and_followed(pilot, app, made, udp_sender)
        await pilot.press("2")
        await wait_for(
            pilot, lambda: "3 accepted of 3 received" in overview_text(app), "the Overview"
        )
        await pilot.press("d")
    remote.close()


async def the_stop_in_the_audit_view(pilot: Pilot[Any], app: LacrimosaApp) -> None:
    """The Audit view (key 4) shows the stop of worker."""
    await pilot.press("4")
    await wait_for(
        pilot,
        lambda: any(
            "stop" in row.cells and "worker" in row.cells
            for row in app.audit_view.audit_list.rows.rows
        ),
        "the stop in the Audit view",
    )


async def events_shown_and_followed(
    pilot: Pilot[Any], app: LacrimosaApp, made: Console, udp_sender: socket.socket
) -> None:
    """In the Events view: the two "deploy" events sent before, then one sent now (followed)."""
    await pilot.press("3")
    await wait_for(
        pilot,
        lambda: sum("deploy" in row for row in app.query_one(EventList).visible_rows()) == 2,
        "both events in the Events view",
    )
    send_events(made, udp_sender, b"one more\n")
    await wait_for(
        pilot,
        lambda: any("one more" in row for row in app.query_one(EventList).visible_rows()),
        "a new event, followed",
    )


def test_a_window_asked_for_after_the_console_closed_an_idle_connection(
    served: Callable[..., Console],
) -> None:
    made = served(idle_timeout=0.3)
    wait_until(lambda: made.process("api").stdout_lines == 1)
    remote = RemoteConsole(made.home)
    try:
        assert len(remote.query(LogQuery(processes=("api",)))) == 1
        wait_until(lambda: made.status()["control"]["idle_closed"] >= 1)
        assert remote.query(LogQuery(processes=("api",))).lines(0, 1)[0].text == "api ready"
        assert not remote.shutdown_requested.is_set()  # the subscription is never idle
    finally:
        remote.close()


def test_a_remote_copy_of_a_process_is_the_process(served: Callable[..., Console]) -> None:
    made = served()
    wait_until(lambda: made.process("worker").stdout_lines == 3)
    remote = RemoteConsole(made.home)
    try:
        here = {info.name: info for info in made.processes()}
        there = {info.name: info for info in remote.processes()}
        assert set(there) == set(here)
        moving = ("uptime", "lines_per_second", "cpu_percent", "rss_bytes")  # sampled anew
        for name, info in there.items():
            sent, held = info.to_dict(), here[name].to_dict()
            assert {k: v for k, v in sent.items() if k not in moving} == {
                k: v for k, v in held.items() if k not in moving
            }
            assert set(sent) == set(held)
    finally:
        remote.close()


def test_remote_windows_read_what_the_console_holds(served: Callable[..., Console]) -> None:
    made = served()
    wait_until(lambda: made.process("api").stdout_lines == 1)  # "api ready" first
    made.store.append("api", STDOUT, b"".join(b"line %d\n" % i for i in range(1000)))
    remote = RemoteConsole(made.home)
    try:
        query = LogQuery(processes=("api",), contains=b"LINE 9", ignore_case=True)
        local, window = made.query(query), remote.query(query)
        assert len(window) == len(local) == 111  # "line 9" and "line 9x" and "line 9xx"
        assert [line.text for line in window.lines(0, 111)] == [
            line.text for line in local.lines(0, 111)
        ]
        target = local.lines(50, 51)[0]
        assert window.position_of(target.id) == 50
        # Past what one request carries: every position is there, the rest as placeholders.
        everything = remote.query(LogQuery(processes=("api",)))
        assert len(everything) == 1001
        lines = everything.lines(0, 1001)
        assert len(lines) == 1001 and lines[999].text == "line 998"
        assert lines[1000].id == -1 and "evicted" in lines[1000].text
    finally:
        remote.close()


# -- up -d and lacrimosa tui, as a user runs them ------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A project folder; whatever console runs there at the end is shut down (or killed)."""
    write_config(tmp_path, IDLE)
    yield tmp_path
    pid_file = tmp_path / ".lacrimosa" / "console.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        if cli("shutdown", cwd=tmp_path).returncode != 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_up_detach_returns_once_started_and_kill_9_leaves_nothing(project: Path) -> None:
    started = cli("up", "-d", "--json", cwd=project)
    assert started.returncode == 0, started.stderr
    document = json.loads(started.stdout)
    assert set(document) == set(json.loads(cli("ps", "--json", cwd=project).stdout))
    assert {p["name"]: p["state"] for p in document["processes"]} == {
        "api": "running",
        "worker": "running",
    }
    home = project / ".lacrimosa"
    pid = int((home / "console.pid").read_text())
    assert os.getsid(pid) == pid  # its own session: no terminal to lose
    assert wait_until(lambda: b"console up" in (home / "console.log").read_bytes())

    again = cli("up", "-d", cwd=project)
    assert again.returncode == 1 and "already running" in again.stderr

    groups = [p["pid"] for p in document["processes"]]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid))
    wait_until(lambda: not any(group_pids(g) for g in groups), message="no orphans")


def test_up_detach_reports_why_it_could_not_start(tmp_path: Path) -> None:
    write_config(tmp_path, '[processes.bad]\ncmd = "true"\nrestart = "maybe"\n')
    bad = cli("up", "-d", cwd=tmp_path)
    assert bad.returncode == 1 and "lacrimosa.toml:3" in bad.stderr
    # A port taken: the console itself says so, in its log, and up -d passes it on.
    write_config(tmp_path, IDLE)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        refused = cli("up", "-d", "--udp", f"127.0.0.1:{port}", "--json", cwd=tmp_path)
    assert refused.returncode == 1, refused.stderr
    assert f"127.0.0.1:{port}" in json.loads(refused.stderr)["error"]["message"]
    assert not (tmp_path / ".lacrimosa" / "console.pid").exists()


def test_tui_without_a_terminal_is_refused_and_starts_nothing(project: Path) -> None:
    refused = subprocess.run(
        [*CLI, "tui"],
        cwd=project,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=30,
    )
    assert refused.returncode == 2 and "needs a terminal" in refused.stderr
    assert not (project / ".lacrimosa" / "console.pid").exists()


def test_tui_starts_a_console_and_a_hang_up_detaches(project: Path) -> None:
    """``lacrimosa tui`` on a terminal (a pty, its controlling terminal) where no console runs:
    it starts one in the background and attaches; the terminal going away (the pty's other side
    closed: the kernel sends SIGHUP, as when SSH drops) detaches, the processes go on."""
    with Terminal([*CLI, "tui"], cwd=project, env=cli_env()) as terminal:
        wait_until(lambda: terminal.shows(b"worker line 3"), timeout=30, message="the attached TUI")
        wait_until(lambda: terminal.shows(b"detach"), message="the footer, with `d detach`")
        terminal.hang_up()
        assert terminal.proc.wait(15) == 0
    ps = cli("ps", "--json", cwd=project)
    assert ps.returncode == 0, ps.stderr
    assert {p["state"] for p in json.loads(ps.stdout)["processes"]} == {"running"}


# What Textual writes on entering its application mode (the alternate screen) and on leaving it.
ENTERS_APPLICATION_MODE, LEAVES_APPLICATION_MODE = b"\x1b[?1049h", b"\x1b[?1049l"


def test_a_sigcont_to_a_tui_that_was_not_stopped_changes_nothing(project: Path) -> None:
    """The kernel sends SIGCONT with the SIGHUP of a hang-up, and anyone may ``kill -CONT``. Textual
    entered its application mode again on it, a second output thread beside the first, and a
    hang-up's shutdown then hung waiting on the first (1 in ~15)."""
    with Terminal([*CLI, "tui"], cwd=project, env=cli_env()) as terminal:
        wait_until(lambda: terminal.shows(b"detach"), timeout=30, message="the attached TUI")
        for _ in range(3):
            terminal.proc.send_signal(signal.SIGCONT)
        # A key typed after the signals is read after their handler ran (on the app's thread).
        terminal.type(b"2")
        wait_until(lambda: terminal.shows(b"sequencer"), message="the Overview")
        terminal.type(b"d")
        assert terminal.proc.wait(15) == 0
        terminal.shows(b"")
        assert terminal.screen.count(ENTERS_APPLICATION_MODE) == 1


def test_a_stopped_tui_continues_on_its_terminal(project: Path) -> None:
    """``kill -TSTP`` stops the TUI with the terminal given back; ``kill -CONT`` draws it again."""
    with Terminal([*CLI, "tui"], cwd=project, env=cli_env()) as terminal:
        wait_until(lambda: terminal.shows(b"detach"), timeout=30, message="the attached TUI")
        terminal.proc.send_signal(signal.SIGTSTP)
        wait_until(lambda: process_state(terminal.proc.pid) == "T", message="the TUI stopped")
        assert terminal.shows(LEAVES_APPLICATION_MODE)
        terminal.proc.send_signal(signal.SIGCONT)
        wait_until(
            lambda: terminal.shows(b"") and terminal.screen.count(ENTERS_APPLICATION_MODE) == 2,
            message="the TUI drawn again",
        )
        terminal.type(b"d")
        assert terminal.proc.wait(15) == 0


def test_letting_go_of_a_hung_up_terminal_points_its_streams_at_dev_null() -> None:
    """After a hang-up the terminal's streams fail every write (EIO) and ``isatty`` says no: the
    streams that were on it still go to /dev/null, and a pipe stays a pipe."""
    script = (
        "import json, os, sys\n"
        "from lacrimosa.engine.hangup import let_go_of_the_terminal\n"
        "sys.stdin.readline()\n"  # the test hangs up first, then writes a line on this pipe
        "let_go_of_the_terminal()\n"
        "print('written after the hang-up', flush=True)\n"
        "links = [os.readlink(f'/proc/self/fd/{fd}') for fd in (0, 1, 2)]\n"
        "os.write(int(sys.argv[1]), json.dumps(links).encode())\n"
    )
    report_r, report_w = os.pipe()
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(report_w)],
        env=cli_env(),
        stdin=subprocess.PIPE,
        stdout=follower,
        stderr=follower,
        pass_fds=(report_w,),
    )
    os.close(follower)
    os.close(report_w)
    os.close(leader)  # the hang-up
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.close()
    assert proc.wait(20) == 0
    with os.fdopen(report_r, "rb") as report:
        stdin, stdout, stderr = json.loads(report.read())
    assert stdin.startswith("pipe:") and stdout == stderr == os.devnull
