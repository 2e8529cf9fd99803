"""In-memory implementations of the hub's ports (`signalling.ports`), for unit tests.

Everything lives in one `World`, the stand-in for one Redis: several hubs built on the
same world (`memory_hub`, one per "node") share the rooms' streams, names, routing
entries, node registry and channels, as nodes share a Redis. The world behaves as the
Redis adapters do, and tests/signalling/test_ports_contract.py runs the same tests on both:

- `MemoryRoomLog.append` is a compare-and-append that publishes the feed message on the
  room's feed channel exactly as the append script does (`signalling.records.pack_feed`),
  and forgets the names and routing entries of those who depart;
- `MemoryBus.send` publishes the bus's batch (`signalling.bus.pack_batch`) on the target
  node's channel, and `MemoryBus.listen` hands it to the node's receiver;
- heartbeats, dead nodes and claims follow the world's clock (injected: it moves only when
  the test moves it).

A test may lose messages on a channel (`World.lose`) or take the whole world down
(`World.down`: every call raises `Unavailable`, the world's `Faults`). Nothing here does
I/O or reads the time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence

from rooms.events import Event
from rooms.ids import AppointmentId, ParticipantId, RoomId
from rooms.room import Room
from signalling.bus import deliver_batch, pack_batch
from signalling.hub import Hub
from signalling.keys import feed_channel, node_channel
from signalling.ports import Faults, Receiver
from signalling.pubsub import Item
from signalling.records import (
    EMPTY,
    Conflict,
    StreamId,
    decode,
    encode,
    pack_feed,
    parse_id,
    parse_route,
    route,
)
from signalling.wire import Message

CLAIM_TTL = 60.0  # seconds a dead node's clean-up stays claimed (the Redis key's expiry)


class Unavailable(Exception):
    """The world is down (`World.down`): what Redis being unreachable is to the Redis
    adapters."""


MEMORY_FAULTS = Faults(errors=(Unavailable,), lost=Unavailable)


class World:
    """What the nodes of one test share. ``clock`` gives unix seconds."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.down = False
        self.streams: dict[RoomId, list[tuple[StreamId, bytes]]] = {}
        self.names: dict[RoomId, dict[ParticipantId, str]] = {}
        self.where: dict[RoomId, dict[ParticipantId, str]] = {}  # pid -> "<node> <conn>"
        self.snapshots: dict[RoomId, tuple[Room, StreamId]] = {}
        self.windows: dict[tuple[RoomId, AppointmentId], float] = {}
        self.heartbeats: dict[str, float] = {}
        self.node_rooms: dict[str, set[RoomId]] = {}
        self.claims: dict[str, tuple[str, float]] = {}  # node -> (claimed by, until)
        self.published: dict[str, list[bytes]] = {}  # channel -> every message, in order
        self.subscribers: dict[str, set[MemoryFeed]] = {}  # channel -> feeds on it
        self._losing: dict[str, int] = {}
        self._last = (0, 0)

    def check(self) -> None:
        if self.down:
            raise Unavailable("the world is down")

    def lose(self, channel: str, count: int = 1) -> None:
        """The next ``count`` messages published on ``channel`` reach no subscriber."""
        self._losing[channel] = self._losing.get(channel, 0) + count

    def publish(self, channel: str, data: bytes) -> None:
        self.published.setdefault(channel, []).append(data)
        if self._losing.get(channel, 0):
            self._losing[channel] -= 1
            return
        for feed in self.subscribers.get(channel, ()):
            feed.put(Item("message", channel, data))

    def save_snapshot(self, room: Room, last_id: StreamId) -> None:
        """Keep ``room`` as the snapshot of its stream up to ``last_id`` (the projector's
        work, on Redis)."""
        self.snapshots[room.id] = (room.clone(), last_id)

    def new_id(self) -> StreamId:
        """The next stream id, ``<ms>-<seq>`` from the clock, always increasing (as
        Redis makes them)."""
        ms, seq = int(self.clock() * 1000), 0
        if ms <= self._last[0]:
            ms, seq = self._last[0], self._last[1] + 1
        self._last = (ms, seq)
        return f"{ms}-{seq}"


