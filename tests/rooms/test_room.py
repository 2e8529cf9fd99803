"""The room state machine: every command's events and errors, the waiting room, the fold.

Synchronous and pure: commands are fed with an explicit ``now`` and the events they return are
compared whole (kind, time, actor, participant and every field), then the state after them.
A command that raises must leave the room exactly as it was (`assert_rejected`).
"""

from __future__ import annotations

import pytest

import rooms
from rooms import (
    Event,
    EventKind,
    ExitCause,
    InvalidState,
    Participant,
    ParticipantId,
    Role,
    Room,
    RoomError,
    Session,
    SessionNotStarted,
    Stage,
    UnknownParticipant,
    WaitReason,
)
from rooms.ids import AppointmentId, SessionId
from rooms.room import ENDED_KEPT
from tests.rooms.support import (
    APPT,
    GRACE,
    HOST,
    NOBODY,
    ROOM_ID,
    S1,
    S2,
    WAIT,
    A,
    B,
    C,
    D,
    E,
    F,
    G,
    K,
    State,
    assert_rejected,
    state,
)


def fold(events: list[Event]) -> Room:
    room = Room(ROOM_ID)
    room.apply_all(events)
    return room


def room_with(
    *,
    host: bool = True,
    patients: tuple[ParticipantId, ...] = (),
    guests: tuple[ParticipantId, ...] = (),
) -> Room:
    """A room with participants arrived (in the lobby) at t=0, the host first."""
    room = Room(ROOM_ID)
    if host:
        room.arrive(HOST, Role.HOST, now=0.0)
    for pid in patients:
        room.arrive(pid, Role.PATIENT, now=0.0)
    for pid in guests:
        room.arrive(pid, Role.GUEST, now=0.0)
    return room


def start(room: Room, *, capacity: int = 2, now: float = 1.0) -> list[Event]:
    return room.start(HOST, session=S1, appointment=APPT, capacity=capacity, now=now)


def waiting_ids(room: Room) -> list[ParticipantId]:
    return [p.id for p in room.waiting()]


# -- queries and values ----------------------------------------------------------------------


def test_a_new_room_is_empty() -> None:
    room = Room(ROOM_ID)
    assert room.id == ROOM_ID
    assert room.version == 0
    assert room.session is None
    assert room.active_session is None
    assert room.participants == {}
    assert room.waiting() == []
    assert room.in_call() == []
    assert room.occupancy() == 0
    assert not room.host_in_call()
    assert (room.absent(), room.present(), room.present(APPT)) == (0, 0, 0)
    assert not room.ended(APPT)
    assert not room.ended(None)


def test_get_unknown_participant() -> None:
    room = room_with()
    error = assert_rejected(room, UnknownParticipant, "unknown_participant", lambda: room.get(A))
    assert error.message == "p_a is not in room r_1"
    assert error.details == {"participant": A}


def test_error_base_class() -> None:
    details = {"stage": "lobby"}
    error = RoomError("cannot do it", **details)
    details["stage"] = "changed"
    assert error.code == "room_error"
    assert error.details == {"stage": "lobby"}
    assert error.message == str(error) == "cannot do it"
    for sub in (UnknownParticipant, InvalidState, SessionNotStarted):
        assert issubclass(sub, RoomError)


def test_participant_and_session_values() -> None:
    guest = Participant(A, Role.GUEST)
    assert guest.stage is Stage.LOBBY
    assert guest.knocked_at is None
    assert guest.connected
    assert not guest.is_host
    assert not Participant(A, Role.PATIENT, absent_since=3.0).connected
    assert Participant(HOST, Role.HOST).is_host
    session = Session(S1, None, 2, started_at=1.0)
    assert session.active
    assert not Session(S1, APPT, 2, started_at=1.0, ended_at=2.0).active


def test_package_exports_everything_it_lists() -> None:
    for name in rooms.__all__:
        assert getattr(rooms, name) is not None


def test_occupancy_counts_patients_and_guests_in_the_call_not_the_host() -> None:
    room = room_with(patients=(A, B), guests=(C,))
    start(room)
    assert room.occupancy() == 0
    assert room.host_in_call()
    room.enter(A, 2.0)
    room.enter(C, 2.0)
    assert room.occupancy() == 2
    assert [p.id for p in room.in_call()] == [HOST, A, C]


