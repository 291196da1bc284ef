"""The ``lacrimosa`` command line.

argparse rather than typer: a one-shot call (``ps``, ``logs``, ``restart``) is dominated by
interpreter start and imports, and typer alone costs more than the whole 80 ms budget here. This
module and what it imports at the top stay standard-library-light; ``up`` imports the engine and
the TUI only when it runs. Lighter still, a one-shot ``ps --json`` loads none of ``argparse``,
``json``, ``re``, ``enum``, ``socket``, ``pathlib`` or ``typing``: the simplest forms of the common
verbs are read here (``_fast_args``, to what argparse would give; anything else, help and every
usage error go to the parser in cli_args.py), JSON goes through engine/fastjson.py, the client
uses ``_socket``, and paths are ``str``. tests/test_imports.py keeps it so.

Exit codes: 0 ok, 1 failed, 2 usage error, 3 no such process, 4 no console running here (or the
connection to it was lost: closed or reset), 5 timed out (the console did not answer within the
deadline), 6 the console is busy or still starting (try again).

What a child or a datagram wrote is printed through ``terminal_safe`` (colours kept or stripped,
every other control sequence shown inert; ``--raw`` opts out) and every JSON document through
``json_text`` (every control character escaped): see engine/terminal_text.py.
"""

from __future__ import annotations

import os
import sys

from ..engine.errors import InvalidRequest, LacrimosaError, NoConsole
from ..engine.fastjson import json_text
from ..engine.humanize import (
    describe_exit,
    format_cpu,
    format_duration,
    format_memory,
    local_clock,
    local_time,
)
from ..engine.paths import CONFIG_NAMES, HOME_DIR_NAME, find_config_file

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    import argparse
    from collections.abc import Container, Iterable, Sequence
    from typing import Any

    from ..engine.terminal_text import TextMode

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_CONSOLE, EXIT_TIMED_OUT = 0, 1, 2, 4, 5
QUICK_TIMEOUT = 30.0  # seconds: ps, status, logs, and the first reply of a follow
# start/stop/restart wait for the console's own bound on the action (``action_timeout`` in ps:
# the process's stop_timeout plus a margin) and this much more; shutdown waits for the longest.
REPLY_MARGIN = 5.0


def build_parser() -> argparse.ArgumentParser:
    """The whole command line's parser (cli_args.py)."""
    from .cli_args import build_parser

    return build_parser()


