"""Who gets in, when, and who decides (seeds 001 and 002): the waiting room guards the door.

Each function here checks a rule and changes the room in one synchronous call, so no other
command can slip in between "is there room?" and "let them in".

A clinician's room is persistent and serves one appointment after another, so every call
is for one appointment (or for none: an ad-hoc call), and every patient and guest carries
what their link says of their appointment (`rooms.participants.Booking`). The rules
(`decide`), for a patient or guest who is not in the call:

- No call is active: it waits in the waiting room (HOST_NOT_STARTED).
- A call is active but no host is in it (the host left, or its grace ran out): it waits
  (HOST_AWAY). Nobody enters by the rule without a host present.
- The call is for another appointment than its link's: it waits (HOST_BUSY, "your clinician
  is with another patient"); the host sees it in the waiting list and may admit it.
- Its link has no appointment and the call is for one: it must ask (NOT_BOOKED).
- The call is its own appointment's (or an ad-hoc call, for a link without one): a booked
  patient enters whatever the capacity; a guest enters under the booked capacity and must
  ask at capacity (AT_CAPACITY). A client that confirms its own entry ("Join now") is told
  it may join (HOST_READY) and enters when it asks.

When the host starts a call, the waiting room, then the connected lobby, is let in by the
same rule; the others stay where they are. Only the host may start, end, admit, deny or
admit all. A call ends by itself (`tick`) when its join window closes or when no host has
been in it for too long, and those in it go back to the waiting room. Only participants in
the call exchange call set-up messages, and only with each other.
"""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass

from admission.errors import (
    CallInProgress,
    Forbidden,
    InvalidName,
    NameRequired,
    NotInCall,
    PeerNotAdmitted,
    UnknownAppointment,
)
from admission.window import DEFAULT_CLOSES_AFTER
from rooms.errors import InvalidState
from rooms.events import Event, ExitCause, WaitReason
from rooms.ids import AppointmentId, ParticipantId, SessionId
from rooms.participants import NO_BOOKING, Booking, Participant, Session, Stage
from rooms.roles import Role
from rooms.room import Room

MAX_NAME_LENGTH = 80
MAX_NOTICE_LENGTH = 200  # the host's message to the waiting room ("running 10 minutes late")
DEFAULT_HOST_ABSENCE = 180.0  # seconds without a host in the call before it ends by itself


class Decision(enum.Enum):
    """What the rule says for a patient or guest who is in the room but not in the call."""

    JOIN_NOW = "join_now"  # it enters (or, with a Join now client, may enter)
    ASK_TO_JOIN = "ask_to_join"  # it may ask; the host admits or denies
    WAIT = "wait"  # it waits in the waiting room


@dataclass(frozen=True, slots=True)
class Verdict:
    """A decision and the reason a participant is told (HOST_READY for JOIN_NOW)."""

    decision: Decision
    reason: WaitReason


_NOT_STARTED = Verdict(Decision.WAIT, WaitReason.HOST_NOT_STARTED)
_AWAY = Verdict(Decision.WAIT, WaitReason.HOST_AWAY)
_BUSY = Verdict(Decision.WAIT, WaitReason.HOST_BUSY)
_NOT_BOOKED = Verdict(Decision.ASK_TO_JOIN, WaitReason.NOT_BOOKED)
_FULL = Verdict(Decision.ASK_TO_JOIN, WaitReason.AT_CAPACITY)
_ENTER = Verdict(Decision.JOIN_NOW, WaitReason.HOST_READY)


def decide(room: Room, participant: Participant) -> Verdict:
    """The entry rule for ``participant`` (a patient or guest) given the room as it is now.
    Constant time: the room keeps the counts it needs."""
    session = room.active_session
    if session is None:
        return _NOT_STARTED
    if not room.host_in_call():
        return _AWAY
    appointment = participant.booking.appointment
    if appointment != session.appointment:
        return _NOT_BOOKED if appointment is None else _BUSY
    if participant.role is Role.PATIENT and appointment is not None:
        return _ENTER
    return _ENTER if room.occupancy() < session.capacity else _FULL


def belongs(participant: Participant, session: Session) -> bool:
    """Whether ``participant`` may be let into ``session`` by `admit_all`: its link is for
    the call's appointment, or for none (it asked to join this call)."""
    appointment = participant.booking.appointment
    return appointment is None or appointment == session.appointment


