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
    Stage,
    WaitReason,
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
WAIT = WaitReason.HOST_NOT_STARTED  # the reason rooms tests knock with

State = tuple[int, dict[ParticipantId, Participant], list[ParticipantId], Session | None]
Err = TypeVar("Err", RoomError, AdmissionError)


def state(room: Room) -> State:
    """Everything observable about a room, as a comparable value."""
    return room.version, dict(room.participants), [p.id for p in room.waiting()], room.session


def check_counts(room: Room) -> None:
    """The counts the room keeps as events are applied equal a recount of its
    participants, and every waiting participant is in the queue and nobody else."""
    people = list(room.participants.values())
    others = [p for p in people if not p.is_host]
    assert room.occupancy() == sum(p.stage is Stage.IN_CALL for p in others)
    assert room.host_in_call() == any(p.is_host and p.stage is Stage.IN_CALL for p in people)
    assert room.absent() == sum(not p.connected for p in people)
    assert room.present() == len(others)
    for appointment in {p.appointment for p in others} | {AppointmentId("apt_none")}:
        if appointment is not None:
            assert room.present(appointment) == sum(p.appointment == appointment for p in others)
    queue = room.waiting()
    assert {p.id for p in queue} == {p.id for p in people if p.stage is Stage.WAITING}
    knocks = [p.knocked_at for p in queue]
    assert knocks == sorted(k for k in knocks if k is not None)  # arrival order
    session = room.active_session
    if session is not None:
        assert (session.host_away_since is None) == room.host_in_call()


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
