"""Domain events as records: `Event.to_record` / `Event.from_record`.

The record format is what the event log stores, so it is checked field by field: what is
written, that everything written reads back equal, and that anything else is refused with
ValueError (never KeyError, TypeError or OverflowError, which a log reader would not expect).
"""

from __future__ import annotations

import re
from types import MappingProxyType

import pytest

from rooms import (
    Event,
    EventKind,
    ExitCause,
    Role,
    WaitReason,
)
from tests.rooms.support import APPT, HOST, S1, A, K

# One event of every kind, each with the fields its command sets.
EXAMPLES: dict[EventKind, Event] = {
    K.ARRIVED: Event(K.ARRIVED, 1.0, actor=A, participant=A, role=Role.GUEST),
    K.DEPARTED: Event(K.DEPARTED, 2.0, actor=A, participant=A, cause=ExitCause.LEFT),
    K.KNOCKED: Event(K.KNOCKED, 3.0, actor=A, participant=A, reason=WaitReason.HOST_NOT_STARTED),
    K.KNOCK_CANCELLED: Event(
        K.KNOCK_CANCELLED, 4.0, actor=A, participant=A, cause=ExitCause.CANCELLED
    ),
    K.ADMITTED: Event(K.ADMITTED, 5.0, actor=HOST, participant=A, session=S1),
    K.DENIED: Event(K.DENIED, 6.0, actor=HOST, participant=A, message="not booked"),
    K.PATIENT_ENTERED: Event(K.PATIENT_ENTERED, 7.0, actor=A, participant=A, session=S1),
    K.PATIENT_EXITED: Event(
        K.PATIENT_EXITED, 8.0, participant=A, cause=ExitCause.TIMED_OUT, session=S1
    ),
    K.CLINICIAN_ENTERED: Event(K.CLINICIAN_ENTERED, 9.0, actor=HOST, participant=HOST, session=S1),
    K.CLINICIAN_EXITED: Event(
        K.CLINICIAN_EXITED,
        10.0,
        actor=HOST,
        participant=HOST,
        cause=ExitCause.SESSION_ENDED,
        session=S1,
    ),
    K.SESSION_STARTED: Event(
        K.SESSION_STARTED, 11.0, actor=HOST, session=S1, appointment=APPT, capacity=2
    ),
    K.SESSION_ENDED: Event(K.SESSION_ENDED, 12.0, actor=HOST, session=S1),
    K.DISCONNECTED: Event(K.DISCONNECTED, 13.0, participant=A),
    K.RECONNECTED: Event(K.RECONNECTED, 14.0, actor=A, participant=A),
    K.NOTICE: Event(K.NOTICE, 15.0, actor=HOST, message="Running 10 minutes late"),
}


def test_examples_cover_every_kind() -> None:
    assert set(EXAMPLES) == set(EventKind)
    assert all(kind is event.kind for kind, event in EXAMPLES.items())


def test_wire_values_are_stable() -> None:
    # These strings are stored in event logs: renaming one orphans every stored event.
    assert {kind.value for kind in EventKind} == {
        "arrived",
        "departed",
        "knocked",
        "knock_cancelled",
        "admitted",
        "denied",
        "patient_entered",
        "patient_exited",
        "clinician_entered",
        "clinician_exited",
        "session_started",
        "session_ended",
        "disconnected",
        "reconnected",
        "notice",
    }
    assert {reason.value for reason in WaitReason} == {
        "host_not_started",
        "host_away",
        "host_busy",
        "at_capacity",
        "not_booked",
        "host_ready",
    }
    assert {cause.value for cause in ExitCause} == {
        "left",
        "cancelled",
        "timed_out",
        "session_ended",
        "denied",
        "host_absent",
        "window_closed",
    }
    assert {role.value for role in Role} == {"host", "patient", "guest"}


def test_records_of_older_events_with_names_are_read_without_them() -> None:
    # Before events became pseudonymous, ARRIVED carried the name and the clinic's id.
    record = {"kind": "arrived", "at": 1.0, "participant": "p_a", "role": "guest"}
    legacy = {**record, "name": "Ada", "subject": "sub-a"}
    assert Event.from_record(legacy) == Event.from_record(record)
    assert "name" not in Event.from_record(legacy).to_record()


def test_to_record_writes_primitives_and_leaves_out_unset_fields() -> None:
    assert EXAMPLES[K.ARRIVED].to_record() == {
        "kind": "arrived",
        "at": 1.0,
        "actor": "p_a",
        "participant": "p_a",
        "role": "guest",
    }
    assert EXAMPLES[K.SESSION_STARTED].to_record() == {
        "kind": "session_started",
        "at": 11.0,
        "actor": "p_host",
        "session": "s_1",
        "appointment": "apt_1",
        "capacity": 2,
    }
    assert EXAMPLES[K.PATIENT_EXITED].to_record() == {
        "kind": "patient_exited",
        "at": 8.0,
        "participant": "p_a",
        "cause": "timed_out",
        "session": "s_1",
    }
    assert Event(K.SESSION_ENDED, 0.5).to_record() == {"kind": "session_ended", "at": 0.5}


def test_to_record_values_are_plain_types() -> None:
    for event in EXAMPLES.values():
        for value in event.to_record().values():
            assert type(value) in {str, int, float}


@pytest.mark.parametrize("kind", list(EventKind), ids=lambda kind: kind.value)
def test_every_kind_round_trips(kind: EventKind) -> None:
    event = EXAMPLES[kind]
    assert Event.from_record(event.to_record()) == event


