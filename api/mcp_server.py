"""``lacrimosa mcp``: a Model Context Protocol server on stdio, for agents.

An agent client runs ``lacrimosa mcp`` (in a project folder, or with ``-f FILE``/``--home DIR``)
as a command and gets one tool per operation of the control protocol: each opens the project's
control socket, sends the same request the CLI would, and returns the reply's JSON as structured
content. A failure the agent can act on (no console running, no such process, bad arguments)
comes back as a tool error with the protocol's code and message, never a traceback.

Built on the official ``mcp`` SDK (its MCPServer), so the protocol itself (handshake, schemas,
framing) is theirs; this module only translates. Imported only by ``lacrimosa mcp``.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from ..engine.dsl.syntax import MAX_QUERY_CHARS
from ..engine.errors import LacrimosaError
from .client import DEFAULT_ACTION_TIMEOUT, ControlClient, action_timeouts
from .version import __version__
from .wire import parse_duration

MAX_LINES = 5000  # log lines in one tool reply: an agent's context is the limit, not the console's
MAX_EVENTS = 5000
CALL_TIMEOUT = 30.0  # seconds for a reading tool's reply
QUERY_TIMEOUT = 10.0  # the console's deadline for a query (api/protocol.py's default)
REPLY_MARGIN = 5.0  # waited past that for the reply

INSTRUCTIONS = """\
Tools for the lacrimosa console of one project: the processes it supervises, their logs, their
events. Start with `ps` (each process's state, pid, restarts, last exit code). `logs` reads a
process's recent output (or every process's, merged) with filters; `query` asks questions of
the logs and events in a small SQL (JSON and logfmt keys are fields: `SELECT count(*) FROM api
WHERE status >= 500 SINCE 1h GROUP BY 1m`); `start`, `stop` and `restart` act on one process
and wait until it is done. `wait` returns once processes are ready (readiness probes,
dependencies), or says which one never will be; `why` explains a process's state (last exit,
restarts, the dependency or probe it waits on, its last stderr lines). Every action is recorded
in the console's audit log as coming from this tool."""