def display_name(role: Role, token_name: str | None, given: str | None) -> str | None:
    """The name to show for a participant: the token's if it has one, else the one the
    participant typed. A guest must give one. Raise InvalidName or NameRequired."""
    if token_name is not None:
        return token_name
    if given is not None:
        name = " ".join(given.split())
        if not name or len(name) > MAX_NAME_LENGTH:
            raise InvalidName(
                f"display name must be 1 to {MAX_NAME_LENGTH} characters",
                {"max_length": MAX_NAME_LENGTH},
            )
        if any(unicodedata.category(ch).startswith("C") for ch in name):
            raise InvalidName("display name must not contain control characters")
        return name
    if role is Role.GUEST:
        raise NameRequired("a guest must give a display name to join")
    return None


def notice_text(text: str) -> str:
    """The host's message as it is kept and shown: control and format characters (Unicode
    category C) dropped, runs of whitespace made one space, the ends trimmed, at most
    `MAX_NOTICE_LENGTH` characters. "" takes a notice back."""
    kept = "".join(" " if ch.isspace() else ch for ch in text if ch.isspace() or not _control(ch))
    return " ".join(kept.split())[:MAX_NOTICE_LENGTH]


def _control(ch: str) -> bool:
    return unicodedata.category(ch).startswith("C")


def notify(
    room: Room, actor: ParticipantId, text: str, now: float, to: ParticipantId | None = None
) -> list[Event]:
    """The host leaves a message for everyone in the room (``to`` None) or for one
    participant, shown to them until it is replaced (by the next one for the same people);
    "" takes it back. Only the host may."""
    _require_host(room, actor, "send a notice")
    return room.notify(actor, notice_text(text), now, to)


def arrive(
    room: Room,
    pid: ParticipantId,
    role: Role,
    *,
    now: float,
    connection: str | None = None,
    booking: Booking = NO_BOOKING,
    join_now: bool = False,
) -> list[Event]:
    """Bring a participant into the room on ``connection`` and, if it is not already
    waiting or in the call, apply the entry rule: it waits in the waiting room, or enters
    (a Join now client waits there, told it may join), or stays in the lobby, free to ask
    (`ask`). A returning participant keeps its place."""
    events = room.arrive(
        pid,
        role,
        now=now,
        connection=connection,
        booking=booking,
        join_now=join_now,
    )
    participant = room.get(pid)
    if participant.is_host or participant.stage is not Stage.LOBBY:
        return events
    verdict = decide(room, participant)
    if verdict.decision is Decision.WAIT or (
        verdict.decision is Decision.JOIN_NOW and participant.join_now
    ):
        events += room.knock(pid, now, verdict.reason)
    elif verdict.decision is Decision.JOIN_NOW:
        events += room.enter(pid, now)
    return events


def ask(room: Room, pid: ParticipantId, now: float) -> list[Event]:
    """Ask to join, or Join now (``knock``, ``join``): enter at once if the rule allows it
    now, else wait for the host in the waiting room. From the waiting room only entry is
    possible: asking again while waiting is InvalidState."""
    participant = room.get(pid)
    if participant.is_host:
        raise Forbidden("the host does not ask to join: start the call instead")
    if participant.stage is Stage.IN_CALL:
        raise InvalidState(f"cannot ask to join for {pid}: already in the call", participant=pid)
    verdict = decide(room, participant)
    if verdict.decision is Decision.JOIN_NOW:
        return room.enter(pid, now)
    return room.knock(pid, now, verdict.reason)  # InvalidState if already waiting


def start(
    room: Room,
    actor: ParticipantId,
    *,
    session: SessionId,
    now: float,
    appointment: AppointmentId | None = None,
    closes_after: float = DEFAULT_CLOSES_AFTER,
    own: Booking | None = None,
) -> list[Event]:
    """The host starts a call (or rejoins the active one): for ``appointment`` if given,
    else for the appointment of the host's own link, ``own`` (by default what the host's
    first link said; none: an ad-hoc call).

    The call takes its capacity and its join window from a link for that appointment: the
    host's own, or else that of anyone in the room (the tokens are signed, so the room
    knows an appointment only from a link made for it); none is UnknownAppointment. The
    call ends by itself ``closes_after`` seconds after the appointment's end. Then the
    waiting room, then anyone connected in the lobby, is let in by the rule."""
    host = _require_host(room, actor, "start the call")
    own = host.booking if own is None else own
    active = room.active_session
    if active is not None:
        if appointment is not None and appointment != active.appointment:
            raise CallInProgress(
                f"cannot start a call for {appointment}: the call of "
                f"{active.appointment or 'no appointment'} is active; end it first",
                {"appointment": appointment, "active": active.appointment},
            )
        events = room.start(actor, session=active.id, appointment=None, capacity=1, now=now)
    else:
        booking = _booking(room, own, appointment)
        closes_at = None if booking.ends_at is None else booking.ends_at + closes_after
        events = room.start(
            actor,
            session=session,
            appointment=booking.appointment,
            capacity=booking.capacity or 1,
            now=now,
            closes_at=closes_at,
        )
    lobby = [
        p
        for p in room.participants.values()
        if p.stage is Stage.LOBBY and not p.is_host and p.connected
    ]
    for candidate in [*room.waiting(), *lobby]:
        if not candidate.join_now and decide(room, candidate).decision is Decision.JOIN_NOW:
            events += room.enter(candidate.id, now)
    return events


