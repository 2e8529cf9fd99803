"""The rooms this node serves, kept up to date from their Redis event streams.

A room's state is the fold of its stream. Any node may decide a command on any room: it
tries the command on a copy of its fold and appends the resulting events with
compare-and-append; if another node appended first, it catches up and decides again. So a
rule checked by the core ("is there capacity?") holds for the room as a whole, across
nodes, with no leader and no lock in Redis.

Every node tails the streams of the rooms it serves (XREAD BLOCK) and fans new events
out to its own connections as messages. Fan-out only queues (`Peer.deliver` never
blocks), so a slow socket cannot hold up a room.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from admission.policy import check_signal
from admission.window import JoinWindow, WindowState
from rooms.events import Event, EventKind, ExitCause
from rooms.ids import AppointmentId, ParticipantId, RoomId
from rooms.room import Room
from signalling.bus import Bus
from signalling.errors import PeerUnavailable, RoomBusy
from signalling.eventlog import EMPTY, Conflict, EventLog, StreamId, decode, events_key, parse_id
from signalling.projector import note_change, note_window
from signalling.views import Snapshot, View, notices, updates
from signalling.wire import Message

log = logging.getLogger("vestibule.signalling.hub")

Command = Callable[[Room], list[Event]]

CLOSE_NORMAL = 1000
CLOSE_DENIED = 4403
CLOSE_REPLACED = 4409
ATTEMPTS = 20  # compare-and-append retries before a command gives up (room_busy)
TAIL_BLOCK_MS = 5000


class Peer(Protocol):
    """What the hub needs of a connection attached to a room."""

    view: View
    connection_id: str

    def deliver(self, message: Message) -> None:
        """Queue a message for the client; never blocks."""

    def close(self, code: int, reason: str) -> None:
        """Send what is queued, then close with ``code``; never blocks."""


@dataclass(slots=True)
class _Entry:
    room: Room
    last_id: StreamId = EMPTY
    peers: dict[ParticipantId, Peer] = field(default_factory=dict)
    window: JoinWindow | None = None
    appointment: AppointmentId | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    loaded: bool = False
    busy: int = 0  # joins and departures under way: the entry stays until they finish


class Hub:
    """All rooms with activity on this node."""

    def __init__(self, redis: Redis, bus: Bus, clock: Callable[[], float]) -> None:
        self.redis = redis
        self.log = EventLog(redis)
        self.bus = bus
        self.clock = clock
        self._rooms: dict[RoomId, _Entry] = {}
        self._wake_key = f"vst:node:{bus.node_id}:wake"
        self._tailing: frozenset[RoomId] = frozenset()
        self.sweeps = 0  # completed sweeps (lets tests wait for one)
        # Connections lost while Redis was unreachable, recorded by the next sweep.
        self._unrecorded: list[tuple[RoomId, ParticipantId, str, float]] = []

    # -- reading --------------------------------------------------------------------------

    async def room(self, room_id: RoomId) -> Room:
        """The room, brought up to date with its stream (read only: change it through
        `execute`)."""
        entry = await self._load(room_id)
        return entry.room

    @property
    def unrecorded(self) -> int:
        """Lost connections waiting for Redis to come back to be recorded."""
        return len(self._unrecorded)

    def peek(self, room_id: RoomId) -> Room | None:
        """This node's fold of the room as it is now, if it serves the room."""
        entry = self._rooms.get(room_id)
        return None if entry is None else entry.room

    async def _load(self, room_id: RoomId) -> _Entry:
        entry = self._rooms.get(room_id)
        if entry is None:
            entry = self._rooms[room_id] = _Entry(Room(room_id))
        if not entry.loaded:
            async with entry.lock:
                if not entry.loaded:
                    await self._catch_up(entry)
                    entry.loaded = True
                    await self._wake_tail()
        return entry

    async def _catch_up(self, entry: _Entry) -> None:
        self._absorb(entry, await self.log.read(entry.room.id, after=entry.last_id))

    async def _rebuild(self, entry: _Entry) -> None:
        """The stream is behind this node's fold (Redis came back without its tail, e.g.
        a failover to a lagging replica): fold the room again from what the stream holds,
        which is the truth, and tell everyone attached."""
        log.error("room %s: the stream lost events this node had folded; rebuilding", entry.room.id)
        entry.room = Room(entry.room.id)
        entry.last_id = EMPTY
        batch = await self.log.read(entry.room.id)
        for stream_id, event in batch:
            entry.room.apply(event)
            entry.last_id = stream_id
        self._fan_out(entry, [])

    def _absorb(self, entry: _Entry, batch: list[tuple[StreamId, Event]]) -> None:
        """Fold events read from the stream (skipping those already folded), fan out."""
        fresh: list[Event] = []
        for stream_id, event in batch:
            if parse_id(stream_id) > parse_id(entry.last_id):
                entry.room.apply(event)
                entry.last_id = stream_id
                fresh.append(event)
        if fresh:
            self._fan_out(entry, fresh)

    # -- commands -------------------------------------------------------------------------

    async def execute(self, room_id: RoomId, command: Command) -> list[Event]:
        """Decide ``command`` on the room and record its events; tell everyone attached.

        A command that raises has changed nothing; the error goes back to the caller."""
        entry = await self._load(room_id)
        return await self._commit(entry, command, None)

    async def _commit(
        self,
        entry: _Entry,
        command: Command,
        attach: Callable[[], tuple[ParticipantId, Peer]] | None,
    ) -> list[Event]:
        async with entry.lock:
            for _ in range(ATTEMPTS):
                trial = entry.room.clone()
                expected = entry.last_id
                events = command(trial)
                if events:
                    try:
                        ids = await self.log.append(entry.room.id, expected, events)
                    except Conflict as conflict:
                        if parse_id(conflict.last_id) < parse_id(entry.last_id):
                            await self._rebuild(entry)
                        else:
                            await self._catch_up(entry)
                        continue
                    await note_change(self.redis, entry.room.id)
                tail_was_first = entry.last_id != expected  # it folded and fanned out ours
                if events and not tail_was_first:
                    entry.room = trial
                    entry.last_id = ids[-1]
                if attach is None:
                    if events and not tail_was_first:
                        self._fan_out(entry, events)
                    return events
                pid, peer = attach()
                if tail_was_first or not events:
                    self._tell(entry, pid, peer, events)
                else:
                    self._fan_out(entry, events)
                return events
        raise RoomBusy("the room is too busy to decide this now: try again")

    async def join(
        self,
        room_id: RoomId,
        pid: ParticipantId,
        peer: Peer,
        command: Command,
        *,
        window: JoinWindow | None,
        appointment: AppointmentId | None,
        welcome: Callable[[Room], None],
    ) -> list[Event]:
        """Attach ``peer`` as participant ``pid`` and run its arrival ``command``.

        ``welcome`` is called with the room after the arrival and before any other message
        reaches the peer. An older connection of the same participant is closed as
        replaced."""
        entry = self._rooms.get(room_id) or self._rooms.setdefault(room_id, _Entry(Room(room_id)))
        entry.busy += 1
        try:
            return await self._join(entry, pid, peer, command, window, appointment, welcome)
        finally:
            entry.busy -= 1

    async def _join(
        self,
        entry: _Entry,
        pid: ParticipantId,
        peer: Peer,
        command: Command,
        window: JoinWindow | None,
        appointment: AppointmentId | None,
        welcome: Callable[[Room], None],
    ) -> list[Event]:
        room_id = entry.room.id
        await self._load(room_id)
        await self.bus.register(room_id, pid, peer.connection_id)
        if window is not None and appointment is not None:
            await note_window(self.redis, room_id, appointment, window.closes_at)
        previous: list[Peer] = []

        def attach() -> tuple[ParticipantId, Peer]:
            if window is not None:
                entry.window = window
            if appointment is not None:
                entry.appointment = appointment
            old = entry.peers.get(pid)
            if old is not None and old is not peer:
                previous.append(old)
            entry.peers[pid] = peer
            welcome(entry.room)
            return pid, peer

        try:
            events = await self._commit(entry, command, attach)
        except BaseException:
            await self.bus.unregister(room_id, pid, peer.connection_id)
            raise
        for old in previous:
            old.close(CLOSE_REPLACED, "replaced by a newer connection")
        return events

    async def detach(self, room_id: RoomId, pid: ParticipantId, peer: Peer) -> None:
        """The peer's connection is gone. If it was still the participant's connection, the
        participant keeps its place for the grace period (see `sweep`)."""
        entry = self._rooms.get(room_id)
        if entry is None or entry.peers.get(pid) is not peer:
            return
        del entry.peers[pid]
        # Until the loss is recorded (or queued for the next sweep) the room must stay
        # served: a sweep in between would otherwise see no peer and nobody absent.
        entry.busy += 1
        try:
            await self._record_lost(room_id, pid, peer.connection_id, self.clock())
        except RedisError:
            self._unrecorded.append((room_id, pid, peer.connection_id, self.clock()))
            raise
        finally:
            entry.busy -= 1

    async def _record_lost(
        self, room_id: RoomId, pid: ParticipantId, connection: str, now: float
    ) -> None:
        await self.bus.unregister(room_id, pid, connection)

        def disconnect(room: Room) -> list[Event]:
            if pid not in room.participants:
                return []
            return room.disconnect(pid, now, connection=connection)

        await self.execute(room_id, disconnect)

    # -- transient messages ---------------------------------------------------------------

    async def relay(
        self, room_id: RoomId, sender: ParticipantId, to: ParticipantId, message: Message
    ) -> None:
        """Pass a call set-up message between two participants of the same call, through
        Redis only when the recipient is connected to another node."""
        entry = self._rooms[room_id]
        check_signal(entry.room, sender, to)
        peer = entry.peers.get(to)
        if peer is not None:
            peer.deliver(message)
            return
        node = await self.bus.locate(room_id, to)
        if node is None or node == self.bus.node_id:
            raise PeerUnavailable(f"cannot reach {to}: its connection is down", {"participant": to})
        await self.bus.send(node, room_id, to, message)

    def receive(self, room_id: RoomId, to: ParticipantId, message: Message) -> None:
        """A transient message from another node for one of ours."""
        entry = self._rooms.get(room_id)
        peer = None if entry is None else entry.peers.get(to)
        if peer is not None:
            peer.deliver(message)

    # -- background work ------------------------------------------------------------------

    async def tail(self, ready: asyncio.Event | None = None) -> None:
        """Follow the streams of the rooms this node serves, until cancelled."""
        wake_id = "$"
        backoff = 0.1
        while True:
            entries = {rid: e for rid, e in self._rooms.items() if e.loaded}
            self._tailing = frozenset(entries)
            streams: dict[Any, Any] = {events_key(r): e.last_id for r, e in entries.items()}
            streams[self._wake_key] = wake_id
            if ready is not None:
                ready.set()
            try:
                reply: Any = await self.redis.xread(streams, count=1000, block=TAIL_BLOCK_MS)
                backoff = 0.1
            except RedisError as exc:
                log.warning("tail: redis unavailable (%s); retrying", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            for key, items in reply or []:
                name = key.decode()
                if name == self._wake_key:
                    wake_id = items[-1][0].decode()
                    continue
                room_id = RoomId(name.split("{", 1)[1].rsplit("}", 1)[0])
                entry = self._rooms.get(room_id)
                if entry is not None:
                    batch = [(i.decode(), decode(fields[b"e"])) for i, fields in items]
                    self._absorb(entry, batch)

    async def _wake_tail(self) -> None:
        """Make the tail start following a room it does not follow yet."""
        await self.redis.xadd(self._wake_key, {"w": 1}, maxlen=10, approximate=True)

    async def sweep(self, grace: float) -> int:
        """Remove participants whose connection has been gone longer than ``grace``, and
        stop serving rooms with no local connection and nobody absent. Returns how many
        participants were removed."""
        now = self.clock()
        removed = 0
        unrecorded, self._unrecorded = self._unrecorded, []
        for index, lost in enumerate(unrecorded):
            try:
                await self._record_lost(*lost)
            except RedisError:
                self._unrecorded += unrecorded[index:]
                raise
        for room_id, entry in list(self._rooms.items()):
            absent = any(not p.connected for p in entry.room.participants.values())
            if absent:
                events = await self.execute(room_id, lambda room: room.expire(now, grace))
                removed += sum(1 for e in events if e.kind is EventKind.DEPARTED)
            elif (
                not entry.peers
                and not entry.busy
                and not entry.lock.locked()
                and not any(lost[0] == room_id for lost in self._unrecorded)
            ):
                del self._rooms[room_id]
        self.sweeps += 1
        return removed

    async def reap(self, node_timeout: float) -> int:
        """Mark the participants of dead nodes disconnected, so their grace period runs and
        they can resume elsewhere. Returns how many were marked."""
        marked = 0
        for node in await self.bus.dead_nodes(node_timeout):
            if not await self.bus.claim(node):
                continue
            log.warning("node %s stopped answering: cleaning up after it", node)
            now = self.clock()
            for room_id, held in (await self.bus.held_by(node)).items():
                for pid, connection in held:
                    events = await self.execute(room_id, _lost(pid, connection, now))
                    marked += len(events)
                    await self.bus.unregister(room_id, pid, connection, node)
            await self.bus.forget(node)
        return marked

    # -- fan-out --------------------------------------------------------------------------

    def _fan_out(self, entry: _Entry, events: list[Event]) -> None:
        snapshot = self._snapshot(entry)
        for pid, peer in list(entry.peers.items()):
            self._tell(entry, pid, peer, events, snapshot)
        for event in events:
            if event.kind is EventKind.RECONNECTED and event.participant is not None:
                # Taken over by a newer connection, perhaps on another node: ours is stale.
                stale = entry.peers.get(event.participant)
                if stale is not None and stale.connection_id != event.connection:
                    del entry.peers[event.participant]
                    stale.close(CLOSE_REPLACED, "replaced by a newer connection")
            if event.kind is EventKind.DEPARTED and event.participant is not None:
                gone = entry.peers.get(event.participant)
                if gone is not None:
                    del entry.peers[event.participant]
                    denied = event.cause is ExitCause.DENIED
                    gone.close(
                        CLOSE_DENIED if denied else CLOSE_NORMAL,
                        "denied by the host" if denied else "left the room",
                    )

    def _tell(
        self,
        entry: _Entry,
        pid: ParticipantId,
        peer: Peer,
        events: list[Event],
        snapshot: Snapshot | None = None,
    ) -> None:
        for message in notices(pid, events):
            peer.deliver(message)
        for message in updates(peer.view, pid, snapshot or self._snapshot(entry)):
            peer.deliver(message)

    def _snapshot(self, entry: _Entry) -> Snapshot:
        closed = entry.window is not None and (
            entry.window.state(self.clock()) is WindowState.CLOSED
        )
        return Snapshot(entry.room, appointment=entry.appointment, window_closed=closed)


def _lost(pid: ParticipantId, connection: str, now: float) -> Command:
    """Mark ``connection`` lost; a no-op if the participant has moved on to another."""

    def command(room: Room) -> list[Event]:
        if pid not in room.participants:
            return []
        return room.disconnect(pid, now, connection=connection)

    return command
