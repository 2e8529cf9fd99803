"""The booking sweeper repairs what a node dying half-way through a step leaves behind, and
two sweepers on one ticket do it once. Each test does the first half of a step by hand, as
the dying node would have, and leaves its ticket; the node's sweeper (running on the node's
injected clock) does the rest. Real node, real redis-server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from rooms.appointments import book
from rooms.ids import AppointmentId
from signalling.api.appointment_store import AppointmentStore, Stored
from signalling.api.booking_repair import LEASE, repairs
from signalling.api.calendar_follow import STEP_GRACE
from signalling.api.schema import parse_time
from signalling.calendar import Calendar, Outcome, bucket_key, bucket_of
from tests.signalling.api.test_booking import (
    HALF,
    NINE,
    PATIENT,
    Booking,
    C,
    Make,
    booking,  # noqa: F401 -- the fixture
    open_booking,  # noqa: F401 -- the fixture
)
from tests.signalling.api.test_invitations import offline_context
from tests.support import WAIT_FACTOR

START, END = parse_time(NINE, "start"), parse_time(HALF, "end")


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` (the sweeper runs every 20 ms) until it holds; fail after 10 s times
    the suite's wait factor (a loaded CI machine)."""
    for _ in range(int(500 * WAIT_FACTOR)):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def confirmed_on_the_calendar(b: Booking) -> tuple[Any, Calendar]:
    """A hold confirmed on the calendar by a node that died before saving the appointment."""
    await b.window()
    held = await b.hold()
    calendar = Calendar(b.node.redis)
    appointment = AppointmentId(held["id"])
    now = b.node.clock.now
    confirmed = await calendar.confirm(C, appointment, secret=held["hold_secret"], now=now)
    assert confirmed is Outcome.OK
    return held, calendar


async def test_a_confirmation_whose_node_died_is_finished(
    open_booking: Booking,  # noqa: F811
) -> None:
    b = open_booking
    held, calendar = await confirmed_on_the_calendar(b)
    await calendar.ticket(C, AppointmentId(held["id"]), due=b.node.clock.now + STEP_GRACE)
    b.node.clock.advance(STEP_GRACE)
    done = await b.wait_for(held["id"], status="confirmed")
    assert done["video_link"] is not None
    assert done["meeting_url"] is not None
    assert NINE not in await b.slots()
    # The patient's retry, with their details, answers with the same booking.
    again = await b.confirm(held)
    assert again["video_link"] == done["video_link"]


async def test_a_confirmation_under_way_is_left_alone_for_its_grace(
    open_booking: Booking,  # noqa: F811
) -> None:
    b = open_booking
    held, calendar = await confirmed_on_the_calendar(b)
    now = b.node.clock.now
    ticket = await calendar.ticket(C, AppointmentId(held["id"]), due=now)
    # Due, but within the grace of the confirmation: the sweeper puts it off, untouched.

    async def put_off() -> bool:
        score = await b.node.redis.zscore(bucket_key(bucket_of(C)), ticket.member)
        return score is not None and score == now + STEP_GRACE

    await until(put_off, "the sweeper to put the ticket off")
    assert (await b.appointment(held["id"]))["status"] == "held"


async def test_a_hold_whose_record_was_never_written_blocks_until_it_expires(
    open_booking: Booking,  # noqa: F811
) -> None:
    b = open_booking
    await b.window()
    calendar = Calendar(b.node.redis)
    now = b.node.clock.now
    ghost = AppointmentId("apt_ghost")
    await calendar.ticket(C, ghost, due=now + 900)
    held = await calendar.hold(C, ghost, START, END, now=now, expires_at=now + 900, secret="x")
    assert held is Outcome.OK
    assert NINE not in await b.slots()
    b.node.clock.advance(900)
    assert NINE in await b.slots()

    async def gone() -> bool:
        return await calendar.span(C, ghost) is None

    await until(gone, "the ghost hold to be removed")
    events = await calendar.events(C, ghost, since=now)
    assert [e.kind.value for e in events] == ["held", "expired"]