class _Args:
    """What ``_fast_args`` read: the attributes argparse's Namespace would have."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


# Verbs ``_fast_args`` reads, and whether they take a NAME.
_FAST_VERBS = {
    "ps": False,
    "status": False,
    "shutdown": False,
    "start": True,
    "stop": True,
    "restart": True,
    "why": True,
}
_FAST_OPTIONS = {"--home": "home", "-f": "file", "--file": "file"}  # each takes a value


def _fast_args(argv: list[str]) -> argparse.Namespace | None:
    """``argv`` read as ``build_parser().parse_args`` would, when it is one of the simplest forms
    of a common verb: ``[--home DIR] [-f FILE] VERB [NAME] [--json] [--home DIR] [-f FILE]``, each
    token exactly so (``--home=DIR`` too). None for anything else, which goes to argparse: help,
    ``--version``, abbreviations, values that start with ``-`` or are empty, every usage error."""
    values: dict[str, Any] = {"home": None, "file": None}
    verb: str | None = None
    name: str | None = None
    as_json = False
    tokens = iter(argv)
    for token in tokens:
        if token.startswith("-"):
            option, equals, value = token.partition("=")
            if option == "--json" and verb is not None and not equals:
                as_json = True
                continue
            dest = _FAST_OPTIONS.get(option)
            if dest is None or (equals and option == "-f"):
                return None
            if not equals:
                value = next(tokens, "")
            if not value or value.startswith("-"):
                return None
            values[dest] = value
        elif verb is None:
            if token not in _FAST_VERBS:
                return None
            verb = token
        elif _FAST_VERBS[verb] and name is None and token:
            try:
                token.encode()  # as cli_args._text checks a NAME
            except UnicodeEncodeError:
                return None
            name = token
        else:
            return None
    if verb is None or (_FAST_VERBS[verb] and name is None):
        return None
    values["command"] = verb
    values["json"] = as_json
    if name is not None:
        values["name"] = name
    return _Args(**values)  # type: ignore[return-value]  # what is read of a Namespace


def main(argv: list[str] | None = None) -> int:
    args = _fast_args(sys.argv[1:] if argv is None else argv)
    if args is None:
        parser = build_parser()
        args = parser.parse_args(argv)
        if getattr(args, "raw", False) and args.json:
            parser.error("--raw cannot be used with --json (JSON escapes every control character)")
        if getattr(args, "timestamps", False) and (args.raw or args.json):
            parser.error("--timestamps is for text output (JSON lines carry their time)")
    try:
        if args.command == "up" and args.detach:
            from .background import report_started, start_in_background

            given = sys.argv[1:] if argv is None else argv
            # The console in the background: the same `up`, headless (see background.py).
            up = [token for token in given if token not in ("-d", "--detach", "--json")]
            report_started(args, start_in_background(args, up))
            return EXIT_OK
        if args.command == "tui":
            from .attach import run_attached

            given = sys.argv[1:] if argv is None else argv
            up = [("up" if token == "tui" else token) for token in given]  # if none runs
            # Over HTTP (--url) the console is elsewhere: no project folder is needed here.
            return run_attached(args, None if args.url else _console_home(args)[0], up)
        if args.command == "up":
            lock_fd = _lock_early(args)
            from .runner import run_up  # heavy: the engine, and the TUI unless headless

            return run_up(args, lock_fd)
        if args.command == "completion":
            from .completion import completion_script  # shtab: only for this verb

            sys.stdout.write(completion_script(args.shell))
            return EXIT_OK
        if args.command == "mcp":
            from .mcp_server import run_mcp  # heavy: the MCP SDK

            return run_mcp(_console_home(args)[0])
        if args.command in ("check", "run"):  # no console: the project's files only
            from .project import run_check, run_command

            return run_check(args) if args.command == "check" else run_command(args)
        return _one_shot(args)
    except LacrimosaError as exc:
        details = getattr(exc, "details", {})
        if exc.code == "query_syntax" and isinstance(details.get("position"), int):
            return _syntax_failure(args, exc.message, details)
        return _fail(args, exc.code, exc.message, exc.exit_code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`lacrimosa logs x | head`): not an error of ours. (A broken
        # connection to the console is raised by the client as ConsoleLost, handled above.)
        sys.stderr.close()
        return EXIT_OK
    except OSError as exc:
        if args.command == "up":
            return _fail(args, "failed", str(exc), EXIT_FAILED)
        return _fail(args, "no_console", f"lost the console: {exc}", EXIT_NO_CONSOLE)


def _lock_early(args: argparse.Namespace) -> int | None:
    """``up``: the console lock of its state folder, taken before the engine is imported, so that
    a client run at the same moment sees a console starting rather than none (a stale socket
    refuses connections until the new console binds it). None when the config is not found
    here (``run_up`` says why) or the state folder does not exist yet."""
    from pathlib import Path

    from ..engine.paths import find_config, lock_console, resolve_home

    config = Path(args.file) if args.file else find_config()
    if config is None or not config.is_file():
        return None
    home = resolve_home(args.home, config)
    # Only a state folder already there (a console ran here, maybe leaving a stale socket): a
    # bad config must leave nothing behind, and with no folder there is no socket to mislead.
    if home is None or not home.is_dir():
        return None
    return lock_console(home, create=False)


def _fail(args: argparse.Namespace, code: str, message: str, exit_code: int) -> int:
    if getattr(args, "json", False):
        print(json_text({"error": {"code": code, "message": message}}), file=sys.stderr)
    else:
        print(f"lacrimosa: {message}", file=sys.stderr)
    return exit_code


def _syntax_failure(args: argparse.Namespace, message: str, details: dict[str, Any]) -> int:
    """A query (or ``--where``) the console could not parse: the text with a caret under the
    column that was wrong (with ``--json``: the error object, position and all). Exit 2."""
    text = args.query if args.command == "query" else args.where
    position = details["position"]
    if args.json:
        error = {key: details.get(key) for key in ("code", "message", "position", "expected")}
        print(json_text({"error": error}), file=sys.stderr)
        return EXIT_USAGE
    from ..engine.terminal_text import field_safe

    # The line of the query holding the position, each character shown as one (a control
    # character as its symbol), so the caret lands under it.
    begin = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    line = text[begin : end if end >= 0 else len(text)]
    shown = "".join(field_safe(c)[:1] or "?" for c in line)
    caret = " " * (position - begin) + "^"
    print(f"lacrimosa: {message}\n  {shown}\n  {caret}", file=sys.stderr)
    return EXIT_USAGE


def _one_shot(args: argparse.Namespace) -> int:
    from .client import DEFAULT_ACTION_TIMEOUT, ConsoleLost, ControlClient

    home, origin = _console_home(args)
    try:
        client = ControlClient(home, timeout=QUICK_TIMEOUT)
    except ConsoleLost:
        raise
    except NoConsole as exc:
        raise NoConsole(_no_console_message(home, origin, exc.message)) from None
    with client:
        if args.command == "ps":
            result = client.call("ps")
            _print(args, result, _ps_text(result["processes"]))
            if not args.json:  # in JSON the "warnings" field says it
                for warning in result.get("warnings", []):
                    print(f"lacrimosa: warning: {warning}", file=sys.stderr)
        elif args.command == "status":
            result = client.call("status")
            _print(args, result, _status_text(result))
        elif args.command in ("start", "stop", "restart"):
            timeouts = _action_timeouts(client)
            # A type, all or a glob: its processes are acted on together, so the longest.
            longest = max(timeouts.values(), default=DEFAULT_ACTION_TIMEOUT)
            deadline = timeouts.get(args.name, longest) + REPLY_MARGIN
            result = client.call(args.command, timeout=deadline, name=args.name)
            _print(args, result, _action_text(result))
        elif args.command == "shutdown":
            longest = max(_action_timeouts(client).values(), default=DEFAULT_ACTION_TIMEOUT)
            result = client.call("shutdown")
            # Returns once every process has stopped and the console is gone.
            client.wait_closed(timeout=longest + REPLY_MARGIN)
            _print(args, result, "console stopped")
        elif args.command == "logs":
            _logs(args, client)
        elif args.command == "events":
            _events(args, client)
        elif args.command == "query":
            _query(args, client)
        elif args.command == "wait":
            return _wait(args, client)
        elif args.command == "why":
            result = client.call("why", name=args.name)
            _print(args, result, _why_text(result))
        elif args.command == "keys":
            _keys(args, client)
        elif args.command == "audit":
            return _audit(args, client)
    return EXIT_OK


# ``wait``'s outcome → exit status: there; never can be (failed, blocked, stopped); timed out.
_WAIT_EXIT = {"reached": EXIT_OK, "never": EXIT_FAILED, "timeout": EXIT_TIMED_OUT}


def _wait(args: argparse.Namespace, client: Any) -> int:
    """The console waits (woken by state changes, not polled); this waits for its reply."""
    until = "state" if args.state else (args.until or "ready")
    request: dict[str, Any] = {"until": until, "within": args.timeout}
    if args.names:
        request["names"] = args.names
    if args.state:
        request["state"] = args.state
    result = client.call("wait", timeout=args.timeout + REPLY_MARGIN, **request)
    code = _WAIT_EXIT.get(result["outcome"], EXIT_FAILED)
    rows = [f"{p['name']}: {_waited_text(p)}" for p in result["processes"]]
    _print(args, result, "\n".join(rows) if rows else "(no processes)")
    blocking = result.get("blocking")
    if code != EXIT_OK and not args.json and blocking is not None:
        wanted = result["until"]
        if result["outcome"] == "timeout":
            what = f"timed out after {format_duration(args.timeout)}"
        else:
            what = "cannot get there"
        print(
            f"lacrimosa: {what}: {blocking['name']} is {_waited_text(blocking)}, "
            f"not {wanted} (see `lacrimosa why {blocking['name']}`)",
            file=sys.stderr,
        )
    return code


def _waited_text(process: dict[str, Any]) -> str:
    """``running, ready``, ``waiting (db: ready)``, ``failed (exit 1)``."""
    state = process["state"]
    if process.get("reason"):
        return f"{state} ({process['reason']})"
    if state == "running":
        return "running, ready" if process.get("ready") else "running, not ready"
    if process.get("exit_code") is not None:
        return f"{state} (exit {describe_exit(process['exit_code'])})"
    return str(state)


def _why_text(result: dict[str, Any]) -> str:
    """``why``: its summary, then its last stderr lines (the child's text, made safe)."""
    from ..engine.terminal_text import terminal_safe

    # A probe's last error may quote what an exec probe wrote: made safe as the stderr lines.
    lines = [terminal_safe(line, "plain") for line in result["summary"]]
    if result["stderr"]:
        lines.append("last stderr lines:")
        lines += [f"  {terminal_safe(text, 'plain')}" for text in result["stderr"]]
    return "\n".join(lines)


def _action_text(result: dict[str, Any]) -> str:
    """One line per process acted on: ``web.2: restarted, now running (pid 123)``."""
    if "results" not in result:  # a console from before targets: one process
        result = {"results": [{"name": result["name"], **result}]}
    rows = []
    for each in result["results"]:
        proc = each["process"]
        pid = f" (pid {proc['pid']})" if proc["pid"] else ""
        rows.append(f"{each['name']}: {each['outcome']}, now {proc['state']}{pid}")
    return "\n".join(rows)


def _action_timeouts(client: Any) -> dict[str, float]:
    """Per process, how long the console lets an action on it take (from ``ps``)."""
    from .client import action_timeouts

    return action_timeouts(client.call("ps"))


def _console_home(args: argparse.Namespace) -> tuple[str, str]:
    """The state folder of the console a one-shot call is for, and what chose it.

    ``--home``, else ``$LACRIMOSA_HOME``, else ``.lacrimosa/`` beside the config: ``-f FILE``, or
    the nearest lacrimosa.toml or Procfile walking up (the same order as ``up``).
    """
    # Paths as str, resolved as Path.resolve does (os.path.realpath): no pathlib on this path.
    if args.home:
        return os.path.realpath(args.home), "from --home"
    if os.environ.get("LACRIMOSA_HOME"):
        return os.path.realpath(os.environ["LACRIMOSA_HOME"]), "from $LACRIMOSA_HOME"
    if args.file:
        if not os.path.isfile(args.file):
            raise InvalidRequest(f"no such config file: {args.file}")
        folder = os.path.dirname(os.path.realpath(args.file))
        return os.path.join(folder, HOME_DIR_NAME), "from --file"
    found = find_config_file()
    if found is None:
        raise NoConsole(_no_config_message())
    return os.path.join(os.path.dirname(found), HOME_DIR_NAME), f"found {_shown(found)}"


def _shown(path: str, folder: bool = False) -> str:
    """``path`` (absolute, normalized) relative to the current folder when it is inside it, else
    absolute."""
    cwd = os.getcwd()
    if path == cwd:
        return "./" if folder else "."
    inside = cwd if cwd.endswith("/") else cwd + "/"
    text = path.removeprefix(inside)
    return text + "/" if folder else text


def _no_console_message(home: str, origin: str, detail: str) -> str:
    if os.path.basename(home) == HOME_DIR_NAME:
        parent = os.path.dirname(home)
        where = f"for {_shown(parent, folder=True)} (state folder {_shown(home)}, {origin})"
    else:
        where = f"with state folder {_shown(home)} ({origin})"
    message = f"no console running {where}"
    if not detail.startswith("no console running"):
        message += f": {detail}"  # the socket exists but cannot be reached: say why
    return message


def _no_config_message() -> str:
    from pathlib import Path  # a failure's message: its glob is worth the import here

    here = Path.cwd()
    message = (
        f"no console here: no lacrimosa.toml or Procfile in {here} or a parent folder; "
        "pass -f FILE (the console of that config) or --home DIR (its state folder)"
    )
    nearby = sorted(
        _shown(str(path))
        for name in CONFIG_NAMES
        for path in here.glob(f"*/{name}")
        if path.is_file()
    )
    if nearby:
        message += f", e.g. -f {nearby[0]}"
    return message


def _print(args: argparse.Namespace, result: Any, text: str) -> None:
    """``result`` as one JSON document with ``--json``, else ``text`` (safe: made so by the caller
    where it holds a child's or a datagram's text)."""
    if args.json:
        sys.stdout.write(json_text(result, indent=2) + "\n")
    else:
        sys.stdout.write(text + "\n")


def _text_mode(args: argparse.Namespace) -> TextMode:
    """How a child's or a datagram's text is written: ``--raw``, else colours kept or stripped."""
    if args.raw:
        return "raw"
    color = args.color
    if color == "auto":
        keep = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        return "color" if keep else "plain"
    return "color" if color == "always" else "plain"


def _logs(args: argparse.Namespace, client: Any) -> None:
    request: dict[str, Any] = {"name": args.name, "lines": args.lines}
    if args.stream:
        request["stream"] = args.stream
    if args.grep:
        request["grep"] = args.grep
    if args.since is not None:
        request["since"] = args.since
    if args.where is not None:
        request["where"] = args.where  # parsed by the console (the query language is there)
    raw = _RawLines(args.name) if args.raw else None
    if raw is not None:
        request["raw"] = True  # each line's bytes, not text with invalid UTF-8 replaced
    if not args.follow and raw is None and args.where is None:
        # With timestamps, each line's time is needed: it comes with the JSON lines.
        as_jsonl = args.json or args.timestamps
        _write_frames(
            args, client.frames("logs", format="jsonl" if as_jsonl else "text", **request)
        )
        return
    if not args.follow:
        result = client.call("logs", **request)
        _write_lines(args, result["lines"], raw)
        _warn_lapped(args, result)
        return
    for batch in client.stream("logs", follow=True, **request):
        _write_lines(args, batch["lines"], raw)
        sys.stdout.flush()


def _events(args: argparse.Namespace, client: Any) -> None:
    request = {"lines": args.lines, "stream": args.stream, "node": args.node}
    request = {key: value for key, value in request.items() if value is not None}
    mode = _text_mode(args)
    if not args.follow:
        result = client.call("events", **request)
        if mode == "raw":
            _write_raw_events(result["events"], result.get("lapped", 0))
            return
        text = _events_text(result["events"], mode)
        if result.get("lapped") and not args.json:  # read while the journal lapped the reply
            text = _lapped_text(result["lapped"]) + ("\n" + text if text else "")
        _print(args, result, text)
        return
    for batch in client.stream("events", follow=True, **request):
        if args.json:  # following: one object per line, like logs
            if batch.get("lapped"):
                sys.stdout.write(json_text({"lapped": batch["lapped"]}) + "\n")
            sys.stdout.write("".join(json_text(e) + "\n" for e in batch["events"]))
        elif mode == "raw":
            _write_raw_events(batch["events"], batch.get("lapped", 0))
        else:
            if batch.get("lapped"):
                sys.stdout.write(_lapped_text(batch["lapped"]) + "\n")
            if batch["events"]:
                sys.stdout.write(_events_text(batch["events"], mode) + "\n")
        sys.stdout.flush()


QUERY_TIMEOUT = 10.0  # the console's default deadline for a query (api/protocol.py)


def _query(args: argparse.Namespace, client: Any) -> None:
    """``query``: the console parses and runs it; a table that fits the terminal, or the reply
    as one JSON document (columns, rows, scanned, elapsed_ms, truncated)."""
    request: dict[str, Any] = {"query": args.query}
    if args.timeout is not None:
        request["deadline"] = args.timeout
    deadline = (args.timeout or QUERY_TIMEOUT) + REPLY_MARGIN
    result = client.call("query", timeout=deadline, **request)
    if args.json:
        _print(args, result, "")
        return
    sys.stdout.write(_query_text(result, _terminal_width()) + "\n")


def _terminal_width() -> int | None:
    """The terminal's width when stdout is one (or $COLUMNS says), else None: a table piped
    elsewhere is not cut."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        return None


def _cell_text(value: Any) -> str:
    from ..engine.terminal_text import field_safe

    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e15 else repr(value)
    if isinstance(value, (dict, list)):
        return field_safe(json_text(value))
    return field_safe(str(value))


def _query_text(result: dict[str, Any], width: int | None) -> str:
    """The rows as an aligned table (numbers right-aligned) within ``width`` columns: the
    widest columns are narrowed first, their cells cut with "…"; then a summary line."""
    columns: list[str] = result["columns"]
    rows = [[_cell_text(v) for v in row] for row in result["rows"]]
    numeric = {
        i
        for i in range(len(columns))
        if rows
        and all(
            isinstance(row[i], (int, float)) and not isinstance(row[i], bool)
            for row in result["rows"]
            if row[i] is not None
        )
    }
    table = [[_cell_text(c) for c in columns], *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    if width is not None:
        room = width - 2 * (len(columns) - 1)
        while sum(widths) > room and max(widths) > 4:
            widest = widths.index(max(widths))
            widths[widest] -= max(1, min(sum(widths) - room, widths[widest] - 4))
    lines = []
    for row in table:
        cells = []
        for i, (cell, w) in enumerate(zip(row, widths, strict=True)):
            if len(cell) > w:
                cell = cell[: w - 1] + "…"
            cells.append(cell.rjust(w) if i in numeric and row is not table[0] else cell.ljust(w))
        lines.append("  ".join(cells).rstrip())
    count = len(rows)
    summary = f"({count} row{'s' if count != 1 else ''}; {result['scanned']:,} scanned in "
    summary += f"{result['elapsed_ms']:.1f} ms"
    if result.get("truncated"):
        summary += "; truncated: more rows matched than a reply holds, add a LIMIT"
    return "\n".join([*lines, summary + ")"])


def _lapped_text(lapped: int) -> str:
    return f"({lapped} events overwritten before they were read)"


def _merged(asked: str | None, process: str) -> bool:
    """Whether a line of ``process`` is shown with a ``name | `` prefix: when it is not the one
    process asked for (no name, a type of several instances, ``all``, a glob)."""
    return asked is None or process != asked


def _write_lines(
    args: argparse.Namespace, lines: Iterable[dict[str, Any]], raw: _RawLines | None = None
) -> None:
    out = sys.stdout
    if args.json:
        out.write("".join(json_text(line) + "\n" for line in lines))
        return
    if raw is not None:
        raw.write(lines)
        return
    from ..engine.terminal_text import terminal_safe

    mode = _text_mode(args)
    # Made safe one line at a time: a line holds no newline (the store splits on them), so the
    # rules per line (a trailing carriage return dropped) hold; the ``name | `` prefix is ours,
    # and so is the time before it (``--timestamps``).
    timestamps = getattr(args, "timestamps", False)
    out.write(
        "".join(
            (local_clock(line["time"]) + " " if timestamps else "")
            + (f"{line['process']} | " if _merged(args.name, line["process"]) else "")
            + terminal_safe(line["text"], mode)
            + "\n"
            for line in lines
        )
    )


def _write_frames(args: argparse.Namespace, frames: Iterable[tuple[dict[str, Any], bytes]]) -> None:
    """A ``logs`` reply in frames (see wire.py): whole batches of lines written at once, the
    same output as ``_write_lines`` gives for the same lines. ``--json``: the console sent each
    line as ``json_text`` writes it. Text: decoded as a whole (a newline ends any bad UTF-8
    sequence, so that is decoding line by line) and made safe as a whole when no line needs work
    (``terminal_safe`` then hands back its argument), else line by line."""
    from ..engine.terminal_text import terminal_safe

    out = sys.stdout
    mode = _text_mode(args)
    for header, payload in frames:
        if "lines" in header:  # a console that does not send frames
            _write_lines(args, header["lines"])
            continue
        if "next_id" in header:  # the last reply
            _warn_lapped(args, header)
        if not payload:
            continue
        if not args.json and args.timestamps:  # JSON lines asked for their times: as text
            from ..engine.fastjson import loads

            _write_lines(args, [loads(line) for line in payload.splitlines()])
            continue
        text = payload.decode() if args.json else payload.decode("utf-8", "replace")
        if not args.json:
            if terminal_safe(text, mode) is not text:
                text = "".join(terminal_safe(line, mode) + "\n" for line in text.split("\n")[:-1])
            if _merged(args.name, header["process"]):
                prefix = f"{header['process']} | "
                text = prefix + text[:-1].replace("\n", "\n" + prefix) + "\n"
        out.write(text)


def _warn_lapped(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """A ``logs`` reply read more slowly than the store evicted the lines it was to send says
    how many it left out (``lapped``): said on stderr (as JSON with ``--json``); not a failure."""
    lapped = result.get("lapped")
    if not lapped:
        return
    message = (
        f"{lapped} lines were evicted from the log store before they were read "
        "(the log was written faster than this read it)"
    )
    sys.stdout.flush()
    if args.json:
        warning = {"warning": {"code": "lapped", "lapped": lapped, "message": message}}
        print(json_text(warning), file=sys.stderr)
    else:
        print(f"lacrimosa: warning: {message}", file=sys.stderr)


def _line_bytes(line: dict[str, Any]) -> bytes:
    """A line's bytes from a ``raw`` reply: ``"b64"`` when they are not UTF-8, else ``"text"``."""
    if "b64" in line:
        import base64  # only --raw needs it

        return base64.b64decode(line["b64"])
    text: str = line["text"]
    return text.encode()


class _RawLines:
    """``logs --raw``: each line's bytes as the child wrote them, to stdout's byte stream.

    A piece the child ended without a newline (``continued``) goes on with the next piece of the
    same process and stream, as written; anything else after it starts a line of its own. Kept
    across the batches of a follow. The merged view's ``name | `` prefix is ours.
    """

    def __init__(self, asked: str | None) -> None:
        self.asked = asked  # the NAME given to logs, if any
        self.open: tuple[str, str] | None = None  # the piece being continued: process, stream

    def write(self, lines: Iterable[dict[str, Any]]) -> None:
        out = bytearray()
        for line in lines:
            key = (line["process"], line["stream"])
            if self.open is not None and self.open != key:
                out += b"\n"
                self.open = None
            if self.open is None and _merged(self.asked, line["process"]):
                out += f"{line['process']} | ".encode()
            out += _line_bytes(line)
            if line.get("continued"):
                self.open = key
            else:
                out += b"\n"
        sys.stdout.flush()  # whatever went through the text layer first
        sys.stdout.buffer.write(out)


def _keys(args: argparse.Namespace, client: Any) -> None:
    """``keys create|list|revoke``: over the owner-only socket, so only the console's user."""
    if args.keys_command == "create":
        result = client.call("key_create", scope=args.scope, name=args.name)
        if args.json:
            created = ("id", "key", "scopes", "name", "created")
            _print(args, {field: result[field] for field in created}, "")
            return
        # The key alone on stdout, so that KEY=$(lacrimosa keys create ...) works; a word on a
        # terminal's stderr that it is not shown again.
        sys.stdout.write(result["key"] + "\n")
        if sys.stderr.isatty():
            print(
                f"lacrimosa: key {result['id']} ({_scope(result)}) created; it is shown only "
                "this once, only its hash is kept",
                file=sys.stderr,
            )
    elif args.keys_command == "list":
        result = client.call("key_list")
        _print(args, result, _keys_text(result["keys"]))
    else:
        result = client.call("key_revoke", id=args.id)
        _print(args, result, f"key {_safe(result['id'])} ({_safe(result['name'])}) revoked")


def _scope(key: dict[str, Any]) -> str:
    """A key's highest scope (each implies the ones before it)."""
    scopes: list[str] = key["scopes"]
    return scopes[-1] if scopes else ""


def _safe(value: Any) -> str:
    """A field someone chose (a key's name, a process name asked for): every control visible."""
    from ..engine.terminal_text import field_safe

    return field_safe(str(value))


def _table(rows: Sequence[Sequence[str]], right: Container[int] = ()) -> str:
    """Rows of cells, each column as wide as its widest cell, two spaces apart; the columns in
    ``right`` (numbers) aligned right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    )


def _keys_text(keys: list[dict[str, Any]]) -> str:
    if not keys:
        return "no keys (lacrimosa keys create --scope read|write|admin makes one)"
    rows = [("ID", "NAME", "SCOPE", "CREATED", "LAST USED")]
    for key in keys:
        used = key.get("last_used")
        rows.append(
            (
                _safe(key["id"]),
                _safe(key["name"]),
                _scope(key),
                local_time(key["created"]),
                local_time(used) if used else "never",
            )
        )
    return _table(rows)


def _audit(args: argparse.Namespace, client: Any) -> int:
    """``audit``: the newest records; ``audit --verify``: the chain checked, exit 1 if broken."""
    if args.verify:
        if args.lines is not None or args.since is not None:
            raise InvalidRequest("--verify checks the whole log: no --lines or --since with it")
        result = client.call("audit_verify")
        problems = result["problems"]
        text = f"audit log intact: {result['records']} records"
        if problems:
            text = (
                f"audit log damaged: {_count(problems, 'problem')} in {result['records']} records"
            )
            text += "".join(f"\n  {_safe(problem)}" for problem in problems)
        _print(args, result, text)
        if not problems:
            return EXIT_OK
        message = f"the audit log failed verification ({_count(problems, 'problem')})"
        return _fail(args, "failed", message, EXIT_FAILED)
    request: dict[str, Any] = {}
    if args.lines is not None:
        request["lines"] = args.lines
    if args.since is not None:
        request["since"] = args.since
    result = client.call("audit", **request)
    _print(args, result, _audit_text(result["records"]))
    return EXIT_OK


def _count(items: list[Any], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _audit_text(records: list[dict[str, Any]]) -> str:
    if not records:
        return "no audit records"
    from ..engine.audit_text import AUDIT_COLUMNS, record_cells

    return _table([AUDIT_COLUMNS, *(record_cells(record) for record in records)])


# CPU%, RSS, READY and HEALTH last: the columns before them kept their places as they came.
_PS_COLUMNS = (
    *("NAME", "STATE", "PID", "UPTIME", "RESTARTS", "EXIT", "OUT", "ERR", "LINES/S"),
    *("CPU%", "RSS", "READY", "HEALTH"),
)


def _ps_text(processes: list[dict[str, Any]]) -> str:
    rows = [_PS_COLUMNS]
    for p in processes:
        state = p["state"]
        if p.get("restart_in") is not None:
            state += f" ({p['restart_in']:.1f}s)"
        if p.get("reason"):  # waiting (db: ready), blocked (migrate failed ...)
            state += f" ({p['reason']})"
        ready = ("yes" if p.get("ready") else "no") if p["state"] == "running" else ""
        rows.append(
            (
                p["name"],
                state,
                str(p["pid"] or ""),
                format_duration(p["uptime"]),
                str(p["restarts"]),
                describe_exit(p["exit_code"]),
                str(p["stdout_lines"]),
                str(p["stderr_lines"]),
                f"{p['lines_per_second']:.1f}",
                format_cpu(p.get("cpu_percent")),
                format_memory(p.get("rss_bytes")),
                ready,
                p.get("health") or "",
            )
        )
    return _table(rows, right={2, 4, 6, 7, 8, 9, 10})


def _status_text(status: dict[str, Any]) -> str:
    states = ", ".join(f"{n} {s}" for s, n in sorted(status["states"].items()))
    store = status["log_store"]
    caches = store.get("cache_bytes", 0)
    retired = store.get("retired_bytes", 0)
    lines = [
        f"console   pid {status['pid']}, up {format_duration(status['uptime'])}",
        f"config    {status['config']}",
        f"processes {status['processes']} ({states})",
        "guardian  {state}, pid {pid}, restarts {restarts}".format_map(status["guardian"]),
        f"log store {(store['bytes'] + caches) / 2**20:.1f} MiB of "
        f"{store['budget_bytes'] / 2**20:.0f} MiB ({caches / 2**20:.1f} MiB query caches), "
        f"{store['evicted_blocks']} blocks evicted"
        + (f", {retired / 2**20:.1f} MiB of them still being read" if retired else ""),
    ]
    control = status.get("control")
    if control is not None:
        failures = ", ".join(f"{kind} {n}" for kind, n in control["accept_failures"].items())
        lines.append(
            f"control   {control['connections']} of {control['max_connections']} connections, "
            f"{control['refused_busy']} refused busy, {control['slow_dropped']} slow readers "
            f"dropped, {control['idle_closed']} idle closed, "
            f"{control.get('slow_requests', 0)} slow requests closed"
            + (f"; accept failures: {failures}" if failures else "")
        )
    audit = status.get("audit")
    if audit is not None:
        lines.append(_audit_status_text(audit))
    headless = status.get("headless")
    if headless is not None:
        lines.append(
            f"output    {headless['lines_printed']:,} lines printed on stdout, "
            f"{headless['lines_dropped']:,} dropped (stdout did not keep up)"
            + (", stdout closed" if headless["stdout_closed"] else "")
        )
    sequencer = status.get("sequencer")
    if sequencer is None:
        lines.append("events    not received (no [sequencer] udp)")
        return "\n".join(lines)
    journal = sequencer["journal"]
    drops = ", ".join(f"{cause} {n}" for cause, n in sequencer["drops"].items())
    lines += [
        f"events    udp {sequencer['udp']} via {sequencer['backend']}, "
        f"{sequencer['accepted']:,} accepted of {sequencer['received']:,}, "
        f"{sequencer['rate']:,.0f}/s",
        # Linux doubles the size asked for (half is its bookkeeping) and reports the double.
        f"buffer    {_size(sequencer['rcvbuf'] // 2)} receive buffer for data (the kernel "
        f"reports {_size(sequencer['rcvbuf'])})"
        + ("" if sequencer["rcvbuf_forced"] else ", capped by net.core.rmem_max"),
        f"drops     {drops}",
        f"journal   {journal['path']}: {journal['events']:,} events, ring "
        f"{journal['ring_used']:.0%} of {journal['capacity']:,} slots, blob "
        f"{journal['blob_used']:.0%} of {journal['blob_bytes'] / 2**20:.0f} MiB",
    ]
    ingest = sequencer.get("ingest")
    if ingest is not None:
        restart_in = ingest.get("restart_in")
        lines.append(
            f"ingest    {ingest['state']}"
            + (f", pid {ingest['pid']}" if ingest.get("pid") else "")
            + f", restarts {ingest['restarts']}"
            + (f", next start in {restart_in:.1f}s" if restart_in is not None else "")
        )
    if "failure" in sequencer:
        lines.append(f"sequencer FAILED: {sequencer['failure']}")
    elif sequencer.get("ingest_errors"):
        lines.append(
            f"sequencer {sequencer['ingest_errors']:,} failed batches, {sequencer['lost']:,} "
            f"datagrams lost (last: {sequencer.get('last_error')})"
        )
    lines.append(f"journal   opened: {journal['opened']}")
    return "\n".join(lines)


def _audit_status_text(audit: dict[str, Any]) -> str:
    """``audit     12 records, head 3f2a9c1e0b7d (path)``, and what went wrong."""
    text = f"audit     {audit['records']:,} records, head {audit['head'][:12]} ({audit['path']})"
    if audit.get("torn_at_open"):
        text += f", {audit['torn_at_open']} torn record cut off at opening"
    if audit.get("write_errors"):
        text += f"; {audit['write_errors']:,} NOT WRITTEN"
    if audit.get("last_error"):
        text += f" (last error: {audit['last_error']})"
    return text


def _size(count: int) -> str:
    """Bytes as B, KiB or MiB."""
    if count < 1024:
        return f"{count} B"
    if count < 2**20:
        return f"{count / 1024:.0f} KiB"
    return f"{count / 2**20:.1f} MiB"


def _event_prefix(event: dict[str, Any]) -> str:
    flags = f" flags=0x{event['flags']:03x}" if event["flags"] else ""
    bad = " [checksum mismatch]" if not event["valid"] else ""
    return (
        f"#{event['seq']} {local_clock(event['time'])} node={event['node']} "
        f"stream={event['stream']}{flags}{bad}  "
    )


def _events_text(events: list[dict[str, Any]], mode: TextMode) -> str:
    from ..engine.terminal_text import terminal_safe

    rows = []
    for event in events:
        if "text" in event:
            body = terminal_safe(event["text"].replace("\n", "\\n"), mode)
        else:
            body = "hex:" + event["hex"]
        rows.append(_event_prefix(event) + body)
    return "\n".join(rows)


def _write_raw_events(events: list[dict[str, Any]], lapped: int) -> None:
    """``events --raw``: each event's line with its payload's bytes as sent (an event carries
    them losslessly: ``"text"`` when they are clean UTF-8, else ``"hex"``), newlines and all."""
    out = bytearray()
    if lapped:
        out += (_lapped_text(lapped) + "\n").encode()
    for event in events:
        payload = event["text"].encode() if "text" in event else bytes.fromhex(event["hex"])
        out += _event_prefix(event).encode() + payload + b"\n"
    sys.stdout.flush()
    sys.stdout.buffer.write(out)


if __name__ == "__main__":
    sys.exit(main())
