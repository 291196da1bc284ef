"""Who may call what: the scope of every route (one table), and the ASGI middleware that wraps
the whole application and checks the bearer key before any route runs.

- ``ROUTE_SCOPES`` names the scope each (method, route template) needs; ``None`` is public.
  Building the app fails if a route has no entry, so a new route cannot be left open by
  forgetting it here.
- A path that matches no route, or a route with another method, needs ``read``: without a key a
  caller learns nothing (401), with one it gets 404 or 405.
- No key or an unknown one: 401; a key whose scope is too low: 403. Each refusal is an audit
  record of its own, at most ``REFUSALS_PER_SECOND`` a second; past that they are counted and
  written as one ``http_refused_summary`` record per second in which any were held back, so a
  caller hammering the API with bad keys grows the log by at most REFUSALS_PER_SECOND + 1
  records a second.
- Served on loopback, a request must name a loopback host (``Host: 127.0.0.1:PORT``,
  ``localhost:PORT``, ``[::1]:PORT``), else 421, even for /health: a web page whose name an
  attacker re-points at 127.0.0.1 (DNS rebinding) sends its own name. A request that carries an
  ``Origin`` (a browser's, made by a page) is refused (403) unless the page is the API's own
  host: no page elsewhere may drive the API, nor open its WebSockets, which browsers let any
  page open without asking the server first. Both are refused before the key is looked at,
  counted and audited as other refusals.
- A request body is at most MAX_BODY bytes, its length declared (Content-Length): a longer one
  gets 413, one without a length 411, before it is read, so no body is held whole unbounded.
- Every request, refused or not, is counted by route template, method and status, and timed
  (``HttpMetrics``), for /metrics.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...engine.audit import Actor
from ...engine.console import Console
from ...engine.errors import LacrimosaError
from ...engine.keys import ApiKey
from ..wire import error

KEY_SCOPE = "lacrimosa.key"  # where the middleware leaves the caller's ApiKey in the ASGI scope
REFUSALS_PER_SECOND = 10  # refused requests written to the audit log one by one, each second
MAX_AUDITED_PATH = 200  # characters of a refused request's path kept in its audit record
UNMATCHED = "(unmatched)"  # the route label of a request that matched no route
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
REVOKE_CHECK = 0.5  # seconds between checks that a WebSocket's key still stands
MAX_BODY = 64 << 10  # bytes of a request body (POST /api/keys and /api/query: small JSON objects)

# The scope each route needs: None is public. One table for the whole API (see the docstring).
ROUTE_SCOPES: dict[tuple[str, str], str | None] = {
    ("GET", "/health"): None,
    ("GET", "/openapi.json"): "read",
    ("GET", "/metrics"): "read",  # public with [http] metrics_public = true
    ("GET", "/api/status"): "read",
    ("GET", "/api/processes"): "read",
    ("GET", "/api/processes/{name}"): "read",
    ("GET", "/api/processes/{name}/logs"): "read",
    ("GET", "/api/processes/{name}/why"): "read",
    ("GET", "/api/wait"): "read",
    ("GET", "/api/logs"): "read",
    ("GET", "/api/events"): "read",
    ("GET", "/api/audit"): "read",
    ("GET", "/api/audit/verify"): "read",
    ("GET", "/api/stream"): "read",  # the WebSocket's opening request
    ("GET", "/api/log_window"): "read",
    ("GET", "/api/subscribe"): "read",  # a WebSocket too
    ("POST", "/api/query"): "read",  # reads only, though it is a POST (the query is a body)
    ("POST", "/api/processes/{name}/start"): "write",
    ("POST", "/api/processes/{name}/stop"): "write",
    ("POST", "/api/processes/{name}/restart"): "write",
    ("POST", "/api/shutdown"): "admin",  # stops every process and the console
    ("GET", "/api/keys"): "admin",
    ("POST", "/api/keys"): "admin",
    ("DELETE", "/api/keys/{key_id}"): "admin",
}


def route_methods(route: BaseRoute) -> list[str]:
    """The methods a route answers (a WebSocket route: GET, its opening request)."""
    methods = getattr(route, "methods", None)
    return sorted(m for m in methods if m != "HEAD") if methods else ["GET"]


def check_route_table(routes: Iterable[BaseRoute]) -> None:
    """Every route of the app has a scope in ROUTE_SCOPES (else building the app fails)."""
    for route in routes:
        for method in route_methods(route):
            path = getattr(route, "path", "")
            if (method, path) not in ROUTE_SCOPES:
                raise RuntimeError(f"HTTP route {method} {path} has no entry in ROUTE_SCOPES")


class HttpMetrics:
    """The HTTP layer's own counters (requests by route template, method and status; durations),
    in the registry /metrics serves."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "lacrimosa_http_requests",
            "HTTP requests answered, by route template, method and status",
            ("route", "method", "status"),
            registry=registry,
        )
        self.duration = Histogram(
            "lacrimosa_http_request_duration_seconds",
            "Time to answer an HTTP request (to the end of its body), by route template",
            ("route",),
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        # Any token is a method to HTTP: labels take the usual ones only, so a client inventing
        # methods cannot grow the metrics without bound (routes are templates, statuses ours).
        method = method if method in KNOWN_METHODS else "other"
        self.requests.labels(route, method, str(status)).inc()
        self.duration.labels(route).observe(seconds)


class RefusalLog:
    """Refused requests into the audit log, at most REFUSALS_PER_SECOND records a second and
    one summary record for the rest (see the module docstring). Used from the server's event
    loop only (``flush`` too), and from ``close`` after that loop has ended."""

    def __init__(self, console: Console, per_second: int = REFUSALS_PER_SECOND) -> None:
        self.console = console
        self.per_second = per_second
        self._window = 0.0  # monotonic start of the current one-second window
        self._written = 0  # refusal records written in this window
        self._held = 0  # refusals not written one by one since the last summary
        self._held_since = 0.0  # wall time of the first of them
        self.refused = 0  # every refusal since the start
        self.summarised = 0  # refusals that went into summary records

    def refuse(self, actor: Actor, status: int, method: str, path: str, client: str) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._window >= 1.0:
            self.flush()
            self._window, self._written = now, 0
        if self._written < self.per_second:
            self._written += 1
            self.console.audit.record(
                actor,
                "http_refused",
                path[:MAX_AUDITED_PATH],
                {"method": method[:16], "status": status, "client": client},
                outcome="unauthorized" if status == 401 else "forbidden",
            )
            return
        if not self._held:
            self._held_since = time.time()
        self._held += 1

    def flush(self) -> None:
        """Write the summary of refusals held back, if any."""
        if not self._held:
            return
        held, self._held = self._held, 0
        self.summarised += held
        self.console.audit.record(
            Actor("http"),
            "http_refused_summary",
            None,
            {"refused": held, "since": round(self._held_since, 3)},
            outcome="refused",
            detail=f"{held} refused requests past {self.per_second} a second, not listed one by one",
        )


class AuthMiddleware:
    """Checks every request against ROUTE_SCOPES before the app sees it, counts and times it."""

    def __init__(
        self,
        app: ASGIApp,
        console: Console,
        routes: list[BaseRoute],
        metrics: HttpMetrics,
        refusals: RefusalLog,
        metrics_public: bool = False,
        loopback: bool = False,
    ) -> None:
        self.app = app
        self.loopback = loopback  # served on loopback: the Host must say so
        self.console = console
        self.metrics = metrics
        self.refusals = refusals
        self.scopes = dict(ROUTE_SCOPES)
        if metrics_public:
            self.scopes["GET", "/metrics"] = None
        # (compiled path pattern, template, methods), in the app's order (the first match wins).
        self._routes: list[tuple[re.Pattern[str], str, list[str]]] = [
            (route.path_regex, route.path, route_methods(route))  # type: ignore[attr-defined]
            for route in routes
        ]

    def policy(self, method: str, path: str) -> tuple[str, str | None]:
        """The route template a request goes to and the scope it needs."""
        method = "GET" if method == "HEAD" else method
        other_method = None
        for pattern, template, methods in self._routes:
            if pattern.match(path):
                if method in methods:
                    return template, self.scopes[method, template]
                other_method = other_method or template
        # A method no route of this path takes (405 for a key), or no route at all (404).
        return other_method or UNMATCHED, "read"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope.get("method", "GET")
        template, needed = self.policy(method, scope["path"])
        status = [500]

        async def counted(message: Message) -> None:
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                status[0] = message["status"]
            elif kind == "websocket.accept":
                status[0] = 101
            elif kind == "websocket.close" and status[0] == 500:
                status[0] = 403  # closed before accepting it: refused
            await send(message)

        try:
            refusal = self._check(scope, needed, method)
            if refusal is None:
                await self.app(scope, receive, counted)
            else:
                await _refuse(scope, receive, counted, *refusal)
        finally:
            self.metrics.observe(template, method, status[0], time.perf_counter() - started)

    def _check(self, scope: Scope, needed: str | None, method: str) -> tuple[int, str, str] | None:
        """None if the request may go on, else (status, code, message)."""
        refusal = _check_origin(scope, self.loopback)
        if refusal is not None:
            self._refused(Actor("http"), refusal[0], method, scope)
            return refusal
        if needed is None:
            return None
        refusal = self._check_key(scope, needed, method)
        if refusal is None and scope["type"] == "http":
            return _check_body(scope)
        return refusal

    def _check_key(self, scope: Scope, needed: str, method: str) -> tuple[int, str, str] | None:
        key = _bearer(scope)
        try:
            record = self.console.keys.authenticate(key) if key else None
        except LacrimosaError as exc:  # the key file cannot be read or trusted
            return 503, "unavailable", f"API keys cannot be checked: {exc.message}"
        if record is None:
            why = "an unknown or revoked API key" if key else "no API key"
            if len(_header_values(scope, b"authorization")) > 1:
                why = "more than one Authorization header"
            self._refused(Actor("http"), 401, method, scope)
            return (
                401,
                "unauthorized",
                f"{why}: send `Authorization: Bearer KEY` (`lacrimosa keys create` makes one)",
            )
        if not record.allows(needed):
            self._refused(_actor(record), 403, method, scope)
            return 403, "forbidden", f"this key's scope is {record.scope}; this needs {needed}"
        scope[KEY_SCOPE] = record
        return None

    def _refused(self, actor: Actor, status: int, method: str, scope: Scope) -> None:
        client = scope.get("client")
        where = f"{client[0]}:{client[1]}" if client else "?"
        self.refusals.refuse(actor, status, method, scope["path"], where)


def _check_origin(scope: Scope, loopback: bool) -> tuple[int, str, str] | None:
    """The Host and Origin rules of the module docstring."""
    host = origin = None
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host = value.decode("latin-1")
        elif name == b"origin":
            origin = value.decode("latin-1")
    if loopback and not _names_loopback(host):
        return (
            421,
            "misdirected",
            "served on loopback, a request's Host must be 127.0.0.1, localhost or [::1]",
        )
    own = {f"{scheme}://{host}".lower() for scheme in ("http", "https")}
    if origin is not None and origin.lower() not in own:
        return 403, "forbidden", "a request from a web page of another origin (Origin) is refused"
    return None


def _names_loopback(host: str | None) -> bool:
    if not host:
        return False
    name = host.rsplit("]", 1)[0].lstrip("[") if host.startswith("[") else host.split(":")[0]
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _check_body(scope: Scope) -> tuple[int, str, str] | None:
    headers = dict(scope.get("headers", ()))
    length = headers.get(b"content-length")
    if length is None:
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            return 411, "invalid_request", "a request body needs a Content-Length"
        return None
    if not length.isdigit() or int(length) > MAX_BODY:
        return 413, "invalid_request", f"a request body is at most {MAX_BODY} bytes"
    return None


async def until_revoked(console: Console, scope: Scope) -> None:
    """Return once the key a connection was accepted with is revoked: a long-lived connection
    (a WebSocket) is closed then, as a new request with that key would be refused."""
    record = scope.get(KEY_SCOPE)
    while record is None or console.keys.is_live(record.id):
        await asyncio.sleep(REVOKE_CHECK)


REVOKED_CLOSE = (1008, "the API key was revoked")  # WebSocket close code (policy) and reason


def _actor(record: ApiKey) -> Actor:
    return Actor("http", key_id=record.id, key_name=record.name)


def actor_of(scope: Scope) -> Actor:
    """Who sent a request, as the audit log names them (the key the middleware accepted)."""
    record = scope.get(KEY_SCOPE)
    return _actor(record) if record is not None else Actor("http")


def _bearer(scope: Scope) -> str | None:
    """The bearer key of a request; None without one, and with more than one Authorization
    header: which one counts is ambiguous (a proxy in front may check the other)."""
    found = _header_values(scope, b"authorization")
    if len(found) != 1:
        return None
    kind, _, key = found[0].decode("latin-1").strip().partition(" ")
    return key.strip() if kind.lower() == "bearer" and key.strip() else None


def _header_values(scope: Scope, wanted: bytes) -> list[bytes]:
    return [value for name, value in scope.get("headers", ()) if name == wanted]


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str
) -> None:
    body = json.dumps(error(code, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="lacrimosa"'))
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await receive()  # websocket.connect: the opening request, answered here
    if "websocket.http.response" in (scope.get("extensions") or {}):
        # The opening request gets a plain HTTP answer, as any other route's would.
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
