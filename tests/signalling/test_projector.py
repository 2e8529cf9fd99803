"""The status projector against a real redis-server."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.asyncio import Redis

from rooms.events import Event
from rooms.ids import AppointmentId, ParticipantId, RoomId, SessionId
from rooms.projection import Outcome
from rooms.roles import Role
from rooms.room import Room
from rooms.status import CallStatus
from signalling.eventlog import EMPTY, EventLog
from signalling.keys import changes_of, events_key, outcomes_key, projection_key, windows_of
from signalling.projector import (
    GROUP,
    Projector,
    note_window,
    queue_change,
    read_outcomes,
    read_projection,
    read_status,
)
from signalling.projector import (
    note_change as projector_note,
)
from tests.rooms.support import WAIT

R = RoomId("r1")
HOST, A = ParticipantId("h"), ParticipantId("a")
APPT = AppointmentId("apt_1")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def visit() -> list[list[Event]]:
    """A completed visit, as the batches a node would append one command at a time."""
    room = Room(R)
    return [
        room.arrive(HOST, Role.HOST, now=1.0),
        room.arrive(A, Role.PATIENT, now=2.0) + room.knock(A, 2.0, WAIT),
        room.start(HOST, session=SessionId("s1"), appointment=APPT, capacity=1, now=3.0),
        room.enter(A, 4.0),
        room.end(HOST, 5.0),
        room.leave(A, 6.0),
    ]


async def record(redis: Redis, batches: list[list[Event]]) -> None:
    """Append as a node does: each append with its change note."""
    log, last = EventLog(redis, note=queue_change), EMPTY
    for batch in batches:
        last = (await log.append(R, last, batch))[-1]


async def note_change(redis: Redis, room_id: RoomId) -> None:
    """A change note on its own (a duplicate, or one sent after a plain append)."""
    await projector_note(redis, room_id)


CHANGES = changes_of(R)  # the change notes of R's bucket


async def test_projection_of_a_completed_visit(redis: Redis) -> None:
    await record(redis, visit())
    projector = Projector(redis, "n1", Clock(10.0))
    await projector.ensure_group()
    assert await projector.step() == 1
    assert await read_outcomes(redis, R) == {APPT: Outcome.COMPLETED}
    assert await read_status(redis, R, APPT) is CallStatus.ENDED
    projection = await read_projection(redis, R)
    assert projection is not None
    assert projection.sessions_completed == 1
    # Nothing new: a further step folds nothing and counts nothing again.
    assert await projector.step() == 0
    assert (await read_projection(redis, R)) == projection or (
        (await read_projection(redis, R)).to_record() == projection.to_record()  # type: ignore[union-attr]
    )


async def test_replaying_from_scratch_gives_identical_statuses(redis: Redis) -> None:
    await record(redis, visit())
    projector = Projector(redis, "n1", Clock(10.0))
    await projector.ensure_group()
    await projector.step()
    first = await redis.hgetall(projection_key(R))
    # Throw the projection away and replay every change from the start of the stream.
    await redis.delete(projection_key(R), outcomes_key(R))
    await redis.xgroup_setid(CHANGES, GROUP, "0")
    await projector.step()
    assert await redis.hgetall(projection_key(R)) == first


async def test_a_consumer_that_dies_before_acknowledging_is_replaced_without_double_counting(
    redis: Redis,
) -> None:
    batches = visit()
    await record(redis, batches[:4])
    dying = Projector(redis, "dead", Clock(10.0))
    await dying.ensure_group()
    # It reads the changes and folds the room, then dies before XACK.
    await redis.xreadgroup(GROUP, "dead", {CHANGES: ">"}, count=100)
    await dying.project(R)
    await record_more(redis, batches[:4], batches[4:])
    survivor = Projector(redis, "alive", Clock(10.0), claim_idle_ms=0)
    await survivor.step()
    pending = await redis.xpending(CHANGES, GROUP)
    assert pending["pending"] == 0
    projection = await read_projection(redis, R)
    assert projection is not None
    assert projection.sessions_completed == 1
    assert await read_outcomes(redis, R) == {APPT: Outcome.COMPLETED}


async def record_more(redis: Redis, done: list[list[Event]], more: list[list[Event]]) -> None:
    log = EventLog(redis, note=queue_change)
    last = (await log.read(R))[-1][0]
    assert len(await log.read(R)) == sum(len(b) for b in done)
    for batch in more:
        last = (await log.append(R, last, batch))[-1]


async def test_concurrent_projectors_count_each_event_once(redis: Redis) -> None:
    await record(redis, visit())
    for _ in range(5):
        await note_change(redis, R)  # duplicate notifications
    projectors = [Projector(redis, f"n{i}", Clock(10.0)) for i in range(4)]
    await projectors[0].ensure_group()
    await asyncio.gather(*(p.project(R) for p in projectors), *(p.step() for p in projectors))
    projection = await read_projection(redis, R)
    assert projection is not None
    assert projection.sessions_completed == 1


async def test_no_show_appears_once_the_window_closes(redis: Redis) -> None:
    room = Room(R)
    log = EventLog(redis)
    await log.append(R, EMPTY, room.arrive(HOST, Role.HOST, now=1.0))
    await note_change(redis, R)
    await note_window(redis, R, APPT, closes_at=100.0)
    clock = Clock(50.0)
    projector = Projector(redis, "n1", clock)
    await projector.ensure_group()
    await projector.step()
    assert await read_outcomes(redis, R) == {}
    assert await read_status(redis, R, APPT) is CallStatus.READY
    clock.now = 100.5
    await projector.step()
    assert await read_outcomes(redis, R) == {APPT: Outcome.NO_SHOW}
    assert await read_status(redis, R, APPT) is CallStatus.EXPIRED
    assert await redis.zcard(windows_of(R)) == 0


async def test_a_malformed_entry_or_room_is_logged_and_skipped_and_the_rest_projected(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 10: one bad entry must not stop the projector (it is required for readiness).
    await record(redis, visit())
    broken = RoomId("broken")
    await redis.xadd(CHANGES, {"x": "no room field"})
    await redis.xadd(CHANGES, {"r": b"\xff\xfe"})  # not UTF-8
    await redis.xadd(events_key(broken), {"e": b"\xc1"})  # not an event
    await note_change(redis, broken)
    projector = Projector(redis, "n1", Clock(10.0))
    await projector.ensure_group()
    with caplog.at_level(logging.WARNING, logger="vestibule.signalling.projector"):
        await projector.step()
    assert await read_outcomes(redis, R) == {APPT: Outcome.COMPLETED}  # r1 was projected
    messages = [r.getMessage() for r in caplog.records]
    assert sum("skipped a malformed change entry" in m for m in messages) == 2
    assert any(m.startswith("projector: room broken not projected: ") for m in messages)
    assert (await redis.xpending(CHANGES, GROUP))["pending"] == 0  # all acknowledged


async def test_a_consumer_folds_on_from_what_another_saved_since_it_last_did(redis: Redis) -> None:
    """A consumer keeps the projections it saved decoded (no decoding of the whole room on
    every change) only while Redis still has that revision: an outcome another consumer
    settled meanwhile, with no new event, is never written over."""
    batches = visit()
    await record(redis, batches[:2])  # the host and the patient arrive
    first, second = Projector(redis, "n1", Clock(10.0)), Projector(redis, "n2", Clock(10.0))
    await first.ensure_group()
    await first.project(R)
    await second.project(R, close={APPT: 9.0})  # its window closed: a no-show, for now
    assert await read_outcomes(redis, R) == {APPT: Outcome.NO_SHOW}
    await record_more(redis, batches[:2], batches[2:3])
    projection = await first.project(R)  # from the second's save, not from its own
    assert projection.outcomes == {APPT: Outcome.NO_SHOW}
    assert projection.closed == {APPT: 9.0}
    assert (await read_projection(redis, R)).to_record() == projection.to_record()  # type: ignore[union-attr]
    # Its own save is the latest: the next fold starts from what it holds, no read.
    again = await first.project(R)
    assert again is projection


async def test_changes_during_the_linger_are_folded_in_the_same_batch(redis: Redis) -> None:
    """A node's projector waits a moment after the first change before it folds: what a
    busy room appends meanwhile is folded with it, once (not once per event)."""
    batches = visit()
    await record(redis, batches[:1])
    projector = Projector(redis, "n1", Clock(10.0), linger=2.0)
    await projector.ensure_group()
    folds = 0
    project = projector.project

    async def counted(room_id: RoomId, *args: object, **kwargs: object) -> object:
        nonlocal folds
        folds += 1
        return await project(room_id, *args, **kwargs)  # type: ignore[arg-type]

    projector.project = counted  # type: ignore[method-assign,assignment]
    step = asyncio.create_task(projector.step())
    for _ in range(500):  # bounded: until the first change note is taken
        if (await redis.xpending(CHANGES, GROUP))["pending"]:
            break
        await asyncio.sleep(0.01)
    assert not step.done()  # it lingers
    await record_more(redis, batches[:1], batches[1:])  # five more changes meanwhile
    assert await step == 1
    assert folds == 1
    assert await read_outcomes(redis, R) == {APPT: Outcome.COMPLETED}
    assert (await redis.xpending(CHANGES, GROUP))["pending"] == 0
