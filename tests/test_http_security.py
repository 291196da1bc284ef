"""Attacks on the HTTP API from this machine (loopback only): each test plays one attack against
a real console serving on 127.0.0.1:0, with real clients (httpx, websockets, raw sockets), and
checks the console holds. The README's "Limits, deadlines and trust" says what they rely on."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import wait_until
from http_helpers import MakeServed, Served
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from lacrimosa.api.http import HttpServer
from lacrimosa.api.http.app import WAITS_AT_ONCE, WHERE_WINDOWS_AT_ONCE
from lacrimosa.engine.console import QUERIES_AT_ONCE, Console
from lacrimosa.engine.errors import LacrimosaError

QUIET = """
    [processes.quiet]
    cmd = "sleep 300"
"""
# A line a backtracking regular expression engine takes 2^24 steps on with (a+)+$.
BACKTRACKER = """
    [processes.bait]
    cmd = "python3 -c 'import time\\nprint(\\"a\\" * 24 + \\"!\\", flush=True)\\ntime.sleep(300)'"
"""


def test_a_backtracking_regular_expression_cannot_freeze_the_console(served: MakeServed) -> None:
    """One query of a read key: with Python's re, (a+)+$ held the GIL for seconds on this line
    (minutes on a longer one), and nothing in the console ran meanwhile, /health included."""
    s = served(BACKTRACKER)
    reader = s.client(s.key("read"))
    wait_until(lambda: s.console.process("bait").stdout_lines == 1)
    started = time.monotonic()
    reply = reader.post(
        "/api/query", json={"query": "SELECT * FROM bait WHERE line MATCHES '(a+)+$'"}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["result"]["rows"] == []
    assert time.monotonic() - started < 1.0
    # What RE2 cannot run in linear time (backreferences, lookaround) is a syntax error.
    refused = reader.post(
        "/api/query", json={"query": "SELECT * FROM bait WHERE line MATCHES '(?=a)'"}
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "query_syntax"
    assert "RE2" in refused.json()["error"]["message"]


@contextmanager
def deadlined_server(s: Served, **bounds: Any) -> Iterator[HttpServer]:
    """A second server on the same console, with small bounds to drive past in a test."""
    server = HttpServer(s.console, "127.0.0.1:0", **bounds)
    server.start()
    try:
        yield server
    finally:
        server.close()


def _connect(server: HttpServer) -> socket.socket:
    host, port = server.address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    return sock


def _health(sock: socket.socket) -> bytes:
    """GET /health on a connection kept open: the whole reply (head and body)."""
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    reply = b""
    while not reply.endswith(b"}"):  # the body is one JSON object
        chunk = sock.recv(4096)
        assert chunk, reply
        reply += chunk
    return reply


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> float:
    """Seconds until the server closes ``sock`` (sending ``trickle`` every 0.1 s meanwhile, as a
    slowloris does); fails if it is still open after ``seconds``."""
    started = time.monotonic()
    sock.settimeout(0.1)
    while time.monotonic() - started < seconds:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        try:
            if trickle:
                sock.sendall(trickle)
        except OSError:  # reset: closed
            return time.monotonic() - started
    raise AssertionError(f"the connection was still open after {seconds}s")


def test_slow_headers_and_slow_bodies_are_cut_off_and_others_are_served(
    served: MakeServed,
) -> None:
    """Slowloris: with uvicorn alone, a client sending a header line now and then (or a body a
    byte at a time) kept its connection forever, and max_connections of them shut everyone out."""
    s = served(QUIET)
    with (
        deadlined_server(s, max_connections=3, request_timeout=2.0) as server,
        ExitStack() as stack,
    ):
        url = f"http://{server.address}"
        slow = [stack.enter_context(closing(_connect(server))) for _ in range(3)]
        for sock in slow[:2]:
            sock.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        slow[2].sendall(
            b"POST /api/query HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
            + s.admin_key.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        with httpx.Client(base_url=url) as shut_out:
            assert shut_out.get("/health").status_code == 503  # every connection is held
        for sock, trickle in zip(slow, (b"X-A: b\r\n", b"X", b" "), strict=True):
            assert _closed_within(sock, 6.0, trickle) < 4.0
        assert server.stats()["slow_requests"] == 3
        # Past the deadline, what is not a request arriving is left alone: a kept-alive
        # connection idle, a route answering late, a WebSocket.
        headers = {"Authorization": f"Bearer {s.admin_key}"}
        ws_url = f"ws://{server.address}/api/stream"
        with (
            closing(_connect(server)) as kept,
            connect(ws_url, additional_headers=headers) as ws,
            httpx.Client(base_url=url) as c,
        ):
            assert _health(kept).startswith(b"HTTP/1.1 200")
            assert json.loads(ws.recv(timeout=5))["type"] == "connected"
            params = {"name": "quiet", "until": "exited", "timeout": "2.5s"}
            reply = c.get("/api/wait", params=params, headers=headers)  # the others idle meanwhile
            assert reply.status_code == 200 and reply.json()["result"]["outcome"] == "timeout"
            assert _health(kept).startswith(b"HTTP/1.1 200")
            ws.send(json.dumps({"type": "ping"}))
            while json.loads(ws.recv(timeout=5))["type"] != "pong":
                pass


def test_dns_rebinding_and_pages_of_other_origins_are_refused(served: MakeServed) -> None:
    """A page at http://rebound.example:PORT whose name now points at 127.0.0.1 sends its own
    name as Host; a page anywhere sends its Origin, and may open a WebSocket with no preflight."""
    s = served(QUIET)
    port = s.url.rsplit(":", 1)[1]
    admin = {"Authorization": f"Bearer {s.admin_key}"}
    with httpx.Client(base_url=s.url) as c:
        for host in ("rebound.example", f"rebound.example:{port}", "127.0.0.1.rebound.example"):
            for path in ("/health", "/api/status"):
                reply = c.get(path, headers={"Host": host, **admin})
                assert reply.status_code == 421, (host, path, reply.text)
                assert reply.json()["error"]["code"] == "misdirected"
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", "127.0.0.2"):
            assert c.get("/api/status", headers={"Host": host, **admin}).status_code == 200, host
        evil = {"Origin": "http://evil.example", **admin}
        reply = c.post("/api/processes/quiet/stop", headers=evil)
        assert reply.status_code == 403 and "Origin" in reply.json()["error"]["message"]
        assert s.console.process("quiet").state == "running"
        # The API's own origin is no other origin.
        assert c.get("/api/status", headers={"Origin": s.url, **admin}).status_code == 200
    ws_url = s.url.replace("http://", "ws://") + "/api/stream"
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url, additional_headers=admin, origin="http://evil.example", open_timeout=5)
    assert refused.value.response.status_code == 403
    with connect(ws_url, additional_headers=admin, open_timeout=5) as ws:  # no Origin: a tool
        assert json.loads(ws.recv(timeout=5))["type"] == "connected"
    refusals = [r for r in s.console.audit.records(limit=50) if r["action"] == "http_refused"]
    assert {r["args"]["status"] for r in refusals} == {421, 403}


def test_a_forwarded_for_header_cannot_put_another_address_in_the_audit_log(
    served: MakeServed,
) -> None:
    s = served(QUIET)
    with httpx.Client(base_url=s.url) as c:
        headers = {"X-Forwarded-For": "203.0.113.7", "Authorization": "Bearer lcm_x"}
        assert c.get("/api/status", headers=headers).status_code == 401
    (refused,) = [r for r in s.console.audit.records(limit=10) if r["action"] == "http_refused"]
    assert refused["args"]["client"].startswith("127.0.0.1:")


def test_a_deeply_nested_stream_message_is_a_bad_message_not_a_failure(served: MakeServed) -> None:
    s = served(QUIET)
    url = s.url.replace("http://", "ws://") + "/api/stream"
    with connect(url, additional_headers={"Authorization": f"Bearer {s.admin_key}"}) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "connected"
        ws.send("[" * 30000 + "]" * 30000)  # within the 64 KiB a message may have
        reply = json.loads(ws.recv(timeout=5))
        assert reply["type"] == "error" and "nest" in reply["message"]
        ws.send(json.dumps({"type": "ping"}))  # and the stream goes on
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"
    assert s.server.stats()["stream_bad_messages"] == 1
    assert s.server.stats()["problems"] == 0


MANY_LINES = 100_000
MANY = f"""
    [processes.many]
    cmd = "python3 -c 'import sys, time\\nsys.stdout.write((\\"a\\" * 30 + \\"\\\\n\\") * {MANY_LINES})\\ntime.sleep(300)'"
