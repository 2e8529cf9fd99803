"""What the clinic's systems read about a room: its call status and each appointment's
outcome, folded from the room's events (seed 000's call status, seed 001's completed and
no-show).

`Projection` is pure and serialisable (`to_record` / `from_record`), so a projector can
store it with the id of the last event it folded and resume from there: replaying from a
checkpoint never counts an event twice. Its room is a snapshot of the room at that event,
which is what a node loads a room from. What it keeps per appointment is forgotten once
the appointment is long over (`forget`), so it stays the size of the room's present.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rooms.events import Event, EventKind
from rooms.ids import AppointmentId
from rooms.room import Room
from rooms.status import CallStatus, call_status


class Outcome(enum.Enum):
    COMPLETED = "completed"  # a call with the patient took place
    NO_SHOW = "no_show"  # the join window closed and no patient ever entered


@dataclass(slots=True)
class Projection:
    room: Room
    seen_patient: set[AppointmentId] = field(default_factory=set)
    outcomes: dict[AppointmentId, Outcome] = field(default_factory=dict)
    # Windows known to be over, with when they closed.
    closed: dict[AppointmentId, float] = field(default_factory=dict)
    sessions_completed: int = 0

    def apply(self, event: Event) -> None:
        """Fold one event, in stream order."""
        session = self.room.active_session
        self.room.apply(event)
        appointment = session.appointment if session is not None else None
        if appointment is None:
            return
        if event.kind is EventKind.PATIENT_ENTERED:
            self.seen_patient.add(appointment)
        elif event.kind is EventKind.SESSION_ENDED and appointment in self.seen_patient:
            self.outcomes.setdefault(appointment, Outcome.COMPLETED)
            self.sessions_completed += 1

    def close_window(self, appointment: AppointmentId, at: float) -> Outcome:
        """The appointment's join window closed ``at``: settle its outcome (idempotent)."""
        self.closed.setdefault(appointment, at)
        if appointment not in self.outcomes:
            seen = appointment in self.seen_patient
            self.outcomes[appointment] = Outcome.COMPLETED if seen else Outcome.NO_SHOW
        return self.outcomes[appointment]

    def forget(self, before: float) -> list[AppointmentId]:
        """Drop what is kept of the appointments whose window closed before ``before``
        (their outcome has been passed on, and nobody asks for their status any more);
        return them."""
        gone = [a for a, at in self.closed.items() if at < before]
        for appointment in gone:
            del self.closed[appointment]
            self.outcomes.pop(appointment, None)
            self.seen_patient.discard(appointment)
        return gone

    def status(self, appointment: AppointmentId | None) -> CallStatus:
        return call_status(
            self.room, appointment=appointment, window_closed=appointment in self.closed
        )

    # -- storage --------------------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        return {
            "room": self.room.snapshot(),
            "seen_patient": sorted(self.seen_patient),
            "outcomes": {a: o.value for a, o in sorted(self.outcomes.items())},
            "closed": {a: at for a, at in sorted(self.closed.items())},
            "sessions_completed": self.sessions_completed,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Projection:
        """Rebuild a projection written by `to_record` (trusted storage: anything else
        raises KeyError, TypeError or ValueError)."""
        return cls(
            Room.from_snapshot(record["room"]),
            seen_patient={AppointmentId(a) for a in record["seen_patient"]},
            outcomes={AppointmentId(a): Outcome(o) for a, o in record["outcomes"].items()},
            closed={AppointmentId(a): float(at) for a, at in record["closed"].items()},
            sessions_completed=int(record["sessions_completed"]),
        )
