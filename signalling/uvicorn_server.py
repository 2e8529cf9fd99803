"""The uvicorn server a node runs, and the one place that touches uvicorn's internals.

Written for uvicorn 0.54 with httptools and the websockets-sansio backend (the versions
pinned in pyproject.toml); tests/signalling/test_uvicorn_server.py fails loudly when what this
module relies on changes. ASGI has no say before a request's headers are in, so what must
happen before that lives here, in subclasses of uvicorn's protocol classes:

- **A deadline for the request line and headers** (``Limits.header_timeout``). uvicorn has
  none: a socket that sends nothing, or a header a byte at a time, stayed open for ever. A
  socket whose request headers are not all in by the deadline, counted from the TCP accept
  (or from the first byte of a later request on a kept-alive connection), is closed.
- **Caps on unauthenticated sockets** (`signalling.gate.Gate`): a socket over the cap per
  node or per client address is refused with HTTP 503 (``Retry-After``). The refusal is
  written once the request has arrived (or after ``REFUSE_LINGER`` if nothing comes), so that
  the client reads it rather than a reset; while refused sockets pile up past the node cap
  themselves, further ones are reset at once.
- **No frame content in logs**: websockets logs the start of every frame at debug level;
  its per-connection debug switch is turned off.
- **No query strings in logs**: uvicorn's access lines and its ``"WebSocket /path"`` lines
  print the query string; `QueryFilter` cuts it off (join tokens never belong in a URL, but
  a client may put one there anyway).
- **No line per connection at info**: uvicorn logs every accepted WebSocket with the
  client's address, and websockets its ``connection open`` and ``connection closed``, at
  INFO: three lines per join, most of the logging cost of a hello and the client's IP in
  the log for each. `QueryFilter` turns them into DEBUG records (kept only at
  ``VESTIBULE_LOG_LEVEL=debug``).
- **Less memory per socket** (docs/PERFORMANCE.md, memory): the ASGI receive events wait in
  a `ReceiveQueue` (a list and at most one waiter) instead of an `asyncio.Queue` (three
  deques, ~2.3 KiB), ``writable`` is a `WriteGate` instead of an `asyncio.Event` (a deque,
  0.75 KiB), and the handshake's request, response and the scope's headers (~4 KiB) are
  let go once the upgrade is answered: neither uvicorn nor the WebSocket endpoint reads
  them after it.
- **No traceback for a client's invalid UTF-8**: uvicorn logs one at ERROR for a text frame
  that is not UTF-8. The 1007 close is right; the record becomes one INFO line.
- **No ERROR for a refusal before the upgrade**: after an ASGI denial response uvicorn
  believes the handshake unfinished and logs an ERROR; the protocol notes it finished.

`config` builds the `uvicorn.Config` with all of it, for `vestibule serve` and the tests.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar, Generic, TypeVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from signalling.gate import Gate
from signalling.settings import Limits

REFUSE_LINGER = 1.0  # seconds a refused socket may take to send its request
_REFUSAL_BODY = b"too many connections waiting: try again\n"
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"retry-after: 5\r\n"
    b"connection: close\r\n"
    b"content-length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n"
    b"\r\n" + _REFUSAL_BODY
)
INVALID_UTF8 = "Invalid UTF-8 sequence received from client."  # uvicorn's message
# The lines uvicorn (accepted) and websockets (open, closed) log for every connection.
PER_CONNECTION = frozenset(
    {'%s - "WebSocket %s" [accepted]', "connection open", "connection closed"}
)
LOGGERS = ("uvicorn.access", "uvicorn.error")


class _GatedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol with the header deadline and the gate."""

    gate: ClassVar[Gate]
    header_timeout: ClassVar[float]
    lingering: ClassVar[int] = 0  # refused sockets not closed yet (per server: see `config`)

    _deadline: asyncio.TimerHandle | None = None
    _refused: asyncio.TimerHandle | None = None
    _counted = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.gate.enter(self.client):
            self._counted = True
            self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)
        elif type(self).lingering >= self.gate.limit:
            self.transport.abort()  # refusals pile up too: no more of them
        else:
            type(self).lingering += 1
            self._refused = self.loop.call_later(REFUSE_LINGER, self._refuse)

    def data_received(self, data: bytes) -> None:
        if self._refused is not None:
            self._refuse()  # the request is in: answer it (unread, it would make a reset)
            return
        if self.transport.is_closing():
            return  # refused or timed out already
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a later request on a kept-alive connection
            self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def on_headers_complete(self) -> None:
        self._stop_deadline()
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self._leave()  # plain HTTP: authenticated by its own means, if at all
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        self._counted = False  # the WebSocket protocol object counts it from now on
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        if self._refused is not None:
            self._refused.cancel()
            self._refused = None
            type(self).lingering -= 1
        self._leave()
        super().connection_lost(exc)

    def _too_slow(self) -> None:
        self._deadline = None
        self.gate.timed_out += 1
        self._leave()
        self.transport.close()

    def _refuse(self) -> None:
        if self._refused is not None:
            self._refused.cancel()
            self._refused = None
            type(self).lingering -= 1
        if not self.transport.is_closing():
            self.transport.write(REFUSAL)
            self.transport.close()

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _leave(self) -> None:
        if self._counted:
            self._counted = False
            self.gate.leave(self.client)


