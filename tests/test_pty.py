"""``[processes.X] pty = true``: stdout on a pseudo-terminal, so programs that buffer on a pipe
print live; stderr stays a pipe, apart."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import wait_until, write_config

from lacrimosa.engine.config import load_config
from lacrimosa.engine.console import Console
from lacrimosa.engine.errors import ConfigError
from lacrimosa.engine.logs.query import LogQuery, LogView
from lacrimosa.engine.logs.store import STDERR, STDOUT, SYSTEM

MakeConsole = Callable[..., Console]

# Perl's STDOUT is line-buffered on a terminal and block-buffered on a pipe (as C stdio is): on a
# pipe this line stays in its buffer for the whole minute.
BUFFERED = 'perl -e \'print "tick\\n"; print STDERR "warn\\n"; sleep 60\''


def lines(console: Console, name: str, stream: int) -> list[bytes]:
    view = LogView(console.snapshot(), LogQuery(processes=(name,), stream=stream))
    return [bytes(line.content) for line in view]


def test_a_program_that_buffers_on_pipes_prints_live_on_a_pty(console: MakeConsole) -> None:
    c = console(
        f"""
        [processes.on_pty]
        cmd = '''{BUFFERED}'''
        pty = true

        [processes.on_pipe]
        cmd = '''{BUFFERED}'''
        """
    )
    wait_until(lambda: lines(c, "on_pty", STDOUT) == [b"tick"], message="the pty's line")
    # The same program on a pipe has shown nothing by then (its stderr is unbuffered).
    wait_until(lambda: lines(c, "on_pipe", STDERR) == [b"warn"])
    assert lines(c, "on_pipe", STDOUT) == []
    # stderr stayed a pipe of its own on the pty process too.
    wait_until(lambda: lines(c, "on_pty", STDERR) == [b"warn"])
    assert lines(c, "on_pty", STDOUT) == [b"tick"]


def test_stdout_is_a_terminal_stderr_is_not_and_bytes_are_kept_as_written(
    console: MakeConsole,
) -> None:
    script = (
        "import os, sys; "
        "print(os.isatty(1), os.isatty(2), os.get_terminal_size(1)); "
        "print('no carriage return added')"
    )
    c = console(
        f"""
        [processes.probe]
        cmd = "{sys.executable} -c \\"{script}\\""
        pty = true
        restart = "never"
        """
    )
    wait_until(lambda: c.process("probe").state == "exited")
    assert lines(c, "probe", STDOUT) == [
        b"True False os.terminal_size(columns=80, lines=24)",
        b"no carriage return added",
    ]
    assert lines(c, "probe", SYSTEM) == [b"exited with code 0"]


def test_the_last_words_on_a_pty_are_kept_and_restarts_get_a_new_pty(console: MakeConsole) -> None:
    c = console(
        """
        [processes.short]
        cmd = "seq 1 2000; exit 1"
        pty = true
        restart = "on-failure"
        backoff_initial = 0.1
        backoff_max = 0.2
        """
    )
    wait_until(lambda: c.process("short").restarts >= 2, timeout=20)
    out = lines(c, "short", STDOUT)
    assert out[:2000] == [str(i).encode() for i in range(1, 2001)]
    wait_until(lambda: len(lines(c, "short", STDOUT)) >= 4000)
    # No descriptor is left behind by the runs that ended (their pty ends are closed).
    fds = len(list(Path("/proc/self/fd").iterdir()))
    wait_until(lambda: c.process("short").restarts >= 6, timeout=20)
    assert len(list(Path("/proc/self/fd").iterdir())) <= fds + 4


def test_pty_must_be_true_or_false(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[processes.x]\ncmd = "true"\npty = "yes"\n')
    with pytest.raises(
        ConfigError, match=r"lacrimosa.toml:3: processes.x.pty: must be true or false"
    ):
        load_config(path)