# -- arrive ----------------------------------------------------------------------------------


def test_arrive() -> None:
    room = Room(ROOM_ID)
    events = room.arrive(A, Role.GUEST, now=5.0)
    assert events == [Event(K.ARRIVED, 5.0, actor=A, participant=A, role=Role.GUEST)]
    assert room.get(A) == Participant(A, Role.GUEST)
    assert room.version == 1


def test_arrive_again_while_connected_changes_nothing() -> None:
    room = room_with(patients=(A,))
    room.knock(A, 1.0, WAIT)
    before = state(room)
    assert room.arrive(A, Role.PATIENT, now=2.0) == []
    assert state(room) == before


def test_arrive_after_a_lost_connection_reconnects_and_keeps_the_place() -> None:
    room = room_with(patients=(A, B))
    room.knock(A, 1.0, WAIT)
    room.knock(B, 2.0, WAIT)
    assert room.disconnect(A, 3.0) == [Event(K.DISCONNECTED, 3.0, participant=A)]
    assert room.get(A).absent_since == 3.0
    events = room.arrive(A, Role.PATIENT, now=4.0)
    assert events == [Event(K.RECONNECTED, 4.0, actor=A, participant=A)]
    assert room.get(A) == Participant(A, Role.PATIENT, stage=Stage.WAITING, knocked_at=1.0)
    assert waiting_ids(room) == [A, B]
    assert room.position(A) == 1


@pytest.mark.parametrize("connected", [True, False])
def test_arrive_with_another_role_is_refused(connected: bool) -> None:
    room = room_with(patients=(A,))
    if not connected:
        room.disconnect(A, 1.0)
    error = assert_rejected(
        room,
        InvalidState,
        "invalid_state",
        lambda: room.arrive(A, Role.HOST, now=2.0),
    )
    assert error.message == "cannot arrive as p_a: already here as patient"
    assert error.details == {"participant": A}


# -- knock and cancel_knock ------------------------------------------------------------------


def test_knock_before_the_call_waits_for_the_host() -> None:
    room = room_with(patients=(A,))
    assert room.knock(A, 2.0, WAIT) == [
        Event(K.KNOCKED, 2.0, actor=A, participant=A, reason=WaitReason.HOST_NOT_STARTED)
    ]
    assert room.get(A).stage is Stage.WAITING
    assert room.get(A).knocked_at == 2.0
    assert room.position(A) == 1


@pytest.mark.parametrize("reason", list(WaitReason))
def test_knock_records_the_reason_it_is_given(reason: WaitReason) -> None:
    # Why someone waits is the policy's decision (admission.policy.decide).
    room = room_with(guests=(C,))
    start(room)
    assert room.knock(C, 2.0, reason) == [
        Event(K.KNOCKED, 2.0, actor=C, participant=C, reason=reason)
    ]


def test_knock_errors() -> None:
    room = room_with(patients=(A, B))
    room.knock(A, 1.0, WAIT)
    start(room, now=2.0)
    room.enter(B, 3.0)
    error = assert_rejected(room, InvalidState, "invalid_state", lambda: room.knock(A, 4.0, WAIT))
    assert error.message == "cannot knock for p_a: participant is waiting"
    error = assert_rejected(room, InvalidState, "invalid_state", lambda: room.knock(B, 4.0, WAIT))
    assert error.message == "cannot knock for p_b: participant is in_call"
    room.leave(HOST, 5.0)
    room.arrive(HOST, Role.HOST, now=6.0)
    error = assert_rejected(
        room, InvalidState, "invalid_state", lambda: room.knock(HOST, 7.0, WAIT)
    )
    assert error.message == "cannot knock for p_host: the host does not wait"
    assert error.details == {"participant": HOST}
    assert_rejected(
        room, UnknownParticipant, "unknown_participant", lambda: room.knock(NOBODY, 7.0, WAIT)
    )


