"""Availability over the REST API: a clinician's weekly windows and days off (seed 001).

A window is a weekly rule ("Mondays 09:00-11:00 in Europe/London", times in minutes since
local midnight, 540 = 09:00) with an optional slot length (the node's default when it has
none), a buffer between consecutive slots and a validity (``valid_from`` / ``valid_until``,
local dates, inclusive). It can be switched off (``active: false``) and on again; removing it
is a soft delete (``deleted_at`` set, kept for history, never bookable again). A day off
(an *exception*) takes one local date off. Patients book what these give (`booking`).

Operations (under ``/api/v1``, with an API key):

    GET    /clinicians/{clinician_id}/availability/windows                   paged
    POST   /clinicians/{clinician_id}/availability/windows                   201
    GET    /clinicians/{clinician_id}/availability/windows/{window_id}
    PATCH  /clinicians/{clinician_id}/availability/windows/{window_id}
    DELETE /clinicians/{clinician_id}/availability/windows/{window_id}       soft delete
    GET    /clinicians/{clinician_id}/availability/exceptions                paged, by date
    POST   /clinicians/{clinician_id}/availability/exceptions                201
    DELETE /clinicians/{clinician_id}/availability/exceptions/{exception_id} soft delete
"""

from __future__ import annotations

import datetime
import secrets
import unicodedata
from typing import Any

from starlette.responses import Response

from rooms.availability import (
    MAX_BUFFER_MINUTES,
    MAX_SLOT_MINUTES,
    MIN_SLOT_MINUTES,
    AvailabilityError,
    DayOff,
    ExceptionId,
    Weekday,
    Window,
    WindowId,
    new_window,
)
from signalling.api.appointment_schemas import returned
from signalling.api.availability_store import AvailabilityStore
from signalling.api.context import ApiContext
from signalling.api.envelope import Call, paged
from signalling.api.errors import ValidationFailed
from signalling.api.idempotency import HEADER_PROP, Idempotency
from signalling.api.registry import Api, Operation
from signalling.api.schema import DEFAULT_PAGE, PAGE, Kind, Prop, Schema, format_time, query

MAX_ID = 200
MAX_ZONE = 64
MAX_NOTE = 200
_DAYS = tuple(d.value for d in Weekday)


def _date(name: str, description: str, *, required: bool = False) -> Prop:
    return Prop(name, Kind.STRING, description, required=required, nullable=not required,
                max_length=10)  # fmt: skip


def _window_fields(*, creating: bool) -> tuple[Prop, ...]:
    return (
        Prop("day", Kind.STRING, "Day of the week.", required=creating, enum=_DAYS),
        Prop("start_minute", Kind.INTEGER, "Start, in minutes since local midnight (540 = 09:00).",
             required=creating, minimum=0, maximum=1439),
        Prop("end_minute", Kind.INTEGER, "End, in minutes since local midnight, after the start; "
             "at most 1440 (a window never crosses midnight).", required=creating, minimum=1,
             maximum=1440),
        Prop("time_zone", Kind.STRING, "The clinician's IANA time zone the times are in, e.g. "
             "Europe/London.", required=creating, max_length=MAX_ZONE),
        Prop("slot_minutes", Kind.INTEGER, "Slot length (the appointment type's); null: the "
             "node's default (VESTIBULE_SLOT_MINUTES).", nullable=True, minimum=MIN_SLOT_MINUTES,
             maximum=MAX_SLOT_MINUTES),
        Prop("buffer_minutes", Kind.INTEGER, "Minutes left free between consecutive slots "
             "(default 0).", minimum=0, maximum=MAX_BUFFER_MINUTES),
        Prop("appointment_type_id", Kind.STRING, "The appointment type booked in these slots.",
             nullable=True, max_length=MAX_ID),
        Prop("active", Kind.BOOLEAN, "false switches the window off without removing it "
             "(default true)."),
        _date("valid_from", "First local date it applies (YYYY-MM-DD); null: no limit."),
        _date("valid_until", "Last local date it applies (YYYY-MM-DD); null: no limit."),
    )  # fmt: skip


