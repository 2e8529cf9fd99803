"""The rooms this node serves, each kept as the fold of its event stream, and the way
commands change them: compare-and-append.

A room's state is the fold of its stream. Any node may decide a command on any room: it
tries the command on a copy of its fold and appends the resulting events with
compare-and-append (`signalling.ports.RoomLog.append`); if another node appended first
(`Conflict`), it catches up and decides again, up to `ATTEMPTS` times (then `RoomBusy`). So
a rule checked by the core ("is there capacity?") holds for the room as a whole, across
nodes, with no leader and no lock in the store. A room loads from its latest snapshot and
the stream after it, never its whole history; it is followed (``following.follow``)
before it is read, so no append falls in between.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from rooms.events import Event, EventKind
from rooms.ids import ParticipantId, RoomId
from rooms.participants import Participant
from rooms.room import Room
from signalling.errors import RoomBusy
from signalling.fanout import FanOut
from signalling.ports import RoomLog
from signalling.records import EMPTY, Conflict, StreamId, parse_id
from signalling.served import Command, Entry, Peer

log = logging.getLogger("vestibule.signalling.hub")

ATTEMPTS = 20  # compare-and-append retries before a command gives up (room_busy)

Attach = Callable[[], tuple[ParticipantId, Peer]]


class Following(Protocol):
    """What the store needs of the feed follower (`signalling.follower.Follower`)."""

    async def follow(self, room_id: RoomId) -> None: ...

    def take(self, entry: Entry, data: bytes) -> None: ...

    def resync(self, entry: Entry) -> None: ...


class RoomStore:
    """The folds of the rooms served here (``rooms``), brought up to date from ``log`` and
    changed through it; every change is told through ``fanout``."""

    following: Following  # set by the hub once the follower is built

    def __init__(self, log: RoomLog, fanout: FanOut) -> None:
        self.log = log
        self.fanout = fanout
        self.rooms: dict[RoomId, Entry] = {}

    def entry(self, room_id: RoomId) -> Entry:
        """The room's entry, made (not loaded yet) if the room is not served here."""
        entry = self.rooms.get(room_id)
        if entry is None:
            entry = self.rooms[room_id] = Entry(Room(room_id))
        return entry

    async def load(self, room_id: RoomId) -> Entry:
        """The room's entry, its fold brought up to date with the stream."""
        entry = self.entry(room_id)
        if not entry.loaded:
            async with entry.lock:
                if not entry.loaded:
                    await self.following.follow(room_id)  # first: no append falls between
                    if entry.last_id == EMPTY:
                        # From the latest snapshot and the stream after it, never the whole
                        # history (whose start may be trimmed: signalling.retention).
                        entry.room, entry.last_id = await self._snapshot_of(room_id)
                    await self.catch_up(entry)
                    entry.loaded = True
                    early, entry.early = entry.early, []
                    for data in early:
                        self.following.take(entry, data)
        return entry

    async def catch_up(self, entry: Entry) -> None:
        """Fold what the stream has beyond the fold."""
        await self.absorb_read(entry, await self.log.read(entry.room.id, after=entry.last_id))

    async def _snapshot_of(self, room_id: RoomId) -> tuple[Room, StreamId]:
        """The room as of its latest snapshot, and the id of the last event in it (an empty
        room before the first event, if there is no snapshot yet)."""
        snapshot = await self.log.snapshot(room_id)
        return (Room(room_id), EMPTY) if snapshot is None else snapshot

    async def absorb_read(self, entry: Entry, batch: list[tuple[StreamId, Event]]) -> None:
        """Fold events read from the stream, with the names of the people they bring in
        and of those the fold has without a name (a room loaded from its snapshot): read
        first, since the feed carries names and a stream read does not."""
        arrived = {e.participant for _, e in batch if e.kind is EventKind.ARRIVED}
        unnamed = arrived | entry.room.participants.keys()
        missing = [p for p in unnamed if p is not None and p not in entry.names]
        entry.names.update(await self.log.names(entry.room.id, missing))
        self.absorb(entry, batch)

    async def _rebuild(self, entry: Entry) -> None:
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
        self.fanout.fan_out(entry, [])
        self.following.resync(entry)  # anything appended since that read

    def absorb(self, entry: Entry, batch: list[tuple[StreamId, Event]]) -> None:
        """Fold events read from the stream (skipping those already folded), fan out."""
        fresh: list[Event] = []
        for stream_id, event in batch:
            if parse_id(stream_id) > parse_id(entry.last_id):
                entry.room.apply(event)
                entry.last_id = stream_id
                fresh.append(event)
        if fresh:
            self.fanout.fan_out(entry, fresh)

    async def execute(self, room_id: RoomId, command: Command) -> list[Event]:
        """Decide ``command`` on the room and record its events; tell everyone attached.

        A command that raises has changed nothing; the error goes back to the caller."""
        entry = await self.load(room_id)
        return await self.commit(entry, command, None)

    async def commit(
        self,
        entry: Entry,
        command: Command,
        attach: Attach | None,
        names: dict[ParticipantId, str] | None = None,
    ) -> list[Event]:
        """Decide and record ``command``; ``names`` are the display names of the people it
        brings in, recorded with its events (departures forget theirs). With ``attach``,
        attach a peer once the events are recorded, tell it the room, then hand it the call
        set-up messages held for it while it was joining (`Entry.joining`)."""
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
                            await self.catch_up(entry)
                        continue
                tail_was_first = entry.last_id != expected  # the feed folded and told ours
                if events and names:
                    entry.names.update(names)
                if events and not tail_was_first:
                    entry.room = trial
                    entry.last_id = ids[-1]
                if attach is None:
                    if events and not tail_was_first:
                        self.fanout.fan_out(entry, events)
                    return events
                pid, peer = attach()
                if tail_was_first or not events:
                    self.fanout.tell(entry, pid, peer, events)
                else:
                    self.fanout.fan_out(entry, events)
                for message in entry.joining.pop(pid, ()):
                    peer.deliver(message)  # after the welcome and the views, in order
                return events
        raise RoomBusy("the room is too busy to decide this now: try again")


def _connection(participant: Participant | None) -> str | None:
    return None if participant is None else participant.connection
