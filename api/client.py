"""The control client: talks to a running console over its Unix socket.

Light by design (standard library only): every one-shot CLI call pays for its imports.

Timeouts: quick requests (``ps``, ``status``, ``logs``) wait at most ``timeout`` for their reply;
``start``/``stop``/``restart`` are bounded by the console itself (a stop may take a process's whole
``stop_timeout``), so the CLI makes those with ``timeout=None``; following a log and waiting for the
console to exit never time out. A socket failure mid-request raises :class:`ConsoleLost`.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..engine.errors import InvalidRequest, LacrimosaError, NoConsole, exit_code_for
from ..engine.paths import socket_path
from .wire import encode

DEFAULT_TIMEOUT = 30.0  # seconds; also bounds connecting


class RemoteError(LacrimosaError):
    """An error reply from the console, carrying the protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.exit_code = exit_code_for(code)


class ConsoleLost(NoConsole):
    """The connection to the console failed mid-request (reset, timed out, ...)."""

    def __init__(self, exc: OSError) -> None:
        detail = "no reply in time" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        super().__init__(f"lost the console: {detail}")


class ControlClient:
    """One connection to the console whose state folder is ``home``."""

    def __init__(self, home: Path, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self.home = home
        path = socket_path(home)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(DEFAULT_TIMEOUT)
        try:
            self._sock.connect(str(path))
            self._sock.settimeout(timeout)
        except (FileNotFoundError, ConnectionRefusedError):
            self._sock.close()
            raise NoConsole(f"no console running for {home.parent} (looked for {path})") from None
        except OSError as exc:
            self._sock.close()
            raise NoConsole(f"cannot reach the console at {path}: {exc}") from None
        self._reader = self._sock.makefile("rb")

    def close(self) -> None:
        self._reader.close()
        self._sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, op: str, **args: Any) -> None:
        try:
            data = encode({"op": op, **args})
        except UnicodeEncodeError:  # argv held bytes that are not UTF-8 (surrogate escapes)
            raise InvalidRequest("arguments must be valid UTF-8 text") from None
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise ConsoleLost(exc) from None

    def _readline(self) -> bytes:
        try:
            return self._reader.readline()
        except OSError as exc:
            raise ConsoleLost(exc) from None

    def receive(self) -> Any:
        """The next reply's result; an error reply is raised as RemoteError (code, exit code)."""
        raw = self._readline()
        if not raw:
            raise NoConsole("the console closed the connection")
        reply = json.loads(raw)
        if reply.get("ok"):
            return reply.get("result")
        err = reply.get("error") or {}
        code, message = err.get("code", "failed"), err.get("message", "request failed")
        raise RemoteError(code, message)

    def call(self, op: str, **args: Any) -> Any:
        self.send(op, **args)
        return self.receive()

    def wait_closed(self) -> None:
        """Block, however long it takes, until the console hangs up (it does so last when it
        shuts down, once every process has stopped)."""
        self._sock.settimeout(None)
        while self._readline():
            pass

    def stream(self, op: str, **args: Any) -> Iterator[Any]:
        """Send one request and yield every reply until the console hangs up. No read timeout:
        a followed log may stay quiet for hours."""
        self._sock.settimeout(None)
        self.send(op, **args)
        while True:
            try:
                yield self.receive()
            except ConsoleLost:
                raise
            except NoConsole:
                return
