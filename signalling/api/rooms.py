"""Rooms and join links over the REST API (seeds 000 and 003).

A clinician's persistent room is made on first use; ad-hoc rooms (no appointment) and
rooms personalised for one client, with a title, are made on request. A room hands out join
links: a *general* link lets anyone in who types a name, a *patient* link is personal, a
*clinician* link is the host's. No account is needed to use one: the link is the key.

A link can be revoked (refused at ``hello`` from then on) or regenerated (revoked, and a
fresh one issued for the same person); once past ``expires_at`` its status reads
``expired`` and it needs regenerating. The records live in Redis through `Links`.

Operations (under ``/api/v1``):

    POST /rooms                           an ad-hoc or personalised room     201
    GET  /rooms/{room_id}                 one room
    GET  /clinicians/{clinician_id}/room  the clinician's persistent room
    POST /rooms/{room_id}/links           issue a link                       201
    GET  /rooms/{room_id}/links           the room's links, oldest first, paged
    GET  /links/{link_id}                 one link, with its status now
    POST /links/{link_id}/revoke          revoke (idempotent)
    POST /links/{link_id}/regenerate      revoke and issue a replacement     201
"""

from __future__ import annotations

import unicodedata
from typing import Any

from starlette.responses import Response

from admission.errors import InvalidName
from admission.policy import MAX_NAME_LENGTH, display_name
from rooms.ids import AppointmentId
from rooms.roles import Role
from signalling.api.context import ApiContext
from signalling.api.envelope import Call, paged
from signalling.api.errors import ValidationFailed
from signalling.api.links import Link, LinkKind, Links, RoomKind, RoomRecord
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

MAX_ID_LENGTH = 200  # ids from the clinic's systems, and the path parameters' bound
MAX_TITLE_LENGTH = 200
MIN_LINK_LIFETIME = 60
MAX_LINK_LIFETIME = 90 * 86400
DEFAULT_LINK_LIFETIME = 30 * 86400
MAX_LINK_CAPACITY = 50

_ROOM_KINDS = tuple(k.value for k in RoomKind)
_LINK_KINDS = tuple(k.value for k in LinkKind)
_STATUSES = ("active", "expired", "revoked")

# --- schemas ---------------------------------------------------------------------------------

ROOM = Schema(
    "Room",
    (
        Prop("id", Kind.STRING, "The room id.", required=True),
        Prop(
            "kind",
            Kind.STRING,
            "clinician: the clinician's persistent room; adhoc: a room without an "
            "appointment; personal: a room personalised for one client.",
            required=True,
            enum=_ROOM_KINDS,
        ),
        Prop(
            "title",
            Kind.STRING,
            "The title the clinic gave the room.",
            required=True,
            nullable=True,
            max_length=MAX_TITLE_LENGTH,
        ),
        Prop("clinician_id", Kind.STRING, "Whose room.", required=True, nullable=True),
        Prop(
            "patient_id",
            Kind.STRING,
            "The client a personal room is for.",
            required=True,
            nullable=True,
        ),
        Prop("created_at", Kind.DATETIME, "When the room was made.", required=True),
    ),
    "A video room.",
)

LINK = Schema(
    "JoinLink",
    (
        Prop("id", Kind.STRING, "The link id.", required=True),
        Prop("room_id", Kind.STRING, "The room the link opens.", required=True),
        Prop(
            "kind",
            Kind.STRING,
            "patient: personal to one client; general: anyone with the link, who types a "
            "name; clinician: the host's.",
            required=True,
            enum=_LINK_KINDS,
        ),
        Prop(
            "url",
            Kind.STRING,
            "The join URL to copy or send; the token is in its fragment.",
            required=True,
        ),
        Prop(
            "status",
            Kind.STRING,
            "active; expired (past expires_at: regenerate it); revoked.",
            required=True,
            enum=_STATUSES,
        ),
        Prop(
            "patient_id",
            Kind.STRING,
            "The client of a patient link.",
            required=True,
            nullable=True,
        ),
        Prop(
            "name",
            Kind.STRING,
            "The display name the link carries (else the person types one).",
            required=True,
            nullable=True,
        ),
        Prop(
            "appointment_id",
            Kind.STRING,
            "The appointment the link is for.",
            required=True,
            nullable=True,
        ),
        Prop(
            "capacity",
            Kind.INTEGER,
            "Booked capacity of the call a clinician link starts.",
            required=True,
            nullable=True,
        ),
        Prop("created_at", Kind.DATETIME, "When the link was issued.", required=True),
        Prop("expires_at", Kind.DATETIME, "When the link stops working.", required=True),
        Prop(
            "revoked_at",
            Kind.DATETIME,
            "When the link was revoked (or regenerated).",
            required=True,
            nullable=True,
        ),
    ),
    "A join link: no account needed, the link is the key.",
)

