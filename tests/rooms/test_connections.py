"""Which connection a participant is on: takeovers and late reports of lost connections."""

from __future__ import annotations

from rooms.events import Event, EventKind
from rooms.ids import ParticipantId, RoomId
from rooms.roles import Role
from rooms.room import Room
from tests.rooms.support import WAIT

A = ParticipantId("p_a")


def room_with(connection: str) -> Room:
    room = Room(RoomId("r"))
    room.arrive(A, Role.PATIENT, now=1.0, connection=connection)
    room.knock(A, 1.0, WAIT)
    return room


def test_arrival_records_the_connection() -> None:
    room = room_with("c1")
    assert room.get(A).connection == "c1"


def test_same_live_connection_again_is_nothing() -> None:
    room = room_with("c1")
    assert room.arrive(A, Role.PATIENT, now=2.0, connection="c1") == []


def test_a_new_connection_takes_over_a_live_one_and_keeps_the_place() -> None:
    room = room_with("c1")
    events = room.arrive(A, Role.PATIENT, now=2.0, connection="c2")
    assert events == [Event(EventKind.RECONNECTED, 2.0, actor=A, participant=A, connection="c2")]
    assert room.get(A).connection == "c2"
    assert room.position(A) == 1


def test_a_late_report_about_an_old_connection_changes_nothing() -> None:
    # Node 1 died holding c1; the participant resumed on node 2 as c2 before the survivors
    # cleaned up after node 1: that clean-up must not mark it gone.
    room = room_with("c1")
    room.arrive(A, Role.PATIENT, now=2.0, connection="c2")
    version = room.version
    assert room.disconnect(A, 3.0, connection="c1") == []
    assert room.version == version
    assert room.get(A).connected


def test_losing_the_current_connection_marks_it_absent() -> None:
    room = room_with("c1")
    events = room.disconnect(A, 3.0, connection="c1")
    assert events == [Event(EventKind.DISCONNECTED, 3.0, participant=A, connection="c1")]
    assert room.get(A).absent_since == 3.0
    resumed = room.arrive(A, Role.PATIENT, now=4.0, connection="c3")
    assert [e.kind for e in resumed] == [EventKind.RECONNECTED]
    assert room.get(A).connected
    assert room.get(A).connection == "c3"


def test_connections_survive_the_fold() -> None:
    room = room_with("c1")
    log = [
        *room.arrive(A, Role.PATIENT, now=2.0, connection="c2"),
        *room.disconnect(A, 3.0, connection="c2"),
    ]
    rebuilt = Room(RoomId("r"))
    rebuilt.apply_all(
        [
            Event.from_record(e.to_record())
            for e in [
                Event(EventKind.ARRIVED, 1.0, A, A, Role.PATIENT, connection="c1"),
                Event(EventKind.KNOCKED, 1.0, A, A),
                *log,
            ]
        ]
    )
    assert rebuilt.get(A) == room.get(A)


def test_a_clone_is_equal_and_independent() -> None:
    room = room_with("c1")
    copy = room.clone()
    assert copy.get(A) == room.get(A)
    assert copy.version == room.version
    copy.cancel_knock(A, 2.0)
    assert room.position(A) == 1
    assert copy.position(A) is None
    assert room.version == copy.version - 1
