"""The calendar lock (signalling.calendar) on a real redis-server: holds, confirmations,
releases and notes, each one script; what a hold blocks and until when; the booking events
they record; repair tickets and their leases."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from rooms.appointments import Actor
from rooms.booking import BookingEventKind, SpanKind
from rooms.ids import AppointmentId
from rooms.slots import Busy
from signalling.calendar import (
    BUCKETS,
    PRUNE_AFTER,
    Calendar,
    Outcome,
    bucket_of,
)
from signalling.keys import busy_key, calendar_events_key, spans_key
from signalling.redis_client import connect
from signalling.redis_server import RedisProcess

T0 = 1_700_000_000.0
C = "cli_1"
A, B, D = AppointmentId("apt_a"), AppointmentId("apt_b"), AppointmentId("apt_d")
SECRET = "s3cret"
NINE, HALF, TEN = T0 + 3600, T0 + 5400, T0 + 7200  # a slot 09:00-09:30 and 10:00 after it


@pytest.fixture
def calendar(redis: Redis) -> Calendar:
    return Calendar(redis)


async def hold(calendar: Calendar, appointment: AppointmentId, start: float = NINE,
               end: float = HALF, now: float = T0, secret: str = SECRET) -> Outcome:  # fmt: skip
    return await calendar.hold(
        C, appointment, start, end, now=now, expires_at=now + 900, secret=secret
    )


async def kinds(calendar: Calendar, appointment: AppointmentId) -> list[str]:
    return [e.kind.value for e in await calendar.events(C, appointment, since=T0)]


async def test_a_hold_takes_the_time_and_nothing_overlapping_can_be_held(
    calendar: Calendar,
) -> None:
    assert await hold(calendar, A) is Outcome.OK
    assert await hold(calendar, B) is Outcome.TAKEN
    assert await hold(calendar, B, NINE + 600, HALF + 600) is Outcome.TAKEN  # partly
    assert await hold(calendar, B, NINE - 600, NINE + 1) is Outcome.TAKEN
    assert await hold(calendar, B, HALF, TEN) is Outcome.OK  # touching is not overlapping
    assert await hold(calendar, D, NINE - 1800, NINE) is Outcome.OK
    assert await hold(calendar, A, TEN + 3600, TEN + 5400) is Outcome.EXISTS
    span = await calendar.span(C, A)
    assert span is not None
    assert (span.kind, span.start, span.end, span.expires_at) == (
        SpanKind.HELD,
        NINE,
        HALF,
        T0 + 900,
    )
    assert await kinds(calendar, A) == ["held"]
    # Other clinicians' calendars are their own.
    other = await calendar.hold("cli_2", A, NINE, HALF, now=T0, expires_at=T0 + 900, secret="x")
    assert other is Outcome.OK


async def test_a_hold_blocks_until_its_expiry_time_even_before_anyone_removes_it(
    calendar: Calendar,
) -> None:
    assert await hold(calendar, A) is Outcome.OK
    assert await calendar.busy(C, T0, now=T0 + 899) == [Busy(NINE, HALF)]
    assert await hold(calendar, B, now=T0 + 899) is Outcome.TAKEN
    assert await calendar.busy(C, T0, now=T0 + 900) == []
    assert await hold(calendar, B, now=T0 + 900) is Outcome.OK
    # The dead hold is still there until it is expired, and then it goes with its event.
    assert await calendar.span(C, A) is not None
    assert not await calendar.expire(C, B, now=T0 + 900)  # B's hold is live
    assert await calendar.expire(C, A, now=T0 + 900)
    assert not await calendar.expire(C, A, now=T0 + 901)  # once
    assert await calendar.span(C, A) is None
    assert await kinds(calendar, A) == ["held", "expired"]
    events = await calendar.events(C, A, since=T0)
    assert events[-1].actor is Actor.SYSTEM
    assert events[-1].at == T0 + 900


async def test_confirming_needs_the_secret_and_a_live_hold(calendar: Calendar) -> None:
    assert await hold(calendar, A) is Outcome.OK
    assert await calendar.confirm(C, A, secret="wrong", now=T0 + 1) is Outcome.FORBIDDEN
    assert await calendar.confirm(C, B, secret="s3cret", now=T0 + 1) is Outcome.GONE
    assert await calendar.confirm(C, A, secret="s3cret", now=T0 + 60) is Outcome.OK
    assert await calendar.confirm(C, A, secret="s3cret", now=T0 + 61) is Outcome.ALREADY
    span = await calendar.span(C, A)
    assert span is not None
    assert (span.kind, span.confirmed_at, span.expires_at) == (SpanKind.CONFIRMED, T0 + 60, None)
    # Confirmed, it blocks for good: its expiry time means nothing any more.
    assert await calendar.busy(C, T0, now=T0 + 10**6) == [Busy(NINE, HALF)]
    assert not await calendar.expire(C, A, now=T0 + 10**6)
    assert await kinds(calendar, A) == ["held", "confirmed"]

    assert await hold(calendar, B, HALF, TEN) is Outcome.OK
    assert await calendar.confirm(C, B, secret="s3cret", now=T0 + 900) is Outcome.EXPIRED
    assert await kinds(calendar, B) == ["held"]


async def test_an_api_booking_over_a_hold_stops_its_confirmation(calendar: Calendar) -> None:
    assert await hold(calendar, A) is Outcome.OK
    assert await calendar.note(C, B, NINE + 900, TEN, now=T0) is Outcome.OK  # the clinic's
    assert await calendar.confirm(C, A, secret="s3cret", now=T0 + 1) is Outcome.TAKEN
    # And it blocks holds: the span is recorded whatever it overlaps.
    assert await hold(calendar, D, HALF, TEN) is Outcome.TAKEN


async def test_notes_move_the_clinics_bookings_but_not_a_hold(calendar: Calendar) -> None:
    assert await calendar.note(C, A, NINE, HALF, now=T0) is Outcome.OK
    assert await calendar.note(C, A, TEN, TEN + 1800, now=T0) is Outcome.OK
    span = await calendar.span(C, A)
    assert span is not None
    assert (span.kind, span.start, span.end) == (SpanKind.BOOKED, TEN, TEN + 1800)
    assert await calendar.busy(C, T0, now=T0) == [Busy(TEN, TEN + 1800)]
    assert await hold(calendar, B) is Outcome.OK
    assert await calendar.note(C, B, NINE, HALF, now=T0) is Outcome.HELD
    # A confirmed booking moved by the clinic stays confirmed (its secret still confirms).
    assert await calendar.confirm(C, B, secret="s3cret", now=T0 + 1) is Outcome.OK
    assert await calendar.note(C, B, HALF, HALF + 900, now=T0 + 2) is Outcome.OK
    moved = await calendar.span(C, B)
    assert moved is not None
    assert (moved.kind, moved.start, moved.confirmed_at) == (SpanKind.CONFIRMED, HALF, T0 + 1)
    assert await calendar.confirm(C, B, secret="s3cret", now=T0 + 3) is Outcome.ALREADY
    assert await calendar.events(C, A, since=T0) == []  # notes are not booking events


async def test_cancelling_and_removing_free_the_time(calendar: Calendar) -> None:
    assert await hold(calendar, A) is Outcome.OK
    await calendar.cancel(C, A, now=T0 + 5, by=Actor.PATIENT)
    assert await calendar.span(C, A) is None
    assert await hold(calendar, B) is Outcome.OK
    events = await calendar.events(C, A, since=T0)
    assert [(e.kind, e.actor, e.at) for e in events][-1] == (
        BookingEventKind.CANCELLED,
        Actor.PATIENT,
        T0 + 5,
    )
    # A cancellation is recorded even without a span (an appointment from before calendars).
    await calendar.cancel(C, D, now=T0 + 6, by=Actor.API)
    assert await kinds(calendar, D) == ["cancelled"]
    # `remove` records only if it removed something, and without `by` nothing at all.
    assert not await calendar.remove(C, D, now=T0 + 7, by=Actor.SYSTEM)
    assert await kinds(calendar, D) == ["cancelled"]
    assert await calendar.remove(C, B, now=T0 + 8, by=None)
    assert await kinds(calendar, B) == ["held"]


async def test_spans_long_over_are_pruned_by_later_writes(calendar: Calendar, redis: Redis) -> None:
    assert await calendar.note(C, A, T0, T0 + 1800, now=T0) is Outcome.OK
    later = T0 + 1800 + PRUNE_AFTER + 1
    assert await calendar.note(C, B, later + 3600, later + 5400, now=later) is Outcome.OK
    assert await calendar.span(C, A) is None
    assert await redis.zscore(busy_key(C), A) is None


async def test_every_key_of_a_calendar_shares_one_hash_tag() -> None:
    for key in (busy_key(C), spans_key(C), calendar_events_key(C)):
        assert key.startswith("vst:{cal:cli_1}:")


async def test_concurrent_holds_of_one_time_from_many_clients_give_one_hold(
    redis_server: RedisProcess,
) -> None:
    """Fifty clients, each on its own connection, hold overlapping times at once."""
    clients = [connect(redis_server.url) for _ in range(50)]
    try:
        calendars = [Calendar(c) for c in clients]
        outcomes = await asyncio.gather(
            *(
                cal.hold(
                    C,
                    AppointmentId(f"apt_{i}"),
                    NINE + (i % 5) * 60,
                    HALF + (i % 5) * 60,
                    now=T0,
                    expires_at=T0 + 900,
                    secret=f"s{i}",
                )
                for i, cal in enumerate(calendars)
            )
        )
    finally:
        for c in clients:
            await c.aclose()
    assert outcomes.count(Outcome.OK) == 1
    assert outcomes.count(Outcome.TAKEN) == 49


async def test_repair_tickets_are_claimed_for_a_lease(calendar: Calendar) -> None:
    first = await calendar.ticket(C, A, due=T0 + 10)
    second = await calendar.ticket(C, A, due=T0 + 20)
    assert first.member != second.member  # one per step, even of one appointment
    bucket = bucket_of(C)
    assert 0 <= bucket < BUCKETS
    assert await calendar.claim(bucket, now=T0, lease=30, limit=10) == []
    claimed = await calendar.claim(bucket, now=T0 + 15, lease=30, limit=10)
    assert [(t.clinician, t.appointment) for t in claimed] == [(C, A)]
    assert claimed[0] == first
    # Leased: nobody else gets it until the lease ends.
    assert await calendar.claim(bucket, now=T0 + 20, lease=30, limit=10) == [second]
    assert await calendar.claim(bucket, now=T0 + 44, lease=30, limit=10) == []
    assert await calendar.claim(bucket, now=T0 + 45, lease=30, limit=10) == [first]
    await calendar.done(first)
    await calendar.later(second, T0 + 1000)
    assert await calendar.claim(bucket, now=T0 + 999, lease=30, limit=10) == []
    assert await calendar.claim(bucket, now=T0 + 1000, lease=30, limit=10) == [second]
