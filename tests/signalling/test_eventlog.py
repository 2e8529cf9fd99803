"""The event log against a real redis-server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from rooms.events import Event, EventKind, WaitReason
from rooms.ids import ParticipantId, RoomId
from rooms.roles import Role
from signalling.eventlog import (
    EMPTY,
    Conflict,
    EventLog,
    decode,
    parse_feed,
    parse_id,
)
from signalling.keys import changes_of, events_key, feed_channel, where_key
from signalling.projector import queue_change
from signalling.redis_server import RedisProcess

ROOM = RoomId("r1")
P = ParticipantId("p1")


def arrived(at: float) -> Event:
    return Event(EventKind.ARRIVED, at, actor=P, participant=P, role=Role.PATIENT)


def knocked(at: float) -> Event:
    return Event(EventKind.KNOCKED, at, actor=P, participant=P, reason=WaitReason.HOST_NOT_STARTED)


async def test_append_then_read_back_in_order(redis: Redis) -> None:
    log = EventLog(redis)
    ids = await log.append(ROOM, EMPTY, [arrived(1.0), knocked(2.0)])
    assert len(ids) == 2
    assert parse_id(ids[0]) < parse_id(ids[1])
    read = await log.read(ROOM)
    assert [(i, e) for i, e in read] == [(ids[0], arrived(1.0)), (ids[1], knocked(2.0))]
    assert await log.read(ROOM, after=ids[0]) == [(ids[1], knocked(2.0))]
    assert await redis.exists(events_key(ROOM)) == 1


async def test_append_refuses_a_stale_expectation_and_writes_nothing(redis: Redis) -> None:
    log = EventLog(redis)
    first = await log.append(ROOM, EMPTY, [arrived(1.0)])
    with pytest.raises(Conflict) as caught:
        await log.append(ROOM, EMPTY, [knocked(2.0)])
    assert caught.value.last_id == first[0]
    assert [e for _, e in await log.read(ROOM)] == [arrived(1.0)]


async def test_concurrent_appends_on_one_expectation_let_exactly_one_win(redis: Redis) -> None:
    log = EventLog(redis)
    base = await log.append(ROOM, EMPTY, [arrived(1.0)])
    results = await asyncio.gather(
        *(log.append(ROOM, base[0], [knocked(float(i))]) for i in range(20)),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, Conflict) for r in results if r not in winners)
    assert len(await log.read(ROOM)) == 2


async def test_read_pages_through_long_streams(redis: Redis) -> None:
    log = EventLog(redis)
    last = EMPTY
    for batch in range(3):
        ids = await log.append(ROOM, last, [knocked(float(batch * 500 + i)) for i in range(500)])
        last = ids[-1]
    events = await log.read(ROOM)
    assert [e.at for _, e in events] == [float(i) for i in range(1500)]


async def test_acknowledged_events_survive_a_redis_crash(redis_server: RedisProcess) -> None:
    client = Redis.from_url(redis_server.url)
    ids = await EventLog(client).append(ROOM, EMPTY, [arrived(1.0), knocked(2.0)])
    await client.aclose()
    redis_server.kill()  # SIGKILL: no shutdown save
    redis_server.start()
    client = Redis.from_url(redis_server.url)
    try:
        assert [i for i, _ in await EventLog(client).read(ROOM)] == ids
    finally:
        await client.aclose()


async def test_append_publishes_its_events_on_the_room_feed(redis: Redis) -> None:
    log = EventLog(redis)
    first = await log.append(ROOM, EMPTY, [arrived(1.0)])
    feed = redis.pubsub()
    await feed.subscribe(feed_channel(ROOM))
    assert (await feed.get_message(timeout=5.0))["type"] == "subscribe"
    ids = await log.append(ROOM, first[0], [knocked(2.0)], names={P: "Zoë Ñ"})
    message = await feed.get_message(timeout=5.0)
    previous, published, payloads, names = parse_feed(message["data"])
    assert (previous, published) == (first[0], ids)
    assert [decode(p) for p in payloads] == [knocked(2.0)]
    assert names == {P: "Zoë Ñ"}
    await feed.aclose()  # type: ignore[no-untyped-call]


async def test_names_live_beside_the_stream_and_go_with_the_departure(redis: Redis) -> None:
    """The events are pseudonymous: the names of the people present are kept in the room's
    names hash, written with their arrival and deleted with their departure, as is the
    routing entry of the connection they left on (but not a newer one's)."""
    log = EventLog(redis)
    other = ParticipantId("p2")
    await redis.hset(where_key(ROOM), mapping={P: "n_a c_1", other: "n_b c_9"})
    ids = await log.append(ROOM, EMPTY, [arrived(1.0)], names={P: "Sam", other: "Kim"})
    stored: Any = await redis.xrange(events_key(ROOM))
    assert b"Sam" not in b"".join(fields[b"e"] for _, fields in stored)
    assert await log.names(ROOM, [P, other, ParticipantId("nobody")]) == {P: "Sam", other: "Kim"}
    departed = Event(EventKind.DEPARTED, 2.0, actor=P, participant=P)
    ids = await log.append(ROOM, ids[-1], [departed], gone=[(P, "c_1"), (other, "c_1")])
    assert await log.names(ROOM, [P, other]) == {}
    # P's entry named the connection it left on; the other's names a newer connection.
    assert await redis.hgetall(where_key(ROOM)) == {other.encode(): b"n_b c_9"}
    with pytest.raises(Conflict):
        await log.append(ROOM, EMPTY, [arrived(3.0)], names={P: "Again"})
    assert await log.names(ROOM, [P]) == {}  # nothing of a refused append is kept


async def test_a_note_goes_with_the_append_and_survives_a_script_flush(redis: Redis) -> None:
    log = EventLog(redis, note=queue_change)
    ids = await log.append(ROOM, EMPTY, [arrived(1.0)])
    await redis.script_flush()  # as after a restart: the script must be loaded again
    ids += await log.append(ROOM, ids[0], [knocked(2.0)])
    with pytest.raises(Conflict):
        await log.append(ROOM, ids[0], [knocked(3.0)])
    assert [e for _, e in await log.read(ROOM)] == [arrived(1.0), knocked(2.0)]
    notes: Any = await redis.xrange(changes_of(ROOM))
    assert len(notes) >= 3  # one per attempt, even the refused one (harmless)
    assert {fields[b"r"] for _, fields in notes} == {ROOM.encode()}
