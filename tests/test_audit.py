"""The audit log (engine/audit.py): every action recorded, hash-chained, verifiable, crash-safe;
API keys (engine/keys.py): hashed at rest, owner-only file, constant-time checks, scopes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from lacrimosa.api.protocol import dispatch
from lacrimosa.engine.audit import GENESIS, Actor, AuditLog
from lacrimosa.engine.console import Console
from lacrimosa.engine.errors import InvalidRequest, KeyStoreError, NoSuchKey, NoSuchProcess
from lacrimosa.engine.keys import KeyStore

MakeConsole = Callable[..., Console]
ME = Actor.local("cli")


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_records_chain_and_verify(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    first = log.record(ME, "restart", "api", detail="restarted")
    second = log.record(
        Actor("http", key_id="ab12cd34", key_name="ci"), "stop", "web", outcome="no_such_process"
    )
    assert first["prev"] == GENESIS and second["prev"] == first["hash"]
    assert (first["seq"], second["seq"]) == (1, 2)
    assert second["actor"] == {"source": "http", "key_id": "ab12cd34", "key_name": "ci"}
    assert os.stat(tmp_path / "audit.log").st_mode & 0o777 == 0o600
    check = log.verify()
    assert check.ok and check.records == 2
    assert [r["seq"] for r in log.records(limit=10)] == [1, 2]
    assert log.records(limit=1) == [second]


def test_verify_names_an_edited_a_removed_and_a_reordered_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    for n in range(5):
        log.record(ME, "restart", f"p{n}")
    log.close()
    original = lines_of(path)

    path.write_bytes(b"".join(original).replace(b'"target":"p2"', b'"target":"pX"'))
    problems = AuditLog(path).verify().problems
    assert problems == ["line 3 (seq 3): edited (hash mismatch)"]

    path.write_bytes(b"".join(original[:2] + original[3:]))
    problems = AuditLog(path).verify().problems
    assert problems == ["line 3 (seq 4): expected seq 3, records missing before it"]

    path.write_bytes(b"".join([original[0], original[2], original[1], *original[3:]]))
    assert AuditLog(path).verify().problems[0].startswith("line 2 (seq 3): expected seq 2")

    path.write_bytes(b"".join(original[:4]) + b"garbage\n" + original[4])
    assert "line 5: not a record (damaged)" in AuditLog(path).verify().problems


def test_a_torn_last_record_is_cut_off_and_appending_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    log.record(ME, "start", "a")
    log.record(ME, "start", "b")
    log.close()
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"seq":3,"time":1')  # a write cut short by a crash
    log = AuditLog(path)
    log.record(ME, "start", "c")
    assert log.torn == 1
    assert log.verify().ok and log.verify().records == 3
    assert path.read_bytes().startswith(whole)


def test_records_reads_the_newest_from_the_end_and_since(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    for n in range(3000):  # ~600 KiB: several backward read chunks
        log.record(ME, "restart", f"process-{n}", args={"padding": "x" * 50})
    newest = log.records(limit=2500)
    assert [r["seq"] for r in newest] == list(range(501, 3001))
    assert log.records(limit=5, since=newest[-1]["time"] + 1) == []
    huge = log.record(ME, "start", "x", args={"blob": "y" * 10_000})
    assert huge["args"]["truncated"] is True


def test_a_failed_write_is_counted_not_raised(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "missing-folder" / "audit.log")
    record = log.record(ME, "start", "a")
    assert record["target"] == "a" and log.write_errors == 1 and log.last_error


def test_the_log_survives_a_kill_9_in_the_middle_of_recording(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from lacrimosa.engine.audit import Actor, AuditLog\n"
        "log = AuditLog(Path(sys.argv[1]))\n"
        "print('go', flush=True)\n"
        "while True:\n"
        "    log.record(Actor('cli', 0), 'restart', 'api', args={'n': 'x' * 300})\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline() == b"go\n"
    while not path.exists() or path.stat().st_size < 200_000:
        pass
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    log = AuditLog(path)
    log.record(ME, "stop", "api")
    check = log.verify()
    assert check.ok, check.problems
    assert check.records == log.count


def test_every_console_action_lands_in_the_audit_log(console: MakeConsole) -> None:
    c = console("""
        [processes.api]
        cmd = "sleep 300"
        stop_timeout = 2
    """)
    c.restart_process("api")
    c.stop_process("api", Actor.local("tui"))
    with pytest.raises(NoSuchProcess):
        c.start_process("nope")
    c.request_shutdown(Actor("cli", 0))
    records = c.audit.records()
    assert [(r["action"], r["target"], r["outcome"], r["actor"]["source"]) for r in records] == [
        ("restart", "api", "ok", "console"),
        ("stop", "api", "ok", "tui"),
        ("start", "nope", "no_such_process", "console"),
        ("shutdown", None, "ok", "cli"),
    ]
    assert c.audit.verify().ok
    assert c.status()["audit"]["records"] == 4


# -- keys ----------------------------------------------------------------------------------------


def test_keys_are_kept_hashed_in_an_owner_only_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    store = KeyStore(path)
    record, key = store.create("write", "deploy bot")
    assert key.startswith(f"lcm_{record.id}_") and len(key) > 40
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert key not in path.read_text()
    assert record.scopes == ["read", "write"] and record.allows("read")
    assert not record.allows("admin")
    assert set(record.to_dict()) == {"id", "name", "scopes", "created", "last_used"}

    again = KeyStore(path)  # read back from the file
    found = again.authenticate(key)
    assert found is not None and found.id == record.id and found.last_used
    assert again.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert again.authenticate("lcm_") is None and again.authenticate("") is None
    assert again.authenticate(f"lcm_{record.id}") is None
    again.revoke(record.id)
    assert again.authenticate(key) is None
    with pytest.raises(NoSuchKey):
        again.revoke(record.id)
    assert KeyStore(path).list() == []


def test_bad_scopes_and_names_are_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    with pytest.raises(InvalidRequest):
        store.create("root")
    with pytest.raises(InvalidRequest):
        store.create("read", "bad\x1b[31mname")
    assert store.list() == []


def test_a_key_file_open_to_others_or_malformed_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    KeyStore(path).create("read")
    os.chmod(path, 0o644)
    with pytest.raises(KeyStoreError, match="0600"):
        KeyStore(path).list()
    os.chmod(path, 0o600)
    path.write_text(json.dumps({"keys": [{"id": "x"}]}))
    with pytest.raises(KeyStoreError, match="malformed"):
        KeyStore(path).list()


def test_keys_and_audit_through_the_protocol(console: MakeConsole) -> None:
    c = console("""
        [processes.api]
        cmd = "sleep 300"
    """)
    owner = Actor("cli", os.getuid())
    created = dispatch(c, {"op": "key_create", "scope": "write", "name": "ci"}, owner)["result"]
    assert created["scopes"] == ["read", "write"] and created["key"].startswith("lcm_")
    listed = dispatch(c, {"op": "key_list"})["result"]["keys"]
    assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]
    refused = dispatch(c, {"op": "key_create", "scope": "god"}, owner)
    assert refused["error"]["code"] == "invalid_request"
    assert dispatch(c, {"op": "key_revoke", "id": created["id"]}, owner)["ok"]
    assert dispatch(c, {"op": "key_revoke", "id": "zz"}, owner)["error"]["code"] == "no_such_key"

    audit = dispatch(c, {"op": "audit", "lines": 10})["result"]
    assert [(r["action"], r["outcome"]) for r in audit["records"]] == [
        ("key_create", "ok"),
        ("key_create", "invalid_request"),
        ("key_revoke", "ok"),
        ("key_revoke", "no_such_key"),
    ]
    assert audit["count"] == 4 and audit["head"] == audit["records"][-1]["hash"]
    recent = dispatch(c, {"op": "audit", "lines": 10, "since": 3600})["result"]["records"]
    assert recent == audit["records"]
    assert dispatch(c, {"op": "audit_verify"})["result"] == {
        "ok": True,
        "records": 4,
        "problems": [],
    }
