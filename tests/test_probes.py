"""Dependencies, readiness and health probes, ``wait`` and ``why`` in the engine, with real child
processes: a TCP server that listens after a delay, an HTTP server whose health endpoint starts
failing, a chain of three with one failing, shutdown in reverse order, the probe pool's bound.

``{PY}`` is this interpreter; servers get a port found free just before (127.0.0.1 only).
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import pid_alive, wait_until, write_config

from lacrimosa.engine.config import load_config
from lacrimosa.engine.console import Console
from lacrimosa.engine.errors import ConfigError
from lacrimosa.engine.logs.query import LogQuery
from lacrimosa.engine.logs.store import SYSTEM
from lacrimosa.engine.processes.probes import (
    LOG_MATCH_TAIL,
    MAX_ERROR_CHARS,
    MAX_PROBE_WORKERS,
    LogMatcher,
)
from lacrimosa.engine.processes.supervisor import ProcessInfo

PY = sys.executable
MakeConsole = Callable[..., Console]

# Listens on $PORT after $DELAY seconds; /health answers 200 for $HEALTHY requests, then 500.
SERVER = """
import http.server, os, sys, time
time.sleep(float(os.environ.get("DELAY", "0")))
healthy = int(os.environ.get("HEALTHY", "1000000"))
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global healthy
        healthy -= 1
        self.send_response(200 if healthy >= 0 else 500)
        self.end_headers()
    def log_message(self, *args):
        pass
print("listening", flush=True)
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_script(tmp_path: Path) -> Path:
    path = tmp_path / "server.py"
    path.write_text(SERVER)
    return path


def system_lines(console: Console, name: str) -> list[str]:
    return [line.text for line in console.query(LogQuery(processes=(name,), stream=SYSTEM))]


# -- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (
            """
            [processes.a]
            cmd = "true"
            depends_on = { b = "ready" }
            [processes.b]
            cmd = "true"
            depends_on = { c = "started" }
            [processes.c]
            cmd = "true"
            depends_on = { a = "completed" }
            """,
            4,
            "a dependency cycle: a -> b -> c -> a",
        ),
        (
            """
            [processes.a]
            cmd = "true"

            depends_on = { db = "ready" }
            """,
            5,
            "processes.a.depends_on: no process 'db' (declared: a)",
        ),
        ("[processes.a]\ncmd = 'true'\ndepends_on = { a = 'ready' }\n", 3, "on itself"),
        (
            "[processes.a]\ncmd = 'true'\n[processes.b]\ncmd = 'x'\ndepends_on = {a='up'}",
            5,
            "started",
        ),
        ("[processes.a]\ncmd = 'true'\nready = { tcp = 'nohost' }\n", 3, 'expected "HOST:PORT"'),
        ("[processes.a]\ncmd = 'true'\nready = { tcp = 'h:1', http = 'http://h' }\n", 3, "one of"),
        ("[processes.a]\ncmd = 'true'\nready = { log = '(' }\n", 3, "not a regular expression"),
        ("[processes.a]\ncmd = 'true'\nhealth = { log = 'x' }\n", 3, "unknown key 'log'"),
        ("[processes.a]\ncmd = 'true'\nhealth = { tcp = 'h:1', interval = '0s' }\n", 3, "interval"),
        ("[processes.a]\ncmd = 'true'\nhealth = { exec = 'true', failures = 0 }\n", 3, "failures"),
        ("[processes.a]\ncmd = 'true'\nready = { http = 'localhost:80' }\n", 3, "expected a URL"),
    ],
)
def test_a_bad_dependency_or_probe_is_refused_with_file_and_line(
    tmp_path: Path, text: str, line: int, reason: str
) -> None:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.line == line, caught.value
    assert reason in caught.value.reason


