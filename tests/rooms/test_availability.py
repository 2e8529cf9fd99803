"""Availability windows and days off (rooms.availability): the rules a window keeps, edits,
switching off and soft deletes."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from rooms.availability import (
    DayOff,
    ExceptionId,
    InvalidAvailability,
    Weekday,
    Window,
    WindowId,
    new_window,
    zone,
)

T0 = 1_000_000.0
W = WindowId("aw_1")


def make(**fields: Any) -> Window:
    values: dict[str, Any] = {
        "day": Weekday.MONDAY,
        "start_minute": 540,
        "end_minute": 660,
        "time_zone": "Europe/London",
    } | fields
    return new_window(W, "cli_1", now=T0, **values)


def test_a_new_window_with_its_defaults() -> None:
    w = make()
    assert (w.day, w.start_minute, w.end_minute, w.time_zone) == (
        Weekday.MONDAY,
        540,
        660,
        "Europe/London",
    )
    assert w.slot_minutes is None
    assert w.buffer_minutes == 0
    assert w.bookable
    assert w.created_at == w.updated_at == T0
    assert w.valid_from is w.valid_until is None
    assert w.deleted_at is None


def test_weekdays_count_as_dates_do() -> None:
    assert [d.index for d in Weekday] == list(range(7))
    assert Weekday.of(datetime.date(2026, 6, 1)) is Weekday.MONDAY
    assert Weekday.of(datetime.date(2026, 6, 7)) is Weekday.SUNDAY


def test_applies_on_its_weekday_within_validity() -> None:
    w = make(valid_from=datetime.date(2026, 6, 8), valid_until=datetime.date(2026, 6, 15))
    assert not w.applies_on(datetime.date(2026, 6, 1))
    assert w.applies_on(datetime.date(2026, 6, 8))
    assert not w.applies_on(datetime.date(2026, 6, 9))  # a Tuesday
    assert w.applies_on(datetime.date(2026, 6, 15))
    assert not w.applies_on(datetime.date(2026, 6, 22))


@pytest.mark.parametrize(
    ("fields", "field", "problem"),
    [
        ({"time_zone": "Mars/Olympus"}, "time_zone", "unknown"),
        ({"time_zone": "../etc/passwd"}, "time_zone", "unknown"),
        ({"start_minute": -1}, "start_minute", "range"),
        ({"start_minute": 1440, "end_minute": 1440}, "start_minute", "range"),
        ({"end_minute": 540}, "end_minute", "range"),
        ({"end_minute": 1441}, "end_minute", "range"),
        ({"slot_minutes": 4}, "slot_minutes", "range"),
        ({"slot_minutes": 481}, "slot_minutes", "range"),
        ({"slot_minutes": 121}, "slot_minutes", "too_long"),
        ({"buffer_minutes": -5}, "buffer_minutes", "range"),
        ({"buffer_minutes": 241}, "buffer_minutes", "range"),
        (
            {"valid_from": datetime.date(2026, 6, 2), "valid_until": datetime.date(2026, 6, 1)},
            "valid_until",
            "range",
        ),
        ({"deleted_at": T0}, "deleted_at", "unknown"),
    ],
)
def test_a_window_that_breaks_a_rule_is_refused(
    fields: dict[str, Any], field: str, problem: str
) -> None:
    with pytest.raises(InvalidAvailability) as info:
        make(**fields)
    assert info.value.details == {"field": field, "problem": problem}
    assert info.value.code == "invalid_availability"
    assert info.value.message == str(info.value)


def test_a_whole_day_window_and_a_slot_as_long_as_the_window() -> None:
    assert make(start_minute=0, end_minute=1440).end_minute == 1440
    assert make(slot_minutes=120).slot_minutes == 120


def test_edits_are_checked_and_switching_off_keeps_the_window() -> None:
    w = make()
    moved = w.update({"start_minute": 600, "buffer_minutes": 10}, T0 + 5)
    assert (moved.start_minute, moved.buffer_minutes, moved.updated_at) == (600, 10, T0 + 5)
    off = moved.update({"active": False}, T0 + 6)
    assert not off.bookable
    assert off.deleted_at is None
    assert off.update({"active": True}, T0 + 7).bookable
    with pytest.raises(InvalidAvailability) as info:
        w.update({"end_minute": 500}, T0)
    assert info.value.details == {"field": "end_minute", "problem": "range"}
    for name in ("id", "clinician_id", "created_at", "deleted_at"):
        with pytest.raises(InvalidAvailability) as info:
            w.update({name: None}, T0)
        assert info.value.details == {"field": name, "problem": "read_only"}


def test_removing_is_a_soft_delete_once() -> None:
    w = make()
    removed = w.remove(T0 + 10)
    assert removed.deleted_at == T0 + 10
    assert not removed.bookable
    assert removed.start_minute == w.start_minute  # kept for history
    assert removed.remove(T0 + 20) is removed
    with pytest.raises(InvalidAvailability) as info:
        removed.update({"active": True}, T0 + 30)
    assert info.value.details == {"field": "id", "problem": "removed"}


def test_a_day_off_is_removed_once() -> None:
    off = DayOff(ExceptionId("ax_1"), "cli_1", datetime.date(2026, 12, 25), created_at=T0)
    assert off.live
    gone = off.remove(T0 + 1)
    assert not gone.live
    assert gone.remove(T0 + 2) is gone


def test_zones_are_looked_up_once() -> None:
    assert zone("Asia/Tokyo") is zone("Asia/Tokyo")
    assert str(zone("UTC")) == "UTC"