NEW_ROOM = Schema(
    "RoomCreate",
    (
        Prop(
            "title",
            Kind.STRING,
            "A title to find the room by, e.g. the client's name.",
            max_length=MAX_TITLE_LENGTH,
        ),
        Prop("clinician_id", Kind.STRING, "Whose room.", max_length=MAX_ID_LENGTH),
        Prop(
            "patient_id",
            Kind.STRING,
            "Makes the room personal to this client; without it the room is ad hoc.",
            max_length=MAX_ID_LENGTH,
        ),
    ),
    "An ad-hoc room, or a personalised one when patient_id is given.",
)

_EXPIRES_IN = (MIN_LINK_LIFETIME, MAX_LINK_LIFETIME)

NEW_LINK = Schema(
    "JoinLinkCreate",
    (
        Prop("kind", Kind.STRING, "Who the link is for.", required=True, enum=_LINK_KINDS),
        Prop(
            "patient_id",
            Kind.STRING,
            "The client (required for patient links, refused for the others).",
            max_length=MAX_ID_LENGTH,
        ),
        Prop(
            "name",
            Kind.STRING,
            "Display name carried by a patient or clinician link (a general-link guest types one).",
            max_length=MAX_NAME_LENGTH,
        ),
        Prop(
            "appointment_id",
            Kind.STRING,
            "The appointment the link is for.",
            max_length=MAX_ID_LENGTH,
        ),
        Prop(
            "expires_in",
            Kind.INTEGER,
            f"Seconds until the link expires (default {DEFAULT_LINK_LIFETIME}, 30 days).",
            minimum=_EXPIRES_IN[0],
            maximum=_EXPIRES_IN[1],
        ),
        Prop(
            "capacity",
            Kind.INTEGER,
            "Booked capacity of the call (clinician links only).",
            minimum=1,
            maximum=MAX_LINK_CAPACITY,
        ),
    ),
    "A join link to issue.",
)

REGENERATE = Schema(
    "JoinLinkRegenerate",
    (
        Prop(
            "expires_in",
            Kind.INTEGER,
            "Seconds until the new link expires (default: the old link's lifetime).",
            minimum=_EXPIRES_IN[0],
            maximum=_EXPIRES_IN[1],
        ),
    ),
    "Options for the replacement link; the body may be empty.",
)


# --- responses -------------------------------------------------------------------------------


def room_data(room: RoomRecord) -> dict[str, Any]:
    """A room as the API returns it (schema `ROOM`)."""
    return {
        "id": room.id,
        "kind": room.kind.value,
        "title": room.title,
        "clinician_id": room.clinician_id,
        "patient_id": room.patient_id,
        "created_at": format_time(room.created_at),
    }


def link_data(link: Link, now: float) -> dict[str, Any]:
    """A link as the API returns it (schema `LINK`), its status as of ``now``."""
    return {
        "id": link.id,
        "room_id": link.room,
        "kind": link.kind.value,
        "url": link.url,
        "status": link.status(now),
        # A clinician link's subject is the clinician, not a patient.
        "patient_id": link.subject if link.kind is LinkKind.PATIENT else None,
        "name": link.name,
        "appointment_id": link.appointment,
        "capacity": link.capacity,
        "created_at": format_time(link.created_at),
        "expires_at": format_time(link.expires_at),
        "revoked_at": format_time(link.revoked_at),
    }


# --- checks beyond the schemas ---------------------------------------------------------------


def _refuse(name: str, problem: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, {"field": name, "problem": problem})


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch).startswith("C") for ch in text)


def _ident(name: str, value: str | None) -> str | None:
    """An id from the clinic's systems: 1 to 200 characters, no control characters, no
    surrounding blanks (``" p1"`` and ``"p1"`` would silently be two people)."""
    if value is None:
        return None
    if len(value) > MAX_ID_LENGTH:
        raise _refuse(name, "too_long", f"{name} is longer than {MAX_ID_LENGTH}")
    if not value or value != value.strip() or _has_control(value):
        raise _refuse(
            name,
            "format",
            f"{name} must be 1 to {MAX_ID_LENGTH} characters without control characters or "
            "surrounding blanks",
        )
    return value


def _title(value: str | None) -> str | None:
    if value is None:
        return None
    title = value.strip()
    if not title or _has_control(title):
        raise _refuse("title", "format", "title must have text and no control characters")
    return title


def _name(value: str | None) -> str | None:
    """The display name, normalised as the protocol normalises a typed one."""
    if value is None:
        return None
    try:
        return display_name(Role.PATIENT, None, value)
    except InvalidName as exc:
        raise _refuse("name", "format", exc.message) from None


# --- operations ------------------------------------------------------------------------------


