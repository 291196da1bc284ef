"""``lacrimosa tui``: attach a TUI to the console running for this project (start one in the
background first if none is running), until ``d`` (detach), ``q`` then ``q`` (stop everything),
a hang-up of the terminal (detach), or the console ending."""

from __future__ import annotations

import argparse
import sys

from ..engine.errors import InvalidRequest, NoConsole
from .background import start_in_background
from .remote_console import RemoteConsole


def run_attached(args: argparse.Namespace, home: str, up_argv: list[str]) -> int:
    """Attach to the console whose state folder is ``home``; see the module docstring. If none
    runs, the console of ``up_argv`` (the arguments of an ``up``) is started first."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise InvalidRequest(
            "lacrimosa tui needs a terminal (stdin and stdout); from a script, use "
            "`lacrimosa up -d`, `ps`, `logs -f` and the other one-shot commands"
        )
    from ..tui.app import CONSOLE_ENDED, DETACHED, LacrimosaApp

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
    try:
        reason = LacrimosaApp(console, attached=True).run()
    finally:
        console.close()
    if reason == DETACHED:
        print(
            "lacrimosa: detached; the console goes on (`lacrimosa tui` attaches again, "
            "`lacrimosa shutdown` stops it)",
            file=sys.stderr,
        )
    elif reason == CONSOLE_ENDED:
        print(f"lacrimosa: {console.ended or 'the console stopped'}", file=sys.stderr)
        return 0 if console.ended == "the console stopped" else 4
    return 0
