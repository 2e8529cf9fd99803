"""Participants and call sessions as immutable values."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from rooms.ids import AppointmentId, ParticipantId, SessionId
from rooms.roles import Role


class Stage(enum.Enum):
    """Where a participant is inside the room."""

    LOBBY = "lobby"  # connected, neither waiting nor in the call
    WAITING = "waiting"  # in the waiting room, in arrival order
    IN_CALL = "in_call"


@dataclass(frozen=True, slots=True)
class Participant:
    id: ParticipantId
    role: Role
    name: str | None
    subject: str | None
    stage: Stage = Stage.LOBBY
    knocked_at: float | None = None  # when it joined the waiting room, while WAITING
    absent_since: float | None = None  # set while its connection is lost
    connection: str | None = None  # the connection it was last seen on

    @property
    def connected(self) -> bool:
        return self.absent_since is None

    @property
    def is_host(self) -> bool:
        return self.role is Role.HOST


@dataclass(frozen=True, slots=True)
class Session:
    """One call in the room: started by the host, ended by the host."""

    id: SessionId
    appointment: AppointmentId | None
    capacity: int
    started_at: float
    ended_at: float | None = None

    @property
    def active(self) -> bool:
        return self.ended_at is None
