"""Self-booking's calendar: what blocks a clinician's time, its events, and how a half-done
step is repaired (seed 001).

Pure: the calendar store (`signalling.calendar`) keeps, per clinician, one *span* per
appointment that blocks time: ``held`` (a patient holds the slot until ``expires_at``),
``confirmed`` (the patient confirmed the hold) or ``booked`` (an appointment the clinic's
system made through the API). A held span whose ``expires_at`` has passed blocks nothing,
whether or not anyone has removed it yet. Each hold, confirmation, expiry and cancellation
is a `BookingEvent` in the clinician's booking stream: the appointment id, the time and who
acted (`Actor`), never a name or an address.

A step touches two records, the span and the appointment (kept apart, as each Redis script
keeps to one hash slot), so a node can die between them. Every step leaves a repair
*ticket* first; `repair` decides, from what the two records say now, what makes them agree
again, and no outcome is ever two bookings of one time: the span decides whether time is
taken, the appointment whether it was cancelled.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from rooms.appointments import Actor, Appointment, AppointmentStatus
from rooms.ids import AppointmentId


class BookingEventKind(enum.Enum):
    HELD = "held"
    CONFIRMED = "confirmed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class BookingEvent:
    kind: BookingEventKind
    appointment: AppointmentId
    at: float
    actor: Actor

    def to_record(self) -> dict[str, Any]:
        return {"k": self.kind.value, "a": self.appointment, "t": self.at, "by": self.actor.value}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> BookingEvent:
        return cls(
            BookingEventKind(record["k"]),
            AppointmentId(record["a"]),
            float(record["t"]),
            Actor(record["by"]),
        )


class SpanKind(enum.Enum):
    HELD = "held"
    CONFIRMED = "confirmed"
    BOOKED = "booked"


@dataclass(frozen=True, slots=True)
class Span:
    """The time an appointment blocks in its clinician's calendar."""

    appointment: AppointmentId
    kind: SpanKind
    start: float
    end: float
    expires_at: float | None = None  # held: when the hold runs out
    confirmed_at: float | None = None  # confirmed: when

    def live(self, now: float) -> bool:
        """Whether it blocks time at ``now`` (a hold blocks until it expires)."""
        return self.kind is not SpanKind.HELD or (
            self.expires_at is not None and now < self.expires_at
        )


class Repair(enum.Enum):
    """What makes an appointment and its span agree (`repair`)."""

    NOTHING = "nothing"  # they agree
    LATER = "later"  # a step may still be under way: look again at the time given
    EXPIRE = "expire"  # the hold ran out: remove the span (if any), the appointment expires
    CONFIRM = "confirm"  # the span was confirmed: finish the appointment's confirmation
    RELEASE = "release"  # the time is not taken any more: remove the span
    NOTE = "note"  # an active appointment: its span must have its times


def repair(
    span: Span | None, appointment: Appointment | None, now: float, grace: float
) -> tuple[Repair, float | None]:
    """What to do about an appointment of the calendar's clinician (None: there is none, or
    it is another clinician's now) and its span, and for LATER when to look again. ``grace``
    is how long a step may take: a confirmation is finished by someone else only that long
    after the span was confirmed."""
    if appointment is None:
        if span is None:
            return Repair.NOTHING, None
        if span.kind is SpanKind.HELD:
            return _hold_ends(span, now)
        return Repair.RELEASE, None
    status = appointment.status
    if status is AppointmentStatus.HELD:
        if span is None:
            return Repair.EXPIRE, None
        if span.kind is SpanKind.HELD:
            return _hold_ends(span, now)
        confirmed = span.confirmed_at if span.confirmed_at is not None else now
        if now < confirmed + grace:
            return Repair.LATER, confirmed + grace
        return Repair.CONFIRM, None
    if status in (AppointmentStatus.CANCELLED, AppointmentStatus.EXPIRED):
        return (Repair.RELEASE, None) if span is not None else (Repair.NOTHING, None)
    if not appointment.active:  # completed, no-show: the time was used; leave it
        return Repair.NOTHING, None
    if span is None or (span.start, span.end) != (appointment.start_time, appointment.end_time):
        return Repair.NOTE, None
    return Repair.NOTHING, None


def _hold_ends(span: Span, now: float) -> tuple[Repair, float | None]:
    if span.live(now):
        return Repair.LATER, span.expires_at
    return Repair.EXPIRE, None
