"""``lacrimosa query`` and ``logs --where``: the real CLI against a real running console."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_until
from test_cli import CLI, RunningConsole, cli_env, start_console

from lacrimosa.api.client import ControlClient, RemoteError
from lacrimosa.engine.events.frames import encode_frame

PY = sys.executable
CONFIG = f"""
[processes.api]
cmd = "{PY} -u -c 'import json\\nfor i in range(60):\\n    print(json.dumps({{\\"level\\": \\"error\\" if i % 6 == 0 else \\"info\\", \\"msg\\": \\"upstream timeout\\" if i % 4 == 0 else \\"ok\\", \\"status\\": 500 + i % 3 if i % 5 == 0 else 200}}))\\nimport time; time.sleep(300)'"

[processes.worker]
cmd = "{PY} -u -c 'import sys\\nfor i in range(30):\\n    print(f\\"level=error job={{i}} status={{500 + i % 2}}\\", file=sys.stderr)\\n    print(f\\"level=info job={{i}}\\")\\nimport time; time.sleep(300)'"

[processes.ticker]
cmd = "{PY} -u -c 'import json, time\\nfor i in range(100000):\\n    print(json.dumps({{\\"n\\": i, \\"status\\": 503 if i % 3 == 0 else 200}}), flush=True); time.sleep(0.05)'"

[processes.web]
cmd = "{PY} -u -c 'import os, time\\nprint(\\"hello from\\", os.environ[\\"PORT\\"], flush=True); time.sleep(300)'"