def test_probes_and_dependencies_are_read_with_durations(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        [processes.db]
        cmd = "true"
        instances = 2
        ready = { tcp = "127.0.0.1:5432", interval = "250ms", timeout = 1 }
        [processes.api]
        cmd = "true"
        depends_on = { db = "ready" }
        health = { http = "http://127.0.0.1:8000/health", interval = "10s", failures = 3 }
        """,
    )
    config = load_config(path)
    ready = config.processes["db.2"].ready
    assert ready is not None and (ready.kind, ready.interval, ready.timeout) == ("tcp", 0.25, 1.0)
    health = config.processes["api"].health
    assert health is not None and (health.kind, health.failures) == ("http", 3)
    assert config.processes["api"].depends_on == {"db": "ready"}


# -- readiness and dependencies -----------------------------------------------------------------


def test_a_tcp_server_listening_after_a_delay_is_ready_then_its_dependent_starts(
    console: MakeConsole, tmp_path: Path
) -> None:
    port = free_port()
    script = server_script(tmp_path)
    c = console(f"""
        [processes.db]
        cmd = "{PY} {script}"
        env = {{ PORT = "{port}", DELAY = "0.6" }}
        ready = {{ tcp = "127.0.0.1:{port}", interval = "100ms", timeout = "1s" }}
        [processes.api]
        cmd = "echo api started; sleep 60"
        depends_on = {{ db = "ready" }}
    """)
    db, api = c.process("db"), c.process("api")
    assert (db.state, db.ready) == ("running", False)
    assert (api.state, api.reason, api.pid) == ("waiting", "db: ready", None)
    wait_until(lambda: c.process("db").probes[0].failures >= 1)
    assert "Connection refused" in (c.process("db").probes[0].last_error or "")
    wait_until(lambda: c.process("api").state == "running")
    db = c.process("db")
    assert db.ready and db.probes[0].passing
    assert f"ready (tcp 127.0.0.1:{port})" in system_lines(c, "db")
    # started after db was ready: the ready line comes before api's first line
    wait_until(lambda: c.process("api").stdout_lines)
    lines = list(c.query(LogQuery()))
    ready_id = next(line.id for line in lines if line.text.startswith("ready (tcp"))
    api_id = next(line.id for line in lines if line.text == "api started")
    assert ready_id < api_id


def test_log_and_exec_probes(console: MakeConsole, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    c = console(f"""
        [processes.logged]
        cmd = "sleep 0.3; echo 'database system is ready to accept connections' >&2; sleep 60"
        ready = {{ log = "ready to accept" }}
        [processes.checked]
        cmd = "sleep 0.3; touch {marker}; sleep 60"
        ready = {{ exec = "test -f {marker}", interval = "50ms" }}
    """)
    assert not c.process("logged").ready and not c.process("checked").ready
    wait_until(lambda: c.process("logged").ready and c.process("checked").ready)
    assert "exited with 1" in (c.process("checked").probes[0].last_error or "")


def test_an_exec_probe_past_its_timeout_is_killed_and_counted_failed(
    console: MakeConsole, tmp_path: Path
) -> None:
    pids = tmp_path / "probe.pids"
    c = console(f"""
        [processes.slow]
        cmd = "sleep 60"
        ready = {{ exec = "echo $$ >> {pids}; sleep 30", interval = "50ms", timeout = "200ms" }}
    """)
    wait_until(lambda: c.process("slow").probes[0].failures >= 2)
    assert "did not finish within 0.2s" in (c.process("slow").probes[0].last_error or "")
    first = int(pids.read_text().split()[0])
    wait_until(lambda: not pid_alive(first))


def test_the_probe_pool_runs_at_most_its_bound_at_once(console: MakeConsole) -> None:
    """Ten processes whose exec probes each take 0.3s: never more than MAX_PROBE_WORKERS probe
    threads, and every process still gets ready (the others wait their turn)."""
    count = 10
    c = console(
        "".join(
            f"""
        [processes.p{i}]
        cmd = "sleep 60"
        ready = {{ exec = "sleep 0.3", interval = "50ms", timeout = "5s" }}
        """
            for i in range(count)
        )
    )
    most = 0

    def all_ready() -> bool:
        nonlocal most
        threads = [t for t in threading.enumerate() if t.name.startswith("lacrimosa-probe")]
        most = max(most, len(threads))
        return all(info.ready for info in c.processes())

    wait_until(all_ready, timeout=20)
    assert 1 <= most <= MAX_PROBE_WORKERS


def test_a_chain_of_three_with_a_failing_first_leaves_the_others_blocked(
    console: MakeConsole,
) -> None:
    c = console("""
        [processes.migrate]
        cmd = "echo 'no database' >&2; exit 3"
        restart = "never"
        [processes.api]
        cmd = "sleep 60"
        depends_on = { migrate = "completed" }
        [processes.web]
        cmd = "sleep 60"
        depends_on = { api = "started" }
    """)
    wait_until(lambda: c.process("web").state == "blocked")
    api, web = c.process("api"), c.process("web")
    assert (api.state, api.reason) == ("blocked", "migrate failed (exited with code 3)")
    assert web.reason == "api is blocked (migrate failed (exited with code 3))"
    assert api.pid is None and web.pid is None and api.stdout_lines == 0
    assert "blocked: migrate failed (exited with code 3)" in system_lines(c, "api")
    why = c.why("api")
    assert (
        why["summary"][0]
        == "api has not started: it is blocked: migrate failed (exited with code 3)"
    )
    why = c.why("migrate")
    assert why["last_exit"] == 3 and why["stderr"] == ["no database"]
    assert c.wait_for(["web"], timeout=5)["outcome"] == "never"


def test_a_chain_that_succeeds_starts_in_order_and_shuts_down_in_reverse(
    console: MakeConsole,
) -> None:
    # Each is ready once it said "up" (its trap is set then); c stops slowly (its TERM trap
    # takes 0.3s): b must not get its signal before c is gone.
    c = console("""
        [processes.a]
        cmd = "trap 'echo a got TERM; exit 0' TERM; echo a up; while true; do sleep 0.05; done"
        ready = { log = "a up" }
        [processes.b]
        cmd = "trap 'echo b got TERM; exit 0' TERM; echo b up; while true; do sleep 0.05; done"
        depends_on = { a = "ready" }
        ready = { log = "b up" }
        [processes.c]
        cmd = "trap 'sleep 0.3; echo c got TERM; exit 0' TERM; echo c up; while true; do sleep 0.05; done"
        depends_on = { b = "ready" }
    """)
    result = c.wait_for(None, timeout=10)
    assert result["outcome"] == "reached", result
    wait_until(lambda: all(i.stdout_lines for i in c.processes()))
    c.shutdown()
    order = [
        line.text for line in c.query(LogQuery(stream=None)) if line.text.endswith((" up", "TERM"))
    ]
    assert order == ["a up", "b up", "c up", "c got TERM", "b got TERM", "a got TERM"]


def test_stop_all_stops_dependents_first(console: MakeConsole) -> None:
    c = console("""
        [processes.db]
        cmd = "trap 'echo db got TERM; exit 0' TERM; echo up; while true; do sleep 0.05; done"
        [processes.api]
        cmd = "trap 'sleep 0.2; echo api got TERM; exit 0' TERM; echo up; while true; do sleep 0.05; done"
        depends_on = { db = "started" }
    """)
    # each has set its trap (it said so) before the stop
    wait_until(lambda: all(info.stdout_lines for info in c.processes()))
    outcomes = dict(c.act("stop", "all"))
    assert outcomes == {"db": "stopped", "api": "stopped"}
    said = [line.text for line in c.query(LogQuery()) if "TERM" in line.text]
    assert said == ["api got TERM", "db got TERM"]


def test_start_of_a_waiting_process_waits_and_stop_cancels_it(console: MakeConsole) -> None:
    c = console("""
        [processes.db]
        cmd = "sleep 60"
        autostart = false
        [processes.api]
        cmd = "sleep 60"
        depends_on = { db = "started" }
    """)
    assert c.process("api").state == "waiting"
    assert c.stop_process("api") == "stopped"
    assert c.process("api").state == "stopped"
    assert c.start_process("api") == "waiting (db: started)"
    assert c.start_process("db") == "started"
    wait_until(lambda: c.process("api").state == "running")


# -- health --------------------------------------------------------------------------------------


def test_a_failing_health_endpoint_restarts_the_process_after_n_failures(
    console: MakeConsole, tmp_path: Path
) -> None:
    port = free_port()
    script = server_script(tmp_path)
    url = f"http://127.0.0.1:{port}/health"
    c = console(f"""
        [processes.web]
        cmd = "{PY} {script}"
        env = {{ PORT = "{port}", HEALTHY = "3" }}
        ready = {{ http = "{url}", interval = "50ms" }}
        health = {{ http = "{url}", interval = "50ms", failures = 2 }}
        backoff_initial = 0.1
    """)
    first = wait_until(lambda: c.process("web").ready and c.process("web").pid)
    wait_until(lambda: c.process("web").restarts >= 1 and c.process("web").ready, timeout=15)
    assert c.process("web").pid != first
    said = system_lines(c, "web")
    failed = [text for text in said if text.startswith("health check failed")]
    assert failed and failed[0] == (
        f"health check failed 2 times in a row (http {url}: GET {url}: HTTP 500); "
        "stopping it, restarting it (restart = 'on-failure')"
    )
    why = c.why("web")
    assert why["restarts"] >= 1 and why["last_exit"] is not None


def test_a_health_failure_with_restart_never_leaves_it_failed(
    console: MakeConsole, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    c = console(f"""
        [processes.web]
        cmd = "{PY} {server_script(tmp_path)}"
        env = {{ PORT = "{port}", HEALTHY = "2" }}
        ready = {{ http = "{url}", interval = "50ms" }}
        health = {{ http = "{url}", interval = "50ms", failures = 1 }}
        restart = "never"
    """)
    wait_until(lambda: c.process("web").state == "failed", timeout=15)
    web = c.process("web")
    assert web.restarts == 0 and web.exit_code == -15  # SIGTERM, its stop signal
    why = c.why("web")
    assert why["healthy"] is False and why["last_exit_words"] == "killed by SIGTERM"
    assert "not restarting it (restart = 'never')" in system_lines(c, "web")[-2]


# -- wait ----------------------------------------------------------------------------------------


def test_wait_is_woken_by_state_changes_and_bounded_by_its_timeout(console: MakeConsole) -> None:
    c = console("""
        [processes.quick]
        cmd = "sleep 0.3"
        restart = "never"
        [processes.forever]
        cmd = "sleep 60"
    """)
    began = time.monotonic()
    assert c.wait_for(["quick"], "exited", timeout=10)["outcome"] == "reached"
    assert time.monotonic() - began < 5
    began = time.monotonic()
    result = c.wait_for(["forever"], "exited", timeout=0.3)
    assert result["outcome"] == "timeout" and result["blocking"]["name"] == "forever"
    assert 0.3 <= time.monotonic() - began < 3
    assert c.wait_for(["quick"], "ready", timeout=5)["outcome"] == "reached"  # completed
    assert c.stop_process("forever") == "stopped"
    assert c.wait_for(["forever"], "ready", timeout=5)["outcome"] == "never"
    assert c.start_process("forever") == "started"
    assert c.wait_for(["forever"], "state", "running", timeout=5)["outcome"] == "reached"


def test_up_with_names_starts_what_they_depend_on_too(tmp_path: Path) -> None:
    from lacrimosa.api.runner import start_only

    path = write_config(
        tmp_path,
        """
        [processes.db]
        cmd = "true"
        instances = 2
        [processes.migrate]
        cmd = "true"
        depends_on = ["db"]
        [processes.api]
        cmd = "true"
        depends_on = { migrate = "completed" }
        [processes.other]
        cmd = "true"
        """,
    )
    config = start_only(load_config(path), ["api"])
    started = [name for name, spec in config.processes.items() if spec.autostart]
    assert started == ["db.1", "db.2", "migrate", "api"]


def test_wait_answers_within_milliseconds_of_the_change(console: MakeConsole) -> None:
    c = console("""
        [processes.db]
        cmd = "sleep 0.3; echo accepting; exec sleep 60"
        ready = { log = "accepting" }
    """)
    assert c.wait_for(["db"], timeout=10)["outcome"] == "reached"
    answered = time.time()
    ready_line = next(t for t in c.query(LogQuery(stream=SYSTEM)) if t.text.startswith("ready"))
    assert answered - ready_line.time < 0.1, answered - ready_line.time


def test_a_log_probe_keeps_a_bounded_tail_and_matches_across_chunks() -> None:
    matcher = LogMatcher("^ready to accept")
    assert not matcher.feed(1, b"x" * (1 << 20))  # a megabyte without a newline
    assert all(len(tail) <= LOG_MATCH_TAIL for tail in matcher._tails.values())
    assert not matcher.feed(1, b"\nready to ")
    assert matcher.feed(1, b"accept connections\n")
    assert not LogMatcher("^ready").feed(2, b"not ready\n")


def test_an_exec_probe_error_is_cut_to_its_bound(console: MakeConsole) -> None:
    c = console("""
        [processes.noisy]
        cmd = "exec sleep 60"
        ready = { exec = "head -c 50000000 /dev/zero | tr '\\\\0' 0 >&2; exit 1", interval = "5m" }
    """)
    wait_until(lambda: c.process("noisy").probes[0].last_error)
    error = c.process("noisy").probes[0].last_error or ""
    # 50 MB on stderr in one line: read as it came, its last 4 KiB kept, the error cut to 300
    assert len(error) == MAX_ERROR_CHARS and "exited with 1: 0000" in error


def test_depending_on_a_type_waits_for_every_instance(console: MakeConsole) -> None:
    # db.1 (PORT 5000) is ready after 0.2s, db.2 (PORT 5001) after 0.8s
    c = console("""
        [processes.db]
        cmd = "sleep 0.$((PORT % 2 * 6 + 2)); echo accepting; exec sleep 60"
        instances = 2
        ready = { log = "accepting" }
        [processes.api]
        cmd = "exec sleep 60"
        depends_on = { db = "ready" }
    """)
    assert c.process("api").reason == "db: ready"
    why = c.why("api")["summary"]
    assert why[0] == "api has not started: it waits for db: ready"
    assert why[1:3] == ["  db.1: running, not ready", "  db.2: running, not ready"]
    wait_until(lambda: c.process("db.1").ready != c.process("db.2").ready, timeout=5)
    assert c.process("api").state == "waiting"  # one instance ready is not enough
    wait_until(lambda: c.process("api").state == "running", timeout=15)
    assert c.process("db.1").ready and c.process("db.2").ready


def test_a_remote_copy_of_process_info_keeps_readiness_and_probes(console: MakeConsole) -> None:
    c = console("""
        [processes.db]
        cmd = "echo accepting; exec sleep 60"
        ready = { log = "accepting" }
        health = { exec = "true", interval = "50ms" }
        [processes.api]
        cmd = "exec sleep 60"
        depends_on = { db = "completed" }
    """)
    wait_until(lambda: c.process("db").health == "ok")
    for info in c.processes():
        copy = ProcessInfo.from_dict(info.to_dict())
        assert (copy.ready, copy.reason, copy.probes, copy.health) == (
            info.ready,
            info.reason,
            info.probes,
            info.health,
        )
    assert c.process("api").reason == "db: completed"
