"""What goes over the wire, on the control socket and over HTTP (issue 6, parts 2 and 3).

No reply carries a child's or a datagram's control characters raw. The CLI's ``--json`` escaped
every control character, but the replies it reads did not: the control socket and the HTTP API
wrote C1 controls (U+009B is CSI, U+009D is OSC), DEL and the Unicode line separators as they
came, so ``curl -H … /api/logs`` on a terminal, or a script printing a reply line, handed a
child's escape sequences to the terminal. Now every JSON reply, in one piece or many, on either
transport, escapes them as ``\\uXXXX`` and decodes to the same text.

Any JSON value as a request, or in any argument of any op, gets a reply that is not a bug.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import send_events, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sequencer import SEQUENCED as CONFIG
from test_server import connect

from lacrimosa.api.server import ControlServer
from lacrimosa.api.wire import OPS
from lacrimosa.engine.console import Console

HOSTILE = "c1 \x9b2J osc \x9d0;title\x07 del \x7f sep \u2028 para \u2029 esc \x1b[31mred\x1b[0m é"
# An event payload with DEL would be shown as hex (it is binary data): the rest is text.
EVENT_TEXT = HOSTILE.replace("\x7f", "")
# What must never be on the wire raw: C0 (JSON escapes those anyway), DEL, C1 as UTF-8, U+2028/9.
RAW_CONTROL = re.compile(rb"[\x00-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xa8\xa9]")


def assert_escaped(data: bytes) -> None:
    """``data``, reply lines, holds no raw control character (bar the lines' newlines)."""
    for line in data.split(b"\n"):
        found = RAW_CONTROL.search(line)
        assert found is None, f"raw {found.group()!r} in {line[:200]!r}"


def carries_the_text(value: Any) -> bool:
    """Whether a decoded reply holds HOSTILE (or EVENT_TEXT) whole, in some string of it."""
    if isinstance(value, str):
        return HOSTILE in value or EVENT_TEXT in value
    if isinstance(value, dict):
        value = list(value.values())
    return isinstance(value, list) and any(carries_the_text(item) for item in value)


@pytest.fixture
def hostile_console(
    console: Callable[..., Console], udp_sender: socket.socket
) -> Iterator[Console]:
    """A console holding HOSTILE as a stdout line, a stderr line and an event."""
    made = console(CONFIG)
    made.store.append("idle", 0, HOSTILE.encode() + b"\n")
    made.store.append("idle", 1, HOSTILE.encode() + b"\n")
    send_events(made, udp_sender, EVENT_TEXT.encode())
    yield made


def read_line(sock: socket.socket, pending: bytearray) -> bytes:
    while b"\n" not in pending:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        pending += chunk
    end = pending.index(b"\n") + 1
    line = bytes(pending[:end])
    del pending[:end]
    return line


def test_socket_replies_escape_every_control_character(hostile_console: Console) -> None:
    server = ControlServer(hostile_console)
    server.start()
    try:
        requests: list[dict[str, Any]] = [
            {"op": "logs", "lines": 10},  # streamed in pieces
            {"op": "logs", "name": "idle", "lines": 10, "raw": True},
            {"op": "logs", "name": "idle", "where": 'line CONTAINS "osc"'},
            {"op": "events", "lines": 10},  # streamed in pieces
            {"op": "query", "query": "SELECT line FROM idle"},
            {"op": "query", "query": "SELECT payload FROM events"},
            {"op": "why", "name": "idle"},
        ]
        with connect(server) as sock:
            pending = bytearray()
            for request in requests:
                sock.sendall(json.dumps(request).encode() + b"\n")
                line = read_line(sock, pending)
                assert_escaped(line)
                reply = json.loads(line)
                assert reply["ok"], reply
                assert carries_the_text(reply["result"]), request
        # A follow's later batches too.
        with connect(server) as sock:
            pending = bytearray()
            sock.sendall(b'{"op": "logs", "follow": true, "lines": 0}\n')
            assert_escaped(read_line(sock, pending))
            hostile_console.store.append("idle", 0, HOSTILE.encode() + b"\n")
            batch = read_line(sock, pending)
            assert_escaped(batch)
            assert [line["text"] for line in json.loads(batch)["result"]["lines"]] == [HOSTILE]
        with connect(server) as sock:  # an error reply that names what was asked
            sock.sendall(b'{"op": "\\u009b2J"}\n')
            refused = read_line(sock, bytearray())
            assert_escaped(refused)
            assert json.loads(refused)["error"]["code"] == "invalid_request"
    finally:
        server.close()


def test_http_replies_escape_every_control_character(hostile_console: Console) -> None:
    from http_helpers import Served, close_all, serve

    made: list[Served] = []
    served = serve(hostile_console, made)
    try:
        client = served.client(served.admin_key)
        responses = [
            client.get("/api/logs", params={"lines": 10}),
            client.get("/api/processes/idle/logs", params={"lines": 10}),
            client.get("/api/events", params={"lines": 10}),
            client.get("/api/processes/idle/why"),
            client.post("/api/query", json={"query": "SELECT line FROM idle"}),
            client.post("/api/query", json={"query": "SELECT payload FROM events"}),
        ]
        for response in responses:
            assert response.status_code == 200, response.text
            assert_escaped(response.content)
            assert carries_the_text(response.json()), response.url
        refused = client.get("/api/processes/\u009b2J/why")  # an error naming what was asked
        assert refused.status_code == 404
        assert_escaped(refused.content)
    finally:
        close_all(made)


# -- any JSON value, in any argument of any op, gets a reply (issue 6, part 2) -----------------

ARGUMENTS = [
    "name",
    "names",
    "stream",
    "grep",
    "where",
    "raw",
    "format",
    "query",
    "deadline",
    "lines",
    "follow",
    "after_id",
    "ignore_case",
    "node",
    "after",
    "since",
    "end_id",
    "total",
    "start",
    "stop",
    "tail",
    "position_of",
    "scope",
    "id",
    "until",
    "state",
    "within",
    "via",
]
# Every code a reply may carry but "internal", which is a bug.
EXPECTED_CODES = {
    "invalid_request",
    "query_syntax",
    "no_such_process",
    "no_such_key",
    "failed",
    "timeout",
    "unavailable",
    "cancelled",
}
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["idle", "*", "all", "stdout", "stderr", "text", "jsonl", "ready", "0"]),
)
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
_requests = st.one_of(
    _values,  # not even an object
    st.fixed_dictionaries(
        {"op": st.one_of(st.sampled_from([op for op in OPS if op != "shutdown"]), _values)},
        optional={name: _values for name in ARGUMENTS},
    ),
)


