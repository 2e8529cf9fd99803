"""Who gets in, when, and who decides (seed 002).

Each function here checks a rule and changes the room in one synchronous call, so no other
command can slip in between "is there room?" and "let them in".

The rules:
- Nobody but the host enters before the host starts the call; early arrivals wait in the
  waiting room (WAIT_FOR_HOST), and the host sees them.
- Once the call has started, booked patients join at once; guests (general link) join at
  once while the call is under its booked capacity, and at capacity must ask to join
  (ASK_TO_JOIN) and wait for the host to admit or deny them.
- When the host starts, the waiting room is let in, in arrival order, by the same rule;
  whoever the rule does not let in stays waiting as an ask.
- Only the host may start, end, admit, deny or admit all.
- Only participants in the call exchange call set-up messages, and only with each other.
"""

from __future__ import annotations

import enum
import unicodedata

from admission.errors import Forbidden, InvalidName, NameRequired, NotInCall, PeerNotAdmitted
from rooms.events import Event
from rooms.ids import AppointmentId, ParticipantId, SessionId
from rooms.participants import Participant, Stage
from rooms.roles import Role
from rooms.room import Room

MAX_NAME_LENGTH = 80


class Decision(enum.Enum):
    """What happens to a patient or guest who is in the room but not in the call."""

    JOIN_NOW = "join_now"
    WAIT_FOR_HOST = "wait_for_host"
    ASK_TO_JOIN = "ask_to_join"


def decide(room: Room, role: Role) -> Decision:
    """The entry decision for a newcomer with ``role`` given the room as it is now."""
    session = room.active_session
    if session is None:
        return Decision.WAIT_FOR_HOST
    if role is Role.PATIENT or room.occupancy() < session.capacity:
        return Decision.JOIN_NOW
    return Decision.ASK_TO_JOIN


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


def arrive(
    room: Room,
    pid: ParticipantId,
    role: Role,
    *,
    name: str | None,
    subject: str | None,
    now: float,
    connection: str | None = None,
) -> list[Event]:
    """Bring a participant into the room on ``connection`` and, if it is not already
    waiting or in the call, apply the entry decision: wait for the host, or join now. At
    capacity a guest stays in the lobby until it asks (`ask`). A returning participant
    keeps its place."""
    events = room.arrive(pid, role, name=name, subject=subject, now=now, connection=connection)
    participant = room.get(pid)
    if participant.is_host or participant.stage is not Stage.LOBBY:
        return events
    decision = decide(room, role)
    if decision is Decision.WAIT_FOR_HOST:
        events += room.knock(pid, now)
    elif decision is Decision.JOIN_NOW:
        events += room.enter(pid, now)
    return events


def ask(room: Room, pid: ParticipantId, now: float) -> list[Event]:
    """Ask to join (a knock): enter at once if the rule allows it now, else wait for the
    host's answer in the waiting room."""
    participant = room.get(pid)
    if participant.is_host:
        raise Forbidden("the host does not ask to join: start the call instead")
    if participant.stage is Stage.LOBBY and decide(room, participant.role) is Decision.JOIN_NOW:
        return room.enter(pid, now)
    return room.knock(pid, now)


def start(
    room: Room,
    actor: ParticipantId,
    *,
    session: SessionId,
    appointment: AppointmentId | None,
    capacity: int,
    now: float,
) -> list[Event]:
    """The host starts the call (or rejoins it). The waiting room, then anyone connected in
    the lobby (e.g. back from an earlier call that ended), is let in by the rule."""
    _require_host(room, actor, "start the call")
    events = room.start(actor, session=session, appointment=appointment, capacity=capacity, now=now)
    lobby = [
        p
        for p in room.participants.values()
        if p.stage is Stage.LOBBY and not p.is_host and p.connected
    ]
    for candidate in [*room.waiting(), *lobby]:
        if decide(room, candidate.role) is Decision.JOIN_NOW:
            events += room.enter(candidate.id, now)
    return events


def end(room: Room, actor: ParticipantId, now: float) -> list[Event]:
    _require_host(room, actor, "end the call")
    return room.end(actor, now)


def admit(room: Room, actor: ParticipantId, pid: ParticipantId, now: float) -> list[Event]:
    _require_host(room, actor, "admit")
    return room.admit(actor, pid, now)


def admit_all(room: Room, actor: ParticipantId, now: float) -> list[Event]:
    _require_host(room, actor, "admit all")
    return room.admit_all(actor, now)


def deny(
    room: Room, actor: ParticipantId, pid: ParticipantId, message: str | None, now: float
) -> list[Event]:
    _require_host(room, actor, "deny")
    return room.deny(actor, pid, message, now)


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
