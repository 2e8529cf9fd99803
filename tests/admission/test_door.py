"""The waiting room guards the door (seeds 001 and 002): a clinician's persistent room
serving one appointment after another, group appointments, Join now, and calls that end by
themselves when the clinician is gone or the join window has closed.

Pure and synchronous: each story is a sequence of policy calls with explicit times, whose
events must fold back into the same room (`assert_folds`).
"""

from __future__ import annotations

import pytest

from admission import policy
from admission.policy import Decision, Verdict, decide, display_name
from rooms import Event, ExitCause, InvalidState, ParticipantId, Role, Room, Stage, WaitReason
from rooms.status import CallStatus, call_status
from tests.admission.support import (
    APPT2,
    CLOSES_AFTER,
    ENDS,
    HOST_ABSENCE,
    K,
    arrive,
    arrived,
    assert_folds,
    booked,
    due,
    entered,
    hosted,
    knocked,
    room_with_host,
    stages,
    start,
    tick,
    waiting_ids,
)
from tests.rooms.support import APPT, GRACE, HOST, ROOM_ID, S1, S2, A, B, C, D, E

R = WaitReason


def in_call(room: Room) -> set[ParticipantId]:
    return {p.id for p in room.in_call()}


# -- one clinician, two appointments back to back -------------------------------------------


def test_back_to_back_appointments_in_one_room() -> None:
    """Appointment 1's call runs; appointment 2's patient arrives early and waits (host
    busy), never in appointment 1's call; after `end` and the `start` of appointment 2 it
    enters, and appointment 1's patient, still connected, does not."""
    room, log = hosted(capacity=1, appointment=None)  # the clinician's persistent link
    second = booked(APPT2, capacity=1, starts_at=2000.0, ends_at=2900.0)
    log += arrive(room, A, Role.PATIENT, 1.0)  # appointment 1
    log += start(room, now=2.0, appointment=APPT)
    assert in_call(room) == {HOST, A}
    events = arrive(room, B, Role.PATIENT, 3.0, booking=second)
    assert events == [
        arrived(B, Role.PATIENT, 3.0, booking=second),
        knocked(B, 3.0, R.HOST_BUSY),
    ]
    log += events
    assert in_call(room) == {HOST, A}
    assert decide(room, room.get(B)) == Verdict(Decision.WAIT, R.HOST_BUSY)
    # Asking does not get it in either; a guest of appointment 2 waits the same way.
    log += arrive(room, C, Role.GUEST, 3.5, "Cy", booking=booked(APPT2, capacity=1))
    assert room.get(C).stage is Stage.WAITING
    # Each appointment's status counts its own people only.
    assert call_status(room, appointment=APPT) is CallStatus.IN_CALL
    assert call_status(room, appointment=APPT2) is CallStatus.PATIENT_WAITING
    assert call_status(room) is CallStatus.IN_CALL  # the room as a whole

    log += policy.end(room, HOST, 4.0)
    assert stages(room)[A] is Stage.LOBBY
    assert call_status(room, appointment=APPT) is CallStatus.PATIENT_WAITING  # A is here
    events = start(room, now=5.0, appointment=APPT2, session=S2)
    assert events == [
        Event(
            K.SESSION_STARTED,
            5.0,
            actor=HOST,
            session=S2,
            appointment=APPT2,
            capacity=1,
            closes_at=2900.0 + CLOSES_AFTER,
        ),
        Event(K.CLINICIAN_ENTERED, 5.0, actor=HOST, participant=HOST, session=S2),
        entered(B, 5.0, session=S2),
    ]
    log += events
    # C, a guest at capacity with B in, now asks; A (appointment 1) stays in the lobby.
    assert in_call(room) == {HOST, B}
    assert stages(room)[A] is Stage.LOBBY
    assert decide(room, room.get(A)) == Verdict(Decision.WAIT, R.HOST_BUSY)
    assert decide(room, room.get(C)) == Verdict(Decision.ASK_TO_JOIN, R.AT_CAPACITY)
    log += room.leave(A, 6.0)
    assert call_status(room, appointment=APPT) is CallStatus.ENDED
    assert call_status(room, appointment=APPT2) is CallStatus.IN_CALL
    assert_folds(room, log)