def test_any_json_request_gets_a_reply_that_is_not_a_bug(hostile_console: Console) -> None:
    server = ControlServer(hostile_console)
    server.start()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_requests)
    def ask(request: Any) -> None:
        if isinstance(request, dict) and isinstance(request.get("within"), int | float):
            request["within"] = min(abs(request["within"]), 0.1)  # wait answers at `within`
        with connect(server) as sock:
            sock.settimeout(15)
            sock.sendall(json.dumps(request).encode() + b"\n")
            line = read_line(sock, bytearray())  # a follow's first reply is enough
        reply = json.loads(line)
        if not reply["ok"]:
            assert reply["error"]["code"] in EXPECTED_CODES, (request, reply)

    try:
        ask()
        assert server.stats()["internal_errors"] == 0
    finally:
        server.close()


# -- a streamed HTTP reply is bounded as the socket's (issue 6, part 2) --------------------------

BUDGET = """
[logs]
budget = "8MiB"

[processes.idle]
cmd = "sleep 300"
"""


def fill(console: Console, megabytes: int) -> None:
    line = b"x" * 99 + b"\n"
    for _ in range(megabytes * 16):
        console.store.append("idle", 0, line * 655)  # 64 KiB


def test_http_clients_that_stop_reading_let_go_of_evicted_blocks_and_are_dropped(
    console: Callable[..., Console],
) -> None:
    from http_helpers import Served, close_all, serve

    made = console(BUDGET)
    fill(made, 8)
    served: list[Served] = []
    http = serve(made, served)
    http.server.api.send_timeout = 1.0
    host, port = http.server.address.rsplit(":", 1)
    stalled = []
    try:
        for _ in range(4):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            stalled.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((host, int(port)))
            sock.settimeout(5)
            sock.sendall(
                b"GET /api/logs?lines=1000000 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Authorization: Bearer " + http.admin_key.encode() + b"\r\n\r\n"
            )
            assert sock.recv(12) == b"HTTP/1.1 200"  # the reply has begun: its snapshot is taken
        store = made.store
        fill(made, 16)  # the log turns over twice under the stalled replies
        # Each stalled reply held its whole snapshot; now they let go of evicted blocks past
        # the bound while they wait.
        wait_until(lambda: store.retired_bytes <= store.retired_bound() + (8 << 20), timeout=5)
        # Dropped after a second of taking nothing: their snapshots go, though the clients
        # still hold their connections open.
        wait_until(lambda: store.retired_bytes == 0, timeout=10)
        for sock in stalled:
            # What was sent can be read, then the connection ends, the reply cut short (before,
            # it went on for as long as the client kept reading).
            received = bytearray()
            while chunk := sock.recv(1 << 16):
                received += chunk[-16:]
                del received[:-16]
            assert not received.endswith(b"0\r\n\r\n")  # not the last chunk of a whole reply
        assert http.server.stats()["problems"] == 0  # dropped on purpose: not an error
    finally:
        for sock in stalled:
            sock.close()
        close_all(served)