"""


def _at_once(
    s: Served, key: str, count: int, method: str, path: str, *arguments: dict[str, Any]
) -> list[httpx.Response]:
    """``count`` requests sent together (clients made first, released by a barrier, so a loaded
    machine does not spread them out), the i-th with ``arguments[i % len(arguments)]`` as its
    httpx keyword arguments; their replies, once all have come."""
    clients = [
        httpx.Client(base_url=s.url, timeout=60, headers={"Authorization": f"Bearer {key}"})
        for _ in range(count)
    ]
    barrier = threading.Barrier(count)
    answers: list[httpx.Response] = []

    def send(i: int) -> None:
        barrier.wait(10)
        answers.append(clients[i].request(method, path, **arguments[i % len(arguments)]))

    senders = [threading.Thread(target=send, args=(i,)) for i in range(count)]
    try:
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(60)
    finally:
        for client in clients:
            client.close()
    assert len(answers) == count
    return answers


def test_queries_past_the_bound_are_refused_busy_not_queued(served: MakeServed) -> None:
    s = served(MANY)
    wait_until(lambda: s.console.process("many").stdout_lines == MANY_LINES, timeout=30)
    slow = "SELECT count(*) FROM many WHERE a.b = 1 OR line MATCHES 'b' OR line CONTAINS 'c'"
    key = s.key("read")
    count = QUERIES_AT_ONCE * 3
    answers = _at_once(
        s, key, count, "POST", "/api/query", {"json": {"query": slow, "deadline": 5}}
    )
    busy = [reply for reply in answers if reply.status_code == 503]
    assert QUERIES_AT_ONCE <= len(busy) <= count - 1, [r.status_code for r in answers]
    assert busy[0].json()["error"]["code"] == "busy"
    assert s.client(key).post("/api/query", json={"query": slow}).status_code == 200  # freed


def test_waits_past_the_bound_are_refused_and_other_routes_still_answer(
    served: MakeServed,
) -> None:
    """Before: 40 waits of a read key (each may wait 24 h) held every thread routes run in, and
    an admin's restart waited behind them."""
    s = served(QUIET + '[processes.waited]\ncmd = "sleep 300"\n')
    key = s.key("read")
    answers: list[httpx.Response] = []

    def wait() -> None:
        with httpx.Client(base_url=s.url, timeout=60) as c:
            params = {"name": "waited", "until": "state", "state": "stopped", "timeout": "30s"}
            answers.append(
                c.get("/api/wait", params=params, headers={"Authorization": f"Bearer {key}"})
            )

    waiters = [threading.Thread(target=wait) for _ in range(40)]
    for waiter in waiters:
        waiter.start()
    admin = s.client(s.admin_key)
    busy = lambda: [r for r in answers if r.status_code == 503]  # noqa: E731
    wait_until(lambda: len(busy()) == 40 - WAITS_AT_ONCE, message="the waits past the bound")
    assert busy()[0].json()["error"]["code"] == "busy"
    assert not [r for r in answers if r.status_code != 503]  # the others still wait
    assert admin.post("/api/processes/quiet/restart").status_code == 200  # not behind them
    assert admin.post("/api/processes/waited/stop").status_code == 200  # ends the waits
    for waiter in waiters:
        waiter.join(30)
    assert sorted(r.status_code for r in answers) == [200] * WAITS_AT_ONCE + [503] * (
        40 - WAITS_AT_ONCE
    )


