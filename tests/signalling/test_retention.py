"""Retention and the audit trail, against a real redis-server (signalling.retention).

A room's events are kept for the retention period and trimmed after it, never past the
room's snapshot, from which any node then loads the room; the audit trail of who admitted
or denied whom is kept longer; what the projection keeps of appointments long over goes.
And a thousand visits leave a room that is no bigger than its last few.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
from redis.asyncio import Redis

from rooms.events import Event, EventKind
from rooms.ids import AppointmentId, ParticipantId, RoomId, SessionId
from rooms.participants import Booking
from rooms.roles import Role
from rooms.room import Room
from signalling.bus import Bus
from signalling.eventlog import EMPTY, EventLog
from signalling.keys import audit_key, events_key, names_key, outcomes_key, retention_of, where_key
from signalling.projector import (
    Projector,
    read_audit,
    read_projection,
    read_snapshot,
)
from signalling.redis_ports import redis_hub
from signalling.retention import Retention
from tests.rooms.support import WAIT
from tests.signalling.conftest import FakeClock, Serve

R = RoomId("r_retained")
HOST, A, B = ParticipantId("h"), ParticipantId("a"), ParticipantId("b")
APPT = AppointmentId("apt_1")
DAY = 86400.0
KEEP, AUDIT = 7 * DAY, 30 * DAY


def visit(room: Room, pid: ParticipantId, session: str, at: float) -> list[list[Event]]:
    """One patient's visit as a node's commands append it: arrival, knock, the call
    (started by the host, who is in the room), the host admits, ends, the patient leaves."""
    return [
        room.arrive(pid, Role.PATIENT, now=at, booking=Booking(APPT)) + room.knock(pid, at, WAIT),
        room.start(HOST, session=SessionId(session), appointment=APPT, capacity=1, now=at + 1),
        room.admit(HOST, pid, at + 2),
        room.end(HOST, at + 3),
        room.leave(pid, at + 4),
    ]


async def record(log: EventLog, batches: list[list[Event]], last: str) -> str:
    for events in batches:
        last = (await log.append(R, last, events))[-1]
    return last


async def test_events_past_retention_go_the_audit_trail_stays(redis: Redis) -> None:
    clock = FakeClock(1000.0)
    log = EventLog(redis)
    projector = Projector(redis, "n1", clock, retain=KEEP)
    retention = Retention(redis, projector, keep=KEEP, audit=AUDIT)
    room = Room(R)
    last = await log.append(R, EMPTY, room.arrive(HOST, Role.HOST, now=1000.0))
    last_id = await record(log, visit(room, A, "s1", 1000.0), last[-1])
    await projector.project(R, close={APPT: 1005.0})
    due: Any = await redis.zscore(retention_of(R), R)
    assert due == 1000.0 + KEEP  # the first event folded falls due then
    # The audit trail: the host's decisions and the calls, with the appointment, no names.
    audit = await read_audit(redis, R)
    assert [(e["kind"], e["participant"], e["appointment"]) for e in audit] == [
        ("session_started", None, "apt_1"),
        ("admitted", "a", "apt_1"),
        ("session_ended", None, "apt_1"),
    ]
    assert audit[1]["actor"] == "h"

    # A second visit, a week later.
    clock.now = 1000.0 + KEEP + 10
    last_id = await record(log, visit(room, B, "s2", clock.now), last_id)
    await projector.project(R)
    before = await redis.xlen(events_key(R))
    assert await retention.run(clock.now) == 1
    kept = [e for _, e in await log.read(R)]
    assert len(kept) == before - 1 - 10  # the host's arrival and the first visit went
    assert {e.participant for e in kept if e.participant} == {B, HOST}
    assert all(e.at >= clock.now - KEEP for e in kept)
    # The first appointment's outcome, a week past its window, is forgotten.
    projection = await read_projection(redis, R)
    assert projection is not None
    assert projection.outcomes == {}
    assert await redis.hgetall(outcomes_key(R)) == {}
    # The audit trail still has both visits; it goes only after its own period.
    assert len(await read_audit(redis, R)) == 6
    assert await redis.zscore(retention_of(R), R) == kept[0].at + KEEP
    clock.now += AUDIT + 10
    await projector.project(R)
    await retention.retain(R, clock.now)
    assert await redis.xlen(events_key(R)) == 1  # the newest event always stays
    assert await redis.zcard(audit_key(R)) == 0


async def test_a_trimmed_room_loads_from_its_snapshot(redis: Redis) -> None:
    """After trimming, the stream no longer has the host's arrival; a node that loads the
    room now folds it from the snapshot and the tail, not from the trimmed stream."""
    clock = FakeClock(1000.0)
    log = EventLog(redis)
    projector = Projector(redis, "n1", clock, retain=KEEP)
    room = Room(R)
    last = (await log.append(R, EMPTY, room.arrive(HOST, Role.HOST, now=1000.0)))[-1]
    last = await record(log, visit(room, A, "s1", 1000.0), last)
    await projector.project(R)
    clock.now += KEEP + 10
    await Retention(redis, projector, keep=KEEP, audit=AUDIT).retain(R, clock.now)
    # All of it was past its time and in the snapshot, but for the newest event.
    assert [i for i, _ in await log.read(R)] == [last]
    tail = room.arrive(B, Role.GUEST, now=clock.now)
    await log.append(R, last, tail)
    snapshot = await read_snapshot(redis, R)
    assert snapshot is not None
    assert snapshot[1] == last
    hub = redis_hub(redis, Bus(redis, "n2", clock), clock)
    loaded = await hub.room(R)
    assert loaded.snapshot() == room.snapshot()


async def test_a_thousand_visits_leave_a_bounded_room(serve: Serve, redis: Redis) -> None:
    """Issue 10: every visit used to leave its events, its routing entry and its names
    for ever. With a day's retention and a visit every ten minutes, a thousand visits
    (about seven days) leave about a day of events, and nobody's entry or name."""
    clock = FakeClock()
    node = await serve(clock=clock, retention=DAY, retention_every=0.02)
    room = "r_busy"
    host = await node.connect(
        room=room, token=node.token(room, Role.HOST, subject="dr-lee", name="Dr Lee", capacity=1)
    )
    await host.start()
    await host.expect("admitted")
    for n in range(1000):
        clock.advance(600.0)
        patient = await node.connect(
            room=room, token=node.token(room, Role.PATIENT, subject=f"p{n}", name=f"Patient {n}")
        )
        assert patient.welcome["stage"] == "in_call"
        await patient.leave()
        await patient.closed()
    per_visit, visits_a_day = 4, DAY / 600.0  # arrived, entered, exited, departed

    async def bounded() -> bool:
        return await redis.xlen(events_key(RoomId(room))) <= per_visit * (visits_a_day + 20)

    for _ in range(500):
        if await bounded():
            break
        await asyncio.sleep(0.02)
    length = await redis.xlen(events_key(RoomId(room)))
    assert length <= per_visit * (visits_a_day + 20), length
    # Nobody's routing entry or name is left but the host's, who is still here.
    where: Any = await redis.hgetall(where_key(RoomId(room)))
    names: Any = await redis.hgetall(names_key(RoomId(room)))
    assert list(where) == [host.participant_id.encode()]
    assert names == {host.participant_id.encode(): b"Dr Lee"}
    # The room is still whole: a patient now still enters the running call.
    late = await node.connect(room=room, token=node.token(room, Role.PATIENT, subject="late"))
    assert late.welcome["stage"] == "in_call"
    entries: Any = await redis.xrange(events_key(RoomId(room)))
    stored = [msgpack.unpackb(fields[b"e"]) for _, fields in entries]
    assert all("name" not in event for event in stored)
    assert EventKind.ARRIVED.value in {event["kind"] for event in stored}
