"""The hub's ports, one contract for both implementations: the same tests run on the
in-memory adapters (`signalling.memory`) and on the Redis ones (`signalling.redis_ports`,
`signalling.bus.Bus`, against a real redis-server), so the fake the hub's unit tests use
(tests/signalling/unit) cannot drift from what runs in production.

The ``ports`` fixture is parametrised by implementation, as tests/signalling/api/
test_contract.py is by deployment (one Redis, a cluster).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable

import pytest

from rooms.events import EventKind
from rooms.ids import AppointmentId, ParticipantId, RoomId
from rooms.roles import Role
from rooms.room import Room
from signalling.bus import Bus
from signalling.keys import feed_channel
from signalling.memory import MemoryBus, MemoryFeeds, MemoryRoomLog, World
from signalling.ports import Feed, FeedItem, Feeds, Membership, RoomLog
from signalling.records import EMPTY, Conflict, encode, parse_feed
from signalling.redis_client import connect as connect_redis
from signalling.redis_ports import RedisFeeds, RedisRoomLog
from signalling.redis_server import RedisProcess
from signalling.wire import Message
from tests.signalling.unit.support import Clock

R = RoomId("r1")
A = ParticipantId("p_a")
B = ParticipantId("p_b")
WAIT = 5.0  # seconds a feed may take to bring an item


@dataclasses.dataclass
class Ports:
    log: RoomLog
    feeds: Feeds
    bus: Callable[[str], Membership]  # the bus of node ``id``
    clock: Clock


@pytest.fixture(params=["memory", "redis"])
async def ports(request: pytest.FixtureRequest) -> AsyncIterator[Ports]:
    clock = Clock()
    if request.param == "memory":
        world = World(clock)
        yield Ports(MemoryRoomLog(world), MemoryFeeds(world), lambda n: MemoryBus(world, n), clock)
        return
    server: RedisProcess = request.getfixturevalue("redis_server")
    redis = connect_redis(server.url)
    try:
        yield Ports(RedisRoomLog(redis), RedisFeeds(redis), lambda n: Bus(redis, n, clock), clock)
    finally:
        await redis.aclose()


def _arrivals(*pids: ParticipantId) -> Room:
    room = Room(R)
    for pid in pids:
        room.arrive(pid, Role.GUEST, now=1.0, connection=f"c_{pid}")
    return room


async def _item(feed: Feed, kind: str) -> FeedItem:
    async with asyncio.timeout(WAIT):
        while True:
            item = await feed.get(WAIT)
            if item is not None and item.kind == kind:
                return item


# -- the room log ---------------------------------------------------------------------------


async def test_appended_events_are_read_back_in_order(ports: Ports) -> None:
    log = ports.log
    assert await log.last_id(R) == EMPTY
    assert await log.read(R) == []
    first = Room(R).arrive(A, Role.HOST, now=1.0, connection="c1")
    ids = await log.append(R, EMPTY, first)
    second = _arrivals(A).arrive(B, Role.GUEST, now=2.0, connection="c2")
    more = await log.append(R, ids[-1], second)
    assert await log.last_id(R) == more[-1]
    assert await log.read(R) == [(ids[0], first[0]), (more[0], second[0])]
    assert await log.read(R, after=ids[0]) == [(more[0], second[0])]


async def test_an_append_on_a_stream_that_moved_on_changes_nothing(ports: Ports) -> None:
    log = ports.log
    ids = await log.append(R, EMPTY, Room(R).arrive(A, Role.HOST, now=1.0))
    late = _arrivals().arrive(B, Role.GUEST, now=2.0)
    with pytest.raises(Conflict) as raised:
        await log.append(R, EMPTY, late, names={B: "Bea"})
    assert raised.value.last_id == ids[-1]
    assert len(await log.read(R)) == 1
    assert await log.names(R, [B]) == {}


async def test_names_are_kept_with_arrivals_and_forgotten_with_departures(
    ports: Ports,
) -> None:
    log = ports.log
    room = Room(R)
    events = room.arrive(A, Role.HOST, now=1.0) + room.arrive(B, Role.GUEST, now=1.0)
    ids = await log.append(R, EMPTY, events, names={A: "Ada", B: "Bea"})
    assert await log.names(R, [A, B, ParticipantId("p_x")]) == {A: "Ada", B: "Bea"}
    await log.append(R, ids[-1], room.leave(B, now=2.0), gone=[(B, None)])
    assert await log.names(R, [A, B]) == {A: "Ada"}


async def test_an_append_is_published_on_the_rooms_feed(ports: Ports) -> None:
    feed = ports.feeds.subscriber()
    try:
        await feed.subscribe(feed_channel(R))
        assert (await _item(feed, "subscribe")).channel == feed_channel(R)
        assert feed.connected
        events = Room(R).arrive(A, Role.HOST, now=1.0)
        ids = await ports.log.append(R, EMPTY, events, names={A: "Ada"})
        item = await _item(feed, "message")
        assert item.channel == feed_channel(R)
        assert parse_feed(item.data) == (EMPTY, ids, [encode(e) for e in events], {A: "Ada"})
        await feed.unsubscribe(feed_channel(R))
        assert (await _item(feed, "unsubscribe")).channel == feed_channel(R)
    finally:
        await feed.aclose()


async def test_a_room_with_no_snapshot_has_none(ports: Ports) -> None:
    assert await ports.log.snapshot(R) is None
    await ports.log.note_window(R, AppointmentId("a1"), 100.0)
    await ports.log.note_window(R, AppointmentId("a1"), 200.0)


# -- the bus --------------------------------------------------------------------------------


async def test_a_route_is_found_until_its_own_connection_unregisters(ports: Ports) -> None:
    one, two = ports.bus("n_one"), ports.bus("n_two")
    assert await one.locate(R, A) is None
    await one.register(R, A, "c1")
    assert await two.locate(R, A) == "n_one"
    await one.unregister(R, A, "c_old")  # not the connection routed to: kept
    assert await two.locate(R, A) == "n_one"
    await two.register(R, A, "c2")  # taken over on another node
    await one.unregister(R, A, "c1")
    assert await one.locate(R, A) == "n_two"
    await two.unregister(R, A, "c2")
    assert await one.locate(R, A) is None


async def test_a_departure_forgets_the_route_of_the_connection_it_left_on(ports: Ports) -> None:
    bus = ports.bus("n_one")
    await bus.register(R, A, "c1")
    room = Room(R)
    ids = await ports.log.append(R, EMPTY, room.arrive(A, Role.GUEST, now=1.0, connection="c1"))
    departed = room.leave(A, now=2.0)
    assert departed[-1].kind is EventKind.DEPARTED
    await ports.log.append(R, ids[-1], departed, gone=[(A, "c1")])
    assert await bus.locate(R, A) is None


async def test_a_message_sent_to_a_node_reaches_its_listener(ports: Ports) -> None:
    one, two = ports.bus("n_one"), ports.bus("n_two")
    got: list[tuple[RoomId, ParticipantId, Message]] = []
    arrived = asyncio.Event()

    def receive(room_id: RoomId, to: ParticipantId, message: Message) -> None:
        got.append((room_id, to, message))
        arrived.set()

    ready = asyncio.Event()
    listening = asyncio.create_task(two.listen(receive, ready))
    try:
        await ready.wait()
        await one.send("n_two", R, B, {"type": "offer", "sdp": "v=0"})
        async with asyncio.timeout(WAIT):
            await arrived.wait()
        assert got == [(R, B, {"type": "offer", "sdp": "v=0"})]
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)


async def test_a_dead_node_is_claimed_once_and_its_connections_are_listed(ports: Ports) -> None:
    dead, one, two = ports.bus("n_dead"), ports.bus("n_one"), ports.bus("n_two")
    await dead.heartbeat()
    await dead.register(R, A, "c1")
    await one.register(R, B, "c2")
    ports.clock.advance(10)
    await one.heartbeat()
    await two.heartbeat()
    assert await one.dead_nodes(5.0) == ["n_dead"]
    assert await dead.dead_nodes(5.0) == []  # never itself
    assert await one.held_by("n_dead") == {R: [(A, "c1")]}
    assert await one.claim("n_dead")
    assert not await two.claim("n_dead")
    await one.forget("n_dead")
    assert await two.dead_nodes(5.0) == []
    assert await two.held_by("n_dead") == {}


async def test_a_room_left_is_not_looked_at_by_the_clean_up(ports: Ports) -> None:
    dead, one = ports.bus("n_dead"), ports.bus("n_one")
    await dead.register(R, A, "c1")
    await dead.unserve(R)
    assert await one.held_by("n_dead") == {}
    await dead.serve(R)
    assert await one.held_by("n_dead") == {R: [(A, "c1")]}