def _booking(room: Room, own: Booking, appointment: AppointmentId | None) -> Booking:
    """The booking a call for ``appointment`` takes its capacity and times from."""
    if appointment is None or appointment == own.appointment:
        return own
    found = [p.booking for p in room.participants.values() if p.appointment == appointment]
    if not found:
        raise UnknownAppointment(
            f"cannot start a call for {appointment}: no link for it is in this room",
            {"appointment": appointment},
        )
    return max(found, key=lambda b: (b.capacity or 1, b.ends_at or 0.0))


def end(room: Room, actor: ParticipantId, now: float) -> list[Event]:
    _require_host(room, actor, "end the call")
    return room.end(actor, now)


def admit(room: Room, actor: ParticipantId, pid: ParticipantId, now: float) -> list[Event]:
    """The host lets one waiting participant in, whatever its appointment and the capacity."""
    _require_host(room, actor, "admit")
    return room.admit(actor, pid, now)


def admit_all(room: Room, actor: ParticipantId, now: float) -> list[Event]:
    """The host admits everyone waiting for this call, in arrival order, whatever the
    capacity. Those waiting for another appointment (HOST_BUSY) stay: each of them takes an
    `admit` of its own."""
    _require_host(room, actor, "admit all")
    session = room.active_session
    who = [] if session is None else [p.id for p in room.waiting() if belongs(p, session)]
    return room.admit_all(actor, now, who)


def deny(
    room: Room, actor: ParticipantId, pid: ParticipantId, message: str | None, now: float
) -> list[Event]:
    _require_host(room, actor, "deny")
    return room.deny(actor, pid, message, now)


# -- the clock's part: grace periods and calls that end by themselves ----------------------


def due(room: Room, now: float, *, grace: float, host_absence: float) -> bool:
    """Whether `tick` has anything to do now: constant time while nobody's connection is
    lost; otherwise it looks at each participant."""
    if _ending(room, now, host_absence) is not None:
        return True
    return room.absent() > 0 and any(
        p.absent_since is not None and now - p.absent_since >= grace
        for p in room.participants.values()
    )


def tick(room: Room, now: float, *, grace: float, host_absence: float) -> list[Event]:
    """What time alone does to a room: remove those whose connection has been lost for
    ``grace`` seconds; end the active call when its appointment's join window has closed
    (WINDOW_CLOSED) or when no host has been in it for ``host_absence`` seconds
    (HOST_ABSENT). Those who were in an ended call go back to the waiting room."""
    events = room.expire(now, grace)
    cause = _ending(room, now, host_absence)
    if cause is None:
        return events
    back = [p.id for p in room.in_call() if not p.is_host]
    events += room.end(None, now, cause)
    for pid in back:
        events += room.knock(pid, now, WaitReason.HOST_NOT_STARTED)
    return events


def _ending(room: Room, now: float, host_absence: float) -> ExitCause | None:
    session = room.active_session
    if session is None:
        return None
    if session.closes_at is not None and now > session.closes_at:
        return ExitCause.WINDOW_CLOSED
    away = session.host_away_since
    if away is not None and now - away >= host_absence:
        return ExitCause.HOST_ABSENT
    return None


def check_signal(room: Room, sender: ParticipantId, recipient: ParticipantId) -> None:
    """Raise unless ``sender`` may send call set-up messages to ``recipient``: both must be
    in the room's current call, and they must be different participants."""
    if room.get(sender).stage is not Stage.IN_CALL:
        raise NotInCall(f"cannot signal: {sender} is not in the call")
    if recipient == sender:
        raise PeerNotAdmitted("cannot signal oneself", {"participant": recipient})
    peer = room.participants.get(recipient)
    if peer is None or peer.stage is not Stage.IN_CALL:
        raise PeerNotAdmitted(
            f"cannot signal {recipient}: participant is not in the call",
            {"participant": recipient},
        )


def _require_host(room: Room, actor: ParticipantId, verb: str) -> Participant:
    participant = room.get(actor)
    if not participant.is_host:
        raise Forbidden(f"only the host may {verb}", {"role": participant.role.value})
    return participant