def test_cancel_knock() -> None:
    room = room_with(patients=(A, B, C))
    for now, pid in enumerate((A, B, C), start=1):
        room.knock(pid, float(now), WAIT)
    assert room.cancel_knock(A, 5.0) == [
        Event(K.KNOCK_CANCELLED, 5.0, actor=A, participant=A, cause=ExitCause.CANCELLED)
    ]
    assert room.get(A) == Participant(A, Role.PATIENT)
    assert waiting_ids(room) == [B, C]
    assert (room.position(A), room.position(B), room.position(C)) == (None, 1, 2)
    # Knocking again goes to the end of the queue.
    room.knock(A, 6.0, WAIT)
    assert waiting_ids(room) == [B, C, A]
    assert room.get(A).knocked_at == 6.0


def test_cancel_knock_errors() -> None:
    room = room_with(patients=(A,))
    error = assert_rejected(room, InvalidState, "invalid_state", lambda: room.cancel_knock(A, 1.0))
    assert error.message == "cannot cancel the knock of p_a: participant is not waiting"
    assert error.details == {"participant": A, "stage": "lobby"}
    assert_rejected(
        room, UnknownParticipant, "unknown_participant", lambda: room.cancel_knock(NOBODY, 1.0)
    )


# -- the waiting room ------------------------------------------------------------------------


def test_the_waiting_room_is_unbounded_and_in_arrival_order() -> None:
    room = room_with()
    pids = [ParticipantId(f"p_{n}") for n in range(1000)]
    for n, pid in enumerate(pids):
        room.arrive(pid, Role.GUEST, now=float(n))
        room.knock(pid, float(n), WAIT)
    assert waiting_ids(room) == pids
    assert [room.position(pid) for pid in pids] == list(range(1, 1001))
    assert room.position(HOST) is None
    assert room.position(NOBODY) is None


def test_nobody_is_queued_twice() -> None:
    room = room_with(patients=(A, B))
    room.knock(A, 1.0, WAIT)
    room.knock(B, 2.0, WAIT)
    assert room.arrive(A, Role.PATIENT, now=3.0) == []
    assert_rejected(room, InvalidState, "invalid_state", lambda: room.knock(A, 3.0, WAIT))
    room.disconnect(A, 4.0)
    assert [e.kind for e in room.arrive(A, Role.PATIENT, now=5.0)] == [K.RECONNECTED]
    assert waiting_ids(room) == [A, B]
    assert len(room.participants) == 3


def test_positions_shift_when_someone_ahead_goes() -> None:
    room = room_with(patients=(A, B, C, D, E))
    for now, pid in enumerate((A, B, C, D, E), start=1):
        room.knock(pid, float(now), WAIT)
    room.leave(A, 10.0)
    assert waiting_ids(room) == [B, C, D, E]
    assert room.position(E) == 4
    room.deny(HOST, B, None, 11.0)
    assert room.position(E) == 3
    start(room, now=12.0)
    room.admit(HOST, C, 13.0)
    assert room.position(E) == 2
    room.disconnect(D, 14.0)
    room.expire(14.0 + GRACE, GRACE)
    assert waiting_ids(room) == [E]
    assert room.position(E) == 1


# -- enter ----------------------------------------------------------------------------------


def test_enter_from_the_lobby_and_from_the_waiting_room() -> None:
    room = room_with(patients=(A, B))
    room.knock(B, 0.5, WAIT)
    start(room)
    assert room.enter(A, 2.0) == [Event(K.PATIENT_ENTERED, 2.0, actor=A, participant=A, session=S1)]
    assert room.enter(B, 3.0) == [Event(K.PATIENT_ENTERED, 3.0, actor=B, participant=B, session=S1)]
    assert room.get(B) == Participant(B, Role.PATIENT, stage=Stage.IN_CALL)
    assert room.waiting() == []


def test_enter_of_the_host_is_a_clinician_entry() -> None:
    room = room_with(patients=(A,))
    start(room)
    room.end(HOST, 2.0)
    room.start(HOST, session=S2, appointment=None, capacity=1, now=3.0)
    room.leave(HOST, 4.0)
    room.arrive(HOST, Role.HOST, now=5.0)
    assert room.enter(HOST, 6.0) == [
        Event(K.CLINICIAN_ENTERED, 6.0, actor=HOST, participant=HOST, session=S2)
    ]


