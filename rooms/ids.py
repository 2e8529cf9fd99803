"""Identifier types of the domain.

They are plain strings at run time; `NewType` keeps a room id from being passed where a
participant id is expected.
"""

from typing import NewType

RoomId = NewType("RoomId", str)
ParticipantId = NewType("ParticipantId", str)
SessionId = NewType("SessionId", str)
AppointmentId = NewType("AppointmentId", str)
