"""Invitations over the REST API: send the patient's join link, see what became of it
(seed 000, "Send to Patient" and "Invitations Sent").

Sending queues the invitation in the outbox (`signalling.outbox`) and answers at once with
status ``pending``; a delivery worker on some node sends it and the status becomes ``sent``,
or ``failed`` once the attempts are used up. The channel is the request's, else the
appointment's preferred one, else email; the address is the request's ``to``, else the
appointment's attendee email (email) or phone (webhook).

The address is patient data: it is stored with the invitation for delivery, but no
response carries it whole (``to_hint`` shows enough to recognise it, ``j•••@example.org``)
and no log line names it. A request with an ``Idempotency-Key`` is acted on once: a
double-clicked "Send" sends one message.

Operations (under ``/api/v1``):

    POST /appointments/{appointment_id}/invitations   send the join link         201
    GET  /appointments/{appointment_id}/invitations   the invitations, newest first, paged
    GET  /invitations/{invitation_id}                 one invitation
"""

from __future__ import annotations

import logging
import unicodedata
from typing import Any

from starlette.responses import Response

from rooms.appointments import Appointment, ContactChannel
from rooms.invitations import Invitation, InvitationStatus
from signalling.api.appointment_store import AppointmentStore
from signalling.api.context import ApiContext
from signalling.api.envelope import Call, paged
from signalling.api.errors import (
    ApiError,
    InvalidStateTransition,
    NotFound,
    ValidationFailed,
)
from signalling.api.idempotency import HEADER_PROP, Idempotency
from signalling.api.registry import Api, Operation
from signalling.api.schema import (
    DEFAULT_PAGE,
    PAGE,
    Kind,
    Prop,
    Schema,
    format_time,
    query,
)
from signalling.channels import configured
from signalling.outbox import Delivery, Outbox

log = logging.getLogger("vestibule.signalling.api.invitations")

MAX_ADDRESS_LENGTH = 254  # the longest email address SMTP carries
_CHANNELS = tuple(c.value for c in ContactChannel)
_STATUSES = tuple(s.value for s in InvitationStatus)
_NOT_IN_EMAIL = set('<>()[],;:"\\')


class NoVideoLink(ApiError):
    """The appointment has no patient join link to send (not a video appointment)."""

    status = 409
    code = "NO_VIDEO_LINK"


class NoRecipient(ApiError):
    """No address for the channel: the request has no ``to`` and the appointment none."""

    status = 409
    code = "NO_RECIPIENT"


class ChannelNotConfigured(ApiError):
    """The server has no settings for the channel (no SMTP server, no webhook URL)."""

    status = 409
    code = "CHANNEL_NOT_CONFIGURED"


# --- schemas ---------------------------------------------------------------------------------

INVITATION = Schema(
    "Invitation",
    (
        Prop("id", Kind.STRING, "The invitation id.", required=True),
        Prop("appointment_id", Kind.STRING, "The appointment whose link it sends.", required=True),
        Prop("channel", Kind.STRING, "How it is sent.", required=True, enum=_CHANNELS),
        Prop(
            "to_hint",
            Kind.STRING,
            "The address or number it goes to, masked (e.g. j•••@example.org, •••0123): "
            "enough to recognise it, never the whole of it.",
            required=True,
        ),
        Prop(
            "status",
            Kind.STRING,
            "pending: queued for delivery (or waiting to retry); sent: the channel accepted "
            "it; failed: delivery did not succeed and will not be tried again.",
            required=True,
            enum=_STATUSES,
        ),
        Prop(
            "attempts",
            Kind.INTEGER,
            "Delivery attempts made so far.",
            required=True,
            minimum=0,
        ),
        Prop("created_at", Kind.DATETIME, "When it was queued.", required=True),
        Prop(
            "next_attempt_at",
            Kind.DATETIME,
            "While pending: the earliest time of the next attempt.",
            required=True,
            nullable=True,
        ),
        Prop("sent_at", Kind.DATETIME, "When it was sent.", required=True, nullable=True),
        Prop(
            "failed_at",
            Kind.DATETIME,
            "When it was given up.",
            required=True,
            nullable=True,
        ),
        Prop(
            "last_error",
            Kind.STRING,
            "Why the last attempt failed, e.g. 'smtp: connection refused' or 'webhook: HTTP 503'.",
            required=True,
            nullable=True,
        ),
    ),
    "The patient's join link, sent through a channel, and its delivery status.",
)

NEW_INVITATION = Schema(
    "InvitationCreate",
    (
        Prop(
            "channel",
            Kind.STRING,
            "email or webhook (SMS and other gateways); default: the appointment's "
            "preferred channel, else email.",
            nullable=True,
            enum=_CHANNELS,
        ),
        Prop(
            "to",
            Kind.STRING,
            "Send here instead of the appointment's address: an email address (email) or the "
            "number or address the webhook's gateway expects.",
            nullable=True,
            max_length=MAX_ADDRESS_LENGTH,
        ),
    ),
    "Send the appointment's patient join link; the body may be empty.",
)


def invitation_data(invitation: Invitation) -> dict[str, Any]:
    """An invitation as the API returns it (schema `INVITATION`): never the address."""
    return {
        "id": invitation.id,
        "appointment_id": invitation.appointment_id,
        "channel": invitation.channel.value,
        "to_hint": invitation.to_hint,
        "status": invitation.status.value,
        "attempts": invitation.attempts,
        "created_at": format_time(invitation.created_at),
        "next_attempt_at": format_time(invitation.next_attempt_at),
        "sent_at": format_time(invitation.sent_at),
        "failed_at": format_time(invitation.failed_at),
        "last_error": invitation.last_error,
    }