WINDOW = Schema(
    "AvailabilityWindow",
    (
        returned("id", Kind.STRING, "Window id (aw_...)."),
        returned("clinician_id", Kind.STRING, "Whose window."),
        returned("day", Kind.STRING, "Day of the week.", enum=_DAYS),
        returned("start_minute", Kind.INTEGER, "Start, minutes since local midnight."),
        returned("end_minute", Kind.INTEGER, "End, minutes since local midnight."),
        returned("time_zone", Kind.STRING, "IANA time zone of the times."),
        returned("slot_minutes", Kind.INTEGER, "Slot length; null: the default.", nullable=True),
        returned("slot_length_minutes", Kind.INTEGER, "The slot length that applies now."),
        returned("buffer_minutes", Kind.INTEGER, "Minutes between consecutive slots."),
        returned("appointment_type_id", Kind.STRING, "Appointment type.", nullable=True),
        returned("active", Kind.BOOLEAN, "Switched on."),
        returned("valid_from", Kind.STRING, "First local date it applies.", nullable=True),
        returned("valid_until", Kind.STRING, "Last local date it applies.", nullable=True),
        returned("created_at", Kind.DATETIME, "When it was added."),
        returned("updated_at", Kind.DATETIME, "When it last changed."),
        returned("deleted_at", Kind.DATETIME, "When it was removed (soft delete).", nullable=True),
    ),
    "A recurring weekly availability window.",
)
NEW_WINDOW = Schema("AvailabilityWindowCreate", _window_fields(creating=True), "A new window.")
WINDOW_UPDATE = Schema(
    "AvailabilityWindowUpdate", _window_fields(creating=False), "Fields to change."
)
DAY_OFF = Schema(
    "AvailabilityException",
    (
        returned("id", Kind.STRING, "Exception id (ax_...)."),
        returned("clinician_id", Kind.STRING, "Whose."),
        returned("date", Kind.STRING, "The local date taken off (YYYY-MM-DD)."),
        returned("note", Kind.STRING, "The clinic's note, e.g. training day.", nullable=True),
        returned("created_at", Kind.DATETIME, "When it was added."),
        returned("deleted_at", Kind.DATETIME, "When it was removed (soft delete).", nullable=True),
    ),
    "A date exception: no slot starts on that local date (in each window's time zone).",
)
NEW_DAY_OFF = Schema(
    "AvailabilityExceptionCreate",
    (
        _date("date", "The local date to take off (YYYY-MM-DD).", required=True),
        Prop(
            "note",
            Kind.STRING,
            "A note for the clinic (not shown to patients).",
            nullable=True,
            max_length=MAX_NOTE,
        ),
    ),
    "A day off.",
)
LIST_QUERY = (
    *PAGE,
    Prop("include_removed", Kind.STRING, "true: removed ones too (default false).",
         enum=("true", "false")),
)  # fmt: skip


def window_data(w: Window, default_minutes: int) -> dict[str, Any]:
    return {
        "id": w.id,
        "clinician_id": w.clinician_id,
        "day": w.day.value,
        "start_minute": w.start_minute,
        "end_minute": w.end_minute,
        "time_zone": w.time_zone,
        "slot_minutes": w.slot_minutes,
        "slot_length_minutes": w.slot_minutes or default_minutes,
        "buffer_minutes": w.buffer_minutes,
        "appointment_type_id": w.appointment_type_id,
        "active": w.active,
        "valid_from": None if w.valid_from is None else w.valid_from.isoformat(),
        "valid_until": None if w.valid_until is None else w.valid_until.isoformat(),
        "created_at": format_time(w.created_at),
        "updated_at": format_time(w.updated_at),
        "deleted_at": format_time(w.deleted_at),
    }


def day_off_data(d: DayOff) -> dict[str, Any]:
    return {
        "id": d.id,
        "clinician_id": d.clinician_id,
        "date": d.date.isoformat(),
        "note": d.note,
        "created_at": format_time(d.created_at),
        "deleted_at": format_time(d.deleted_at),
    }


def clinician_of(call: Call) -> str:
    """The path's clinician id: 1 to 200 characters, no control characters or surrounding
    blanks (the ids of the clinic's system)."""
    value = call.path_id("clinician_id")
    if not value or value != value.strip() or _controls(value):
        raise ValidationFailed(
            "clinician_id must have no control characters or surrounding blanks",
            {"field": "clinician_id", "problem": "format"},
        )
    return value


def parse_date(name: str, value: str | None) -> datetime.date | None:
    if value is None:
        return None
    try:
        if len(value) != 10:
            raise ValueError
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(
            f"{name} must be a date, YYYY-MM-DD", {"field": name, "problem": "format"}
        ) from None


def _controls(text: str) -> bool:
    return any(unicodedata.category(ch).startswith("C") for ch in text)


def _domain(fields: dict[str, Any]) -> dict[str, Any]:
    """Validated request fields as the domain takes them."""
    values = dict(fields)
    if "day" in values:
        values["day"] = Weekday(values["day"])
    for name in ("valid_from", "valid_until"):
        if name in values:
            values[name] = parse_date(name, values[name])
    return values


def _refused(exc: AvailabilityError) -> ValidationFailed:
    return ValidationFailed(exc.message, exc.details)


