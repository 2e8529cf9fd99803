"""Domain events: what happened in a room, when, and who did it.

A room's state is the fold of its events (`rooms.room.Room.apply`); the same events, in
order, are the room's activity timeline. Events are plain values: `to_record` and
`from_record` turn them into dicts of primitives for any storage codec.

Events are pseudonymous: they name participants by id only, never by name, e-mail, phone
or the clinic's id for them, because they are kept (for the activity timeline and the
audit trail) longer than anyone needs a name.
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
    NOTICE = "notice"  # the host's message to the waiting room, or to one participant


class WaitReason(enum.Enum):
    """Why a patient or guest is not in the call (see `admission.policy.decide`)."""

    HOST_NOT_STARTED = "host_not_started"  # no call is active
    HOST_AWAY = "host_away"  # a call is active, but no host is in it
    HOST_BUSY = "host_busy"  # the host is in the call of another appointment
    AT_CAPACITY = "at_capacity"  # the call is at its booked capacity: ask to join
    NOT_BOOKED = "not_booked"  # the link has no appointment and the call is for one: ask
    HOST_READY = "host_ready"  # it may join now, and its client confirms it (Join now)


class ExitCause(enum.Enum):
    """Why a participant left the waiting room, the call or the room."""

    LEFT = "left"  # the participant chose to
    CANCELLED = "cancelled"  # withdrew a knock but stayed connected
    TIMED_OUT = "timed_out"  # disconnected for longer than the grace period
    SESSION_ENDED = "session_ended"  # the host ended the call
    DENIED = "denied"
    HOST_ABSENT = "host_absent"  # the call ended by itself: no host in it for too long
    WINDOW_CLOSED = "window_closed"  # the call ended by itself: its join window closed


@dataclass(frozen=True, slots=True)
class Event:
    """One domain event.

    ``actor`` did it (None when the system did, e.g. a grace period ran out);
    ``participant`` is whom it concerns. The other fields are set only by the kinds that
    carry them:

    - ARRIVED: ``role``, and what the join link says of the participant's appointment
      (``appointment``, ``starts_at``, ``ends_at``, ``capacity``);
    - ARRIVED and RECONNECTED: ``connection`` (which connection of the participant) and
      ``join_now`` (its client confirms its own entry); DISCONNECTED: ``connection``;
    - KNOCKED: ``reason``; exits, departures and SESSION_ENDED: ``cause`` (None on a
      SESSION_ENDED means the host ended the call); DENIED: ``message``;
    - session and call events: ``session``; SESSION_STARTED: ``appointment``,
      ``capacity`` and ``closes_at`` (when the appointment's join window closes);
    - NOTICE: ``message``, the host's words ("" takes the notice back), for ``participant``
      alone or, without one, for everyone; it is the clinician's text, not patient data.
    """

    kind: EventKind
    at: float
    actor: ParticipantId | None = None
    participant: ParticipantId | None = None
    role: Role | None = None
    reason: WaitReason | None = None
    cause: ExitCause | None = None
    message: str | None = None
    session: SessionId | None = None
    appointment: AppointmentId | None = None
    capacity: int | None = None
    connection: str | None = None
    starts_at: float | None = None
    ends_at: float | None = None
    closes_at: float | None = None
    join_now: bool | None = None

    def to_record(self) -> dict[str, str | int | float | bool]:
        """The event as a dict of primitives, leaving out unset fields."""
        record: dict[str, str | int | float | bool] = {"kind": self.kind.value, "at": self.at}
        for key in _OPTIONAL:
            field = getattr(self, key)
            if field is not None:
                record[key] = field.value if isinstance(field, enum.Enum) else field
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> Event:
        """Rebuild an event written by `to_record`; raise ValueError on anything else."""
        try:
            kind = EventKind(record["kind"])
            at = _time(record["at"], "at")
            fields: dict[str, object] = {}
            for key, holds in _OPTIONAL.items():
                raw = record.get(key)
                if raw is None:
                    continue
                if issubclass(holds, enum.Enum):
                    fields[key] = holds(raw)
                elif holds is float:
                    fields[key] = _time(raw, key)
                else:
                    fields[key] = _expect(raw, holds, key)
        except KeyError as exc:
            raise ValueError(f"event record lacks {exc.args[0]!r}") from None
        unknown = set(record) - set(_OPTIONAL) - {"kind", "at"} - _LEGACY
        if unknown:
            raise ValueError(f"event record has unknown fields {sorted(unknown)}")
        missing = _REQUIRED.get(kind, {"participant"}) - set(fields)
        if missing:
            raise ValueError(f"{kind.value} event record lacks {sorted(missing)}")
        return cls(kind, at, **fields)  # type: ignore[arg-type]


# Every optional field and the type its record holds (an enum: the member's value).
_OPTIONAL: dict[str, type] = {
    "actor": str,
    "participant": str,
    "role": Role,
    "reason": WaitReason,
    "cause": ExitCause,
    "message": str,
    "session": str,
    "appointment": str,
    "capacity": int,
    "connection": str,
    "starts_at": float,
    "ends_at": float,
    "closes_at": float,
    "join_now": bool,
}


# Fields that records written before events became pseudonymous carry (a display name and
# the clinic's id for the person, on ARRIVED): read and dropped, never written.
_LEGACY = frozenset({"name", "subject"})


# What `Room.apply` needs of each kind; every other kind needs a participant.
_REQUIRED: dict[EventKind, set[str]] = {
    EventKind.SESSION_STARTED: {"session", "capacity"},
    EventKind.SESSION_ENDED: set(),
    EventKind.ARRIVED: {"participant", "role"},
    EventKind.NOTICE: {"message"},
}


def _expect(raw: object, kind: type, key: str) -> object:
    if not isinstance(raw, kind) or (isinstance(raw, bool) and kind is not bool):
        raise ValueError(f"event field {key!r} must be {kind.__name__}")
    return raw


def _time(raw: object, key: str) -> float:
    # `abs(raw) <= max` also fails for NaN and infinities, and compares a huge int
    # exactly, where float(raw) would raise OverflowError instead of ValueError.
    if not isinstance(raw, int | float) or isinstance(raw, bool):
        raise ValueError(f"event field {key!r} must be a number")
    if not abs(raw) <= sys.float_info.max:
        raise ValueError(f"event field {key!r} must be a finite number")
    return float(raw)