class MemoryRoomLog:
    """The rooms' streams of a `World` (`signalling.ports.RoomLog`)."""

    def __init__(self, world: World) -> None:
        self.world = world

    async def append(
        self,
        room_id: RoomId,
        expected: StreamId,
        events: Sequence[Event],
        *,
        names: Mapping[ParticipantId, str] | None = None,
        gone: Sequence[tuple[ParticipantId, str | None]] = (),
    ) -> list[StreamId]:
        world = self.world
        world.check()
        last = await self.last_id(room_id)
        if last != expected:
            raise Conflict(last)
        stream = world.streams.setdefault(room_id, [])
        encoded = [encode(e) for e in events]
        ids = [world.new_id() for _ in encoded]
        stream += zip(ids, encoded, strict=True)
        kept = world.names.setdefault(room_id, {})
        kept.update(names or {})
        where = world.where.setdefault(room_id, {})
        for pid, connection in gone:
            kept.pop(pid, None)
            held = where.get(pid)
            if held is not None and connection and parse_route(held)[1] == connection:
                del where[pid]
        world.publish(feed_channel(room_id), pack_feed(expected, ids, encoded, names or {}))
        return ids

    async def read(self, room_id: RoomId, after: StreamId = EMPTY) -> list[tuple[StreamId, Event]]:
        self.world.check()
        start = parse_id(after)
        stream = self.world.streams.get(room_id, [])
        return [(i, decode(e)) for i, e in stream if parse_id(i) > start]

    async def last_id(self, room_id: RoomId) -> StreamId:
        self.world.check()
        stream = self.world.streams.get(room_id)
        return stream[-1][0] if stream else EMPTY

    async def names(
        self, room_id: RoomId, participants: Sequence[ParticipantId]
    ) -> dict[ParticipantId, str]:
        self.world.check()
        kept = self.world.names.get(room_id, {})
        return {p: kept[p] for p in participants if p in kept}

    async def snapshot(self, room_id: RoomId) -> tuple[Room, StreamId] | None:
        self.world.check()
        kept = self.world.snapshots.get(room_id)
        return None if kept is None else (kept[0].clone(), kept[1])

    async def note_window(
        self, room_id: RoomId, appointment: AppointmentId, closes_at: float
    ) -> None:
        self.world.check()
        self.world.windows.setdefault((room_id, appointment), closes_at)


class MemoryFeed:
    """Subscriptions to a `World`'s channels (`signalling.ports.Feed`)."""

    lost = False  # never: a world's feed does not reconnect by itself

    def __init__(self, world: World) -> None:
        self._world = world
        self._queue: asyncio.Queue[Item] = asyncio.Queue()
        self._channels: set[str] = set()
        self._closed = False

    @property
    def connected(self) -> bool:
        return not self._closed and not self._world.down

    def put(self, item: Item) -> None:
        self._queue.put_nowait(item)

    async def subscribe(self, *channels: str) -> None:
        self._check()
        for channel in channels:
            self._world.subscribers.setdefault(channel, set()).add(self)
            self._channels.add(channel)
            self.put(Item("subscribe", channel, b""))

    async def unsubscribe(self, *channels: str) -> None:
        self._check()
        for channel in channels:
            self._world.subscribers.get(channel, set()).discard(self)
            self._channels.discard(channel)
            self.put(Item("unsubscribe", channel, b""))

    async def get(self, timeout: float) -> Item | None:
        self._check()
        try:
            async with asyncio.timeout(timeout):
                return await self._queue.get()
        except TimeoutError:
            return None

    async def aclose(self) -> None:
        self._closed = True
        for channel in self._channels:
            self._world.subscribers.get(channel, set()).discard(self)
        self._channels.clear()

    def _check(self) -> None:
        if self._closed:
            raise Unavailable("the feed is closed")
        self._world.check()


