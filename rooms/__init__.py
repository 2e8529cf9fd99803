"""Vestibule's room domain: rooms, participants, the waiting room, calls, domain events.

Pure: no I/O, no clock. Time is always a parameter. See `rooms.room.Room`.
"""

from rooms.errors import InvalidState, RoomError, SessionNotStarted, UnknownParticipant
from rooms.events import Event, EventKind, ExitCause, WaitReason
from rooms.ids import AppointmentId, ParticipantId, RoomId, SessionId
from rooms.participants import Participant, Session, Stage
from rooms.roles import Role
from rooms.room import Room
from rooms.status import CallStatus, call_status

__all__ = [
    "AppointmentId",
    "CallStatus",
    "Event",
    "EventKind",
    "ExitCause",
    "InvalidState",
    "Participant",
    "ParticipantId",
    "Role",
    "Room",
    "RoomError",
    "RoomId",
    "Session",
    "SessionId",
    "SessionNotStarted",
    "Stage",
    "UnknownParticipant",
    "WaitReason",
    "call_status",
]
