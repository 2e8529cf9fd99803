"""The calendar's pure rules (rooms.booking): spans, events, and the repair of a half-done
step, for every combination of what the span and the appointment say."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rooms.appointments import Actor, Appointment, AppointmentStatus, book, hold
from rooms.booking import BookingEvent, BookingEventKind, Repair, Span, SpanKind, repair
from rooms.ids import AppointmentId

S = AppointmentStatus
T0 = 1_000_000.0
START, END = T0 + 3600.0, T0 + 5400.0
APPT = AppointmentId("apt_1")
GRACE = 60.0
HELD = Span(APPT, SpanKind.HELD, START, END, expires_at=T0 + 900)
CONFIRMED = Span(APPT, SpanKind.CONFIRMED, START, END, confirmed_at=T0 + 100)
BOOKED = Span(APPT, SpanKind.BOOKED, START, END)


def held() -> Appointment:
    return hold(
        APPT, clinician_id="cli_1", start_time=START, end_time=END, expires_at=T0 + 900, now=T0
    )


def booked(status: S = S.CONFIRMED) -> Appointment:
    a = book(APPT, title="t", start_time=START, end_time=END, now=T0, clinician_profile_id="c")
    return replace(a, status=status)


def test_events_round_trip_through_their_record() -> None:
    event = BookingEvent(BookingEventKind.CONFIRMED, APPT, T0, Actor.PATIENT)
    assert event.to_record() == {"k": "confirmed", "a": APPT, "t": T0, "by": "patient"}
    assert BookingEvent.from_record(event.to_record()) == event


def test_a_hold_blocks_until_it_expires_and_the_others_always() -> None:
    assert HELD.live(T0 + 899.9)
    assert not HELD.live(T0 + 900)
    assert not replace(HELD, expires_at=None).live(T0)
    assert CONFIRMED.live(T0 + 10**9)
    assert BOOKED.live(T0 + 10**9)


@pytest.mark.parametrize(
    ("span", "appointment", "now", "expected"),
    [
        # No appointment (none was written, or it is another clinician's now).
        (None, None, T0, (Repair.NOTHING, None)),
        (HELD, None, T0 + 10, (Repair.LATER, T0 + 900)),
        (HELD, None, T0 + 900, (Repair.EXPIRE, None)),
        (BOOKED, None, T0, (Repair.RELEASE, None)),
        (CONFIRMED, None, T0, (Repair.RELEASE, None)),
        # Held: the span says what became of the hold.
        (None, "held", T0, (Repair.EXPIRE, None)),
        (HELD, "held", T0 + 10, (Repair.LATER, T0 + 900)),
        (HELD, "held", T0 + 901, (Repair.EXPIRE, None)),
        (CONFIRMED, "held", T0 + 100 + GRACE - 1, (Repair.LATER, T0 + 100 + GRACE)),
        (CONFIRMED, "held", T0 + 100 + GRACE, (Repair.CONFIRM, None)),
        (replace(CONFIRMED, confirmed_at=None), "held", T0, (Repair.LATER, T0 + GRACE)),
        # Cancelled or expired: the time is free.
        (CONFIRMED, S.CANCELLED, T0, (Repair.RELEASE, None)),
        (HELD, S.EXPIRED, T0, (Repair.RELEASE, None)),
        (None, S.CANCELLED, T0, (Repair.NOTHING, None)),
        # Completed, no-show: left as they are.
        (None, S.COMPLETED, T0, (Repair.NOTHING, None)),
        (BOOKED, S.NO_SHOW, T0, (Repair.NOTHING, None)),
        # Active: the span must be there with the appointment's times.
        (None, S.CONFIRMED, T0, (Repair.NOTE, None)),
        (replace(BOOKED, end=END + 60), S.PENDING, T0, (Repair.NOTE, None)),
        (BOOKED, S.PENDING, T0, (Repair.NOTHING, None)),
        (CONFIRMED, S.CONFIRMED, T0, (Repair.NOTHING, None)),
    ],
)
def test_repair(
    span: Span | None, appointment: str | S | None, now: float, expected: tuple[Repair, float]
) -> None:
    if appointment is None:
        record = None
    elif appointment == "held":
        record = held()
    else:
        record = booked(S(appointment))
    assert repair(span, record, now, GRACE) == expected
