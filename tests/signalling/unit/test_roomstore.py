"""The room store: folds, loading from a snapshot, compare-and-append and its retries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from rooms.events import Event, EventKind
from rooms.ids import ParticipantId, RoomId
from rooms.roles import Role
from rooms.room import Room
from signalling.errors import RoomBusy
from signalling.hub import Hub
from signalling.memory import (
    MEMORY_FAULTS,
    MemoryBus,
    MemoryFeeds,
    MemoryRoomLog,
    World,
    memory_hub,
)
from signalling.records import Conflict, StreamId
from signalling.roomstore import ATTEMPTS
from tests.signalling.unit.support import GUEST, HOST, PATIENT, ROOM, Clock, arrive


async def test_a_command_is_appended_to_the_stream_and_folded(world: World, clock: Clock) -> None:
    hub = memory_hub(world, "a")
    events = await hub.execute(ROOM, arrive(HOST, Role.HOST, clock, "c1"))
    assert [e.kind for e in events] == [EventKind.ARRIVED]
    room = hub.peek(ROOM)
    assert room is not None
    assert HOST in room.participants
    assert [e for _, e in await hub.log.read(ROOM)] == events


async def test_a_conflict_catches_up_and_decides_again(world: World, clock: Clock) -> None:
    one, two = memory_hub(world, "a"), memory_hub(world, "b")  # neither follows the feed
    await one.room(ROOM)
    await two.execute(ROOM, arrive(HOST, Role.HOST, clock, "c1"))  # one's fold is behind
    tried: list[set[ParticipantId]] = []

    def command(room: Room) -> list[Event]:
        tried.append(set(room.participants))
        return room.arrive(PATIENT, Role.PATIENT, now=clock(), connection="c2")

    await one.execute(ROOM, command)
    assert tried == [set(), {HOST}]  # decided again on the fold brought up to date
    room = one.peek(ROOM)
    assert room is not None
    assert set(room.participants) == {HOST, PATIENT}
    assert len(await one.log.read(ROOM)) == 2


class _Contended(MemoryRoomLog):
    """A log on which another writer always gets there first."""

    appends = 0

    async def append(
        self,
        room_id: RoomId,
        expected: StreamId,
        events: Sequence[Event],
        *,
        names: Mapping[ParticipantId, str] | None = None,
        gone: Sequence[tuple[ParticipantId, str | None]] = (),
    ) -> list[StreamId]:
        self.appends += 1
        raise Conflict(await self.last_id(room_id))


async def test_a_room_that_always_moves_on_is_busy_after_the_attempts(
    world: World, clock: Clock
) -> None:
    log = _Contended(world)
    hub = Hub(log, MemoryFeeds(world), MemoryBus(world, "a"), clock, faults=MEMORY_FAULTS)
    with pytest.raises(RoomBusy):
        await hub.execute(ROOM, arrive(HOST, Role.HOST, clock, "c1"))
    assert log.appends == ATTEMPTS
    room = hub.peek(ROOM)
    assert room is not None
    assert not room.participants


async def test_a_command_with_no_events_appends_nothing(world: World, clock: Clock) -> None:
    hub = memory_hub(world, "a")
    assert await hub.execute(ROOM, lambda room: []) == []
    assert await hub.log.last_id(ROOM) == "0-0"


async def test_a_room_loads_from_its_snapshot_and_the_stream_after_it(
    world: World, clock: Clock
) -> None:
    writer = memory_hub(world, "a")
    await writer.execute(ROOM, arrive(HOST, Role.HOST, clock, "c1"))
    await writer.execute(ROOM, arrive(PATIENT, Role.PATIENT, clock, "c2"))
    folded = writer.peek(ROOM)
    assert folded is not None
    snapshot_id = await writer.log.last_id(ROOM)
    world.save_snapshot(folded, snapshot_id)
    await writer.execute(ROOM, arrive(GUEST, Role.GUEST, clock, "c3"))
    reader = memory_hub(world, "b")
    reads: list[StreamId] = []
    read = reader.log.read

    async def spy(room_id: RoomId, after: StreamId = "0-0") -> list[tuple[StreamId, Event]]:
        reads.append(after)
        return await read(room_id, after)

    reader.log.read = spy  # type: ignore[method-assign]
    loaded = await reader.room(ROOM)
    assert reads == [snapshot_id]  # never the history before the snapshot
    assert set(loaded.participants) == {HOST, PATIENT, GUEST}
    assert loaded.snapshot() == writer.peek(ROOM).snapshot()  # type: ignore[union-attr]


async def test_a_stream_behind_the_fold_is_folded_again_from_the_stream(
    world: World, clock: Clock
) -> None:
    """The stream lost its tail (a failover to a lagging replica): the stream is the truth."""
    hub = memory_hub(world, "a")
    await hub.execute(ROOM, arrive(HOST, Role.HOST, clock, "c1"))
    await hub.execute(ROOM, arrive(PATIENT, Role.PATIENT, clock, "c2"))
    del world.streams[ROOM][1:]  # the patient's arrival is lost
    await hub.execute(ROOM, arrive(GUEST, Role.GUEST, clock, "c3"))
    room = hub.peek(ROOM)
    assert room is not None
    assert set(room.participants) == {HOST, GUEST}
    assert len(await hub.log.read(ROOM)) == 2
