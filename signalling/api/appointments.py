"""``/appointments``: book, list, change, cancel, complete and mark no-shows (seed 004), with
each video appointment's room, join links, call status and room activity (seeds 000, 001).

A remote appointment over video is held in the clinician's persistent room (an ad-hoc room
when it has no clinician). It gets two join links, each carrying the appointment and its
times, so the join window applies: the patient's personal link (``video_link``) and the
clinician's (``meeting_url``). A change the links carry (times, patient, attendee name,
clinician, capacity) replaces both, the old ones revoked once the change is saved;
cancelling revokes them first. The status projector is told
of the join window, settles completed or no-show from what the room saw, and the
appointment's status follows (`appointment_store.outcome_hook`).

Patient names and emails are stored and returned, never logged.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from starlette.responses import Response

from admission.window import JoinWindow
from rooms.appointments import (
    Actor,
    Appointment,
    AppointmentError,
    AppointmentStatus,
    ContactChannel,
    InvalidTransition,
    RemoteChannel,
    book,
)
from rooms.events import Event, EventKind
from rooms.ids import AppointmentId, ParticipantId, RoomId, SessionId
from rooms.projection import Projection
from rooms.roles import Role
from rooms.status import CallStatus
from signalling.api import appointment_schemas as schemas
from signalling.api.appointment_store import AppointmentStore, Filters, Stored
from signalling.api.calendar_follow import CalendarFollow, merged
from signalling.api.context import ApiContext
from signalling.api.envelope import Call, paged
from signalling.api.errors import (
    InvalidStateTransition,
    ValidationFailed,
)
from signalling.api.idempotency import HEADER_PROP, Idempotency
from signalling.api.links import DEFAULT_LINK_LIFETIME, LinkKind, Links, RoomKind
from signalling.api.registry import Api, Operation
from signalling.api.schema import format_time, query
from signalling.calendar import Calendar
from signalling.eventlog import EventLog
from signalling.keys import windows_of
from signalling.projector import read_projection, window_member

log = logging.getLogger("vestibule.signalling.api.appointments")

# Changes that the join links carry, so that they need new links.
LINKED = ("start_time", "end_time", "patient_id", "attendee_name", "capacity")
ACTIONS = "POST /appointments/{id}/cancel, /complete or /no_show"


def register(api: Api, ctx: ApiContext) -> Appointments:
    """Add the appointment operations to ``api``; the handlers (booking uses them too)."""
    h = Appointments(ctx)
    base, one = "/appointments", "/appointments/{id}"
    add = api.add
    add(Operation("GET", base, h.listing, "List appointments", "listAppointments",
                  query=schemas.LIST_QUERY, response=schemas.APPOINTMENT, many=True))  # fmt: skip
    add(Operation("POST", base, h.create, "Create an appointment", "createAppointment",
                  body=schemas.CREATE, response=schemas.APPOINTMENT, status=201,
                  errors=(400, 401, 409, 422, 503), headers=(HEADER_PROP,)))  # fmt: skip
    add(Operation("GET", one, h.retrieve, "Retrieve an appointment", "getAppointment",
                  response=schemas.APPOINTMENT, errors=(401, 404, 503)))  # fmt: skip
    add(Operation("PATCH", one, h.update, "Update an appointment's fields (not its status)",
                  "updateAppointment", body=schemas.UPDATE, partial_body=True,
                  response=schemas.APPOINTMENT,
                  errors=(400, 401, 404, 409, 422, 503)))  # fmt: skip
    add(Operation("POST", one + "/cancel", h.cancel, "Cancel an appointment",
                  "cancelAppointment", body=schemas.CANCEL, partial_body=True,
                  response=schemas.APPOINTMENT,
                  errors=(400, 401, 404, 409, 422, 503)))  # fmt: skip
    add(Operation("POST", one + "/complete", h.complete, "Mark an appointment completed",
                  "completeAppointment", body=schemas.ACTION, partial_body=True,
                  response=schemas.APPOINTMENT,
                  errors=(400, 401, 404, 409, 422, 503)))  # fmt: skip
    add(Operation("POST", one + "/no_show", h.no_show,
                  "Mark a no-show (once the join window has closed)", "markAppointmentNoShow",
                  body=schemas.ACTION, partial_body=True, response=schemas.APPOINTMENT,
                  errors=(400, 401, 404, 409, 422, 503)))  # fmt: skip
    add(Operation("GET", one + "/activity", h.activity,
                  "The appointment's room activity, oldest first", "getAppointmentActivity",
                  response=schemas.ACTIVITY, many=True, errors=(401, 404, 503)))  # fmt: skip
    return h


class Appointments:
    """The handlers."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.store = AppointmentStore(ctx)
        self.links = Links(ctx)
        self.idempotency = Idempotency(ctx.redis)
        self.calendars = CalendarFollow(Calendar(ctx.redis), ctx.clock)

    # -- reading --------------------------------------------------------------------------

    async def listing(self, call: Call) -> Response:
        params = query(call.request.query_params, schemas.LIST_QUERY)
        limit, offset = params.get("limit", 20), params.get("offset", 0)
        statuses: set[AppointmentStatus] | None = None
        if "status" in params:
            statuses = {AppointmentStatus(params["status"])}
        if "status_in" in params:
            wanted = _statuses(params["status_in"])
            statuses = wanted if statuses is None else statuses & wanted
        start_max, start_max_open = params.get("date_lte"), False
        raw_lte = call.request.query_params.get("date_lte", "")
        if start_max is not None and len(raw_lte) == 10:  # a date: the whole of that day
            start_max, start_max_open = start_max + 86400.0, True
        filters = Filters(
            patient_id=params.get("patient_id"),
            clinician_id=params.get("clinician_id"),
            statuses=None if statuses is None else frozenset(statuses),
            start_min=params.get("date_gte"),
            start_max=start_max,
            start_max_open=start_max_open,
            appointment_type_id=params.get("appointment_type_id"),
            location_id=params.get("location_id"),
        )
        page, more = await self.store.list(filters, limit=limit, offset=offset)
        items = await self.present(page)
        return paged(call, items, limit=limit, offset=offset, total=offset + len(items) + more)

    async def retrieve(self, call: Call) -> Response:
        appointment = await self.store.get(call.path_id("id", "appointment"))
        return call.ok((await self.present([appointment]))[0])

    async def activity(self, call: Call) -> Response:
        """The room's events of the appointment (`activity`) and its booking events (held,
        confirmed, expired, cancelled), in one timeline."""
        appointment = await self.store.get(call.path_id("id", "appointment"))
        booking = await self.calendars.activity(appointment)
        if appointment.room_id is None:
            return call.ok(booking, room_id=None)
        events = await EventLog(self.ctx.redis).read(appointment.room_id)
        timeline = activity([e for _, e in events], appointment.id)
        return call.ok(merged(timeline, booking), room_id=appointment.room_id)

    async def present(self, appointments: list[Appointment]) -> list[dict[str, Any]]:
        """The appointments as the API returns them, each with its call status."""
        projections: dict[RoomId, Projection | None] = {}
        out = []
        for a in appointments:
            status: CallStatus | None = None
            if a.room_id is not None:
                if a.room_id not in projections:
                    projections[a.room_id] = await read_projection(self.ctx.redis, a.room_id)
                projection = projections[a.room_id]
                status = CallStatus.READY if projection is None else projection.status(a.id)
            out.append(schemas.to_json(a, status))
        return out

    # -- booking and changes --------------------------------------------------------------

    async def create(self, call: Call) -> Response:
        body = await call.json()
        fields = schemas.CREATE.validate(body)
        _check_email(fields)
        key = self.idempotency.key_of(call)
        now = self.ctx.clock()
        try:  # every rule checked before anything is claimed or written
            appointment = book(
                AppointmentId(f"apt_{uuid.uuid4()}"),
                now=now,
                status=AppointmentStatus(fields.get("status", "pending")),
                **_domain(fields),
            )
        except AppointmentError as exc:
            raise _api_error(exc) from None

        async def act() -> Response:
            stored = Stored(appointment)
            if appointment.is_video:
                stored = await self.link(appointment, None, now)
            async with self.calendars.changing(
                appointment.id, appointment.clinician_profile_id
            ) as change:
                await self.store.create(stored)
                change.saved(None, stored.appointment)
            log.info("appointment %s booked by key %s", appointment.id, call.key_id)
            return call.ok((await self.present([stored.appointment]))[0], status=201)

        if key is None:
            return await act()
        return await self.idempotency.run(call, "createAppointment", key, body, act)

    async def update(self, call: Call) -> Response:
        body = await call.json()
        if isinstance(body, dict) and "status" in body:
            raise ValidationFailed(
                f"status cannot be changed by an update: use {ACTIONS}",
                {"field": "status", "problem": "read_only"},
            )
        fields = schemas.UPDATE.validate(body, partial=True)
        _check_email(fields)
        changes = _domain(fields)

        async def decide(stored: Stored) -> Stored:
            now = self.ctx.clock()
            try:
                updated = stored.appointment.update(changes, now)
            except AppointmentError as exc:
                raise _api_error(exc) from None
            return await self._relink(stored, updated, now)

        appointment_id = call.path_id("id", "appointment")
        current = await self.store.get(appointment_id)
        clinician = changes.get("clinician_profile_id", current.clinician_profile_id)
        async with self.calendars.changing(
            current.id, current.clinician_profile_id, clinician
        ) as change:
            before, after = await self.store.change(appointment_id, decide)
            change.saved(before.appointment, after.appointment)
        await self._retire(before, after)
        return call.ok((await self.present([after.appointment]))[0])

    async def cancel(self, call: Call) -> Response:
        fields = schemas.CANCEL.validate(await call.json())
        reason = fields.get("cancellation_reason")
        by = Actor(fields.get("cancelled_by", Actor.API.value))

        async def decide(stored: Stored, now: float) -> Stored:
            return await self.cancelled(stored, reason, now, by)

        return await self._act(call, "cancelled", decide)

    async def cancelled(self, stored: Stored, reason: str | None, now: float, by: Actor) -> Stored:
        """The appointment cancelled by ``by``, its links revoked (`apply` saves it)."""
        cancelled = stored.appointment.cancel(reason, now, by)
        # Revoked before the cancellation is saved: a failure in between leaves an
        # appointment that can be cancelled again, never a cancelled one whose links
        # still open the room.
        await self._revoke(stored)
        return Stored(cancelled)

    async def complete(self, call: Call) -> Response:
        schemas.ACTION.validate(await call.json())
        return await self._act(call, "completed", self.completed)

    async def no_show(self, call: Call) -> Response:
        schemas.ACTION.validate(await call.json())
        return await self._act(call, "no_show", self.missed)

    async def completed(self, stored: Stored, now: float) -> Stored:
        """The appointment marked completed (`apply` saves it)."""
        return replace(stored, appointment=stored.appointment.complete(now))

    async def missed(self, stored: Stored, now: float) -> Stored:
        """The appointment marked a no-show, once its join window has closed."""
        a = stored.appointment
        return replace(stored, appointment=a.no_show(now, self.window(a)))

    async def _act(
        self, call: Call, action: str, decide: Callable[[Stored, float], Awaitable[Stored]]
    ) -> Response:
        now = self.ctx.clock()
        appointment_id = call.path_id("id", "appointment")
        after = await self.apply(appointment_id, decide, now)
        log.info("appointment %s %s by key %s", appointment_id, action, call.key_id)
        return call.ok(
            (await self.present([after.appointment]))[0],
            action=action,
            performed_at=format_time(now),
            performed_by=call.key_id,
        )

    async def apply(
        self,
        appointment_id: str,
        decide: Callable[[Stored, float], Awaitable[Stored]],
        now: float,
    ) -> Stored:
        """Change an appointment's status with ``decide`` (its AppointmentError becomes the
        API's), then retire what the change replaced; the calendar follows."""

        async def attempt(stored: Stored) -> Stored:
            try:
                return await decide(stored, now)
            except AppointmentError as exc:
                raise _api_error(exc) from None

        # What the room has settled comes first: once a call has taken place, the
        # appointment cannot be marked a no-show, whatever is asked now.
        current = await self.store.get(appointment_id)
        async with self.calendars.changing(current.id, current.clinician_profile_id) as change:
            before, after = await self.store.change(appointment_id, attempt)
            change.saved(before.appointment, after.appointment)
        await self._retire(before, after)
        return after

    # -- the room and its links -----------------------------------------------------------

    def window(self, a: Appointment) -> JoinWindow:
        settings = self.ctx.settings
        return JoinWindow.around(
            a.start_time,
            a.end_time,
            opens_before=settings.window_opens_before,
            closes_after=settings.window_closes_after,
        )

    async def link(self, a: Appointment, room: RoomId | None, now: float) -> Stored:
        """The appointment with a room (``room``, or the clinician's, or a new ad-hoc one),
        fresh join links, and its join window registered with the projector."""
        if room is None and a.clinician_profile_id is not None:
            room = (await self.links.clinician_room(a.clinician_profile_id)).id
        elif room is None:
            record = await self.links.create_room(
                RoomKind.ADHOC, title=None, clinician_id=None, patient_id=a.patient_id
            )
            room = record.id
        window = self.window(a)
        common: dict[str, Any] = {
            "appointment": a.id,
            "starts_at": a.start_time,
            "ends_at": a.end_time,
            "capacity": a.capacity,
            # valid at least until the window closes, however far ahead it is booked
            "lifetime": max(DEFAULT_LINK_LIFETIME, window.closes_at - now),
        }
        patient = await self.links.issue(
            room, LinkKind.PATIENT, subject=a.patient_id or a.id, name=a.attendee_name or None,
            **common,
        )  # fmt: skip
        host = await self.links.issue(
            room, LinkKind.CLINICIAN, subject=a.clinician_profile_id or f"{a.id}:host", **common
        )
        # Registered anew, not only if absent (`note_window`): moved times move the window.
        member = window_member(room, a.id)
        await self.ctx.redis.zadd(windows_of(room), {member: window.closes_at})
        linked = a.with_video(room, video_link=patient.url, meeting_url=host.url, now=now)
        return Stored(linked, patient.id, host.id)

    async def _relink(self, stored: Stored, updated: Appointment, now: float) -> Stored:
        """The room and links an update needs: new links are issued here; the old ones are
        retired once the update is saved (`_retire`), so a failure in between leaves the
        appointment with links that work."""
        before = stored.appointment
        if not updated.active:  # a closed appointment keeps its room and gets no new links
            return replace(stored, appointment=updated)
        if not updated.is_video:
            if not before.is_video:
                return replace(stored, appointment=updated)
            return Stored(updated.without_video(now))
        if not before.is_video:
            return await self.link(updated, None, now)
        moved = before.clinician_profile_id != updated.clinician_profile_id
        if not moved and all(getattr(before, f) == getattr(updated, f) for f in LINKED):
            return replace(stored, appointment=updated)
        return await self.link(updated, None if moved else before.room_id, now)

    async def _revoke(self, stored: Stored, keep: Stored | None = None) -> None:
        kept = () if keep is None else (keep.patient_link, keep.clinician_link)
        for link in (stored.patient_link, stored.clinician_link):
            if link is not None and link not in kept:
                await self.links.revoke(link)

    async def _retire(self, before: Stored, after: Stored) -> None:
        """After a saved change: revoke the links it replaced; have the projector forget
        the join window of a room the appointment has left, or of a cancellation."""
        await self._revoke(before, keep=after)
        old, new = before.appointment, after.appointment
        stays = new.is_video and new.room_id == old.room_id
        if old.room_id is not None and not (
            stays and new.status is not AppointmentStatus.CANCELLED
        ):
            await self.ctx.redis.zrem(windows_of(old.room_id), window_member(old.room_id, old.id))


