"""Slots: the bookable times a clinician's availability gives over a range (seed 001).

Pure: the windows, the days off, the range and the time are all parameters.

How a window's slots are laid out, on each local date it recurs on (`Window.applies_on`) that
is not a day off: the k-th slot starts at the wall-clock time ``start_minute + k * (slot
length + buffer)`` of that local date, in the window's time zone, and lasts the slot length in
real time. Only slots whose wall-clock start plus the length stays within ``end_minute`` are
laid out, and only those that end, in real time, by the window's end. So a 09:00 window
starts at 09:00 local time on both sides of a daylight-saving change. Around a change:

- **Skipped local times** (clocks go forward): a slot whose start falls in the skipped hour
  does not exist. It is left out, never moved. A window end that falls in it means the
  moment the clocks jump.
- **Repeated local times** (clocks go back): a wall-clock time that happens twice means its
  *first* occurrence (``fold=0``), for slot starts and window ends alike; the second pass
  through the repeated hour has no slots of its own.

Slots of one clinician never overlap: where two slots do (two windows that overlap, or a
slot right after skipped time that starts inside the one before it), the one that starts
later (then: of the window with the greater id) is left out.

`free` then keeps the slots that start at least ``notice`` seconds after ``now`` and overlap
no busy interval (appointments, live holds). Buffers are the gaps between one window's
consecutive slots; they are not added around busy intervals.
"""

from __future__ import annotations

import bisect
import datetime
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from rooms.availability import DayOff, Window, WindowId, zone

UTC = datetime.UTC
ONE_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Slot:
    """A bookable time: unix seconds ``start`` (inclusive) to ``end`` (exclusive)."""

    start: float
    end: float
    window_id: WindowId

    def overlaps(self, start: float, end: float) -> bool:
        return self.start < end and start < self.end


@dataclass(frozen=True, slots=True)
class Busy:
    """A time that is taken: unix seconds ``start`` to ``end``."""

    start: float
    end: float


def generate(
    windows: Iterable[Window],
    days_off: Iterable[DayOff],
    *,
    start: float,
    end: float,
    default_minutes: int,
) -> list[Slot]:
    """Every slot of the bookable ``windows`` that starts in ``[start, end)``, by start time,
    none overlapping another; ``default_minutes`` is the length of a window's slots that
    names none. The live ``days_off`` are left out."""
    off = {d.date for d in days_off if d.live}
    laid = sorted(
        (
            slot
            for w in windows
            if w.bookable
            for slot in _window_slots(w, off, start, end, default_minutes)
        ),
        key=lambda s: (s.start, s.window_id),
    )
    kept: list[Slot] = []
    for slot in laid:
        if not kept or slot.start >= kept[-1].end:
            kept.append(slot)
    return kept


def free(slots: Iterable[Slot], busy: Iterable[Busy], *, now: float, notice: float) -> list[Slot]:
    """The ``slots`` that start ``notice`` seconds after ``now`` or later and overlap none of
    ``busy``, in their order."""
    starts, ends = _merged(busy)
    out = []
    for slot in slots:
        if slot.start < now + notice:
            continue
        # The last merged busy interval that starts before the slot ends overlaps it iff it
        # ends after the slot starts (they are disjoint and sorted, so no earlier one can).
        i = bisect.bisect_left(starts, slot.end) - 1
        if i >= 0 and ends[i] > slot.start:
            continue
        out.append(slot)
    return out


def resolve(day: datetime.date, minute: int, time_zone: str) -> float | None:
    """The unix time at which the clock in ``time_zone`` first reads ``minute`` minutes past
    midnight of local date ``day``; None if it never does (the time is skipped)."""
    tz = zone(time_zone)
    naive = datetime.datetime.combine(day, datetime.time()) + datetime.timedelta(minutes=minute)
    moment = naive.replace(tzinfo=tz).timestamp()  # fold=0: the first of repeated times
    if datetime.datetime.fromtimestamp(moment, tz).replace(tzinfo=None) != naive:
        return None
    return moment


def _passed(day: datetime.date, minute: int, time_zone: str) -> float:
    """The first unix time at which the clock has reached that wall time: the time itself,
    or, if it is skipped, the moment the clock jumps past it."""
    moment = resolve(day, minute, time_zone)
    if moment is not None:
        return moment
    tz = zone(time_zone)
    naive = datetime.datetime.combine(day, datetime.time()) + datetime.timedelta(minutes=minute)
    # In a gap, fold=1 reads the time with the offset after the change (an instant before
    # the jump) and fold=0 with the offset before (after it): the jump lies between.
    low = naive.replace(tzinfo=tz, fold=1).timestamp()
    high = naive.replace(tzinfo=tz, fold=0).timestamp()
    low, high = min(low, high), max(low, high)
    while high - low > 1.0:
        middle = (low + high) // 2
        if datetime.datetime.fromtimestamp(middle, tz).replace(tzinfo=None) >= naive:
            high = middle
        else:
            low = middle
    return high


def _window_slots(
    w: Window, off: set[datetime.date], start: float, end: float, default_minutes: int
) -> Iterator[Slot]:
    length = w.slot_minutes or default_minutes
    step = length + w.buffer_minutes
    tz = zone(w.time_zone)
    # Every local date whose wall-clock day can reach into [start, end), with a day's margin.
    day = datetime.datetime.fromtimestamp(start, tz).date() - ONE_DAY
    last = datetime.datetime.fromtimestamp(end, tz).date() + ONE_DAY
    while day <= last:
        if w.applies_on(day) and day not in off:
            closes = _passed(day, w.end_minute, w.time_zone)
            minute = w.start_minute
            while minute + length <= w.end_minute:
                at = resolve(day, minute, w.time_zone)
                if at is not None and at + length * 60 <= closes and start <= at < end:
                    yield Slot(at, at + length * 60.0, w.id)
                minute += step
        day += ONE_DAY


def _merged(busy: Iterable[Busy]) -> tuple[list[float], list[float]]:
    """The busy intervals merged into disjoint ones: their starts and ends, sorted."""
    starts: list[float] = []
    ends: list[float] = []
    for b in sorted(busy, key=lambda b: b.start):
        if b.end <= b.start:
            continue
        if ends and b.start <= ends[-1]:
            ends[-1] = max(ends[-1], b.end)
        else:
            starts.append(b.start)
            ends.append(b.end)
    return starts, ends
