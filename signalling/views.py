"""What each participant is told after a room changes.

Two kinds of message leave the server when events are applied:
- notices about one participant, from the events themselves: ``admitted`` (it entered the
  call), ``denied``, ``ended`` (the host ended the call it was in);
- state, sent whenever the participant's view of it changed: ``status`` (call status),
  ``waiting`` (its reason and place), ``roster`` (who is in the call), ``waiting_list``
  (hosts only). `View` remembers what was last sent, so a change is sent once.

Shared payloads (the roster, the waiting list) are built once per change, not once per
participant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from admission.policy import Decision, decide
from rooms.events import Event, EventKind, ExitCause
from rooms.ids import AppointmentId, ParticipantId
from rooms.participants import Participant, Stage
from rooms.room import Room
from rooms.status import CallStatus, call_status
from signalling.wire import Message


@dataclass(slots=True)
class View:
    """What one connection was last told of each kind of state."""

    sent: dict[str, object] = field(default_factory=dict)


class Snapshot:
    """The room's shared payloads after a change, built on first use."""

    def __init__(
        self, room: Room, *, appointment: AppointmentId | None, window_closed: bool
    ) -> None:
        self.room = room
        self.appointment = appointment
        self.window_closed = window_closed

    @cached_property
    def status(self) -> CallStatus:
        return call_status(
            self.room, appointment=self.appointment, window_closed=self.window_closed
        )

    @cached_property
    def roster(self) -> list[dict[str, object]]:
        return [_person(p) for p in self.room.in_call()]

    @cached_property
    def waiting_list(self) -> list[dict[str, object]]:
        reason = self.room.wait_reason().value
        return [
            {**_person(p), "reason": reason, "position": i, "since": p.knocked_at}
            for i, p in enumerate(self.room.waiting(), start=1)
        ]


def _person(p: Participant) -> dict[str, object]:
    # "connected" lets peers see a participant drop (and come back) within its grace period
    return {"participant_id": p.id, "role": p.role.value, "name": p.name, "connected": p.connected}


def notices(pid: ParticipantId, events: list[Event]) -> list[Message]:
    """Messages about ``pid`` itself, from the events of one command."""
    out: list[Message] = []
    admitted_by: ParticipantId | None = None
    for event in events:
        if event.participant != pid:
            continue
        kind = event.kind
        if kind is EventKind.ADMITTED:
            admitted_by = event.actor
        elif kind in (EventKind.PATIENT_ENTERED, EventKind.CLINICIAN_ENTERED):
            out.append({"type": "admitted", "session_id": event.session, "by": admitted_by})
        elif kind is EventKind.DENIED:
            out.append({"type": "denied", "message": event.message})
        elif kind in (EventKind.PATIENT_EXITED, EventKind.CLINICIAN_EXITED) and (
            event.cause is ExitCause.SESSION_ENDED
        ):
            out.append({"type": "ended", "session_id": event.session})
    return out


def updates(view: View, pid: ParticipantId, snapshot: Snapshot) -> list[Message]:
    """State messages for ``pid`` whose content changed since ``view`` last saw them."""
    participant = snapshot.room.participants.get(pid)
    if participant is None:
        return []
    wanted: dict[str, Message | None] = {
        "status": {"type": "status", "call_status": snapshot.status.value},
        "waiting": _waiting(snapshot.room, participant),
        "roster": (
            {"type": "roster", "participants": snapshot.roster}
            if participant.is_host or participant.stage is Stage.IN_CALL
            else None
        ),
        "waiting_list": (
            {"type": "waiting_list", "entries": snapshot.waiting_list}
            if participant.is_host
            else None
        ),
    }
    out: list[Message] = []
    for key, message in wanted.items():
        if message is not None and view.sent.get(key) != message:
            out.append(message)
        view.sent[key] = message
    return out


def _waiting(room: Room, participant: Participant) -> Message | None:
    if participant.is_host or participant.stage is Stage.IN_CALL:
        return None
    if participant.stage is Stage.WAITING:
        return {
            "type": "waiting",
            "reason": room.wait_reason().value,
            "position": room.position(participant.id),
            "can_ask": False,
        }
    decision = decide(room, participant.role)
    can_ask = decision is not Decision.WAIT_FOR_HOST
    return {
        "type": "waiting",
        "reason": room.wait_reason().value,
        "position": None,
        "can_ask": can_ask,
    }