class MemoryFeeds:
    """Feeds on a `World` (`signalling.ports.Feeds`)."""

    def __init__(self, world: World) -> None:
        self.world = world

    def subscriber(self) -> MemoryFeed:
        return MemoryFeed(self.world)


class MemoryBus:
    """One node's membership in a `World` (`signalling.ports.Membership`)."""

    def __init__(self, world: World, node_id: str) -> None:
        self.world = world
        self.node_id = node_id

    async def heartbeat(self) -> None:
        self.world.check()
        self.world.heartbeats[self.node_id] = self.world.clock()

    async def register(self, room_id: RoomId, pid: ParticipantId, connection: str) -> None:
        self.world.check()
        self.world.where.setdefault(room_id, {})[pid] = route(self.node_id, connection)
        self.world.node_rooms.setdefault(self.node_id, set()).add(room_id)

    async def unregister(
        self, room_id: RoomId, pid: ParticipantId, connection: str, node_id: str | None = None
    ) -> None:
        self.world.check()
        where = self.world.where.get(room_id, {})
        if where.get(pid) == route(node_id or self.node_id, connection):
            del where[pid]

    async def locate(
        self, room_id: RoomId, pid: ParticipantId, connection: str | None = None
    ) -> str | None:
        self.world.check()
        held = self.world.where.get(room_id, {}).get(pid)
        return None if held is None else parse_route(held)[0]

    def send(
        self, node_id: str, room_id: RoomId, to: ParticipantId, message: Message
    ) -> asyncio.Future[None]:
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.world.down:
            sent.set_exception(Unavailable("not sent: the world is down"))
        else:
            self.world.publish(node_channel(node_id), pack_batch([room_id, to, message]))
            sent.set_result(None)
        return sent

    async def listen(self, receive: Receiver, ready: asyncio.Event | None = None) -> None:
        feed = MemoryFeed(self.world)
        try:
            await feed.subscribe(node_channel(self.node_id))
            if ready is not None:
                ready.set()
            while True:
                item = await feed.get(1.0)
                if item is not None and item.kind == "message":
                    deliver_batch(item.data, receive)
        finally:
            with contextlib.suppress(Unavailable):
                await feed.aclose()

    async def serve(self, room_id: RoomId) -> None:
        self.world.check()
        self.world.node_rooms.setdefault(self.node_id, set()).add(room_id)

    async def unserve(self, room_id: RoomId) -> None:
        self.world.check()
        self.world.node_rooms.get(self.node_id, set()).discard(room_id)

    async def dead_nodes(self, timeout: float) -> list[str]:
        self.world.check()
        oldest = self.world.clock() - timeout
        beats = sorted(self.world.heartbeats.items(), key=lambda beat: beat[1])
        return [node for node, at in beats if at <= oldest and node != self.node_id]

    async def claim(self, node_id: str) -> bool:
        self.world.check()
        now = self.world.clock()
        held = self.world.claims.get(node_id)
        if held is not None and held[1] > now:
            return False
        self.world.claims[node_id] = (self.node_id, now + CLAIM_TTL)
        return True

    async def held_by(self, node_id: str) -> dict[RoomId, list[tuple[ParticipantId, str]]]:
        self.world.check()
        out: dict[RoomId, list[tuple[ParticipantId, str]]] = {}
        for room_id in self.world.node_rooms.get(node_id, set()):
            held = []
            for pid, value in self.world.where.get(room_id, {}).items():
                node, connection = parse_route(value)
                if node == node_id:
                    held.append((pid, connection))
            if held:
                out[room_id] = held
        return out

    async def forget(self, node_id: str) -> None:
        self.world.check()
        self.world.heartbeats.pop(node_id, None)
        self.world.node_rooms.pop(node_id, None)

    async def leave(self) -> None:
        await self.forget(self.node_id)


def memory_hub(world: World, node_id: str) -> Hub:
    """A hub on ``world``, as node ``node_id``, on the world's clock."""
    return Hub(
        MemoryRoomLog(world),
        MemoryFeeds(world),
        MemoryBus(world, node_id),
        world.clock,
        faults=MEMORY_FAULTS,
    )
