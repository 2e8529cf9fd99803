"""One client's WebSocket at the ASGI level, with a write that never waits.

The hub tells a connection things from wherever it runs (another client's message, a
fan-out, a message from another node) and must never wait for a slow reader, so
`ClientSocket.write` is synchronous: it puts the frame on the wire at once when it can, and
otherwise keeps it, in order, in a bounded backlog that a flusher task writes out through
the ASGI ``send`` (which waits while the client's buffers are full).

"At once" needs the server's protocol object: ASGI has no non-blocking send. Under
uvicorn's websockets-sansio backend (the one `vestibule serve` runs) the ASGI ``send`` is a
bound method of that protocol, and a text or binary frame is written exactly as its
``send`` would, minus the coroutine, the event dict and one task hop per message. Any
other server gets the backlog path for every frame: slower, same behaviour.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

Frame = str | bytes
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


class ClientSocket:
    """Accept, receive, write (never waits), send (waits), close."""

    def __init__(
        self,
        receive: Receive,
        send: Send,
        *,
        backlog: int,
        on_authenticated: Callable[[], None] | None = None,
    ) -> None:
        """``on_authenticated`` is called once, by `authenticated`."""
        self._receive = receive
        self._send = send
        self._on_authenticated = on_authenticated
        owner = getattr(send, "__self__", None)
        self._direct = owner if isinstance(owner, WebSocketsSansIOProtocol) else None
        self._limit = backlog
        self._backlog: deque[Frame | _Close] | None = None  # made when first needed
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False  # a close frame is on its way; nothing more is written

    @property
    def direct(self) -> bool:
        """Whether frames go straight to the transport when it can take them."""
        return self._direct is not None

    @property
    def backlog(self) -> int:
        """Frames waiting for the client's buffers to have room."""
        return 0 if self._backlog is None else len(self._backlog)

    async def accept(self) -> bool:
        """Complete the opening handshake; False if the client went before it."""
        if (await self._receive())["type"] != "websocket.connect":
            return False
        await self._send({"type": "websocket.accept"})
        return True

    def authenticated(self) -> None:
        """The client's hello was accepted: it no longer counts as unauthenticated."""
        callback, self._on_authenticated = self._on_authenticated, None
        if callback is not None:
            callback()

    async def receive(self) -> Frame | None:
        """The next frame, or None once the client has gone."""
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        return text if text is not None else bytes(message.get("bytes") or b"")

    def write(self, frame: Frame) -> bool:
        """Send ``frame`` after everything written before it, without waiting. False,
        and nothing kept, if the backlog is full: the client is not reading."""
        if self._closed:
            return True  # the socket is closing: late messages have nobody to go to
        if self._flusher is None and self._write_now(frame):
            return True
        if self.backlog >= self._limit:
            return False
        self._keep(frame)
        return True

    def close_soon(self, code: int, reason: str) -> None:
        """Close with ``code`` once the backlog is written; later writes are dropped."""
        if self._closed:
            return
        self._closed = True
        self._keep(_Close(code, reason))

    async def send(self, frame: Frame) -> None:
        """Send ``frame`` now, waiting for room; for before anything was written."""
        if isinstance(frame, str):
            await self._send({"type": "websocket.send", "text": frame})
        else:
            await self._send({"type": "websocket.send", "bytes": frame})

    async def close(self, code: int, reason: str) -> None:
        """Close now (best effort: the client may be gone already)."""
        self.abandon()
        self._closed = True
        with suppress(OSError, RuntimeError):
            await self._send({"type": "websocket.close", "code": code, "reason": reason})

    def abandon(self) -> None:
        """Drop whatever is still waiting to be written."""
        self._backlog = None
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None

    def _write_now(self, frame: Frame) -> bool:
        protocol = self._direct
        if (
            protocol is None
            or not protocol.handshake_complete
            or protocol.close_sent
            or protocol.disconnected
            or not protocol.writable.is_set()
            or protocol.transport.is_closing()
        ):
            return False
        try:
            if isinstance(frame, str):
                protocol.conn.send_text(frame.encode())
            else:
                protocol.conn.send_binary(frame)
        except InvalidState:  # the client started the closing handshake
            return False
        protocol.transport.write(b"".join(protocol.conn.data_to_send()))
        return True

    def _keep(self, item: Frame | _Close) -> None:
        if self._backlog is None:
            self._backlog = deque()
        self._backlog.append(item)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._backlog:
                item = self._backlog.popleft()
                if isinstance(item, _Close):
                    await self._send(
                        {"type": "websocket.close", "code": item.code, "reason": item.reason}
                    )
                    break
                await self.send(item)
        except (OSError, RuntimeError):
            # The client has gone (uvicorn raises ClientDisconnected, an OSError) or the
            # socket is past its close: the reader sees the disconnect and cleans up.
            pass
        finally:
            if self._flusher is asyncio.current_task():  # not abandoned meanwhile
                self._flusher = None
                self._backlog = None  # written, or nobody left to write it to
