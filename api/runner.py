"""``lacrimosa up``: load the config, start the console and its control socket, then run the
TUI in this process, or stay in the foreground headless until SIGTERM/SIGINT or ``shutdown``."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from ..engine.config import load_config, parse_address
from ..engine.console import Console
from ..engine.errors import ConfigError, InvalidRequest
from ..engine.paths import find_config, resolve_home
from .server import ControlServer


def run_up(args: argparse.Namespace) -> int:
    config_path = Path(args.file) if args.file else find_config()
    if config_path is None:
        raise ConfigError(
            Path.cwd(),
            None,
            "no lacrimosa.toml or Procfile here or in a parent folder (or pass -f FILE)",
        )
    if args.file and not config_path.is_file():
        raise InvalidRequest(f"no such config file: {config_path}")
    config = load_config(config_path)
    if args.udp:
        try:
            parse_address(args.udp)
        except ValueError as exc:
            raise InvalidRequest(f"--udp: {exc}") from None
        config = dataclasses.replace(
            config, sequencer=dataclasses.replace(config.sequencer, udp=args.udp)
        )
    if args.http:
        print("lacrimosa: --http is not available yet; ignoring it", file=sys.stderr)
    home = resolve_home(args.home, config.path)
    assert home is not None
    console = Console(config, home)
    server = ControlServer(console)
    server.start()  # first: refuses to start a second console for the same project
    # Until console.start() returns, requests get a `starting` reply (journal recovery, say).
    console.add_status_section("control", server.stats)
    headless = args.headless or not (sys.stdin.isatty() and sys.stdout.isatty())
    if not args.headless and headless:
        print("lacrimosa: not a terminal; running headless", file=sys.stderr)
    _on_signals(
        console,
        (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        if headless
        else (signal.SIGTERM, signal.SIGHUP),
    )
    try:
        console.start()
        if headless:
            _run_headless(console)
        else:
            from ..tui.app import run_tui

            run_tui(console)
    finally:
        console.shutdown()
        server.close()
    return 0


def _on_signals(console: Console, signals: tuple[signal.Signals, ...]) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        console.request_shutdown()

    for sig in signals:
        signal.signal(sig, handler)


def _run_headless(console: Console) -> None:
    """Report state changes on stderr until a shutdown is asked for."""
    last: dict[str, str] = {}

    def report() -> None:
        for info in console.processes():
            if last.get(info.name) != info.state:
                last[info.name] = info.state
                pid = f" pid {info.pid}" if info.pid else ""
                print(f"lacrimosa: {info.name} {info.state}{pid}", file=sys.stderr, flush=True)

    changed = threading.Event()
    _, unsubscribe = console.supervisor.subscribe(changed.set)
    report()
    sequencer = console.sequencer
    if sequencer is not None:
        journal = sequencer.journal
        print(
            f"lacrimosa: events on udp {sequencer.address} ({sequencer.receiver.name}); "
            f"journal {journal.path}: {journal.recovery.describe()}",
            file=sys.stderr,
            flush=True,
        )
    print(
        f"lacrimosa: console up ({len(last)} processes); `lacrimosa shutdown` or Ctrl-C stops it",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not console.shutdown_requested.wait(0.2):
            if changed.is_set():
                changed.clear()
                report()
    finally:
        unsubscribe()
    print("lacrimosa: stopping every process", file=sys.stderr, flush=True)
