"""Audit records (engine/audit.py) as people read them: the cells of one row, for the CLI's
``lacrimosa audit`` and the TUI's Audit view alike.

A record is what the file holds, which someone may have edited by hand: no field is trusted to
be there or to have its type (``lacrimosa audit --verify`` says what is wrong with it), and every
field is shown through :func:`~engine.terminal_text.field_safe`, since a target or a key name is
whatever a client sent. Standard library only, and light (the CLI imports it).
"""

from __future__ import annotations

import pwd

from .humanize import local_time
from .terminal_text import field_safe

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

AUDIT_COLUMNS = ("TIME", "ACTOR", "SOURCE", "ACTION", "TARGET", "OUTCOME")
DAMAGED = "(damaged record)"  # the time cell of a line that is not a record
MAX_USER_NAMES = 64  # uids whose names are kept (a lookup reads the user database)

# Listing 1,000 records: localtime() and getpwuid() were three quarters of the time, for records
# that mostly share a second and a user.
_user_names: dict[int, str] = {}
_last_second: tuple[int, str] = (-1, "")


def record_time(record: dict[str, Any]) -> str:
    global _last_second
    stamp = record.get("time")
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        try:
            second = int(stamp)
            if second != _last_second[0]:
                _last_second = (second, local_time(second))
            return _last_second[1]
        except (OverflowError, ValueError, OSError):
            pass
    return "?"


def actor_text(actor: Any) -> str:
    """Who: the local user's name (``uid N`` if unknown), or the API key's name and id."""
    if not isinstance(actor, dict):
        return "?"
    if actor.get("key_id") is not None:
        return f"{actor.get('key_name') or '?'} (key {actor['key_id']})"
    uid = actor.get("uid")
    if not isinstance(uid, int) or isinstance(uid, bool):
        return str(actor.get("source", "?"))
    name = _user_names.get(uid)
    if name is None:
        try:
            name = pwd.getpwuid(uid).pw_name
        except (KeyError, OverflowError):
            name = f"uid {uid}"
        if len(_user_names) >= MAX_USER_NAMES:
            _user_names.clear()
        _user_names[uid] = name
    return name


def outcome_text(record: dict[str, Any]) -> str:
    """``ok``, or the error code and why (``no_such_process: no such process: 'x'``)."""
    outcome = str(record.get("outcome", "?"))
    detail = record.get("detail")
    if outcome != "ok" and detail:
        outcome += f": {detail}"
    return outcome


def succeeded(record: dict[str, Any]) -> bool:
    return record.get("outcome") == "ok"


def record_cells(record: dict[str, Any]) -> tuple[str, str, str, str, str, str]:
    """The cells of ``record`` under AUDIT_COLUMNS, each safe for a terminal and on one line."""
    if "damaged" in record:  # a line that is not a record (AuditLog.records)
        return (DAMAGED, field_safe(str(record["damaged"]))[:60], "", "", "", "")
    actor = record.get("actor")
    return (
        record_time(record),
        field_safe(actor_text(actor)),
        field_safe(str(actor.get("source", "?") if isinstance(actor, dict) else "?")),
        field_safe(str(record.get("action", "?"))),
        field_safe(str(record.get("target") or "-")),
        field_safe(outcome_text(record)),
    )
