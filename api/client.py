"""The control client: talks to a running console over its Unix socket.

Light by design (standard library only): every one-shot CLI call pays for its imports.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.errors import LacrimosaError, NoConsole, exit_code_for
from engine.paths import socket_path

from .wire import encode


class RemoteError(LacrimosaError):
    """An error reply from the console, carrying the protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.exit_code = exit_code_for(code)


class ControlClient:
    """One connection to the console whose state folder is ``home``."""

    def __init__(self, home: Path, timeout: float | None = 70.0) -> None:
        self.home = home
        path = socket_path(home)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(path))
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
        self._sock.sendall(encode({"op": op, **args}))

    def receive(self) -> Any:
        """The next reply's result; an error reply is raised as RemoteError / NoSuchProcess."""
        raw = self._reader.readline()
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
        """Block until the console hangs up (it does so last when it shuts down)."""
        while self._reader.readline():
            pass

    def stream(self, op: str, **args: Any) -> Iterator[Any]:
        """Send one request and yield every reply until the console hangs up."""
        self.send(op, **args)
        while True:
            try:
                yield self.receive()
            except NoConsole:
                return
