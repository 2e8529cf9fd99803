"""The booking sweeper: expires holds and finishes steps a node left half-way.

Every node runs one (`Repairs.sweep`, every `Settings.hold_sweep` seconds, supervised by the
app). It claims the repair tickets that are due (`signalling.calendar.Calendar.claim`, a
lease per ticket, so nodes share the work and one that dies mid-way leaves its tickets to
the others), looks at the appointment and its span, and does what `rooms.booking.repair`
says: a hold that ran out unconfirmed is removed from the calendar (recording ``expired``,
once, in the same script) and its appointment marked ``expired``; a confirmation whose
node died is finished; a cancelled appointment's time is freed; an appointment of the
clinic's system gets its span. Each step is idempotent, so two nodes repairing one ticket
(a lease that ran out) do no harm. A ticket that fails is logged and left for its lease to
run out; it never stops the others.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from rooms.appointments import Actor, Appointment, AppointmentStatus
from rooms.booking import Repair, repair
from signalling.api.appointment_store import AppointmentStore, Stored
from signalling.api.appointments import Appointments
from signalling.api.booking import Confirmations
from signalling.api.calendar_follow import STEP_GRACE
from signalling.api.context import ApiContext
from signalling.api.errors import NotFound
from signalling.calendar import BUCKETS, Calendar, Ticket

log = logging.getLogger("vestibule.signalling.api.booking")

LEASE = 60.0  # seconds a claimed ticket is a node's before another may take it
BATCH = 100  # tickets per bucket per sweep


class Repairs:
    def __init__(
        self, ctx: ApiContext, store: AppointmentStore, confirmations: Confirmations
    ) -> None:
        self.ctx = ctx
        self.store = store
        self.calendar = Calendar(ctx.redis)
        self.confirmations = confirmations

    async def sweep(self) -> int:
        """One pass over every bucket; how many tickets were looked at."""
        now = self.ctx.clock()
        seen = 0
        for bucket in range(BUCKETS):
            for ticket in await self.calendar.claim(bucket, now, LEASE, BATCH):
                seen += 1
                try:
                    await self.repair(ticket, now)
                except RedisError:
                    raise
                except Exception:  # one bad ticket must not stop the others
                    log.exception("repair of booking %s failed", ticket.appointment)
        return seen

    async def repair(self, ticket: Ticket, now: float) -> None:
        clinician, appointment_id = ticket.clinician, ticket.appointment
        span = await self.calendar.span(clinician, appointment_id)
        try:
            stored, _ = await self.store.load(appointment_id)
            appointment: Appointment | None = stored.appointment
        except NotFound:
            appointment = None
        if appointment is not None and appointment.clinician_profile_id != clinician:
            appointment = None  # another clinician's now: this calendar has no claim on it
        decision, when = repair(span, appointment, now, STEP_GRACE)
        if decision is Repair.LATER:
            assert when is not None
            await self.calendar.later(ticket, when)
            return
        if decision is Repair.EXPIRE:
            await self.calendar.expire(clinician, appointment_id, now=now)
            if appointment is not None:
                await self.store.change(appointment_id, lambda s: self._expired(s, now))
                log.info("booking %s expired", appointment_id)
        elif decision is Repair.CONFIRM:
            await self.confirmations.finish(appointment_id)
            log.info("booking %s confirmation finished by a sweeper", appointment_id)
        elif decision is Repair.RELEASE:
            by = None
            if appointment is not None and appointment.status is AppointmentStatus.CANCELLED:
                by = appointment.cancelled_by or Actor.API
            await self.calendar.remove(clinician, appointment_id, now=now, by=by)
        elif decision is Repair.NOTE:
            assert appointment is not None
            await self.calendar.note(
                clinician, appointment_id, appointment.start_time, appointment.end_time, now=now
            )
        await self.calendar.done(ticket)

    @staticmethod
    async def _expired(stored: Stored, now: float) -> Stored:
        a = stored.appointment
        if a.status is not AppointmentStatus.HELD:
            return stored
        return Stored(a.expire(now), stored.patient_link, stored.clinician_link)


def repairs(ctx: ApiContext) -> Repairs:
    """The node's booking sweeper; the app runs `Repairs.sweep` every ``hold_sweep``."""
    appointments = Appointments(ctx)
    return Repairs(ctx, appointments.store, Confirmations(ctx, appointments))
