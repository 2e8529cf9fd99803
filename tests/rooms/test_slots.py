"""Slot generation (rooms.slots): examples, then a property test over every time zone.

The property test walks every zone of `zoneinfo.available_timezones()` in sorted order, finds
its UTC-offset changes in 2025-2027 (daily samples, then bisection to the second), and lays
out windows on the local days of each change: one placed across the change's wall-clock time,
others anywhere in the day. Hypothesis picks the windows' times, lengths, buffers, validity
and days off; the walk over zones and changes is fixed, so every zone is covered in every
example. The invariants are checked from first principles (wall-clock arithmetic on
`datetime`), not by re-running the generator's own steps.
"""

from __future__ import annotations

import datetime
import functools
import itertools
import zoneinfo
from collections import Counter
from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rooms.availability import DayOff, ExceptionId, Weekday, Window, WindowId, new_window
from rooms.slots import Busy, Slot, free, generate, resolve

UTC = datetime.UTC
T0 = 1_700_000_000.0
DEFAULT = 30


def window(
    day: Weekday, start: int, end: int, tz: str = "Europe/London", wid: str = "w1", **kw: object
) -> Window:
    return new_window(
        WindowId(wid), "cli_1", day=day, start_minute=start, end_minute=end, time_zone=tz,
        now=T0, **kw,
    )  # fmt: skip


def at(text: str, tz: str) -> float:
    """A local wall time (first occurrence) as unix seconds."""
    return datetime.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(tz)).timestamp()


def local(slots: list[Slot], tz: str) -> list[str]:
    z = zoneinfo.ZoneInfo(tz)
    return [datetime.datetime.fromtimestamp(s.start, z).strftime("%Y-%m-%d %H:%M%z") for s in slots]


def span(first: str, last: str, tz: str = "UTC") -> dict[str, float]:
    """The range from local midnight of ``first`` to local midnight after ``last``."""
    end = datetime.date.fromisoformat(last) + datetime.timedelta(days=1)
    return {"start": at(first, tz), "end": at(end.isoformat(), tz)}


# --- examples -----------------------------------------------------------------------------


def test_a_window_is_cut_into_slots_with_buffers() -> None:
    w = window(Weekday.MONDAY, 540, 660, slot_minutes=25, buffer_minutes=5)  # 09:00-11:00
    slots = generate([w], [], **span("2026-06-01", "2026-06-07"), default_minutes=DEFAULT)
    assert local(slots, "Europe/London") == [
        "2026-06-01 09:00+0100",
        "2026-06-01 09:30+0100",
        "2026-06-01 10:00+0100",
        "2026-06-01 10:30+0100",
    ]
    assert all(s.end - s.start == 25 * 60 for s in slots)


def test_the_default_length_applies_and_a_last_slot_that_does_not_fit_is_left_out() -> None:
    w = window(Weekday.TUESDAY, 540, 640)  # 09:00-10:40, 30-minute default
    slots = generate([w], [], **span("2026-06-02", "2026-06-02"), default_minutes=DEFAULT)
    assert local(slots, "Europe/London") == [
        "2026-06-02 09:00+0100",
        "2026-06-02 09:30+0100",
        "2026-06-02 10:00+0100",
    ]


def test_only_the_range_every_week_on_the_windows_day() -> None:
    w = window(Weekday.WEDNESDAY, 600, 630, tz="UTC")
    slots = generate([w], [], **span("2026-06-01", "2026-06-30"), default_minutes=DEFAULT)
    assert local(slots, "UTC") == [f"2026-06-{d:02d} 10:00+0000" for d in (3, 10, 17, 24)]
    # The range is half-open: a slot starting at its end is not in it.
    cut = generate([w], [], start=at("2026-06-03", "UTC"), end=at("2026-06-10T10:00", "UTC"),
                   default_minutes=DEFAULT)  # fmt: skip
    assert local(cut, "UTC") == ["2026-06-03 10:00+0000"]