def test_two_authorization_headers_are_refused_whichever_comes_first(served: MakeServed) -> None:
    """Before: the first counted, so a good key beside a bad one passed here, while a proxy in
    front that checks the last would have seen the bad one."""
    s = served(QUIET)
    good, bad = ("Authorization", f"Bearer {s.admin_key}"), ("Authorization", "Bearer lcm_x")
    with httpx.Client(base_url=s.url) as c:
        assert c.get("/api/status", headers=[good]).status_code == 200
        for headers in ([good, bad], [bad, good], [good, good]):
            reply = c.get("/api/status", headers=headers)
            assert reply.status_code == 401
            assert "more than one Authorization header" in reply.json()["error"]["message"]
        # Held already: a key is read from the header only, never from the query string.
        for name in ("key", "access_token", "token", "api_key", "authorization"):
            assert c.get("/api/status", params={name: s.admin_key}).status_code == 401


def test_log_windows_with_a_where_past_the_bound_are_refused_busy(served: MakeServed) -> None:
    """A where's first window scans the whole store with no deadline (seconds for a full one):
    many at once held the routes' thread pool, as waits did."""
    s = served(MANY)
    wait_until(lambda: s.console.process("many").stdout_lines == MANY_LINES, timeout=30)
    count = WHERE_WINDOWS_AT_ONCE * 3
    windows = [
        {"params": {"where": f"a.b = {i} OR line CONTAINS 'c'", "tail": 10}} for i in range(count)
    ]
    answers = _at_once(s, s.key("read"), count, "GET", "/api/log_window", *windows)
    busy = [reply for reply in answers if reply.status_code == 503]
    assert WHERE_WINDOWS_AT_ONCE <= len(busy) < count, [r.status_code for r in answers]
    assert busy[0].json()["error"]["code"] == "busy"
    assert s.server.stats()["busy"] == len(busy)


