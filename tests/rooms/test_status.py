"""Call status (seed 000): each status, and which wins when several could apply.

Precedence, highest first: in_call > patient_waiting > awaiting_patient > ended > expired >
ready. Each test builds the room through its commands, as the event log would.
"""

from __future__ import annotations

import pytest

from rooms import (
    AppointmentId,
    CallStatus,
    ParticipantId,
    Role,
    Room,
    SessionId,
    call_status,
)
from rooms.participants import Booking
from tests.rooms.support import APPT, GRACE, HOST, ROOM_ID, S1, WAIT, A, B, C


def room_with_host() -> Room:
    room = Room(ROOM_ID)
    room.arrive(HOST, Role.HOST, now=0.0)
    return room


def arrive(room: Room, pid: ParticipantId, role: Role = Role.PATIENT, now: float = 1.0) -> None:
    room.arrive(pid, role, now=now)


def start(room: Room, capacity: int = 1, now: float = 2.0) -> None:
    room.start(HOST, session=S1, appointment=APPT, capacity=capacity, now=now)


def test_status_values_are_stable() -> None:
    assert [status.value for status in CallStatus] == [
        "ready",
        "awaiting_patient",
        "patient_waiting",
        "in_call",
        "ended",
        "expired",
    ]


# -- ready and expired: no call has happened -------------------------------------------------


def test_ready_when_the_room_is_empty() -> None:
    room = Room(ROOM_ID)
    assert call_status(room) is CallStatus.READY
    assert call_status(room, window_closed=False) is CallStatus.READY


def test_ready_when_only_the_host_is_here() -> None:
    # The host is not a patient: its presence alone changes nothing.
    assert call_status(room_with_host()) is CallStatus.READY


def test_expired_when_the_window_closed_without_a_call() -> None:
    assert call_status(Room(ROOM_ID), window_closed=True) is CallStatus.EXPIRED
    assert call_status(room_with_host(), window_closed=True) is CallStatus.EXPIRED


# -- awaiting patient ------------------------------------------------------------------------


def test_awaiting_patient_when_the_host_started_and_no_patient_came() -> None:
    room = room_with_host()
    start(room)
    assert call_status(room) is CallStatus.AWAITING_PATIENT


def test_awaiting_patient_while_the_started_call_runs_without_the_host() -> None:
    room = room_with_host()
    start(room)
    room.disconnect(HOST, 3.0)
    room.expire(3.0 + GRACE, GRACE)
    assert HOST not in room.participants
    assert call_status(room) is CallStatus.AWAITING_PATIENT


def test_awaiting_patient_after_the_last_patient_left() -> None:
    room = room_with_host()
    arrive(room, A)
    start(room)
    room.enter(A, 3.0)
    room.leave(A, 4.0)
    assert call_status(room) is CallStatus.AWAITING_PATIENT


def test_awaiting_patient_beats_expired() -> None:
    room = room_with_host()
    start(room)
    assert call_status(room, window_closed=True) is CallStatus.AWAITING_PATIENT


# -- patient waiting -------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.PATIENT, Role.GUEST])
def test_patient_waiting_before_the_host_starts(role: Role) -> None:
    room = room_with_host()
    arrive(room, A, role)
    assert call_status(room) is CallStatus.PATIENT_WAITING  # connected, in the lobby
    room.knock(A, 1.5, WAIT)
    assert call_status(room) is CallStatus.PATIENT_WAITING  # in the waiting room


def test_patient_waiting_counts_a_patient_whose_connection_dropped() -> None:
    room = room_with_host()
    arrive(room, A)
    room.knock(A, 1.5, WAIT)
    room.disconnect(A, 2.0)
    assert call_status(room) is CallStatus.PATIENT_WAITING
    room.expire(2.0 + GRACE, GRACE)
    assert call_status(room) is CallStatus.READY


def test_patient_waiting_when_the_patient_is_in_the_call_but_the_host_is_not() -> None:
    room = room_with_host()
    arrive(room, A)
    start(room)
    room.enter(A, 3.0)
    room.leave(HOST, 4.0)
    assert call_status(room) is CallStatus.PATIENT_WAITING


def test_patient_waiting_when_the_host_is_in_the_call_and_a_patient_waits_to_be_admitted() -> None:
    room = room_with_host()
    arrive(room, A, Role.GUEST)
    start(room)
    room.knock(A, 3.0, WAIT)
    assert call_status(room) is CallStatus.PATIENT_WAITING


def test_patient_waiting_beats_awaiting_patient() -> None:
    room = room_with_host()
    start(room)
    arrive(room, A, Role.GUEST, now=3.0)
    assert call_status(room) is CallStatus.PATIENT_WAITING