def register(api: Api, ctx: ApiContext) -> None:
    """Add the availability operations to ``api``."""
    store = AvailabilityStore(ctx.redis)
    idempotency = Idempotency(ctx.redis)
    default = ctx.settings.slot_minutes

    def listed(call: Call) -> tuple[int, int, bool]:
        params = query(call.request.query_params, LIST_QUERY)
        return params.get("limit", DEFAULT_PAGE), params.get("offset", 0), (
            params.get("include_removed") == "true"
        )  # fmt: skip

    async def list_windows(call: Call) -> Response:
        limit, offset, removed = listed(call)
        every = [
            w for w in await store.windows(clinician_of(call)) if removed or w.deleted_at is None
        ]
        page = [window_data(w, default) for w in every[offset : offset + limit]]
        return paged(call, page, limit=limit, offset=offset, total=len(every))

    async def create_window(call: Call) -> Response:
        clinician = clinician_of(call)
        body = await call.json()
        values = _domain(NEW_WINDOW.validate(body))
        try:
            window = new_window(
                WindowId("aw_" + secrets.token_hex(8)), clinician, now=ctx.clock(), **values
            )
        except AvailabilityError as exc:
            raise _refused(exc) from None

        async def act() -> Response:
            await store.add_window(window)
            return call.ok(window_data(window, default), status=201)

        key = Idempotency.key_of(call)
        if key is None:
            return await act()
        scope = {"clinician_id": clinician, "body": body}
        return await idempotency.run(call, "createAvailabilityWindow", key, scope, act)

    async def get_window(call: Call) -> Response:
        window = await store.window(clinician_of(call), call.path_id("window_id"))
        return call.ok(window_data(window, default))

    async def update_window(call: Call) -> Response:
        clinician = clinician_of(call)
        changes = _domain(WINDOW_UPDATE.validate(await call.json(), partial=True))

        def decide(w: Window) -> Window:
            try:
                return w.update(changes, ctx.clock())
            except AvailabilityError as exc:
                raise _refused(exc) from None

        window = await store.change_window(clinician, call.path_id("window_id"), decide)
        return call.ok(window_data(window, default))

    async def remove_window(call: Call) -> Response:
        clinician = clinician_of(call)
        window = await store.change_window(
            clinician, call.path_id("window_id"), lambda w: w.remove(ctx.clock())
        )
        return call.ok(window_data(window, default))

    async def list_days_off(call: Call) -> Response:
        limit, offset, removed = listed(call)
        every = [d for d in await store.days_off(clinician_of(call)) if removed or d.live]
        page = [day_off_data(d) for d in every[offset : offset + limit]]
        return paged(call, page, limit=limit, offset=offset, total=len(every))

    async def add_day_off(call: Call) -> Response:
        clinician = clinician_of(call)
        body = NEW_DAY_OFF.validate(await call.json())
        note = body.get("note")
        if note is not None and (not note.strip() or _controls(note)):
            raise ValidationFailed(
                "note must have text and no control characters",
                {"field": "note", "problem": "format"},
            )
        date = parse_date("date", body["date"])
        assert date is not None
        day = DayOff(ExceptionId("ax_" + secrets.token_hex(8)), clinician, date, ctx.clock(),
                     note=None if note is None else note.strip())  # fmt: skip
        await store.add_day_off(day)
        return call.ok(day_off_data(day), status=201)

    async def remove_day_off(call: Call) -> Response:
        day = await store.remove_day_off(
            clinician_of(call), call.path_id("exception_id"), ctx.clock()
        )
        return call.ok(day_off_data(day))

    windows = "/clinicians/{clinician_id}/availability/windows"
    one = windows + "/{window_id}"
    days = "/clinicians/{clinician_id}/availability/exceptions"
    read, write = (401, 404, 422, 503), (400, 401, 404, 422, 503)
    for op in (
        Operation("GET", windows, list_windows, "List a clinician's availability windows",
                  "listAvailabilityWindows", query=LIST_QUERY, response=WINDOW, many=True,
                  errors=read),
        Operation("POST", windows, create_window, "Add an availability window",
                  "createAvailabilityWindow", body=NEW_WINDOW, response=WINDOW, status=201,
                  errors=write, headers=(HEADER_PROP,)),
        Operation("GET", one, get_window, "Get an availability window",
                  "getAvailabilityWindow", response=WINDOW, errors=read),
        Operation("PATCH", one, update_window, "Edit an availability window, or switch it "
                  "off or on", "updateAvailabilityWindow", body=WINDOW_UPDATE,
                  partial_body=True, response=WINDOW, errors=write),
        Operation("DELETE", one, remove_window, "Remove an availability window (soft delete)",
                  "removeAvailabilityWindow", response=WINDOW, errors=read),
        Operation("GET", days, list_days_off, "List a clinician's days off, by date",
                  "listAvailabilityExceptions", query=LIST_QUERY, response=DAY_OFF, many=True,
                  errors=read),
        Operation("POST", days, add_day_off, "Take a day off", "createAvailabilityException",
                  body=NEW_DAY_OFF, response=DAY_OFF, status=201, errors=write),
        Operation("DELETE", days + "/{exception_id}", remove_day_off,
                  "Remove a day off (soft delete)", "removeAvailabilityException",
                  response=DAY_OFF, errors=read),
    ):  # fmt: skip
        api.add(op)
