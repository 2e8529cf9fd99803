"""The schemas of ``/appointments``: they validate its requests and describe its responses
in the OpenAPI document (`to_json` gives exactly the fields of `APPOINTMENT`)."""

from __future__ import annotations

import enum
from typing import Any

from rooms.appointments import (
    ACTIVE,
    VIDEO_PROVIDER,
    Actor,
    Appointment,
    AppointmentStatus,
    Attendance,
    BookingSource,
    ContactChannel,
    RemoteChannel,
)
from rooms.booking import BookingEventKind
from rooms.events import EventKind
from rooms.roles import Role
from rooms.status import CallStatus
from signalling.api.schema import Kind, Prop, Schema, format_time

MAX_ID = 200
MAX_CAPACITY = 50


def _values(members: type[enum.Enum]) -> tuple[str, ...]:
    return tuple(str(m.value) for m in members)


STATUSES = _values(AppointmentStatus)
INITIAL = tuple(s.value for s in AppointmentStatus if s in ACTIVE)


def _ref(name: str, description: str, *, required: bool = False) -> Prop:
    return Prop(name, Kind.STRING, description, required=required, nullable=True, max_length=MAX_ID)


def _fields(*, booking: bool) -> tuple[Prop, ...]:
    """The fields a client sets: at booking (``booking``) or in an update."""
    props = [
        Prop("title", Kind.STRING, "Appointment title.", required=booking, max_length=200),
        Prop("start_time", Kind.DATETIME, "Start, ISO 8601 with a time zone.", required=booking),
        Prop("end_time", Kind.DATETIME, "End, after start_time.", required=booking),
        _ref("patient_id", "The patient's id in the clinic's system."),
        _ref(
            "clinician_profile_id",
            "The clinician's id: a video appointment is held in this clinician's persistent room.",
        ),
        _ref("appointment_type_id", "Appointment type id."),
        _ref("location_id", "Location id."),
        _ref("episode_id", "An existing episode this appointment belongs to."),
        Prop("description", Kind.STRING, "Free text.", nullable=True, max_length=5000),
        Prop(
            "is_remote",
            Kind.BOOLEAN,
            "Whether the appointment is virtual (default false). A remote appointment is "
            "over video unless remote_channel says otherwise: it gets a room and join links.",
        ),
        Prop(
            "remote_channel",
            Kind.STRING,
            "How a remote appointment takes place: video (the default when is_remote is "
            "true; a room and join links) or phone (no room). Needs is_remote.",
            nullable=True,
            enum=_values(RemoteChannel),
        ),
        Prop(
            "capacity",
            Kind.INTEGER,
            "Booked capacity: patients and guests the call holds "
            "before newcomers must ask to join (default 1).",
            minimum=1,
            maximum=MAX_CAPACITY,
        ),
        Prop(
            "attendee_name",
            Kind.STRING,
            "The attendee's name, shown in the room.",
            nullable=True,
            max_length=200,
        ),
        Prop("attendee_email", Kind.STRING, "The attendee's email.", nullable=True, max_length=320),
        Prop(
            "attendee_phone",
            Kind.STRING,
            "The attendee's phone number.",
            nullable=True,
            max_length=40,
        ),
        Prop(
            "preferred_channel",
            Kind.STRING,
            "How the patient prefers to receive the join link.",
            nullable=True,
            enum=_values(ContactChannel),
        ),
    ]
    if booking:
        props.append(Prop("status", Kind.STRING, "Initial status (default pending).", enum=INITIAL))
    return tuple(props)


CREATE = Schema("AppointmentCreate", _fields(booking=True), "A new appointment.")
UPDATE = Schema(
    "AppointmentUpdate",
    _fields(booking=False),
    "Fields to change; the status changes only through the action endpoints.",
)
CANCEL = Schema(
    "AppointmentCancel",
    (
        Prop(
            "cancellation_reason",
            Kind.STRING,
            "Why it is cancelled: leave it out, or give text (a blank one is refused).",
            nullable=True,
            max_length=1000,
        ),
        Prop(
            "cancelled_by",
            Kind.STRING,
            "Who cancels: api (the default) or clinician (from the console; a reason is "
            "then required).",
            enum=(Actor.API.value, Actor.CLINICIAN.value),
        ),
    ),
    "Optional body of a cancellation.",
)
ACTION = Schema("AppointmentAction", (), "An action takes no fields: send {} or nothing.")


def returned(
    name: str,
    kind: Kind,
    description: str,
    *,
    nullable: bool = False,
    enum: tuple[str, ...] | None = None,
) -> Prop:
    """A field every response carries (``required`` in the document)."""
    return Prop(name, kind, description, required=True, nullable=nullable, enum=enum)


def _text(name: str, description: str, *, nullable: bool = True) -> Prop:
    return returned(name, Kind.STRING, description, nullable=nullable)


