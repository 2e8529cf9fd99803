"""One client's WebSocket, from accept to close: the pump around a `Session`.

The protocol (what each frame means, which reply or error it gets, when to close) is the
session's (`signalling.session`, no I/O). A connection reads frames, feeds them to the
session, and carries out what the session says: it sends, joins the hub, executes
commands and relays messages, and reports back how those ended. It also keeps the two
clocks a session cannot: the hello deadline, and the idle timer, which is re-armed lazily
so a frame costs one timestamp, not a timeout context; an idle check that runs late (the
loop was stalled) looks again after the reader's turn instead of closing.

Messages for the client go out through `ClientSocket.write`, which never waits: straight to
the transport when it can take them, else into a bounded backlog; a client that lets
``limits.outbox`` messages pile up is cut off at once (close 4429, best effort) and detached.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from contextlib import suppress

from redis.exceptions import RedisError

from rooms.ids import ParticipantId, RoomId
from signalling.client_socket import ClientSocket
from signalling.errors import LinkRevoked
from signalling.hub import Hub
from signalling.metrics import Metrics
from signalling.session import (
    CLOSE_INTERNAL,
    Action,
    Close,
    Execute,
    Join,
    JoinPlan,
    Relay,
    Retell,
    Send,
    Session,
    State,
)
from signalling.settings import Settings
from signalling.views import View, frame
from signalling.wire import Message, error

log = logging.getLogger("vestibule.signalling.connection")

CLOSE_SLOW = 4429
IDLE_LATE = 0.05  # seconds: an idle check that runs later than this saw a stalled loop


class Connection:
    """Serve one client. Create it per WebSocket and await `run`."""

    def __init__(
        self,
        socket: ClientSocket,
        hub: Hub,
        settings: Settings,
        clock: Callable[[], float],
        metrics: Metrics | None = None,
        revoked: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        """``revoked`` says whether the link of a join token (by its token id) was revoked
        (the REST API's links, given by the composition root: the WebSocket path does not
        import the API); none: links are never revoked."""
        self.socket = socket
        self.revoked = revoked
        self.metrics = metrics or Metrics()
        self.hub = hub
        self.settings = settings
        self.limits = settings.limits
        self.clock = clock
        self.connection_id = "c_" + secrets.token_urlsafe(9)
        self.session = Session(settings, self.connection_id, clock())
        self.view: View = self.session.view  # what the hub's fan-out reads and updates
        self._closing: int | None = None  # the close code, once closing
        self._reader: asyncio.Task[object] | None = None
        self._seen = 0.0  # loop time of the last frame from the client
        self._idle: asyncio.TimerHandle | None = None

    # -- what the hub reads and calls -----------------------------------------------------

    @property
    def room_id(self) -> RoomId:
        return self.session.room

    @property
    def pid(self) -> ParticipantId:
        return self.session.participant

    @property
    def joined(self) -> bool:
        return self.session.state is State.JOINED

    def deliver(self, message: Message) -> None:
        if self._closing is not None:
            return
        if not self.socket.write(frame(message, self.session.codec)):
            # The client reads nothing and its buffers are full: a close queued behind the
            # backlog would never go out. Let go of it now: the reader stops, the
            # participant is detached (its grace period starts) and the socket is closed.
            log.warning("cutting off %s in %s: outbox full", self.pid, self.room_id)
            self._closing = CLOSE_SLOW
            self.session.closing()
            self.socket.abandon()
            if self._reader is not None:
                self._reader.cancel()

    def close(self, code: int, reason: str) -> None:
        if self._closing is None:
            self._closing = code
            self.session.closing()
            self.socket.close_soon(code, reason)

    # -- life cycle -----------------------------------------------------------------------

    async def run(self) -> None:
        if not await self.socket.accept():
            return
        try:
            joined = await self._handshake()
        except Exception:  # never crash on input, never show a trace to the client
            log.exception("hello from a client failed")
            with suppress(OSError, RuntimeError):
                await self._send_now(error("internal_error", "the server could not handle hello"))
            await self.socket.close(CLOSE_INTERNAL, "internal error")
            return
        if not joined:
            return
        self.socket.authenticated()  # past the gate of unauthenticated sockets
        self._reader = asyncio.current_task()
        loop = asyncio.get_running_loop()
        self._seen = loop.time()
        self._idle = loop.call_at(self._seen + self.limits.idle_timeout, self._check_idle)
        try:
            await self._read()
        except asyncio.CancelledError:
            # Cut off as slow (our own cancel): carry on with the clean-up below. Any
            # other cancellation (the server stopping) goes on up.
            if self._closing != CLOSE_SLOW or self._uncancel() > 0:
                raise
        except Exception:  # the server never crashes on one connection's failure
            log.exception("connection of %s in %s failed", self.pid, self.room_id)
            await self.socket.close(CLOSE_INTERNAL, "internal error")
        finally:
            self._idle.cancel()
            self._reader = None
            try:
                await self.hub.detach(self.session.room, self.session.participant, self)
            except RedisError:
                log.warning("could not record that %s left %s", self.pid, self.room_id)
        if self._closing == CLOSE_SLOW:
            with suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.socket.close(CLOSE_SLOW, "too slow to read its messages")

    def _uncancel(self) -> int:
        task = asyncio.current_task()
        return 0 if task is None else task.uncancel()

    def _check_idle(self) -> None:
        loop = asyncio.get_running_loop()
        now, due = loop.time(), self._seen + self.limits.idle_timeout
        if now < due:
            self._idle = loop.call_at(due, self._check_idle)
        elif self._idle is not None and now - self._idle.when() > IDLE_LATE:
            # This check ran late: the loop was stalled (GC, a burst of work), and a frame
            # that arrived meanwhile is read only after timers like this one have run.
            # Look again once the reader has had its turn; a late check closes nobody.
            self._idle = loop.call_later(IDLE_LATE, self._check_idle)
        else:
            for action in self.session.idle(now - self._seen):
                if isinstance(action, Close):
                    self.close(action.code, action.reason)

    async def _handshake(self) -> bool:
        """Until a hello joins the room; False if the connection is over."""
        try:
            async with asyncio.timeout(self.limits.hello_timeout):
                while self.session.state is State.AWAITING_HELLO:
                    received = await self.socket.receive()
                    if received is None:
                        return False
                    for action in self.session.receive(received, self.clock()):
                        if not await self._handshake_action(action):
                            return False
                return self.session.state is State.JOINED
        except TimeoutError:
            for action in self.session.hello_timeout():
                with suppress(OSError, RuntimeError):
                    await self._handshake_action(action)
            return False
        except OSError:  # the client went while we answered
            return False

    async def _handshake_action(self, action: Action) -> bool:
        """Carry out one action of the handshake; False once the connection is closed."""
        if isinstance(action, Send):
            self._count(action)
            await self._send_now(action.message)
        elif isinstance(action, Close):
            self.metrics.refusals.labels(action.refused or action.reason).inc()
            log.info("refused a hello: %s", action.refused or action.reason)
            await self.socket.close(action.code, action.reason)
            return False
        elif isinstance(action, Join):
            try:
                await self._join(action.plan)
            except Exception as exc:  # noqa: BLE001 -- the session says what it gets; bugs re-raise
                if isinstance(exc, RedisError):
                    log.warning("refused a hello: redis unavailable")
                    self.metrics.redis_command.inc()
                for reply in self.session.failed(exc, action.plan.ref):
                    if not await self._handshake_action(reply):
                        return False
        return True

    async def _join(self, plan: JoinPlan) -> None:
        if self.revoked is not None and await self.revoked(plan.claims.token_id):
            raise LinkRevoked("this link has been revoked: ask for a new one")
        await self.hub.join(
            plan.room,
            plan.participant,
            self,
            plan.arrive,
            window=plan.window,
            appointment=plan.claims.appointment,
            welcome=lambda room: self.deliver(self.session.joined(plan, room)),
            name=plan.name,
        )
        self.metrics.hellos.inc()
        log.debug("%s joined %s as %s", plan.participant, plan.room, plan.claims.role.value)

    async def _send_now(self, message: Message) -> None:
        await self.socket.send(self.session.codec.encode(message))

    async def _read(self) -> None:
        socket, loop = self.socket, asyncio.get_running_loop()
        while True:
            received = await socket.receive()
            if received is None:
                return
            if self._closing is not None:
                continue  # closing: wait for the client to go, ignore what it still sends
            self._seen = loop.time()
            for action in self.session.receive(received, self.clock()):
                await self._act(action)
            if socket.backlog:
                # Frames that arrived together are queued already, so receiving does not
                # suspend; let the flusher run, or a burst would fill this backlog (or a
                # peer's) faster than a reading client empties it, and cut it off as slow.
                await asyncio.sleep(0)

    async def _act(self, action: Action) -> None:
        """Carry out one action of a joined session."""
        if isinstance(action, Send):
            self._count(action)
            self.deliver(action.message)
            return
        try:
            if isinstance(action, Relay):
                await self.hub.relay(self.session.room, self.session.participant, action.to,
                                     action.message)  # fmt: skip
                self.metrics.relayed(action.kind)
            elif isinstance(action, Execute):
                await self._execute(action)
            elif isinstance(action, Retell):
                self.hub.retell(self.session.room, self.session.participant)
        except Exception as exc:  # noqa: BLE001 -- the session says what it gets; bugs below
            ref = action.ref if isinstance(action, Relay | Execute) else None
            try:
                replies = self.session.failed(exc, ref)
            except Exception:  # never crash on input, never show a trace to the client
                log.exception("unexpected failure handling a message from %s", self.pid)
                replies = [Send(error("internal_error", "the server could not handle this "
                                      "message", None, ref))]  # fmt: skip
            if isinstance(exc, RedisError):
                log.warning("could not handle a message from %s: redis unavailable", self.pid)
                self.metrics.redis_command.inc()
            for reply in replies:
                if isinstance(reply, Send):
                    self._count(reply)
                    self.deliver(reply.message)

    async def _execute(self, action: Execute) -> None:
        room_id = self.session.room
        if not action.admitting:
            await self.hub.execute(room_id, action.command)
            return
        # When each waiting person knocked, to measure the wait of those this lets in.
        before = self.hub.peek(room_id)
        knocked = {} if before is None else {p.id: p.knocked_at for p in before.waiting()}
        events = await self.hub.execute(room_id, action.command)
        self.metrics.admitted({p: at for p, at in knocked.items() if at is not None}, events)

    def _count(self, action: Send) -> None:
        if action.code is not None:
            self.metrics.errors.labels(action.code).inc()
