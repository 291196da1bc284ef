"""Attacks on the HTTP API from this machine (loopback only): each test plays one attack against
a real console serving on 127.0.0.1:0, with real clients (httpx, websockets, raw sockets), and
checks the console holds. The README's "Limits, deadlines and trust" says what they rely on."""

from __future__ import annotations

import time

from helpers import wait_until
from http_helpers import MakeServed

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
