"""``/console``: the clinician's console, signed in with the clinician's own link, no key.

    POST /console/sessions                          sign in with a clinician link      201
    GET  /console/appointments                      the clinician's appointments (a day)
    POST /console/appointments/{id}/cancel          cancel, with the reason (required)
    POST /console/appointments/{id}/complete        mark completed
    POST /console/appointments/{id}/no_show         mark a no-show (after the join window)
    POST /console/appointments/{id}/invitations     send the patient their link       201
    GET  /console/appointments/{id}/activity        the room activity
    GET  /console/events                            server-sent events: what changed

Everything but the sign-in takes the console session (`signalling.api.sessions`) and sees
the session's clinician's appointments only: another clinician's is ``404``, as if it did not
exist. Each listed appointment carries its latest invitations and the ``actions`` that can
work on it now, so the console offers nothing the API would refuse.

The event stream pushes the changes instead of the console polling for them: an event
``changed`` whenever one of the clinician's appointments is written (booked, changed, a new
status, an invitation sent or settled: `signalling.api.followers`) or the projector saves a
new projection of their room (a call status changed: `signalling.projector`); the console
then reads the list again. Comments (``: keep-alive``) every few seconds keep proxies from
closing it; it ends when the session expires. Each open stream holds one Redis connection
(its pub/sub subscription) while it lasts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError
from starlette.responses import Response, StreamingResponse

from rooms.appointments import CANCELLABLE, Actor, Appointment
from signalling.api import appointment_schemas as schemas
from signalling.api.appointment_store import Filters, Stored
from signalling.api.appointments import Appointments, _statuses
from signalling.api.context import ApiContext
from signalling.api.envelope import Call, paged
from signalling.api.errors import ApiError, NotFound
from signalling.api.invitations import INVITATION, invitation_data, route
from signalling.api.links import is_revoked
from signalling.api.registry import Api, Operation
from signalling.api.schema import Kind, Prop, Schema, format_time, query
from signalling.api.sessions import ConsoleSession, InvalidLink
from signalling.channels import configured
from signalling.keys import console_channel, projected_channel
from signalling.outbox import Outbox
from signalling.pubsub import subscriber

log = logging.getLogger("vestibule.signalling.api.console")

KEEPALIVE = 5.0  # seconds between comments on a quiet event stream
RECENT_INVITATIONS = 5  # invitations listed with each appointment
ACTIONS = ("send", "cancel", "complete", "no_show")

SIGN_IN = Schema(
    "ConsoleSignIn",
    (
        Prop(
            "token",
            Kind.STRING,
            "The clinician's join link token: what follows the # of its meeting_url.",
            required=True,
            max_length=4096,
        ),
    ),
    "A clinician's link, exchanged for a console session.",
)
SESSION = Schema(
    "ConsoleSession",
    (
        schemas.returned("token", Kind.STRING, "The session: send it as Authorization: Bearer."),
        schemas.returned(
            "room_token",
            Kind.STRING,
            "A host join token for the clinician's persistent room, with no appointment: "
            "the console's WebSocket hello (PROTOCOL.md).",
        ),
        schemas.returned("expires_at", Kind.DATETIME, "When both end (sign in again then)."),
        schemas.returned("clinician_id", Kind.STRING, "The clinician the session is for."),
        schemas.returned(
            "name", Kind.STRING, "The clinician's name, if the link has one.", nullable=True
        ),
        schemas.returned("room_id", Kind.STRING, "The clinician's persistent room."),
    ),
    "A console session.",
)
CANCEL = Schema(
    "ConsoleCancel",
    (
        Prop(
            "cancellation_reason",
            Kind.STRING,
            "Why it is cancelled (required from the clinician: seed 001), not blank.",
            required=True,
            max_length=1000,
        ),
    ),
    "A cancellation by the clinician.",
)
ROW = Schema(
    "ConsoleAppointment",
    (
        *schemas.APPOINTMENT.props,
        Prop(
            "invitations",
            Kind.ARRAY,
            f"The latest {RECENT_INVITATIONS} invitations of the link, newest first.",
            required=True,
            items=INVITATION,
        ),
        Prop(
            "actions",
            Kind.ARRAY,
            "What can be done now: send (the link, through the patient's channel), cancel, "
            "complete, no_show (once the join window has closed).",
            required=True,
            item_kind=Kind.STRING,
        ),
    ),
    "One of the clinician's appointments, as the console lists it.",
)
LIST_QUERY = (
    Prop("date_gte", Kind.DATETIME, "Start time on or after (default: any)."),
    Prop("date_lte", Kind.DATETIME, "Start time on or before (a date: the whole of that day)."),
    Prop("status_in", Kind.STRING, "Only these statuses, comma-separated.", max_length=200),
    Prop("limit", Kind.INTEGER, "Records per page (1-100, default 100).", minimum=1, maximum=100),
    Prop("offset", Kind.INTEGER, "Records to skip (default 0).", minimum=0),
)
EVENTS_DESCRIPTION = (
    "Server-sent events (text/event-stream): `ready` once listening, then `changed` "
    '(data: {"appointment_id"} or {"room_id"}) whenever one of the clinician\'s '
    "appointments or their room's call status changes: read the list again. Comments keep "
    "the stream open; it ends when the session expires."
)


def register(api: Api, ctx: ApiContext, appointments: Appointments) -> None:
    """Add the console's operations to ``api`` (its `ConsoleSessions` signs in)."""
    console = _Console(api, ctx, appointments)
    base, one = "/console/appointments", "/console/appointments/{id}"
    actions = (400, 401, 404, 409, 422, 503)
    for op in (
        Operation("POST", "/console/sessions", console.sign_in,
                  "Sign in to the console with a clinician's link", "createConsoleSession",
                  body=SIGN_IN, response=SESSION, status=201, public=True,
                  errors=(400, 403, 422, 503)),
        Operation("GET", base, console.listing, "The clinician's appointments",
                  "listConsoleAppointments", query=LIST_QUERY, response=ROW, many=True,
                  console=True),
        Operation("POST", one + "/cancel", console.cancel, "Cancel, with a reason",
                  "cancelConsoleAppointment", body=CANCEL, response=ROW, console=True,
                  errors=actions),
        Operation("POST", one + "/complete", console.complete, "Mark completed",
                  "completeConsoleAppointment", body=schemas.ACTION, partial_body=True,
                  response=ROW, console=True, errors=actions),
        Operation("POST", one + "/no_show", console.no_show,
                  "Mark a no-show (once the join window has closed)",
                  "markConsoleAppointmentNoShow", body=schemas.ACTION, partial_body=True,
                  response=ROW, console=True, errors=actions),
        Operation("POST", one + "/invitations", console.send,
                  "Send the patient their join link", "sendConsoleInvitation",
                  body=schemas.ACTION, partial_body=True, response=INVITATION, status=201,
                  console=True, errors=actions),
        Operation("GET", one + "/activity", console.activity, "The room activity",
                  "getConsoleAppointmentActivity", response=schemas.ACTIVITY, many=True,
                  console=True, errors=(401, 404, 503)),
        Operation("GET", "/console/events", console.events, "What changes, as it changes",
                  "streamConsoleEvents", console=True, stream="text/event-stream",
                  errors=(401, 503), description=EVENTS_DESCRIPTION),
    ):  # fmt: skip
        api.add(op)