def test_validity_days_off_switched_off_and_removed() -> None:
    w = window(
        Weekday.WEDNESDAY, 600, 630, tz="UTC",
        valid_from=datetime.date(2026, 6, 10), valid_until=datetime.date(2026, 6, 24),
    )  # fmt: skip
    june = span("2026-06-01", "2026-06-30")
    assert len(generate([w], [], **june, default_minutes=DEFAULT)) == 3
    off = DayOff(ExceptionId("x1"), "cli_1", datetime.date(2026, 6, 17), created_at=T0)
    assert local(generate([w], [off], **june, default_minutes=DEFAULT), "UTC") == [
        "2026-06-10 10:00+0000",
        "2026-06-24 10:00+0000",
    ]
    removed_off = off.remove(T0 + 1)
    assert len(generate([w], [removed_off], **june, default_minutes=DEFAULT)) == 3
    assert generate([replace(w, active=False)], [], **june, default_minutes=DEFAULT) == []
    assert generate([w.remove(T0 + 1)], [], **june, default_minutes=DEFAULT) == []


def test_a_day_off_is_a_date_in_the_windows_own_zone() -> None:
    # 23:00-23:30 in Auckland on Tuesday 2 June is 11:00 UTC on the same Tuesday; a day off
    # on Tuesday 2 June removes it, one on Monday 1 June (the UTC date in the morning
    # there) does not.
    w = window(Weekday.TUESDAY, 1380, 1410, tz="Pacific/Auckland")
    week = span("2026-05-31", "2026-06-06")
    monday = DayOff(ExceptionId("x1"), "cli_1", datetime.date(2026, 6, 1), created_at=T0)
    tuesday = DayOff(ExceptionId("x2"), "cli_1", datetime.date(2026, 6, 2), created_at=T0)
    assert local(generate([w], [monday], **week, default_minutes=DEFAULT), "UTC") == [
        "2026-06-02 11:00+0000"
    ]
    assert generate([w], [tuesday], **week, default_minutes=DEFAULT) == []


def test_a_nine_oclock_window_is_nine_oclock_on_both_sides_of_a_change() -> None:
    tz = "America/New_York"  # clocks go forward on Sunday 8 March 2026
    w = window(Weekday.SUNDAY, 540, 570, tz=tz)
    slots = generate([w], [], **span("2026-03-01", "2026-03-08", tz), default_minutes=DEFAULT)
    assert local(slots, tz) == ["2026-03-01 09:00-0500", "2026-03-08 09:00-0400"]
    assert [s.start for s in slots] == [
        at("2026-03-01T14:00", "UTC"),
        at("2026-03-08T13:00", "UTC"),
    ]


def test_a_slot_in_skipped_time_does_not_exist() -> None:
    tz = "Europe/London"  # 01:00 GMT becomes 02:00 BST on Sunday 29 March 2026
    w = window(Weekday.SUNDAY, 30, 180, tz=tz)  # 00:30-03:00
    slots = generate([w], [], **span("2026-03-29", "2026-03-29", tz), default_minutes=DEFAULT)
    assert local(slots, tz) == [
        "2026-03-29 00:30+0000",
        "2026-03-29 02:00+0100",
        "2026-03-29 02:30+0100",
    ]
    assert resolve(datetime.date(2026, 3, 29), 60, tz) is None


def test_a_slot_right_after_skipped_time_that_would_overlap_the_one_before_is_left_out() -> None:
    # 00:45 GMT + 50 minutes ends at 02:35 BST; 01:35 is skipped, and the grid's next
    # start, 02:25 BST, is inside the 00:45 slot, so it goes; 03:15 is the next one.
    tz = "Europe/London"
    w = window(Weekday.SUNDAY, 45, 360, tz=tz, slot_minutes=50)
    slots = generate([w], [], **span("2026-03-29", "2026-03-29", tz), default_minutes=DEFAULT)
    assert local(slots, tz) == [
        "2026-03-29 00:45+0000",
        "2026-03-29 03:15+0100",
        "2026-03-29 04:05+0100",
        "2026-03-29 04:55+0100",
    ]