[sequencer]
udp = "127.0.0.1:0"
"""


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningConsole]:
    """One console for the module (its processes write what the tests count, then wait)."""
    folder = tmp_path_factory.mktemp("query")
    running = start_console(folder, CONFIG, up_args=("-m", "web=2"))
    try:
        wait_until(
            lambda: (
                running.ps()["api"]["stdout_lines"] == 60
                and running.ps()["worker"]["stderr_lines"] == 30
                and running.ps()["worker"]["stdout_lines"] == 30
                and all(running.ps()[w]["stdout_lines"] == 1 for w in ("web.1", "web.2"))
            ),
            timeout=20,
        )
        yield running
    finally:
        running.stop()


def query(console: RunningConsole, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    return console.run("query", text, *args)


def document(console: RunningConsole, text: str) -> dict:
    result = query(console, text, "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    reply = json.loads(result.stdout)
    assert set(reply) == {"columns", "rows", "scanned", "elapsed_ms", "truncated"}
    return reply


def test_the_issues_examples_over_logs(console: RunningConsole) -> None:
    errors = document(
        console,
        'SELECT * FROM api, worker WHERE level = "error" AND msg CONTAINS "timeout" SINCE 5m LIMIT 50',
    )
    assert errors["columns"] == ["ts", "process", "stream", "id", "line"]
    assert [json.loads(r[4])["msg"] for r in errors["rows"]] == ["upstream timeout"] * 5  # i % 12
    newest = document(
        console, "SELECT ts, process, msg FROM * WHERE status >= 500 ORDER BY ts DESC LIMIT 20"
    )
    assert len(newest["rows"]) == 20
    assert [r[0] for r in newest["rows"]] == sorted((r[0] for r in newest["rows"]), reverse=True)
    by_minute = document(
        console, "SELECT count(*) FROM api WHERE status >= 500 SINCE 1h GROUP BY 1m"
    )
    assert sum(row[1] for row in by_minute["rows"]) == 12 and by_minute["columns"] == [
        "ts",
        "count(*)",
    ]
    by_process = document(
        console, 'SELECT count(*), process FROM * WHERE stream = "stderr" GROUP BY process'
    )
    assert by_process["rows"] == [[30, "worker"]]


def test_a_type_names_its_instances_and_an_instance_itself(console: RunningConsole) -> None:
    rows = document(console, "SELECT process, line FROM web")["rows"]
    assert sorted(r[0] for r in rows) == ["web.1", "web.2"]
    assert document(console, "SELECT process FROM web.2")["rows"] == [["web.2"]]
    assert document(console, "SELECT count(*) FROM worker.stderr")["rows"] == [[30]]


def test_events_are_queried_from_the_journal(console: RunningConsole) -> None:
    status = json.loads(console.run("status", "--json").stdout)
    host, port = status["sequencer"]["udp"].rsplit(":", 1)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(4):
            payload = json.dumps({"i": i, "kind": "deploy"}).encode()
            sender.sendto(
                encode_frame(payload, node=3, stream=7 if i % 2 else 8), (host, int(port))
            )
        sender.sendto(b"plain datagram", (host, int(port)))
    finally:
        sender.close()
    text = "SELECT * FROM events WHERE node = 3 AND stream = 7 SINCE 2026-11-23T10:00:00Z"
    wait_until(lambda: len(document(console, text)["rows"]) == 2)
    reply = document(console, text)
    assert reply["columns"] == ["seq", "lamport", "ts", "node", "stream", "flags", "payload"]
    assert [json.loads(r[6])["i"] for r in reply["rows"]] == [1, 3]
    kinds = document(console, "SELECT count(*), kind FROM events GROUP BY kind")["rows"]
    assert kinds == [[1, None], [4, "deploy"]]


def test_a_query_that_does_not_parse_exits_2_with_a_caret(console: RunningConsole) -> None:
    text = "SELECT * FROM api WHERE status >= AND level = 1"
    result = query(console, text)
    assert result.returncode == 2 and result.stdout == ""
    message, shown, caret = result.stderr.splitlines()
    assert "expected a value" in message and "column 35" in message
    assert shown == "  " + text
    assert caret == " " * (2 + 34) + "^"
    as_json = query(console, text, "--json")
    assert as_json.returncode == 2
    error = json.loads(as_json.stderr)["error"]
    assert error["code"] == "query_syntax" and error["position"] == 34
    assert error["expected"].startswith("a value")


def test_errors_of_meaning_have_their_exit_codes(console: RunningConsole) -> None:
    missing = query(console, "SELECT * FROM nope")
    assert missing.returncode == 3 and "no such process: 'nope'" in missing.stderr
    assert query(console, "SELECT * FROM api", "--timeout", "2m").returncode == 2  # over 60s


def test_the_table_fits_the_terminal_and_shows_no_control_characters(
    console: RunningConsole,
) -> None:
    env = {**cli_env(), "COLUMNS": "50"}
    result = subprocess.run(
        [*CLI, "query", "SELECT * FROM api LIMIT 5"],
        cwd=console.folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    *table, summary = result.stdout.splitlines()
    assert table[0].split() == ["ts", "process", "stream", "id", "line"]
    assert len(table) == 6 and all(len(line) <= 50 for line in table)
    assert table[1].endswith("…")
    assert summary.startswith("(5 rows;")


def test_logs_where_filters_and_follows(console: RunningConsole) -> None:
    result = console.run("logs", "api", "--where", 'level = "error" OR status >= 500', "--json")
    lines = [json.loads(raw) for raw in result.stdout.splitlines()]
    expected = [i for i in range(60) if i % 6 == 0 or i % 5 == 0]
    assert [json.loads(x["text"]).get("status") for x in lines] == [
        500 + i % 3 if i % 5 == 0 else 200 for i in expected
    ]
    assert console.run(
        "logs", "worker", "--where", "status = 501", "-n", "3"
    ).stdout.splitlines() == [f"level=error job={i} status=501" for i in (25, 27, 29)]
    bad = console.run("logs", "--where", "status >")
    assert bad.returncode == 2 and bad.stderr.splitlines()[-1] == "  " + " " * 8 + "^"
    with console.follow(
        "logs", "ticker", "--where", "status = 503", "-f", "-n", "1", "--json"
    ) as out:
        seen = [json.loads(json.loads(out.readline())["text"]) for _ in range(4)]
    numbers = [x["n"] for x in seen]
    assert all(x["status"] == 503 for x in seen)
    assert numbers == list(range(numbers[0], numbers[0] + 12, 3))  # every third, none missed


def test_the_query_verb_loads_neither_numpy_nor_the_query_language(
    console: RunningConsole, tmp_path: Path
) -> None:
    """The console parses and runs queries: the one-shot CLI only sends the text."""
    result = subprocess.run(
        [PY, "-X", "importtime", "-m", "lacrimosa.api.cli", "query", "SELECT count(*) FROM api"],
        cwd=console.folder,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()}
    assert "lacrimosa.api.client" in imported
    assert not {"numpy", "lacrimosa.engine.dsl", "textual"} & imported


def test_the_protocol_op_checks_its_arguments(console: RunningConsole) -> None:
    with ControlClient(str(console.folder / ".lacrimosa")) as client:
        for args, message in [
            ({}, "needs a query"),
            ({"query": "SELECT * FROM api", "deadline": 0}, "deadline must be"),
            ({"query": "SELECT * FROM api", "deadline": True}, "deadline must be"),
        ]:
            with pytest.raises(RemoteError, match=message) as caught:
                client.call("query", **args)
            assert caught.value.code == "invalid_request"
        with pytest.raises(RemoteError, match="at most 10000") as caught:
            client.call("logs", where="status > 1", lines=10_001)
        with pytest.raises(RemoteError) as caught:
            client.call("query", query="SELECT * FROM api WHERE (")
        assert caught.value.details["position"] == 25 and caught.value.exit_code == 2
        reply = client.call("query", query="SELECT line FROM api LIMIT 2", deadline=5)
        assert len(reply["rows"]) == 2 and reply["truncated"] is False


async def test_an_agent_queries_through_the_mcp_tool(console: RunningConsole) -> None:
    from mcp.client import Client
    from test_mcp import server, structured

    async with Client(server(console.folder)) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert "query" in tools
        by_process = structured(
            await client.call_tool(
                "query",
                {
                    "query": 'SELECT count(*), process FROM * WHERE stream = "stderr" GROUP BY process'
                },
            )
        )
        assert by_process["rows"] == [[30, "worker"]]
        bad = await client.call_tool("query", {"query": "SELECT * FROM api WHERE ("})
        assert bad.is_error and "query_syntax" in bad.content[0].text
        assert "column 26" in bad.content[0].text
        errors = structured(
            await client.call_tool("logs", {"name": "worker", "where": "status = 501", "lines": 2})
        )
        assert [line["text"] for line in errors["lines"]] == [
            "level=error job=27 status=501",
            "level=error job=29 status=501",
        ]
