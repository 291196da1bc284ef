"""Attaching over HTTP (``lacrimosa tui --url``): the log_window, subscribe and shutdown routes,
the TUI on a RemoteConsole with the HTTP transport under Pilot (a real console serving HTTP on
127.0.0.1:0), keys of each scope, and the CLI's errors as a user meets them."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest
from helpers import send_events, wait_for, wait_until
from http_helpers import Served, close_all, serve
from test_attach import (
    IDLE,
    SIZE,
    events_shown_and_followed,
    rows_of,
    state_of,
    status_of,
    the_console_stopping_ends_the_app,
    the_stop_in_the_audit_view,
)
from test_cli import cli
from test_tui_events import notifications
from test_tui_query import query_view_and_where_filter_attached
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from lacrimosa.api.client import RemoteError
from lacrimosa.api.remote_console import RemoteConsole
from lacrimosa.api.remote_http import HttpTransport
from lacrimosa.engine.console import Console
from lacrimosa.engine.logs.store import STDOUT
from lacrimosa.engine.processes.supervisor import State
from lacrimosa.tui import LacrimosaApp
from lacrimosa.tui.app import DETACHED


@pytest.fixture
def http_console(console: Callable[..., Console]) -> Iterator[Callable[..., Served]]:
    """A factory: a started Console serving HTTP on 127.0.0.1:0 that carries out a shutdown a
    client asks for, as ``up`` does (then its HTTP server stops)."""
    made: list[Served] = []

    def make(text: str = IDLE) -> Served:
        served = serve(console(text), made)

        def run() -> None:
            served.console.shutdown_requested.wait()
            served.console.shutdown()
            served.server.close()

        threading.Thread(target=run, name="test-console-runner", daemon=True).start()
        return served

    yield make
    close_all(made)


def attach(served: Served, scope: str) -> RemoteConsole:
    return RemoteConsole(transport=HttpTransport(served.url, served.key(scope)))


# -- the routes ----------------------------------------------------------------------------------


def test_log_window_and_subscribe_over_http_with_a_read_key(
    http_console: Callable[..., Served],
) -> None:
    s = http_console()
    s.console.store.append("api", STDOUT, b"".join(b"line %d\n" % i for i in range(50)))
    key = s.key("read")
    reader = s.client(key)
    first = reader.get("/api/log_window", params={"name": "api", "grep": "line", "tail": 5})
    assert first.status_code == 200, first.text
    window = first.json()["result"]
    assert window["total"] == 50 and [x["text"] for x in window["lines"]][-1] == "line 49"
    again = reader.get(
        "/api/log_window",
        params={"name": "api", "grep": "line", "end_id": window["end_id"], "total": 50}
        | {"start": 0, "stop": 2},
    ).json()["result"]
    assert [x["text"] for x in again["lines"]] == ["line 0", "line 1"]
    bad = reader.get("/api/log_window", params={"tail": 1001})
    assert bad.status_code == 422
    refused = reader.get("/api/log_window", params={"end_id": 3})  # without total
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_request"

    headers = {"Authorization": f"Bearer {key}"}
    address = "ws" + s.url[len("http") :] + "/api/subscribe"
    with connect(address, additional_headers=headers) as ws:
        state = json.loads(ws.recv())["result"]
        assert {p["name"] for p in state["processes"]} == {"api", "worker"}
        # Then updates: the processes at least once a second (versions in every one).
        update = json.loads(ws.recv(timeout=5))["result"]
        assert "version" in update and "processes" in update


def test_subscriptions_are_bounded_and_need_a_key(http_console: Callable[..., Served]) -> None:
    s = http_console()
    s.server.api.subscriptions.limit = 2
    address = "ws" + s.url[len("http") :] + "/api/subscribe"
    headers = {"Authorization": f"Bearer {s.key('read')}"}
    with pytest.raises(InvalidStatus) as refused:
        connect(address).close()
    assert refused.value.response.status_code == 401
    with (
        connect(address, additional_headers=headers) as one,
        connect(address, additional_headers=headers) as two,
    ):
        assert json.loads(one.recv())["ok"] and json.loads(two.recv())["ok"]
        with connect(address, additional_headers=headers) as three:
            with pytest.raises(ConnectionClosed) as closed:
                three.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        assert s.server.api.subscriptions.refused == 1
    # Both gone: their threads end and the slots are free again.
    wait_until(lambda: s.server.api.subscriptions.open == 0)
    with connect(address, additional_headers=headers) as four:
        assert json.loads(four.recv())["ok"]


def test_shutdown_needs_an_admin_key(http_console: Callable[..., Served]) -> None:
    s = http_console()
    refused = s.client(s.key("write")).post("/api/shutdown")
    assert refused.status_code == 403 and not s.console.shutdown_requested.is_set()
    assert s.client(s.admin_key).post("/api/shutdown").status_code == 200
    assert s.console.stopped.wait(20)


# -- the TUI attached over HTTP, under Pilot -----------------------------------------------------


async def test_attach_over_http_act_with_a_write_key_and_detach(
    http_console: Callable[..., Served],
) -> None:
    s = http_console()
    wait_until(lambda: s.console.process("worker").stdout_lines == 3)
    remote = attach(s, "write")
    app = LacrimosaApp(remote, attached=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: any("worker line 3" in r for r in rows_of(app)), "lines")
        assert state_of(app, "api").startswith(State.RUNNING)
        await pilot.press("down", "down")
        await wait_for(pilot, lambda: app.selected_process == "worker", "selection")
        await wait_for(
            pilot, lambda: [r.strip() for r in rows_of(app) if r][-1] == "worker line 3", "worker"
        )
        await pilot.press("x")
        await wait_for(pilot, lambda: state_of(app, "worker") == State.STOPPED, "the stop shown")
        record = s.console.audit.records(limit=1)[0]
        assert (record["action"], record["actor"]["source"]) == ("stop", "http")
        await the_stop_in_the_audit_view(pilot, app)  # over /api/audit
        await pilot.press("1")
        await pilot.press("d")
        await wait_for(pilot, lambda: app.return_value is not None, "detach")
    remote.close()
    assert app.return_value == DETACHED and app.stop_refused is None
    assert s.console.process("api").state == State.RUNNING
    assert not s.console.shutdown_requested.is_set()


async def test_a_read_key_is_told_its_actions_are_refused(
    http_console: Callable[..., Served],
) -> None:
    s = http_console()
    remote = attach(s, "read")
    app = LacrimosaApp(remote, attached=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: state_of(app, "api").startswith(State.RUNNING), "table")
        await pilot.press("down")
        await wait_for(pilot, lambda: app.selected_process == "api", "selection")
        await pilot.press("r")
        await wait_for(
            pilot,
            lambda: any(
                "this key's scope is read; this needs write" in n for n in notifications(app)
            ),
            "the refusal said",
        )
        assert app.is_running and s.console.process("api").restarts == 0
        # q q: stopping the console needs admin; the app says so and leaves it running.
        await pilot.press("q")
        await wait_for(pilot, lambda: "detach or stop everything?" in status_of(app), "the ask")
        await pilot.press("q")
        await wait_for(pilot, lambda: app.return_value is not None, "the app to end")
    remote.close()
    assert app.return_value == DETACHED
    assert app.stop_refused is not None and "needs admin" in app.stop_refused
    assert s.console.process("api").state == State.RUNNING


async def test_the_query_view_and_the_where_filter_over_http(
    http_console: Callable[..., Served],
) -> None:
    s = http_console()
    wait_until(lambda: s.console.process("worker").stdout_lines == 3)
    await query_view_and_where_filter_attached(attach(s, "read"))


async def test_q_q_with_an_admin_key_stops_everything(http_console: Callable[..., Served]) -> None:
    s = http_console()
    remote = RemoteConsole(transport=HttpTransport(s.url, s.admin_key))
    app = LacrimosaApp(remote, attached=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: state_of(app, "api").startswith(State.RUNNING), "table")
        await pilot.press("q", "q")
        await wait_for(pilot, lambda: not app.is_running, "the app to end", timeout=20)
    remote.close()
    assert app.stop_refused is None
    assert s.console.stopped.wait(20)


async def test_the_console_stopping_elsewhere_ends_the_app_attached_over_http(
    http_console: Callable[..., Served],
) -> None:
    s = http_console()
    await the_console_stopping_ends_the_app(attach(s, "read"), s.console)


async def test_events_view_over_http(
    http_console: Callable[..., Served], udp_sender: socket.socket
) -> None:
    s = http_console(IDLE + '\n    [sequencer]\n    udp = "127.0.0.1:0"\n')
    send_events(s.console, udp_sender, b"deploy started\n", b"deploy done\n")
    remote = attach(s, "read")
    app = LacrimosaApp(remote, attached=True)
    async with app.run_test(size=SIZE) as pilot:
        await events_shown_and_followed(pilot, app, s.console, udp_sender)
        # By node: every matching seq of the journal would be needed; refused with a note.
        await pilot.press("n", "7", "enter")
        await wait_for(
            pilot, lambda: any("not listed over HTTP" in n for n in notifications(app)), "the note"
        )
        assert app.is_running
        await pilot.press("d")
    remote.close()


# -- lacrimosa tui --url, as a user runs it ------------------------------------------------------


def test_tui_url_errors(
    http_console: Callable[..., Served], tmp_path_factory: pytest.TempPathFactory
) -> None:
    s = http_console()
    tmp_path = tmp_path_factory.mktemp("elsewhere")  # no project here: none is needed
    bad = cli("tui", "--url", "ftp://127.0.0.1:1", cwd=tmp_path)
    assert bad.returncode == 2 and "http://HOST:PORT" in bad.stderr
    no_key = cli("tui", "--url", s.url, cwd=tmp_path)
    assert no_key.returncode == 1 and "LACRIMOSA_KEY" in no_key.stderr, no_key.stderr
    wrong = cli("tui", "--url", s.url, "--key", "not-a-key", cwd=tmp_path)
    assert wrong.returncode == 1 and "refused the key" in wrong.stderr
    with socket.socket() as unused:  # bound, never listening: connections are refused
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        gone = cli("tui", "--url", f"http://127.0.0.1:{port}", "--key", "k", cwd=tmp_path)
    assert gone.returncode == 4 and "cannot reach the console" in gone.stderr
    # A good key, but no terminal: said after the console was reached (nothing is started).
    tty = cli("tui", "--url", s.url, "--key", s.key("read"), cwd=tmp_path)
    assert tty.returncode == 2 and "needs a terminal" in tty.stderr


def test_a_refused_request_is_a_remote_error(http_console: Callable[..., Served]) -> None:
    s = http_console()
    transport = HttpTransport(s.url, s.key("read"))
    try:
        assert {p["name"] for p in transport.request("ps")["processes"]} == {"api", "worker"}
        with pytest.raises(RemoteError) as refused:
            transport.act("stop", "api")
        assert refused.value.code == "forbidden" and refused.value.exit_code == 1
        assert httpx.get(s.url + "/health").json()["result"]["status"] == "ok"
    finally:
        transport.close()
