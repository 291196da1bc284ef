"""The HTTP API against a real console serving on 127.0.0.1:0, with httpx as the client."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from helpers import wait_until, write_config
from http_helpers import MakeServed
from prometheus_client.parser import text_string_to_metric_families

from lacrimosa.api.http import FIRST_KEY_NAME, ROUTE_SCOPES, HttpServer
from lacrimosa.api.http.auth import MAX_BODY, REFUSALS_PER_SECOND, route_methods
from lacrimosa.engine.errors import ConsoleError
from lacrimosa.engine.keys import SCOPES

SAMPLE_PARAMETERS = {"name": "ticker", "key_id": "00000000"}


def _routes(server: HttpServer) -> list[tuple[str, str]]:
    """(method, path template) of every route in the framework's own table."""
    return [
        (method, route.path)  # type: ignore[attr-defined]
        for route in server.api.app.routes
        for method in route_methods(route)
    ]


def _concrete(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE_PARAMETERS[m.group(1)], template)


def test_every_route_but_health_needs_a_key_of_its_scope(served: MakeServed) -> None:
    s = served()
    routes = _routes(s.server)
    # The table and the app agree both ways: no route without a scope, no scope without a route.
    assert sorted(routes) == sorted(ROUTE_SCOPES)
    lower = {scope: s.key(SCOPES[SCOPES.index(scope) - 1]) for scope in SCOPES[1:]}
    nobody, stranger = s.client(), s.client("lcm_00000000_" + "x" * 43)
    checked = 0
    for method, template in routes:
        path = _concrete(template)
        needed = ROUTE_SCOPES[method, template]
        if needed is None:
            assert nobody.request(method, path).status_code == 200, path
            continue
        for client in (nobody, stranger):
            reply = client.request(method, path)
            assert reply.status_code == 401, (method, path, reply.text)
            assert reply.json()["error"]["code"] == "unauthorized"
            assert reply.headers["www-authenticate"].startswith("Bearer")
        if needed in lower:
            reply = s.client(lower[needed]).request(method, path)
            assert reply.status_code == 403, (method, path, reply.text)
            assert reply.json()["error"]["code"] == "forbidden"
        checked += 1
    assert checked == len(ROUTE_SCOPES) - 1
    # An unknown path says nothing without a key either.
    assert nobody.get("/api/nothing-here").status_code == 401
    assert s.client(s.admin_key).get("/api/nothing-here").status_code == 404


def test_the_scope_table_route_by_route(served: MakeServed) -> None:
    s = served()
    reader, writer, admin = (s.client(s.key(scope)) for scope in SCOPES)
    wait_until(lambda: s.console.process("ticker").stdout_lines >= 3)
    for client in (reader, writer, admin):
        assert client.get("/api/processes").json()["result"]["processes"][0]["name"] == "ticker"
        assert client.get("/api/processes/ticker").json()["result"]["state"] == "running"
        assert client.get("/api/status").json()["result"]["processes"] == 1
        lines = client.get("/api/processes/ticker/logs", params={"lines": 2}).json()
        assert [line["text"] for line in lines["result"]["lines"]] == ["tick", "tick"]
        assert len(client.get("/api/logs", params={"lines": 3}).json()["result"]["lines"]) == 3
        assert client.get("/api/audit").status_code == 200
        assert client.get("/openapi.json").json()["info"]["title"] == "lacrimosa"
    assert reader.post("/api/processes/ticker/restart").status_code == 403
    reply = writer.post("/api/processes/ticker/restart")
    assert reply.status_code == 200, reply.text
    assert reply.json()["result"]["outcome"] == "restarted"
    assert writer.get("/api/keys").status_code == 403
    created = admin.post("/api/keys", json={"scope": "read", "name": "grafana"})
    assert created.status_code == 201
    made = created.json()["result"]
    assert made["scopes"] == ["read"] and made["key"].startswith("lcm_")
    listed = admin.get("/api/keys").json()["result"]["keys"]
    assert made["id"] in [k["id"] for k in listed]
    assert all("key" not in k and "digest" not in k for k in listed)
    # Takes effect at once: the new key reads, and once revoked it does not.
    fresh = s.client(made["key"])
    assert fresh.get("/api/status").status_code == 200
    assert admin.delete(f"/api/keys/{made['id']}").status_code == 200
    assert fresh.get("/api/status").status_code == 401
    assert admin.delete(f"/api/keys/{made['id']}").json()["error"]["code"] == "no_such_key"


