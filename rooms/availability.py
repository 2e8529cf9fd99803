"""Availability: a clinician's recurring weekly windows and the days they take off (seed 001).

Pure: values in, values out, time passed in. A change returns a new value or raises, and a
raise has changed nothing.

A *window* is a weekly rule, "Mondays 09:00-11:00 in Europe/London": a day of the week, a
start and an end in minutes since local midnight (540 = 09:00; the end at most 1440, so a
window never crosses midnight: make two), the IANA time zone the times are in, the slot
length (the appointment type's, or the node's default when it names none) and an optional
buffer between consecutive slots. ``valid_from`` / ``valid_until`` (local dates, both
inclusive) limit it to a date range. It can be switched off (``active``) without deleting
it, and removing it is a soft delete (``deleted_at``): the record is kept for history, and
nothing is generated from it again.

An *exception* takes one local date off: no slot of the clinician starts on that date, in
the time zone of the window the slot comes from. Removing one is a soft delete too.

    AvailabilityError          base; ``code`` is stable, ``details`` say what was wrong
    └── InvalidAvailability    a field breaks a rule       (invalid_availability)
"""

from __future__ import annotations

import datetime
import enum
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, NewType

WindowId = NewType("WindowId", str)
ExceptionId = NewType("ExceptionId", str)

MINUTES_PER_DAY = 1440
MIN_SLOT_MINUTES = 5
MAX_SLOT_MINUTES = 480
MAX_BUFFER_MINUTES = 240


class Weekday(enum.Enum):
    MONDAY = "monday"
    TUESDAY = "tuesday"
    WEDNESDAY = "wednesday"
    THURSDAY = "thursday"
    FRIDAY = "friday"
    SATURDAY = "saturday"
    SUNDAY = "sunday"

    @property
    def index(self) -> int:
        """0 for Monday ... 6 for Sunday, as `datetime.date.weekday` counts."""
        return _DAYS.index(self)

    @classmethod
    def of(cls, day: datetime.date) -> Weekday:
        return _DAYS[day.weekday()]


_DAYS = tuple(Weekday)


class AvailabilityError(Exception):
    code = "availability_error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, object] = dict(details)


class InvalidAvailability(AvailabilityError):
    """Raised with details ``field`` and ``problem``."""

    code = "invalid_availability"


@lru_cache(maxsize=1024)
def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone ``name``; raise InvalidAvailability if there is none."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidAvailability(
            f"{name[:60]!r} is not an IANA time zone", field="time_zone", problem="unknown"
        ) from None


@dataclass(frozen=True, slots=True)
class Window:
    """One recurring weekly window. ``slot_minutes`` None takes the default slot length."""

    id: WindowId
    clinician_id: str
    day: Weekday
    start_minute: int
    end_minute: int
    time_zone: str
    created_at: float
    updated_at: float
    slot_minutes: int | None = None
    buffer_minutes: int = 0
    appointment_type_id: str | None = None
    active: bool = True
    valid_from: datetime.date | None = None
    valid_until: datetime.date | None = None
    deleted_at: float | None = None

    @property
    def bookable(self) -> bool:
        """Whether slots are generated from it (switched on and not removed)."""
        return self.active and self.deleted_at is None

    def applies_on(self, day: datetime.date) -> bool:
        """Whether the window recurs on local date ``day`` (its weekday, within validity)."""
        return (
            Weekday.of(day) is self.day
            and (self.valid_from is None or day >= self.valid_from)
            and (self.valid_until is None or day <= self.valid_until)
        )

    def update(self, changes: Mapping[str, Any], now: float) -> Window:
        """The window with ``changes`` (names of `EDITABLE` fields) applied; a removed
        window cannot change."""
        if self.deleted_at is not None:
            raise InvalidAvailability(
                f"window {self.id} has been removed", field="id", problem="removed"
            )
        for name in sorted(changes):
            if name not in EDITABLE:
                raise InvalidAvailability(
                    f"{name} cannot be changed", field=name, problem="read_only"
                )
        updated = replace(self, **changes, updated_at=now)
        _check(updated)
        return updated

    def remove(self, now: float) -> Window:
        """Soft delete: kept, never bookable again (removing twice keeps the first time)."""
        if self.deleted_at is not None:
            return self
        return replace(self, deleted_at=now, updated_at=now)


# What a window's owner sets when adding it and may change later.
EDITABLE = frozenset(
    {
        "day",
        "start_minute",
        "end_minute",
        "time_zone",
        "slot_minutes",
        "buffer_minutes",
        "appointment_type_id",
        "active",
        "valid_from",
        "valid_until",
    }
)


def new_window(
    window_id: WindowId,
    clinician_id: str,
    *,
    day: Weekday,
    start_minute: int,
    end_minute: int,
    time_zone: str,
    now: float,
    **optional: Any,
) -> Window:
    """A new window; ``optional`` names other fields of `EDITABLE`. Raise
    InvalidAvailability naming the first field that breaks a rule."""
    for name in sorted(optional):
        if name not in EDITABLE:
            raise InvalidAvailability(f"{name} cannot be set", field=name, problem="unknown")
    window = Window(
        window_id, clinician_id, day, start_minute, end_minute, time_zone,
        created_at=now, updated_at=now, **optional,
    )  # fmt: skip
    _check(window)
    return window


def _check(w: Window) -> None:
    zone(w.time_zone)
    if not 0 <= w.start_minute < MINUTES_PER_DAY:
        raise InvalidAvailability(
            "start_minute must be from 0 to 1439", field="start_minute", problem="range"
        )
    if not w.start_minute < w.end_minute <= MINUTES_PER_DAY:
        raise InvalidAvailability(
            "end_minute must be after start_minute and at most 1440 (midnight)",
            field="end_minute",
            problem="range",
        )
    if w.slot_minutes is not None:
        if not MIN_SLOT_MINUTES <= w.slot_minutes <= MAX_SLOT_MINUTES:
            raise InvalidAvailability(
                f"slot_minutes must be from {MIN_SLOT_MINUTES} to {MAX_SLOT_MINUTES}",
                field="slot_minutes",
                problem="range",
            )
        if w.slot_minutes > w.end_minute - w.start_minute:
            raise InvalidAvailability(
                "the window is shorter than one slot", field="slot_minutes", problem="too_long"
            )
    if not 0 <= w.buffer_minutes <= MAX_BUFFER_MINUTES:
        raise InvalidAvailability(
            f"buffer_minutes must be from 0 to {MAX_BUFFER_MINUTES}",
            field="buffer_minutes",
            problem="range",
        )
    if w.valid_from is not None and w.valid_until is not None and w.valid_until < w.valid_from:
        raise InvalidAvailability(
            "valid_until must not be before valid_from", field="valid_until", problem="range"
        )


@dataclass(frozen=True, slots=True)
class DayOff:
    """A date exception: no slot starts on local date ``date``."""

    id: ExceptionId
    clinician_id: str
    date: datetime.date
    created_at: float
    note: str | None = None  # the clinic's own words ("training day"), never patient data
    deleted_at: float | None = None

    @property
    def live(self) -> bool:
        return self.deleted_at is None

    def remove(self, now: float) -> DayOff:
        return self if self.deleted_at is not None else replace(self, deleted_at=now)
