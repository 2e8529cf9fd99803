"""Self-booking: the hosted booking page's public operations (seed 001).

A patient, with no account, opens a clinician's booking link, picks a slot and holds it:
the hold is an appointment with status ``held`` for `Settings.hold_seconds` (15 minutes by
default), made on the clinician's calendar in one script that refuses any overlap
(`signalling.calendar`), so two bookers never hold or confirm the same time, on any number
of nodes. The hold answers with a random *hold secret*, which the page keeps in memory and
sends to confirm or give up the hold; the calendar keeps only its digest. Confirming gives
the patient's name and e-mail (kept in the appointment record only, never in a log, an
event or a URL); the appointment becomes ``confirmed``, gets its room and join links like
any video appointment, and the invitation goes out through the configured channel (e-mail,
else the webhook). A hold that is not confirmed in time blocks nothing from its expiry on,
and the nodes' sweepers mark it ``expired`` (`signalling.api.booking_repair`). A patient
cancels from their own join link: its token, sent in the body, names the appointment.

Operations (under ``/api/v1``, public: no API key):

    GET  /clinicians/{clinician_id}/slots    bookable slots over a date range, in a zone
    POST /clinicians/{clinician_id}/holds    hold a slot                               201
    POST /holds/{hold_id}/confirm            confirm it (name, e-mail)
    POST /holds/{hold_id}/release            give it up
    POST /bookings/cancel                    cancel from the patient's join link

Only clinicians with a bookable availability window can be booked; the others are 404.
"""

from __future__ import annotations

import datetime
import logging
import secrets
import uuid

from starlette.responses import Response

from admission.errors import InvalidName, TokenError
from admission.policy import display_name
from admission.tokens import decode_join
from rooms.appointments import (
    Actor,
    Appointment,
    AppointmentError,
    AppointmentStatus,
    BookingSource,
    ContactChannel,
    hold,
)
from rooms.availability import AvailabilityError, DayOff, Window, zone
from rooms.ids import AppointmentId
from rooms.roles import Role
from rooms.slots import Slot, free, generate
from signalling.api import booking_schemas as schemas
from signalling.api.appointment_store import Stored
from signalling.api.appointments import Appointments
from signalling.api.availability import clinician_of, parse_date
from signalling.api.availability_store import AvailabilityStore
from signalling.api.context import ApiContext
from signalling.api.envelope import Call
from signalling.api.errors import ApiError, InvalidStateTransition, NotFound, ValidationFailed
from signalling.api.invitations import address_problem, route
from signalling.api.links import is_revoked
from signalling.api.registry import Api, Operation
from signalling.api.schema import format_time, query
from signalling.calendar import Calendar, Outcome
from signalling.channels import configured
from signalling.outbox import Outbox

log = logging.getLogger("vestibule.signalling.api.booking")

DAY = 86400.0


class SlotTaken(ApiError):
    """Another booker holds (or has booked) the time."""

    status = 409
    code = "SLOT_TAKEN"


class SlotUnavailable(ApiError):
    """No bookable slot starts then (outside the availability, a day off, too soon)."""

    status = 409
    code = "SLOT_UNAVAILABLE"


class HoldExpired(ApiError):
    """The hold ran out before it was confirmed: pick a slot again."""

    status = 409
    code = "HOLD_EXPIRED"


def _no_hold(hold_id: str) -> NotFound:
    # One answer for an unknown id and a wrong secret: holds cannot be probed.
    return NotFound(f"no hold {hold_id} with this secret", {"hold_id": hold_id})


def _transition(exc: AppointmentError) -> ApiError:
    if exc.code == "invalid_state_transition":
        return InvalidStateTransition(exc.message, exc.details)
    return ValidationFailed(exc.message, exc.details)