def test_enter_errors() -> None:
    room = room_with(patients=(A,))
    error: RoomError = assert_rejected(
        room, SessionNotStarted, "session_not_started", lambda: room.enter(A, 1.0)
    )
    assert error.message == "cannot let p_a in: the host has not started the call"
    assert error.details == {}
    start(room)
    room.enter(A, 2.0)
    error = assert_rejected(room, InvalidState, "invalid_state", lambda: room.enter(A, 3.0))
    assert error.message == "cannot let p_a in: already in the call"
    assert_rejected(
        room, UnknownParticipant, "unknown_participant", lambda: room.enter(NOBODY, 3.0)
    )


# -- admit, admit_all, deny ------------------------------------------------------------------


def test_admit() -> None:
    room = room_with(guests=(C,))
    room.knock(C, 0.5, WAIT)
    start(room)
    assert room.admit(HOST, C, 2.0) == [
        Event(K.ADMITTED, 2.0, actor=HOST, participant=C, session=S1),
        Event(K.PATIENT_ENTERED, 2.0, actor=HOST, participant=C, session=S1),
    ]
    assert room.get(C) == Participant(C, Role.GUEST, stage=Stage.IN_CALL)
    assert room.waiting() == []


def test_admit_ignores_capacity() -> None:
    room = room_with(patients=(A,), guests=(C,))
    start(room, capacity=1)
    room.enter(A, 2.0)
    room.knock(C, 3.0, WAIT)
    room.admit(HOST, C, 4.0)
    assert room.occupancy() == 2


def test_admit_errors() -> None:
    room = room_with(patients=(A, B))
    room.knock(A, 0.5, WAIT)
    error: RoomError = assert_rejected(
        room, SessionNotStarted, "session_not_started", lambda: room.admit(HOST, A, 1.0)
    )
    assert error.message == "cannot admit p_a: the host has not started the call"
    start(room)
    assert_rejected(
        room, UnknownParticipant, "unknown_participant", lambda: room.admit(NOBODY, A, 2.0)
    )
    assert_rejected(
        room, UnknownParticipant, "unknown_participant", lambda: room.admit(HOST, NOBODY, 2.0)
    )
    error = assert_rejected(room, InvalidState, "invalid_state", lambda: room.admit(HOST, B, 2.0))
    assert error.message == "cannot admit p_b: participant is not waiting"
    assert error.details == {"participant": B, "stage": "lobby"}
    room.admit(HOST, A, 3.0)
    error = assert_rejected(room, InvalidState, "invalid_state", lambda: room.admit(HOST, A, 4.0))
    assert error.details == {"participant": A, "stage": "in_call"}


def test_admit_all_admits_in_arrival_order() -> None:
    room = room_with(patients=(B,), guests=(C, D))
    room.knock(D, 0.1, WAIT)
    room.knock(B, 0.2, WAIT)
    start(room, capacity=1)
    room.knock(C, 2.0, WAIT)
    events = room.admit_all(HOST, 3.0)
    assert events == [
        event
        for pid in (D, B, C)
        for event in (
            Event(K.ADMITTED, 3.0, actor=HOST, participant=pid, session=S1),
            Event(K.PATIENT_ENTERED, 3.0, actor=HOST, participant=pid, session=S1),
        )
    ]
    assert room.waiting() == []
    assert room.occupancy() == 3


def test_admit_all_with_nobody_waiting() -> None:
    room = room_with()
    start(room)
    before = state(room)
    assert room.admit_all(HOST, 2.0) == []
    assert state(room) == before


def test_admit_all_errors() -> None:
    room = room_with(patients=(A,))
    room.knock(A, 0.5, WAIT)
    error = assert_rejected(
        room, SessionNotStarted, "session_not_started", lambda: room.admit_all(HOST, 1.0)
    )
    assert error.message == "cannot admit all: the host has not started the call"
    start(room)
    assert_rejected(
        room, UnknownParticipant, "unknown_participant", lambda: room.admit_all(NOBODY, 2.0)
    )