def test_errors_mirror_the_socket_codes(served: MakeServed) -> None:
    s = served()
    admin = s.client(s.admin_key)

    def answer(method: str, path: str, **kwargs: object) -> tuple[int, str]:
        reply = admin.request(method, path, **kwargs)  # type: ignore[arg-type]
        return reply.status_code, reply.json()["error"]["code"]

    assert answer("GET", "/api/processes/nope") == (404, "no_such_process")
    assert answer("POST", "/api/processes/nope/stop") == (404, "no_such_process")
    assert answer("GET", "/api/processes/nope/logs") == (404, "no_such_process")
    assert answer("GET", "/api/logs", params={"lines": 10**7}) == (400, "invalid_request")
    assert answer("GET", "/api/logs", params={"since": "soon"}) == (400, "invalid_request")
    assert answer("GET", "/api/audit", params={"since": "soon"}) == (400, "invalid_request")
    assert answer("GET", "/api/logs", params={"lines": "many"}) == (422, "invalid_request")
    assert answer("POST", "/api/keys", json={"scope": "root"}) == (422, "invalid_request")
    assert answer("DELETE", "/api/keys/nope") == (404, "no_such_key")
    # No sequencer here: the action cannot be done in this state.
    assert answer("GET", "/api/events") == (409, "failed")
    assert answer("PUT", "/api/status") == (405, "method_not_allowed")


def test_every_http_action_lands_in_the_audit_log(served: MakeServed) -> None:
    s = served()
    writer_key = s.key("write", "deployer")
    writer = s.client(writer_key)
    writer.post("/api/processes/ticker/stop")
    writer.post("/api/processes/ticker/start")
    writer.post("/api/processes/nope/restart")
    s.client().get("/api/status")  # refused: 401
    s.client(s.key("read", "viewer")).post("/api/processes/ticker/stop")  # refused: 403
    records = s.client(s.admin_key).get("/api/audit", params={"limit": 6}).json()["result"]
    seen = [
        (r["action"], r["target"], r["outcome"], r["actor"].get("key_name"))
        for r in records["records"]
    ]
    assert seen[-5:] == [
        ("stop", "ticker", "ok", "deployer"),
        ("start", "ticker", "ok", "deployer"),
        ("restart", "nope", "no_such_process", "deployer"),
        ("http_refused", "/api/status", "unauthorized", None),
        ("http_refused", "/api/processes/ticker/stop", "forbidden", "viewer"),
    ]
    assert all(r["actor"]["source"] == "http" for r in records["records"][-5:])
    verified = s.client(s.admin_key).get("/api/audit/verify").json()["result"]
    assert verified["ok"] and verified["problems"] == []


def test_refusals_past_the_bound_are_summarised_not_listed(served: MakeServed) -> None:
    s = served()
    before = s.console.audit.count
    attempts = 60
    with s.client("lcm_deadbeef_wrong") as attacker:
        for _ in range(attempts):
            assert attacker.get("/api/status").status_code == 401
    refusals = s.server.api.refusals
    wait_until(lambda: refusals.summarised > 0 and refusals._held == 0)
    records = s.console.audit.records(1000)[-(s.console.audit.count - before) :]
    listed = [r for r in records if r["action"] == "http_refused"]
    summaries = [r for r in records if r["action"] == "http_refused_summary"]
    assert len(listed) + sum(r["args"]["refused"] for r in summaries) == attempts
    # At most the bound a second, one by one (the requests took `seconds`, under a few).
    seconds = max(r["time"] for r in listed) - min(r["time"] for r in listed)
    assert len(listed) <= REFUSALS_PER_SECOND * (int(seconds) + 2)
    assert len(records) < attempts
    assert s.console.audit.verify().ok


