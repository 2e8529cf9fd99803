"""Domain events: what happened in a room, when, and who did it.

A room's state is the fold of its events (`rooms.room.Room.apply`); the same events, in
order, are the room's activity timeline. Events are plain values: `to_record` and
`from_record` turn them into dicts of primitives for any storage codec.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from rooms.ids import AppointmentId, ParticipantId, SessionId
from rooms.roles import Role


class EventKind(enum.Enum):
    ARRIVED = "arrived"  # connected to the room; not yet waiting or in the call
    DEPARTED = "departed"  # gone from the room
    KNOCKED = "knocked"  # joined the waiting room
    KNOCK_CANCELLED = "knock_cancelled"  # left the waiting room without being let in
    ADMITTED = "admitted"  # the host let a waiting participant in
    DENIED = "denied"  # the host turned a waiting participant away
    PATIENT_ENTERED = "patient_entered"  # a patient or guest entered the call
    PATIENT_EXITED = "patient_exited"
    CLINICIAN_ENTERED = "clinician_entered"  # the host entered the call
    CLINICIAN_EXITED = "clinician_exited"
    SESSION_STARTED = "session_started"
    SESSION_ENDED = "session_ended"
    DISCONNECTED = "disconnected"  # connection lost; the place is kept for a grace period
    RECONNECTED = "reconnected"


class WaitReason(enum.Enum):
    """Why a participant is in the waiting room."""

    HOST_NOT_STARTED = "host_not_started"
    AT_CAPACITY = "at_capacity"


class ExitCause(enum.Enum):
    """Why a participant left the waiting room, the call or the room."""

    LEFT = "left"  # the participant chose to
    CANCELLED = "cancelled"  # withdrew a knock but stayed connected
    TIMED_OUT = "timed_out"  # disconnected for longer than the grace period
    SESSION_ENDED = "session_ended"  # the host ended the call
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class Event:
    """One domain event.

    ``actor`` did it (None when the system did, e.g. a grace period ran out);
    ``participant`` is whom it concerns. The other fields are set only by the kinds that
    carry them: ``role``/``name``/``subject`` on ARRIVED, ``reason`` on KNOCKED, ``cause``
    on exits and departures, ``message`` on DENIED, ``session`` on session and call
    events, ``appointment``/``capacity`` on SESSION_STARTED, ``connection`` (which
    connection of the participant) on ARRIVED, RECONNECTED and DISCONNECTED.
    """

    kind: EventKind
    at: float
    actor: ParticipantId | None = None
    participant: ParticipantId | None = None
    role: Role | None = None
    name: str | None = None
    subject: str | None = None
    reason: WaitReason | None = None
    cause: ExitCause | None = None
    message: str | None = None
    session: SessionId | None = None
    appointment: AppointmentId | None = None
    capacity: int | None = None
    connection: str | None = None

    def to_record(self) -> dict[str, str | int | float]:
        """The event as a dict of primitives, leaving out unset fields."""
        record: dict[str, str | int | float] = {"kind": self.kind.value, "at": self.at}
        for key, value in _OPTIONAL.items():
            field = getattr(self, key)
            if field is not None:
                record[key] = field.value if value is not None else field
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> Event:
        """Rebuild an event written by `to_record`; raise ValueError on anything else."""
        try:
            kind = EventKind(record["kind"])
            at = record["at"]
            # `abs(at) <= max` also fails for NaN and infinities, and compares a huge int
            # exactly, where float(at) would raise OverflowError instead of ValueError.
            if not isinstance(at, int | float) or isinstance(at, bool):
                raise ValueError("event time must be a number")
            if not abs(at) <= sys.float_info.max:
                raise ValueError("event time must be a finite number")
            fields: dict[str, object] = {}
            for key, enum_type in _OPTIONAL.items():
                raw = record.get(key)
                if raw is None:
                    continue
                if enum_type is not None:
                    fields[key] = enum_type(raw)
                elif key == "capacity":
                    fields[key] = _expect(raw, int, key)
                else:
                    fields[key] = _expect(raw, str, key)
        except KeyError as exc:
            raise ValueError(f"event record lacks {exc.args[0]!r}") from None
        unknown = set(record) - set(_OPTIONAL) - {"kind", "at"}
        if unknown:
            raise ValueError(f"event record has unknown fields {sorted(unknown)}")
        missing = _REQUIRED.get(kind, {"participant"}) - set(fields)
        if missing:
            raise ValueError(f"{kind.value} event record lacks {sorted(missing)}")
        return cls(kind, float(at), **fields)  # type: ignore[arg-type]


_OPTIONAL: dict[str, type[enum.Enum] | None] = {
    "actor": None,
    "participant": None,
    "role": Role,
    "name": None,
    "subject": None,
    "reason": WaitReason,
    "cause": ExitCause,
    "message": None,
    "session": None,
    "appointment": None,
    "capacity": None,
    "connection": None,
}


# What `Room.apply` needs of each kind; every other kind needs a participant.
_REQUIRED: dict[EventKind, set[str]] = {
    EventKind.SESSION_STARTED: {"session", "capacity"},
    EventKind.SESSION_ENDED: set(),
    EventKind.ARRIVED: {"participant", "role"},
}


def _expect(raw: object, kind: type, key: str) -> object:
    if not isinstance(raw, kind) or isinstance(raw, bool):
        raise ValueError(f"event field {key!r} must be {kind.__name__}")
    return raw
