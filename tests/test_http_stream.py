"""/api/stream with a real WebSocket client (websockets' sync client) against a real server."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from helpers import wait_until
from http_helpers import MakeServed, Served
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from lacrimosa.api.http import HttpServer
from lacrimosa.api.http.server import MAX_WS_MESSAGE
from lacrimosa.api.http.stream import (
    BATCH_INTERVAL,
    HISTORY_LINES,
    HUB_BATCH_LINES,
    QUEUE_BATCHES,
    Batch,
    Segment,
)

QUIET = """
    [processes.quiet]
    cmd = "sleep 300"
    [processes.other]
    cmd = "sleep 300"
"""
FLOOD = """
    [processes.flood]
    cmd = "python3 -c 'import sys\\nwhile True: sys.stdout.write(\\"x\\" * 200 + \\"\\\\n\\")'"
"""


@contextmanager
def stream(s: Served, key: str | None = None, **options: Any) -> Iterator[ClientConnection]:
    headers = {"Authorization": f"Bearer {key or s.admin_key}"}
    url = s.url.replace("http://", "ws://") + "/api/stream"
    with connect(url, additional_headers=headers, open_timeout=10, **options) as ws:
        yield ws


def receive(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def receive_until(ws: ClientConnection, wanted: Any, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = receive(ws, max(0.01, deadline - time.monotonic()))
        if wanted(message):
            return message


def test_connected_then_batches_of_what_changed(served: MakeServed) -> None:
    s = served(QUIET)
    with stream(s) as ws:
        hello = receive(ws)
        assert hello["type"] == "connected"
        assert {p["name"] for p in hello["processes"]} == {"quiet", "other"}
        # Idle: nothing is sent (a few batch intervals).
        with pytest.raises(TimeoutError):
            ws.recv(timeout=BATCH_INTERVAL * 6)
        s.client(s.admin_key).post("/api/processes/quiet/restart")
        batch = receive_until(ws, lambda m: m["type"] == "batch" and m["processes"])
        assert batch["window_start"] <= batch["window_end"]
        assert any(p["name"] == "quiet" for p in batch["processes"])
        ws.send(json.dumps({"type": "ping"}))
        assert receive_until(ws, lambda m: m["type"] != "batch")["type"] == "pong"


def test_filter_pause_resume_history_and_bad_messages(served: MakeServed) -> None:
    s = served(
        """
        [processes.a]
        cmd = "python3 -c 'import time\\nwhile True: print(\\"a\\", flush=True); time.sleep(0.02)'"
        [processes.b]
        cmd = "python3 -c 'import time\\nwhile True: print(\\"b\\", flush=True); time.sleep(0.02)'"
    """
    )
    with stream(s) as ws:
        assert receive(ws)["type"] == "connected"
        ws.send(json.dumps({"type": "filter", "processes": ["b"], "streams": ["stdout"]}))
        # After the filter took effect, only b's lines come.
        receive_until(ws, lambda m: m["type"] == "batch" and m["lines"])
        for _ in range(5):
            batch = receive_until(ws, lambda m: m["type"] == "batch" and m["lines"])
            assert {line["process"] for line in batch["lines"]} <= {"b"}
        ws.send(json.dumps({"type": "pause"}))
        time.sleep(BATCH_INTERVAL * 6)  # paused for a while: lines are missed meanwhile
        ws.send(json.dumps({"type": "resume"}))
        resumed = receive_until(ws, lambda m: m["type"] == "resumed")
        assert resumed["missed"] > 0
        ws.send(json.dumps({"type": "history", "since": "1m"}))
        history = receive_until(ws, lambda m: m["type"] == "history")
        assert history["lines"] and {line["process"] for line in history["lines"]} == {"b"}
        for bad in ("not json", "[1]", '{"type": "dance"}', '{"type": "filter", "nodes": "x"}'):
            ws.send(bad)
            assert receive_until(ws, lambda m: m["type"] not in ("batch",))["type"] == "error"
        assert s.server.api.hub.bad_messages == 4
        # Still served after them.
        assert receive_until(ws, lambda m: m["type"] == "batch")["lines"]


def test_a_line_written_arrives_as_logs_reads_it(served: MakeServed) -> None:
    s = served(QUIET)
    with stream(s) as ws:
        assert receive(ws)["type"] == "connected"
        # Stopping it writes a system line to its log.
        s.client(s.admin_key).post("/api/processes/quiet/stop")
        batch = receive_until(
            ws, lambda m: m["type"] == "batch" and any(x["process"] == "quiet" for x in m["lines"])
        )
        streamed = [x for x in batch["lines"] if x["process"] == "quiet"]
        logged = s.client(s.admin_key).get("/api/processes/quiet/logs").json()["result"]["lines"]
        assert streamed[0] in logged  # same shape and content as `logs` gives


def _silent_client(s: Served) -> socket.socket:
    """A WebSocket client that opens the stream and then reads nothing: a small receive buffer,
    the handshake by hand, and no reads after it (its TCP window shuts)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = s.server.address.rsplit(":", 1)
    sock.connect((host, int(port)))
    sock.sendall(
        (
            f"GET /api/stream HTTP/1.1\r\nHost: {s.server.address}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {s.admin_key}\r\n\r\n"
        ).encode()
    )
    assert sock.recv(12) == b"HTTP/1.1 101"
    return sock


