"""Who is connected where: peers attaching to rooms and leaving them, the grace periods
of lost connections, and the clean-up after nodes that stopped answering.

A participant joins by registering its route on the bus (`signalling.ports.Routes`) and
running its arrival command; its peer is attached once the arrival is recorded. A lost
connection keeps its place for the grace period: the loss is recorded at once or, while
the backend cannot be reached, by the next `Presence.sweep`, which also does what time
alone does to the rooms (`admission.policy.tick`) and stops serving rooms nobody needs
here. `Presence.reap` marks the participants of dead nodes lost, so they can resume
elsewhere; a live connection reported lost by another node is recorded back
(`Presence.reassert`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from admission.policy import DEFAULT_HOST_ABSENCE, due, tick
from admission.window import JoinWindow
from rooms.events import Event, EventKind
from rooms.ids import AppointmentId, ParticipantId, RoomId
from rooms.room import Room
from signalling.follower import Follower
from signalling.ports import Faults, Routes
from signalling.roomstore import RoomStore
from signalling.served import CLOSE_REPLACED, Command, Entry, Peer

log = logging.getLogger("vestibule.signalling.hub")


class Presence:
    """Attaches peers to the rooms of ``store`` and keeps track of the lost ones."""

    def __init__(
        self,
        store: RoomStore,
        follower: Follower,
        bus: Routes,
        clock: Callable[[], float],
        faults: Faults,
    ) -> None:
        self.store = store
        self.follower = follower
        self.bus = bus
        self.clock = clock
        self.faults = faults
        self.sweeps = 0  # completed sweeps (lets tests wait for one)
        # Connections lost while the backend was unreachable, recorded by the next sweep.
        self.unrecorded: list[tuple[RoomId, ParticipantId, str, float]] = []

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
        entry = self.store.entry(room_id)
        entry.busy += 1
        names = None if name is None else {pid: name}
        try:
            return await self._join(entry, pid, peer, command, window, appointment, welcome, names)
        finally:
            entry.busy -= 1

    async def _join(
        self,
        entry: Entry,
        pid: ParticipantId,
        peer: Peer,
        command: Command,
        window: JoinWindow | None,
        appointment: AppointmentId | None,
        welcome: Callable[[Room], None],
        names: dict[ParticipantId, str] | None,
    ) -> list[Event]:
        room_id = entry.room.id
        await self.store.load(room_id)
        await self.bus.register(room_id, pid, peer.connection_id)
        if window is not None and appointment is not None:
            noted = (appointment, window.closes_at)
            if noted not in entry.windows:
                await self.store.log.note_window(room_id, appointment, window.closes_at)
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
            events = await self.store.commit(entry, command, attach, names)
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
        entry = self.store.rooms.get(room_id)
        if entry is None or entry.peers.get(pid) is not peer:
            return
        del entry.peers[pid]
        # Until the loss is recorded (or queued for the next sweep) the room must stay
        # served: a sweep in between would otherwise see no peer and nobody absent.
        entry.busy += 1
        try:
            await self._record_lost(room_id, pid, peer.connection_id, self.clock())
        except self.faults.errors:
            self.unrecorded.append((room_id, pid, peer.connection_id, self.clock()))
            raise
        finally:
            entry.busy -= 1

    async def _record_lost(
        self, room_id: RoomId, pid: ParticipantId, connection: str, now: float
    ) -> None:
        await self.bus.unregister(room_id, pid, connection)
        await self.store.execute(room_id, _lost(pid, connection, now))

    async def sweep(self, grace: float, host_absence: float = DEFAULT_HOST_ABSENCE) -> int:
        """Do what time alone does to the rooms served here (`admission.policy.tick`):
        remove participants whose connection has been gone longer than ``grace``; end calls
        whose join window has closed or that have had no host for ``host_absence``. Stop
        serving rooms with no local connection and nobody absent. Returns how many
        participants were removed."""
        now = self.clock()
        removed = 0
        unrecorded, self.unrecorded = self.unrecorded, []
        for index, lost in enumerate(unrecorded):
            try:
                await self._record_lost(*lost)
            except self.faults.errors:
                self.unrecorded += unrecorded[index:]
                raise
        rooms = self.store.rooms
        for room_id, entry in list(rooms.items()):
            if due(entry.room, now, grace=grace, host_absence=host_absence):
                events = await self.store.execute(
                    room_id, lambda room: tick(room, now, grace=grace, host_absence=host_absence)
                )
                removed += sum(1 for e in events if e.kind is EventKind.DEPARTED)
            elif (
                not entry.room.absent()
                and not entry.peers
                and not entry.busy
                and not entry.lock.locked()
                and not any(lost[0] == room_id for lost in self.unrecorded)
            ):
                del rooms[room_id]
                await self.follower.unfollow(room_id)
                await self.bus.unserve(room_id)
                if room_id in rooms:  # a join began meanwhile: it may have registered
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
            # node that was only slow sees the loss, registers again (`reassert`), and
            # none of that may be undone by this clean-up arriving after it.
            await self.bus.forget(node)
            for room_id, held in held_by.items():
                for pid, connection in held:
                    await self.bus.unregister(room_id, pid, connection, node)
                    events = await self.store.execute(room_id, _lost(pid, connection, now))
                    marked += len(events)
        return marked

    async def reassert(self, room_id: RoomId, pid: ParticipantId, peer: Peer) -> None:
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
            await self.store.execute(room_id, back)
        except self.faults.errors as exc:
            log.warning("room %s: could not record %s back (%s)", room_id, pid, type(exc).__name__)


def _lost(pid: ParticipantId, connection: str, now: float) -> Command:
    """Mark ``connection`` lost; a no-op if the participant has moved on to another."""

    def command(room: Room) -> list[Event]:
        if pid not in room.participants:
            return []
        return room.disconnect(pid, now, connection=connection)

    return command