# -- group appointments (seed 002, scenario 1) -----------------------------------------------


@pytest.mark.parametrize("c_logged_in", [True, False], ids=["portal", "link"])
def test_seed_002_scenario_1_last_minute_guest_under_capacity(c_logged_in: bool) -> None:
    """Booked for A and B (capacity 2); C got the appointment's general link. C comes
    before A and B have both joined: Join now. A and B still join at once, whatever the
    count."""
    log: list[Event] = []
    room = Room(ROOM_ID)
    log += arrive(room, HOST, Role.HOST, 0.0, "Dr Lee", booking=booked(capacity=2))
    log += start(room, now=1.0)
    events = arrive(room, A, Role.PATIENT, 2.0)
    assert events == [arrived(A, Role.PATIENT, 2.0), entered(A, 2.0)]
    log += events
    # A portal user has a token name; a link user types one.
    name = display_name(Role.GUEST, "Cy Portal" if c_logged_in else None, " Cy  Link ")
    assert name == ("Cy Portal" if c_logged_in else "Cy Link")
    events = arrive(room, C, Role.GUEST, 3.0, name)
    assert events == [arrived(C, Role.GUEST, 3.0, name), entered(C, 3.0)]
    log += events
    assert room.occupancy() == 2
    events = arrive(room, B, Role.PATIENT, 4.0)
    assert events == [arrived(B, Role.PATIENT, 4.0), entered(B, 4.0)]
    log += events
    assert room.occupancy() == 3
    assert in_call(room) == {HOST, A, B, C}
    assert_folds(room, log)


@pytest.mark.parametrize("c_logged_in", [True, False], ids=["portal", "link"])
def test_seed_002_scenario_1_last_minute_guest_at_capacity(c_logged_in: bool) -> None:
    """A and B (both booked for the appointment) have joined: C, with the appointment's
    general link, sees Ask to Join, asks, waits; the host admits or denies."""
    log: list[Event] = []
    room = Room(ROOM_ID)
    log += arrive(room, HOST, Role.HOST, 0.0, "Dr Lee", booking=booked(capacity=2))
    log += start(room, now=1.0)
    log += arrive(room, A, Role.PATIENT, 2.0)
    log += arrive(room, B, Role.PATIENT, 3.0)
    assert in_call(room) == {HOST, A, B}
    name = display_name(Role.GUEST, "Cy Portal" if c_logged_in else None, "Cy Link")
    events = arrive(room, C, Role.GUEST, 4.0, name)
    assert events == [arrived(C, Role.GUEST, 4.0, name)]  # Ask to Join: no entry, no knock
    log += events
    assert decide(room, room.get(C)) == Verdict(Decision.ASK_TO_JOIN, R.AT_CAPACITY)
    assert room.get(C).stage is Stage.LOBBY
    events = policy.ask(room, C, 5.0)
    assert events == [knocked(C, 5.0, R.AT_CAPACITY)]
    log += events
    assert room.waiting() == [room.get(C)]  # the host sees C under "Waiting to Join"
    log += arrive(room, D, Role.GUEST, 6.0, "Di")
    log += policy.ask(room, D, 6.5)
    assert waiting_ids(room) == [C, D]
    events = policy.admit(room, HOST, C, 7.0)
    assert events == [
        Event(K.ADMITTED, 7.0, actor=HOST, participant=C, session=S1),
        entered(C, 7.0, actor=HOST),
    ]
    log += events
    assert room.occupancy() == 3
    events = policy.deny(room, HOST, D, "this session is full", 8.0)
    assert events == [
        Event(K.DENIED, 8.0, actor=HOST, participant=D, message="this session is full"),
        Event(K.DEPARTED, 8.0, actor=HOST, participant=D, cause=ExitCause.DENIED),
    ]
    log += events
    assert D not in room.participants
    assert room.waiting() == []
    assert_folds(room, log)