class _Console:
    def __init__(self, api: Api, ctx: ApiContext, appointments: Appointments) -> None:
        assert api.sessions is not None
        self.sessions = api.sessions
        self.ctx = ctx
        self.appointments = appointments
        self.outbox = Outbox(ctx.redis, ctx.clock)
        self.available = configured(ctx.settings)

    # -- signing in -----------------------------------------------------------------------

    async def sign_in(self, call: Call) -> Response:
        body = SIGN_IN.validate(await call.json())
        claims = self.sessions.verify_link(body["token"])
        if await is_revoked(self.ctx.redis, claims.token_id):
            raise InvalidLink("this link has been revoked", {"reason": "link_revoked"})
        signed = self.sessions.exchange(claims)
        session = signed.session
        log.info("console session for room %s", session.room)
        data = {
            "token": signed.token,
            "room_token": signed.room_token,
            "expires_at": format_time(session.expires_at),
            "clinician_id": session.clinician,
            "name": session.name,
            "room_id": session.room,
        }
        return call.ok(data, status=201)

    # -- reading --------------------------------------------------------------------------

    async def listing(self, call: Call) -> Response:
        session = _session(call)
        params = query(call.request.query_params, LIST_QUERY)
        limit, offset = params.get("limit", 100), params.get("offset", 0)
        start_max, start_max_open = params.get("date_lte"), False
        if start_max is not None and len(call.request.query_params.get("date_lte", "")) == 10:
            start_max, start_max_open = start_max + 86400.0, True
        statuses = _statuses(params["status_in"]) if "status_in" in params else None
        filters = Filters(
            clinician_id=session.clinician,
            statuses=None if statuses is None else frozenset(statuses),
            start_min=params.get("date_gte"),
            start_max=start_max,
            start_max_open=start_max_open,
        )
        page, more = await self.appointments.store.list(filters, limit=limit, offset=offset)
        rows = [
            await self.row(a, data) for a, data in zip(page, await self._present(page), strict=True)
        ]
        return paged(call, rows, limit=limit, offset=offset, total=offset + len(rows) + more)

    async def activity(self, call: Call) -> Response:
        await self._mine(call)
        return await self.appointments.activity(call)

    async def row(self, a: Appointment, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """The appointment as the console lists it: with its invitations and actions."""
        if data is None:
            data = (await self._present([a]))[0]
        invitations, _ = await self.outbox.of_appointment(a.id, limit=RECENT_INVITATIONS)
        return data | {
            "invitations": [invitation_data(i) for i in invitations],
            "actions": self.actions(a),
        }

    def actions(self, a: Appointment) -> list[str]:
        """What the console may offer on ``a`` now (the API would refuse anything else)."""
        out = []
        if a.active and a.video_link:
            try:
                route(a, None, None, self.available)
                out.append("send")
            except ApiError:
                pass  # no channel or no address: Send to patient cannot work
        if a.status in CANCELLABLE:
            out.append("cancel")
        if a.active:
            out.append("complete")
            if self.ctx.clock() > self.appointments.window(a).closes_at:
                out.append("no_show")
        return out

    async def _present(self, page: list[Appointment]) -> list[dict[str, Any]]:
        return await self.appointments.present(page)

    async def _mine(self, call: Call) -> Appointment:
        """The path's appointment, if it is the session's clinician's; else NotFound."""
        appointment = await self.appointments.store.get(call.path_id("id", "appointment"))
        _scoped(appointment, _session(call))
        return appointment

    # -- acting ---------------------------------------------------------------------------

    async def cancel(self, call: Call) -> Response:
        reason = CANCEL.validate(await call.json())["cancellation_reason"]

        async def decide(stored: Stored, now: float) -> Stored:
            return await self.appointments.cancelled(stored, reason, now, Actor.CLINICIAN)

        return await self._act(call, "cancelled", decide)

    async def complete(self, call: Call) -> Response:
        schemas.ACTION.validate(await call.json())
        return await self._act(call, "completed", self.appointments.completed)

    async def no_show(self, call: Call) -> Response:
        schemas.ACTION.validate(await call.json())
        return await self._act(call, "no_show", self.appointments.missed)

    async def _act(
        self, call: Call, action: str, decide: Callable[[Stored, float], Awaitable[Stored]]
    ) -> Response:
        session = _session(call)
        appointment_id = call.path_id("id", "appointment")

        async def scoped(stored: Stored, now: float) -> Stored:
            _scoped(stored.appointment, session)  # decided on the record as it is saved
            return await decide(stored, now)

        after = await self.appointments.apply(appointment_id, scoped, self.ctx.clock())
        log.info("appointment %s %s from the console", appointment_id, action)
        return call.ok(await self.row(after.appointment), action=action)

    async def send(self, call: Call) -> Response:
        schemas.ACTION.validate(await call.json())
        appointment = await self._mine(call)
        how, to = route(appointment, None, None, self.available)
        invitation = await self.outbox.enqueue(appointment.id, how, to)
        await self.ctx.followers.changed(appointment)
        log.info(
            "invitation %s for appointment %s queued from the console (%s)",
            invitation.id, appointment.id, how.value,
        )  # fmt: skip
        return call.ok(invitation_data(invitation), status=201)

    # -- the event stream -----------------------------------------------------------------

    async def events(self, call: Call) -> Response:
        session = _session(call)
        pubsub = subscriber(self.ctx.redis)
        channels = {
            console_channel(session.clinician): "appointment_id",
            projected_channel(session.room): "room_id",
        }
        try:
            await pubsub.subscribe(*channels)
        except BaseException:
            await pubsub.aclose()
            raise
        clock = self.ctx.clock

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 3000\n\nevent: ready\ndata: {}\n\n"
                while clock() < session.expires_at:
                    message = await pubsub.get(KEEPALIVE)
                    if message is None:
                        yield b": keep-alive\n\n"
                        continue
                    if message.kind != "message":
                        continue
                    what = channels.get(message.channel)
                    data: dict[str, str]
                    if what is None or what == "room_id":
                        data = {"room_id": str(session.room)}
                    else:
                        data = {"appointment_id": _text(message.data)}
                    yield f"event: changed\ndata: {json.dumps(data)}\n\n".encode()
            except RedisError as exc:  # the console reconnects (retry) and reads the list
                log.warning("console events: redis unavailable (%s)", type(exc).__name__)
            finally:
                await pubsub.aclose()

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def _session(call: Call) -> ConsoleSession:
    assert call.session is not None  # console operations are authenticated by a session
    return call.session


def _scoped(appointment: Appointment, session: ConsoleSession) -> None:
    """Another clinician's appointment does not exist, for this session."""
    if appointment.clinician_profile_id != session.clinician:
        raise NotFound(f"no appointment {appointment.id}", {"id": appointment.id})


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