class Confirmations:
    """Finishes a confirmation: the appointment confirmed with its room and links, and the
    invitation queued. Used by the confirm request and by the repair of one left half-way."""

    def __init__(self, ctx: ApiContext, appointments: Appointments) -> None:
        self.ctx = ctx
        self.appointments = appointments
        self.outbox = Outbox(ctx.redis, ctx.clock)
        self.channels = configured(ctx.settings)

    async def finish(self, appointment_id: str) -> tuple[Stored, ContactChannel | None]:
        now = self.ctx.clock()

        async def decide(stored: Stored) -> Stored:
            a = stored.appointment
            if a.status is AppointmentStatus.CONFIRMED:
                return stored
            try:
                confirmed = a.confirm(now)
            except AppointmentError as exc:
                raise _transition(exc) from None
            return await self.appointments.link(confirmed, None, now)

        before, after = await self.appointments.store.change(appointment_id, decide)
        if before is after:
            return after, None
        return after, await self._invite(after)

    async def _invite(self, stored: Stored) -> ContactChannel | None:
        a = stored.appointment
        for channel in (ContactChannel.EMAIL, ContactChannel.WEBHOOK):
            if channel in self.channels and a.attendee_email:
                how, to = route(a, channel, a.attendee_email, self.channels)
                invitation = await self.outbox.enqueue(a.id, how, to)
                log.info("invitation %s for booking %s queued (%s)", invitation.id, a.id, how.value)
                return how
        return None


