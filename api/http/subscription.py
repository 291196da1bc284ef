"""/api/subscribe: the control protocol's ``subscribe`` op on a WebSocket, for a TUI attached
over HTTP (``lacrimosa tui --url``).

Each message the server sends is one reply of the op, as the socket sends it (``{"ok": true,
"result": ...}``): the state first, then what changed, at most 20 a second (see ``_subscribe``
in protocol.py), until ``{"end": ...}`` when the console stops (then the socket is closed with
1001). The client sends nothing; what it sends is read and dropped, so that its close is seen.

The op's replies come from a blocking generator (it waits on the console between updates), so
each subscription has a thread of its own, handing replies to the event loop through a queue
of QUEUE_REPLIES. The generator is pulled only as the socket takes what it made: a client that
reads slowly gets fewer, coalesced updates (each says the whole version), never a growing
queue. At most MAX_SUBSCRIPTIONS at once (one thread each); one more is closed with 1013.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from ...engine.console import Console
from ..protocol import replies
from ..wire import encode
from .auth import REVOKED_CLOSE, until_revoked

_log = logging.getLogger("uvicorn.error")  # counted in the server's status (server._Problems)

MAX_SUBSCRIPTIONS = 16  # attached TUIs over HTTP at once (a thread each)
QUEUE_REPLIES = 2  # replies made and not yet sent, per subscription

_DONE = object()  # the generator ended (the console is stopping)


class Subscriptions:
    """The subscriptions open now, within their bound."""

    def __init__(self, console: Console, limit: int = MAX_SUBSCRIPTIONS) -> None:
        self.console = console
        self.limit = limit
        self.open = 0
        self.refused = 0  # closed at once as one too many

    async def serve(self, websocket: WebSocket) -> None:
        """One subscriber's connection, until it goes or the console stops."""
        await websocket.accept()
        if self.open >= self.limit:
            self.refused += 1
            await websocket.close(
                code=1013, reason=f"at most {self.limit} subscriptions: try again later"
            )
            return
        self.open += 1
        try:
            await self._serve(websocket)
        finally:
            self.open -= 1

    async def _serve(self, websocket: WebSocket) -> None:
        loop = asyncio.get_running_loop()
        made: asyncio.Queue[Any] = asyncio.Queue(QUEUE_REPLIES)
        gone = threading.Event()

        def hand_over(item: Any) -> bool:
            """Put ``item`` in the queue, waiting for room (False: the subscriber went)."""
            future = asyncio.run_coroutine_threadsafe(made.put(item), loop)
            while True:
                try:
                    future.result(timeout=0.5)
                    return True
                except TimeoutError:
                    if gone.is_set():
                        future.cancel()
                        return False

        def produce() -> None:
            # In the subscription's thread: each reply waits for room in the queue (blocking this
            # thread only), so the generator runs no further ahead of the socket than the queue.
            pieces = replies(self.console, {"op": "subscribe"}, lambda: not gone.is_set())
            try:
                for piece in pieces:
                    text = piece.decode() if isinstance(piece, bytes) else encode(piece).decode()
                    if not hand_over(text):
                        return
                hand_over(_DONE)
            except RuntimeError:
                return  # the event loop was closed under us (the server stopped)
            finally:
                pieces.close()

        producer = threading.Thread(target=produce, name="lacrimosa-http-subscribe", daemon=True)
        producer.start()
        sender = asyncio.create_task(_send(websocket, made))
        receiver = asyncio.create_task(_drain(websocket))
        revoked = asyncio.create_task(until_revoked(self.console, websocket.scope))
        try:
            done, _ = await asyncio.wait(
                {sender, receiver, revoked}, return_when=asyncio.FIRST_COMPLETED
            )
            if sender in done and sender.exception() is None:
                await websocket.close(code=1001, reason="the console is stopping")
            elif revoked in done:
                await websocket.close(*REVOKED_CLOSE)
        except (WebSocketDisconnect, RuntimeError):
            pass  # the client went away (RuntimeError: sent to a socket already closed)
        finally:
            gone.set()
            for task in (sender, receiver, revoked):
                task.cancel()
            await asyncio.gather(sender, receiver, revoked, return_exceptions=True)
            failure = sender.exception() if sender.done() and not sender.cancelled() else None
            if failure is not None and not isinstance(failure, WebSocketDisconnect | RuntimeError):
                _log.error("subscription failed: %r", failure)


async def _send(websocket: WebSocket, made: asyncio.Queue[Any]) -> None:
    while True:
        text = await made.get()
        if text is _DONE:
            return
        await websocket.send_text(text)


async def _drain(websocket: WebSocket) -> None:
    """Read (and drop) what the client sends, so that its close is noticed at once."""
    while True:
        await websocket.receive()
        # receive() after a disconnect raises RuntimeError; a disconnect message ends it here.
        if websocket.client_state.name == "DISCONNECTED":
            return
