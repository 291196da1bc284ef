"""The HTTP transport of a :class:`~lacrimosa.api.remote_console.RemoteConsole`: ``lacrimosa tui
--url http://HOST:PORT`` attaches the TUI to a console over its HTTP API, as ``lacrimosa tui``
does over the Unix socket. Imported only then (httpx and websockets are heavy for the CLI).

Every request sends ``Authorization: Bearer KEY``. The same ops as on the socket:

- ``subscribe`` on the WebSocket ``/api/subscribe`` (read): one reply a message, as the socket
  sends them;
- reads with httpx: ``GET /api/log_window``, ``/api/audit``, ``/api/processes``, ``/api/events``;
- ``POST /api/query`` (read) for the Query view;
- actions: ``POST /api/processes/NAME/VERB`` (write scope), ``POST /api/shutdown`` (admin), then
  the console is waited for until its HTTP server stops answering.

A refused key is a ``RemoteError`` (code ``unauthorized``, 401, or ``forbidden``, 403: exit 1)
saying which scope it lacks; the TUI shows it as a notification. An unreachable console is
``NoConsole`` (exit 4); a URL that is not ``http(s)://HOST[:PORT]`` is ``InvalidRequest`` (2).

The journal of events lives on the console's machine: the Events view reads it through
``/api/events`` (:class:`HttpJournal`): its bounds and use come with the subscription (at least
once a second), the events shown (a screenful and a page either side) by seq range. Filtering by
node or stream would need every matching seq of the journal: over HTTP it is refused with a note.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import numpy as np
from websockets.exceptions import ConnectionClosedOK, InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect

from ..engine.errors import InvalidRequest, LacrimosaError, NoConsole, TimedOut
from ..engine.events.frames import Event
from ..engine.events.journal import SlotBatch
from .client import DEFAULT_ACTION_TIMEOUT, DEFAULT_TIMEOUT, RemoteError, action_timeouts
from .remote_console import ACTION_MARGIN, RemoteSequencer, Subscription

KEY_ENV = "LACRIMOSA_KEY"  # where `lacrimosa tui --url` finds the key when --key is not given
MAX_MESSAGE = 16 << 20  # bytes of one subscription message (the whole state, many processes)
GONE_POLL = 0.1  # seconds between looks at /health while waiting for a console to stop
# The read ops and their routes (each takes the op's arguments as query parameters).
_READ_ROUTES = {
    "log_window": "/api/log_window",
    "audit": "/api/audit",
    "ps": "/api/processes",
    "events": "/api/events",
}


def base_url(url: str) -> str:
    """``scheme://host:port`` of a console's URL; InvalidRequest says what is wrong with it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"--url {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"--url {url!r}: give the console's HTTP address, http://HOST:PORT")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidRequest(f"--url {url!r}: only http://HOST:PORT, without a path")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def _refusal(status: int, body: Any) -> RemoteError:
    """The error of a reply that is not ok: its code and message, 401/403 said as a refused key."""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code", "failed") if isinstance(error, dict) else "failed"
    message = error.get("message", "") if isinstance(error, dict) else ""
    details = error if isinstance(error, dict) else None  # a query's ``position``, say
    if status == 401:
        return RemoteError(
            code, f"the console refused the key ({message}); pass --key KEY or set {KEY_ENV}"
        )
    if status == 403:
        return RemoteError(code, f"refused: {message}")
    return RemoteError(code, message or f"HTTP {status}", details)


class _HttpSubscription:
    """The subscribe op's results from the WebSocket (entered as its context: ``exit`` closes)."""

    def __init__(self, connection: ClientConnection, exit: contextlib.ExitStack) -> None:
        self._connection = connection
        self._exit = exit

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            message = self._connection.recv()
        except ConnectionClosedOK:
            raise StopIteration from None
        except WebSocketException as exc:
            raise NoConsole(f"the connection to the console was lost: {exc}") from None
        reply = json.loads(message)
        if not reply.get("ok"):
            raise _refusal(200, reply)
        result = reply["result"]
        if isinstance(result, dict) and "end" in result:
            raise StopIteration
        return result

    def interrupt(self) -> None:
        self._exit.close()