def test_the_first_key_is_written_once_owner_only(served: MakeServed, tmp_path: Path) -> None:
    s = served()
    path = s.console.home / FIRST_KEY_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert s.client(s.admin_key).get("/api/keys").status_code == 200
    # A second server on the same console (as at the next start) finds a key: no new file.
    path.unlink()
    again = HttpServer(s.console, "127.0.0.1:0")
    again.start()
    try:
        assert again.first_key is None and not path.exists()
    finally:
        again.close()


def test_a_port_in_use_and_an_open_bind_without_a_key_are_start_errors(console: object) -> None:
    c = console(  # type: ignore[operator]
        """
        [processes.idle]
        cmd = "sleep 300"
    """
    )
    with pytest.raises(ConsoleError, match="not loopback"):
        HttpServer(c, "0.0.0.0:0").start()
    assert len(c.keys) == 0  # refused before any key was made
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        with pytest.raises(ConsoleError, match=f"cannot listen on 127.0.0.1:{port}"):
            HttpServer(c, f"127.0.0.1:{port}").start()
    finally:
        taken.close()


def test_metrics_parse_with_prometheus_clients_parser(served: MakeServed) -> None:
    s = served()
    admin = s.client(s.admin_key)
    wait_until(lambda: s.console.process("ticker").stdout_lines > 0)
    admin.get("/api/processes")
    s.client().get("/api/status")  # a 401, counted
    reply = admin.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(reply.text)}
    for name in (
        "lacrimosa_process_state",
        "lacrimosa_process_restarts",
        "lacrimosa_process_uptime_seconds",
        "lacrimosa_process_log_lines",
        "lacrimosa_process_log_lines_per_second",
        "lacrimosa_process_log_bytes",
        "lacrimosa_process_exits",
        "lacrimosa_log_store_bytes",
        "lacrimosa_log_store_budget_bytes",
        "lacrimosa_log_store_evicted_blocks",
        "lacrimosa_audit_records",
        "lacrimosa_http_requests",
        "lacrimosa_http_request_duration_seconds",
        "lacrimosa_http_refused",
        "lacrimosa_uptime_seconds",
    ):
        assert name in families, name
    assert families["lacrimosa_process_restarts"].type == "counter"
    ticker_bytes = {
        sample.labels["stream"]: sample.value
        for sample in families["lacrimosa_process_log_bytes"].samples
        if sample.labels["process"] == "ticker" and sample.name.endswith("_total")
    }
    counts = s.console.store.counts("ticker")
    assert set(ticker_bytes) == {"stdout", "stderr"} and ticker_bytes["stdout"] > 0
    assert ticker_bytes["stdout"] <= counts.stdout_bytes and counts.bytes >= sum(
        ticker_bytes.values()
    )
    states = {
        sample.labels["state"]: sample.value
        for sample in families["lacrimosa_process_state"].samples
    }
    assert states["running"] == 1 and sum(states.values()) == 1
    # A restart ends a run (killed by SIGTERM: -15), counted by its exit status.
    admin.post("/api/processes/ticker/restart")
    again = {f.name: f for f in text_string_to_metric_families(admin.get("/metrics").text)}
    exits = {x.labels["code"]: x.value for x in again["lacrimosa_process_exits"].samples}
    assert exits == {"-15": 1}
    requests = {
        (x.labels["route"], x.labels["status"]): x.value
        for x in families["lacrimosa_http_requests"].samples
        if x.name.endswith("_total")
    }
    assert requests["/api/processes", "200"] == 1
    assert requests["/api/status", "401"] == 1
    assert not any("_created" in name for name in reply.text.split())
    # Invented methods and paths do not grow the labels: one "other", one "(unmatched)".
    for n in range(20):
        admin.request(f"BREW{n}", f"/api/made-up/{n}")
    text = admin.get("/metrics").text
    assert 'method="other",route="(unmatched)"' in text and "BREW" not in text
    assert "made-up" not in text
    # Without the setting, /metrics needs a key; with it, it is public.
    assert s.client().get("/metrics").status_code == 401
    public = HttpServer(s.console, "127.0.0.1:0", metrics_public=True)
    public.start()
    try:
        assert httpx.get(f"http://{public.address}/metrics").status_code == 200
        assert httpx.get(f"http://{public.address}/api/status").status_code == 401
    finally:
        public.close()


