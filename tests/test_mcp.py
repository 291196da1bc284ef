"""``lacrimosa mcp``: the MCP server on stdio, driven by the official SDK's own client against a
real console (``lacrimosa up --headless``) in a project folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from test_cli import CLI, _no_console_left_behind, cli_env, start_console  # noqa: F401

from lacrimosa.api.client import ControlClient

CONFIG = """
[processes.web]
cmd = "echo serving; echo oops >&2; sleep 300"
stop_timeout = 2
"""


def server(folder: Path) -> StdioServerParameters:
    return StdioServerParameters(command=CLI[0], args=[*CLI[1:], "mcp"], env=cli_env(), cwd=folder)


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    return result.structured_content or json.loads(result.content[0].text)


async def test_an_agent_lists_reads_and_acts_through_the_tools(tmp_path: Path) -> None:
    start_console(tmp_path, CONFIG)
    async with Client(server(tmp_path)) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert {"ps", "status", "logs", "events", "start", "stop", "restart"} <= tools

        ps = structured(await client.call_tool("ps", {}))
        assert [p["name"] for p in ps["processes"]] == ["web"]
        pid = ps["processes"][0]["pid"]

        logs = structured(await client.call_tool("logs", {"name": "web", "stream": "stderr"}))
        assert [line["text"] for line in logs["lines"]] == ["oops"]

        restarted = structured(await client.call_tool("restart", {"name": "web"}))
        assert restarted["outcome"] == "restarted" and restarted["process"]["pid"] != pid

        missing = await client.call_tool("stop", {"name": "nope"})
        assert missing.is_error and "no_such_process" in missing.content[0].text

        bad = await client.call_tool("logs", {"since": "soon"})
        assert bad.is_error and "invalid_request" in bad.content[0].text

        too_many = await client.call_tool("logs", {"lines": 10**9})
        assert too_many.is_error

        events = await client.call_tool("events", {})
        assert events.is_error and "receives no events" in events.content[0].text

    # The agent's actions are in the audit log, as any socket client's, with their outcomes.
    with ControlClient(tmp_path / ".lacrimosa") as control:
        records = control.call("audit", lines=10)["records"]
    assert [(r["action"], r["target"], r["outcome"]) for r in records] == [
        ("restart", "web", "ok"),
        ("stop", "nope", "no_such_process"),
    ]


async def test_with_no_console_running_a_tool_says_so(tmp_path: Path) -> None:
    (tmp_path / "lacrimosa.toml").write_text(CONFIG)
    async with Client(server(tmp_path)) as client:
        result = await client.call_tool("ps", {})
        assert result.is_error and "no_console" in result.content[0].text


PROBED = """
[processes.db]
cmd = "sleep 0.3; echo 'ready to accept'; sleep 300"
ready = { log = "ready to accept" }
stop_timeout = 2

[processes.api]
cmd = "sleep 300"
depends_on = { db = "ready" }
stop_timeout = 2

[processes.broken]
cmd = "echo 'no config' >&2; exit 2"
restart = "never"
"""


async def test_an_agent_waits_for_readiness_and_asks_why(tmp_path: Path) -> None:
    start_console(tmp_path, PROBED)
    async with Client(server(tmp_path)) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert {"wait", "why"} <= tools

        waited = structured(await client.call_tool("wait", {"names": ["api"], "timeout": "20s"}))
        assert waited["outcome"] == "reached"
        assert waited["processes"][0]["ready"] is True

        never = structured(await client.call_tool("wait", {"timeout": "5s"}))
        assert never["outcome"] == "never" and never["blocking"]["name"] == "broken"

        late = structured(
            await client.call_tool(
                "wait", {"names": ["api"], "until": "state", "state": "stopped", "timeout": "200ms"}
            )
        )
        assert late["outcome"] == "timeout"

        why = structured(await client.call_tool("why", {"name": "broken"}))
        assert why["last_exit"] == 2 and why["stderr"] == ["no config"]
        assert why["summary"][0] == "broken failed and is not restarted (restart = never)"

        healthy = structured(await client.call_tool("why", {"name": "db"}))
        assert healthy["healthy"] is True

        missing = await client.call_tool("why", {"name": "nope"})
        assert missing.is_error and "no_such_process" in missing.content[0].text
        bad = await client.call_tool("wait", {"timeout": "soon"})
        assert bad.is_error and "invalid_request" in bad.content[0].text
