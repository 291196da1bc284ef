"""``wait`` and ``why`` through the real CLI against a real console (``up --headless``), text and
``--json``, with their exit codes; and ``ps`` showing readiness and the waiting reason."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from helpers import pid_alive, wait_until
from test_cli import _no_console_left_behind, start_console  # noqa: F401
from test_probes import free_port

PY = sys.executable


def project(port: int) -> str:
    # db listens after 0.5s; migrate runs once db is ready; api waits for both, web for api.
    listen = (
        f"import socket, time; time.sleep(0.5); s = socket.socket(); "
        f"s.bind(('127.0.0.1', {port})); s.listen(); print('listening', flush=True); "
        f"time.sleep(300)"
    )
    return f"""
[processes.db]
cmd = "{PY} -c \\"{listen}\\""
ready = {{ tcp = "127.0.0.1:{port}", interval = "100ms" }}
stop_timeout = 2

[processes.migrate]
cmd = "echo migrated"
restart = "never"
depends_on = {{ db = "ready" }}

[processes.api]
cmd = "sleep 300"
depends_on = {{ db = "ready", migrate = "completed" }}
stop_timeout = 2

[processes.broken]
cmd = "printf 'boom\\\\033[2J\\\\n' >&2; exit 4"
restart = "never"

[processes.needs_broken]
cmd = "sleep 300"
depends_on = {{ broken = "completed" }}
"""


def test_wait_and_why_through_the_cli_with_json(tmp_path: Path) -> None:
    console = start_console(tmp_path, project(free_port()))
    # api waits for db (not listening yet) when the console has just started
    ps = console.run("ps")
    assert ps.returncode == 0
    assert "api" in ps.stdout and "READY" in ps.stdout

    began = time.monotonic()
    waited = console.run("wait", "api", "--timeout", "20s", "--json")
    assert waited.returncode == 0, waited.stderr
    result = json.loads(waited.stdout)
    assert result["outcome"] == "reached" and time.monotonic() - began < 15
    assert [(p["name"], p["state"], p["ready"]) for p in result["processes"]] == [
        ("api", "running", True)
    ]

    why = console.run("why", "db", "--json")
    assert why.returncode == 0
    db = json.loads(why.stdout)
    assert db["healthy"] is True and db["probes"][0]["passing"] is True
    assert db["summary"][0].startswith("db is healthy: running and ready, up ")

    # the blocked one: why says what it waits on, wait says it never will be there (exit 1)
    text = console.run("why", "needs_broken")
    assert text.returncode == 0
    assert text.stdout.splitlines()[0] == (
        "needs_broken has not started: it is blocked: broken failed (exited with code 4)"
    )
    never = console.run("wait", "needs_broken", "api", "--json")
    assert never.returncode == 1
    assert json.loads(never.stdout)["blocking"]["name"] == "needs_broken"
    assert console.run("wait", "needs_broken").stderr.startswith(
        "lacrimosa: cannot get there: needs_broken is blocked (broken failed"
    )

    # why shows a failed process's last exit and its stderr, made safe for a terminal
    broken = console.run("why", "broken")
    assert "last exit: exited with code 4" in broken.stdout
    assert "  boom␛[2J" in broken.stdout and "\x1b" not in broken.stdout
    assert json.loads(console.run("why", "broken", "--json").stdout)["stderr"] == ["boom\x1b[2J"]

    # a timeout is exit 5; an unknown name 3; two conditions at once a usage error
    late = console.run("wait", "api", "--state", "stopped", "--timeout", "300ms", "--json")
    assert late.returncode == 5 and json.loads(late.stdout)["outcome"] == "timeout"
    assert console.run("wait", "nope").returncode == 3
    assert console.run("why", "nope", "--json").returncode == 3
    assert console.run("wait", "--ready", "--exited").returncode == 2

    # wait with no name: every autostart process ready; broken failed, so never (1)
    assert console.run("wait", "--timeout", "5s").returncode == 1
    assert console.run("wait", "migrate", "--exited").returncode == 0
    assert console.run("wait", "migrate").returncode == 0  # ran to completion: counts as ready


def test_wait_and_why_over_http(served: Any) -> None:
    s = served("""
        [processes.db]
        cmd = "sleep 0.3; echo accepting; exec sleep 60"
        ready = { log = "accepting" }
        [processes.api]
        cmd = "exec sleep 60"
        depends_on = { db = "ready" }
    """)
    client = s.client(s.key("read"))
    waited = client.get("/api/wait", params={"name": ["api", "db"], "timeout": "10s"}).json()
    assert waited["ok"] and waited["result"]["outcome"] == "reached"
    late = client.get(
        "/api/wait", params={"until": "state", "state": "stopped", "timeout": "100ms"}
    )
    assert late.json()["result"]["outcome"] == "timeout"
    why = client.get("/api/processes/db/why").json()["result"]
    assert why["healthy"] and why["probes"][0]["probe"] == "log accepting"
    assert client.get("/api/processes/nope/why").status_code == 404
    assert client.get("/api/wait", params={"timeout": "soon"}).status_code == 400
    unknown = client.get("/api/wait", params={"until": "state", "state": "asleep"})
    assert unknown.status_code == 400 and "state must be one of running" in unknown.text


def test_an_exec_probe_running_when_the_console_is_killed_does_not_outlive_it(
    tmp_path: Path,
) -> None:
    pids = tmp_path / "probe.pid"
    console = start_console(
        tmp_path,
        f"""
[processes.slow]
cmd = "exec sleep 300"
ready = {{ exec = "echo $$ > {pids}; exec sleep 300", timeout = "5m", interval = "5m" }}
""",
    )
    wait_until(lambda: pids.exists() and pids.read_text().strip())
    probe = int(pids.read_text())
    assert pid_alive(probe)
    console.proc.kill()  # SIGKILL: no cleanup of its own; the guardian has the probe's group
    console.proc.wait(10)
    console.proc.communicate()
    wait_until(lambda: not pid_alive(probe), timeout=15)
