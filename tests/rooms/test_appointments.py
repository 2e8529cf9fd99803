"""Appointments' rules: booking, the actions, outcomes and updates (synchronous, no I/O)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from rooms.appointments import (
    ACTIVE,
    FINAL,
    UPDATABLE,
    VIDEO_PROVIDER,
    Actor,
    Appointment,
    AppointmentError,
    AppointmentStatus,
    Attendance,
    BookingSource,
    ContactChannel,
    InvalidAppointment,
    InvalidTransition,
    RemoteChannel,
    book,
    hold,
)
from rooms.ids import AppointmentId, RoomId
from rooms.projection import Outcome

S = AppointmentStatus
T0 = 1_000_000.0
START, END = T0 + 3600.0, T0 + 5400.0
APPT = AppointmentId("apt_1")


@dataclass(frozen=True)
class Window:
    closes_at: float


CLOSES = Window(END + 3600.0)


def make(status: S = S.PENDING, **optional: Any) -> Appointment:
    appointment = book(APPT, title="Follow-up", start_time=START, end_time=END, now=T0, **optional)
    return appointment if status is S.PENDING else replace(appointment, status=status)


def terminal() -> list[S]:
    """The statuses that never change again."""
    return [s for s in S if s.final]


def closed() -> list[S]:
    """The statuses a booking cannot start in and that cannot be completed: final, held."""
    return [s for s in S if s not in ACTIVE]


# -- booking -------------------------------------------------------------------------------


def test_booking_gives_a_pending_api_appointment_with_defaults() -> None:
    a = make()
    assert a.status is S.PENDING
    assert a.booking_source is BookingSource.API
    assert a.created_at == a.updated_at == T0
    assert a.duration_minutes == 30
    assert a.capacity == 1
    assert a.active
    assert not a.is_remote
    assert not a.is_video
    assert a.video_link is a.meeting_url is a.room_id is None


def test_booking_takes_optional_fields() -> None:
    a = make(
        patient_id="pat_1",
        clinician_profile_id="cli_1",
        is_remote=True,
        remote_channel=RemoteChannel.VIDEO,
        preferred_channel=ContactChannel.EMAIL,
        capacity=3,
    )
    assert a.is_video
    assert a.capacity == 3
    assert a.preferred_channel is ContactChannel.EMAIL
    phone = make(is_remote=True, remote_channel=RemoteChannel.PHONE)
    assert phone.is_remote
    assert not phone.is_video


@pytest.mark.parametrize("status", [s for s in S if s in ACTIVE])
def test_every_active_status_may_be_booked(status: S) -> None:
    a = book(APPT, title="t", start_time=START, end_time=END, now=T0, status=status)
    assert a.status is status


@pytest.mark.parametrize("status", closed())
def test_a_closed_status_cannot_be_booked(status: S) -> None:
    with pytest.raises(InvalidAppointment) as info:
        book(APPT, title="t", start_time=START, end_time=END, now=T0, status=status)
    assert info.value.details == {"field": "status", "problem": "enum"}


@pytest.mark.parametrize(
    ("kwargs", "field", "problem"),
    [
        ({"end_time": START}, "end_time", "before_start"),
        ({"end_time": START - 1}, "end_time", "before_start"),
        ({"title": "  "}, "title", "blank"),
        ({"start_time": float("nan")}, "start_time", "range"),
        ({"end_time": float("inf")}, "end_time", "range"),
        ({"capacity": 0}, "capacity", "range"),
        ({"remote_channel": RemoteChannel.VIDEO}, "remote_channel", "not_remote"),
        ({"room_id": "r"}, "room_id", "unknown"),
        ({"status_reason": "x"}, "status_reason", "unknown"),
    ],
)
def test_booking_refuses_a_broken_rule(kwargs: dict[str, Any], field: str, problem: str) -> None:
    fields: dict[str, Any] = {"title": "t", "start_time": START, "end_time": END} | kwargs
    with pytest.raises(InvalidAppointment) as info:
        book(APPT, now=T0, **fields)
    assert info.value.details == {"field": field, "problem": problem}
    assert info.value.code == "invalid_appointment"
    assert isinstance(info.value, AppointmentError)
    assert info.value.message == str(info.value)


# -- actions -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [s for s in S if s in ACTIVE])
def test_an_active_appointment_can_be_cancelled(status: S) -> None:
    a = make(status).cancel("patient request", T0 + 10)
    assert a.status is S.CANCELLED
    assert a.cancellation_reason == "patient request"
    assert a.updated_at == T0 + 10
    assert not a.active


def test_cancelling_without_a_reason() -> None:
    assert make().cancel(None, T0).cancellation_reason is None


def test_cancelling_drops_the_join_links_and_keeps_the_room() -> None:
    a = make(is_remote=True, remote_channel=RemoteChannel.VIDEO).with_video(
        RoomId("rm_1"), video_link="https://p", meeting_url="https://c", now=T0
    )
    cancelled = a.cancel(None, T0 + 1)
    assert cancelled.video_link is cancelled.meeting_url is None
    assert cancelled.room_id == "rm_1"


@pytest.mark.parametrize("status", terminal())
@pytest.mark.parametrize("action", ["cancel", "complete", "no_show"])
def test_a_closed_appointment_refuses_every_action(status: S, action: str) -> None:
    a = make(status)
    attempts: dict[str, Callable[[], Appointment]] = {
        "cancel": lambda: a.cancel("x", T0),
        "complete": lambda: a.complete(T0),
        "no_show": lambda: a.no_show(CLOSES.closes_at + 1, CLOSES),
    }
    with pytest.raises(InvalidTransition) as info:
        attempts[action]()
    assert info.value.code == "invalid_state_transition"
    assert info.value.details == {"current_status": status.value, "attempted_action": action}
    assert f"with status {status.value}" in info.value.message


@pytest.mark.parametrize("status", [S.PENDING, S.CONFIRMED, S.SCHEDULED, S.PENDING_APPROVAL])
def test_completing_records_attendance(status: S) -> None:
    a = make(status).complete(T0 + 5)
    assert a.status is S.COMPLETED
    assert a.attendance_status is Attendance.ATTENDED
    assert a.updated_at == T0 + 5


def test_no_show_waits_for_the_join_window_to_close() -> None:
    a = make(S.CONFIRMED)
    for now in (START, CLOSES.closes_at):  # still open, up to and including its last second
        with pytest.raises(InvalidTransition) as info:
            a.no_show(now, CLOSES)
        assert info.value.details == {
            "current_status": "confirmed",
            "attempted_action": "no_show",
            "closes_at": CLOSES.closes_at,
        }
    marked = a.no_show(CLOSES.closes_at + 0.001, CLOSES)
    assert marked.status is S.NO_SHOW
    assert marked.attendance_status is Attendance.NO_SHOW


# -- outcomes from the room ----------------------------------------------------------------


def test_outcomes_close_an_active_appointment() -> None:
    done = make().apply_outcome(Outcome.COMPLETED, T0 + 1)
    assert done.status is S.COMPLETED
    assert done.updated_at == T0 + 1
    missed = make().apply_outcome(Outcome.NO_SHOW, T0 + 1)
    assert missed.status is S.NO_SHOW


@pytest.mark.parametrize("status", terminal())
@pytest.mark.parametrize("outcome", list(Outcome))
def test_outcomes_leave_a_closed_appointment_alone(status: S, outcome: Outcome) -> None:
    a = make(status)
    assert a.apply_outcome(outcome, T0 + 99) is a


def test_applying_an_outcome_twice_is_harmless() -> None:
    once = make().apply_outcome(Outcome.COMPLETED, T0 + 1)
    assert once.apply_outcome(Outcome.COMPLETED, T0 + 2) is once
    assert once.apply_outcome(Outcome.NO_SHOW, T0 + 2) is once


# -- updates -------------------------------------------------------------------------------


def test_update_changes_fields_and_the_time_of_change() -> None:
    a = make().update({"title": "Review", "attendee_email": "x@example.org"}, T0 + 7)
    assert a.title == "Review"
    assert a.attendee_email == "x@example.org"
    assert a.updated_at == T0 + 7
    assert a.created_at == T0


def test_update_may_move_the_times_of_an_active_appointment() -> None:
    a = make().update({"start_time": START + 60, "end_time": END + 120}, T0)
    assert (a.start_time, a.end_time) == (START + 60, END + 120)
    assert a.duration_minutes == 31


def test_update_refuses_an_end_before_the_start() -> None:
    with pytest.raises(InvalidAppointment) as info:
        make().update({"end_time": START - 60}, T0)
    assert info.value.details == {"field": "end_time", "problem": "before_start"}
    with pytest.raises(InvalidAppointment):
        make().update({"start_time": END}, T0)


def test_update_refuses_the_status_naming_the_actions() -> None:
    with pytest.raises(InvalidAppointment) as info:
        make().update({"status": S.CANCELLED}, T0)
    assert info.value.details == {"field": "status", "problem": "read_only"}
    assert "cancel, complete or no_show" in info.value.message


@pytest.mark.parametrize("name", ["id", "created_at", "video_link", "room_id", "nonsense"])
def test_update_refuses_fields_the_caller_does_not_own(name: str) -> None:
    with pytest.raises(InvalidAppointment) as info:
        make().update({name: "x"}, T0)
    assert info.value.details == {"field": name, "problem": "read_only"}


@pytest.mark.parametrize("status", terminal())
def test_a_closed_appointment_cannot_be_rescheduled(status: S) -> None:
    a = make(status)
    with pytest.raises(InvalidTransition) as info:
        a.update({"start_time": START - 60}, T0)
    assert info.value.details == {"current_status": status.value, "attempted_action": "reschedule"}
    # Its other fields may still be corrected, and naming the same times is no move.
    fixed = a.update({"description": "notes", "start_time": START, "end_time": END}, T0)
    assert fixed.description == "notes"
    assert fixed.status is status


def test_leaving_remote_clears_the_channel_unless_named() -> None:
    video = make(is_remote=True, remote_channel=RemoteChannel.VIDEO)
    assert video.update({"is_remote": False}, T0).remote_channel is None
    with pytest.raises(InvalidAppointment):
        video.update({"is_remote": False, "remote_channel": RemoteChannel.PHONE}, T0)
    assert video.update({"remote_channel": RemoteChannel.PHONE}, T0).remote_channel is (
        RemoteChannel.PHONE
    )
    still = video.update({"is_remote": True}, T0)
    assert still.remote_channel is RemoteChannel.VIDEO


def test_a_remote_appointment_without_a_channel_is_over_video() -> None:
    # Seed 000: a remote video appointment gets its room; seed 004 names only is_remote.
    remote = make(is_remote=True)
    assert remote.remote_channel is RemoteChannel.VIDEO
    assert remote.is_video
    assert make(is_remote=True, remote_channel=None).is_video
    assert not make(is_remote=True, remote_channel=RemoteChannel.PHONE).is_video
    in_person = make()
    assert in_person.update({"is_remote": True}, T0).is_video
    phone = make(is_remote=True, remote_channel=RemoteChannel.PHONE)
    assert phone.update({"is_remote": True}, T0).remote_channel is RemoteChannel.PHONE
    assert phone.update({"remote_channel": None}, T0).remote_channel is RemoteChannel.VIDEO


def test_every_updatable_field_is_a_field() -> None:
    names = set(Appointment.__dataclass_fields__)
    assert names >= UPDATABLE
    assert "status" not in UPDATABLE


# -- video ---------------------------------------------------------------------------------


def test_video_fields_come_and_go_together() -> None:
    a = make(is_remote=True, remote_channel=RemoteChannel.VIDEO)
    room = RoomId("rm_1")
    linked = a.with_video(room, video_link="https://p", meeting_url="https://c", now=T0 + 1)
    assert (linked.room_id, linked.video_link, linked.meeting_url) == (
        room,
        "https://p",
        "https://c",
    )
    assert linked.video_provider == VIDEO_PROVIDER
    assert linked.updated_at == T0 + 1
    gone = linked.without_video(T0 + 2)
    assert gone.room_id is gone.video_link is gone.meeting_url is gone.video_provider is None
    assert gone.updated_at == T0 + 2


# -- self-booking: holds -------------------------------------------------------------------


def held() -> Appointment:
    return hold(
        APPT, clinician_id="cli_1", start_time=START, end_time=END, expires_at=T0 + 900, now=T0
    )


def test_a_hold_is_a_video_appointment_of_the_booking_page_with_no_patient_data() -> None:
    a = held()
    assert a.status is S.HELD
    assert not a.active
    assert not a.status.final
    assert a.booking_source is BookingSource.BOOKING_PAGE
    assert a.is_video
    assert a.clinician_profile_id == "cli_1"
    assert a.hold_expires_at == T0 + 900
    assert a.attendee_name is a.attendee_email is a.patient_id is None
    assert {S.CANCELLED, S.COMPLETED, S.NO_SHOW, S.EXPIRED} == FINAL


def test_a_hold_must_expire_after_it_is_made() -> None:
    with pytest.raises(InvalidAppointment) as info:
        hold(APPT, clinician_id="c", start_time=START, end_time=END, expires_at=T0, now=T0)
    assert info.value.details == {"field": "hold_expires_at", "problem": "range"}


def test_a_hold_is_confirmed_or_expires_once() -> None:
    confirmed = held().confirm(T0 + 60)
    assert confirmed.status is S.CONFIRMED
    assert confirmed.active
    assert confirmed.hold_expires_at is None
    assert confirmed.updated_at == T0 + 60
    typed = held().attend("Sam Patel", "sam@example.org", T0 + 30)
    assert (typed.attendee_name, typed.attendee_email, typed.status) == (
        "Sam Patel",
        "sam@example.org",
        S.HELD,
    )
    assert typed.confirm(T0 + 31).attendee_name == "Sam Patel"
    expired = typed.expire(T0 + 901)
    assert expired.attendee_name is expired.attendee_email is None  # not kept
    assert expired.status is S.EXPIRED
    assert expired.status.final
    for done in (confirmed, expired):
        for action, attempt in (
            ("confirm", done.confirm),
            ("expire", done.expire),
            ("confirm", lambda now, d=done: d.attend("x", "y@z", now)),
        ):
            with pytest.raises(InvalidTransition) as info:
                attempt(T0 + 1000)
            assert info.value.details == {
                "current_status": done.status.value,
                "attempted_action": action,
            }


def test_a_hold_can_be_given_up_but_not_completed_marked_or_updated() -> None:
    a = held()
    given_up = a.cancel(None, T0 + 5, by=Actor.PATIENT)
    assert given_up.status is S.CANCELLED
    assert given_up.cancelled_by is Actor.PATIENT
    assert given_up.hold_expires_at is None
    attempts: tuple[tuple[str, Callable[[], Appointment]], ...] = (
        ("complete", lambda: a.complete(T0)),
        ("no_show", lambda: a.no_show(CLOSES.closes_at + 1, CLOSES)),
        ("update", lambda: a.update({"description": "x"}, T0)),
    )
    for action, attempt in attempts:
        with pytest.raises(InvalidTransition) as info:
            attempt()
        assert info.value.details == {"current_status": "held", "attempted_action": action}


def test_a_cancellation_reason_is_never_blank_and_the_clinician_must_give_one() -> None:
    with pytest.raises(InvalidAppointment) as info:
        make().cancel("  ", T0)
    assert info.value.details == {"field": "cancellation_reason", "problem": "blank"}
    with pytest.raises(InvalidAppointment) as info:
        make().cancel(None, T0, by=Actor.CLINICIAN)
    assert info.value.details == {"field": "cancellation_reason", "problem": "required"}
    by_clinician = make().cancel("unwell", T0, by=Actor.CLINICIAN)
    assert (by_clinician.cancelled_by, by_clinician.cancellation_reason) == (
        Actor.CLINICIAN,
        "unwell",
    )
    assert make().cancel(None, T0).cancelled_by is Actor.API