@pytest.mark.parametrize("started", [False, True])
def test_deny(started: bool) -> None:
    # The host may turn a knock away before starting the call as well as during it.
    room = room_with(guests=(C, D))
    room.knock(C, 0.5, WAIT)
    room.knock(D, 0.6, WAIT)
    if started:
        start(room)
    assert room.deny(HOST, C, "this call is full", 2.0) == [
        Event(K.DENIED, 2.0, actor=HOST, participant=C, message="this call is full"),
        Event(K.DEPARTED, 2.0, actor=HOST, participant=C, cause=ExitCause.DENIED),
    ]
    assert C not in room.participants
    assert waiting_ids(room) == [D]
    assert room.deny(HOST, D, None, 3.0)[0] == Event(K.DENIED, 3.0, actor=HOST, participant=D)


def test_deny_errors() -> None:
    room = room_with(guests=(C,))
    assert_rejected(
        room, UnknownParticipant, "unknown_participant", lambda: room.deny(NOBODY, C, None, 1.0)
    )
    assert_rejected(
        room, UnknownParticipant, "unknown_participant", lambda: room.deny(HOST, NOBODY, None, 1.0)
    )
    error = assert_rejected(
        room, InvalidState, "invalid_state", lambda: room.deny(HOST, C, None, 1.0)
    )
    assert error.message == "cannot deny p_c: participant is not waiting"


# -- start and end ---------------------------------------------------------------------------


def test_start() -> None:
    room = room_with()
    assert start(room, capacity=3, now=7.0) == [
        Event(K.SESSION_STARTED, 7.0, actor=HOST, session=S1, appointment=APPT, capacity=3),
        Event(K.CLINICIAN_ENTERED, 7.0, actor=HOST, participant=HOST, session=S1),
    ]
    assert room.session == Session(S1, APPT, 3, started_at=7.0)
    assert room.active_session is room.session
    assert room.get(HOST).stage is Stage.IN_CALL
    assert room.host_in_call()


def test_start_again_rejoins_the_running_call() -> None:
    room = room_with()
    start(room, capacity=2, now=1.0)
    room.leave(HOST, 2.0)
    room.arrive(HOST, Role.HOST, now=3.0)
    # The running session is kept: the new session id, appointment and capacity are ignored.
    events = room.start(HOST, session=S2, appointment=None, capacity=9, now=4.0)
    assert events == [Event(K.CLINICIAN_ENTERED, 4.0, actor=HOST, participant=HOST, session=S1)]
    assert room.session == Session(S1, APPT, 2, started_at=1.0)


def test_start_after_end_starts_a_new_session() -> None:
    room = room_with()
    start(room, now=1.0)
    room.end(HOST, 2.0)
    events = room.start(HOST, session=S2, appointment=None, capacity=1, now=3.0)
    assert [e.kind for e in events] == [K.SESSION_STARTED, K.CLINICIAN_ENTERED]
    assert room.session == Session(S2, None, 1, started_at=3.0)


def test_start_errors() -> None:
    room = room_with(patients=(A,))
    assert_rejected(
        room,
        UnknownParticipant,
        "unknown_participant",
        lambda: room.start(NOBODY, session=S1, appointment=None, capacity=2, now=1.0),
    )
    error = assert_rejected(
        room,
        InvalidState,
        "invalid_state",
        lambda: room.start(A, session=S1, appointment=None, capacity=2, now=1.0),
    )
    assert error.message == "cannot start with p_a: not the host"
    error = assert_rejected(room, InvalidState, "invalid_state", lambda: start(room, capacity=0))
    assert error.message == "cannot start with capacity 0: must be at least 1"
    assert error.details == {}
    assert_rejected(room, InvalidState, "invalid_state", lambda: start(room, capacity=-1))
    start(room)
    error = assert_rejected(room, InvalidState, "invalid_state", lambda: start(room, now=2.0))
    assert error.message == "cannot start: p_host is already in the call"


