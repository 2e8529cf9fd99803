"""The per-connection protocol as a state machine, with no I/O (PROTOCOL.md §4, §5).

A `Session` is fed what the client sent (a frame) and the time, and says what to do: the
`Action` values below. It owns the protocol's rules for one connection: the hello first
and its checks (tokens, room, resume, name), the codec of the replies, the rate limit,
the dispatch of each message type, what is relayed and how, the idle rule, and which
error (and close code) each failure gets. The rules of the room itself are in
`admission.policy`, applied by the commands a session hands out: they run on the room's
fold in one synchronous call, so a check (the join window, who is still in the room) and
what it guards are never an await apart.

`signalling.connection.Connection` only pumps: it reads frames, feeds them in, carries out
the actions (sending, joining the hub, executing commands, relaying), and feeds back how
the ones that do I/O ended (`joined`, `failed`).

States: AWAITING_HELLO (every frame but a hello gets ``hello_required``) → JOINING (a
hello passed its checks; the connection is joining the room) → JOINED → CLOSING (nothing
more is read).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.exceptions import RedisClusterException, RedisError

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
from signalling.ice import ice_servers_for
from signalling.settings import Settings
from signalling.views import DELTAS, View, call_status_for
from signalling.wire import Codec, Message, decode, error

PROTOCOL_VERSION = 1
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013
CLOSE_UNAUTHORIZED = 4401
CLOSE_HELLO_TIMEOUT = 4408
CLOSE_NOT_OPEN = 4410
CLOSE_IDLE = 4412
TOKEN_LEEWAY = 5.0  # seconds of clock skew tolerated between the link's issuer and us
JOIN_NOW = "join_now"  # hello feature: the client confirms its own entry (Join now button)
RELAYED = frozenset({"offer", "answer", "candidate"})
# Commands that may let someone into the call (their waits are measured).
ADMITTING = frozenset({"start", "admit", "admit_all", "join", "knock"})

Handled = (SignallingError, AdmissionError, RoomError)
Refused = (TokenError, WrongRoom, InvalidResume, LinkRevoked)
Command = Callable[[Room], list[Event]]


class State(enum.Enum):
    AWAITING_HELLO = "awaiting_hello"
    JOINING = "joining"
    JOINED = "joined"
    CLOSING = "closing"


# -- actions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``message`` to the client (an error names its ``code``, for the metrics)."""

    message: Message
    code: str | None = None


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection with ``code``, after what was sent; ``refused`` names why a
    hello was refused (for the metrics)."""

    code: int
    reason: str
    refused: str | None = None


@dataclass(slots=True)
class JoinPlan:
    """What a hello that passed its checks joins with. ``arrive`` is the arrival command
    (it checks the join window on the room itself, unless the participant is still there);
    after it has run, ``was_present`` says whether the participant was already in the room
    (a resume)."""

    room: RoomId
    participant: ParticipantId
    claims: JoinClaims
    name: str | None
    booking: Booking
    window: JoinWindow | None
    join_now: bool
    connection: str
    deltas: bool  # the client takes the lists as deltas (hello feature "deltas", §6.8)
    now: float
    ref: object = None
    was_present: bool = False

    def arrive(self, room: Room) -> list[Event]:
        self.was_present = self.participant in room.participants
        if self.window is not None and not self.was_present:
            self.window.check(self.now)  # WindowError: nothing changes, the hello is refused
        return policy.arrive(
            room,
            self.participant,
            self.claims.role,
            now=self.now,
            connection=self.connection,
            booking=self.booking,
            join_now=self.join_now,
        )


@dataclass(frozen=True, slots=True)
class Join:
    """Check that the link is not revoked, then join the hub with ``plan``; report with
    `Session.joined` (passing the room, for the welcome) or `Session.failed`."""

    plan: JoinPlan


@dataclass(frozen=True, slots=True)
class Execute:
    """Run ``command`` on the room (the hub's compare-and-append); report a failure with
    `Session.failed`. ``admitting``: it may let people into the call (measured)."""

    kind: str
    command: Command
    ref: object
    admitting: bool


@dataclass(frozen=True, slots=True)
class Relay:
    """Pass ``message`` to participant ``to`` (the hub checks both are in the call);
    report a failure with `Session.failed`."""

    to: ParticipantId
    message: Message
    kind: str
    ref: object


@dataclass(frozen=True, slots=True)
class Retell:
    """Send the client its state again, the lists in full (it asked: ``resync``)."""


Action = Send | Close | Join | Execute | Relay | Retell


# -- the session ----------------------------------------------------------------------------


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


@dataclass(slots=True)
class Session:
    """One connection's protocol; see the module docstring."""

    settings: Settings
    connection: str
    now: float
    state: State = State.AWAITING_HELLO
    codec: Codec = Codec.JSON
    room: RoomId = RoomId("")  # noqa: RUF009 -- a NewType is the str itself
    participant: ParticipantId = ParticipantId("")  # noqa: RUF009
    claims: JoinClaims | None = None
    name: str | None = None
    booking: Booking = NO_BOOKING
    view: View = field(default_factory=View)
    _bucket: _Bucket | None = None

    def __post_init__(self) -> None:
        limits = self.settings.limits
        self._bucket = _Bucket(limits.rate_per_second, limits.rate_burst, self.now)

    # -- frames ---------------------------------------------------------------------------

    def receive(self, frame: str | bytes, now: float) -> list[Action]:
        """A frame from the client, at ``now``."""
        if self.state is State.AWAITING_HELLO:
            return self._handshake(frame, now)
        if self.state is not State.JOINED:
            return []  # joining (frames wait their turn) or closing: nothing more is read
        ref: object = None
        try:
            assert self._bucket is not None
            if not self._bucket.take(now):
                raise RateLimited(
                    "too many messages: this one was dropped",
                    {"rate_per_second": self.settings.limits.rate_per_second},
                )
            message, _ = decode(frame, self.settings.limits.max_message_bytes)
            ref = message.get("id")
            return self._dispatch(message, ref, now)
        except Handled as exc:
            return [self._error(exc, ref)]

    def _dispatch(self, message: Message, ref: object, now: float) -> list[Action]:
        kind = message["type"]
        pid = self.participant
        if kind == "ping":
            return [Send({"type": "pong"})]
        if kind in RELAYED:
            to = ParticipantId(message["to"])
            body = "candidate" if kind == "candidate" else "sdp"
            relayed = {"type": kind, "from": pid, body: message[body]}
            return [Relay(to, relayed, kind, ref)]
        if kind == "hello":
            raise DuplicateHello("hello was already accepted on this connection")
        if kind == "resync":
            self.view.versions.clear()  # what it has of the lists is forgotten: full ones
            return [Retell()]
        return [Execute(kind, self._command(kind, message, now), ref, kind in ADMITTING)]

    def _command(self, kind: str, message: Message, now: float) -> Command:
        pid = self.participant
        target = ParticipantId(message.get("participant_id", ""))
        if kind in ("knock", "join"):
            return lambda room: policy.ask(room, pid, now)
        if kind == "knock_cancel":
            return lambda room: room.cancel_knock(pid, now)
        if kind == "start":
            appointment = message.get("appointment")
            session = SessionId("s_" + secrets.token_urlsafe(9))
            closes_after = self.settings.window_closes_after
            own = self.booking
            return lambda room: policy.start(
                room,
                pid,
                session=session,
                now=now,
                appointment=None if appointment is None else AppointmentId(appointment),
                closes_after=closes_after,
                own=own,
            )
        if kind == "admit":
            return lambda room: policy.admit(room, pid, target, now)
        if kind == "deny":
            return lambda room: policy.deny(room, pid, target, message.get("message"), now)
        if kind == "admit_all":
            return lambda room: policy.admit_all(room, pid, now)
        if kind == "end":
            return lambda room: policy.end(room, pid, now)
        if kind == "notice":
            text = message.get("text", "")
            return lambda room: policy.notify(room, pid, text, now, target or None)
        assert kind == "leave", kind  # the wire knows no other client message
        return lambda room: room.leave(pid, now)

    # -- the handshake --------------------------------------------------------------------

    def _handshake(self, frame: str | bytes, now: float) -> list[Action]:
        # Until the hello is accepted, each frame is answered in its own codec (§1).
        self.codec = Codec.JSON if isinstance(frame, str) else Codec.MSGPACK
        ref: object = None
        try:
            message, _ = decode(frame, self.settings.limits.max_message_bytes)
            ref = message.get("id")
            if message["type"] != "hello":
                raise HelloRequired("the first message must be hello")
            plan = self._hello(message, ref, now)
        except Refused as exc:
            return self._refuse(exc, CLOSE_UNAUTHORIZED, ref)
        except Handled as exc:
            return [self._error(exc, ref)]
        self.state = State.JOINING
        return [Join(plan)]

    def _hello(self, message: Message, ref: object, now: float) -> JoinPlan:
        """Check the hello; the plan to join with, or raise to refuse it."""
        keyring = self.settings.keyring
        room_id = RoomId(message["room"])
        claims = decode_join(message["token"], keyring, now, leeway=TOKEN_LEEWAY)
        if claims.room != room_id:
            raise WrongRoom(f"this token is for another room than {room_id[:64]}")
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
        name = policy.display_name(claims.role, known_name, message.get("name"))
        booking = Booking(claims.appointment, claims.starts_at, claims.ends_at, claims.capacity)
        return JoinPlan(
            room=room_id,
            participant=pid,
            claims=claims,
            name=name,
            booking=booking,
            window=self._window(claims),
            join_now=JOIN_NOW in message.get("features", ()),
            deltas=DELTAS in message.get("features", ()),
            connection=self.connection,
            now=now,
            ref=ref,
        )

    def joined(self, plan: JoinPlan, room: Room) -> Message:
        """The join of ``plan`` was recorded (``room`` is the room after it): the session is
        joined, and this is the welcome to send before anything else."""
        self.state = State.JOINED
        self.room, self.participant, self.claims = plan.room, plan.participant, plan.claims
        self.name, self.booking = plan.name, plan.booking
        self.view.appointment, self.view.window = plan.claims.appointment, plan.window
        self.view.deltas = plan.deltas
        return self._welcome(room, resumed=plan.was_present, now=plan.now)

    def failed(self, exc: BaseException, ref: object = None) -> list[Action]:
        """What the I/O of a `Join`, `Execute` or `Relay` raised: the error for the client,
        and, for a hello, the refusal. Anything else than a refusal, an error of the rules
        or Redis being unreachable is re-raised (a bug: the connection logs it)."""
        joining = self.state is State.JOINING
        if joining:
            self.state = State.AWAITING_HELLO  # not joined: the client may send it again
        if isinstance(exc, Refused) and joining:
            return self._refuse(exc, CLOSE_UNAUTHORIZED, ref)
        if isinstance(exc, WindowError) and joining:
            return self._refuse(exc, CLOSE_NOT_OPEN, ref)
        if isinstance(exc, Handled):
            return [self._error(exc, ref)]
        if _unreachable(exc):
            down = Unavailable("the server cannot record this right now: try again shortly")
            if joining:
                return self._refuse(down, CLOSE_TRY_AGAIN, ref)
            return [self._error(down, ref)]
        raise exc

    def hello_timeout(self) -> list[Action]:
        """No hello was accepted within the deadline."""
        self.state = State.CLOSING
        timeout = self.settings.limits.hello_timeout
        return [
            Send(error("hello_timeout", f"no hello within {timeout:g} seconds")),
            Close(CLOSE_HELLO_TIMEOUT, "hello timeout", refused="hello_timeout"),
        ]

    def idle(self, silent_for: float) -> list[Action]:
        """The client has sent nothing for ``silent_for`` seconds (§4.4)."""
        if self.state is State.CLOSING or silent_for < self.settings.limits.idle_timeout:
            return []
        self.state = State.CLOSING
        return [Close(CLOSE_IDLE, "no message within the idle timeout")]

    def closing(self) -> None:
        """The connection is closing (cut off, replaced, left): read nothing more."""
        self.state = State.CLOSING

    # -- replies --------------------------------------------------------------------------

    def _error(self, exc: SignallingError | AdmissionError | RoomError, ref: object) -> Send:
        ref = getattr(exc, "ref", None) if ref is None else ref
        return Send(error(exc.code, exc.message, exc.details, ref), exc.code)

    def _refuse(
        self, exc: SignallingError | AdmissionError, code: int, ref: object
    ) -> list[Action]:
        self.state = State.CLOSING
        refusal = self._error(exc, ref)  # counted as a refusal (Close), not as an error
        return [Send(refusal.message), Close(code, exc.code, refused=exc.code)]

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
        participant = room.get(self.participant)
        settings = self.settings
        resume = ResumeClaims(
            room=self.room,
            participant=self.participant,
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
            self.participant,
            now,
            stun_urls=settings.stun_urls,
            turn_urls=settings.turn_urls,
            turn_secret=settings.turn_secret,
            turn_ttl=settings.turn_ttl,
        )
        return {
            "type": "welcome",
            "protocol": PROTOCOL_VERSION,
            "room": self.room,
            "participant_id": self.participant,
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
            "heartbeat_interval": settings.limits.heartbeat_interval,
            "ice_servers": [server.to_wire() for server in ice],
        }


def _unreachable(exc: BaseException) -> bool:
    """Redis cannot be reached or cannot answer now: a connection, timeout or server
    error, or a cluster's (a slot no shard serves during a failover), which redis-py does
    not make a RedisError."""
    return isinstance(exc, RedisError | RedisClusterException)