def test_repeated_times_take_their_first_occurrence() -> None:
    tz = "Europe/London"  # 02:00 BST becomes 01:00 GMT on Sunday 25 October 2026
    w = window(Weekday.SUNDAY, 30, 150, tz=tz)  # 00:30-02:30
    slots = generate([w], [], **span("2026-10-25", "2026-10-25", tz), default_minutes=DEFAULT)
    assert local(slots, tz) == [
        "2026-10-25 00:30+0100",
        "2026-10-25 01:00+0100",  # first of the two 01:00s
        "2026-10-25 01:30+0100",
        "2026-10-25 02:00+0000",
    ]
    assert all(s.end - s.start == 1800 for s in slots)


def test_a_window_ending_in_skipped_time_ends_when_the_clocks_jump() -> None:
    tz = "Europe/London"
    w = window(Weekday.SUNDAY, 0, 90, tz=tz)  # 00:00-01:30, and 01:30 never happens
    slots = generate([w], [], **span("2026-03-29", "2026-03-29", tz), default_minutes=DEFAULT)
    assert local(slots, tz) == ["2026-03-29 00:00+0000", "2026-03-29 00:30+0000"]
    # 00:30 GMT + 30 minutes is 01:00 GMT, when the clocks jump: it just fits.


def test_overlapping_windows_give_no_overlapping_slots() -> None:
    a = window(Weekday.MONDAY, 540, 600, tz="UTC", wid="wa")
    b = window(Weekday.MONDAY, 555, 615, tz="UTC", wid="wb")
    slots = generate([b, a], [], **span("2026-06-01", "2026-06-01"), default_minutes=DEFAULT)
    assert [(s.window_id, s.start) for s in slots] == [
        ("wa", at("2026-06-01T09:00", "UTC")),
        ("wa", at("2026-06-01T09:30", "UTC")),
    ]


def test_free_leaves_out_busy_times_and_the_minimum_notice() -> None:
    w = window(Weekday.MONDAY, 540, 720, tz="UTC")  # 09:00-12:00: six slots
    slots = generate([w], [], **span("2026-06-01", "2026-06-01"), default_minutes=DEFAULT)
    nine = at("2026-06-01T09:00", "UTC")
    busy = [
        Busy(nine + 1800 + 600, nine + 1800 + 900),  # inside 09:30
        Busy(nine + 5400, nine + 7200),  # 10:30-11:00 and 11:00 touches it: stays
        Busy(nine + 5400, nine + 5500),  # overlapping busy intervals merge
        Busy(nine + 9000, nine + 9000),  # empty: ignored
    ]
    kept = free(slots, busy, now=nine - 3600, notice=3600 + 1)  # 09:00 is too soon
    assert local(kept, "UTC") == [
        "2026-06-01 10:00+0000",
        "2026-06-01 11:00+0000",
        "2026-06-01 11:30+0000",
    ]


# --- the property test over every zone ----------------------------------------------------

YEARS = (2025, 2028)  # changes from 1 January 2025 to 1 January 2028
ZONES = sorted(zoneinfo.available_timezones())


@functools.cache
def changes(name: str) -> tuple[float, ...]:
    """The unix times at which ``name``'s UTC offset changes within YEARS (to the second)."""
    tz = zoneinfo.ZoneInfo(name)
    begin = datetime.datetime(YEARS[0], 1, 1, tzinfo=UTC).timestamp()
    days = (datetime.date(YEARS[1], 1, 1) - datetime.date(YEARS[0], 1, 1)).days

    def offset(t: float) -> datetime.timedelta | None:
        return datetime.datetime.fromtimestamp(t, tz).utcoffset()

    found = []
    for d in range(days):
        low, high = begin + d * 86400, begin + (d + 1) * 86400
        if offset(low) == offset(high):
            continue
        while high - low > 1:
            middle = (low + high) // 2
            if offset(middle) == offset(low):
                low = middle
            else:
                high = middle
        found.append(high)
    return tuple(found)


def test_the_walk_finds_the_changes_it_should() -> None:
    london = [datetime.datetime.fromtimestamp(t, UTC).isoformat() for t in changes("Europe/London")]
    assert london[:2] == ["2025-03-30T01:00:00+00:00", "2025-10-26T01:00:00+00:00"]
    assert len(london) == 6
    assert changes("Asia/Tokyo") == ()
    assert sum(1 for z in ZONES if changes(z)) > 100


