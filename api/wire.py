"""The control protocol's wire format, shared by the server and the one-shot client.

Newline-delimited JSON over a Unix socket. A request is one object with an ``op`` and its
arguments; every reply is one object, ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": {"code": ..., "message": ...}}``. A ``logs`` request with ``follow`` gets a
first reply and then one more ``{"ok": true, "result": {"lines": [...]}}`` per batch of new lines,
until the client hangs up. Error codes: ``invalid_request`` (malformed JSON, unknown op, bad
argument), ``no_such_process``, ``failed`` (an action failed), ``internal`` (a bug: the message
names the exception; the connection goes on).

Operations (one vocabulary for every client: CLI, TUI-over-socket, HTTP):
    ping                                      → {"pid": N}
    ps                                        → {"processes": [ProcessInfo.to_dict(), ...]}
    status                                    → console status (see Console.status)
    logs  name?, lines?, stream?, grep?, since?, after_id?, follow?
                                              → {"lines": [line, ...], "next_id": N}
    start | stop | restart  name              → {"name": ..., "outcome": ..., "process": {...}}
    shutdown                                  → {"stopping": true}

Kept free of heavy imports: the one-shot CLI imports it.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_REQUEST_BYTES = 1 << 20
OPS = ("ping", "ps", "status", "logs", "events", "start", "stop", "restart", "shutdown")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def ok(result: Any) -> dict[str, Any]:
    return {"ok": True, "result": result}


def error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


def parse_duration(text: str) -> float:
    """``"90s"``, ``"5m"``, ``"2h"``, ``"1d"``, ``"250ms"`` or plain seconds → seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"bad duration {text!r} (use e.g. 30s, 5m, 2h, 1d)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
