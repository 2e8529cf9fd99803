"""The rooms this node serves, kept up to date from their Redis event streams.

A room's state is the fold of its stream. Any node may decide a command on any room: it
tries the command on a copy of its fold and appends the resulting events with
compare-and-append; if another node appended first, it catches up and decides again. So a
rule checked by the core ("is there capacity?") holds for the room as a whole, across
nodes, with no leader and no lock in Redis.

Every node follows the rooms it serves through their feed channels (each append is
published there, with its events: `signalling.eventlog`), and fans new events out to its
own connections as messages. Subscribing to one more room is one SUBSCRIBE on the node's
feed connection: nothing is written to Redis, and the other rooms' subscriptions are not
touched. A message that does not follow on from this node's fold (the feed connection was
lost meanwhile, say) makes the node read the stream instead, so nothing is missed.
Fan-out never blocks (`Peer.deliver` does not), so a slow socket cannot hold up a room.
It tells every participant its notices first (``admitted``...), then the state updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from admission.policy import DEFAULT_HOST_ABSENCE, check_signal, due, tick
from admission.window import JoinWindow
from rooms.events import Event, EventKind, ExitCause
from rooms.ids import AppointmentId, ParticipantId, RoomId
from rooms.participants import Participant
from rooms.room import Room
from signalling.bus import Bus
from signalling.errors import PeerUnavailable, RoomBusy
from signalling.eventlog import (
    EMPTY,
    Conflict,
    EventLog,
    StreamId,
    decode,
    parse_feed,
    parse_id,
)
from signalling.keys import feed_channel, node_home_channel, parse_feed_channel
from signalling.projector import note_window, queue_change, read_snapshot
from signalling.pubsub import Subscriber, subscriber
from signalling.supervisor import failure
from signalling.views import Lists, Notices, Shared, Snapshot, View, notices, updates
from signalling.wire import Message

log = logging.getLogger("vestibule.signalling.hub")

Command = Callable[[Room], list[Event]]

CLOSE_NORMAL = 1000
CLOSE_DENIED = 4403
CLOSE_REPLACED = 4409
ATTEMPTS = 20  # compare-and-append retries before a command gives up (room_busy)
FEED_POLL = 1.0  # seconds the feed waits for a message before it looks again
FEED_WAIT = 5.0  # seconds a room waits for the feed to be back before it gives up
MAX_HELD = 256  # call set-up messages kept for a participant still joining (then dropped)


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
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    loaded: bool = False
    busy: int = 0  # joins and departures under way: the entry stays until they finish
    shared: dict[str, Shared] = field(default_factory=dict)  # last shared payloads
    lists: Lists = field(default_factory=Lists)  # the waiting list and roster, versioned
    early: list[bytes] = field(default_factory=list)  # feed messages while loading
    stale: bool = False  # the fold missed events: read the stream again
    resync: asyncio.Task[None] | None = None  # reading the stream for that
    # Display names of the people in the room: the events have none (eventlog.names_key).
    names: dict[ParticipantId, str] = field(default_factory=dict)
    # Participants joining on this node, not yet attached, with the call set-up messages
    # sent to them meanwhile: the feed may tell the room of an arrival (a roster naming
    # it) before the append that recorded it returns here (`_commit`).
    joining: dict[ParticipantId, list[Message]] = field(default_factory=dict)
    # Join windows this node has noted for the projector (once each, not on every hello).
    windows: set[tuple[AppointmentId, float]] = field(default_factory=set)


class Hub:
    """All rooms with activity on this node."""

    def __init__(
        self,
        redis: Redis,
        bus: Bus,
        clock: Callable[[], float],
        *,
        replicas: int = 0,
        replica_timeout: float = 1.0,
    ) -> None:
        """``replicas``: how many replicas must have each append before it counts as done
        (`signalling.eventlog.EventLog`)."""
        self.redis = redis
        self.log = EventLog(
            redis, note=queue_change, replicas=replicas, replica_timeout=replica_timeout
        )
        self.bus = bus
        self.clock = clock
        self._rooms: dict[RoomId, _Entry] = {}
        self._home = node_home_channel(bus.node_id)  # keeps the feed subscribed
        self._tailing = False
        self._feed: Subscriber | None = None  # while `tail` runs and is connected
        self._feed_up = asyncio.Event()
        self._subscribing: dict[str, list[asyncio.Future[None]]] = {}
        self.sweeps = 0  # completed sweeps (lets tests wait for one)
        self._tasks: set[asyncio.Task[None]] = set()  # background work, kept referenced
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
                    await self._follow(room_id)  # first, so no append falls in between
                    if entry.last_id == EMPTY:
                        # From the latest snapshot and the stream after it, never the whole
                        # history (whose start may be trimmed: signalling.retention).
                        entry.room, entry.last_id = await self._snapshot_of(room_id)
                    await self._catch_up(entry)
                    entry.loaded = True
                    early, entry.early = entry.early, []
                    for data in early:
                        self._take(entry, data)
        return entry

    async def _catch_up(self, entry: _Entry) -> None:
        await self._absorb_read(entry, await self.log.read(entry.room.id, after=entry.last_id))

    async def _snapshot_of(self, room_id: RoomId) -> tuple[Room, StreamId]:
        """The room as of its latest snapshot, and the id of the last event in it (an empty
        room before the first event, if there is no snapshot yet)."""
        snapshot = await read_snapshot(self.redis, room_id)
        return (Room(room_id), EMPTY) if snapshot is None else snapshot

    async def _absorb_read(self, entry: _Entry, batch: list[tuple[StreamId, Event]]) -> None:
        """Fold events read from the stream, with the names of the people they bring in
        and of those the fold has without a name (a room loaded from its snapshot): read
        first, since the feed carries names and a stream read does not."""
        arrived = {e.participant for _, e in batch if e.kind is EventKind.ARRIVED}
        unnamed = arrived | entry.room.participants.keys()
        missing = [p for p in unnamed if p is not None and p not in entry.names]
        entry.names.update(await self.log.names(entry.room.id, missing))
        self._absorb(entry, batch)

    async def _rebuild(self, entry: _Entry) -> None:
        """The stream is behind this node's fold (Redis came back without its tail, e.g.
        a failover to a lagging replica): fold the room again from what the stream holds,
        which is the truth, and tell everyone attached."""
        log.error("room %s: the stream lost events this node had folded; rebuilding", entry.room.id)
        # Fold aside and swap at once: the feed may fold into the entry meanwhile.
        room, last_id = await self._snapshot_of(entry.room.id)
        if parse_id(last_id) > parse_id(await self.log.last_id(room.id)):
            room, last_id = Room(room.id), EMPTY  # the snapshot has what was lost too
        for stream_id, event in await self.log.read(room.id, after=last_id):
            room.apply(event)
            last_id = stream_id
        missing = [p for p in room.participants if p not in entry.names]
        entry.names.update(await self.log.names(room.id, missing))
        entry.room, entry.last_id = room, last_id
        entry.lists.invalidate()
        self._fan_out(entry, [])
        self._resync(entry)  # anything appended since that read

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
        names: dict[ParticipantId, str] | None = None,
    ) -> list[Event]:
        """Decide and record ``command``; ``names`` are the display names of the people it
        brings in, recorded with its events (departures forget theirs)."""
        async with entry.lock:
            for _ in range(ATTEMPTS):
                trial = entry.room.clone()
                expected = entry.last_id
                events = command(trial)
                if events:
                    known = entry.room.participants
                    gone = [
                        (e.participant, _connection(known.get(e.participant)))
                        for e in events
                        if e.kind is EventKind.DEPARTED and e.participant is not None
                    ]
                    try:
                        ids = await self.log.append(
                            entry.room.id, expected, events, names=names, gone=gone
                        )
                    except Conflict as conflict:
                        # Behind what this attempt was based on (not the fold as it is
                        # now: the feed may have folded newer events meanwhile).
                        if parse_id(conflict.last_id) < parse_id(expected):
                            await self._rebuild(entry)
                        else:
                            await self._catch_up(entry)
                        continue
                tail_was_first = entry.last_id != expected  # the feed folded and told ours
                if events and names:
                    entry.names.update(names)
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
                for message in entry.joining.pop(pid, ()):
                    peer.deliver(message)  # after the welcome and the views, in order
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
        name: str | None = None,
    ) -> list[Event]:
        """Attach ``peer`` as participant ``pid`` (shown to others as ``name``) and run its
        arrival ``command``.

        ``welcome`` is called with the room after the arrival and before any other message
        reaches the peer. An older connection of the same participant is closed as
        replaced."""
        entry = self._rooms.get(room_id) or self._rooms.setdefault(room_id, _Entry(Room(room_id)))
        entry.busy += 1
        names = None if name is None else {pid: name}
        try:
            return await self._join(entry, pid, peer, command, window, appointment, welcome, names)
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
        names: dict[ParticipantId, str] | None,
    ) -> list[Event]:
        room_id = entry.room.id
        await self._load(room_id)
        await self.bus.register(room_id, pid, peer.connection_id)
        if window is not None and appointment is not None:
            noted = (appointment, window.closes_at)
            if noted not in entry.windows:
                await note_window(self.redis, room_id, appointment, window.closes_at)
                entry.windows.add(noted)
        previous: list[Peer] = []

        def attach() -> tuple[ParticipantId, Peer]:
            old = entry.peers.get(pid)
            if old is not None and old is not peer:
                previous.append(old)
            entry.peers[pid] = peer
            welcome(entry.room)
            return pid, peer

        entry.joining.setdefault(pid, [])
        try:
            events = await self._commit(entry, command, attach, names)
        except BaseException:
            entry.joining.pop(pid, None)
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
        await self.execute(room_id, _lost(pid, connection, now))

    # -- transient messages ---------------------------------------------------------------

    async def relay(
        self, room_id: RoomId, sender: ParticipantId, to: ParticipantId, message: Message
    ) -> None:
        """Pass a call set-up message between two participants of the same call, through
        Redis only when the recipient is connected to another node."""
        entry = self._rooms[room_id]
        room = entry.room
        check_signal(room, sender, to)
        if self._deliver(entry, to, message):
            return
        # The fold's view of the recipient's connection validates the bus's cached location.
        recipient = room.participants[to]
        connection = recipient.connection if recipient.connected else None
        node = await self.bus.locate(room_id, to, connection)
        if node is None or node == self.bus.node_id:
            raise PeerUnavailable(f"cannot reach {to}: its connection is down", {"participant": to})
        await self.bus.send(node, room_id, to, message)

    def retell(self, room_id: RoomId, pid: ParticipantId) -> None:
        """Send participant ``pid``, attached here, what its view does not have (after a
        ``resync``, its whole state: the lists in full)."""
        entry = self._rooms.get(room_id)
        peer = None if entry is None else entry.peers.get(pid)
        if entry is not None and peer is not None:
            self._tell(entry, pid, peer, [])

    def receive(self, room_id: RoomId, to: ParticipantId, message: Message) -> None:
        """A transient message from another node for one of ours."""
        entry = self._rooms.get(room_id)
        if entry is not None:
            self._deliver(entry, to, message)

    def _deliver(self, entry: _Entry, to: ParticipantId, message: Message) -> bool:
        """Give ``message`` to ``to`` if it is attached here, or keep it for when it is
        (it is joining); False if it is neither."""
        peer = entry.peers.get(to)
        if peer is not None:
            peer.deliver(message)
            return True
        held = entry.joining.get(to)
        if held is None:
            return False
        if len(held) < MAX_HELD:
            held.append(message)
        return True

    # -- background work ------------------------------------------------------------------

    async def tail(self, ready: asyncio.Event | None = None) -> None:
        """Follow the feeds of the rooms this node serves, until cancelled. ``ready`` is
        set once the feed is subscribed."""
        self._tailing = True
        backoff = 0.1
        try:
            while True:
                feed = subscriber(self.redis)
                try:
                    await feed.subscribe(self._home)
                    self._feed = feed
                    # Every room served, loaded or loading: a room loaded meanwhile that
                    # subscribed on the previous feed (or on none) must not be missed.
                    channels = [feed_channel(room_id) for room_id in self._rooms]
                    if channels:
                        await feed.subscribe(*channels)
                    self._resync_all()  # what was published while no feed listened
                    self._feed_up.set()
                    if ready is not None:
                        ready.set()
                    backoff = 0.1
                    await self._listen(feed)
                except RedisError as exc:
                    log.warning("tail: redis unavailable (%s); retrying", type(exc).__name__)
                    self._feed_lost(exc)
                finally:
                    self._feed = None
                    self._feed_up.clear()
                    with contextlib.suppress(RedisError, OSError):
                        await feed.aclose()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        finally:
            self._tailing = False

    async def _listen(self, feed: Subscriber) -> None:
        while True:
            if feed.lost:  # redis-py reconnected by itself: messages may be lost
                feed.lost = False
                self._resync_all()
            item = await feed.get(FEED_POLL)
            if item is None:
                continue
            kind = item.kind
            channel = item.channel
            room_id = parse_feed_channel(channel)
            if kind == "message" and room_id is not None:  # not the home channel
                entry = self._rooms.get(room_id)
                if entry is None:
                    continue  # no longer served here
                if entry.loaded:
                    try:
                        self._take(entry, item.data)
                    except Exception as exc:  # noqa: BLE001 -- one message must not stop the feed
                        log.warning(
                            "room %s: unreadable feed message (%s)", entry.room.id, failure(exc)
                        )
                        self._resync(entry)  # the stream has the truth
                else:  # its stream is being read: look at this once that is done
                    entry.early.append(item.data)
            elif kind == "subscribe":
                for done in self._subscribing.pop(channel, []):
                    if not done.done():
                        done.set_result(None)

    def _feed_lost(self, exc: RedisError) -> None:
        subscribing, self._subscribing = self._subscribing, {}
        for waiters in subscribing.values():
            for done in waiters:
                if not done.done():
                    done.set_exception(type(exc)(f"the rooms' feed was lost: {exc}"))

    async def _follow(self, room_id: RoomId) -> None:
        """Subscribe to the room's feed and wait until Redis has confirmed it."""
        if not self._tailing:
            return  # nobody follows feeds on this hub (no `tail` running)
        if self._feed is None:
            try:
                async with asyncio.timeout(FEED_WAIT):
                    await self._feed_up.wait()
            except TimeoutError:
                raise RedisConnectionError("not subscribed to the rooms' feeds") from None
        feed = self._feed
        if feed is None or not feed.connected:
            # (None: lost again since it was up, as when a cluster's shard keeps failing.)
            # Only the feed's listener may connect it again: a second task reconnecting the
            # same redis-py connection at once opens two sockets and leaks one. It
            # subscribes every served room when it is back.
            raise RedisConnectionError("the rooms' feed is reconnecting")
        channel = feed_channel(room_id)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._subscribing.setdefault(channel, []).append(done)
        try:
            await feed.subscribe(channel)
            await done
        finally:
            waiters = self._subscribing.get(channel)
            if waiters is not None and done in waiters:
                waiters.remove(done)
                if not waiters:
                    del self._subscribing[channel]

    async def _unfollow(self, room_id: RoomId) -> None:
        feed = self._feed
        if feed is None or not feed.connected:
            return  # reconnecting: skip it; messages for rooms not served are ignored
        with contextlib.suppress(RedisError, OSError):
            await feed.unsubscribe(feed_channel(room_id))
        entry = self._rooms.get(room_id)
        if entry is not None:  # served again meanwhile: follow it again, catch up
            await self._follow(room_id)
            if entry.loaded:
                self._resync(entry)

    def _take(self, entry: _Entry, data: bytes) -> None:
        """A message from the room's feed: fold it if it follows on from the fold, skip it
        if the fold has it, else read the stream."""
        previous, ids, events, names = parse_feed(data)
        last = parse_id(entry.last_id)
        if parse_id(ids[-1]) <= last:
            return  # this node appended it, or read it already
        if parse_id(previous) == last:
            entry.names.update(names)
            self._absorb(entry, [(i, decode(e)) for i, e in zip(ids, events, strict=True)])
        else:
            self._resync(entry)

    def _resync_all(self) -> None:
        for entry in self._rooms.values():
            if entry.loaded:
                self._resync(entry)

    def _resync(self, entry: _Entry) -> None:
        """Read what the room's stream has beyond the fold (in the background)."""
        entry.stale = True
        if entry.resync is None:
            entry.resync = self._background(self._read_stale(entry))

    async def _read_stale(self, entry: _Entry) -> None:
        try:
            while entry.stale:
                entry.stale = False
                await self._absorb_read(
                    entry, await self.log.read(entry.room.id, after=entry.last_id)
                )
        except RedisError as exc:  # the feed fails too, and reads again once it is back
            log.warning("room %s: cannot read its stream (%s)", entry.room.id, type(exc).__name__)
        finally:
            entry.resync = None

    async def sweep(self, grace: float, host_absence: float = DEFAULT_HOST_ABSENCE) -> int:
        """Do what time alone does to the rooms served here (`admission.policy.tick`):
        remove participants whose connection has been gone longer than ``grace``; end calls
        whose join window has closed or that have had no host for ``host_absence``. Stop
        serving rooms with no local connection and nobody absent. Returns how many
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
            if due(entry.room, now, grace=grace, host_absence=host_absence):
                events = await self.execute(
                    room_id, lambda room: tick(room, now, grace=grace, host_absence=host_absence)
                )
                removed += sum(1 for e in events if e.kind is EventKind.DEPARTED)
            elif (
                not entry.room.absent()
                and not entry.peers
                and not entry.busy
                and not entry.lock.locked()
                and not any(lost[0] == room_id for lost in self._unrecorded)
            ):
                del self._rooms[room_id]
                await self._unfollow(room_id)
                await self.bus.unserve(room_id)
                if room_id in self._rooms:  # a join began meanwhile: it may have registered
                    await self.bus.serve(room_id)
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
            held_by = await self.bus.held_by(node)
            # Its records go first, its participants' routing next, their loss last: a
            # node that was only slow sees the loss, registers again (`_reassert`), and
            # none of that may be undone by this clean-up arriving after it.
            await self.bus.forget(node)
            for room_id, held in held_by.items():
                for pid, connection in held:
                    await self.bus.unregister(room_id, pid, connection, node)
                    events = await self.execute(room_id, _lost(pid, connection, now))
                    marked += len(events)
        return marked

    async def _reassert(self, room_id: RoomId, pid: ParticipantId, peer: Peer) -> None:
        """``peer`` is still connected here although the room says its connection was lost:
        route to it again and record it back (RECONNECTED on the same connection)."""
        log.warning("room %s: %s was reported lost but is connected here", room_id, pid)
        connection = peer.connection_id

        def back(room: Room) -> list[Event]:
            known = room.participants.get(pid)
            if known is None or known.connected or known.connection != connection:
                return []  # gone, back already, or taken over by a newer connection
            return room.arrive(
                pid,
                known.role,
                now=self.clock(),
                connection=connection,
                join_now=known.join_now,  # the same client, still connected
            )

        try:
            await self.bus.register(room_id, pid, connection)
            await self.execute(room_id, back)
        except RedisError as exc:
            log.warning("room %s: could not record %s back (%s)", room_id, pid, type(exc).__name__)

    def _background(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def pending(self) -> list[asyncio.Task[None]]:
        """Background work under way (stream reads, reasserts): the node stops them, and
        their Redis connections with them, before it closes Redis."""
        return list(self._tasks)

    # -- fan-out --------------------------------------------------------------------------

    def _fan_out(self, entry: _Entry, events: list[Event], clock: bool = False) -> None:
        """Tell everyone attached what ``events`` (or, with ``clock``, the time alone)
        changed for them: first every participant's notices (an ``admitted`` must not
        wait for the rosters of a thousand others), then the state updates. A quiet
        change (`views.quiet_change`) is told only to its own people and the hosts."""
        attached = entry.peers
        if events:
            for pid, messages in Notices(events):
                peer = attached.get(pid)
                if peer is not None:
                    for message in messages:
                        peer.deliver(message)
        snapshot = self._snapshot(entry, events)
        if snapshot.quiet is None or clock:
            told = list(attached.items())
        else:
            hosts = entry.room.hosts()
            told = [
                (pid, attached[pid])
                for pid in dict.fromkeys([*snapshot.quiet, *hosts])
                if pid in attached
            ]
        for pid, peer in told:
            for message in updates(peer.view, pid, snapshot):
                peer.deliver(message)
        for event in events:
            if event.kind is EventKind.DISCONNECTED and event.participant is not None:
                alive = entry.peers.get(event.participant)
                if alive is not None and alive.connection_id == event.connection:
                    # Another node reported this live connection lost: it took this node
                    # for dead (heartbeats late under load). Say it is alive again, or the
                    # participant would be removed when its grace runs out.
                    self._background(self._reassert(entry.room.id, event.participant, alive))
            if event.kind is EventKind.RECONNECTED and event.participant is not None:
                # Taken over by a newer connection, perhaps on another node: ours is stale.
                stale = entry.peers.get(event.participant)
                if stale is not None and stale.connection_id != event.connection:
                    del entry.peers[event.participant]
                    stale.close(CLOSE_REPLACED, "replaced by a newer connection")
            if event.kind is EventKind.DEPARTED and event.participant is not None:
                entry.names.pop(event.participant, None)
                gone = entry.peers.get(event.participant)
                if gone is not None:
                    del entry.peers[event.participant]
                    denied = event.cause is ExitCause.DENIED
                    gone.close(
                        CLOSE_DENIED if denied else CLOSE_NORMAL,
                        "denied by the host" if denied else "left the room",
                    )

    def refresh(self) -> int:
        """Tell everyone attached what changes with the clock alone (the wait a patient can
        expect, while a call runs past its end): a fan-out of each room served here with a
        connection, sending only what changed. Returns how many rooms."""
        served = [entry for entry in self._rooms.values() if entry.loaded and entry.peers]
        for entry in served:
            self._fan_out(entry, [], clock=True)
        return len(served)

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

    def _snapshot(self, entry: _Entry, events: Sequence[Event] = ()) -> Snapshot:
        """The room's payloads after ``events`` (none: as the lists were last told)."""
        return Snapshot(
            entry.room,
            now=self.clock(),
            shared=entry.shared,
            names=entry.names,
            lists=entry.lists,
            events=list(events),
        )


def _connection(participant: Participant | None) -> str | None:
    return None if participant is None else participant.connection


def _lost(pid: ParticipantId, connection: str, now: float) -> Command:
    """Mark ``connection`` lost; a no-op if the participant has moved on to another."""

    def command(room: Room) -> list[Event]:
        if pid not in room.participants:
            return []
        return room.disconnect(pid, now, connection=connection)

    return command
