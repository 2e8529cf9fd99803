"""Appointments: a booked consultation, its status and the rules that change it (seed 004).

Pure, like the rest of `rooms`: values in, values out, time passed in. Every change returns a
new `Appointment` or raises, and a raise has changed nothing.

    AppointmentError          base; ``code`` is stable, ``details`` say what was wrong
    ├── InvalidTransition     the action does not fit the status     (invalid_state_transition)
    └── InvalidAppointment    a field breaks a rule (end before start, ...)
                                                                     (invalid_appointment)

Statuses: a booking starts *active* (pending_approval, pending, confirmed or scheduled) and
ends in one of cancelled, completed or no_show, after which its status never changes again.
A self-booking (seed 001) starts *held* instead: the patient has picked a slot and has a few
minutes to confirm it (`hold`); it is then confirmed, or it expires (``expired``), or it is
cancelled (the patient gives it up). A held appointment cannot be completed, marked a
no-show or updated, since its slot is only lent. Cancelling, completing, marking a no-show,
confirming and expiring are actions; `update` never touches the status.
A remote appointment is over video unless it names another channel (seed 000: a remote
video appointment gets its room): ``is_remote`` without a ``remote_channel`` means video, at
booking and when an update makes an appointment remote; a phone appointment names
``RemoteChannel.PHONE``.
A no-show may only be recorded once the join window is over (seed 001), because until then
the patient may still come. What the room saw (`rooms.projection.Outcome`) is applied with
`apply_outcome`, which leaves an appointment that is no longer active as it is.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, NoReturn, Protocol

from rooms.ids import AppointmentId, RoomId
from rooms.projection import Outcome

VIDEO_PROVIDER = "vestibule"


class AppointmentStatus(enum.Enum):
    PENDING_APPROVAL = "pending_approval"  # awaiting approval
    PENDING = "pending"  # awaiting confirmation
    CONFIRMED = "confirmed"
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    NO_SHOW = "no_show"  # the patient did not attend
    HELD = "held"  # a self-booked slot, held while the patient confirms
    EXPIRED = "expired"  # a hold that was not confirmed in time

    @property
    def active(self) -> bool:
        """Whether the appointment may still take place (and change status)."""
        return self in ACTIVE

    @property
    def final(self) -> bool:
        """Whether the status can never change again."""
        return self in FINAL


ACTIVE: frozenset[AppointmentStatus] = frozenset(
    {
        AppointmentStatus.PENDING_APPROVAL,
        AppointmentStatus.PENDING,
        AppointmentStatus.CONFIRMED,
        AppointmentStatus.SCHEDULED,
    }
)


FINAL: frozenset[AppointmentStatus] = frozenset(
    {
        AppointmentStatus.CANCELLED,
        AppointmentStatus.COMPLETED,
        AppointmentStatus.NO_SHOW,
        AppointmentStatus.EXPIRED,
    }
)
# What may be cancelled: an active appointment, or a hold (the patient gives it up).
CANCELLABLE = ACTIVE | {AppointmentStatus.HELD}


class Action(enum.Enum):
    """What a caller attempted, as named in an InvalidTransition."""

    CANCEL = "cancel"
    COMPLETE = "complete"
    NO_SHOW = "no_show"
    RESCHEDULE = "reschedule"
    UPDATE = "update"
    CONFIRM = "confirm"
    EXPIRE = "expire"


class BookingSource(enum.Enum):
    """How the appointment was booked."""

    API = "api"  # by the clinic's system, POST /appointments
    BOOKING_PAGE = "booking_page"  # by the patient, on the hosted booking page


class Actor(enum.Enum):
    """Who acted on a booking: named in its events and on a cancellation, never a person."""

    PATIENT = "patient"  # from the booking page or their own join link
    CLINICIAN = "clinician"  # from the console
    API = "api"  # the clinic's system, with an API key
    SYSTEM = "system"  # the server itself (a hold ran out)


class RemoteChannel(enum.Enum):
    VIDEO = "video"
    PHONE = "phone"


class ContactChannel(enum.Enum):
    """How the patient prefers to receive the join link."""

    EMAIL = "email"
    WEBHOOK = "webhook"


class Attendance(enum.Enum):
    ATTENDED = "attended"
    NO_SHOW = "no_show"


class Window(Protocol):
    """The join window as far as appointments care (`admission.window.JoinWindow` fits)."""

    @property
    def closes_at(self) -> float: ...


class AppointmentError(Exception):
    code = "appointment_error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, object] = dict(details)


class InvalidTransition(AppointmentError):
    """Raised with details ``current_status`` and ``attempted_action`` (and ``closes_at``
    when a no-show comes before the join window has closed)."""

    code = "invalid_state_transition"


class InvalidAppointment(AppointmentError):
    """Raised with details ``field`` and ``problem``."""

    code = "invalid_appointment"


@dataclass(frozen=True, slots=True)
class Appointment:
    """One appointment. Times are unix seconds; ``capacity`` is the booked capacity (how
    many patients and guests the call holds before newcomers must ask to join)."""

    id: AppointmentId
    title: str
    start_time: float
    end_time: float
    created_at: float
    updated_at: float
    status: AppointmentStatus = AppointmentStatus.PENDING
    patient_id: str | None = None
    clinician_profile_id: str | None = None
    description: str | None = None
    appointment_type_id: str | None = None
    location_id: str | None = None
    is_remote: bool = False
    remote_channel: RemoteChannel | None = None
    video_link: str | None = None  # the patient's join link
    video_provider: str | None = None
    meeting_url: str | None = None  # the clinician's join link
    attendee_email: str | None = None
    attendee_name: str | None = None
    attendee_phone: str | None = None
    preferred_channel: ContactChannel | None = None
    attendance_status: Attendance | None = None
    cancellation_reason: str | None = None
    cancelled_by: Actor | None = None
    booking_source: BookingSource = BookingSource.API
    episode_id: str | None = None
    room_id: RoomId | None = None
    capacity: int = 1
    hold_expires_at: float | None = None  # while held: when the hold runs out

    @property
    def duration_minutes(self) -> int:
        return round((self.end_time - self.start_time) / 60)

    @property
    def active(self) -> bool:
        return self.status.active

    @property
    def is_video(self) -> bool:
        """Whether the appointment takes place in a Vestibule room."""
        return self.is_remote and self.remote_channel is RemoteChannel.VIDEO

    # -- actions --------------------------------------------------------------------------

    def cancel(self, reason: str | None, now: float, by: Actor = Actor.API) -> Appointment:
        """Cancel (an active appointment, or a hold); the join links go (the caller must
        revoke them), the room stays, so its activity can still be read. A reason may be
        left out, except by the clinician (seed 001), but never be blank."""
        if self.status not in CANCELLABLE:
            self._refuse(Action.CANCEL)
        if reason is not None and not reason.strip():
            raise InvalidAppointment(
                "cancellation_reason must not be blank: leave it out instead",
                field="cancellation_reason",
                problem="blank",
            )
        if reason is None and by is Actor.CLINICIAN:
            raise InvalidAppointment(
                "a clinician must give a cancellation_reason",
                field="cancellation_reason",
                problem="required",
            )
        return replace(
            self,
            status=AppointmentStatus.CANCELLED,
            cancellation_reason=reason,
            cancelled_by=by,
            video_link=None,
            meeting_url=None,
            hold_expires_at=None,
            updated_at=now,
        )

    def confirm(self, now: float) -> Appointment:
        """The held slot, confirmed by the patient (the caller has checked the hold)."""
        if self.status is not AppointmentStatus.HELD:
            self._refuse(Action.CONFIRM)
        return replace(
            self, status=AppointmentStatus.CONFIRMED, hold_expires_at=None, updated_at=now
        )

    def attend(self, name: str, email: str, now: float) -> Appointment:
        """The held slot with the patient's name and e-mail, as they confirm it."""
        if self.status is not AppointmentStatus.HELD:
            self._refuse(Action.CONFIRM)
        return replace(self, attendee_name=name, attendee_email=email, updated_at=now)

    def expire(self, now: float) -> Appointment:
        """The hold ran out unconfirmed: the slot is free again, and what the patient had
        typed (name, e-mail) is not kept."""
        if self.status is not AppointmentStatus.HELD:
            self._refuse(Action.EXPIRE)
        return replace(
            self,
            status=AppointmentStatus.EXPIRED,
            attendee_name=None,
            attendee_email=None,
            updated_at=now,
        )

    def complete(self, now: float) -> Appointment:
        self._expect_active(Action.COMPLETE)
        return self._completed(now)

    def no_show(self, now: float, window: Window) -> Appointment:
        """Record that the patient did not come; only once ``window`` has closed."""
        self._expect_active(Action.NO_SHOW)
        if not now > window.closes_at:
            raise InvalidTransition(
                f"cannot mark appointment {self.id} as no_show: its join window is open "
                "until closes_at",
                current_status=self.status.value,
                attempted_action=Action.NO_SHOW.value,
                closes_at=window.closes_at,
            )
        return self._no_show(now)

    def apply_outcome(self, outcome: Outcome, now: float) -> Appointment:
        """Follow what the room saw, if the appointment is still active; otherwise (already
        cancelled, completed or marked) return it unchanged, so applying twice is harmless."""
        if not self.active:
            return self
        return self._completed(now) if outcome is Outcome.COMPLETED else self._no_show(now)

    # -- changes of fields ----------------------------------------------------------------

    def update(self, changes: Mapping[str, Any], now: float) -> Appointment:
        """The appointment with ``changes`` (names of `UPDATABLE` fields) applied.

        Setting ``is_remote`` to false without naming ``remote_channel`` clears the channel;
        setting it to true without one (or with ``remote_channel`` None) makes it video,
        unless it already has a channel.
        The times of an appointment that is no longer active cannot move; a held one cannot
        change at all (its slot is only lent until it is confirmed)."""
        if self.status is AppointmentStatus.HELD:
            self._refuse(Action.UPDATE)
        for name in sorted(changes):
            if name == "status":
                raise InvalidAppointment(
                    "status cannot be updated: use the cancel, complete or no_show actions",
                    field=name,
                    problem="read_only",
                )
            if name not in UPDATABLE:
                raise InvalidAppointment(
                    f"{name} cannot be updated", field=name, problem="read_only"
                )
        moved = any(
            name in changes and changes[name] != getattr(self, name)
            for name in ("start_time", "end_time")
        )
        if moved and not self.active:
            raise InvalidTransition(
                f"cannot reschedule appointment {self.id} with status {self.status.value}",
                current_status=self.status.value,
                attempted_action=Action.RESCHEDULE.value,
            )
        merged = dict(changes)
        if merged.get("is_remote") is False and "remote_channel" not in merged:
            merged["remote_channel"] = None
        updated = _remote_default(replace(self, **merged, updated_at=now))
        _check(updated)
        return updated

    def with_video(
        self, room: RoomId, *, video_link: str, meeting_url: str, now: float
    ) -> Appointment:
        """The appointment with its room and join links (patient's, clinician's)."""
        return replace(
            self,
            room_id=room,
            video_link=video_link,
            meeting_url=meeting_url,
            video_provider=VIDEO_PROVIDER,
            updated_at=now,
        )

    def without_video(self, now: float) -> Appointment:
        return replace(
            self,
            room_id=None,
            video_link=None,
            meeting_url=None,
            video_provider=None,
            updated_at=now,
        )

    # -- helpers --------------------------------------------------------------------------

    def _expect_active(self, action: Action) -> None:
        if not self.active:
            self._refuse(action)

    def _refuse(self, action: Action) -> NoReturn:
        raise InvalidTransition(
            f"cannot {action.value} appointment {self.id} with status {self.status.value}",
            current_status=self.status.value,
            attempted_action=action.value,
        )

    def _completed(self, now: float) -> Appointment:
        return replace(
            self,
            status=AppointmentStatus.COMPLETED,
            attendance_status=Attendance.ATTENDED,
            updated_at=now,
        )

    def _no_show(self, now: float) -> Appointment:
        return replace(
            self,
            status=AppointmentStatus.NO_SHOW,
            attendance_status=Attendance.NO_SHOW,
            updated_at=now,
        )