@pytest.mark.parametrize("change", ["cancelled", "moved to another clinician"])
async def test_a_change_whose_node_died_before_the_calendar_followed_frees_the_time(
    open_booking: Booking,  # noqa: F811
    tmp_path: Path,
    change: str,
) -> None:
    b = open_booking
    await b.window()
    made = await b.clinic_books()
    assert NINE not in await b.slots()
    # The node saved the change and died before the clinician's calendar let the time go.
    store = AppointmentStore(offline_context(b.node.redis, tmp_path, b.node.clock))
    now = b.node.clock.now

    async def decide(stored: Stored) -> Stored:
        a = stored.appointment
        if change == "cancelled":
            return Stored(a.cancel("Clinic closed", now))
        return Stored(a.update({"clinician_profile_id": "cli_2"}, now))

    # The ticket is due after the step's grace, as `CalendarFollow` leaves it: due at once,
    # a sweeper could take it between the ticket and the change, find nothing to repair and
    # drop it (this test failed so on slow runs). The node's clock then passes the grace.
    await Calendar(b.node.redis).ticket(C, AppointmentId(made["id"]), due=now + 60)
    await store.change(made["id"], decide)
    b.node.clock.advance(61)

    async def free() -> bool:
        return NINE in await b.slots()

    await until(free, "the time to be freed")
    cancellations = [e for e in await b.activity(made["id"]) if e[0] == "cancelled"]
    assert cancellations == ([("cancelled", "api")] if change == "cancelled" else [])


async def test_an_api_booking_whose_node_died_still_blocks_its_time(
    open_booking: Booking,  # noqa: F811
    tmp_path: Path,
) -> None:
    b = open_booking
    await b.window()
    # The node saved the appointment and died before it reached the calendar.
    now = b.node.clock.now
    made = book(AppointmentId("apt_lost"), title="x", start_time=START, end_time=END, now=now,
                clinician_profile_id=C)  # fmt: skip
    await Calendar(b.node.redis).ticket(C, made.id, due=now)
    await AppointmentStore(offline_context(b.node.redis, tmp_path, b.node.clock)).create(
        Stored(made)
    )

    async def blocked() -> bool:
        return NINE not in await b.slots()

    await until(blocked, "the appointment's time to be blocked")


async def test_two_sweepers_on_one_expired_hold_expire_it_once(
    booking: Make,  # noqa: F811
    tmp_path: Path,
) -> None:
    b = await booking(hold_sweep=3600.0)  # the node's own sweeper stays out of the way
    await b.window()
    held = await b.hold()
    b.node.clock.advance(900)
    ctx = offline_context(b.node.redis, tmp_path, b.node.clock)
    first, second = repairs(ctx), repairs(ctx)
    # Both see the ticket due; whichever claims it first repairs it, the other none.
    seen = await asyncio.gather(first.sweep(), second.sweep())
    assert sorted(seen) == [0, 1]
    # A second repair of the same appointment (as after a lease ran out while the first
    # sweeper was still at it) changes nothing.
    await Calendar(b.node.redis).ticket(C, AppointmentId(held["id"]), due=b.node.clock.now)
    assert await second.sweep() == 1
    record = await b.appointment(held["id"])
    assert record["status"] == "expired"
    assert await b.activity(held["id"]) == [("held", "patient"), ("expired", "system")]
    assert PATIENT["attendee_name"] not in repr(record)


async def test_a_ticket_that_fails_is_logged_and_the_others_are_still_repaired(
    booking: Make,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    b = await booking(hold_sweep=3600.0)  # only this test's sweeper runs
    await b.window()
    held = await b.hold()
    # An unreadable appointment record: its repair fails.
    await b.node.redis.set("vst:appt:apt_broken", b"not msgpack at all \xc1")
    calendar = Calendar(b.node.redis)
    broken = await calendar.ticket(C, AppointmentId("apt_broken"), due=b.node.clock.now)
    b.node.clock.advance(900)
    sweeper = repairs(offline_context(b.node.redis, tmp_path, b.node.clock))
    assert await sweeper.sweep() == 2
    assert (await b.appointment(held["id"]))["status"] == "expired"
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failures] == ["repair of booking apt_broken failed"]
    assert [r.getMessage() for r in b.node.take_errors()] == [failures[0].getMessage()]
    # Left to its lease: it comes back once the lease is over, not before.
    assert await sweeper.sweep() == 0
    b.node.clock.advance(LEASE)
    claimed = await calendar.claim(bucket_of(C), b.node.clock.now, LEASE, 10)
    assert claimed == [broken]