def test_end() -> None:
    room = room_with(patients=(A, B), guests=(C,))
    room.knock(C, 0.5, WAIT)
    start(room, capacity=1)
    room.enter(A, 2.0)
    room.enter(B, 2.0)
    events = room.end(HOST, 5.0)

    def exited(kind: EventKind, pid: ParticipantId) -> Event:
        return Event(
            kind, 5.0, actor=HOST, participant=pid, cause=ExitCause.SESSION_ENDED, session=S1
        )

    assert events == [
        exited(K.CLINICIAN_EXITED, HOST),
        exited(K.PATIENT_EXITED, A),
        exited(K.PATIENT_EXITED, B),
        Event(K.SESSION_ENDED, 5.0, actor=HOST, session=S1),
    ]
    assert room.session == Session(S1, APPT, 1, started_at=1.0, ended_at=5.0)
    assert room.active_session is None
    assert room.in_call() == []
    assert {pid: p.stage for pid, p in room.participants.items()} == {
        HOST: Stage.LOBBY,
        A: Stage.LOBBY,
        B: Stage.LOBBY,
        C: Stage.WAITING,
    }
    # Whoever was waiting still is, now for the host to start again.
    assert waiting_ids(room) == [C]
    assert room.ended(APPT)
    assert not room.ended(None)


def test_end_errors() -> None:
    room = room_with()
    error = assert_rejected(
        room, SessionNotStarted, "session_not_started", lambda: room.end(HOST, 1.0)
    )
    assert error.message == "cannot end the call: the host has not started the call"
    start(room)
    assert_rejected(room, UnknownParticipant, "unknown_participant", lambda: room.end(NOBODY, 2.0))
    room.end(HOST, 3.0)
    assert_rejected(room, SessionNotStarted, "session_not_started", lambda: room.end(HOST, 4.0))


# -- leave, disconnect, expire ---------------------------------------------------------------


def test_leave_from_the_lobby() -> None:
    room = room_with(patients=(A,))
    assert room.leave(A, 2.0) == [
        Event(K.DEPARTED, 2.0, actor=A, participant=A, cause=ExitCause.LEFT)
    ]
    assert A not in room.participants


def test_leave_from_the_waiting_room() -> None:
    room = room_with(patients=(A,))
    room.knock(A, 1.0, WAIT)
    assert room.leave(A, 2.0) == [
        Event(K.KNOCK_CANCELLED, 2.0, actor=A, participant=A, cause=ExitCause.LEFT),
        Event(K.DEPARTED, 2.0, actor=A, participant=A, cause=ExitCause.LEFT),
    ]
    assert room.waiting() == []
    assert A not in room.participants


def test_leave_from_the_call() -> None:
    room = room_with(patients=(A,))
    start(room)
    room.enter(A, 2.0)
    assert room.leave(A, 3.0) == [
        Event(K.PATIENT_EXITED, 3.0, actor=A, participant=A, cause=ExitCause.LEFT, session=S1),
        Event(K.DEPARTED, 3.0, actor=A, participant=A, cause=ExitCause.LEFT),
    ]
    assert room.leave(HOST, 4.0) == [
        Event(
            K.CLINICIAN_EXITED, 4.0, actor=HOST, participant=HOST, cause=ExitCause.LEFT, session=S1
        ),
        Event(K.DEPARTED, 4.0, actor=HOST, participant=HOST, cause=ExitCause.LEFT),
    ]
    # The host leaving does not end the call; the call knows since when it has no host.
    assert room.active_session == Session(S1, APPT, 2, started_at=1.0, host_away_since=4.0)
    assert room.participants == {}


def test_leave_timed_out_has_no_actor() -> None:
    room = room_with(patients=(A,))
    room.knock(A, 1.0, WAIT)
    assert room.leave(A, 2.0, cause=ExitCause.TIMED_OUT) == [
        Event(K.KNOCK_CANCELLED, 2.0, participant=A, cause=ExitCause.TIMED_OUT),
        Event(K.DEPARTED, 2.0, participant=A, cause=ExitCause.TIMED_OUT),
    ]


def test_leave_unknown() -> None:
    room = room_with()
    assert_rejected(room, UnknownParticipant, "unknown_participant", lambda: room.leave(A, 1.0))


