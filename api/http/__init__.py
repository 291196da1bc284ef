"""The HTTP API: the control protocol's operations as JSON under /api/, an OpenAPI document,
Prometheus metrics and a live WebSocket stream, served by uvicorn from the console's process.

Modules: ``server`` (the uvicorn thread, binding, the first key), ``app`` (routes: each a
translation of one protocol op), ``auth`` (the scope table and the middleware that checks keys
for every route), ``metrics`` (/metrics, read at scrape time), ``stream`` (/api/stream),
``subscription`` (/api/subscribe, for ``lacrimosa tui --url``).

Never imported by the one-shot CLI path (only by ``lacrimosa up`` with HTTP on).
"""

from __future__ import annotations

from .app import STATUS_BY_CODE, Api
from .auth import ROUTE_SCOPES
from .server import DEFAULT_BIND, FIRST_KEY_NAME, HttpServer, is_loopback

__all__ = [
    "DEFAULT_BIND",
    "FIRST_KEY_NAME",
    "ROUTE_SCOPES",
    "STATUS_BY_CODE",
    "Api",
    "HttpServer",
    "is_loopback",
]
