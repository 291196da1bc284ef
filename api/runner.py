"""``lacrimosa up``: load the config, start the console and its control socket, then run the
TUI in this process, or stay in the foreground headless until SIGTERM/SIGINT or ``shutdown``."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from ..engine import heap
from ..engine.config import Config, parse_address
from ..engine.console import Console
from ..engine.errors import InvalidRequest
from ..engine.exit_policy import ExitRule, ExitWatch, without_restarts
from ..engine.formation import select
from ..engine.hangup import let_go_of_the_terminal
from ..engine.paths import remove_pid_file, resolve_home, write_pid_file
from ..engine.terminal_text import terminal_safe
from .headless import HeadlessPrinter, stdout_style
from .project import load_project
from .server import ControlServer

if TYPE_CHECKING:
    from .http import HttpServer

# Once every process has stopped, how long the TUI gets to give the terminal back and return
# before the console exits without it (a terminal that is gone or stalled can block it forever).
EXIT_GRACE = 5.0
EXIT_KILLED_ON_STOP = 143  # 128 + SIGTERM: a process had to be SIGKILLed on the way out


def load_up_config(args: argparse.Namespace) -> tuple[Config, Path, ExitRule]:
    """The config ``up`` would run (its project options, ``NAME...``, ``--udp``, ``--http`` and
    the exit rule applied), its state folder and its exit rule; raises what ``up`` reports (no
    config, a bad one, a bad address, an unknown ``--exit-with`` name)."""
    config = load_project(args)
    if getattr(args, "names", None):
        config = start_only(config, args.names)
    if args.udp:
        try:
            parse_address(args.udp)
        except ValueError as exc:
            raise InvalidRequest(f"--udp: {exc}") from None
        config = dataclasses.replace(
            config, sequencer=dataclasses.replace(config.sequencer, udp=args.udp)
        )
    if args.http:
        try:
            parse_address(args.http)
        except ValueError as exc:
            raise InvalidRequest(f"--http: {exc}") from None
        config = dataclasses.replace(config, http=args.http)
    rule = ExitRule(  # `tui` (which may start a console) has none of these options
        getattr(args, "exit_with", None),
        getattr(args, "abort_on_exit", False),
        getattr(args, "exit_when_done", False),
    )
    config = without_restarts(config, rule)  # an unknown --exit-with name: exit 3
    home = resolve_home(args.home, config.path)
    assert home is not None
    return config, home, rule


def run_up(args: argparse.Namespace, lock_fd: int | None = None) -> int:
    """``lock_fd``: the console lock, if the CLI took it already (for the state folder that
    ``args`` name; taken here otherwise)."""
    config, home, rule = load_up_config(args)
    console = Console(config, home)
    watch = ExitWatch(console, rule) if rule.active else None
    server = ControlServer(console, lock_fd=lock_fd)
    server.start()  # first: refuses to start a second console for the same project
    # Until console.start() returns, requests get a `starting` reply (journal recovery, say).
    console.add_status_section("control", server.stats)
    detached = getattr(args, "detached_child", False)
    if detached:  # `up -d`'s console: its pid beside the lock, for scripts and humans
        write_pid_file(home)
    notices: list[str] = []
    http = _start_http(console, server, notices)
    headless = args.headless or not (sys.stdin.isatty() and sys.stdout.isatty())
    if not args.headless and headless:
        print("lacrimosa: not a terminal; running headless", file=sys.stderr)
    printer = None
    if headless:
        style = stdout_style(
            args.output, prefix=not args.no_prefix, timestamps=not args.no_timestamps
        )
        printer = HeadlessPrinter(console, style)
        console.add_status_section("headless", printer.stats)
    signalled = threading.Event()  # the stop came from a signal (exit 143 if it needed SIGKILL)
    _on_signals(
        console,
        (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        if headless
        else (signal.SIGTERM, signal.SIGHUP),
        signalled,
    )
    finished = threading.Event()
    threading.Thread(
        target=_exit_if_stuck,
        args=(console, server, finished),
        name="lacrimosa-exit-watch",
        daemon=True,
    ).start()
    try:
        # Both watch the processes from before the first one starts: no change goes unseen.
        if printer is not None:
            printer.start()
        if watch is not None:
            watch.start()
        console.start()
        heap.settle()  # the console's long-lived objects exist now
        if watch is not None:
            watch.check()  # --exit-when-done with nothing to start
        if headless:
            for notice in notices:
                print(f"lacrimosa: {notice}", file=sys.stderr, flush=True)
            _run_headless(console, watch)
        else:
            from ..tui.app import run_tui

            run_tui(console, notices)
    finally:
        console.shutdown()
        if detached:
            remove_pid_file(home)
        if http is not None:
            http.close()
        if watch is not None:
            watch.stop()
        if printer is not None:
            printer.stop()  # after the shutdown: the last lines and state changes are printed
        server.close()
        finished.set()
    if watch is not None and watch.status is not None:
        return watch.status
    # Stopped by a signal (a container runtime's SIGTERM): 0, or 143 (as if SIGTERM had ended
    # us) when a process outlived its stop timeout and had to be killed. Otherwise (`shutdown`,
    # the TUI's quit): 0.
    if signalled.is_set() and console.supervisor.kills_in_shutdown:
        return EXIT_KILLED_ON_STOP
    return 0


def _start_http(console: Console, server: ControlServer, notices: list[str]) -> HttpServer | None:
    """The HTTP API, if the config or --http asks for it (imported only then: it is heavy).
    Started before the processes: a port in use stops the console before anything runs."""
    if console.config.http is None:
        return None
    from .http import HttpServer

    http = HttpServer(console, console.config.http, console.config.http_metrics_public)
    try:
        http.start()
    except BaseException:
        server.close()
        raise
    console.add_status_section("http", http.stats)
    notices.append(f"HTTP API on http://{http.address}/api/ (every route but /health needs a key)")
    if http.first_key is not None:
        notices.append(
            f"an admin API key was made and written once to {http.first_key} (mode 0600): "
            "keep it somewhere safe and delete the file; `lacrimosa keys create` makes more"
        )
    return http


def start_only(config: Config, targets: list[str]) -> Config:
    """``up NAME...``: the processes those names mean start (``autostart = false`` or not),
    and what they depend on (``depends_on``, all the way down); the others are known but
    stopped (``lacrimosa start`` starts them later)."""
    chosen = {name for target in targets for name in select(config.processes, target)}
    needed = list(chosen)
    while needed:
        for type_name in config.processes[needed.pop()].depends_on:
            for name in select(config.processes, type_name):
                if name not in chosen:
                    chosen.add(name)
                    needed.append(name)
    processes = {
        name: dataclasses.replace(spec, autostart=name in chosen)
        for name, spec in config.processes.items()
    }
    return dataclasses.replace(config, processes=processes)


def _on_signals(
    console: Console, signals: tuple[signal.Signals, ...], signalled: threading.Event
) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            let_go_of_the_terminal()
        if not console.shutdown_requested.is_set():
            signalled.set()
        console.request_shutdown()

    for sig in signals:
        signal.signal(sig, handler)


def _exit_if_stuck(console: Console, server: ControlServer, finished: threading.Event) -> None:
    """Make sure the console ends once it has stopped everything: if the main thread has not
    returned ``EXIT_GRACE`` seconds after every process stopped (the TUI blocked writing to a
    terminal that hung up or stalled), remove the socket and exit without it. Nothing is lost:
    the processes are gone and the journal is closed by then."""
    console.stopped.wait()
    if finished.wait(EXIT_GRACE):
        return
    server.close()
    # Said only where it cannot block: a stalled terminal is what may have got us here.
    with contextlib.suppress(OSError, ValueError):
        if not os.isatty(2):
            print(
                f"lacrimosa: the terminal did not let go within {EXIT_GRACE:.0f}s of stopping "
                "every process; exiting without it",
                file=sys.stderr,
                flush=True,
            )
    os._exit(1)


def _run_headless(console: Console, watch: ExitWatch | None) -> None:
    """Stay in the foreground until a shutdown is asked for (the printer shows the processes'
    lines and state changes on stdout; the console's own messages go to stderr)."""
    for warning in console.config.warnings:  # Procfile lines skipped, ...
        print(f"lacrimosa: warning: {terminal_safe(warning, 'plain')}", file=sys.stderr)
    sequencer = console.sequencer
    if sequencer is not None:
        journal = sequencer.journal
        print(
            f"lacrimosa: events on udp {sequencer.address} ({sequencer.backend}); "
            f"journal {journal.path}: {journal.recovery.describe()}",
            file=sys.stderr,
            flush=True,
        )
    count = len(console.supervisor.names())
    print(
        f"lacrimosa: console up ({count} processes); `lacrimosa shutdown` or Ctrl-C stops it",
        file=sys.stderr,
        flush=True,
    )
    console.shutdown_requested.wait()
    why = f" ({watch.reason})" if watch is not None and watch.status is not None else ""
    print(f"lacrimosa: stopping every process{why}", file=sys.stderr, flush=True)