class Booking:
    """The handlers."""

    def __init__(self, ctx: ApiContext, appointments: Appointments) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.appointments = appointments
        self.store = appointments.store
        self.calendar = Calendar(ctx.redis)
        self.availability = AvailabilityStore(ctx.redis)
        self.confirmations = Confirmations(ctx, appointments)

    # -- slots ----------------------------------------------------------------------------

    async def slots(self, call: Call) -> Response:
        clinician = clinician_of(call)
        params = query(call.request.query_params, schemas.SLOTS_QUERY)
        tz_name = params.get("time_zone", "UTC")
        try:
            tz = zone(tz_name)
        except AvailabilityError as exc:
            raise ValidationFailed(exc.message, exc.details) from None
        now = self.ctx.clock()
        today = datetime.datetime.fromtimestamp(now, tz).date()
        first = parse_date("from", params.get("from")) or today
        horizon = datetime.timedelta(days=schemas.HORIZON_DAYS)
        if not today - datetime.timedelta(days=1) <= first <= today + horizon:
            raise ValidationFailed(
                f"from must be from yesterday to {schemas.HORIZON_DAYS} days ahead",
                {"field": "from", "problem": "range"},
            )
        last = parse_date("to", params.get("to")) or (
            first + datetime.timedelta(days=schemas.DEFAULT_DAYS - 1)
        )
        if not first <= last < first + datetime.timedelta(days=schemas.MAX_DAYS):
            raise ValidationFailed(
                f"to must be from from to {schemas.MAX_DAYS - 1} days after it",
                {"field": "to", "problem": "range"},
            )
        start = datetime.datetime.combine(first, datetime.time(), tz).timestamp()
        end = datetime.datetime.combine(last + datetime.timedelta(days=1), datetime.time(), tz)
        windows, days_off = await self._availability(clinician)
        slots = await self._bookable(clinician, windows, days_off, start, end.timestamp(), now)
        data = [schemas.slot_data(s, datetime.datetime.fromtimestamp(s.start, tz)) for s in slots]
        return call.ok(
            data, clinician_id=clinician, time_zone=tz_name, hold_seconds=self.settings.hold_seconds
        )

    async def _availability(self, clinician: str) -> tuple[list[Window], list[DayOff]]:
        """The clinician's windows and days off; NotFound if nothing can be booked."""
        windows = await self.availability.windows(clinician)
        if not any(w.bookable for w in windows):
            raise NotFound(f"clinician {clinician} takes no bookings", {"clinician_id": clinician})
        return windows, await self.availability.days_off(clinician)

    async def _bookable(
        self,
        clinician: str,
        windows: list[Window],
        days_off: list[DayOff],
        start: float,
        end: float,
        now: float,
    ) -> list[Slot]:
        laid = generate(
            windows, days_off, start=start, end=end, default_minutes=self.settings.slot_minutes
        )
        busy = await self.calendar.busy(clinician, start, now)
        return free(laid, busy, now=now, notice=self.settings.booking_notice)

    # -- holds ----------------------------------------------------------------------------

    async def hold(self, call: Call) -> Response:
        clinician = clinician_of(call)
        start = schemas.NEW_HOLD.validate(await call.json())["start_time"]
        now = self.ctx.clock()
        windows, days_off = await self._availability(clinician)
        when = format_time(start)  # any time parse_time gave can be formatted
        if not now <= start <= now + schemas.HORIZON_DAYS * DAY:
            problem = "too_soon" if start < now else "too_far"
            raise SlotUnavailable(
                f"no slot can be booked at {when}", {"start_time": when, "problem": problem}
            )
        # The slots of the days around, as the page lists them (overlaps resolved alike).
        laid = generate(windows, days_off, start=start - DAY, end=start + DAY,
                        default_minutes=self.settings.slot_minutes)  # fmt: skip
        slot = next((s for s in laid if s.start == start), None)
        if slot is None:
            raise SlotUnavailable(
                f"no slot of clinician {clinician} starts at {when}",
                {"start_time": when, "problem": "not_a_slot"},
            )
        if slot.start < now + self.settings.booking_notice:
            raise SlotUnavailable(
                f"the slot at {when} is too soon to book",
                {"start_time": when, "problem": "too_soon"},
            )
        window = next(w for w in windows if w.id == slot.window_id)
        expires = now + self.settings.hold_seconds
        held = hold(
            AppointmentId(f"apt_{uuid.uuid4()}"), clinician_id=clinician,
            start_time=slot.start, end_time=slot.end, expires_at=expires, now=now,
            appointment_type_id=window.appointment_type_id,
        )  # fmt: skip
        secret = secrets.token_urlsafe(24)
        # The ticket is the hold's expiry: a sweeper expires it then, unless confirmed.
        ticket = await self.calendar.ticket(clinician, held.id, due=expires)
        outcome = await self.calendar.hold(
            clinician, held.id, slot.start, slot.end, now=now, expires_at=expires, secret=secret
        )
        if outcome is not Outcome.OK:
            await self.calendar.done(ticket)
            raise SlotTaken(
                f"the slot at {when} has just been taken: pick another", {"start_time": when}
            )
        await self.store.create(Stored(held))
        log.info("booking %s held on clinician %s's calendar", held.id, clinician)
        return call.ok(schemas.booking_data(held) | {"hold_secret": secret}, status=201)

    async def confirm(self, call: Call) -> Response:
        hold_id = call.path_id("hold_id", "hold")
        body = schemas.CONFIRM.validate(await call.json())
        name = _name(body["attendee_name"])
        email: str = body["attendee_email"]
        if address_problem(ContactChannel.EMAIL, email) is not None:
            raise ValidationFailed(
                "attendee_email must be an e-mail address",
                {"field": "attendee_email", "problem": "format"},
            )
        clinician, a = await self._own(hold_id, body["hold_secret"])
        now = self.ctx.clock()
        expires = a.hold_expires_at
        if a.status is AppointmentStatus.HELD and expires is not None and now >= expires:
            raise HoldExpired(
                "the hold has expired: pick a slot again", {"expired_at": format_time(expires)}
            )

        async def attend(stored: Stored) -> Stored:
            held = stored.appointment
            if held.status is not AppointmentStatus.HELD:
                return stored  # confirmed before (a retry), or the state check below says
            return Stored(held.attend(name, email, now))

        async with self.appointments.calendars.changing(a.id, clinician):
            before, _ = await self.store.change(hold_id, attend)
            self._expect_confirmable(before.appointment)
            outcome = await self.calendar.confirm(
                clinician, a.id, secret=body["hold_secret"], now=now
            )
            if outcome is Outcome.EXPIRED:
                raise HoldExpired("the hold has expired: pick a slot again", {"hold_id": hold_id})
            if outcome is Outcome.TAKEN:
                raise SlotTaken("the time has been booked meanwhile: pick another slot")
            if outcome not in (Outcome.OK, Outcome.ALREADY):
                raise _no_hold(hold_id)
            stored, channel = await self.confirmations.finish(hold_id)
        log.info("booking %s confirmed", hold_id)
        return call.ok(schemas.booking_data(stored.appointment, channel))

    async def release(self, call: Call) -> Response:
        hold_id = call.path_id("hold_id", "hold")
        body = schemas.RELEASE.validate(await call.json())
        _, a = await self._own(hold_id, body["hold_secret"])
        if a.status is not AppointmentStatus.HELD:
            raise InvalidStateTransition(
                f"cannot release booking {hold_id} with status {a.status.value}",
                {"current_status": a.status.value, "attempted_action": "release"},
            )
        after = await self._cancel(hold_id, None, Actor.PATIENT)
        log.info("booking %s given up", hold_id)
        return call.ok(schemas.booking_data(after.appointment))

    async def cancel_by_link(self, call: Call) -> Response:
        body = schemas.LINK_CANCEL.validate(await call.json())
        invalid = NotFound("this link does not name a booking that can be cancelled")
        try:
            claims = decode_join(body["token"], self.settings.keyring, self.ctx.clock())
        except TokenError:
            raise invalid from None
        if claims.role is not Role.PATIENT or claims.appointment is None:
            raise invalid
        try:
            stored, _ = await self.store.load(claims.appointment)
        except NotFound:
            raise invalid from None
        a = stored.appointment
        if a.status is AppointmentStatus.CANCELLED:
            raise InvalidStateTransition(
                f"appointment {a.id} is already cancelled",
                {"current_status": a.status.value, "attempted_action": "cancel"},
            )
        # Only the appointment's current link: a replaced (revoked) one cancels nothing.
        if stored.patient_link != claims.token_id or await is_revoked(
            self.ctx.redis, claims.token_id
        ):
            raise invalid
        after = await self._cancel(a.id, body.get("cancellation_reason"), Actor.PATIENT)
        log.info("appointment %s cancelled by the patient", a.id)
        return call.ok(schemas.booking_data(after.appointment))

    # -- helpers --------------------------------------------------------------------------

    async def _own(self, hold_id: str, secret: str) -> tuple[str, Appointment]:
        """The clinician and the appointment of a hold made on the booking page with
        ``secret``; NotFound otherwise."""
        try:
            stored, _ = await self.store.load(hold_id)
        except NotFound:
            raise _no_hold(hold_id) from None
        a = stored.appointment
        clinician = a.clinician_profile_id
        if a.booking_source is not BookingSource.BOOKING_PAGE or clinician is None:
            raise _no_hold(hold_id)
        if a.status is AppointmentStatus.EXPIRED:
            raise HoldExpired("the hold has expired: pick a slot again", {"hold_id": hold_id})
        if not await self.calendar.secret_matches(clinician, a.id, secret):
            raise _no_hold(hold_id)
        return clinician, a

    def _expect_confirmable(self, a: Appointment) -> None:
        if a.status not in (AppointmentStatus.HELD, AppointmentStatus.CONFIRMED):
            raise InvalidStateTransition(
                f"cannot confirm booking {a.id} with status {a.status.value}",
                {"current_status": a.status.value, "attempted_action": "confirm"},
            )

    async def _cancel(self, appointment_id: str, reason: str | None, by: Actor) -> Stored:
        async def decide(stored: Stored, now: float) -> Stored:
            return await self.appointments.cancelled(stored, reason, now, by)

        return await self.appointments.apply(appointment_id, decide, self.ctx.clock())