def test_seed_002_early_arrivals_wait_for_the_host_and_are_let_in_by_the_rule() -> None:
    """Nobody enters before the host starts; at start the waiting room is let in, in
    arrival order, by the rule; whoever the rule leaves out keeps waiting, as an ask."""
    log: list[Event] = []
    room = Room(ROOM_ID)
    log += arrive(room, HOST, Role.HOST, 0.0, "Dr Lee", booking=booked(capacity=2))
    for now, pid, role in [
        (1.0, C, Role.GUEST),
        (2.0, A, Role.PATIENT),
        (3.0, D, Role.GUEST),
        (4.0, B, Role.PATIENT),
        (5.0, E, Role.GUEST),
    ]:
        events = arrive(room, pid, role, now, "N")
        assert events == [arrived(pid, role, now, "N"), knocked(pid, now, R.HOST_NOT_STARTED)]
        log += events
    assert waiting_ids(room) == [C, A, D, B, E]
    # Patients cannot get in by asking either.
    with pytest.raises(InvalidState):
        policy.ask(room, A, 5.5)
    events = start(room, now=6.0)
    assert events[2:] == [
        entered(C, 6.0),  # first guest: 0 < 2
        entered(A, 6.0),  # booked patient
        # D (guest) finds the call at capacity and stays.
        entered(B, 6.0),  # booked patients get in past waiting guests
        # E (guest) stays too.
    ]
    log += events
    assert waiting_ids(room) == [D, E]
    assert {decide(room, room.get(p)).reason for p in (D, E)} == {R.AT_CAPACITY}
    late = ParticipantId("p_late")
    log += arrive(room, late, Role.PATIENT, 7.0)  # a late booked patient still joins
    assert room.get(late).stage is Stage.IN_CALL
    log += policy.admit_all(room, HOST, 8.0)
    assert room.waiting() == []
    assert_folds(room, log)


# -- Join now (seed 002: "clients can join using the Join now button") -----------------------


def test_join_now_clients_are_told_and_enter_when_they_confirm() -> None:
    room, log = hosted(capacity=1)
    log += arrive(room, A, Role.PATIENT, 1.0, join_now=True)
    log += arrive(room, B, Role.PATIENT, 2.0)  # an older client: enters by itself
    log += arrive(room, C, Role.GUEST, 3.0, "Cy", join_now=True)
    events = start(room, now=4.0)
    assert events[2:] == [entered(B, 4.0)]
    log += events
    assert [decide(room, room.get(p)) for p in (A, C)] == [
        Verdict(Decision.JOIN_NOW, R.HOST_READY),
        Verdict(Decision.ASK_TO_JOIN, R.AT_CAPACITY),  # capacity 1: B is in
    ]
    events = policy.ask(room, A, 5.0)  # "Join now"
    assert events == [entered(A, 5.0)]
    log += events
    with pytest.raises(InvalidState):
        policy.ask(room, C, 6.0)  # it is already waiting: the host decides
    log += policy.admit(room, HOST, C, 7.0)
    assert in_call(room) == {HOST, A, B, C}
    assert_folds(room, log)


# -- the host drops, leaves, or never comes back ---------------------------------------------


def test_seed_002_the_host_drops_and_the_waiting_room_waits() -> None:
    """FAQ 4: if the host's connection drops, waiting participants remain waiting; after the
    grace period the host is removed, and on its return it can admit or deny them as usual.
    Meanwhile nobody walks into the call without a host."""
    room, log = hosted(capacity=1)
    log += start(room, now=1.0)
    log += arrive(room, A, Role.PATIENT, 2.0)
    for now, pid in [(3.0, C), (4.0, D)]:
        log += arrive(room, pid, Role.GUEST, now, "N")
        log += policy.ask(room, pid, now)
    assert waiting_ids(room) == [C, D]
    log += room.disconnect(HOST, 10.0)
    assert not due(room, 10.0 + GRACE - 1.0)
    assert tick(room, 10.0 + GRACE - 1.0) == []
    assert due(room, 10.0 + GRACE)
    events = tick(room, 10.0 + GRACE)
    assert events == [
        Event(K.CLINICIAN_EXITED, 40.0, participant=HOST, cause=ExitCause.TIMED_OUT, session=S1),
        Event(K.DEPARTED, 40.0, participant=HOST, cause=ExitCause.TIMED_OUT),
    ]
    log += events
    session = room.active_session
    assert session is not None
    assert session.host_away_since == 40.0
    assert waiting_ids(room) == [C, D]
    assert room.get(A).stage is Stage.IN_CALL  # the call goes on, for now
    # A patient of the appointment arriving now waits: no host is in the call.
    log += arrive(room, B, Role.PATIENT, 45.0)
    assert decide(room, room.get(B)) == Verdict(Decision.WAIT, R.HOST_AWAY)
    assert waiting_ids(room) == [C, D, B]
    # The host comes back: a new arrival, then Rejoin (no new session), which lets B in.
    log += arrive(room, HOST, Role.HOST, 50.0, "Dr Lee", booking=booked(capacity=1))
    events = start(room, now=51.0)
    assert events == [
        Event(K.CLINICIAN_ENTERED, 51.0, actor=HOST, participant=HOST, session=S1),
        entered(B, 51.0),
    ]
    log += events
    assert room.active_session is not None
    assert room.active_session.host_away_since is None
    assert waiting_ids(room) == [C, D]  # at capacity: they keep waiting
    log += policy.admit(room, HOST, D, 52.0)
    log += policy.deny(room, HOST, C, None, 53.0)
    assert in_call(room) == {A, B, D, HOST}
    assert not due(room, 53.0 + HOST_ABSENCE * 10)
    assert_folds(room, log)