T = TypeVar("T")


class ReceiveQueue(Generic[T]):
    """The part of `asyncio.Queue` that uvicorn's protocol uses for the ASGI receive events
    (`put_nowait`, `get`, `empty`), for one reader at a time: the application's `receive`.

    An `asyncio.Queue` per socket is three deques of 64 slots (~2.3 KiB) and looks its
    loop up on every wait; this is a list, emptied as it is read, and one future while the
    reader waits."""

    __slots__ = ("_head", "_items", "_loop", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: list[T | None] = []
        self._head = 0  # the next item to read
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return self._head == len(self._items)

    def qsize(self) -> int:
        return len(self._items) - self._head

    async def get(self) -> T:
        while self._head == len(self._items):
            if self._waiter is not None:
                raise RuntimeError("ReceiveQueue has one reader at a time")
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        items, head = self._items, self._head
        item = items[head]
        if head + 1 == len(items):
            items.clear()
            self._head = 0
        else:
            items[head] = None  # let it go now, not when the list is next emptied
            self._head = head + 1
        return item  # type: ignore[return-value]  # items[:head] are None, the rest T


class WriteGate:
    """The part of `asyncio.Event` that uvicorn's protocol uses for ``writable`` (`set`,
    `clear`, `wait`; `signalling.client_socket` asks `is_set`), with no 64-slot deque of
    waiters kept per socket: the list of waiters exists only while one waits (the
    transport's buffer is full)."""

    __slots__ = ("_loop", "_set", "_waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._set = True
        self._waiters: list[asyncio.Future[bool]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if not self._set:
            self._set = True
            waiters, self._waiters = self._waiters, None
            for waiter in waiters or ():
                if not waiter.done():
                    waiter.set_result(True)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter: asyncio.Future[bool] = self._loop.create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            return await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)


class _GatedWebSockets(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol: silent frames, the gate left on close, and less
    kept per socket."""

    gate: ClassVar[Gate]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn.debug = False  # websockets would log the start of every frame at debug
        self.queue = ReceiveQueue(self.loop)  # type: ignore[assignment]
        self.writable = WriteGate(self.loop)  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            self.gate.leave(self.client)  # closed before (or without) an accepted hello

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # The upgrade is answered: uvicorn reads its request and response no more
            # (the scope has a copy of the request's headers). websockets' parser keeps
            # the request alive in its generator's frame, so its headers are emptied.
            self.request.headers.clear()
            self.request = self.response = None  # type: ignore[assignment]
            # Nor does the endpoint read the headers once it has accepted (uvicorn's
            # proxy-headers middleware read them before): ~1 KiB of tuples per socket.
            self.scope["headers"] = []
        elif message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            # A refusal with an HTTP response (the ASGI denial response: /ws with a query)
            # ends the handshake; uvicorn 0.54 does not note it, and then logs an ERROR
            # ("ASGI callable returned without completing handshake") for every refusal.
            self.handshake_complete = True


class QueryFilter(logging.Filter):
    """Cuts the query string off the paths in uvicorn's log lines, turns uvicorn's
    traceback for a client's invalid UTF-8 into one INFO line, and the lines logged for
    every connection into DEBUG ones."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            isinstance(record.msg, str)
            and record.msg in PER_CONNECTION
            and record.levelno == logging.INFO
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        if isinstance(record.args, tuple):
            record.args = tuple(_path_only(arg) for arg in record.args)
        if record.msg == INVALID_UTF8 and record.exc_info:
            record.msg = "closed a WebSocket (1007): a text frame was not UTF-8"
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _path_only(arg: object) -> object:
    if isinstance(arg, str) and arg.startswith("/") and "?" in arg:
        return arg.split("?", 1)[0]
    return arg


def filter_logs() -> None:
    """Put `QueryFilter` on uvicorn's loggers (once; call it after logging is set up)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, QueryFilter) for f in logger.filters):
            logger.addFilter(QueryFilter())


def config(app: Any, gate: Gate, limits: Limits, **options: Any) -> uvicorn.Config:
    """A `uvicorn.Config` for ``app`` with this module's protocols around ``gate`` (fresh
    protocol classes per call, so servers in one process keep their own counts)."""
    http = type("GatedHttp", (_GatedHttp,), {"gate": gate, "header_timeout": limits.header_timeout})
    ws = type("GatedWebSockets", (_GatedWebSockets,), {"gate": gate})
    result = uvicorn.Config(
        app,
        http=http,
        ws=ws,
        ws_per_message_deflate=False,  # small messages: compression costs more than it saves
        ws_max_size=limits.transport_max_bytes,
        **options,
    )
    filter_logs()
    return result
