"""Participants and call sessions as immutable values."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from rooms.events import ExitCause
from rooms.ids import AppointmentId, ParticipantId, SessionId
from rooms.roles import Role


class Stage(enum.Enum):
    """Where a participant is inside the room."""

    LOBBY = "lobby"  # connected, neither waiting nor in the call
    WAITING = "waiting"  # in the waiting room, in arrival order
    IN_CALL = "in_call"


@dataclass(frozen=True, slots=True)
class Booking:
    """What a participant's join link says about its appointment: which one (None for a
    link without one), its times, and the booked capacity. A clinician's persistent room
    serves one appointment after another, so this is what keeps each person to the call of
    their own appointment."""

    appointment: AppointmentId | None = None
    starts_at: float | None = None
    ends_at: float | None = None
    capacity: int | None = None


NO_BOOKING = Booking()


@dataclass(frozen=True, slots=True)
class Participant:
    """One person in a room. Who they are (a name, the clinic's id for them) is not part of
    the room: the room's events are kept for its activity and audit, so they carry only
    pseudonymous ids; names are presentation, kept apart by the server."""

    id: ParticipantId
    role: Role
    stage: Stage = Stage.LOBBY
    knocked_at: float | None = None  # when it joined the waiting room, while WAITING
    absent_since: float | None = None  # set while its connection is lost
    connection: str | None = None  # the connection it was last seen on
    booking: Booking = NO_BOOKING
    # Its client asked to confirm its own entry ("Join now", seed 002): the rule does not
    # bring it into the call by itself; it is told it may join and enters when it says so.
    join_now: bool = False

    @property
    def connected(self) -> bool:
        return self.absent_since is None

    @property
    def is_host(self) -> bool:
        return self.role is Role.HOST

    @property
    def appointment(self) -> AppointmentId | None:
        return self.booking.appointment


@dataclass(frozen=True, slots=True)
class Session:
    """One call in the room, for one appointment or for none (an ad-hoc call).

    ``closes_at`` is when the appointment's join window closes (the call then ends by
    itself); ``host_away_since`` is set while no host is in the call (the call ends by
    itself once that lasts too long); ``end_cause`` says how an ended call ended (None:
    the host ended it)."""

    id: SessionId
    appointment: AppointmentId | None
    capacity: int
    started_at: float
    ended_at: float | None = None
    closes_at: float | None = None
    host_away_since: float | None = None
    end_cause: ExitCause | None = None

    @property
    def active(self) -> bool:
        return self.ended_at is None


@dataclass(frozen=True, slots=True)
class Notice:
    """The host's message as the room keeps it: its text, when it was sent, and the room's
    version when it was (which of two notices is the newer)."""

    text: str
    at: float
    version: int