# -- presenting ----------------------------------------------------------------------------


# What an appointment's activity shows (seed 000's Room Activity): arrivals and
# departures of its people, knocks, the host's decisions, entries and exits of its call, and
# the call's start and end. Connections lost and regained within their grace period (a
# reload, a network blip) are not activity.
ACTIVITY_KINDS = frozenset(EventKind) - {EventKind.DISCONNECTED, EventKind.RECONNECTED}


def activity(events: list[Event], appointment: AppointmentId) -> list[dict[str, Any]]:
    """The events of ``appointment`` in its room's stream: those of its calls (sessions
    started for it), and those of the people whose links are for it, never another
    appointment's. The clinician's own comings and goings in the room are not any one
    appointment's: only its entries and exits of this appointment's calls are shown. Who
    and what, never names."""
    people: dict[ParticipantId, tuple[Role, AppointmentId | None]] = {}
    sessions: dict[SessionId, AppointmentId | None] = {}
    out: list[dict[str, Any]] = []
    for event in events:
        pid = event.participant
        if event.kind is EventKind.ARRIVED and pid is not None:
            assert event.role is not None
            people[pid] = (event.role, event.appointment)
        if event.kind is EventKind.SESSION_STARTED and event.session is not None:
            sessions[event.session] = event.appointment
        role, theirs = people.get(pid, (None, None)) if pid is not None else (None, None)
        if event.session is not None:
            ours = sessions.get(event.session) == appointment
        else:
            ours = role is not Role.HOST and theirs == appointment
        if ours and event.kind in ACTIVITY_KINDS:
            out.append(
                {
                    "kind": event.kind.value,
                    "at": format_time(event.at),
                    "participant_id": pid,
                    "role": _value(role),
                    "actor_id": event.actor,
                }
            )
    return out


