"""The schemas of self-booking's public operations (`signalling.api.booking`): what the
booking page sends and gets. None of them carries another patient's data: a slot is a time,
a booking is the caller's own (named by its id and proved by its hold secret or join link)."""

from __future__ import annotations

from typing import Any

from admission.policy import MAX_NAME_LENGTH
from rooms.appointments import Appointment, AppointmentStatus, ContactChannel
from rooms.slots import Slot
from signalling.api.appointment_schemas import returned
from signalling.api.invitations import MAX_ADDRESS_LENGTH
from signalling.api.schema import Kind, Prop, Schema, format_time

MAX_SECRET = 100
MAX_TOKEN = 4096
MAX_ZONE = 64
MAX_DAYS = 31  # the longest range of one slots request
DEFAULT_DAYS = 14
HORIZON_DAYS = 366  # how far ahead slots are listed and can be held
_STATUSES = tuple(s.value for s in AppointmentStatus)
_CHANNELS = tuple(c.value for c in ContactChannel)


SLOT = Schema(
    "Slot",
    (
        returned("start_time", Kind.DATETIME, "Start (UTC)."),
        returned("end_time", Kind.DATETIME, "End (UTC)."),
        returned("duration_minutes", Kind.INTEGER, "Length in minutes."),
        returned("date", Kind.STRING, "The local date of the start in the requested time zone."),
        returned("local_time", Kind.STRING, "The local time of the start there (HH:MM)."),
        returned("utc_offset", Kind.STRING, "The offset from UTC there at the start (+01:00)."),
    ),
    "A bookable time.",
)

_BOOKING_PROPS = (
    returned("id", Kind.STRING, "The appointment id (apt_...)."),
    returned("clinician_id", Kind.STRING, "Whose calendar."),
    returned("status", Kind.STRING, "held, then confirmed, expired or cancelled.", enum=_STATUSES),
    returned("start_time", Kind.DATETIME, "Start (UTC)."),
    returned("end_time", Kind.DATETIME, "End (UTC)."),
    returned("duration_minutes", Kind.INTEGER, "Length in minutes."),
    returned(
        "hold_expires_at", Kind.DATETIME, "While held: when the hold runs out.", nullable=True
    ),
    returned("video_link", Kind.STRING, "Once confirmed: the patient's join link.", nullable=True),
    returned("cancellation_reason", Kind.STRING, "Why it was cancelled.", nullable=True),
    returned(
        "invitation_channel",
        Kind.STRING,
        "How the join link is being sent to the patient (null: it is not).",
        nullable=True,
        enum=_CHANNELS,
    ),
)
BOOKING = Schema("Booking", _BOOKING_PROPS, "The caller's own booking, as the patient sees it.")
HOLD = Schema(
    "Hold",
    (
        *_BOOKING_PROPS,
        returned(
            "hold_secret",
            Kind.STRING,
            "Proves the hold is the caller's: confirm and release need it. Keep it in memory "
            "only: never in a URL or a log. It is given once.",
        ),
    ),
    "A held slot, with the secret to confirm it.",
)

NEW_HOLD = Schema(
    "HoldCreate",
    (Prop("start_time", Kind.DATETIME, "The start of a bookable slot.", required=True),),
    "The slot to hold.",
)
CONFIRM = Schema(
    "HoldConfirm",
    (
        Prop(
            "hold_secret", Kind.STRING, "The hold's secret.", required=True, max_length=MAX_SECRET
        ),
        Prop(
            "attendee_name",
            Kind.STRING,
            "The patient's name, shown to the clinician.",
            required=True,
            max_length=MAX_NAME_LENGTH,
        ),
        Prop(
            "attendee_email",
            Kind.STRING,
            "Where the join link is sent.",
            required=True,
            max_length=MAX_ADDRESS_LENGTH,
        ),
    ),
    "Confirm a hold: the patient's name and e-mail (kept in the appointment only).",
)
RELEASE = Schema(
    "HoldRelease",
    (Prop("hold_secret", Kind.STRING, "The hold's secret.", required=True, max_length=MAX_SECRET),),
    "Give a hold up (to pick another time).",
)
LINK_CANCEL = Schema(
    "BookingCancel",
    (
        Prop(
            "token",
            Kind.STRING,
            "The token of the patient's join link (its fragment, after #).",
            required=True,
            max_length=MAX_TOKEN,
        ),
        Prop(
            "cancellation_reason",
            Kind.STRING,
            "Why (optional; a blank one is refused).",
            nullable=True,
            max_length=1000,
        ),
    ),
    "Cancel an appointment from the patient's own join link.",
)
SLOTS_QUERY = (
    Prop("from", Kind.STRING, "First local date (YYYY-MM-DD; default today there).",
         max_length=10),
    Prop("to", Kind.STRING, f"Last local date, inclusive (default {DEFAULT_DAYS - 1} days "
         f"after from; at most {MAX_DAYS - 1}).", max_length=10),
    Prop("time_zone", Kind.STRING, "The IANA time zone the dates and local times are in "
         "(default UTC): the patient's own.", max_length=MAX_ZONE),
)  # fmt: skip


def slot_data(slot: Slot, local: Any) -> dict[str, Any]:
    """A slot (schema `SLOT`); ``local`` is its start as an aware local datetime."""
    return {
        "start_time": format_time(slot.start),
        "end_time": format_time(slot.end),
        "duration_minutes": round((slot.end - slot.start) / 60),
        "date": local.date().isoformat(),
        "local_time": local.strftime("%H:%M"),
        "utc_offset": _offset(local.strftime("%z")),
    }


def booking_data(a: Appointment, channel: ContactChannel | None = None) -> dict[str, Any]:
    """The booking as the patient sees it (schema `BOOKING`): no meeting_url (the
    clinician's link), no names."""
    return {
        "id": a.id,
        "clinician_id": a.clinician_profile_id,
        "status": a.status.value,
        "start_time": format_time(a.start_time),
        "end_time": format_time(a.end_time),
        "duration_minutes": a.duration_minutes,
        "hold_expires_at": format_time(a.hold_expires_at),
        "video_link": a.video_link,
        "cancellation_reason": a.cancellation_reason,
        "invitation_channel": None if channel is None else channel.value,
    }


def _offset(z: str) -> str:
    """``+0100`` as ``+01:00`` (seconds, of old local mean times, are dropped)."""
    return f"{z[:3]}:{z[3:5]}"