def _minutes(moment: datetime.datetime) -> int:
    return moment.hour * 60 + moment.minute


@dataclass(frozen=True)
class Layout:
    """A window's shape, relative to the change it is laid across: it starts ``lead``
    minutes before the change's wall-clock time (``lead`` None: at ``start``, anywhere)."""

    lead: int | None
    start: int
    span: int
    length: int | None
    buffer: int

    def place(self, anchor: int) -> tuple[int, int]:
        """(start, end) minutes of the window for a change at minute ``anchor`` (or none)."""
        first = self.start if self.lead is None or anchor < 0 else anchor - self.lead
        first = max(0, min(first, 1440 - self.span))
        return first, first + self.span


@st.composite
def layouts(draw: st.DrawFn) -> Layout:
    length = draw(st.sampled_from([None, 10, 15, 20, 25, 30, 45, 50, 60, 90]))
    span_ = draw(st.integers(min_value=length or DEFAULT, max_value=300))
    return Layout(
        lead=draw(st.one_of(st.none(), st.integers(0, span_))),
        start=draw(st.integers(0, 1439)),
        span=span_,
        length=length,
        buffer=draw(st.sampled_from([0, 0, 5, 10, 15])),
    )


def _check(slots: list[Slot], windows: dict[WindowId, Window], off: set[datetime.date],
           start: float, end: float, seen: Counter[str]) -> None:  # fmt: skip
    """The invariants, from first principles; ``seen`` counts what the example exercised."""
    for before, after in itertools.pairwise(slots):
        assert before.end <= after.start, (before, after)  # sorted, no overlaps
    by_window: dict[WindowId, set[datetime.datetime]] = {}
    for s in slots:
        w = windows[s.window_id]
        tz = zoneinfo.ZoneInfo(w.time_zone)
        length = (w.slot_minutes or DEFAULT) * 60
        first = datetime.datetime.fromtimestamp(s.start, tz)
        day = first.date()
        minute = _minutes(first)
        assert start <= s.start < end
        assert first.second == 0
        assert first.microsecond == 0
        # Starts at the window's wall-clock start plus k * (length + buffer) ...
        step = (w.slot_minutes or DEFAULT) + w.buffer_minutes
        assert minute >= w.start_minute, (s, first)
        assert (minute - w.start_minute) % step == 0, (s, first)
        # ... at the first occurrence of a repeated time (never the second) ...
        assert first.fold == 0
        again = (first.replace(tzinfo=None).replace(tzinfo=tz, fold=1)).timestamp()
        if again != s.start:
            seen["repeated"] += 1
        # ... lasts the slot length, inside the window on its local day ...
        assert s.end - s.start == length
        last = datetime.datetime.fromtimestamp(s.end - 1, tz)
        assert last.date() == day, (s, first, last)
        assert _minutes(last) < w.end_minute
        assert minute + length // 60 <= w.end_minute
        # ... on a day the window recurs on, within validity, not a day off.
        assert w.applies_on(day)
        assert day not in off
        by_window.setdefault(w.id, set()).add(first.replace(tzinfo=None))
    # Nothing is missing: every grid time of a window on the days in range either is a slot
    # or has a reason not to be (skipped, ends after the window, inside an earlier slot).
    for w in windows.values():
        tz = zoneinfo.ZoneInfo(w.time_zone)
        length = w.slot_minutes or DEFAULT
        day = datetime.datetime.fromtimestamp(start, tz).date()
        while datetime.datetime.combine(day, datetime.time(), tz).timestamp() < end:
            minute = w.start_minute
            while w.applies_on(day) and day not in off and minute + length <= w.end_minute:
                naive = datetime.datetime.combine(day, datetime.time()) + datetime.timedelta(
                    minutes=minute
                )
                moment = naive.replace(tzinfo=tz).timestamp()
                exists = datetime.datetime.fromtimestamp(moment, tz).replace(tzinfo=None) == naive
                if naive in by_window.get(w.id, set()):
                    seen["slots"] += 1
                elif not exists:
                    seen["skipped"] += 1
                elif not start <= moment < end:
                    pass
                else:
                    taken = any(s.overlaps(moment, moment + length * 60) for s in slots)
                    closing = naive.replace(hour=0, minute=0) + datetime.timedelta(
                        minutes=w.end_minute
                    )
                    late = datetime.datetime.fromtimestamp(moment + length * 60 - 1, tz)
                    assert taken or late.replace(tzinfo=None) >= closing, (w, naive)
                    seen["left out"] += 1
                minute += length + w.buffer_minutes
            day += datetime.timedelta(days=1)


