"""The feed follower: hubs on one world see each other's events; nothing is missed."""

from __future__ import annotations

from rooms.events import Event
from rooms.ids import RoomId
from rooms.roles import Role
from signalling.keys import feed_channel
from signalling.memory import World, memory_hub
from signalling.records import StreamId
from tests.signalling.unit.support import (
    GUEST,
    HOST,
    PATIENT,
    ROOM,
    Clock,
    FakePeer,
    arrive,
    fold,
    join,
    settle,
    tailing,
)


async def test_two_hubs_on_one_world_see_each_others_events(world: World, clock: Clock) -> None:
    one, two = memory_hub(world, "a"), memory_hub(world, "b")
    async with tailing(one, two):
        host = FakePeer("c1")
        await join(one, HOST, host, arrive(HOST, Role.HOST, clock, "c1"))
        await join(two, PATIENT, FakePeer("c2"), arrive(PATIENT, Role.PATIENT, clock, "c2"))
        await settle(lambda: PATIENT in fold(one).participants, "the arrival on the other node")
        await two.execute(ROOM, arrive(GUEST, Role.GUEST, clock, "c3"))
        await settle(lambda: GUEST in fold(one).participants, "the second arrival")
        assert fold(one).snapshot() == fold(two).snapshot()
        assert host.types().count("roster") >= 1  # the host was told


async def test_a_feed_message_that_does_not_follow_on_makes_the_node_read_the_stream(
    world: World, clock: Clock
) -> None:
    one, two = memory_hub(world, "a"), memory_hub(world, "b")
    async with tailing(one, two):
        await join(one, HOST, FakePeer("c1"), arrive(HOST, Role.HOST, clock, "c1"))
        await two.room(ROOM)
        reads: list[StreamId] = []
        read = one.log.read

        async def spy(room_id: RoomId, after: StreamId = "0-0") -> list[tuple[StreamId, Event]]:
            reads.append(after)
            return await read(room_id, after)

        one.log.read = spy  # type: ignore[method-assign]
        world.lose(feed_channel(ROOM))  # one never hears of the first of these
        await two.execute(ROOM, arrive(PATIENT, Role.PATIENT, clock, "c2"))
        await two.execute(ROOM, arrive(GUEST, Role.GUEST, clock, "c3"))
        await settle(lambda: GUEST in fold(one).participants, "the node to catch up")
        assert PATIENT in fold(one).participants  # nothing missed
        assert len(reads) == 1  # read the stream once, from what it had folded
        assert fold(one).snapshot() == fold(two).snapshot()


async def test_an_unreadable_feed_message_makes_the_node_read_the_stream(
    world: World, clock: Clock
) -> None:
    one, two = memory_hub(world, "a"), memory_hub(world, "b")
    async with tailing(one, two):
        await join(one, HOST, FakePeer("c1"), arrive(HOST, Role.HOST, clock, "c1"))
        world.lose(feed_channel(ROOM))
        await two.execute(ROOM, arrive(PATIENT, Role.PATIENT, clock, "c2"))
        world.publish(feed_channel(ROOM), b"\xc1 not msgpack")
        await settle(lambda: PATIENT in fold(one).participants, "the node to read the stream")


async def test_a_room_no_longer_served_is_not_followed(world: World, clock: Clock) -> None:
    one, two = memory_hub(world, "a"), memory_hub(world, "b")
    async with tailing(one, two):
        await one.room(ROOM)
        assert world.subscribers[feed_channel(ROOM)]
        await one.sweep(grace=30.0)  # nobody attached, nobody absent: stop serving it
        assert one.peek(ROOM) is None
        assert not world.subscribers[feed_channel(ROOM)]
        await two.execute(ROOM, arrive(HOST, Role.HOST, clock, "c1"))
        assert one.peek(ROOM) is None