APPOINTMENT = Schema(
    "Appointment",
    (
        _text("id", "Appointment id (apt_...).", nullable=False),
        _text("patient_id", "Patient id."),
        _text("clinician_profile_id", "Clinician id."),
        _text("title", "Title.", nullable=False),
        _text("description", "Free text."),
        returned("start_time", Kind.DATETIME, "Start (UTC)."),
        returned("end_time", Kind.DATETIME, "End (UTC)."),
        returned("duration_minutes", Kind.INTEGER, "Length in minutes."),
        returned("status", Kind.STRING, "Status; changed only by the actions.", enum=STATUSES),
        _text("appointment_type_id", "Appointment type id."),
        _text("location_id", "Location id."),
        returned("is_remote", Kind.BOOLEAN, "Whether the appointment is virtual."),
        returned(
            "remote_channel",
            Kind.STRING,
            "video or phone, for a remote appointment.",
            nullable=True,
            enum=_values(RemoteChannel),
        ),
        _text("video_link", "The patient's personal join link (video appointments)."),
        returned(
            "video_provider",
            Kind.STRING,
            "Who hosts the video room.",
            nullable=True,
            enum=(VIDEO_PROVIDER,),
        ),
        _text("meeting_url", "The clinician's join link (video appointments)."),
        _text("attendee_email", "Attendee's email."),
        _text("attendee_name", "Attendee's name."),
        _text("attendee_phone", "Attendee's phone number."),
        returned(
            "preferred_channel",
            Kind.STRING,
            "How the patient prefers to get the link.",
            nullable=True,
            enum=_values(ContactChannel),
        ),
        returned(
            "attendance_status",
            Kind.STRING,
            "attended once completed, no_show once marked so.",
            nullable=True,
            enum=_values(Attendance),
        ),
        _text("cancellation_reason", "Why it was cancelled."),
        returned(
            "cancelled_by",
            Kind.STRING,
            "Who cancelled it: the patient (their link or the booking page), the clinician "
            "(the console), the api, or the system.",
            nullable=True,
            enum=_values(Actor),
        ),
        returned(
            "booking_source",
            Kind.STRING,
            "How it was booked: api (POST /appointments) or booking_page (the patient, on "
            "the hosted booking page).",
            enum=_values(BookingSource),
        ),
        _text("episode_id", "Episode id."),
        returned("capacity", Kind.INTEGER, "Booked capacity of the call."),
        _text("room_id", "The video room (the clinician's persistent room)."),
        returned(
            "hold_expires_at",
            Kind.DATETIME,
            "While held: when the hold runs out unless the patient confirms it.",
            nullable=True,
        ),
        returned(
            "call_status",
            Kind.STRING,
            "The room's call status for this appointment (video appointments).",
            nullable=True,
            enum=_values(CallStatus),
        ),
        returned("created_at", Kind.DATETIME, "When it was booked."),
        returned("updated_at", Kind.DATETIME, "When it last changed."),
    ),
    "An appointment (seed 004's object, with its room and booked capacity).",
)

ACTIVITY = Schema(
    "RoomActivityEvent",
    (
        returned(
            "kind",
            Kind.STRING,
            "What happened: in the room, or to the booking (held, confirmed, expired, cancelled).",
            enum=_values(EventKind) + _values(BookingEventKind),
        ),
        returned("at", Kind.DATETIME, "When (UTC)."),
        _text("participant_id", "Whom it concerns (an opaque id, never a name)."),
        returned("role", Kind.STRING, "The participant's role.", nullable=True, enum=_values(Role)),
        _text("actor_id", "Who did it; null when the server did (a grace period ran out)."),
        returned(
            "actor",
            Kind.STRING,
            "Who acted on the booking (patient, clinician, api, system); null for the "
            "room's events.",
            nullable=True,
            enum=_values(Actor),
        ),
    ),
    "One event of the appointment: of its room (in its join window, or in one of its "
    "calls), or of its booking.",
)

LIST_QUERY = (
    Prop("limit", Kind.INTEGER, "Records per page (1-100, default 20).", minimum=1, maximum=100),
    Prop("offset", Kind.INTEGER, "Records to skip (default 0).", minimum=0),
    Prop("patient_id", Kind.STRING, "Only this patient's.", max_length=MAX_ID),
    Prop("clinician_id", Kind.STRING, "Only this clinician's.", max_length=MAX_ID),
    Prop("status", Kind.STRING, "Only this status.", enum=STATUSES),
    Prop("status_in", Kind.STRING, "Only these statuses, comma-separated.", max_length=200),
    Prop(
        "date_gte",
        Kind.DATETIME,
        "Start time on or after (ISO 8601; a date means its midnight UTC).",
    ),
    Prop(
        "date_lte",
        Kind.DATETIME,
        "Start time on or before (ISO 8601; a date means the whole of that day, UTC).",
    ),
    Prop("appointment_type_id", Kind.STRING, "Only this appointment type.", max_length=MAX_ID),
    Prop("location_id", Kind.STRING, "Only this location.", max_length=MAX_ID),
)


def to_json(a: Appointment, call_status: CallStatus | None) -> dict[str, Any]:
    """The appointment object of seed 004, with our fields; times in ISO 8601 UTC."""
    return {
        "id": a.id,
        "patient_id": a.patient_id,
        "clinician_profile_id": a.clinician_profile_id,
        "title": a.title,
        "description": a.description,
        "start_time": format_time(a.start_time),
        "end_time": format_time(a.end_time),
        "duration_minutes": a.duration_minutes,
        "status": a.status.value,
        "appointment_type_id": a.appointment_type_id,
        "location_id": a.location_id,
        "is_remote": a.is_remote,
        "remote_channel": _value(a.remote_channel),
        "video_link": a.video_link,
        "video_provider": a.video_provider,
        "meeting_url": a.meeting_url,
        "attendee_email": a.attendee_email,
        "attendee_name": a.attendee_name,
        "attendee_phone": a.attendee_phone,
        "preferred_channel": _value(a.preferred_channel),
        "attendance_status": _value(a.attendance_status),
        "cancellation_reason": a.cancellation_reason,
        "cancelled_by": _value(a.cancelled_by),
        "booking_source": a.booking_source.value,
        "episode_id": a.episode_id,
        "capacity": a.capacity,
        "room_id": a.room_id,
        "hold_expires_at": format_time(a.hold_expires_at),
        "call_status": _value(call_status),
        "created_at": format_time(a.created_at),
        "updated_at": format_time(a.updated_at),
    }


def _value(member: Any) -> Any:
    return None if member is None else member.value