@pytest.mark.parametrize("planted", ["keys.json", "http-admin.key", "audit.log"])
def test_a_symlink_planted_in_the_state_folder_is_never_followed(
    console: Callable[..., Console], tmp_path: Path, planted: str
) -> None:
    target = tmp_path / "target"
    target.write_text("precious\n")
    target.chmod(0o600)
    home = tmp_path / ".lacrimosa"
    home.mkdir(mode=0o700)
    (home / planted).symlink_to(target)
    instance = console(QUIET)
    server = HttpServer(instance, "127.0.0.1:0")
    try:
        server.start()
    except LacrimosaError as exc:
        assert planted == "keys.json" and "cannot open" in exc.message
    else:
        with httpx.Client(base_url=f"http://{server.address}") as c:
            assert (
                c.get("/api/status", headers={"Authorization": "Bearer lcm_x"}).status_code == 401
            )
    finally:
        server.close()
    assert target.read_text() == "precious\n"
    if planted == "http-admin.key":  # replaced by the key, the link itself (not its target)
        assert not (home / planted).is_symlink()


def test_a_compressed_websocket_message_is_bounded_after_inflating(served: MakeServed) -> None:
    """Held already: 50 MB of spaces deflate to about 50 KB; the 64 KiB bound is on the message
    inflated, so the connection is closed (1009) before the console holds it."""
    s = served(QUIET)
    url = s.url.replace("http://", "ws://") + "/api/stream"
    headers = {"Authorization": f"Bearer {s.admin_key}"}
    with connect(url, additional_headers=headers, compression="deflate") as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "connected"
        ws.send(json.dumps({"type": "ping", "pad": " " * (50 << 20)}))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


STDOUT_AFTER_STDERR = """
    [processes.chatty]
    cmd = "python3 -c 'import sys, time\\nprint(\\"old\\", file=sys.stderr, flush=True)\\ntime.sleep(0.5)\\nsys.stdout.write(\\"a\\\\n\\" * 300000)\\ntime.sleep(300)'"
"""


def test_a_stream_history_looks_through_a_bounded_number_of_lines(served: MakeServed) -> None:
    """Before: a history for a stream nobody writes made a line object of every stored line (2.4 s
    for 400k lines, about 50 s for a full store) in the console's interpreter, per request."""
    s = served(STDOUT_AFTER_STDERR)
    wait_until(lambda: s.console.process("chatty").stdout_lines == 300_000, timeout=30)
    url = s.url.replace("http://", "ws://") + "/api/stream"
    with connect(url, additional_headers={"Authorization": f"Bearer {s.admin_key}"}) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "connected"

        def history(streams: list[str]) -> list[str]:
            ws.send(json.dumps({"type": "filter", "streams": streams}))
            ws.send(json.dumps({"type": "history", "since": "1h"}))
            while (message := json.loads(ws.recv(timeout=10)))["type"] != "history":
                pass
            return [line["text"] for line in message["lines"]]

        # One stream: the store skips the others, so the old line is found however far back.
        assert history(["stderr"]) == ["old"]
        # Two: looked for line by line, among the newest HISTORY_SCAN_LINES only.
        assert history(["stderr", "system"]) == []