# -- helpers -------------------------------------------------------------------------------


def _value(member: Any) -> Any:
    return None if member is None else member.value


def _statuses(raw: str) -> set[AppointmentStatus]:
    """``status_in``: comma-separated statuses, each a known one."""
    out: set[AppointmentStatus] = set()
    for part in raw.split(","):
        try:
            out.add(AppointmentStatus(part.strip()))
        except ValueError:
            raise ValidationFailed(
                f"status_in: {part.strip()[:40]!r} is not a status; use "
                + ", ".join(s.value for s in AppointmentStatus),
                {"field": "status_in", "problem": "enum"},
            ) from None
    return out


def _domain(fields: dict[str, Any]) -> dict[str, Any]:
    """Validated request fields as the domain takes them (enums for enum fields)."""
    values = {k: v for k, v in fields.items() if k != "status"}
    if values.get("remote_channel") is not None:
        values["remote_channel"] = RemoteChannel(values["remote_channel"])
    if values.get("preferred_channel") is not None:
        values["preferred_channel"] = ContactChannel(values["preferred_channel"])
    return values


def _check_email(fields: dict[str, Any]) -> None:
    email = fields.get("attendee_email")
    if email is None:
        return
    local, at, domain = email.rpartition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in email):
        raise ValidationFailed(
            "attendee_email must be an email address",
            {"field": "attendee_email", "problem": "format"},
        )


def _api_error(exc: AppointmentError) -> InvalidStateTransition | ValidationFailed:
    details = dict(exc.details)
    if isinstance(exc, InvalidTransition):
        if "closes_at" in details:
            details["closes_at"] = format_time(float(details["closes_at"]))  # type: ignore[arg-type]
        return InvalidStateTransition(exc.message, details)
    return ValidationFailed(exc.message, details)
