"""``lacrimosa tui``: attach a TUI to the console running for this project (start one in the
background first if none is running), or with ``--url`` to a console over its HTTP API, until
``d`` (detach), ``q`` then ``q`` (stop everything), a hang-up of the terminal (detach), or the
console ending."""

from __future__ import annotations

import argparse
import os
import sys

from ..engine.errors import InvalidRequest, NoConsole
from .background import start_in_background
from .remote_console import RemoteConsole


def run_attached(args: argparse.Namespace, home: str | None, up_argv: list[str]) -> int:
    """Attach to the console whose state folder is ``home`` (or at ``args.url``); see the
    module docstring. If none runs here, the console of ``up_argv`` (the arguments of an
    ``up``) is started first; none is started for ``--url``."""
    if args.url is not None:
        console = _attach_over_http(args)
    else:
        assert home is not None  # the CLI finds it unless --url is given
        _need_a_terminal()
        try:
            console = RemoteConsole(home)
        except NoConsole:
            started = start_in_background(args, up_argv)
            print(
                f"lacrimosa: started a console in the background (pid {started['pid']}; "
                f"log: {started['log']})",
                file=sys.stderr,
            )
            console = RemoteConsole(home)
    from ..tui.app import CONSOLE_ENDED, DETACHED, LacrimosaApp

    try:
        app = LacrimosaApp(console, attached=True, settle_heap=True)
        reason = app.run()
    finally:
        console.close()
    if app.stop_refused is not None:
        print(
            f"lacrimosa: the console was not stopped ({app.stop_refused}); detached, it goes on",
            file=sys.stderr,
        )
        return 1
    if reason == DETACHED:
        how = (
            f"`lacrimosa tui --url {args.url}` attaches again"
            if args.url
            else "`lacrimosa tui` attaches again, `lacrimosa shutdown` stops it"
        )
        print(f"lacrimosa: detached; the console goes on ({how})", file=sys.stderr)
    elif reason == CONSOLE_ENDED:
        print(f"lacrimosa: {console.ended or 'the console stopped'}", file=sys.stderr)
        return 0 if console.ended == "the console stopped" else 4
    return 0


def _need_a_terminal() -> None:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise InvalidRequest(
            "lacrimosa tui needs a terminal (stdin and stdout); from a script, use "
            "`lacrimosa up -d`, `ps`, `logs -f` and the other one-shot commands"
        )


def _attach_over_http(args: argparse.Namespace) -> RemoteConsole:
    """A RemoteConsole over the HTTP API at ``args.url``, with ``--key`` or $LACRIMOSA_KEY.
    The console is reached before the terminal is looked at: a bad URL, a refused key or an
    unreachable host is said the same way from a script."""
    from .remote_http import KEY_ENV, HttpTransport

    key = args.key if args.key is not None else os.environ.get(KEY_ENV)
    console = RemoteConsole(transport=HttpTransport(args.url, key))
    try:
        _need_a_terminal()
    except BaseException:
        console.close()
        raise
    return console
