"""One client's WebSocket, from accept to close.

A connection first waits (up to ``hello_timeout``) for a valid ``hello``; nothing else is
accepted before it. Then it reads: it decodes, checks and hands each message to the hub.
Messages for the client go out through `ClientSocket.write`, which never waits: straight to
the transport when it can take them, else into a bounded backlog; a client that lets
``limits.outbox`` messages pile up is cut off at once (close 4429, best effort) and detached.
A client that sends nothing for ``idle_timeout`` is closed (4412) by a timer that is re-armed
lazily, so a frame costs one timestamp, not a timeout context; a check that runs late
(the loop was stalled) looks again after the reader's turn instead of closing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from contextlib import suppress

from redis.exceptions import RedisError

from admission import policy
from admission.errors import AdmissionError, TokenError, WindowError
from admission.tokens import (
    JoinClaims,
    ResumeClaims,
    decode_join,
    decode_resume,
    encode_resume,
    new_token_id,
)
from admission.window import JoinWindow
from rooms.errors import RoomError
from rooms.events import Event
from rooms.ids import AppointmentId, ParticipantId, RoomId, SessionId
from rooms.participants import NO_BOOKING, Booking
from rooms.room import Room
from signalling.api.links import is_revoked
from signalling.client_socket import ClientSocket, Frame
from signalling.errors import (
    DuplicateHello,
    HelloRequired,
    InvalidResume,
    LinkRevoked,
    RateLimited,
    SignallingError,
    Unavailable,
    WrongRoom,
)
from signalling.hub import Command, Hub
from signalling.ice import ice_servers_for
from signalling.metrics import Metrics
from signalling.settings import Settings
from signalling.views import View, call_status_for, frame
from signalling.wire import Codec, Message, decode, error

log = logging.getLogger("vestibule.signalling.connection")


def _unavailable() -> Unavailable:
    return Unavailable("the server cannot record this right now: try again shortly")


PROTOCOL_VERSION = 1
CLOSE_INTERNAL = 1011
CLOSE_UNAUTHORIZED = 4401
CLOSE_HELLO_TIMEOUT = 4408
CLOSE_IDLE = 4412
CLOSE_NOT_OPEN = 4410
CLOSE_SLOW = 4429
CLOSE_TRY_AGAIN = 1013
IDLE_LATE = 0.05  # seconds: an idle check that runs later than this saw a stalled loop
TOKEN_LEEWAY = 5.0  # seconds of clock skew tolerated between the link's issuer and us
JOIN_NOW = "join_now"  # hello feature: the client confirms its own entry (Join now button)
# Commands that may let someone into the call: their waits are measured (Metrics.admitted).
ADMITTING = frozenset({"start", "admit", "admit_all", "join", "knock"})

Handled = (SignallingError, AdmissionError, RoomError)


class _Bucket:
    """Token bucket: ``rate`` messages a second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, float(burst), float(burst), now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class Connection:
    """Serve one client. Create it per WebSocket and await `run`."""

    def __init__(
        self,
        socket: ClientSocket,
        hub: Hub,
        settings: Settings,
        clock: Callable[[], float],
        metrics: Metrics | None = None,
    ) -> None:
        self.socket = socket
        self.metrics = metrics or Metrics()
        self.hub = hub
        self.settings = settings
        self.limits = settings.limits
        self.clock = clock
        self.view = View()
        self.connection_id = "c_" + secrets.token_urlsafe(9)
        self.codec = Codec.JSON
        self.room_id = RoomId("")
        self.pid = ParticipantId("")
        self.claims: JoinClaims | None = None
        self.booking = NO_BOOKING  # what this connection's join token says of its appointment
        self.name: str | None = None  # the display name others see
        self._closing: int | None = None  # the close code, once closing
        self._reader: asyncio.Task[object] | None = None
        self._seen = 0.0  # loop time of the last frame from the client
        self._idle: asyncio.TimerHandle | None = None
        self._bucket = _Bucket(self.limits.rate_per_second, self.limits.rate_burst, clock())

    # -- what the hub calls ---------------------------------------------------------------

    def deliver(self, message: Message) -> None:
        if self._closing is not None:
            return
        if not self.socket.write(frame(message, self.codec)):
            # The client reads nothing and its buffers are full: a close queued behind the
            # backlog would never go out. Let go of it now: the reader stops, the
            # participant is detached (its grace period starts) and the socket is closed.
            log.warning("cutting off %s in %s: outbox full", self.pid, self.room_id)
            self._closing = CLOSE_SLOW
            self.socket.abandon()
            if self._reader is not None:
                self._reader.cancel()

    def close(self, code: int, reason: str) -> None:
        if self._closing is None:
            self._closing = code
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
                await self.hub.detach(self.room_id, self.pid, self)
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
            self.close(CLOSE_IDLE, "no message within the idle timeout")

    async def _handshake(self) -> bool:
        """Wait for a valid hello and join its room; False if the connection is over."""
        try:
            async with asyncio.timeout(self.limits.hello_timeout):
                while True:
                    frame = await self.socket.receive()
                    if frame is None:
                        return False
                    ref: object = None
                    self.codec = Codec.JSON if isinstance(frame, str) else Codec.MSGPACK
                    try:
                        message, _ = decode(frame, self.limits.max_message_bytes)
                        ref = message.get("id")
                        if message["type"] != "hello":
                            raise HelloRequired("the first message must be hello")
                        await self._hello(message)
                        return True
                    except (TokenError, WrongRoom, InvalidResume, LinkRevoked) as exc:
                        await self._refuse(exc, CLOSE_UNAUTHORIZED, ref)
                        return False
                    except WindowError as exc:
                        await self._refuse(exc, CLOSE_NOT_OPEN, ref)
                        return False
                    except RedisError:
                        log.warning("refused a hello: redis unavailable")
                        self.metrics.redis_command.inc()
                        await self._refuse(_unavailable(), CLOSE_TRY_AGAIN, ref)
                        return False
                    except Handled as exc:
                        ref = getattr(exc, "ref", None) if ref is None else ref
                        self.metrics.errors.labels(exc.code).inc()
                        await self._send_now(error(exc.code, exc.message, exc.details, ref))
        except TimeoutError:
            self.metrics.refusals.labels("hello_timeout").inc()
            with suppress(OSError, RuntimeError):
                await self._send_now(
                    error("hello_timeout", f"no hello within {self.limits.hello_timeout:g} seconds")
                )
            await self.socket.close(CLOSE_HELLO_TIMEOUT, "hello timeout")
            return False
        except OSError:  # the client went while we answered
            return False

    async def _refuse(self, exc: SignallingError | AdmissionError, code: int, ref: object) -> None:
        log.info("refused a hello: %s", exc.code)
        self.metrics.refusals.labels(exc.code).inc()
        with suppress(OSError, RuntimeError):
            await self._send_now(error(exc.code, exc.message, exc.details, ref))
        await self.socket.close(code, exc.code)

    async def _send_now(self, message: Message) -> None:
        await self.socket.send(self.codec.encode(message))

    async def _read(self) -> None:
        socket, loop = self.socket, asyncio.get_running_loop()
        while True:
            frame = await socket.receive()
            if frame is None:
                return
            if self._closing is not None:
                continue  # closing: wait for the client to go, ignore what it still sends
            self._seen = loop.time()
            await self._handle_frame(frame)
            if socket.backlog:
                # Frames that arrived together are queued already, so receiving does not
                # suspend; let the flusher run, or a burst would fill this backlog (or a
                # peer's) faster than a reading client empties it, and cut it off as slow.
                await asyncio.sleep(0)

    # -- messages -------------------------------------------------------------------------

    async def _handle_frame(self, frame: Frame) -> None:
        ref: object = None
        try:
            if not self._bucket.take(self.clock()):
                raise RateLimited(
                    "too many messages: this one was dropped",
                    {"rate_per_second": self.limits.rate_per_second},
                )
            message, _ = decode(frame, self.limits.max_message_bytes)
            ref = message.get("id")
            await self._handle(message)
        except Handled as exc:
            ref = getattr(exc, "ref", None) if ref is None else ref
            self.metrics.errors.labels(exc.code).inc()
            self.deliver(error(exc.code, exc.message, exc.details, ref))
        except RedisError:
            log.warning("could not handle a message from %s: redis unavailable", self.pid)
            self.metrics.redis_command.inc()
            down = _unavailable()
            self.deliver(error(down.code, down.message, down.details, ref))
        except Exception:  # never crash on input, never show a trace to the client
            log.exception("unexpected failure handling a message from %s", self.pid)
            self.deliver(
                error("internal_error", "the server could not handle this message", None, ref)
            )

    async def _handle(self, message: Message) -> None:
        kind = message["type"]
        pid, now, hub, room_id = self.pid, self.clock(), self.hub, self.room_id
        if kind == "ping":
            self.deliver({"type": "pong"})
        elif kind == "candidate":
            to = ParticipantId(message["to"])
            relayed = {"type": "candidate", "from": pid, "candidate": message["candidate"]}
            await hub.relay(room_id, pid, to, relayed)
            self.metrics.relayed_candidate.inc()
        elif kind == "offer":
            to = ParticipantId(message["to"])
            await hub.relay(room_id, pid, to, {"type": kind, "from": pid, "sdp": message["sdp"]})
            self.metrics.relayed_offer.inc()
        elif kind == "answer":
            to = ParticipantId(message["to"])
            await hub.relay(room_id, pid, to, {"type": kind, "from": pid, "sdp": message["sdp"]})
            self.metrics.relayed_answer.inc()
        elif kind == "hello":
            raise DuplicateHello("hello was already accepted on this connection")
        elif kind in ADMITTING:
            # When each waiting person knocked, to measure the wait of those this lets in.
            before = hub.peek(room_id)
            knocked = {} if before is None else {p.id: p.knocked_at for p in before.waiting()}
            events = await hub.execute(room_id, self._command(kind, message, now))
            self.metrics.admitted({p: at for p, at in knocked.items() if at is not None}, events)
        else:
            await hub.execute(room_id, self._command(kind, message, now))

    def _command(self, kind: str, message: Message, now: float) -> Command:
        pid = self.pid
        assert self.claims is not None
        target = ParticipantId(message.get("participant_id", ""))
        appointment = message.get("appointment")
        commands: dict[str, Command] = {
            "knock": lambda room: policy.ask(room, pid, now),
            "join": lambda room: policy.ask(room, pid, now),
            "knock_cancel": lambda room: room.cancel_knock(pid, now),
            "start": lambda room: policy.start(
                room,
                pid,
                session=SessionId("s_" + secrets.token_urlsafe(9)),
                now=now,
                appointment=None if appointment is None else AppointmentId(appointment),
                closes_after=self.settings.window_closes_after,
                own=self.booking,
            ),
            "admit": lambda room: policy.admit(room, pid, target, now),
            "deny": lambda room: policy.deny(room, pid, target, message.get("message"), now),
            "admit_all": lambda room: policy.admit_all(room, pid, now),
            "end": lambda room: policy.end(room, pid, now),
            "notice": lambda room: policy.notify(
                room, pid, message.get("text", ""), now, target or None
            ),
            "leave": lambda room: room.leave(pid, now),
        }
        return commands[kind]

    # -- hello ----------------------------------------------------------------------------

    async def _hello(self, message: Message) -> None:
        """Check the hello and join the room; raise to refuse it."""
        now = self.clock()
        keyring = self.settings.keyring
        room_id = RoomId(message["room"])
        claims = decode_join(message["token"], keyring, now, leeway=TOKEN_LEEWAY)
        if claims.room != room_id:
            raise WrongRoom(f"this token is for another room than {room_id[:64]}")
        if await is_revoked(self.hub.redis, claims.token_id):
            raise LinkRevoked("this link has been revoked: ask for a new one")
        pid = self._participant_id(claims)
        known_name = claims.name
        if "resume" in message:
            resume = decode_resume(message["resume"], keyring, now, leeway=TOKEN_LEEWAY)
            # A booked person's participant id follows from its token: a resume token can
            # only bring back that same participant, never take over another one.
            if (
                resume.room != room_id
                or resume.role is not claims.role
                or (claims.subject is not None and resume.participant != pid)
            ):
                raise InvalidResume("the resume token does not match the join token")
            pid = resume.participant
            known_name = known_name or resume.name
        window = self._window(claims)
        present = pid in (await self.hub.room(room_id)).participants
        if window is not None and not present:
            window.check(now)
        name = self.name = policy.display_name(claims.role, known_name, message.get("name"))
        self.room_id, self.pid, self.claims = room_id, pid, claims
        self.view.appointment, self.view.window = claims.appointment, window

        connection = self.connection_id
        booking = self.booking = Booking(
            claims.appointment, claims.starts_at, claims.ends_at, claims.capacity
        )
        join_now = JOIN_NOW in message.get("features", ())

        def arrive(room: Room) -> list[Event]:
            return policy.arrive(
                room,
                pid,
                claims.role,
                now=now,
                connection=connection,
                booking=booking,
                join_now=join_now,
            )

        await self.hub.join(
            room_id,
            pid,
            self,
            arrive,
            window=window,
            appointment=claims.appointment,
            welcome=lambda room: self.deliver(self._welcome(room, resumed=present, now=now)),
            name=name,
        )
        self.metrics.hellos.inc()
        log.info("%s joined %s as %s", pid, room_id, claims.role.value)

    def _participant_id(self, claims: JoinClaims) -> ParticipantId:
        """A booked person (a token with a subject) is always the same participant in a
        room, so a second connection replaces the first instead of queueing twice. A
        general-link guest is new each time unless it resumes."""
        if claims.subject is None:
            return ParticipantId("g_" + secrets.token_urlsafe(9))
        # Keyed, not a bare hash: the clinic's ids for people are guessable, and an id seen
        # in a log or an event must not give them back.
        mac = hmac.new(
            self.settings.participant_key,
            f"{claims.room}\0{claims.role.value}\0{claims.subject}".encode(),
            hashlib.sha256,
        )
        return ParticipantId("p_" + mac.hexdigest()[:16])

    def _window(self, claims: JoinClaims) -> JoinWindow | None:
        if claims.starts_at is None or claims.ends_at is None:
            return None  # a room without an appointment is always open
        return JoinWindow.around(
            claims.starts_at,
            claims.ends_at,
            opens_before=self.settings.window_opens_before,
            closes_after=self.settings.window_closes_after,
        )

    def _welcome(self, room: Room, *, resumed: bool, now: float) -> Message:
        assert self.claims is not None
        participant = room.get(self.pid)
        settings = self.settings
        resume = ResumeClaims(
            room=self.room_id,
            participant=self.pid,
            role=participant.role,
            name=self.name,
            appointment=self.claims.appointment,
            not_before=now,
            expires_at=now + settings.resume_ttl,
            token_id=new_token_id(),
        )
        status = call_status_for(room, self.view, now).value
        self.view.sent["status"] = {"type": "status", "call_status": status}
        session = room.active_session
        ice = ice_servers_for(
            self.pid,
            now,
            stun_urls=settings.stun_urls,
            turn_urls=settings.turn_urls,
            turn_secret=settings.turn_secret,
            turn_ttl=settings.turn_ttl,
        )
        return {
            "type": "welcome",
            "protocol": PROTOCOL_VERSION,
            "room": self.room_id,
            "participant_id": self.pid,
            "role": participant.role.value,
            "name": self.name,
            "stage": participant.stage.value,
            "call_status": status,
            "appointment_id": self.booking.appointment,
            "starts_at": self.booking.starts_at,
            "session_id": session.id if session is not None else None,
            "resumed": resumed,
            "resume_token": encode_resume(resume, settings.keyring),
            "resume_grace": settings.resume_grace,
            "heartbeat_interval": self.limits.heartbeat_interval,
            "ice_servers": [server.to_wire() for server in ice],
        }