class HttpTransport:
    """A console's HTTP API at ``url`` (see the module docstring)."""

    home = None  # the console's state folder is on its own machine

    def __init__(self, url: str, key: str | None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = base_url(url)
        self.timeout = timeout
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(base_url=self.url, headers=self._headers, timeout=timeout)
        self._closed = threading.Event()

    def _call(
        self,
        method: str,
        path: str,
        timeout: float | None = None,
        body: dict[str, Any] | None = None,
        **params: Any,
    ) -> Any:
        present = {k: v for k, v in params.items() if v is not None}
        try:
            response = self._client.request(
                method, path, params=present, json=body, timeout=timeout or self.timeout
            )
        except httpx.TimeoutException:
            raise TimedOut(f"the console at {self.url} did not answer {path} in time") from None
        except httpx.HTTPError as exc:
            raise NoConsole(f"cannot reach the console at {self.url}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            raise RemoteError(
                "failed", f"{self.url}{path} answered HTTP {response.status_code}, not JSON"
            ) from None
        if response.is_success and isinstance(body, dict) and body.get("ok"):
            return body.get("result")
        raise _refusal(response.status_code, body)

    def subscribe(self) -> Subscription:
        address = "ws" + self.url[len("http") :] + "/api/subscribe"
        exit = contextlib.ExitStack()
        try:
            connection = exit.enter_context(
                connect(
                    address,
                    additional_headers=self._headers,
                    open_timeout=self.timeout,
                    max_size=MAX_MESSAGE,
                )
            )
        except InvalidStatus as exc:
            response = exc.response
            try:
                body = json.loads(response.body or b"")
            except ValueError:
                body = None
            if response.status_code == 404:
                raise NoConsole(
                    f"{self.url} has no /api/subscribe: is it a lacrimosa console?"
                ) from None
            raise _refusal(response.status_code, body) from None
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise NoConsole(f"cannot reach the console at {self.url}: {exc}") from None
        return _HttpSubscription(connection, exit)

    def request(self, op: str, **args: Any) -> Any:
        path = _READ_ROUTES.get(op)
        if path is None:
            raise InvalidRequest(f"{op} is not read over HTTP by an attached TUI")
        if op == "audit":  # the route's names: limit, and since as a duration
            since = args.pop("since", None)
            args = {
                "limit": args.pop("lines", None),
                "since": None if since is None else f"{since:.3f}s",
            }
        return self._call("GET", path, **args)

    def act(self, verb: str, name: str) -> Any:
        timeout = action_timeouts(self.request("ps")).get(name, DEFAULT_ACTION_TIMEOUT)
        path = f"/api/processes/{quote(name, safe='')}/{verb}"
        return self._call("POST", path, timeout=timeout + ACTION_MARGIN)

    def query(self, text: str, seconds: float) -> Any:
        body = {"query": text, "deadline": seconds}
        return self._call("POST", "/api/query", timeout=seconds + ACTION_MARGIN, body=body)

    def request_shutdown(self) -> None:
        self._call("POST", "/api/shutdown")

    def wait_shutdown(self, timeout: float) -> None:
        """Until the console's HTTP server stops answering (it goes last, after the processes)."""
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up and not self._closed.wait(GONE_POLL):
            try:
                self._client.get("/health", timeout=GONE_POLL * 10)
            except httpx.HTTPError:
                return

    def open_journal(self, sequencer: RemoteSequencer) -> HttpJournal:
        return HttpJournal(self, sequencer)

    def close(self) -> None:
        self._closed.set()
        self._client.close()


class HttpJournal:
    """The console's event journal as the Events view reads it, over ``/api/events`` (see the
    module docstring). Holds nothing: the view caches the events it shows."""

    def __init__(self, transport: HttpTransport, sequencer: RemoteSequencer) -> None:
        self._transport = transport
        self._sequencer = sequencer

    def _section(self) -> dict[str, Any]:
        journal: dict[str, Any] = self._sequencer.status()["journal"]
        return journal

    @property
    def tail(self) -> int:
        return self.bounds()[0]

    def bounds(self) -> tuple[int, int]:
        section = self._section()
        return int(section["first_seq"]), int(section["next_seq"])

    def utilisation(self) -> tuple[float, float]:
        section = self._section()
        return float(section["ring_used"]), float(section["blob_used"])

    def read_events(self, seqs: Sequence[int] | np.ndarray) -> list[Event]:
        """The events of ``seqs`` (one request for their range); those overwritten meanwhile, or
        all of them if the console cannot be reached now, are left out (shown as missing)."""
        wanted = {int(seq) for seq in seqs}
        if not wanted:
            return []
        first, last = min(wanted), max(wanted)
        try:
            reply = self._transport.request("events", after=first, lines=last - first + 1)
        except LacrimosaError:
            return []
        events = (Event.from_json(item) for item in reply["events"])
        return [event for event in events if event.seq in wanted]

    def _filtered(self) -> LacrimosaError:
        return InvalidRequest(
            "events by node or stream are not listed over HTTP (they would need every matching "
            "seq of the journal): `lacrimosa events --node N` on the console's machine"
        )

    def read_slots(self, start: int, stop: int) -> SlotBatch:
        raise self._filtered()

    def select(self, node: int | None = None, stream: int | None = None) -> np.ndarray:
        raise self._filtered()
