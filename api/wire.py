"""The control protocol's wire format, shared by the server and the one-shot client.

Newline-delimited JSON over a Unix socket. A request is one object with an ``op`` and its
arguments; every reply is one object, ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": {"code": ..., "message": ...}}``. A ``logs`` request with ``follow`` gets a
first reply and then one more ``{"ok": true, "result": {"lines": [...]}}`` per batch of new lines,
until the client hangs up. Error codes: ``invalid_request`` (malformed JSON, unknown op, bad
argument), ``query_syntax`` (a query or ``where`` that does not parse: the error also has
``position``, the 0-based offset of what was wrong, and ``expected``), ``no_such_process``,
``failed`` (an action failed), ``timeout`` (a query ran past its deadline), ``internal`` (a bug:
the message names the exception; the connection goes on).

Operations (one vocabulary for every client: CLI, TUI-over-socket, HTTP):
    ping                                      → {"pid": N}
    ps                                        → {"processes": [ProcessInfo.to_dict(), ...]}
    status                                    → console status (see Console.status)
    logs  name?, lines?, stream?, grep?, where?, since?, after_id?, follow?, raw?, format?
                                              → {"lines": [line, ...], "next_id": N}
                                                (with format: frames, see below; ``where``:
                                                a WHERE expression, at most 10,000 lines)
    query  query, deadline?                   → {"columns": [...], "rows": [[...], ...],
                                                 "scanned": N, "elapsed_ms": F, "truncated": B}
    events  lines?, node?, stream?, after?, follow?
                                              → {"events": [event, ...], "first_seq": N,
                                                 "next_seq": N, "lapped"?: N}
    start | stop | restart  name              → {"name": ..., "outcome": ..., "process": {...}}
    shutdown                                  → {"stopping": true}
    wait  names?, until?, state?, within?     → {"outcome": "reached" | "never" | "timeout",
                                                 "processes": [...], "blocking"?: {...}}
                                                (waits server-side; see protocol._wait)
    why  name                                 → {"name", "state", "summary": [line, ...],
                                                 "stderr": [text, ...], ...}
    subscribe                                 → the state, then a reply per change (below)
    log_window  name?, stream?, grep?, ignore_case?, tail? | end_id, total, start, stop
                | end_id, total, position_of  → {"total", "end_id", "first", "lines"}
                                                or {"total", "end_id", "position"}

``subscribe`` (what an attached TUI reads, on one connection): a first reply ``{"version": [P,
L], "processes": [...], "warnings": [...], "sequencer": {status + "history", "warnings",
"restart_history"} or null, "newest_ids": {process: id}}``, then at most 20 replies a second,
each with ``version`` and the parts that changed (``processes``, ``warnings`` and ``sequencer``
together at least once a second; ``newest_ids`` when lines arrived), until ``{"end": ...}`` when
the console stops. ``log_window``: lines by position, counted back from the newest matching line
when first asked (``tail`` gives ``end_id`` and ``total``; later requests send them back), so
positions stay put as lines arrive and are evicted; at most 1000 lines a reply, always ``raw``.

A line is ``{"id", "time", "process", "stream", "text", "continued"?}``; its ``text`` is the line's
bytes decoded as UTF-8 with invalid bytes replaced (U+FFFD), as JSON cannot carry other bytes.
With ``"raw": true`` (``logs --raw``, follow too) a line carries its bytes losslessly: ``"text"``
when they are valid UTF-8 (so the text is exactly them), else ``"b64"`` in its place, the bytes in
base64 (RFC 4648, padded). A client decodes ``b64decode(line["b64"])`` if present, else
``line["text"].encode()``. ``continued`` says the child wrote no newline after this piece (or the
store split a long line): the bytes go on in the next piece of the same process and stream.

Every reply line escapes every control character as ``\\uXXXX`` (C0, DEL, C1, U+2028/U+2029;
see ``encode``), so a reply printed as it is cannot drive a terminal; it decodes to the same
text. (The payload of a ``text`` frame, below, is the child's bytes as written: not JSON.)

An event's payload is always lossless: ``"text"`` when it is UTF-8 without the C0 controls text
does not carry (engine/events/frames.py: tab, newline, BEL and ESC are text), else
``"hex"``. Long ``logs`` and ``events`` replies are streamed in pieces (the bytes are the same);
an ``events`` reply whose events were overwritten while it was being sent leaves them out and
says how many in ``"lapped"`` (as follow batches do).

Bulk form of ``logs`` (``"format": "text"`` or ``"jsonl"``; not with ``raw`` or ``follow``): the
reply is a series of frames, each a reply line ``{"ok": true, "result": {"frame": N, "process":
NAME}}`` followed by exactly N bytes that are not JSON, then a last reply line ``{"ok": true,
"result": {"next_id": N}}``. The bytes of a frame are the lines of that process, each followed by a
newline: for ``text``, the bytes as the child wrote them (not UTF-8 checked: the client decodes
and makes them safe to print); for ``jsonl``, each line as the CLI's ``--json`` prints it (see
``json_text``: every control character escaped, invalid UTF-8 replaced). This is what lets a
million-line read be cut from the store's blocks as slices, with no per-line objects on either
side. An error reply may come in place of a frame header if the console fails mid-reply.

Kept free of heavy imports: the one-shot CLI imports it (no ``json``, ``re`` or ``typing`` at
import: see engine/fastjson.py).
"""

from __future__ import annotations

from ..engine.fastjson import dumps, escape_controls
from ..engine.humanize import parse_duration

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["OPS", "encode", "error", "ok", "parse_duration"]

MAX_REQUEST_BYTES = 1 << 20  # bytes of JSON in one request, its newline not counted
OPS = (
    "ping",
    "ps",
    "status",
    "logs",
    "events",
    "query",
    "start",
    "stop",
    "restart",
    "shutdown",
    "audit",
    "audit_verify",
    "key_create",
    "key_list",
    "key_revoke",
    "wait",
    "why",
    "subscribe",
    "log_window",
)


def encode(message: dict[str, Any]) -> bytes:
    """``message`` as its line: compact JSON with every control character escaped (a reply
    may be printed as it is, ``curl`` to a terminal, say), and a newline."""
    return escape_controls(dumps(message, compact=True)).encode() + b"\n"


def ok(result: Any) -> dict[str, Any]:
    return {"ok": True, "result": result}


def error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}
