"""``lacrimosa completion bash|zsh|fish``: a shell completion script generated from the command
line's own parser (cli_args.py) by shtab, so it always knows every verb and option.

Process names (``restart NAME``, ``logs NAME``, ``up --exit-with NAME``) are completed from the
console running for the current folder (``lacrimosa ps``); files and folders where an option
takes one. Only this verb imports shtab: the one-shot path stays light.
"""

from __future__ import annotations

import argparse

import shtab

from .cli_args import build_parser

SHELLS = ("bash", "zsh", "fish")
# The names of the processes of the console here, one a line: the first column of `ps`.
PROCESS_NAMES = shtab.cmd("lacrimosa ps 2>/dev/null | awk 'NR > 1 { print $1 }'")
_COMPLETE_BY_DEST = {
    "name": PROCESS_NAMES,
    "exit_with": PROCESS_NAMES,
    "file": shtab.FILE,
    "home": shtab.DIRECTORY,
}


def completion_script(shell: str) -> str:
    parser = build_parser()
    _mark(parser)
    script: str = shtab.complete(parser, shell=shell)
    return script


def _mark(parser: argparse.ArgumentParser) -> None:
    """Tell shtab how to complete each argument that takes a process name, a file or a folder,
    in ``parser`` and every subcommand's parser."""
    for action in parser._actions:
        complete = _COMPLETE_BY_DEST.get(action.dest)
        if complete is not None:
            action.complete = complete  # type: ignore[attr-defined]  # shtab reads this
        if isinstance(action, argparse._SubParsersAction):
            for subparser in set(action.choices.values()):
                _mark(subparser)