def register(api: Api, ctx: ApiContext) -> None:
    """Add the room and link operations to ``api``."""
    links = Links(ctx)

    async def create_room(call: Call) -> Response:
        body = NEW_ROOM.validate(await call.json())
        title = _title(body.get("title"))
        clinician = _ident("clinician_id", body.get("clinician_id"))
        patient = _ident("patient_id", body.get("patient_id"))
        kind = RoomKind.ADHOC if patient is None else RoomKind.PERSONAL
        room = await links.create_room(
            kind, title=title, clinician_id=clinician, patient_id=patient
        )
        return call.ok(room_data(room), status=201)

    async def get_room(call: Call) -> Response:
        return call.ok(room_data(await links.room(call.path_id("room_id"))))

    async def clinician_room(call: Call) -> Response:
        clinician = _ident("clinician_id", call.request.path_params["clinician_id"])
        assert clinician is not None
        return call.ok(room_data(await links.clinician_room(clinician)))

    async def create_link(call: Call) -> Response:
        body = NEW_LINK.validate(await call.json())
        room = await links.room(call.path_id("room_id"))
        kind = LinkKind(body["kind"])
        patient = _ident("patient_id", body.get("patient_id"))
        name = _name(body.get("name"))
        appointment = _ident("appointment_id", body.get("appointment_id"))
        capacity: int | None = body.get("capacity")
        if kind is LinkKind.PATIENT:
            if patient is None:
                raise _refuse("patient_id", "required", "a patient link needs patient_id")
            if room.patient_id is not None and patient != room.patient_id:
                # A personalised room belongs to its client: a link for someone else would
                # send them into another client's room.
                raise _refuse(
                    "patient_id",
                    "mismatch",
                    f"room {room.id} is personal to another client: use a general link or "
                    "another room",
                )
        elif patient is not None:
            raise _refuse("patient_id", "not_allowed", f"a {kind.value} link has no patient_id")
        if kind is LinkKind.GENERAL and name is not None:
            raise _refuse("name", "not_allowed", "a general-link guest types their own name")
        if kind is not LinkKind.CLINICIAN and capacity is not None:
            raise _refuse("capacity", "not_allowed", "only a clinician link sets capacity")
        link = await links.issue(
            room.id,
            kind,
            subject=patient if kind is LinkKind.PATIENT else room.clinician_id,
            name=name,
            appointment=AppointmentId(appointment) if appointment is not None else None,
            capacity=capacity,
            lifetime=float(body.get("expires_in", DEFAULT_LINK_LIFETIME)),
        )
        return call.ok(link_data(link, ctx.clock()), status=201)

    async def list_links(call: Call) -> Response:
        params = query(call.request.query_params, PAGE)
        limit: int = params.get("limit", DEFAULT_PAGE)
        offset: int = params.get("offset", 0)
        room = await links.room(call.path_id("room_id"))
        every = await links.of_room(room.id)
        now = ctx.clock()
        page = [link_data(link, now) for link in every[offset : offset + limit]]
        return paged(call, page, limit=limit, offset=offset, total=len(every))

    async def get_link(call: Call) -> Response:
        link = await links.get(call.path_id("link_id"))
        return call.ok(link_data(link, ctx.clock()))

    async def revoke_link(call: Call) -> Response:
        link = await links.revoke(call.path_id("link_id"))
        return call.ok(link_data(link, ctx.clock()))

    async def regenerate_link(call: Call) -> Response:
        body = REGENERATE.validate(await call.json())
        old = await links.get(call.path_id("link_id"))
        lifetime = body.get("expires_in")
        if lifetime is None:
            # The same lifetime as the old link, within the bounds a request may ask for
            # (links issued elsewhere, e.g. for an appointment, may have had any).
            lifetime = min(
                max(old.expires_at - old.created_at, MIN_LINK_LIFETIME), MAX_LINK_LIFETIME
            )
        link = await links.regenerate(old.id, float(lifetime))
        return call.ok(link_data(link, ctx.clock()), status=201)

    read, lookup = (401, 404, 503), (401, 404, 422, 503)
    for op in (
        Operation("POST", "/rooms", create_room, "Make an ad-hoc or personalised room",
                  "createRoom", body=NEW_ROOM, partial_body=True, response=ROOM, status=201,
                  errors=(400, 401, 422, 503)),
        Operation("GET", "/rooms/{room_id}", get_room, "Get a room", "getRoom",
                  response=ROOM, errors=read),
        Operation("GET", "/clinicians/{clinician_id}/room", clinician_room,
                  "Get the clinician's persistent room (made on first use)", "getClinicianRoom",
                  response=ROOM),
        Operation("POST", "/rooms/{room_id}/links", create_link, "Issue a join link",
                  "createLink", body=NEW_LINK, response=LINK, status=201,
                  errors=(400, *lookup)),
        Operation("GET", "/rooms/{room_id}/links", list_links,
                  "List a room's join links, oldest first", "listRoomLinks", query=PAGE,
                  response=LINK, many=True, errors=lookup),
        Operation("GET", "/links/{link_id}", get_link, "Get a join link and its status",
                  "getLink", response=LINK, errors=read),
        Operation("POST", "/links/{link_id}/revoke", revoke_link,
                  "Revoke a join link (idempotent)", "revokeLink", response=LINK, errors=read),
        Operation("POST", "/links/{link_id}/regenerate", regenerate_link,
                  "Revoke a join link and issue its replacement", "regenerateLink",
                  body=REGENERATE, partial_body=True, response=LINK, status=201,
                  errors=(400, *lookup)),
    ):  # fmt: skip
        api.add(op)
