"""Call status and appointment outcomes folded from events; snapshots and checkpoints."""

from __future__ import annotations

import pytest

from rooms.events import Event
from rooms.ids import AppointmentId, ParticipantId, RoomId, SessionId
from rooms.participants import Booking
from rooms.projection import Outcome, Projection
from rooms.roles import Role
from rooms.room import Room
from rooms.status import CallStatus
from tests.rooms.support import WAIT

R = RoomId("r")
HOST = ParticipantId("h")
A = ParticipantId("a")
B = ParticipantId("b")
APPT = AppointmentId("apt_1")
LATER = AppointmentId("apt_2")


def visit(
    *, patient_enters: bool, ends: bool, appointment: AppointmentId | None = APPT
) -> list[Event]:
    """The events of one appointment's visit."""
    room = Room(R)
    events = room.arrive(HOST, Role.HOST, now=1.0, connection="c0")
    events += room.arrive(
        A,
        Role.PATIENT,
        now=2.0,
        connection="c1",
        booking=Booking(appointment),
    )
    events += room.knock(A, 2.0, WAIT)
    events += room.arrive(B, Role.GUEST, now=2.5, connection="c2")
    events += room.disconnect(B, 2.6, connection="c2")
    events += room.start(
        HOST, session=SessionId("s1"), appointment=appointment, capacity=1, now=3.0
    )
    if patient_enters:
        events += room.enter(A, 4.0)
    if ends:
        events += room.end(HOST, 5.0)
    return events


def project(events: list[Event]) -> Projection:
    projection = Projection(Room(R))
    for event in events:
        projection.apply(event)
    return projection


def test_a_visit_with_the_patient_that_ended_is_completed() -> None:
    projection = project(visit(patient_enters=True, ends=True))
    assert projection.outcomes == {APPT: Outcome.COMPLETED}
    assert projection.sessions_completed == 1
    assert projection.status(APPT) is CallStatus.PATIENT_WAITING  # A is still connected
    assert projection.close_window(APPT, 10.0) is Outcome.COMPLETED


def test_nobody_came_and_the_window_closed_is_a_no_show() -> None:
    projection = project(visit(patient_enters=False, ends=True))
    assert projection.outcomes == {}
    assert projection.close_window(APPT, 10.0) is Outcome.NO_SHOW
    assert projection.close_window(APPT, 10.0) is Outcome.NO_SHOW  # settling twice changes nothing
    assert projection.outcomes == {APPT: Outcome.NO_SHOW}
    assert projection.sessions_completed == 0


def test_a_call_still_running_when_the_window_closes_is_completed() -> None:
    projection = project(visit(patient_enters=True, ends=False))
    assert projection.status(APPT) is CallStatus.IN_CALL
    assert projection.close_window(APPT, 10.0) is Outcome.COMPLETED


def test_an_appointment_without_any_session_is_a_no_show_and_expired() -> None:
    projection = project(visit(patient_enters=False, ends=False)[:1])  # only the host came
    assert projection.status(LATER) is CallStatus.READY
    assert projection.close_window(LATER, 10.0) is Outcome.NO_SHOW
    assert projection.status(LATER) is CallStatus.EXPIRED


def test_calls_without_an_appointment_have_no_outcome() -> None:
    projection = project(visit(patient_enters=True, ends=True, appointment=None))
    assert projection.outcomes == {}
    assert projection.sessions_completed == 0


@pytest.mark.parametrize("ends", [True, False])
def test_resuming_from_any_checkpoint_gives_the_same_projection(ends: bool) -> None:
    events = visit(patient_enters=True, ends=ends)
    whole = project(events)
    whole.close_window(LATER, 10.0)
    for cut in range(len(events) + 1):
        first = project(events[:cut])
        first.close_window(LATER, 10.0)
        resumed = Projection.from_record(first.to_record())
        for event in events[cut:]:
            resumed.apply(event)
        assert resumed.to_record() == whole.to_record()


def test_a_room_snapshot_restores_an_equal_room() -> None:
    room = Room(R)
    for event in visit(patient_enters=True, ends=False):
        room.apply(event)
    restored = Room.from_snapshot(room.snapshot())
    assert dict(restored.participants) == dict(room.participants)
    assert restored.waiting() == room.waiting()
    assert restored.session == room.session
    assert restored.version == room.version
    assert Room.from_snapshot(Room(R).snapshot()).session is None


def test_appointments_long_over_are_forgotten() -> None:
    projection = project(visit(patient_enters=True, ends=True))
    projection.close_window(APPT, 100.0)
    projection.close_window(LATER, 200.0)
    assert projection.forget(before=100.0) == []  # closed at 100: not before it
    assert projection.forget(before=150.0) == [APPT]
    assert (projection.outcomes, projection.closed) == ({LATER: Outcome.NO_SHOW}, {LATER: 200.0})
    assert APPT not in projection.seen_patient
    assert projection.status(APPT) is CallStatus.PATIENT_WAITING  # the room itself is kept
    assert Projection.from_record(projection.to_record()).to_record() == projection.to_record()
