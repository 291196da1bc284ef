"""The Audit view (key 4), driven as a user drives it: the real app under Pilot at 80x24 on a real
Console, whose actions (from the TUI's keys and from callers standing in for the socket) land in
the real audit log under tmp_path; and a snapshot at 80x24 with fixed records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path

from helpers import wait_for
from rich.color import Color
from test_tui_events import footer_keys, notifications, static_text, utc
from textual.pilot import Pilot

from lacrimosa.engine.audit import AUDIT_NAME, GENESIS, Actor, AuditLog, _canonical, _digest
from lacrimosa.engine.console import Console
from lacrimosa.engine.errors import NoSuchProcess
from lacrimosa.tui import LacrimosaApp, palette
from lacrimosa.tui.audit_view import MAX_SHOWN, AuditList, AuditRows, AuditView, build_rows

__all__ = ["utc"]  # the fixture, for the snapshot

SIZE = (80, 24)

PROCESSES = """
    [processes.api]
    cmd = "sleep 60"
    stop_timeout = 2

    [processes.web]
    cmd = "sleep 60"
    stop_timeout = 2
"""

CLI_USER = Actor("cli", os.getuid())


def audit_list(app: LacrimosaApp) -> AuditList:
    return app.query_one(AuditList)


def shown(app: LacrimosaApp) -> list[str]:
    return [row for row in audit_list(app).visible_rows() if row]


def outcome_colour(app: LacrimosaApp, y: int) -> Color | None:
    """The colour of the last cell of row ``y`` on screen (the outcome)."""
    segments = [s for s in audit_list(app).render_line(y) if s.text.strip()]
    style = segments[-1].style
    return style.color if style is not None else None


async def test_key_4_shows_each_action_as_it_is_recorded_coloured_by_outcome(console) -> None:
    instance: Console = console(PROCESSES)
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        assert app.view == "audit" and app.query_one(AuditView).display
        assert app.focused is audit_list(app)
        assert {"1", "2", "3", "4", "f", "q"} <= set(footer_keys(app))
        assert not {"r", "x", "s"} & set(footer_keys(app))  # the log view's keys are off here
        await wait_for(pilot, lambda: "no audit records yet" in shown(app), "the empty view")

        # A client on the socket (as the server calls it) restarts api, then asks for "nope".
        await asyncio.to_thread(instance.restart_process, "api", CLI_USER)
        await wait_for(pilot, lambda: len(shown(app)) == 1, "the restart listed")
        with contextlib.suppress(NoSuchProcess):
            await asyncio.to_thread(instance.start_process, "nope", CLI_USER)
        await wait_for(pilot, lambda: len(shown(app)) == 2, "the failed start listed")
        header = static_text(app, "#audit-header")
        assert header.split() == ["time", "actor", "source", "action", "target", "outcome"]
        first, second = shown(app)
        at = header.index("source")
        assert first[at:].split()[:4] == ["cli", "restart", "api", "ok"]
        assert second[at:].split()[:4] == ["cli", "start", "nope", "no_such_process:"]
        status = static_text(app, "#audit-status")
        assert "2 records" in status and "1 failed" in status and "follow: on" in status
        # The cursor follows the newest row; the others show their outcome's colour.
        assert audit_list(app).cursor == 1
        assert outcome_colour(app, 0) == Color.parse(palette.GOOD)
        await pilot.press("up")
        assert audit_list(app).cursor == 0 and not audit_list(app).follow
        assert outcome_colour(app, 1) == Color.parse(palette.ERROR)
        assert "follow: off" in static_text(app, "#audit-status")

        # Enter: the whole record of the cursor's row; moving the cursor changes it.
        await pilot.press("enter")
        detail = static_text(app, "#audit-detail-text")
        assert "action   restart" in detail and "args     {}" in detail
        assert f"hash     {instance.audit.records(2)[0]['hash']}" in detail
        await pilot.press("down")
        detail = static_text(app, "#audit-detail-text")
        assert "outcome  no_such_process: no such process: 'nope'" in detail
        await pilot.press("escape")
        assert not app.query_one(AuditView).detail_shown
        await pilot.press("end")
        assert audit_list(app).follow

        # The TUI's own action: back to the logs, select web, stop it; it shows up as "tui".
        await pilot.press("1", "down", "down")
        assert app.selected_process == "web"
        await pilot.press("x")
        await wait_for(pilot, lambda: instance.audit.count == 3, "the stop recorded")
        await pilot.press("4")
        await wait_for(pilot, lambda: len(shown(app)) == 3, "the TUI's stop listed")
        assert shown(app)[2][at:].split()[:4] == ["tui", "stop", "web", "ok"]


async def test_a_long_log_is_held_up_to_its_bound_and_scrolled(console) -> None:
    instance: Console = console(PROCESSES, start=False)
    instance.home.mkdir(mode=0o700, exist_ok=True)
    for n in range(MAX_SHOWN + 200):
        instance.audit.record(CLI_USER, "restart", f"p{n}")
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        listed = audit_list(app)
        await wait_for(pilot, lambda: len(listed.rows.rows) == MAX_SHOWN, "the newest held")
        await pilot.pause()
        assert listed.virtual_size.height == MAX_SHOWN  # never more rows than the bound
        status = static_text(app, "#audit-status")
        assert f"{MAX_SHOWN + 200:,} records (newest {MAX_SHOWN:,} shown)" in status
        assert "p1199" in shown(app)[-1]  # following: the newest at the bottom

        await pilot.press("home")
        assert not listed.follow and listed.cursor == 0 and "p200 " in shown(app)[0] + " "
        await pilot.press("pagedown", "pagedown")  # the cursor a page down, then off the screen
        assert "p200 " not in shown(app)[0] + " "
        top, cursor_seq = shown(app)[0], listed.rows.rows[listed.cursor].seq
        instance.audit.record(CLI_USER, "stop", "newest")
        await wait_for(pilot, lambda: listed.rows.count == MAX_SHOWN + 201, "one more read")
        assert len(listed.rows.rows) == MAX_SHOWN and listed.rows.rows[-1].cells[4] == "newest"
        # Not following: the oldest row was let go, yet the cursor and the screen stay put.
        await pilot.pause()
        assert listed.rows.rows[listed.cursor].seq == cursor_seq and shown(app)[0] == top
        await pilot.press("end")
        await wait_for(pilot, lambda: "newest" in shown(app)[-1], "back to the newest")
        assert listed.follow


async def test_records_not_written_are_notified_once_and_shown_in_red(console) -> None:
    instance: Console = console(PROCESSES, start=False)
    instance.home.mkdir(mode=0o700, exist_ok=True)
    (instance.home / AUDIT_NAME).mkdir()  # the log cannot be written, nor read
    instance.start()
    app = LacrimosaApp(instance)
    async with app.run_test(size=SIZE) as pilot:
        await asyncio.to_thread(instance.restart_process, "api", CLI_USER)  # done all the same
        warned = "1 audit records could not be written"
        await wait_for(pilot, lambda: any(warned in n for n in notifications(app)), "a warning")
        await asyncio.to_thread(instance.restart_process, "web", CLI_USER)
        await wait_for(pilot, lambda: instance.audit.write_errors == 2, "the second failure")
        await pilot.pause(0.3)
        assert sum("audit records could not be written" in n for n in notifications(app)) == 1

        await pilot.press("4")
        await wait_for(
            pilot,
            lambda: any("cannot read the audit log" in n for n in notifications(app)),
            "the view says it cannot read the log",
        )
        status = static_text(app, "#audit-status")
        assert "2 not written!" in status and "0 records" in status


class CountingAuditLog(AuditLog):
    """The real log, counting the records each read returns."""

    reads: list[int]

    def records(self, limit: int = 100, since: float | None = None) -> list[dict[str, object]]:
        found = super().records(limit, since)
        self.reads.append(len(found))
        return found


def test_rows_are_read_incrementally_and_again_in_full_after_a_gap(tmp_path: Path) -> None:
    log = CountingAuditLog(tmp_path / AUDIT_NAME)
    log.reads = []
    for n in range(30):
        log.record(CLI_USER, "restart", f"p{n}")
    rows = build_rows(log, AuditRows(), limit=20)
    assert [row.seq for row in rows.rows] == list(range(11, 31)) and rows.count == 30
    assert rows.head == log.head
    for n in range(3):
        log.record(CLI_USER, "stop", f"q{n}")
    rows = build_rows(log, rows, limit=20)
    assert [row.seq for row in rows.rows] == list(range(14, 34))
    assert log.reads == [20, 3]  # only the three new records were read
    assert build_rows(log, rows, limit=20).rows == rows.rows
    assert log.reads == [20, 3]  # nothing new: nothing read

    # The file replaced by a shorter one (edited by hand): read again from the end.
    lines = (tmp_path / AUDIT_NAME).read_bytes().splitlines(keepends=True)
    log.close()
    (tmp_path / AUDIT_NAME).write_bytes(b"".join(lines[:5]) + b"not json\n")
    log = CountingAuditLog(tmp_path / AUDIT_NAME)
    log.reads = []
    rows = build_rows(log, rows, limit=20)
    assert [row.seq for row in rows.rows] == [1, 2, 3, 4, 5, None]
    assert rows.rows[-1].cells[0] == "(damaged record)" and not rows.rows[-1].ok


# -- snapshot ------------------------------------------------------------------------------------

# Fixed records: a fixed time each, and actors whose names do not depend on this machine's users
# (API keys, the console itself, a uid no one has).
NOBODY = 2**31 - 7
FIXED = (
    (Actor("console"), "start", "api", "ok", "started"),
    (Actor("http", key_id="3f9a1c2e", key_name="deploy"), "restart", "api", "ok", "restarted"),
    (Actor("cli", NOBODY), "key_create", "5b7d9e01", "ok", None),
    (Actor("http", key_id="5b7d9e01", key_name="grafana"), "stop", "db", "forbidden", "read key"),
    (Actor("tui", NOBODY), "stop", "worker", "ok", "stopped"),
    (Actor("cli", NOBODY), "start", "\x1b[31mnope", "no_such_process", "no such process"),
    (Actor("http"), "processes", None, "unauthorized", "no key"),
    (Actor("console"), "shutdown", None, "ok", "SIGTERM"),
)


def write_fixed_records(path: Path) -> None:
    """FIXED as a valid hash chain, one record a minute from 2026-12-01 09:00:00 UTC."""
    prev, lines = GENESIS, []
    for seq, (actor, action, target, outcome, detail) in enumerate(FIXED, 1):
        body = {
            "seq": seq,
            "time": 1796115600.0 + 60 * seq,
            "actor": actor.to_dict(),
            "action": action,
            "target": target,
            "args": {},
            "outcome": outcome,
        }
        if detail is not None:
            body["detail"] = detail
        record = {**body, "prev": prev, "hash": _digest(prev, body)}
        prev = record["hash"]
        lines.append(_canonical(record) + "\n")
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_text("".join(lines))
    path.chmod(0o600)
    assert AuditLog(path).verify().ok
    assert json.loads(lines[-1])["seq"] == len(FIXED)


def test_snapshot_of_the_audit_view(console, snap_compare, utc) -> None:
    """Key 4, the cursor on the failed start, Enter: the list above, the record below."""
    instance: Console = console(
        PROCESSES.replace('cmd = "sleep 60"', 'cmd = "true"\nautostart = false'), start=False
    )
    write_fixed_records(instance.home / AUDIT_NAME)
    app = LacrimosaApp(instance)

    async def run_before(pilot: Pilot) -> None:
        await pilot.press("4")
        await wait_for(pilot, lambda: len(shown(app)) == len(FIXED), "the fixed records")
        await pilot.press("up", "up", "enter")  # the failed start, in detail
        await wait_for(pilot, lambda: app.query_one(AuditView).detail_shown, "the detail")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