# --- the rules of a send ---------------------------------------------------------------------


def address_problem(channel: ContactChannel, address: str) -> str | None:
    """Why ``address`` cannot be sent to through ``channel``, or None if it can."""
    if not address or address != address.strip():
        return "it is blank or has surrounding blanks"
    if len(address) > MAX_ADDRESS_LENGTH:
        return f"it is longer than {MAX_ADDRESS_LENGTH}"
    if any(unicodedata.category(ch).startswith("C") for ch in address):
        return "it has control characters"
    if channel is ContactChannel.EMAIL:
        local, at, domain = address.rpartition("@")
        if (
            not at
            or not local
            or not domain
            or "@" in local
            or any(ch.isspace() or ch in _NOT_IN_EMAIL for ch in address)
        ):
            return "it is not an email address"
    return None


def route(
    appointment: Appointment,
    channel: ContactChannel | None,
    to: str | None,
    available: frozenset[ContactChannel],
) -> tuple[ContactChannel, str]:
    """The channel and address an invitation for ``appointment`` goes to; raise the
    ApiError that says why it cannot be sent."""
    if not appointment.active:
        raise InvalidStateTransition(
            f"cannot send the join link of appointment {appointment.id}: it is "
            f"{appointment.status.value}",
            {"current_status": appointment.status.value, "attempted_action": "send_invitation"},
        )
    if not appointment.video_link:
        raise NoVideoLink(
            f"appointment {appointment.id} has no video link: make it a remote video "
            "appointment first",
            {"appointment_id": appointment.id},
        )
    channel = channel or appointment.preferred_channel or ContactChannel.EMAIL
    if channel not in available:
        raise ChannelNotConfigured(
            f"the {channel.value} channel is not configured on this server",
            {"channel": channel.value},
        )
    if to is not None:
        problem = address_problem(channel, to)
        if problem is not None:
            raise ValidationFailed(
                f"to cannot be used for {channel.value}: {problem}",
                {"field": "to", "problem": "format"},
            )
        return channel, to
    field = "attendee_email" if channel is ContactChannel.EMAIL else "attendee_phone"
    stored: str | None = getattr(appointment, field)
    if not stored or address_problem(channel, stored) is not None:
        raise NoRecipient(
            f"appointment {appointment.id} has no usable {field} for {channel.value}: set it "
            "or pass to",
            {"channel": channel.value, "field": field},
        )
    return channel, stored


# --- operations ------------------------------------------------------------------------------


def register(api: Api, ctx: ApiContext) -> None:
    """Add the invitation operations to ``api``."""
    appointments = AppointmentStore(ctx)
    outbox = Outbox(ctx.redis, ctx.clock)
    idempotency = Idempotency(ctx.redis)
    available = configured(ctx.settings)

    async def create(call: Call) -> Response:
        appointment_id = call.path_id("appointment_id")
        raw = await call.json()
        body = NEW_INVITATION.validate(raw)
        channel = None if body.get("channel") is None else ContactChannel(body["channel"])

        async def act() -> Response:
            appointment = await appointments.get(appointment_id)
            how, to = route(appointment, channel, body.get("to"), available)
            invitation = await outbox.enqueue(appointment.id, how, to)
            await ctx.followers.changed(appointment)
            log.info(
                "invitation %s for appointment %s queued (%s)",
                invitation.id, appointment.id, how.value,
            )  # fmt: skip
            return call.ok(invitation_data(invitation), status=201)

        key = Idempotency.key_of(call)
        if key is None:
            return await act()
        scope = {"appointment_id": appointment_id, "body": raw}
        return await idempotency.run(call, "createInvitation", key, scope, act)

    async def list_(call: Call) -> Response:
        params = query(call.request.query_params, PAGE)
        limit: int = params.get("limit", DEFAULT_PAGE)
        offset: int = params.get("offset", 0)
        appointment = await appointments.get(call.path_id("appointment_id"))
        page, total = await outbox.of_appointment(appointment.id, offset=offset, limit=limit)
        data = [invitation_data(i) for i in page]
        return paged(call, data, limit=limit, offset=offset, total=total)

    async def get(call: Call) -> Response:
        invitation_id = call.path_id("invitation_id")
        invitation = await outbox.get(invitation_id)
        if invitation is None:
            raise NotFound(f"no invitation {invitation_id}", {"invitation_id": invitation_id})
        return call.ok(invitation_data(invitation))

    path = "/appointments/{appointment_id}/invitations"
    for op in (
        Operation("POST", path, create, "Send the patient's join link", "createInvitation",
                  body=NEW_INVITATION, partial_body=True, response=INVITATION, status=201,
                  errors=(400, 401, 404, 409, 422, 503), headers=(HEADER_PROP,)),
        Operation("GET", path, list_, "List an appointment's invitations, newest first",
                  "listInvitations", query=PAGE, response=INVITATION, many=True,
                  errors=(401, 404, 422, 503)),
        Operation("GET", "/invitations/{invitation_id}", get, "Get an invitation",
                  "getInvitation", response=INVITATION, errors=(401, 404, 503)),
    ):  # fmt: skip
        api.add(op)


def delivery_worker(ctx: ApiContext, consumer: str) -> Delivery:
    """The node's delivery worker, reading appointments from the appointment store; the
    app runs `Delivery.run` for its lifetime."""
    store = AppointmentStore(ctx)

    async def lookup(appointment_id: str) -> Appointment | None:
        try:
            return await store.get(appointment_id)
        except NotFound:
            return None

    async def recorded(invitation: Invitation) -> None:
        await ctx.followers.changed(await lookup(invitation.appointment_id))

    return Delivery(ctx.redis, consumer, ctx.clock, ctx.settings, lookup, on_recorded=recorded)
