"""The admission policy (seeds 001 and 002): entry decisions for the appointment of each
link, Ask to Join, Join now, host-only actions, names, and who may signal whom.

Synchronous and pure like the room tests: each policy function is called with an explicit
``now`` and the events it returns are compared whole. A call that raises must leave the
room exactly as it was (`assert_rejected`); story tests also check that the events they
collected fold back into the same room (`assert_folds`). The stories of a persistent room
serving one appointment after another are in test_door.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from admission import policy
from admission.errors import (
    AdmissionError,
    CallInProgress,
    Forbidden,
    InvalidName,
    NameRequired,
    NotInCall,
    PeerNotAdmitted,
    UnknownAppointment,
)
from admission.policy import MAX_NAME_LENGTH, Decision, Verdict, decide, display_name
from rooms import (
    Event,
    ExitCause,
    InvalidState,
    ParticipantId,
    Role,
    Room,
    RoomError,
    SessionNotStarted,
    Stage,
    UnknownParticipant,
    WaitReason,
)
from rooms.participants import NO_BOOKING, Booking
from tests.admission.support import (
    APPT2,
    CLOSES_AFTER,
    ENDS,
    STARTS,
    K,
    arrive,
    arrived,
    assert_folds,
    booked,
    entered,
    hosted,
    knocked,
    room_with_host,
    stages,
    start,
    waiting_ids,
)
from tests.rooms.support import APPT, HOST, NOBODY, S1, S2, A, B, C, D, E, assert_rejected, state

R = WaitReason
NO_LINK = booked(None, capacity=None)  # a link without an appointment


def verdict(room: Room, pid: ParticipantId) -> Verdict:
    return decide(room, room.get(pid))


# -- decide ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.PATIENT, Role.GUEST])
def test_decide_before_the_call_everyone_waits_for_the_host(role: Role) -> None:
    room = room_with_host()
    arrive(room, A, role, 1.0, "Al")
    assert verdict(room, A) == Verdict(Decision.WAIT, R.HOST_NOT_STARTED)


def test_decide_in_the_call_of_its_own_appointment() -> None:
    room = room_with_host(capacity=1)
    start(room)
    arrive(room, A, Role.PATIENT, 2.0)
    arrive(room, B, Role.PATIENT, 3.0)  # over capacity: a booked patient still enters
    assert stages(room) == {HOST: Stage.IN_CALL, A: Stage.IN_CALL, B: Stage.IN_CALL}
    assert room.occupancy() == 2  # the host does not count against capacity
    arrive(room, C, Role.GUEST, 4.0, "Cy")  # the appointment's general link, at capacity
    assert verdict(room, C) == Verdict(Decision.ASK_TO_JOIN, R.AT_CAPACITY)
    room.leave(A, 5.0)
    room.leave(B, 5.0)
    assert verdict(room, C) == Verdict(Decision.JOIN_NOW, R.HOST_READY)


def test_decide_another_appointment_waits_for_its_own_call() -> None:
    room = room_with_host()
    start(room)
    arrive(room, A, Role.PATIENT, 2.0, booking=booked(APPT2))
    arrive(room, C, Role.GUEST, 3.0, "Cy", booking=booked(APPT2))
    assert verdict(room, A) == Verdict(Decision.WAIT, R.HOST_BUSY)
    assert verdict(room, C) == Verdict(Decision.WAIT, R.HOST_BUSY)
    assert waiting_ids(room) == [A, C]
    assert stages(room)[A] is Stage.WAITING


@pytest.mark.parametrize("role", [Role.PATIENT, Role.GUEST])
def test_decide_a_link_without_an_appointment_asks_in_an_appointments_call(role: Role) -> None:
    room = room_with_host()
    start(room)
    arrive(room, C, role, 2.0, "Cy", booking=NO_LINK)
    assert verdict(room, C) == Verdict(Decision.ASK_TO_JOIN, R.NOT_BOOKED)
    assert room.get(C).stage is Stage.LOBBY


@pytest.mark.parametrize("role", [Role.PATIENT, Role.GUEST])
def test_decide_an_ad_hoc_call_takes_links_without_an_appointment_by_capacity(
    role: Role,
) -> None:
    room = room_with_host(capacity=1, appointment=None)
    start(room)
    assert room.active_session is not None
    assert room.active_session.appointment is None
    arrive(room, A, role, 2.0, "Al", booking=NO_LINK)
    assert room.get(A).stage is Stage.IN_CALL
    arrive(room, C, role, 3.0, "Cy", booking=NO_LINK)
    assert verdict(room, C) == Verdict(Decision.ASK_TO_JOIN, R.AT_CAPACITY)
    # A booked patient does not walk into an ad-hoc call: it is not its appointment's.
    arrive(room, D, Role.PATIENT, 4.0, booking=booked())
    assert verdict(room, D) == Verdict(Decision.WAIT, R.HOST_BUSY)


def test_decide_needs_a_host_in_the_call() -> None:
    room = room_with_host()
    start(room)
    arrive(room, A, Role.PATIENT, 2.0)
    room.disconnect(HOST, 3.0)  # within its grace the host is still present
    arrive(room, B, Role.PATIENT, 4.0)
    assert room.get(B).stage is Stage.IN_CALL
    room.expire(3.0 + 30.0, 30.0)  # gone
    assert HOST not in room.participants
    arrive(room, C, Role.PATIENT, 40.0)
    assert verdict(room, C) == Verdict(Decision.WAIT, R.HOST_AWAY)
    assert waiting_ids(room) == [C]
    # The host back in the lobby is not in the call either.
    arrive(room, HOST, Role.HOST, 41.0, "Dr Lee", booking=booked())
    assert verdict(room, C) == Verdict(Decision.WAIT, R.HOST_AWAY)


def test_decision_values_are_stable() -> None:
    # (The reasons' values are checked with the other wire values, in test_events.)
    assert [d.value for d in Decision] == ["join_now", "ask_to_join", "wait"]


# -- display_name ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
def test_display_name_the_token_name_wins(role: Role) -> None:
    assert display_name(role, "Ada Lovelace", "Typed Name") == "Ada Lovelace"
    # What the participant typed is not even looked at.
    assert display_name(role, "Ada Lovelace", "\x00" * 500) == "Ada Lovelace"
    assert display_name(role, "Ada Lovelace", None) == "Ada Lovelace"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Ada", "Ada"),
        ("  Ada \t\n Lovelace  ", "Ada Lovelace"),
        ("Ada\u00a0\u3000Lovelace", "Ada Lovelace"),  # non-breaking and ideographic spaces
        ("Zoë Ñúñez-O'Brien 李小龍", "Zoë Ñúñez-O'Brien 李小龍"),
        ("x" * MAX_NAME_LENGTH, "x" * MAX_NAME_LENGTH),
        ("  " + "x" * MAX_NAME_LENGTH + "  ", "x" * MAX_NAME_LENGTH),  # folded, then measured
    ],
)
@pytest.mark.parametrize("role", list(Role))
def test_display_name_typed(role: Role, given: str, expected: str) -> None:
    assert display_name(role, None, given) == expected


@pytest.mark.parametrize(
    "given", ["", "   ", "\t\n", "x" * (MAX_NAME_LENGTH + 1), "Ada " + "x" * MAX_NAME_LENGTH]
)
def test_display_name_empty_or_too_long(given: str) -> None:
    with pytest.raises(InvalidName) as info:
        display_name(Role.GUEST, None, given)
    assert info.value.code == "invalid_name"
    assert info.value.message == "display name must be 1 to 80 characters"
    assert info.value.details == {"max_length": MAX_NAME_LENGTH}
    assert MAX_NAME_LENGTH == 80


@pytest.mark.parametrize(
    "given",
    [
        "Ada\x00",  # NUL
        "\x1b[31mAda",  # ANSI escape
        "Ada\x7f",  # DEL
        "Ada\x9bLovelace",  # C1 control
        "Ada\u202eecalevoL",  # right-to-left override (format character)
        "Ada\ue000",  # private use
    ],
)
def test_display_name_control_characters(given: str) -> None:
    with pytest.raises(InvalidName) as info:
        display_name(Role.PATIENT, None, given)
    assert info.value.code == "invalid_name"
    assert info.value.message == "display name must not contain control characters"
    assert info.value.details == {}


def test_display_name_a_guest_must_give_one() -> None:
    with pytest.raises(NameRequired) as info:
        display_name(Role.GUEST, None, None)
    assert type(info.value) is NameRequired
    assert info.value.code == "name_required"
    assert info.value.message == "a guest must give a display name to join"


@pytest.mark.parametrize("role", [Role.HOST, Role.PATIENT])
def test_display_name_others_may_have_none(role: Role) -> None:
    assert display_name(role, None, None) is None


# -- arrive ----------------------------------------------------------------------------------


def test_arrive_the_host_stays_in_the_lobby_until_it_starts() -> None:
    room = Room(room_with_host().id)
    events = arrive(room, HOST, Role.HOST, 0.0, "Dr Lee", booking=booked(capacity=3))
    assert events == [arrived(HOST, Role.HOST, 0.0, "Dr Lee", booked(capacity=3))]
    assert stages(room) == {HOST: Stage.LOBBY}
    assert room.get(HOST).booking == Booking(APPT, STARTS, ENDS, 3)


@pytest.mark.parametrize("role", [Role.PATIENT, Role.GUEST])
def test_arrive_before_the_call_waits_for_the_host(role: Role) -> None:
    room = room_with_host()
    assert arrive(room, C, role, 1.0, "Cy") == [
        arrived(C, role, 1.0, "Cy"),
        knocked(C, 1.0, R.HOST_NOT_STARTED),
    ]
    assert room.get(C).stage is Stage.WAITING


def test_arrive_before_the_host_is_even_here() -> None:
    room = Room(room_with_host().id)
    assert [e.kind for e in arrive(room, A, Role.PATIENT, 1.0)] == [K.ARRIVED, K.KNOCKED]


@pytest.mark.parametrize("role", [Role.PATIENT, Role.GUEST])
def test_arrive_in_its_own_call_under_capacity_joins_now(role: Role) -> None:
    room = room_with_host()
    start(room)
    assert arrive(room, C, role, 2.0, "Cy") == [arrived(C, role, 2.0, "Cy"), entered(C, 2.0)]
    assert room.get(C).stage is Stage.IN_CALL


def test_arrive_a_guest_at_capacity_stays_in_the_lobby() -> None:
    room = room_with_host(capacity=1)
    start(room)
    arrive(room, A, Role.PATIENT, 2.0)
    assert arrive(room, C, Role.GUEST, 3.0, "Cy") == [arrived(C, Role.GUEST, 3.0, "Cy")]
    assert room.get(C).stage is Stage.LOBBY
    assert room.waiting() == []


def test_arrive_with_join_now_waits_to_be_told_and_to_confirm() -> None:
    room = room_with_host()
    start(room)
    events = arrive(room, A, Role.PATIENT, 2.0, join_now=True)
    assert events == [
        arrived(A, Role.PATIENT, 2.0, join_now=True),
        knocked(A, 2.0, R.HOST_READY),
    ]
    assert verdict(room, A) == Verdict(Decision.JOIN_NOW, R.HOST_READY)
    assert room.get(A).stage is Stage.WAITING
    assert policy.ask(room, A, 3.0) == [entered(A, 3.0)]  # Join now
    assert room.get(A).stage is Stage.IN_CALL


def test_arrive_again_while_connected_keeps_the_place() -> None:
    room = room_with_host(capacity=1)
    arrive(room, A, Role.PATIENT, 1.0)
    arrive(room, C, Role.GUEST, 2.0, "Cy")
    before = state(room)
    assert arrive(room, A, Role.PATIENT, 3.0) == []
    assert state(room) == before
    start(room, now=4.0)  # A joins by the rule; C stays waiting
    assert stages(room) == {HOST: Stage.IN_CALL, A: Stage.IN_CALL, C: Stage.WAITING}
    before = state(room)
    assert arrive(room, A, Role.PATIENT, 5.0) == []
    assert arrive(room, C, Role.GUEST, 5.0, "Cy") == []
    assert state(room) == before


def test_arrive_after_a_lost_connection_keeps_the_place_and_the_booking() -> None:
    room = room_with_host(capacity=1)
    for now, pid in enumerate((A, C, D), start=1):
        arrive(room, pid, Role.GUEST, float(now), "N")
    room.disconnect(A, 4.0)
    # The link a participant comes back with does not move it to another appointment.
    assert arrive(room, A, Role.GUEST, 5.0, "N", booking=booked(APPT2), join_now=True) == [
        Event(K.RECONNECTED, 5.0, actor=A, participant=A, join_now=True)
    ]
    assert room.get(A).booking == booked(capacity=None)
    assert room.get(A).join_now  # but its new client may confirm its entry
    assert waiting_ids(room) == [A, C, D]
    assert room.get(A).knocked_at == 1.0
    room.disconnect(A, 5.5)
    arrive(room, A, Role.GUEST, 5.8, "N")
    assert not room.get(A).join_now
    start(room, now=6.0)  # A first in line, so A is let in
    room.disconnect(A, 7.0)
    assert [e.kind for e in arrive(room, A, Role.GUEST, 8.0, "N")] == [K.RECONNECTED]
    assert room.get(A).stage is Stage.IN_CALL
    assert waiting_ids(room) == [C, D]


def test_arrive_after_a_lost_connection_in_the_lobby_applies_the_rule_again() -> None:
    room = room_with_host(capacity=1)
    start(room)
    arrive(room, A, Role.GUEST, 2.0, "Al")
    arrive(room, C, Role.GUEST, 3.0, "Cy")  # at capacity: stays in the lobby
    room.disconnect(C, 4.0)
    assert arrive(room, C, Role.GUEST, 5.0, "Cy") == [
        Event(K.RECONNECTED, 5.0, actor=C, participant=C)
    ]
    assert room.get(C).stage is Stage.LOBBY
    room.leave(A, 6.0)
    room.disconnect(C, 7.0)
    assert arrive(room, C, Role.GUEST, 8.0, "Cy") == [
        Event(K.RECONNECTED, 8.0, actor=C, participant=C),
        entered(C, 8.0),
    ]


def test_arrive_with_another_role_is_refused() -> None:
    room = room_with_host()
    arrive(room, A, Role.PATIENT, 1.0)
    assert_rejected(room, InvalidState, "invalid_state", lambda: arrive(room, A, Role.GUEST, 2.0))
    assert_rejected(
        room, InvalidState, "invalid_state", lambda: arrive(room, HOST, Role.PATIENT, 2.0)
    )


# -- ask (knock, join) -----------------------------------------------------------------------


def test_ask_at_capacity_waits_for_the_host() -> None:
    room = room_with_host(capacity=1)
    start(room)
    arrive(room, A, Role.PATIENT, 2.0)
    arrive(room, C, Role.GUEST, 3.0, "Cy")
    assert policy.ask(room, C, 4.0) == [knocked(C, 4.0, R.AT_CAPACITY)]
    assert waiting_ids(room) == [C]
    assert room.position(C) == 1


def test_ask_without_an_appointment_waits_for_the_host() -> None:
    room = room_with_host()
    start(room)
    arrive(room, C, Role.GUEST, 2.0, "Cy", booking=NO_LINK)
    assert policy.ask(room, C, 3.0) == [knocked(C, 3.0, R.NOT_BOOKED)]


def test_ask_under_capacity_joins_now() -> None:
    room = room_with_host(capacity=1)
    start(room)
    arrive(room, A, Role.GUEST, 2.0, "Al")
    arrive(room, C, Role.GUEST, 3.0, "Cy")
    room.leave(A, 4.0)
    assert policy.ask(room, C, 5.0) == [entered(C, 5.0)]


def test_ask_from_the_lobby_after_the_call_ended_waits_for_the_host() -> None:
    room = room_with_host()
    start(room)
    arrive(room, A, Role.PATIENT, 2.0)
    policy.end(room, HOST, 3.0)
    assert room.get(A).stage is Stage.LOBBY
    assert policy.ask(room, A, 4.0) == [knocked(A, 4.0, R.HOST_NOT_STARTED)]


def test_ask_errors() -> None:
    room = room_with_host(capacity=1)
    start(room)
    arrive(room, A, Role.PATIENT, 2.0)
    arrive(room, C, Role.GUEST, 3.0, "Cy")
    policy.ask(room, C, 4.0)
    error: AdmissionError | RoomError = assert_rejected(
        room, Forbidden, "forbidden", lambda: policy.ask(room, HOST, 5.0)
    )
    assert error.message == "the host does not ask to join: start the call instead"
    error = assert_rejected(room, InvalidState, "invalid_state", lambda: policy.ask(room, C, 5.0))
    assert error.message == "cannot knock for p_c: participant is waiting"
    error = assert_rejected(room, InvalidState, "invalid_state", lambda: policy.ask(room, A, 5.0))
    assert error.message == "cannot ask to join for p_a: already in the call"
    assert_rejected(
        room, UnknownParticipant, "unknown_participant", lambda: policy.ask(room, NOBODY, 5.0)
    )


# -- start -----------------------------------------------------------------------------------


def test_start_with_nobody_waiting() -> None:
    room = room_with_host(capacity=3)
    assert start(room, now=1.0) == [
        Event(
            K.SESSION_STARTED,
            1.0,
            actor=HOST,
            session=S1,
            appointment=APPT,
            capacity=3,
            closes_at=ENDS + CLOSES_AFTER,
        ),
        Event(K.CLINICIAN_ENTERED, 1.0, actor=HOST, participant=HOST, session=S1),
    ]
    session = room.active_session
    assert session is not None
    assert (session.closes_at, session.host_away_since) == (ENDS + CLOSES_AFTER, None)


def test_start_an_ad_hoc_call_has_no_window() -> None:
    room = room_with_host(capacity=2, appointment=None)
    events = start(room)
    assert events[0] == Event(
        K.SESSION_STARTED, 1.0, actor=HOST, session=S1, appointment=None, capacity=2
    )


def test_start_without_any_capacity_on_the_link_takes_one() -> None:
    room = Room(room_with_host().id)
    arrive(room, HOST, Role.HOST, 0.0, booking=NO_BOOKING)
    assert start(room)[0].capacity == 1


def test_start_for_an_appointment_of_someone_in_the_room() -> None:
    """A clinician's persistent link has no appointment: the call of the next appointment
    takes its times and capacity from the links of those who came for it."""
    room = room_with_host(capacity=1, appointment=None)
    later = booked(APPT2, capacity=3, starts_at=5000.0, ends_at=5600.0)
    arrive(room, A, Role.PATIENT, 1.0, booking=later)
    arrive(room, C, Role.GUEST, 2.0, "Cy", booking=booked(APPT2, capacity=2, ends_at=5600.0))
    events = start(room, now=3.0, appointment=APPT2)
    assert events == [
        Event(
            K.SESSION_STARTED,
            3.0,
            actor=HOST,
            session=S1,
            appointment=APPT2,
            capacity=3,
            closes_at=5600.0 + CLOSES_AFTER,
        ),
        Event(K.CLINICIAN_ENTERED, 3.0, actor=HOST, participant=HOST, session=S1),
        entered(A, 3.0),
        entered(C, 3.0),  # capacity 3 from the patient's link
    ]


def test_start_for_an_appointment_nobody_here_has_a_link_for() -> None:
    room = room_with_host()
    arrive(room, A, Role.PATIENT, 1.0)
    error = assert_rejected(
        room,
        UnknownAppointment,
        "unknown_appointment",
        lambda: start(room, appointment=APPT2),
    )
    assert error.details == {"appointment": APPT2}
    assert error.message == "cannot start a call for apt_2: no link for it is in this room"


def test_start_naming_the_hosts_own_appointment() -> None:
    room = room_with_host(capacity=2)
    assert start(room, appointment=APPT)[0].appointment == APPT


def test_start_while_another_appointments_call_is_active() -> None:
    room = room_with_host()
    arrive(room, A, Role.PATIENT, 1.0, booking=booked(APPT2))
    start(room, now=2.0)
    room.leave(HOST, 3.0)
    arrive(room, HOST, Role.HOST, 4.0, booking=booked())
    error = assert_rejected(
        room,
        CallInProgress,
        "call_in_progress",
        lambda: start(room, now=5.0, appointment=APPT2),
    )
    assert error.details == {"appointment": APPT2, "active": APPT}
    # Rejoining the active call, named or not, works.
    assert start(room, now=6.0, appointment=APPT) == [
        Event(K.CLINICIAN_ENTERED, 6.0, actor=HOST, participant=HOST, session=S1)
    ]


def test_start_errors_from_the_room_change_nothing() -> None:
    room = room_with_host()
    start(room)
    error = assert_rejected(room, InvalidState, "invalid_state", lambda: start(room, now=2.0))
    assert error.message == "cannot start: p_host is already in the call"


def test_start_lets_in_only_the_people_of_the_call_being_started() -> None:
    room = room_with_host(capacity=1)
    arrive(room, A, Role.PATIENT, 1.0, booking=booked(APPT2))  # the next appointment
    arrive(room, B, Role.PATIENT, 2.0)  # this one's patient
    arrive(room, C, Role.GUEST, 3.0, "Cy", booking=NO_LINK)  # no appointment
    arrive(room, D, Role.PATIENT, 4.0, join_now=True)  # this one's, confirms its own entry
    events = start(room, now=5.0)
    assert events[2:] == [entered(B, 5.0)]
    assert stages(room) == {
        HOST: Stage.IN_CALL,
        A: Stage.WAITING,
        B: Stage.IN_CALL,
        C: Stage.WAITING,
        D: Stage.WAITING,
    }
    assert [verdict(room, p).reason for p in (A, C, D)] == [
        R.HOST_BUSY,
        R.NOT_BOOKED,
        R.HOST_READY,
    ]


def test_rejoin_lets_the_waiting_room_in_by_the_rule() -> None:
    room = room_with_host(capacity=1)
    start(room)
    arrive(room, A, Role.GUEST, 2.0, "Al")
    arrive(room, C, Role.GUEST, 3.0, "Cy")
    arrive(room, D, Role.GUEST, 3.5, "Di")
    policy.ask(room, C, 4.0)
    policy.ask(room, D, 4.5)
    room.leave(HOST, 5.0)
    room.leave(A, 6.0)  # a place is free, but nobody decides while the host is away
    assert waiting_ids(room) == [C, D]
    arrive(room, HOST, Role.HOST, 7.0, booking=booked(capacity=1))
    assert start(room, now=8.0) == [
        Event(K.CLINICIAN_ENTERED, 8.0, actor=HOST, participant=HOST, session=S1),
        entered(C, 8.0),
    ]
    assert waiting_ids(room) == [D]


# -- end, admit, admit_all, deny -------------------------------------------------------------


def test_end() -> None:
    room = room_with_host()
    start(room)
    arrive(room, A, Role.PATIENT, 2.0)
    assert policy.end(room, HOST, 3.0) == [
        Event(
            K.CLINICIAN_EXITED,
            3.0,
            actor=HOST,
            participant=HOST,
            cause=ExitCause.SESSION_ENDED,
            session=S1,
        ),
        Event(
            K.PATIENT_EXITED,
            3.0,
            actor=HOST,
            participant=A,
            cause=ExitCause.SESSION_ENDED,
            session=S1,
        ),
        Event(K.SESSION_ENDED, 3.0, actor=HOST, session=S1),
    ]
    assert room.active_session is None
    assert room.session is not None
    assert room.session.end_cause is None
    assert room.ended(APPT)
    assert_rejected(
        room, SessionNotStarted, "session_not_started", lambda: policy.end(room, HOST, 4.0)
    )


def test_admit_and_deny_need_a_waiting_participant() -> None:
    room = room_with_host()
    arrive(room, A, Role.PATIENT, 1.0)
    assert_rejected(
        room, SessionNotStarted, "session_not_started", lambda: policy.admit(room, HOST, A, 2.0)
    )
    assert_rejected(
        room, SessionNotStarted, "session_not_started", lambda: policy.admit_all(room, HOST, 2.0)
    )
    start(room)
    assert_rejected(room, InvalidState, "invalid_state", lambda: policy.admit(room, HOST, A, 3.0))
    assert_rejected(
        room, InvalidState, "invalid_state", lambda: policy.deny(room, HOST, A, None, 3.0)
    )
    assert_rejected(
        room,
        UnknownParticipant,
        "unknown_participant",
        lambda: policy.deny(room, HOST, NOBODY, None, 3.0),
    )


def test_the_host_may_admit_someone_of_another_appointment_by_hand() -> None:
    room = room_with_host()
    start(room)
    arrive(room, A, Role.PATIENT, 2.0, booking=booked(APPT2))
    assert policy.admit(room, HOST, A, 3.0) == [
        Event(K.ADMITTED, 3.0, actor=HOST, participant=A, session=S1),
        entered(A, 3.0, actor=HOST),
    ]


def test_admit_all_leaves_those_waiting_for_another_appointment() -> None:
    room, log = hosted(capacity=1)
    log += start(room)
    log += arrive(room, A, Role.PATIENT, 2.0)
    log += arrive(room, B, Role.PATIENT, 2.5, booking=booked(APPT2))  # waits: host_busy
    for now, pid, booking in [(3.0, E, None), (4.0, C, NO_LINK), (5.0, D, None)]:
        log += arrive(room, pid, Role.GUEST, now, "N", booking=booking)
        log += policy.ask(room, pid, now + 0.5)
    assert waiting_ids(room) == [B, E, C, D]
    log += policy.admit(room, HOST, D, 6.0)  # one by hand first
    events = policy.admit_all(room, HOST, 7.0)
    assert events == [
        Event(K.ADMITTED, 7.0, actor=HOST, participant=E, session=S1),
        entered(E, 7.0, actor=HOST),
        Event(K.ADMITTED, 7.0, actor=HOST, participant=C, session=S1),
        entered(C, 7.0, actor=HOST),
    ]
    log += events
    assert waiting_ids(room) == [B]
    assert room.occupancy() == 4  # the host's decision is not bound by capacity
    assert policy.admit_all(room, HOST, 8.0) == []
    assert_folds(room, log)


HostAction = Callable[[Room, ParticipantId], list[Event]]
HOST_ACTIONS: dict[str, tuple[str, HostAction]] = {
    "start": (
        "only the host may start the call",
        lambda room, actor: policy.start(room, actor, session=S2, now=9.0),
    ),
    "end": ("only the host may end the call", lambda room, actor: policy.end(room, actor, 9.0)),
    "admit": ("only the host may admit", lambda room, actor: policy.admit(room, actor, C, 9.0)),
    "admit_all": (
        "only the host may admit all",
        lambda room, actor: policy.admit_all(room, actor, 9.0),
    ),
    "deny": ("only the host may deny", lambda room, actor: policy.deny(room, actor, C, None, 9.0)),
}


def room_with_a_knock() -> Room:
    """Started at capacity 1: patient A and admitted guest D in the call; guests E and C
    asked after it was full and wait, in that order."""
    room = room_with_host(capacity=1)
    start(room)
    arrive(room, A, Role.PATIENT, 2.0)
    arrive(room, D, Role.GUEST, 3.0, "Di")
    policy.ask(room, D, 3.5)
    policy.admit(room, HOST, D, 3.6)
    arrive(room, E, Role.GUEST, 3.8, "Ed")
    policy.ask(room, E, 3.9)
    arrive(room, C, Role.GUEST, 4.0, "Cy")
    policy.ask(room, C, 5.0)
    assert waiting_ids(room) == [E, C]
    assert stages(room) == {
        HOST: Stage.IN_CALL,
        E: Stage.WAITING,
        A: Stage.IN_CALL,
        D: Stage.IN_CALL,
        C: Stage.WAITING,
    }
    return room


@pytest.mark.parametrize("action", sorted(HOST_ACTIONS))
@pytest.mark.parametrize(("actor", "role"), [(A, "patient"), (D, "guest"), (E, "guest")])
def test_only_the_host_may(action: str, actor: ParticipantId, role: str) -> None:
    room = room_with_a_knock()
    message, command = HOST_ACTIONS[action]
    error = assert_rejected(room, Forbidden, "forbidden", lambda: command(room, actor))
    assert error.message == message
    assert error.details == {"role": role}


@pytest.mark.parametrize("action", sorted(HOST_ACTIONS))
def test_only_the_host_may_even_before_the_call(action: str) -> None:
    room = room_with_host()
    arrive(room, A, Role.PATIENT, 1.0)
    arrive(room, C, Role.GUEST, 2.0, "Cy")
    _, command = HOST_ACTIONS[action]
    assert_rejected(room, Forbidden, "forbidden", lambda: command(room, A))


@pytest.mark.parametrize("action", sorted(HOST_ACTIONS))
def test_host_actions_by_an_unknown_actor(action: str) -> None:
    room = room_with_a_knock()
    _, command = HOST_ACTIONS[action]
    assert_rejected(room, UnknownParticipant, "unknown_participant", lambda: command(room, NOBODY))


# -- check_signal ----------------------------------------------------------------------------


def test_check_signal_between_participants_in_the_call() -> None:
    room = room_with_a_knock()
    for sender, recipient in [(HOST, A), (A, HOST), (A, D), (D, A)]:
        policy.check_signal(room, sender, recipient)  # does not raise


def test_check_signal_from_someone_not_in_the_call() -> None:
    room = room_with_a_knock()
    error: AdmissionError | RoomError = assert_rejected(
        room, NotInCall, "not_in_call", lambda: policy.check_signal(room, C, HOST)
    )
    assert error.message == "cannot signal: p_c is not in the call"
    assert error.details == {}
    assert_rejected(
        room,
        UnknownParticipant,
        "unknown_participant",
        lambda: policy.check_signal(room, NOBODY, HOST),
    )


LOBBY_GUEST = ParticipantId("p_lobby")


@pytest.mark.parametrize(
    ("sender", "recipient"),
    [
        pytest.param(HOST, C, id="recipient-waiting"),
        pytest.param(A, LOBBY_GUEST, id="recipient-in-lobby"),
        pytest.param(HOST, NOBODY, id="recipient-unknown"),
        pytest.param(A, A, id="recipient-is-sender"),
        pytest.param(HOST, HOST, id="host-to-itself"),
    ],
)
def test_check_signal_to_someone_not_in_the_call(
    sender: ParticipantId, recipient: ParticipantId
) -> None:
    room = room_with_a_knock()
    arrive(room, LOBBY_GUEST, Role.GUEST, 6.0, "Lo")  # at capacity: stays in the lobby
    assert room.get(LOBBY_GUEST).stage is Stage.LOBBY
    error = assert_rejected(
        room,
        PeerNotAdmitted,
        "peer_not_admitted",
        lambda: policy.check_signal(room, sender, recipient),
    )
    expected = (
        "cannot signal oneself"
        if recipient == sender
        else f"cannot signal {recipient}: participant is not in the call"
    )
    assert error.message == expected
    assert error.details == {"participant": recipient}


def test_check_signal_after_the_call_ended() -> None:
    room = room_with_a_knock()
    policy.end(room, HOST, 9.0)
    assert_rejected(room, NotInCall, "not_in_call", lambda: policy.check_signal(room, HOST, A))


def test_start_takes_the_appointment_of_the_link_the_host_uses_now() -> None:
    """The clinician is one participant whatever link it opens the room with: the call it
    starts is for the appointment of the link of this connection, not of its first one."""
    room = room_with_host(capacity=1)  # first came with APPT's link
    second = booked(APPT2, capacity=3, ends_at=9000.0)
    events = policy.start(room, HOST, session=S1, now=1.0, own=second, closes_after=10.0)
    assert (events[0].appointment, events[0].capacity, events[0].closes_at) == (APPT2, 3, 9010.0)


# -- the host's notice ------------------------------------------------------------------------


def test_notice_text_is_cleaned_and_bounded() -> None:
    from admission.policy import MAX_NOTICE_LENGTH, notice_text

    assert notice_text("  Running\t10\nminutes   late  ") == "Running 10 minutes late"
    assert notice_text("a\u200bb\x07c\u202ed") == "abcd"  # format and control characters go
    assert notice_text("x" * 500) == "x" * MAX_NOTICE_LENGTH
    assert notice_text(" \n ") == ""


def test_only_the_host_sends_a_notice() -> None:
    from admission.errors import Forbidden
    from tests.admission.support import arrive, room_with_host
    from tests.rooms.support import HOST, A

    room = room_with_host()
    arrive(room, A, Role.PATIENT, 1.0)
    with pytest.raises(Forbidden):
        policy.notify(room, A, "hello", 2.0)
    [event] = policy.notify(room, HOST, " Running  late ", 2.0, to=A)
    assert (event.message, event.participant) == ("Running late", A)
