"""The wait a patient can expect, from how late the clinician runs (admission.estimate)."""

from __future__ import annotations

from admission import policy
from admission.estimate import expected_starts
from rooms import AppointmentId, ParticipantId, Role, Room, SessionId
from rooms.participants import Booking
from tests.rooms.support import HOST, ROOM_ID

MIN = 60.0
T0 = 1_000_020.0  # 20 s past a whole minute, so that rounding shows
A1, A2, A3 = AppointmentId("apt_a"), AppointmentId("apt_b"), AppointmentId("apt_c")
P1, P2, P3 = ParticipantId("p_1"), ParticipantId("p_2"), ParticipantId("p_3")


def booking(appointment: AppointmentId, start: float, minutes: float = 30) -> Booking:
    return Booking(appointment, start, start + minutes * MIN, 1)


def clinic() -> Room:
    """A host, and three patients for appointments at T0, T0+30 min and T0+60 min."""
    room = Room(ROOM_ID)
    policy.arrive(room, HOST, Role.HOST, now=T0 - 600)
    for pid, appointment, offset in ((P1, A1, 0), (P2, A2, 30), (P3, A3, 60)):
        policy.arrive(
            room, pid, Role.PATIENT, now=T0 - 600, booking=booking(appointment, T0 + offset * MIN),
            join_now=True,
        )  # fmt: skip
    return room


def up(seconds: float) -> float:
    return -(-seconds // MIN) * MIN


def test_with_no_call_on_each_appointment_is_expected_at_its_time_or_after_the_last() -> None:
    room = clinic()
    assert expected_starts(room, T0 - 300) == {
        A1: up(T0),
        A2: up(T0 + 30 * MIN),
        A3: up(T0 + 60 * MIN),
    }
    # Ten minutes past the first start and not begun: everyone runs ten minutes late.
    late = expected_starts(room, T0 + 10 * MIN)
    assert late == {A1: up(T0 + 10 * MIN), A2: up(T0 + 40 * MIN), A3: up(T0 + 70 * MIN)}


def test_a_call_that_started_late_or_runs_over_pushes_the_next_ones_back() -> None:
    room = clinic()
    start = T0 + 5 * MIN  # five minutes late
    policy.start(room, HOST, session=SessionId("s_1"), now=start, appointment=A1)
    policy.ask(room, P1, start)  # Join now: the patient is in the call
    during = expected_starts(room, start + MIN)
    assert A1 not in during  # the call is on: nothing to wait for
    assert during == {A2: up(T0 + 35 * MIN), A3: up(T0 + 65 * MIN)}
    # Twenty minutes past its booked end, the call goes on: the next is "now" at best.
    over = T0 + 50 * MIN
    assert expected_starts(room, over) == {A2: up(over), A3: up(over + 30 * MIN)}


def test_only_what_the_room_knows_counts() -> None:
    room = Room(ROOM_ID)
    policy.arrive(room, HOST, Role.HOST, now=T0)
    policy.arrive(room, P1, Role.PATIENT, now=T0, booking=Booking(capacity=1))  # no appointment
    policy.arrive(room, P2, Role.PATIENT, now=T0, booking=Booking(A2))  # no times
    assert expected_starts(room, T0) == {}
    # An ad-hoc call is expected to end now.
    policy.arrive(room, P3, Role.PATIENT, now=T0, booking=booking(A3, T0 - 10 * MIN), join_now=True)
    policy.start(room, HOST, session=SessionId("s_1"), now=T0)
    assert expected_starts(room, T0 + 5 * MIN) == {A3: up(T0 + 5 * MIN)}
