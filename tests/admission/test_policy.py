"""The admission policy (seed 002): entry decisions, Ask to Join, host-only actions, names,
and who may signal whom.

Synchronous and pure like the room tests: each policy function is called with an explicit
``now`` and the events it returns are compared whole. A call that raises must leave the
room exactly as it was (`assert_rejected`); story tests also check that the events they
collected fold back into the same room.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from admission import policy
from admission.errors import (
    AdmissionError,
    Forbidden,
    InvalidName,
    NameRequired,
    NotInCall,
    PeerNotAdmitted,
)
from admission.policy import MAX_NAME_LENGTH, Decision, decide, display_name
from rooms import (
    Event,
    EventKind,
    ExitCause,
    InvalidState,
    ParticipantId,
    Role,
    Room,
    RoomError,
    RoomId,
    SessionId,
    SessionNotStarted,
    Stage,
    UnknownParticipant,
    WaitReason,
)
from tests.rooms.support import (
    APPT,
    GRACE,
    HOST,
    NOBODY,
    ROOM_ID,
    S1,
    S2,
    A,
    B,
    C,
    D,
    E,
    K,
    assert_rejected,
    state,
)


def assert_folds(room: Room, log: list[Event]) -> None:
    """The events collected, and their storage records, rebuild the room."""
    for events in (log, [Event.from_record(event.to_record()) for event in log]):
        rebuilt = Room(ROOM_ID)
        rebuilt.apply_all(events)
        assert state(rebuilt) == state(room)
    assert room.version == len(log)


def arrive(
    room: Room, pid: ParticipantId, role: Role, now: float, name: str | None = None
) -> list[Event]:
    return policy.arrive(room, pid, role, name=name, subject=None, now=now)


def start(room: Room, *, capacity: int = 2, now: float = 1.0) -> list[Event]:
    return policy.start(room, HOST, session=S1, appointment=APPT, capacity=capacity, now=now)


def room_with_host() -> Room:
    room = Room(ROOM_ID)
    arrive(room, HOST, Role.HOST, 0.0, "Dr Lee")
    return room


def arrived(pid: ParticipantId, role: Role, now: float, name: str | None = None) -> Event:
    return Event(K.ARRIVED, now, actor=pid, participant=pid, role=role, name=name)


def knocked(pid: ParticipantId, now: float, reason: WaitReason) -> Event:
    return Event(K.KNOCKED, now, actor=pid, participant=pid, reason=reason)


def entered(pid: ParticipantId, now: float, actor: ParticipantId | None = None) -> Event:
    return Event(K.PATIENT_ENTERED, now, actor=actor or pid, participant=pid, session=S1)


def stages(room: Room) -> dict[ParticipantId, Stage]:
    return {pid: p.stage for pid, p in room.participants.items()}


def waiting_ids(room: Room) -> list[ParticipantId]:
    return [p.id for p in room.waiting()]


# -- decide ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.PATIENT, Role.GUEST])
def test_decide_before_the_call_everyone_waits_for_the_host(role: Role) -> None:
    assert decide(room_with_host(), role) is Decision.WAIT_FOR_HOST


def test_decide_during_the_call() -> None:
    room = room_with_host()
    start(room, capacity=1)
    # The host does not count against capacity.
    assert decide(room, Role.GUEST) is Decision.JOIN_NOW
    assert decide(room, Role.PATIENT) is Decision.JOIN_NOW
    arrive(room, A, Role.PATIENT, 2.0)
    assert room.occupancy() == 1
    assert decide(room, Role.GUEST) is Decision.ASK_TO_JOIN
    assert decide(room, Role.PATIENT) is Decision.JOIN_NOW
    arrive(room, B, Role.PATIENT, 3.0)  # over capacity: booked patients still join
    assert room.occupancy() == 2
    assert decide(room, Role.PATIENT) is Decision.JOIN_NOW


def test_decision_values_are_stable() -> None:
    assert [d.value for d in Decision] == ["join_now", "wait_for_host", "ask_to_join"]


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
    room = Room(ROOM_ID)
    assert arrive(room, HOST, Role.HOST, 0.0, "Dr Lee") == [arrived(HOST, Role.HOST, 0.0, "Dr Lee")]
    assert stages(room) == {HOST: Stage.LOBBY}


@pytest.mark.parametrize("role", [Role.PATIENT, Role.GUEST])
def test_arrive_before_the_call_waits_for_the_host(role: Role) -> None:
    room = room_with_host()
    assert arrive(room, C, role, 1.0, "Cy") == [
        arrived(C, role, 1.0, "Cy"),
        knocked(C, 1.0, WaitReason.HOST_NOT_STARTED),
    ]
    assert room.get(C).stage is Stage.WAITING
    assert room.wait_reason() is WaitReason.HOST_NOT_STARTED


def test_arrive_before_the_host_is_even_here() -> None:
    room = Room(ROOM_ID)
    assert [e.kind for e in arrive(room, A, Role.PATIENT, 1.0)] == [K.ARRIVED, K.KNOCKED]


@pytest.mark.parametrize("role", [Role.PATIENT, Role.GUEST])
def test_arrive_during_the_call_under_capacity_joins_now(role: Role) -> None:
    room = room_with_host()
    start(room)
    assert arrive(room, C, role, 2.0, "Cy") == [arrived(C, role, 2.0, "Cy"), entered(C, 2.0)]
    assert room.get(C).stage is Stage.IN_CALL


def test_arrive_a_guest_at_capacity_stays_in_the_lobby() -> None:
    room = room_with_host()
    start(room, capacity=1)
    arrive(room, A, Role.PATIENT, 2.0)
    assert arrive(room, C, Role.GUEST, 3.0, "Cy") == [arrived(C, Role.GUEST, 3.0, "Cy")]
    assert room.get(C).stage is Stage.LOBBY
    assert room.waiting() == []
    assert decide(room, Role.GUEST) is Decision.ASK_TO_JOIN


def test_arrive_again_while_connected_keeps_the_place() -> None:
    room = room_with_host()
    arrive(room, A, Role.PATIENT, 1.0)
    arrive(room, C, Role.GUEST, 2.0, "Cy")
    before = state(room)
    assert arrive(room, A, Role.PATIENT, 3.0) == []
    assert state(room) == before
    start(room, capacity=1, now=4.0)  # A joins by the rule; C stays waiting
    assert stages(room) == {HOST: Stage.IN_CALL, A: Stage.IN_CALL, C: Stage.WAITING}
    before = state(room)
    assert arrive(room, A, Role.PATIENT, 5.0) == []
    assert arrive(room, C, Role.GUEST, 5.0, "Cy") == []
    assert state(room) == before


def test_arrive_after_a_lost_connection_keeps_the_place() -> None:
    room = room_with_host()
    for now, pid in enumerate((A, C, D), start=1):
        arrive(room, pid, Role.GUEST, float(now), "N")
    room.disconnect(A, 4.0)
    assert arrive(room, A, Role.GUEST, 5.0, "N") == [
        Event(K.RECONNECTED, 5.0, actor=A, participant=A)
    ]
    assert waiting_ids(room) == [A, C, D]
    assert room.get(A).knocked_at == 1.0
    start(room, capacity=1, now=6.0)  # A first in line, so A is let in
    room.disconnect(A, 7.0)
    assert [e.kind for e in arrive(room, A, Role.GUEST, 8.0, "N")] == [K.RECONNECTED]
    assert room.get(A).stage is Stage.IN_CALL
    assert waiting_ids(room) == [C, D]


def test_arrive_after_a_lost_connection_in_the_lobby_applies_the_rule_again() -> None:
    room = room_with_host()
    start(room, capacity=1)
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


# -- ask -------------------------------------------------------------------------------------


def test_ask_at_capacity_waits_for_the_host() -> None:
    room = room_with_host()
    start(room, capacity=1)
    arrive(room, A, Role.PATIENT, 2.0)
    arrive(room, C, Role.GUEST, 3.0, "Cy")
    assert policy.ask(room, C, 4.0) == [knocked(C, 4.0, WaitReason.AT_CAPACITY)]
    assert waiting_ids(room) == [C]
    assert room.position(C) == 1
    assert room.wait_reason() is WaitReason.AT_CAPACITY


def test_ask_under_capacity_joins_now() -> None:
    room = room_with_host()
    start(room, capacity=1)
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
    assert policy.ask(room, A, 4.0) == [knocked(A, 4.0, WaitReason.HOST_NOT_STARTED)]


def test_ask_errors() -> None:
    room = room_with_host()
    start(room, capacity=1)
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
    assert error.message == "cannot knock for p_a: participant is in_call"
    assert_rejected(
        room, UnknownParticipant, "unknown_participant", lambda: policy.ask(room, NOBODY, 5.0)
    )


# -- start, end, admit, admit_all, deny ------------------------------------------------------


def test_start_with_nobody_waiting() -> None:
    room = room_with_host()
    assert start(room, capacity=3, now=1.0) == [
        Event(K.SESSION_STARTED, 1.0, actor=HOST, session=S1, appointment=APPT, capacity=3),
        Event(K.CLINICIAN_ENTERED, 1.0, actor=HOST, participant=HOST, session=S1),
    ]


def test_start_errors_from_the_room_change_nothing() -> None:
    room = room_with_host()
    assert_rejected(room, InvalidState, "invalid_state", lambda: start(room, capacity=0))
    start(room)
    assert_rejected(room, InvalidState, "invalid_state", lambda: start(room, now=2.0))


def test_rejoin_lets_the_waiting_room_in_by_the_rule() -> None:
    room = room_with_host()
    start(room, capacity=1)
    arrive(room, A, Role.GUEST, 2.0, "Al")
    arrive(room, C, Role.GUEST, 3.0, "Cy")
    arrive(room, D, Role.GUEST, 3.5, "Di")
    policy.ask(room, C, 4.0)
    policy.ask(room, D, 4.5)
    room.leave(HOST, 5.0)
    room.leave(A, 6.0)  # a place is free, but nobody decides while the host is away
    assert waiting_ids(room) == [C, D]
    arrive(room, HOST, Role.HOST, 7.0)
    assert start(room, capacity=1, now=8.0) == [
        Event(K.CLINICIAN_ENTERED, 8.0, actor=HOST, participant=HOST, session=S1),
        entered(C, 8.0),
    ]
    assert waiting_ids(room) == [D]


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


HostAction = Callable[[Room, ParticipantId], list[Event]]
HOST_ACTIONS: dict[str, tuple[str, HostAction]] = {
    "start": (
        "only the host may start the call",
        lambda room, actor: policy.start(
            room, actor, session=S2, appointment=None, capacity=5, now=9.0
        ),
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
    room = room_with_host()
    start(room, capacity=1)
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


# -- seed 002 --------------------------------------------------------------------------------


@pytest.mark.parametrize("c_logged_in", [True, False], ids=["portal", "link"])
def test_seed_002_scenario_1_last_minute_guest_under_capacity(c_logged_in: bool) -> None:
    """Booked for A and B (capacity 2); C got the link. C comes before A and B have both
    joined: Join now. A and B still join at once, whatever the count."""
    log: list[Event] = []
    room = Room(ROOM_ID)
    log += arrive(room, HOST, Role.HOST, 0.0, "Dr Lee")
    log += start(room, capacity=2, now=1.0)
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
    assert stages(room) == {
        HOST: Stage.IN_CALL,
        A: Stage.IN_CALL,
        C: Stage.IN_CALL,
        B: Stage.IN_CALL,
    }
    assert_folds(room, log)


@pytest.mark.parametrize("c_logged_in", [True, False], ids=["portal", "link"])
def test_seed_002_scenario_1_last_minute_guest_at_capacity(c_logged_in: bool) -> None:
    """A and B have both joined: C sees Ask to Join, asks, waits; the host admits or denies."""
    log: list[Event] = []
    room = Room(ROOM_ID)
    log += arrive(room, HOST, Role.HOST, 0.0, "Dr Lee")
    log += start(room, capacity=2, now=1.0)
    log += arrive(room, A, Role.PATIENT, 2.0)
    log += arrive(room, B, Role.PATIENT, 3.0)
    name = display_name(Role.GUEST, "Cy Portal" if c_logged_in else None, "Cy Link")
    events = arrive(room, C, Role.GUEST, 4.0, name)
    assert events == [arrived(C, Role.GUEST, 4.0, name)]  # Ask to Join: no entry, no knock
    log += events
    assert decide(room, Role.GUEST) is Decision.ASK_TO_JOIN
    assert room.get(C).stage is Stage.LOBBY
    events = policy.ask(room, C, 5.0)
    assert events == [knocked(C, 5.0, WaitReason.AT_CAPACITY)]
    log += events
    assert room.waiting() == [room.get(C)]  # the host sees C under "Waiting to Join"
    # Late guests queue behind C.
    log += arrive(room, D, Role.GUEST, 6.0, "Di")
    log += policy.ask(room, D, 6.5)
    assert waiting_ids(room) == [C, D]

    events = policy.admit(room, HOST, C, 7.0)
    assert events == [
        Event(K.ADMITTED, 7.0, actor=HOST, participant=C, session=S1),
        entered(C, 7.0, actor=HOST),
    ]
    log += events
    assert room.occupancy() == 3  # the host's decision is not bound by capacity
    events = policy.deny(room, HOST, D, "this session is full", 8.0)
    assert events == [
        Event(K.DENIED, 8.0, actor=HOST, participant=D, message="this session is full"),
        Event(K.DEPARTED, 8.0, actor=HOST, participant=D, cause=ExitCause.DENIED),
    ]
    log += events
    assert D not in room.participants
    assert room.waiting() == []
    assert_folds(room, log)


def test_seed_002_admit_all_admits_the_rest_in_order() -> None:
    log: list[Event] = []
    room = Room(ROOM_ID)
    log += arrive(room, HOST, Role.HOST, 0.0)
    log += start(room, capacity=1, now=1.0)
    log += arrive(room, A, Role.PATIENT, 2.0)
    for now, pid in [(3.0, E), (4.0, C), (5.0, D)]:
        log += arrive(room, pid, Role.GUEST, now, "N")
        log += policy.ask(room, pid, now + 0.5)
    log += policy.admit(room, HOST, C, 6.0)  # one by hand first
    assert waiting_ids(room) == [E, D]
    events = policy.admit_all(room, HOST, 7.0)
    assert events == [
        Event(K.ADMITTED, 7.0, actor=HOST, participant=E, session=S1),
        entered(E, 7.0, actor=HOST),
        Event(K.ADMITTED, 7.0, actor=HOST, participant=D, session=S1),
        entered(D, 7.0, actor=HOST),
    ]
    log += events
    assert room.waiting() == []
    assert room.occupancy() == 4
    assert policy.admit_all(room, HOST, 8.0) == []
    assert_folds(room, log)


def test_seed_002_early_arrivals_wait_for_the_host_and_are_let_in_by_the_rule() -> None:
    """Nobody enters before the host starts; at start the waiting room is let in, in
    arrival order, by the rule; whoever the rule leaves out keeps waiting, as an ask."""
    log: list[Event] = []
    room = Room(ROOM_ID)
    log += arrive(room, HOST, Role.HOST, 0.0, "Dr Lee")
    for now, pid, role in [
        (1.0, C, Role.GUEST),
        (2.0, A, Role.PATIENT),
        (3.0, D, Role.GUEST),
        (4.0, B, Role.PATIENT),
        (5.0, E, Role.GUEST),
    ]:
        events = arrive(room, pid, role, now, "N")
        assert events == [
            arrived(pid, role, now, "N"),
            knocked(pid, now, WaitReason.HOST_NOT_STARTED),
        ]
        log += events
    # The host sees them, in arrival order, waiting for the call to start.
    assert waiting_ids(room) == [C, A, D, B, E]
    assert room.wait_reason() is WaitReason.HOST_NOT_STARTED
    assert all(room.get(pid).stage is Stage.WAITING for pid in (A, B, C, D, E))
    # Patients cannot get in by asking either.
    assert_rejected(room, InvalidState, "invalid_state", lambda: policy.ask(room, A, 5.5))

    events = start(room, capacity=2, now=6.0)
    assert events == [
        Event(K.SESSION_STARTED, 6.0, actor=HOST, session=S1, appointment=APPT, capacity=2),
        Event(K.CLINICIAN_ENTERED, 6.0, actor=HOST, participant=HOST, session=S1),
        entered(C, 6.0),  # first guest: 0 < 2
        entered(A, 6.0),  # booked patient
        # D (guest) finds the call at capacity and stays.
        entered(B, 6.0),  # booked patients get in past waiting guests
        # E (guest) stays too.
    ]
    log += events
    assert waiting_ids(room) == [D, E]
    assert room.wait_reason() is WaitReason.AT_CAPACITY
    assert room.occupancy() == 3
    # A late booked patient still joins at once; a late guest must ask.
    log += arrive(room, ParticipantId("p_late"), Role.PATIENT, 7.0)
    assert room.get(ParticipantId("p_late")).stage is Stage.IN_CALL
    log += policy.admit_all(room, HOST, 8.0)
    assert room.waiting() == []
    assert_folds(room, log)


def test_seed_002_the_host_drops_and_the_waiting_room_waits() -> None:
    """FAQ 4: if the host's connection drops, waiting participants remain waiting; after the
    grace period the host is removed, and on its return it can admit or deny them as usual."""
    log: list[Event] = []
    room = Room(ROOM_ID)
    log += arrive(room, HOST, Role.HOST, 0.0, "Dr Lee")
    log += start(room, capacity=1, now=1.0)
    log += arrive(room, A, Role.PATIENT, 2.0)
    for now, pid in [(3.0, C), (4.0, D)]:
        log += arrive(room, pid, Role.GUEST, now, "N")
        log += policy.ask(room, pid, now)
    assert waiting_ids(room) == [C, D]

    log += room.disconnect(HOST, 10.0)
    assert stages(room) == {
        HOST: Stage.IN_CALL,
        A: Stage.IN_CALL,
        C: Stage.WAITING,
        D: Stage.WAITING,
    }
    assert room.expire(10.0 + GRACE - 1.0, GRACE) == []
    events = room.expire(10.0 + GRACE, GRACE)
    assert events == [
        Event(
            K.CLINICIAN_EXITED,
            40.0,
            participant=HOST,
            cause=ExitCause.TIMED_OUT,
            session=S1,
        ),
        Event(K.DEPARTED, 40.0, participant=HOST, cause=ExitCause.TIMED_OUT),
    ]
    log += events
    assert HOST not in room.participants
    # The waiting room is untouched, and the call goes on.
    assert waiting_ids(room) == [C, D]
    assert [room.position(C), room.position(D)] == [1, 2]
    assert room.get(A).stage is Stage.IN_CALL
    assert room.active_session is not None

    # The host comes back: a new arrival, then Rejoin (no new session).
    events = arrive(room, HOST, Role.HOST, 50.0, "Dr Lee")
    assert events == [arrived(HOST, Role.HOST, 50.0, "Dr Lee")]
    log += events
    events = start(room, capacity=1, now=51.0)
    assert events == [Event(K.CLINICIAN_ENTERED, 51.0, actor=HOST, participant=HOST, session=S1)]
    log += events
    assert waiting_ids(room) == [C, D]  # still at capacity: they keep waiting
    log += policy.admit(room, HOST, D, 52.0)
    log += policy.deny(room, HOST, C, None, 53.0)
    assert room.waiting() == []
    assert stages(room) == {A: Stage.IN_CALL, D: Stage.IN_CALL, HOST: Stage.IN_CALL}
    assert_folds(room, log)


def test_seed_002_the_host_drops_before_starting() -> None:
    log: list[Event] = []
    room = Room(ROOM_ID)
    log += arrive(room, HOST, Role.HOST, 0.0)
    log += arrive(room, A, Role.PATIENT, 1.0)
    log += room.disconnect(HOST, 2.0)
    log += room.expire(2.0 + GRACE, GRACE)
    assert waiting_ids(room) == [A]
    log += arrive(room, HOST, Role.HOST, 40.0)
    log += start(room, now=41.0)
    assert room.get(A).stage is Stage.IN_CALL
    assert_folds(room, log)


def test_a_new_call_lets_in_those_back_in_the_lobby_from_the_last_one() -> None:
    room = Room(RoomId("r"))
    policy.arrive(room, HOST, Role.HOST, name="Dr", subject="dr", now=1.0)
    policy.arrive(room, A, Role.PATIENT, name="A", subject="a", now=1.0)
    policy.start(room, HOST, session=SessionId("s1"), appointment=None, capacity=1, now=2.0)
    policy.end(room, HOST, 3.0)
    assert room.get(A).stage is Stage.LOBBY
    events = policy.start(
        room, HOST, session=SessionId("s2"), appointment=None, capacity=1, now=4.0
    )
    assert [(e.kind, e.participant) for e in events][-1] == (EventKind.PATIENT_ENTERED, A)
    assert room.get(A).stage is Stage.IN_CALL