def test_disconnect() -> None:
    room = room_with(patients=(A,))
    start(room)
    room.enter(A, 2.0)
    assert room.disconnect(A, 3.0) == [Event(K.DISCONNECTED, 3.0, participant=A)]
    # A lost connection keeps the place: still in the call, still counted.
    assert room.get(A) == Participant(A, Role.PATIENT, stage=Stage.IN_CALL, absent_since=3.0)
    assert room.occupancy() == 1
    before = state(room)
    assert room.disconnect(A, 4.0) == []
    assert state(room) == before
    assert room.get(A).absent_since == 3.0
    assert_rejected(
        room, UnknownParticipant, "unknown_participant", lambda: room.disconnect(NOBODY, 4.0)
    )


def test_expire_removes_whoever_has_been_gone_for_the_grace_period() -> None:
    room = room_with(patients=(A, B), guests=(C, D))
    start(room)
    room.enter(A, 2.0)
    room.knock(C, 2.0, WAIT)
    room.disconnect(A, 10.0)
    room.disconnect(C, 20.0)
    room.disconnect(HOST, 25.0)
    assert room.expire(10.0 + GRACE - 0.5, GRACE) == []  # nobody gone long enough yet
    assert room.expire(20.0 + GRACE, GRACE) == [  # exactly the grace period counts
        Event(K.PATIENT_EXITED, 50.0, participant=A, cause=ExitCause.TIMED_OUT, session=S1),
        Event(K.DEPARTED, 50.0, participant=A, cause=ExitCause.TIMED_OUT),
        Event(K.KNOCK_CANCELLED, 50.0, participant=C, cause=ExitCause.TIMED_OUT),
        Event(K.DEPARTED, 50.0, participant=C, cause=ExitCause.TIMED_OUT),
    ]
    assert set(room.participants) == {HOST, B, D}
    assert room.expire(25.0 + GRACE, GRACE) == [
        Event(K.CLINICIAN_EXITED, 55.0, participant=HOST, cause=ExitCause.TIMED_OUT, session=S1),
        Event(K.DEPARTED, 55.0, participant=HOST, cause=ExitCause.TIMED_OUT),
    ]
    assert set(room.participants) == {B, D}
    assert room.expire(1000.0, GRACE) == []


def test_expire_spares_whoever_reconnected() -> None:
    room = room_with(patients=(A,))
    room.disconnect(A, 1.0)
    room.arrive(A, Role.PATIENT, now=2.0)
    assert room.expire(100.0, GRACE) == []
    assert A in room.participants


# -- the fold --------------------------------------------------------------------------------


def assert_same(rebuilt: Room, room: Room) -> None:
    assert rebuilt.id == room.id
    assert state(rebuilt) == state(room)
    assert rebuilt.active_session == room.active_session