def test_events_through_http_page_forward(served: MakeServed, udp_sender: socket.socket) -> None:
    from helpers import send_events

    s = served(
        """
        [processes.idle]
        cmd = "sleep 300"
        [sequencer]
        udp = "127.0.0.1:0"
    """
    )
    send_events(s.console, udp_sender, *(f"event {i}".encode() for i in range(25)))
    admin = s.client(s.admin_key)
    wait_until(lambda: admin.get("/api/events").json()["result"]["next_seq"] >= 25)
    newest = admin.get("/api/events", params={"lines": 5}).json()["result"]
    assert [e["text"] for e in newest["events"]] == [f"event {i}" for i in range(20, 25)]
    seen: list[str] = []
    after = 0
    while True:
        page = admin.get("/api/events", params={"lines": 10, "after": after}).json()["result"]
        if not page["events"]:
            break
        seen += [e["text"] for e in page["events"]]
        after = page["next_seq"]
    assert seen == [f"event {i}" for i in range(25)]


def test_a_long_logs_reply_is_streamed_whole(served: MakeServed) -> None:
    s = served(
        """
        [processes.burst]
        cmd = "seq 1 50000"
        restart = "never"
    """
    )
    wait_until(lambda: s.console.process("burst").stdout_lines == 50000)
    with s.client(s.admin_key) as admin:
        reply = admin.get("/api/logs", params={"lines": 50000, "stream": "stdout"})
    assert reply.status_code == 200
    result = json.loads(reply.content)["result"]
    assert [line["text"] for line in result["lines"]] == [str(i) for i in range(1, 50001)]


def test_lacrimosa_up_with_http_serves_and_says_where_the_key_is(tmp_path: Path) -> None:
    """The real CLI: `up --headless --http 127.0.0.1:0`, a key file, a request, a shutdown."""
    write_config(
        tmp_path,
        """
        [processes.idle]
        cmd = "sleep 300"
    """,
    )
    env = {k: v for k, v in os.environ.items() if k != "LACRIMOSA_HOME"}
    up = subprocess.Popen(
        [sys.executable, "-m", "lacrimosa.api.cli", "up", "--headless", "--http", "127.0.0.1:0"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        said: list[str] = []
        assert up.stderr is not None
        while not any("console up" in line for line in said):
            line = up.stderr.readline()
            assert line, "".join(said)
            said.append(line)
        text = "".join(said)
        address = re.search(r"HTTP API on http://([\d.:]+)/api/", text)
        assert address, text
        key_file = tmp_path / ".lacrimosa" / FIRST_KEY_NAME
        assert str(key_file) in text
        key = key_file.read_text().strip()
        reply = httpx.get(
            f"http://{address.group(1)}/api/processes",
            headers={"Authorization": f"Bearer {key}"},
        )
        assert reply.json()["result"]["processes"][0]["name"] == "idle"
        shutdown = subprocess.run(
            [sys.executable, "-m", "lacrimosa.api.cli", "shutdown"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            timeout=30,
        )
        assert shutdown.returncode == 0, shutdown.stderr
        assert up.wait(30) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        if up.stderr is not None:
            up.stderr.close()


def test_request_bodies_are_bounded(served: MakeServed) -> None:
    s = served()
    admin = s.client(s.admin_key)
    big = json.dumps({"scope": "read", "name": "x" * (MAX_BODY + 1)})
    reply = admin.post("/api/keys", content=big, headers={"content-type": "application/json"})
    assert reply.status_code == 413
    chunks = iter([b'{"scope": ', b'"read"}'])
    reply = admin.post("/api/keys", content=chunks, headers={"content-type": "application/json"})
    assert reply.status_code == 411
    assert len(s.console.keys) == 1  # neither made a key


async def test_the_tui_says_where_the_first_key_was_written(served: MakeServed) -> None:
    from lacrimosa.tui.app import LacrimosaApp

    s = served()
    notice = f"an admin API key was made and written once to {s.server.first_key}"
    app = LacrimosaApp(s.console, [notice])
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert [n.message for n in app._notifications] == [notice]
