"""A console serving the HTTP API on 127.0.0.1:0, for the HTTP tests (imported as
``http_helpers``: tests/ is on sys.path; the ``served`` fixture in conftest.py uses it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import httpx

from lacrimosa.api.http import HttpServer
from lacrimosa.engine.console import Console

TICKER = """
    [processes.ticker]
    cmd = "python3 -c 'import time\\nwhile True: print(\\"tick\\", flush=True); time.sleep(0.05)'"
"""


@dataclasses.dataclass
class Served:
    console: Console
    server: HttpServer
    url: str
    admin_key: str
    clients: list[httpx.Client] = dataclasses.field(default_factory=list)

    def client(self, key: str | None = None) -> httpx.Client:
        """An httpx client (with ``key`` as its bearer key), closed after the test."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.clients.append(httpx.Client(base_url=self.url, headers=headers, timeout=30))
        return self.clients[-1]

    def key(self, scope: str, name: str | None = None) -> str:
        return self.console.keys.create(scope, name)[1]


MakeServed = Callable[..., Served]


def serve(console: Console, made: list[Served], metrics_public: bool = False) -> Served:
    """Serve ``console`` on a free loopback port; its first admin key read from its file."""
    server = HttpServer(console, "127.0.0.1:0", metrics_public)
    server.start()
    made.append(Served(console, server, f"http://{server.address}", ""))
    assert server.first_key is not None
    made[-1].admin_key = Path(server.first_key).read_text().strip()
    return made[-1]


def close_all(made: list[Served]) -> None:
    for s in made:
        for client in s.clients:
            client.close()
        s.server.close()