def test_from_record_takes_any_mapping_and_an_int_time() -> None:
    record = MappingProxyType({"kind": "disconnected", "at": 13, "participant": "p_a"})
    event = Event.from_record(record)
    assert event == Event(K.DISCONNECTED, 13.0, participant=A)
    assert type(event.at) is float


def test_from_record_reads_absent_and_none_fields_as_unset() -> None:
    # to_record never writes None, but a codec may hand back an explicit null.
    record = {"kind": "knocked", "at": 3.0, "participant": "p_a", "reason": None}
    assert Event.from_record(record) == Event(K.KNOCKED, 3.0, participant=A)


def test_from_record_accepts_an_empty_session_ended() -> None:
    assert Event.from_record({"kind": "session_ended", "at": 0}) == Event(K.SESSION_ENDED, 0.0)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        pytest.param({"at": 1.0}, "event record lacks 'kind'", id="missing-kind"),
        pytest.param({"kind": "arrived"}, "event record lacks 'at'", id="missing-at"),
        pytest.param(
            {"kind": "teleported", "at": 1.0}, "'teleported' is not a valid EventKind", id="kind"
        ),
        pytest.param({"kind": 3, "at": 1.0}, "3 is not a valid EventKind", id="int-kind"),
        pytest.param(
            {"kind": ["arrived"], "at": 1.0}, "is not a valid EventKind", id="unhashable-kind"
        ),
        pytest.param(
            {"kind": "session_ended", "at": "1.0"}, "event field 'at' must be a number", id="str-at"
        ),
        pytest.param(
            {"kind": "session_ended", "at": None}, "event field 'at' must be a number", id="none-at"
        ),
        pytest.param(
            {"kind": "session_ended", "at": True}, "event field 'at' must be a number", id="bool-at"
        ),
        pytest.param(
            {"kind": "session_ended", "at": 10**400},
            "event field 'at' must be a finite number",
            id="huge-int-at",
        ),
        pytest.param(
            {"kind": "session_ended", "at": float("nan")},
            "event field 'at' must be a finite number",
            id="nan-at",
        ),
        pytest.param(
            {"kind": "session_ended", "at": float("-inf")},
            "event field 'at' must be a finite number",
            id="inf-at",
        ),
        pytest.param(
            {"kind": "arrived", "at": 1.0, "participant": "p_a", "role": "admin"},
            "'admin' is not a valid Role",
            id="role",
        ),
        pytest.param(
            {"kind": "knocked", "at": 1.0, "participant": "p_a", "reason": "bored"},
            "'bored' is not a valid WaitReason",
            id="reason",
        ),
        pytest.param(
            {"kind": "departed", "at": 1.0, "participant": "p_a", "cause": "bored"},
            "'bored' is not a valid ExitCause",
            id="cause",
        ),
        pytest.param(
            {"kind": "departed", "at": 1.0, "participant": 7},
            "event field 'participant' must be str",
            id="int-participant",
        ),
        pytest.param(
            {"kind": "departed", "at": 1.0, "participant": "p_a", "actor": b"p_a"},
            "event field 'actor' must be str",
            id="bytes-actor",
        ),
        pytest.param(
            {"kind": "departed", "at": 1.0, "participant": "p_a", "message": True},
            "event field 'message' must be str",
            id="bool-message",
        ),
        pytest.param(
            {"kind": "session_started", "at": 1.0, "session": "s_1", "capacity": "2"},
            "event field 'capacity' must be int",
            id="str-capacity",
        ),
        pytest.param(
            {"kind": "session_started", "at": 1.0, "session": "s_1", "capacity": 2.0},
            "event field 'capacity' must be int",
            id="float-capacity",
        ),
        pytest.param(
            {"kind": "session_started", "at": 1.0, "session": "s_1", "capacity": True},
            "event field 'capacity' must be int",
            id="bool-capacity",
        ),
        pytest.param(
            {"kind": "session_ended", "at": 1.0, "colour": "red", "mood": "ok"},
            "event record has unknown fields ['colour', 'mood']",
            id="unknown-fields",
        ),
        pytest.param(
            {"kind": "arrived", "at": 1.0, "participant": "p_a"},
            "arrived event record lacks ['role']",
            id="arrived-without-role",
        ),
        pytest.param(
            {"kind": "arrived", "at": 1.0, "actor": "p_a"},
            "arrived event record lacks ['participant', 'role']",
            id="arrived-without-participant",
        ),
        pytest.param(
            {"kind": "session_started", "at": 1.0, "capacity": 2},
            "session_started event record lacks ['session']",
            id="started-without-session",
        ),
        pytest.param(
            {"kind": "session_started", "at": 1.0},
            "session_started event record lacks ['capacity', 'session']",
            id="started-without-anything",
        ),
        pytest.param(
            {"kind": "knocked", "at": 1.0, "reason": "at_capacity"},
            "knocked event record lacks ['participant']",
            id="knocked-without-participant",
        ),
        pytest.param(
            {"kind": "disconnected", "at": 1.0},
            "disconnected event record lacks ['participant']",
            id="disconnected-without-participant",
        ),
    ],
)
def test_from_record_rejects(record: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        Event.from_record(record)
    assert type(info.value) is ValueError


def test_events_are_immutable_values() -> None:
    event = EXAMPLES[K.KNOCKED]
    with pytest.raises(AttributeError):
        event.at = 99.0  # type: ignore[misc]
    assert event == Event(
        K.KNOCKED, 3.0, actor=A, participant=A, reason=WaitReason.HOST_NOT_STARTED
    )
    assert hash(event) == hash(EXAMPLES[K.KNOCKED])
