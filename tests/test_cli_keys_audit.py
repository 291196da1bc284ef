"""``lacrimosa keys`` and ``lacrimosa audit``: the real CLI against a real running console.

Every action taken here through the CLI must land in the audit log, with source ``cli``, the
caller's uid and the right outcome; ``audit --verify`` must catch a file edited by hand.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from test_cli import RunningConsole, _no_console_left_behind, start_console

from lacrimosa.engine import audit_text
from lacrimosa.engine.audit import MAX_RECORDS, AuditLog

__all__ = ["_no_console_left_behind"]  # the fixture that stops every console started here

CONFIG = """
[processes.api]
cmd = "sleep 300"
stop_timeout = 2

[processes.web]
cmd = "sleep 300"
stop_timeout = 2
"""

KEY = re.compile(r"lcm_([0-9a-f]{8})_[A-Za-z0-9_-]{40,}")


def _console(tmp_path: Path) -> RunningConsole:
    return start_console(tmp_path, CONFIG)


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_keys_are_created_listed_and_revoked_and_the_key_is_shown_once(tmp_path: Path) -> None:
    console = _console(tmp_path)

    plain = console.run("keys", "create", "--scope", "write", "--name", "deploy bot")
    assert plain.returncode == 0, plain.stderr
    match = KEY.fullmatch(plain.stdout.rstrip("\n"))
    assert match and plain.stdout.count("\n") == 1  # the key alone: KEY=$(...) works
    assert plain.stderr == ""  # a note goes to stderr only when it is a terminal
    key_id = match.group(1)

    created = _json(console.run("keys", "create", "--scope", "admin", "--json"))
    assert set(created) == {"id", "key", "scopes", "name", "created"}
    assert created["scopes"] == ["read", "write", "admin"] and KEY.fullmatch(created["key"])

    keys_file = tmp_path / ".lacrimosa" / "keys.json"
    assert os.stat(keys_file).st_mode & 0o777 == 0o600
    stored = keys_file.read_text()
    assert match.group(0) not in stored and created["key"] not in stored  # hashes only

    listed = _json(console.run("keys", "list", "--json"))
    assert [(k["id"], k["name"], k["scopes"][-1]) for k in listed["keys"]] == [
        (key_id, "deploy bot", "write"),
        (created["id"], created["id"], "admin"),
    ]
    assert "key" not in json.dumps(listed).replace('"keys"', "")  # no key, no field "key"
    text = console.run("keys", "list")
    assert text.returncode == 0
    header, *rows = text.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "SCOPE", "CREATED", "LAST", "USED"]
    assert rows[0].startswith(f"{key_id}  deploy bot") and rows[0].endswith("never")
    assert "lcm_" not in text.stdout

    revoked = console.run("keys", "revoke", key_id)
    assert revoked.returncode == 0 and revoked.stdout == f"key {key_id} (deploy bot) revoked\n"
    again = console.run("keys", "revoke", key_id, "--json")
    assert again.returncode == 1 and again.stdout == ""
    assert json.loads(again.stderr)["error"]["code"] == "no_such_key"
    assert [k["id"] for k in _json(console.run("keys", "list", "--json"))["keys"]] == [
        created["id"]
    ]

    bad_scope = console.run("keys", "create", "--scope", "root")
    assert (
        bad_scope.returncode == 2 and "scope must be one of read, write, admin" in bad_scope.stderr
    )
    bad_name = console.run("keys", "create", "--scope", "read", "--name", "x\x1b[2Jy")
    assert bad_name.returncode == 2 and "printable" in bad_name.stderr
    no_scope = console.run("keys", "create", "--json")
    assert no_scope.returncode == 2 and json.loads(no_scope.stderr)["error"]["code"] == "usage"
    assert console.run("keys").returncode == 2


def test_every_cli_action_lands_in_the_audit_log_with_its_outcome(tmp_path: Path) -> None:
    console = _console(tmp_path)
    assert console.run("stop", "web").returncode == 0
    assert console.run("start", "web").returncode == 0
    assert console.run("restart", "api").returncode == 0
    assert console.run("stop", "nope").returncode == 3
    created = _json(console.run("keys", "create", "--scope", "read", "--name", "ci", "--json"))
    assert console.run("keys", "create", "--scope", "root").returncode == 2
    assert console.run("keys", "revoke", created["id"]).returncode == 0
    assert console.run("keys", "revoke", "deadbeef").returncode == 1
    assert console.stop() == 0  # `lacrimosa shutdown`

    log = AuditLog(tmp_path / ".lacrimosa" / "audit.log")
    records = log.records()
    assert [(r["action"], r["target"], r["outcome"]) for r in records] == [
        ("stop", "web", "ok"),
        ("start", "web", "ok"),
        ("restart", "api", "ok"),
        ("stop", "nope", "no_such_process"),
        ("key_create", created["id"], "ok"),
        ("key_create", None, "invalid_request"),
        ("key_revoke", created["id"], "ok"),
        ("key_revoke", "deadbeef", "no_such_key"),
        ("shutdown", None, "ok"),
    ]
    assert all(r["actor"] == {"source": "cli", "uid": os.getuid()} for r in records)
    assert records[4]["args"] == {"scope": "read", "name": "ci"}
    assert log.verify().ok


def test_audit_shows_the_newest_records_as_aligned_text_or_json(tmp_path: Path) -> None:
    console = _console(tmp_path)
    for _ in range(3):
        assert console.run("restart", "web").returncode == 0
    hostile = console.run("start", "\x1b]52;c;aGk=\x07\x1b[31mred\ttab")
    assert hostile.returncode == 3

    listed = _json(console.run("audit", "--json"))
    assert listed["count"] == 4 and listed["head"] == listed["records"][-1]["hash"]
    assert [r["seq"] for r in listed["records"]] == [1, 2, 3, 4]
    newest = _json(console.run("audit", "--lines", "2", "--json"))
    assert [r["seq"] for r in newest["records"]] == [3, 4]
    assert _json(console.run("audit", "--since", "1h", "--json"))["records"] == listed["records"]

    text = console.run("audit")
    assert text.returncode == 0, text.stderr
    header, *rows = text.stdout.splitlines()
    assert header.split() == ["TIME", "ACTOR", "SOURCE", "ACTION", "TARGET", "OUTCOME"]
    assert len(rows) == 4
    assert "\x1b" not in text.stdout and "\x07" not in text.stdout  # nothing reaches the terminal
    assert "␛]52;c;aGk=␇␛[31mred␉tab" in rows[3]
    # Aligned: each column starts where its header does.
    for column in ("SOURCE", "ACTION", "TARGET", "OUTCOME"):
        at = header.index(column)
        assert all(row[at - 2 : at] == "  " and row[at] != " " for row in rows), column
    assert rows[0][header.index("ACTION") :].startswith("restart  web")
    assert rows[3][header.index("OUTCOME") :].startswith("no_such_process: ")

    status = console.run("status").stdout.splitlines()
    assert f"audit     4 records, head {listed['head'][:12]} (" in "\n".join(status)

    # The bound on one reply: more than MAX_RECORDS is a usage error, not a huge reply.
    too_many = console.run("audit", "--lines", str(MAX_RECORDS + 1), "--json")
    assert too_many.returncode == 2
    assert json.loads(too_many.stderr)["error"]["code"] == "invalid_request"
    assert console.run("audit", "--lines", "-1").returncode == 2


def test_audit_verify_catches_a_hand_edited_log_through_the_cli(tmp_path: Path) -> None:
    console = _console(tmp_path)
    for name in ("api", "web", "api"):
        assert console.run("restart", name).returncode == 0
    intact = console.run("audit", "--verify")
    assert (intact.returncode, intact.stdout) == (0, "audit log intact: 3 records\n")

    path = tmp_path / ".lacrimosa" / "audit.log"
    original = path.read_bytes()
    # In place (the same file, as an editor that rewrites it would leave it): one target changed.
    lines = original.splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[1].replace(b'"target":"web"', b'"target":"wex"') + lines[2])
    edited = console.run("audit", "--verify")
    assert edited.returncode == 1
    assert edited.stdout.splitlines() == [
        "audit log damaged: 1 problem in 3 records",
        "  line 2 (seq 2): edited (hash mismatch)",
    ]
    assert "failed verification" in edited.stderr
    as_json = console.run("audit", "--verify", "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout) == {
        "ok": False,
        "records": 3,
        "problems": ["line 2 (seq 2): edited (hash mismatch)"],
    }
    assert json.loads(as_json.stderr)["error"]["code"] == "failed"

    path.write_bytes(lines[0] + lines[2])  # a record removed
    removed = console.run("audit", "--verify")
    assert removed.returncode == 1
    assert "  line 2 (seq 3): expected seq 2, records missing before it" in removed.stdout

    path.write_bytes(lines[0] + b"\x1b[2J not json\n" + lines[2])  # garbage in its place
    damaged = console.run("audit", "--verify")
    assert damaged.returncode == 1 and "  line 2: not a record (damaged)" in damaged.stdout
    shown = console.run("audit")  # still listed, the damage shown inert
    assert shown.returncode == 0 and "(damaged record)" in shown.stdout
    assert "\x1b" not in shown.stdout and "␛[2J not json" in shown.stdout

    path.write_bytes(original)
    assert console.run("audit", "--verify").returncode == 0
    combined = console.run("audit", "--verify", "--lines", "3")
    assert combined.returncode == 2 and "--verify checks the whole log" in combined.stderr


def test_an_audit_log_that_cannot_be_written_is_reported_not_fatal(tmp_path: Path) -> None:
    home = tmp_path / ".lacrimosa"
    home.mkdir(mode=0o700)
    (home / "audit.log").mkdir()  # neither writable nor readable as a file
    console = _console(tmp_path)
    assert console.run("restart", "api").returncode == 0  # the action itself is done

    status = console.run("status")
    assert status.returncode == 0, status.stderr
    line = next(row for row in status.stdout.splitlines() if row.startswith("audit "))
    assert "0 records" in line and "1 NOT WRITTEN" in line and "Is a directory" in line
    assert _json(console.run("status", "--json"))["audit"]["write_errors"] == 1
    ps = console.run("ps")
    assert ps.returncode == 0
    assert "lacrimosa: warning: 1 audit records could not be written" in ps.stderr

    for args in (("audit",), ("audit", "--verify")):
        refused = console.run(*args, "--json")
        assert refused.returncode == 1 and refused.stdout == "", args
        error = json.loads(refused.stderr)["error"]
        assert error["code"] == "failed" and "cannot read the audit log" in error["message"]


def test_record_cells_trust_no_field_and_the_name_cache_is_bounded() -> None:
    hostile = [
        {"time": "yesterday", "actor": 5, "action": ["x"], "target": "a\nb", "outcome": None},
        {"time": float("nan"), "actor": {"uid": True}, "seq": 1},
        {"time": 1e300, "actor": {"source": "http", "key_id": "k\x1b[2J", "key_name": None}},
        {"damaged": "\x1b]0;title\x07garbage"},
    ]
    cells = [audit_text.record_cells(record) for record in hostile]
    assert cells[0][:2] == ("?", "?") and cells[0][4] == "a␊b" and cells[0][5] == "None"
    assert cells[1][0] == "?" and cells[1][1] == "?"  # uid True is not a uid
    assert cells[2][0] == "?" and cells[2][1] == "? (key k␛[2J)"
    assert cells[3][0] == audit_text.DAMAGED and cells[3][1].startswith("␛]0;title␇")
    assert not any("\x1b" in cell or "\n" in cell for row in cells for cell in row)

    for uid in range(2**31 - 200, 2**31 - 100):  # uids no one has: each a lookup, then kept
        assert audit_text.actor_text({"source": "cli", "uid": uid}) == f"uid {uid}"
    assert 0 < len(audit_text._user_names) <= audit_text.MAX_USER_NAMES