def test_patient_waiting_beats_ended() -> None:
    # After the call ends, the patients are back in the lobby until they go.
    room = room_with_host()
    arrive(room, A)
    start(room)
    room.enter(A, 3.0)
    room.end(HOST, 4.0)
    assert call_status(room) is CallStatus.PATIENT_WAITING
    room.leave(A, 5.0)
    assert call_status(room, appointment=APPT) is CallStatus.ENDED


def test_patient_waiting_beats_expired() -> None:
    room = room_with_host()
    arrive(room, A)
    assert call_status(room, window_closed=True) is CallStatus.PATIENT_WAITING


# -- in call ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.PATIENT, Role.GUEST])
def test_in_call_when_the_host_and_a_patient_are_in_the_call(role: Role) -> None:
    room = room_with_host()
    arrive(room, A, role)
    start(room)
    room.enter(A, 3.0)
    assert call_status(room) is CallStatus.IN_CALL


def test_in_call_beats_patient_waiting_and_expired() -> None:
    room = room_with_host()
    arrive(room, A)
    arrive(room, B, Role.GUEST)
    arrive(room, C, Role.GUEST)
    start(room, capacity=1)
    room.enter(A, 3.0)
    room.knock(B, 3.0, WAIT)  # someone still waits, someone else idles in the lobby
    assert call_status(room) is CallStatus.IN_CALL
    assert call_status(room, window_closed=True) is CallStatus.IN_CALL


def test_in_call_while_a_connection_drops_within_the_grace_period() -> None:
    room = room_with_host()
    arrive(room, A)
    start(room)
    room.enter(A, 3.0)
    room.disconnect(HOST, 4.0)
    room.disconnect(A, 4.0)
    assert call_status(room) is CallStatus.IN_CALL


# -- ended -----------------------------------------------------------------------------------


def test_ended_after_the_call() -> None:
    room = room_with_host()
    start(room)
    room.end(HOST, 3.0)
    assert call_status(room, appointment=APPT) is CallStatus.ENDED
    room.leave(HOST, 4.0)
    assert call_status(room, appointment=APPT) is CallStatus.ENDED


def test_a_call_ended_for_an_earlier_appointment_leaves_the_next_one_ready() -> None:
    # The room is persistent (seed 001): the next appointment starts from ready.
    room = room_with_host()
    start(room)
    room.end(HOST, 3.0)
    later = AppointmentId("apt_2")
    assert call_status(room, appointment=later) is CallStatus.READY
    assert call_status(room, appointment=later, window_closed=True) is CallStatus.EXPIRED


def test_ended_beats_expired() -> None:
    room = room_with_host()
    start(room)
    room.end(HOST, 3.0)
    assert call_status(room, appointment=APPT, window_closed=True) is CallStatus.ENDED


def test_a_new_call_after_an_ended_one_is_awaiting_patient() -> None:
    room = room_with_host()
    start(room)
    room.end(HOST, 3.0)
    room.start(HOST, session=SessionId("s_2"), appointment=None, capacity=1, now=4.0)
    assert call_status(room) is CallStatus.AWAITING_PATIENT


# -- one room, several appointments: each status counts its own -------------------------------


LATER = AppointmentId("apt_2")


def arrive_for(room: Room, pid: ParticipantId, appointment: AppointmentId, now: float) -> None:
    room.arrive(pid, Role.PATIENT, now=now, booking=Booking(appointment))


def test_each_appointment_counts_its_own_people_and_its_own_call() -> None:
    room = room_with_host()
    arrive_for(room, A, APPT, 1.0)
    arrive_for(room, B, LATER, 1.5)
    start(room)  # for APPT
    room.enter(A, 2.5)
    assert call_status(room, appointment=APPT) is CallStatus.IN_CALL
    assert call_status(room, appointment=LATER) is CallStatus.PATIENT_WAITING
    room.leave(B, 3.0)
    # Another appointment's call is not this one's: no "awaiting patient" for it.
    assert call_status(room, appointment=LATER) is CallStatus.READY
    room.end(HOST, 4.0)
    room.leave(A, 5.0)
    assert call_status(room, appointment=APPT) is CallStatus.ENDED
    assert call_status(room, appointment=LATER) is CallStatus.READY


def test_the_room_as_a_whole_is_ended_only_after_an_ad_hoc_call() -> None:
    # A link without an appointment sees the whole room; a call for an appointment that
    # ended is that appointment's, not the whole room's.
    room = room_with_host()
    start(room)
    room.end(HOST, 3.0)
    assert call_status(room) is CallStatus.READY
    room.start(HOST, session=SessionId("s_2"), appointment=None, capacity=1, now=4.0)
    room.end(HOST, 5.0)
    assert call_status(room) is CallStatus.ENDED