@settings(max_examples=5, deadline=None, database=None)
@given(
    shapes=st.lists(layouts(), min_size=7, max_size=7),
    days_off=st.lists(st.booleans(), min_size=5, max_size=5),
    ended=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_slots_keep_their_invariants_in_every_zone_across_changes(
    shapes: list[Layout], days_off: list[bool], ended: list[bool]
) -> None:
    """Two windows per change (one laid across it, one anywhere), shapes taken in turn from
    the drawn ones; now and then the day is a day off, or a window's validity ends before."""
    seen: Counter[str] = Counter()
    turn = 0
    for name in ZONES:
        tz = zoneinfo.ZoneInfo(name)
        moments = changes(name) or (datetime.datetime(2026, 6, 15, 12, tzinfo=UTC).timestamp(),)
        for moment in moments:
            # The local day after the change, and the wall time from which it differs.
            before = datetime.datetime.fromtimestamp(moment - 1, tz)
            after = datetime.datetime.fromtimestamp(moment, tz)
            day = after.date()
            anchor = min(_minutes(before) + 1, _minutes(after), 1439)
            if before.date() != day:  # the change skipped the start of the day
                anchor = 0
            if not changes(name):
                anchor = -1
            windows: dict[WindowId, Window] = {}
            for i, across in enumerate((True, False)):
                shape = shapes[(turn + i) % len(shapes)]
                start_minute, end_minute = shape.place(anchor if across else -1)
                windows[WindowId(f"w{i}")] = window(
                    Weekday.of(day), start_minute, end_minute, tz=name, wid=f"w{i}",
                    slot_minutes=shape.length, buffer_minutes=shape.buffer,
                )  # fmt: skip
            off = {day} if days_off[turn % len(days_off)] and turn % 7 == 0 else set()
            if ended[turn % len(ended)] and turn % 11 == 0:
                w0 = windows[WindowId("w0")]
                windows[w0.id] = replace(w0, valid_until=day - datetime.timedelta(days=1))
            turn += 1
            lo = datetime.datetime.combine(day, datetime.time(), tz).timestamp() - 86400
            hi = lo + 3 * 86400
            days = [DayOff(ExceptionId("x"), "cli_1", d, created_at=T0) for d in off]
            slots = generate(windows.values(), days, start=lo, end=hi, default_minutes=DEFAULT)
            _check(slots, windows, off, lo, hi, seen)
    # The example really went through changes: slots around them, skipped and repeated times.
    assert seen["slots"] > 1000, seen
    assert seen["skipped"] > 0, seen
    assert seen["repeated"] > 0, seen


@pytest.mark.parametrize(
    ("tz", "skipped"),
    [
        ("Pacific/Apia", datetime.date(2011, 12, 30)),
        ("Pacific/Kwajalein", datetime.date(1993, 8, 21)),
    ],
)
def test_a_skipped_calendar_day_has_no_slots(tz: str, skipped: datetime.date) -> None:
    # Samoa skipped Friday 30 December 2011; Kwajalein skipped Saturday 21 August 1993. The
    # window recurs on that weekday: the week before has its slots, the skipped day none.
    w = window(Weekday.of(skipped), 0, 1440, tz=tz, slot_minutes=60)
    week = datetime.timedelta(days=7)
    slots = generate([w], [], **span((skipped - week).isoformat(), skipped.isoformat(), "UTC"),
                     default_minutes=DEFAULT)  # fmt: skip
    z = zoneinfo.ZoneInfo(tz)
    days = {datetime.datetime.fromtimestamp(s.start, z).date() for s in slots}
    assert days == {skipped - week}
    assert len(slots) == 24