def _name(value: str) -> str:
    try:
        name = display_name(Role.PATIENT, None, value)
    except InvalidName as exc:
        raise ValidationFailed(
            exc.message, {"field": "attendee_name", "problem": "format"}
        ) from None
    assert name is not None  # a typed name is returned or refused, never None
    return name


def register(api: Api, ctx: ApiContext, appointments: Appointments) -> Booking:
    """Add the public booking operations to ``api``; the handlers, for the repairs."""
    h = Booking(ctx, appointments)
    public = (400, 404, 409, 422, 503)
    for op in (
        Operation("GET", "/clinicians/{clinician_id}/slots", h.slots,
                  "List a clinician's bookable slots (public)", "listSlots",
                  query=schemas.SLOTS_QUERY, response=schemas.SLOT, many=True,
                  errors=(404, 422, 503), public=True),
        Operation("POST", "/clinicians/{clinician_id}/holds", h.hold,
                  "Hold a slot for the booking patient (public)", "createHold",
                  body=schemas.NEW_HOLD, response=schemas.HOLD, status=201, errors=public,
                  public=True),
        Operation("POST", "/holds/{hold_id}/confirm", h.confirm,
                  "Confirm a hold with the patient's name and e-mail (public)", "confirmHold",
                  body=schemas.CONFIRM, response=schemas.BOOKING, errors=public, public=True),
        Operation("POST", "/holds/{hold_id}/release", h.release,
                  "Give a hold up (public)", "releaseHold", body=schemas.RELEASE,
                  response=schemas.BOOKING, errors=public, public=True),
        Operation("POST", "/bookings/cancel", h.cancel_by_link,
                  "Cancel an appointment from the patient's join link (public)",
                  "cancelBookingByLink", body=schemas.LINK_CANCEL, response=schemas.BOOKING,
                  errors=public, public=True),
    ):  # fmt: skip
        api.add(op)
    return h