# What a booking may set, besides id, title, times and status.
OPTIONAL = frozenset(
    {
        "patient_id",
        "clinician_profile_id",
        "description",
        "appointment_type_id",
        "location_id",
        "is_remote",
        "remote_channel",
        "attendee_email",
        "attendee_name",
        "attendee_phone",
        "preferred_channel",
        "episode_id",
        "capacity",
    }
)
# What `Appointment.update` may change: never the status, the audit fields or what the
# server derives (video links, attendance).
UPDATABLE = OPTIONAL | {"title", "start_time", "end_time"}
FIELDS = frozenset(f.name for f in fields(Appointment))


def book(
    appointment_id: AppointmentId,
    *,
    title: str,
    start_time: float,
    end_time: float,
    now: float,
    status: AppointmentStatus = AppointmentStatus.PENDING,
    booking_source: BookingSource = BookingSource.API,
    **optional: Any,
) -> Appointment:
    """A new appointment; ``optional`` names fields of `OPTIONAL`. Raise InvalidAppointment
    if a field breaks a rule, naming the first one."""
    for name in sorted(optional):
        if name not in OPTIONAL:
            raise InvalidAppointment(f"{name} cannot be set", field=name, problem="unknown")
    if not status.active:
        raise InvalidAppointment(
            f"an appointment cannot be booked as {status.value}", field="status", problem="enum"
        )
    appointment = Appointment(
        appointment_id,
        title,
        start_time,
        end_time,
        created_at=now,
        updated_at=now,
        status=status,
        booking_source=booking_source,
        **optional,
    )
    _check(appointment)
    return _remote_default(appointment)