def test_a_slow_subscriber_is_told_what_it_missed_and_never_slows_others(
    served: MakeServed,
) -> None:
    s = served(FLOOD)
    hub = s.server.api.hub
    silent = _silent_client(s)
    try:
        with stream(s) as fast:
            assert receive(fast)["type"] == "connected"
            wait_until(lambda: len(hub.subscribers) == 2)
            got = 0
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                got += len(receive(fast).get("lines", ()))
                # The silent one's queue stays bounded while it misses lines.
                assert all(len(sub.queue) <= QUEUE_BATCHES for sub in hub.subscribers)
            lagging = [sub for sub in hub.subscribers if sub.missed_total > 0]
            assert lagging, [sub.missed_total for sub in hub.subscribers]
            # Meanwhile the fast one kept getting batches.
            assert got > 1000
    finally:
        silent.close()
    # Gone: its subscription ends with its connection.
    wait_until(lambda: len(hub.subscribers) == 0)


def test_a_lapped_subscriber_is_told_how_many_lines_it_missed(served: MakeServed) -> None:
    s = served(FLOOD)
    hub = s.server.api.hub
    with stream(s) as ws:
        assert receive(ws)["type"] == "connected"
        wait_until(lambda: hub.subscribers)
        (subscriber,) = hub.subscribers
        # Its queue filled past the bound (as when its socket is slow): what waited is dropped
        # and the next batch it gets says how many lines that was.
        line = Segment("flood", "stdout", 1, b'{"id":0}')

        def flood_its_queue() -> None:
            # In one turn of the server's loop: its sender gets no chance to send in between.
            for _ in range(QUEUE_BATCHES + 3):
                subscriber.offer(Batch(0, 0, [line], [], []))

        assert s.server.loop is not None
        s.server.loop.call_soon_threadsafe(flood_its_queue)
        missed = receive_until(ws, lambda m: m.get("missed", 0) > 0)
        assert missed["type"] == "batch"


def test_the_stream_needs_a_read_key(served: MakeServed) -> None:
    s = served(QUIET)
    with pytest.raises(InvalidStatus) as refused, stream(s, key="lcm_00000000_nope"):
        pass
    assert refused.value.response.status_code == 401


@pytest.mark.parametrize("path", ["/api/stream", "/api/subscribe"])
def test_revoking_a_key_closes_its_open_websockets(served: MakeServed, path: str) -> None:
    s = served(QUIET)
    record, key = s.console.keys.create("read", "soon revoked")
    url = s.url.replace("http://", "ws://") + path
    headers = {"Authorization": f"Bearer {key}"}
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        receive(ws)  # connected (or the subscription's first state)
        s.console.keys.revoke(record.id)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert "revoked" in closed.value.rcvd.reason


def test_subscribers_and_connections_past_their_bounds_are_turned_away(
    served: MakeServed,
) -> None:
    s = served(QUIET)
    s.server.api.hub.max_subscribers = 1
    with stream(s) as first, stream(s) as second:
        assert receive(first)["type"] == "connected"
        with pytest.raises(ConnectionClosed) as closed:
            second.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        first.send(json.dumps({"type": "ping"}))  # the first one is still served
        assert receive_until(first, lambda m: m["type"] == "pong")
    # Connections: past the server's bound, a request gets 503 (uvicorn's limit).
    small = HttpServer(s.console, "127.0.0.1:0", max_connections=2)
    small.start()
    try:
        url = f"http://{small.address}"
        with httpx.Client(base_url=url) as one, httpx.Client(base_url=url) as two:
            assert one.get("/health").status_code == 200  # kept alive: a connection held
            assert two.get("/health").status_code == 200
            with httpx.Client(base_url=url) as three:
                assert three.get("/health").status_code == 503
    finally:
        small.close()


def test_history_batches_and_client_messages_are_bounded(served: MakeServed) -> None:
    s = served(FLOOD)
    wait_until(lambda: s.console.process("flood").stdout_lines > HISTORY_LINES * 2)
    with stream(s, max_size=None) as ws:  # a history of 5,000 such lines is over 1 MiB
        assert receive(ws)["type"] == "connected"
        # The flood outruns the hub's bound: batches hold at most HUB_BATCH_LINES, and say how
        # many were skipped before them.
        skipped = 0
        for _ in range(10):
            batch = receive_until(ws, lambda m: m["type"] == "batch")
            assert len(batch["lines"]) <= HUB_BATCH_LINES
            skipped += batch.get("missed", 0)
        assert skipped > 0
        ws.send(json.dumps({"type": "history", "since": "10m"}))
        history = receive_until(ws, lambda m: m["type"] == "history")
        assert len(history["lines"]) == HISTORY_LINES
        ids = [line["id"] for line in history["lines"]]
        assert ids == sorted(ids)
        # A message past the server's bound ends the connection (1009: too big).
        ws.send("x" * (MAX_WS_MESSAGE + 1))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