def test_a_call_without_its_host_ends_by_itself() -> None:
    room, log = hosted(capacity=2)
    log += start(room, now=1.0)
    log += arrive(room, A, Role.PATIENT, 2.0)
    log += arrive(room, C, Role.GUEST, 3.0, "Cy")
    log += room.disconnect(C, 3.5)  # C's connection is lost; it keeps its place
    log += room.leave(HOST, 10.0)
    assert not due(room, 10.0 + HOST_ABSENCE - 1.0, grace=1000.0)
    events = tick(room, 10.0 + HOST_ABSENCE, grace=1000.0)
    at = 10.0 + HOST_ABSENCE
    assert events == [
        Event(K.PATIENT_EXITED, at, participant=A, cause=ExitCause.HOST_ABSENT, session=S1),
        Event(K.PATIENT_EXITED, at, participant=C, cause=ExitCause.HOST_ABSENT, session=S1),
        Event(K.SESSION_ENDED, at, session=S1, cause=ExitCause.HOST_ABSENT),
        knocked(A, at, R.HOST_NOT_STARTED),
        knocked(C, at, R.HOST_NOT_STARTED),
    ]
    log += events
    # Back in the waiting room, in the order they were in the call.
    assert waiting_ids(room) == [A, C]
    assert room.active_session is None
    assert room.session is not None
    assert room.session.end_cause is ExitCause.HOST_ABSENT
    assert not due(room, at + 1.0, grace=1000.0)
    assert_folds(room, log)


def test_a_host_back_in_time_keeps_its_call() -> None:
    room = room_with_host()
    start(room, now=1.0)
    arrive(room, A, Role.PATIENT, 2.0)
    room.leave(HOST, 10.0)
    arrive(room, HOST, Role.HOST, 20.0, booking=booked())
    start(room, now=20.0 + HOST_ABSENCE - 1.0)
    assert not due(room, 10.0 + HOST_ABSENCE + 1.0)
    assert tick(room, 10.0 + HOST_ABSENCE + 1.0) == []


def test_a_call_ends_by_itself_when_its_join_window_closes() -> None:
    room, log = hosted()
    log += start(room, now=1.0)
    log += arrive(room, A, Role.PATIENT, 2.0)
    closes = ENDS + CLOSES_AFTER
    assert not due(room, closes)
    assert due(room, closes + 1.0)
    events = tick(room, closes + 1.0)
    assert [e.kind for e in events] == [
        K.CLINICIAN_EXITED,
        K.PATIENT_EXITED,
        K.SESSION_ENDED,
        K.KNOCKED,
    ]
    assert {e.cause for e in events[:3]} == {ExitCause.WINDOW_CLOSED}
    log += events
    assert room.get(A).stage is Stage.WAITING
    assert room.get(HOST).stage is Stage.LOBBY
    assert_folds(room, log)


def test_an_ad_hoc_call_has_no_window_to_close() -> None:
    room = room_with_host(appointment=None)
    start(room, now=1.0)
    assert not due(room, 1e9)
