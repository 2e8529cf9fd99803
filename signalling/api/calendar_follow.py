"""The clinicians' calendars follow the appointments the REST API books, moves and cancels.

An appointment of the clinic's system with a clinician blocks that time in the clinician's
calendar (`signalling.calendar.Calendar.note`), so patients cannot hold it on the booking
page; it is recorded whatever it overlaps, since the clinic's system decides its own
bookings (seed 004). Moving it moves the span, a new clinician takes it to their calendar,
and cancelling frees the time and records the cancellation in the booking events. Each
change leaves a repair ticket before it writes (`rooms.booking.repair` finishes it if the
node dies half-way) and removes it after.

The booking events of an appointment join its room activity (`booking_activity`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from rooms.appointments import Actor, Appointment, AppointmentStatus
from rooms.booking import BookingEvent
from rooms.ids import AppointmentId
from signalling.api.errors import ApiError
from signalling.api.schema import format_time
from signalling.calendar import Calendar

STEP_GRACE = 30.0  # seconds a step may take before a sweeper finishes it instead


@dataclass(slots=True)
class Change:
    """What a change saved: the appointment before (None: new) and after."""

    old: Appointment | None = None
    new: Appointment | None = None

    def saved(self, old: Appointment | None, new: Appointment) -> None:
        self.old, self.new = old, new


class CalendarFollow:
    def __init__(self, calendar: Calendar, clock: Callable[[], float]) -> None:
        self.calendar = calendar
        self.clock = clock

    @contextlib.asynccontextmanager
    async def changing(
        self, appointment: AppointmentId, *clinicians: str | None
    ) -> AsyncIterator[Change]:
        """Around a change of ``appointment`` that may touch the calendars of
        ``clinicians``: leaves a repair ticket for each first; once the caller has said what
        was saved (`Change.saved`), the calendars follow and the tickets go. A refusal (an
        ApiError: nothing was written) takes the tickets too; any other failure leaves them
        for the sweepers."""
        due = self.clock() + STEP_GRACE
        tickets = [
            await self.calendar.ticket(c, appointment, due)
            for c in sorted({c for c in clinicians if c is not None})
        ]
        change = Change()
        try:
            yield change
        except ApiError:
            for ticket in tickets:
                await self.calendar.done(ticket)
            raise
        if change.new is not None:
            await self._follow(change.old, change.new)
        for ticket in tickets:
            await self.calendar.done(ticket)

    async def _follow(self, old: Appointment | None, new: Appointment) -> None:
        now = self.clock()
        before = None if old is None else old.clinician_profile_id
        after = new.clinician_profile_id
        cancelled = new.status is AppointmentStatus.CANCELLED and (
            old is None or old.status is not AppointmentStatus.CANCELLED
        )
        if cancelled and after is not None:
            await self.calendar.cancel(after, new.id, now=now, by=new.cancelled_by or Actor.API)
        if before is not None and before != after:
            await self.calendar.remove(before, new.id, now=now, by=None)
        moved = old is None or before != after or (
            (old.start_time, old.end_time) != (new.start_time, new.end_time)
        )  # fmt: skip
        if new.active and after is not None and moved:
            await self.calendar.note(after, new.id, new.start_time, new.end_time, now=now)

    async def activity(self, appointment: Appointment) -> list[dict[str, Any]]:
        """The appointment's booking events, as activity items (oldest first)."""
        clinician = appointment.clinician_profile_id
        if clinician is None:
            return []
        events = await self.calendar.events(clinician, appointment.id, appointment.created_at)
        return [booking_activity(e) for e in events]


def booking_activity(event: BookingEvent) -> dict[str, Any]:
    """One booking event as an item of ``GET /appointments/{id}/activity``: who acted is a
    kind of actor, never a person."""
    return {
        "kind": event.kind.value,
        "at": format_time(event.at),
        "participant_id": None,
        "role": None,
        "actor_id": None,
        "actor": event.actor.value,
    }


def merged(room: list[dict[str, Any]], booking: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Room activity and booking events in one timeline, by time (booking events first on
    a tie: a hold comes before what happens in the room)."""
    items = [{**item, "actor": item.get("actor")} for item in room]
    return sorted(booking + items, key=lambda item: str(item["at"]))