def _remote_default(a: Appointment) -> Appointment:
    """A remote appointment that names no channel is a video one."""
    if a.is_remote and a.remote_channel is None:
        return replace(a, remote_channel=RemoteChannel.VIDEO)
    return a


def hold(
    appointment_id: AppointmentId,
    *,
    clinician_id: str,
    start_time: float,
    end_time: float,
    expires_at: float,
    now: float,
    title: str = "Video consultation",
    appointment_type_id: str | None = None,
) -> Appointment:
    """A self-booked slot, held for the patient until ``expires_at``: a video appointment
    with the clinician, booked on the booking page, with no patient data yet (the patient
    gives a name and e-mail when confirming)."""
    held = Appointment(
        appointment_id, title, start_time, end_time, created_at=now, updated_at=now,
        status=AppointmentStatus.HELD, clinician_profile_id=clinician_id,
        appointment_type_id=appointment_type_id, is_remote=True,
        remote_channel=RemoteChannel.VIDEO, booking_source=BookingSource.BOOKING_PAGE,
        hold_expires_at=expires_at,
    )  # fmt: skip
    _check(held)
    if not expires_at > now:
        raise InvalidAppointment(
            "a hold must expire after it is made", field="hold_expires_at", problem="range"
        )
    return held


def _check(a: Appointment) -> None:
    if not a.title.strip():
        raise InvalidAppointment("title must not be blank", field="title", problem="blank")
    for name in ("start_time", "end_time"):
        if not math.isfinite(getattr(a, name)):
            raise InvalidAppointment(f"{name} must be finite", field=name, problem="range")
    if a.end_time <= a.start_time:
        raise InvalidAppointment(
            "end_time must be after start_time", field="end_time", problem="before_start"
        )
    if a.capacity < 1:
        raise InvalidAppointment("capacity must be at least 1", field="capacity", problem="range")
    if a.remote_channel is not None and not a.is_remote:
        raise InvalidAppointment(
            "remote_channel needs is_remote: true", field="remote_channel", problem="not_remote"
        )
