"""Shared fixtures. Add to this file; do not change what is here without telling its users."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import write_config

from lacrimosa.engine.config import load_config
from lacrimosa.engine.console import Console


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Callable[..., Console]]:
    """A factory: ``console(text, name="lacrimosa.toml", start=True)`` → a Console.

    The config is written under ``tmp_path`` (so relative ``cwd`` values land there) and the state
    folder is ``tmp_path / ".lacrimosa"``. Every console made is shut down after the test, whatever
    happened in it.
    """
    made: list[Console] = []

    def make(text: str, name: str = "lacrimosa.toml", start: bool = True) -> Console:
        path = write_config(tmp_path, text, name)
        made.append(Console(load_config(path), tmp_path / ".lacrimosa"))
        if start:
            made[-1].start()
        return made[-1]

    yield make
    for instance in reversed(made):
        shutdown_within(instance, 60.0)


@pytest.fixture
def udp_sender() -> Iterator[socket.socket]:
    """A UDP socket to send events with (see ``helpers.send_events``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield sock
    sock.close()


def shutdown_within(console: Console, timeout: float) -> None:
    """``console.shutdown()``, failing (and killing its process groups) if it hangs.

    pytest-timeout stops its timer once a test has failed, so a teardown that hung after a failed
    test would hang the whole run; this bounds it.
    """
    errors: list[BaseException] = []

    def run() -> None:
        try:
            console.shutdown()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="test-console-shutdown", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        for info in console.processes():
            if info.pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(info.pid, signal.SIGKILL)
        raise AssertionError(f"console.shutdown() did not return within {timeout}s")
    if errors:
        raise errors[0]


@pytest.fixture
def served(console: Callable[..., Console]) -> Iterator[Callable[..., object]]:
    """A factory: ``served(config_text=http_helpers.TICKER, metrics_public=False)`` → a started
    console serving the HTTP API on 127.0.0.1:0, with its first admin key (http_helpers.Served).
    Imported here only when used: the HTTP stack is heavy for the tests that do not need it."""
    from http_helpers import TICKER, Served, close_all, serve

    made: list[Served] = []

    def make(text: str = TICKER, metrics_public: bool = False) -> Served:
        return serve(console(text), made, metrics_public)

    yield make
    close_all(made)