def build_server(home: str) -> MCPServer:
    """The MCP server for the console whose state folder is ``home``."""
    server = MCPServer("lacrimosa", instructions=INSTRUCTIONS, version=__version__)

    def call(op: str, timeout: float = CALL_TIMEOUT, **request: Any) -> dict[str, Any]:
        try:
            with ControlClient(home, timeout=CALL_TIMEOUT) as client:
                result = client.call(op, timeout=timeout, **request)
        except LacrimosaError as exc:
            raise ToolError(f"{exc.code}: {exc.message}") from None
        return result if isinstance(result, dict) else {"result": result}

    def action(verb: str, name: str) -> dict[str, Any]:
        # The console bounds an action (ps says how: the stop timeout and a margin): wait that
        # long, and a little more.
        timeout = action_timeouts(call("ps")).get(name, DEFAULT_ACTION_TIMEOUT) + REPLY_MARGIN
        return call(verb, timeout=timeout, name=name)

    @server.tool()
    def ps() -> dict[str, Any]:
        """Every process: name, state, pid, restarts, last exit code, uptime, lines captured;
        and console-level warnings."""
        return call("ps")

    @server.tool()
    def status() -> dict[str, Any]:
        """The console: uptime, process counts by state, log store, event sequencer, audit."""
        return call("status")

    @server.tool()
    def logs(
        name: Annotated[str | None, Field(description="a process; omit for all, merged")] = None,
        lines: Annotated[int, Field(ge=0, le=MAX_LINES, description="newest lines")] = 100,
        stream: Annotated[
            str | None, Field(description="stdout, stderr or system; omit for all")
        ] = None,
        grep: Annotated[str | None, Field(description="only lines containing this")] = None,
        since: Annotated[str | None, Field(description="only this recent, e.g. 30s, 5m")] = None,
        where: Annotated[
            str | None,
            Field(description='only lines matching this WHERE expression: level = "error"'),
        ] = None,
    ) -> dict[str, Any]:
        """The newest log lines, oldest first: each with id, process, stream, time and text."""
        request: dict[str, Any] = {"name": name, "lines": lines}
        if stream is not None:
            request["stream"] = stream
        if grep:
            request["grep"] = grep
        if where:
            request["where"] = where
        if since:
            try:
                request["since"] = parse_duration(since)
            except ValueError as exc:
                raise ToolError(f"invalid_request: since: {exc}") from None
        return call("logs", **request)

    @server.tool()
    def events(
        lines: Annotated[int, Field(ge=0, le=MAX_EVENTS, description="newest events")] = 20,
        stream: Annotated[int | None, Field(ge=0, description="only this stream id")] = None,
        node: Annotated[int | None, Field(ge=0, description="only this node id")] = None,
    ) -> dict[str, Any]:
        """The newest events of the console's sequencer, in lamport order."""
        request = {"lines": lines, "stream": stream, "node": node}
        return call("events", **{k: v for k, v in request.items() if v is not None})

    @server.tool()
    def query(
        query: Annotated[
            str,
            Field(
                max_length=MAX_QUERY_CHARS,
                description="SELECT columns FROM sources [WHERE ...] [SINCE 5m] [UNTIL ...] "
                "[GROUP BY 1m|field] [ORDER BY field [DESC]] [LIMIT n] [OFFSET n]; sources: "
                "process names, api.stderr, * or events; fields: line ts stream process id and "
                "the keys of JSON or logfmt lines (a.b nested); operators: = != > >= < <= "
                "CONTAINS STARTSWITH MATCHES IN EXISTS AND OR NOT; count(*) min max avg sum",
            ),
        ],
    ) -> dict[str, Any]:
        """Run a query over the logs or the events: {columns, rows, scanned, elapsed_ms,
        truncated}. A query that does not parse says where (column) and what was expected."""
        return call("query", timeout=QUERY_TIMEOUT + REPLY_MARGIN, query=query)

    @server.tool()
    def start(name: str) -> dict[str, Any]:
        """Start a process that is stopped (or failed); returns once it has started."""
        return action("start", name)

    @server.tool()
    def stop(name: str) -> dict[str, Any]:
        """Stop a process (SIGTERM, then SIGKILL after its stop timeout); returns once it is
        stopped."""
        return action("stop", name)

    @server.tool()
    def restart(name: str) -> dict[str, Any]:
        """Stop a process and start it again; returns once it has started."""
        return action("restart", name)

    @server.tool()
    def wait(
        names: Annotated[
            list[str] | None,
            Field(description="processes, types or globs; omit for every autostart process"),
        ] = None,
        until: Annotated[
            str, Field(description="ready (the default), exited, or state (with `state`)")
        ] = "ready",
        state: Annotated[
            str | None, Field(description="with until=state: e.g. running, stopped")
        ] = None,
        timeout: Annotated[str, Field(description="give up after, e.g. 30s, 2m")] = "60s",
    ) -> dict[str, Any]:
        """Wait until every named process is ready (or exited, or in a state). `outcome` is
        `reached`, `never` (one failed, is blocked or stopped: see `blocking`, then `why`) or
        `timeout`. The console waits on its own state changes; this returns as soon as it
        knows."""
        try:
            seconds = parse_duration(timeout)
        except ValueError as exc:
            raise ToolError(f"invalid_request: timeout: {exc}") from None
        request: dict[str, Any] = {"until": until, "within": seconds}
        if names:
            request["names"] = names
        if state is not None:
            request["state"] = state
        return call("wait", timeout=seconds + REPLY_MARGIN, **request)

    @server.tool()
    def why(name: str) -> dict[str, Any]:
        """Why a process is in its state: `summary` (a few lines: last exit with its code or
        signal, how long it ran, restarts and the next, the dependency it waits on, the failing
        probe and its last error), `stderr` (its last lines) and the same as fields."""
        return call("why", name=name)

    return server


def run_mcp(home: str) -> int:
    """Serve on stdio until the client hangs up."""
    build_server(home).run("stdio")
    return 0
