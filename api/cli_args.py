"""The ``lacrimosa`` command line's argparse parser: every verb and option, help, usage errors.

A module of its own so that the common one-shot calls need not import it: ``cli.main`` reads the
simplest forms of ``ps``, ``status``, ``start``/``stop``/``restart`` and ``shutdown`` itself
(``_fast_args``), to the same result, and hands everything else here. argparse and what it loads
(``re``, ``gettext``, ``shutil`` for the help's width, …) are milliseconds of every call.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from ..engine.fastjson import json_text
from ..engine.formation import parse_formation, parse_port
from .version import __version__
from .wire import parse_duration

EXIT_USAGE = 2
T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
    """Usage errors as JSON on stderr when ``--json`` is among the arguments being parsed."""

    _json_errors = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        arg_list = sys.argv[1:] if args is None else list(args)
        self._json_errors = "--json" in arg_list
        return super().parse_known_args(arg_list, namespace)

    def error(self, message: str) -> NoReturn:
        if self._json_errors:
            error = {"error": {"code": "usage", "message": f"{self.prog}: {message}"}}
            self.exit(EXIT_USAGE, json_text(error) + "\n")
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _add_global_options(
    parser: argparse.ArgumentParser, *, after_verb: bool, short_f: bool
) -> None:
    """``--home`` and ``-f/--file``: accepted before the verb and after it.

    After the verb they default to SUPPRESS, so that a verb that does not repeat them keeps what
    was given before it (argparse would otherwise overwrite it with the subparser's default).
    """
    default = argparse.SUPPRESS if after_verb else None
    parser.add_argument(
        "--home",
        metavar="DIR",
        default=default,
        help="the console's state folder (default: $LACRIMOSA_HOME, else "
        ".lacrimosa/ beside the config: -f FILE, or the nearest lacrimosa.toml or Procfile)",
    )
    flags = ("-f", "--file") if short_f else ("--file",)
    parser.add_argument(
        *flags,
        dest="file",
        metavar="FILE",
        default=default,
        help="the lacrimosa.toml or Procfile: its console (state folder beside it)",
    )


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    _add_global_options(common, after_verb=True, short_f=True)
    # logs and events keep -f for --follow (the CLI contract); --file still works after them.
    common_follow = _Parser(add_help=False)
    _add_global_options(common_follow, after_verb=True, short_f=False)
    as_json = _Parser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    # For commands that print what children or datagrams wrote (see engine/terminal_text.py).
    child_text = _Parser(add_help=False)
    shown = child_text.add_mutually_exclusive_group()
    shown.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="keep the colours (SGR codes) of the text shown: auto (the default) keeps them when "
        "stdout is a terminal and NO_COLOR is unset or empty; other control sequences are "
        "always shown as inert text (ESC as ␛)",
    )
    shown.add_argument(
        "--no-color", dest="color", action="store_const", const="never", help="= --color=never"
    )
    shown.add_argument(
        "--raw",
        action="store_true",
        help="write the bytes as the child or sender wrote them, control sequences and all "
        "(for a file; not with --json)",
    )

    parser = _Parser(prog="lacrimosa", description="A terminal-first operations console.")
    parser.add_argument("--version", action="version", version=f"lacrimosa {__version__}")
    _add_global_options(parser, after_verb=False, short_f=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    # What up, check and run add to the config: env files, the base PORT, the formation.
    project = _Parser(add_help=False)
    project.add_argument(
        "-e",
        "--env",
        dest="env_files",
        type=_env_files,
        default=[],
        action="extend",
        metavar="FILE[,FILE]",
        help="env files read after the .env beside the config (repeat or separate with commas)",
    )
    project.add_argument(
        "-p",
        "--port",
        type=_port,
        metavar="N",
        help="the first PORT (default: PORT from the env files or the environment, else 5000)",
    )
    project.add_argument(
        "-m",
        "--formation",
        type=_formation,
        default={},
        metavar="TYPE=N[,TYPE=N]",
        help="how many instances of each type (all=N: of every type)",
    )

    up = commands.add_parser(
        "up", parents=[common, project], help="start the console (TUI or headless)"
    )
    up.add_argument(
        "names",
        nargs="*",
        type=_text,
        metavar="NAME",
        help="start only these (a process, a type, or a glob); the rest are known but stopped",
    )
    up.add_argument(
        "--headless",
        action="store_true",
        help="no TUI: run in the foreground until SIGTERM/SIGINT or `shutdown`",
    )
    output = up.add_argument_group(
        "headless output (stdout: each process's lines and state changes)"
    )
    output.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help="text: `HH:MM:SS name | line` (the default); json: one object per line",
    )
    output.add_argument(
        "--no-prefix",
        action="store_true",
        help="text: the lines bare, without time and name (state changes go to stderr)",
    )
    output.add_argument(
        "--no-timestamps", action="store_true", help="text: no time at the start of each line"
    )
    ending = up.add_mutually_exclusive_group()
    ending.add_argument(
        "--exit-with",
        metavar="NAME",
        type=_text,
        help="when NAME exits, stop everything and exit with its status (for CI and containers)",
    )
    ending.add_argument(
        "--abort-on-exit",
        action="store_true",
        help="when any process exits, stop everything and exit with its status",
    )
    ending.add_argument(
        "--exit-when-done",
        action="store_true",
        help="exit once no process runs or waits to restart, with the worst status",
    )
    up.add_argument(
        "-d",
        "--detach",
        action="store_true",
        help="start the console in the background (its output in .lacrimosa/console.log) and "
        "return once its processes have started, printing them",
    )
    up.add_argument("--json", action="store_true", help="with -d: print what ps --json prints")
    # The console `up -d` starts in the background: writes its pid beside the lock.
    up.add_argument("--detached-child", action="store_true", help=argparse.SUPPRESS)
    up.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve the HTTP API here ([http] bind; loopback unless a key exists)",
    )
    up.add_argument(
        "--udp", metavar="HOST:PORT", help="receive events on this UDP address ([sequencer] udp)"
    )
    tui = commands.add_parser(
        "tui",
        parents=[common, project],
        help="attach a TUI to the console here (start one in the background if none runs, "
        "with these options)",
    )
    tui.add_argument(
        "--url",
        metavar="URL",
        help="attach to the console serving its HTTP API at URL (http://HOST:PORT) instead of "
        "the one here (starts none)",
    )
    tui.add_argument(
        "--key",
        metavar="KEY",
        help="with --url: the API key (default: $LACRIMOSA_KEY; a read key can look, not act)",
    )
    tui.set_defaults(udp=None, http=None, json=False, names=[])

    commands.add_parser("ps", parents=[common, as_json], help="list processes")
    logs = commands.add_parser(
        "logs",
        parents=[common_follow, as_json, child_text],
        help="show a process's log (all processes merged without NAME)",
    )
    logs.add_argument("name", nargs="?", type=_text, metavar="NAME")
    logs.add_argument(
        "-n",
        "--lines",
        type=_non_negative_int,
        default=100,
        metavar="N",
        help="how many of the last lines (default 100)",
    )
    stream = logs.add_mutually_exclusive_group()
    stream.add_argument("--stdout", dest="stream", action="store_const", const="stdout")
    stream.add_argument("--stderr", dest="stream", action="store_const", const="stderr")
    logs.add_argument(
        "--grep",
        type=_text,
        metavar="TEXT",
        help="only lines containing TEXT (case-sensitive, in the bytes as written)",
    )
    logs.add_argument(
        "--since",
        type=_duration,
        metavar="DURATION",
        help="only lines from the last DURATION (30s, 5m, 2h, 1d)",
    )
    logs.add_argument(
        "--where",
        type=_text,
        metavar="EXPR",
        help='only lines matching EXPR, the WHERE part of a query: level = "error" OR '
        "status >= 500 (see `lacrimosa query`)",
    )
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument(
        "-t",
        "--timestamps",
        action="store_true",
        help="text: the time each line was read before it (hh:mm:ss.mmm, local time)",
    )
    events = commands.add_parser(
        "events",
        parents=[common_follow, as_json, child_text],
        help="show the newest events, oldest first",
    )
    events.add_argument(
        "-n",
        "--lines",
        type=_non_negative_int,
        default=20,
        metavar="N",
        help="how many of the newest events (default 20)",
    )
    events.add_argument("--stream", type=_non_negative_int, metavar="ID", help="only this stream")
    events.add_argument("--node", type=_non_negative_int, metavar="ID", help="only this node")
    events.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    query = commands.add_parser(
        "query",
        parents=[common, as_json],
        help="run a query over the logs or events: SELECT … FROM … WHERE … SINCE 5m LIMIT n",
    )
    query.add_argument("query", type=_text, metavar="QUERY")
    query.add_argument(
        "--timeout",
        type=_duration,
        metavar="DURATION",
        help="how long the console may run it (default 10s, at most 60s)",
    )
    for verb in ("start", "stop", "restart"):
        action = commands.add_parser(verb, parents=[common, as_json], help=f"{verb} a process")
        action.add_argument("name", type=_text, metavar="NAME")
    commands.add_parser("status", parents=[common, as_json], help="the console's status")
    wait = commands.add_parser(
        "wait",
        parents=[common, as_json],
        help="wait until processes are ready (or exited, or in a state); exit 0 when they all "
        "are, 1 when one never can be (failed, blocked, stopped), 5 at the timeout",
    )
    wait.add_argument(
        "names",
        nargs="*",
        type=_text,
        metavar="NAME",
        help="processes, types or globs (default: every process that starts with the console)",
    )
    until = wait.add_mutually_exclusive_group()
    until.add_argument(
        "--ready",
        dest="until",
        action="store_const",
        const="ready",
        help="running, with its ready probe passed (the default)",
    )
    until.add_argument(
        "--exited",
        dest="until",
        action="store_const",
        const="exited",
        help="exited (any status), failed or stopped",
    )
    until.add_argument("--state", type=_text, metavar="STATE", help="in this state (see ps)")
    wait.add_argument(
        "--timeout",
        type=_duration,
        default=60.0,
        metavar="DURATION",
        help="give up after this long (default 60s): exit 5",
    )
    why = commands.add_parser(
        "why",
        parents=[common, as_json],
        help="why a process is in its state: last exit, restarts, dependency, probe, stderr",
    )
    why.add_argument("name", type=_text, metavar="NAME")
    completion = commands.add_parser(
        "completion",
        help="print a shell completion script (bash: `source <(lacrimosa completion bash)`)",
    )
    completion.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell")
    commands.add_parser(
        "check",
        parents=[common, project, as_json],
        help="check the config; show the processes, their PORTs and where their variables "
        "come from (no console needed)",
    )
    run = commands.add_parser(
        "run",
        parents=[common, project],
        help="run a process's command (or -- CMD...) in the foreground with the project's "
        "environment, as `honcho run`",
    )
    run.add_argument(
        "argv",
        nargs=argparse.REMAINDER,
        metavar="NAME | -- CMD...",
        help="a process (its command, cwd and environment), or a command after --",
    )
    commands.add_parser(
        "shutdown", parents=[common, as_json], help="stop every process and the console"
    )
    commands.add_parser(
        "mcp",
        parents=[common],
        help="a Model Context Protocol server on stdio, for agents (the console of this project)",
    )
    _add_keys(commands, common, as_json)
    audit = commands.add_parser(
        "audit",
        parents=[common, as_json],
        help="the newest audit records, oldest first (every control action, from every client)",
    )
    audit.add_argument(
        "-n",
        "--lines",
        type=_non_negative_int,
        metavar="N",
        help="how many of the newest records (default 20)",
    )
    audit.add_argument(
        "--since",
        type=_duration,
        metavar="DURATION",
        help="only records from the last DURATION (30s, 5m, 2h, 1d)",
    )
    audit.add_argument(
        "--verify",
        action="store_true",
        help="check every record's hash chain instead: exit 0 when intact, 1 naming each problem",
    )
    return parser


def _add_keys(
    commands: Any, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser
) -> None:
    """``keys create|list|revoke``: API keys for the HTTP API, managed over the owner-only
    socket. ``--json`` goes after the second verb (a subparser's default would overwrite it if
    given before)."""
    parents = [common, as_json]
    keys = commands.add_parser("keys", parents=[common], help="create, list and revoke API keys")
    verbs = keys.add_subparsers(dest="keys_command", metavar="create|list|revoke")
    verbs.required = True
    create = verbs.add_parser(
        "create",
        parents=parents,
        help="a new key, printed once (alone on stdout without --json; only its hash is kept)",
    )
    # Checked by the console (engine/keys.py), the one place the scopes are listed.
    create.add_argument(
        "--scope",
        required=True,
        type=_text,
        metavar="read|write|admin",
        help="what it may do: read, write (also read) or admin (also write, and keys)",
    )
    create.add_argument("--name", type=_text, metavar="NAME", help="a name to tell it by")
    verbs.add_parser(
        "list", parents=parents, help="ids, names, scopes, created and last used (never the key)"
    )
    revoke = verbs.add_parser(
        "revoke", parents=parents, help="revoke a key: it stops working at once"
    )
    revoke.add_argument("id", type=_text, metavar="ID")


def _env_files(text: str) -> list[str]:
    files = [part.strip() for part in text.split(",")]
    if not all(files):
        raise argparse.ArgumentTypeError(f"an empty file name in {text!r}")
    return files


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _text(text: str) -> str:
    """An argument sent to the console: a byte that is not UTF-8 (in argv as a surrogate escape)
    cannot be, so it is a usage error rather than a failure to encode the request."""
    try:
        text.encode()
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("not valid UTF-8 text") from None
    return text


def _usage_errors(parse: Callable[[str], T]) -> Callable[[str], T]:
    """``parse`` as an argparse ``type``: its ValueError's reason becomes the usage error."""

    def read(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return read


_duration = _usage_errors(parse_duration)
_port = _usage_errors(parse_port)
_formation = _usage_errors(parse_formation)