def test_the_fold_of_a_long_scenario_rebuilds_the_room() -> None:
    room = Room(ROOM_ID)
    log: list[Event] = []
    checkpoints: list[State] = []

    def run(events: list[Event], *kinds: EventKind) -> None:
        assert [event.kind for event in events] == list(kinds)
        log.extend(events)
        checkpoints.append(state(room))
        assert room.version == len(log)

    run(room.arrive(HOST, Role.HOST, now=0.0), K.ARRIVED)
    for now, (pid, role) in enumerate(
        [(A, Role.PATIENT), (B, Role.PATIENT), (C, Role.GUEST), (D, Role.GUEST)], start=1
    ):
        run(room.arrive(pid, role, now=float(now)), K.ARRIVED)
        run(room.knock(pid, float(now), WAIT), K.KNOCKED)
    run(room.disconnect(A, 5.0), K.DISCONNECTED)
    run(room.arrive(A, Role.PATIENT, now=6.0), K.RECONNECTED)
    assert waiting_ids(room) == [A, B, C, D]
    run(room.arrive(E, Role.GUEST, now=7.0), K.ARRIVED)
    run(room.knock(E, 7.0, WAIT), K.KNOCKED)
    run(start(room, capacity=2, now=8.0), K.SESSION_STARTED, K.CLINICIAN_ENTERED)
    run(room.enter(A, 9.0), K.PATIENT_ENTERED)
    run(room.admit(HOST, B, 10.0), K.ADMITTED, K.PATIENT_ENTERED)
    run(room.deny(HOST, D, "not booked", 11.0), K.DENIED, K.DEPARTED)
    run(room.arrive(F, Role.GUEST, now=12.0), K.ARRIVED)
    run(room.knock(F, 12.0, WAIT), K.KNOCKED)
    run(room.cancel_knock(F, 12.5), K.KNOCK_CANCELLED)
    run(room.knock(F, 12.6, WAIT), K.KNOCKED)
    assert waiting_ids(room) == [C, E, F]
    run(room.admit_all(HOST, 13.0), *[K.ADMITTED, K.PATIENT_ENTERED] * 3)
    run(room.leave(B, 14.0), K.PATIENT_EXITED, K.DEPARTED)
    run(room.disconnect(C, 15.0), K.DISCONNECTED)
    run(room.arrive(G, Role.GUEST, now=16.0), K.ARRIVED)
    run(room.knock(G, 16.0, WAIT), K.KNOCKED)
    run(room.disconnect(HOST, 20.0), K.DISCONNECTED)
    run(room.expire(15.0 + GRACE, GRACE), K.PATIENT_EXITED, K.DEPARTED)
    run(room.expire(20.0 + GRACE, GRACE), K.CLINICIAN_EXITED, K.DEPARTED)
    assert waiting_ids(room) == [G]
    run(room.arrive(HOST, Role.HOST, now=60.0), K.ARRIVED)
    run(start(room, now=61.0), K.CLINICIAN_ENTERED)
    run(
        room.end(HOST, 62.0),
        K.PATIENT_EXITED,
        K.PATIENT_EXITED,
        K.PATIENT_EXITED,
        K.CLINICIAN_EXITED,
        K.SESSION_ENDED,
    )
    run(room.notify(HOST, "Back in five minutes", 62.5), K.NOTICE)
    run(room.leave(A, 63.0), K.DEPARTED)
    run(
        room.start(HOST, session=S2, appointment=None, capacity=1, now=64.0),
        K.SESSION_STARTED,
        K.CLINICIAN_ENTERED,
    )

    # Every kind of event happened, and the room is where the story says.
    assert {event.kind for event in log} == set(EventKind)
    assert {pid: p.stage for pid, p in room.participants.items()} == {
        E: Stage.LOBBY,
        F: Stage.LOBBY,
        G: Stage.WAITING,
        HOST: Stage.IN_CALL,
    }
    assert room.session == Session(S2, None, 1, started_at=64.0)
    assert room.version == len(log)

    assert_same(fold(log), room)
    # Every prefix of the log folds to the state the room had at that point.
    for checkpoint in checkpoints:
        assert state(fold(log[: checkpoint[0]])) == checkpoint

    # The same through the storage records.
    records = [event.to_record() for event in log]
    reread = [Event.from_record(record) for record in records]
    assert reread == log
    assert_same(fold(reread), room)


def test_apply_all_accepts_any_iterable() -> None:
    room = room_with(patients=(A,))
    rebuilt = Room(ROOM_ID)
    rebuilt.apply_all(
        iter(
            [
                Event(
                    K.ARRIVED,
                    0.0,
                    actor=HOST,
                    participant=HOST,
                    role=Role.HOST,
                ),
                Event(K.ARRIVED, 0.0, actor=A, participant=A, role=Role.PATIENT),
            ]
        )
    )
    assert_same(rebuilt, room)


def test_a_room_remembers_the_last_appointments_whose_call_ended() -> None:
    room = room_with()
    appointments = [AppointmentId(f"apt_{n}") for n in range(ENDED_KEPT + 1)]
    for n, appointment in enumerate(appointments):
        room.start(
            HOST, session=SessionId(f"s_{n}"), appointment=appointment, capacity=1, now=float(n)
        )
        room.end(HOST, n + 0.5)
    assert not room.ended(appointments[0])  # the oldest is forgotten: the room stays small
    assert all(room.ended(a) for a in appointments[1:])
    restored = Room.from_snapshot(room.snapshot())
    assert [restored.ended(a) for a in appointments] == [room.ended(a) for a in appointments]
