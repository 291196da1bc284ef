"""``lacrimosa up --detach``: start the console in the background, detached from the terminal.

The console is ``up --headless`` run in a new session (``setsid``: no controlling terminal, so a
closed terminal sends it nothing), stdin from /dev/null, stdout and stderr appended to
``console.log`` in the state folder; it writes its pid to ``console.pid`` beside the lock while
it runs. This returns once the console answers (every autostart process started, or failed to),
printing what ``ps`` prints (``--json``: the same document), or fails with the reason the console
gave in its log (a bad config, a console already running there, a port taken): exit 1, or 2 for
a refused argument, as ``up`` would.

Nothing outlives it: the console's children are tied to it as with ``up`` (process groups,
PR_SET_PDEATHSIG, the guardian), not to the terminal, so ``kill -9`` of a detached console still
leaves nothing running.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..engine.errors import Busy, ConsoleError, LacrimosaError, NoConsole, Starting
from ..engine.fastjson import json_text
from ..engine.paths import LOG_NAME, check_state_folder, console_starting
from .client import ControlClient
from .runner import load_up_config

# Seconds to wait for a console started in the background to answer: it may first recover a
# large journal after a crash (about 0.5 s for a full 1M-slot one), or start many processes.
START_TIMEOUT = 120.0
LOG_TAIL_BYTES = 4096  # of console.log, read for the reason a console did not start


def start_in_background(args: argparse.Namespace, up_argv: list[str]) -> dict[str, Any]:
    """Start the console of ``args`` (as ``up`` reads them; ``up_argv``: the same arguments, as
    given) in the background; return its ``ps`` document (plus ``pid`` and ``log``) once it
    answers. Raises a LacrimosaError with the reason when it cannot start."""
    home = load_up_config(args)[1]  # a bad config is refused here, before anything starts
    check_state_folder(home, create=True)
    if console_starting(home):
        raise ConsoleError(f"a console is already running here ({home})")
    log_path = home / LOG_NAME
    log_fd = os.open(
        log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
    )
    try:
        log_start = os.fstat(log_fd).st_size
        # The same `up` (every option as given, in the same folder), headless; its state folder
        # named outright, so that it is the one waited for here whatever the environment says.
        command = [
            sys.executable,
            "-c",
            "import sys; from lacrimosa.api.cli import main; sys.exit(main())",
            *up_argv,
            "--headless",
            "--detached-child",
            "--home",
            str(home),
        ]
        console = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            start_new_session=True,  # setsid: no controlling terminal, no SIGHUP from one
        )
    finally:
        os.close(log_fd)
    return _wait_until_up(console, home, log_path, log_start)


def _wait_until_up(
    console: subprocess.Popen[bytes], home: Path, log_path: Path, log_start: int
) -> dict[str, Any]:
    deadline = time.monotonic() + START_TIMEOUT
    delay = 0.02
    while True:
        code = console.poll()
        if code is not None:
            raise ConsoleError(_why_it_ended(log_path, log_start, code))
        try:
            with ControlClient(home, retry_for=0.0) as client:
                result: dict[str, Any] = client.call("ps")
                result["pid"] = console.pid
                result["log"] = str(log_path)
                return result
        except (NoConsole, Starting, Busy):
            pass  # not answering yet
        except LacrimosaError as exc:
            if exc.code not in ("starting", "busy"):
                raise
        if time.monotonic() > deadline:
            raise ConsoleError(
                f"the console (pid {console.pid}) did not answer within {START_TIMEOUT:.0f}s; "
                f"see {log_path}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _why_it_ended(log_path: Path, log_start: int, code: int) -> str:
    """The console's own last words (``lacrimosa: ...`` in its log), else its exit status."""
    try:
        with open(log_path, "rb") as log:
            log.seek(max(log_start, os.fstat(log.fileno()).st_size - LOG_TAIL_BYTES))
            said = log.read().decode("utf-8", "replace").splitlines()
    except OSError:
        said = []
    for line in reversed(said):
        if line.startswith("lacrimosa: "):
            return line.removeprefix("lacrimosa: ")
    return f"the console exited with status {code} before answering; see {log_path}"


def report_started(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """What ``up -d`` prints: the ``ps`` document (``--json``), or the process table and where
    the console runs."""
    from .cli import _ps_text

    if args.json:
        result = {k: v for k, v in result.items() if k not in ("pid", "log")}  # = `ps --json`
        print(json_text(result))
        return
    print(_ps_text(result["processes"]))
    print(
        f"lacrimosa: console running in the background (pid {result['pid']}); "
        f"log: {result['log']}; `lacrimosa tui` to look at it, `lacrimosa shutdown` to stop it",
        file=sys.stderr,
    )
