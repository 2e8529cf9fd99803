"""What the pure-core tests of rooms/ and admission/ share: fixed ids, and the check that a
refused command changed nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

from admission.errors import AdmissionError
from rooms import (
    AppointmentId,
    EventKind,
    Participant,
    ParticipantId,
    Room,
    RoomError,
    RoomId,
    Session,
    SessionId,
)

K = EventKind
ROOM_ID = RoomId("r_1")
HOST = ParticipantId("p_host")
A = ParticipantId("p_a")
B = ParticipantId("p_b")
C = ParticipantId("p_c")
D = ParticipantId("p_d")
E = ParticipantId("p_e")
F = ParticipantId("p_f")
G = ParticipantId("p_g")
NOBODY = ParticipantId("p_nobody")
S1 = SessionId("s_1")
S2 = SessionId("s_2")
APPT = AppointmentId("apt_1")
GRACE = 30.0

State = tuple[int, dict[ParticipantId, Participant], list[ParticipantId], Session | None]
Err = TypeVar("Err", RoomError, AdmissionError)


def state(room: Room) -> State:
    """Everything observable about a room, as a comparable value."""
    return room.version, dict(room.participants), [p.id for p in room.waiting()], room.session


def assert_rejected(room: Room, error: type[Err], code: str, command: Callable[[], object]) -> Err:
    """Run a command that must raise exactly ``error`` with ``code`` and change nothing."""
    before = state(room)
    with pytest.raises(error) as info:
        command()
    assert type(info.value) is error
    assert info.value.code == code
    assert str(info.value) == info.value.message
    assert state(room) == before
    return info.value
