"""The rooms this node serves: one facade over the pieces that keep them.

- `signalling.roomstore`: each room's fold, loaded from its snapshot and stream, and
  commands decided on it with compare-and-append (retried on conflict, `RoomBusy` after
  `ATTEMPTS`).
- `signalling.follower`: the rooms' feeds, folded as they come; a message that does not
  follow on from the fold makes the node read the stream, so nothing is missed.
- `signalling.presence`: peers joining and leaving, grace periods, sweeps, and the
  clean-up after dead nodes.
- `signalling.router`: call set-up messages, local or through the bus.
- `signalling.fanout`: telling each attached peer, without ever blocking, what changed
  for it (notices first, then the state updates).

They share the rooms' entries (`signalling.served`) and depend only on the ports
(`signalling.ports`), never on redis-py: the composition root passes in the adapters
(`signalling.redis_ports.redis_hub` for Redis, `signalling.memory` in unit tests). The
hub's methods are those the connections and the node's loops call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from admission.policy import DEFAULT_HOST_ABSENCE
from admission.window import JoinWindow
from rooms.events import Event
from rooms.ids import AppointmentId, ParticipantId, RoomId
from rooms.room import Room
from signalling.fanout import FanOut
from signalling.follower import Follower
from signalling.ports import Faults, Feeds, RoomLog, Routes
from signalling.presence import Presence
from signalling.roomstore import RoomStore
from signalling.router import Router
from signalling.served import Background, Command, Peer
from signalling.wire import Message


class Hub:
    """All rooms with activity on this node."""

    def __init__(
        self,
        log: RoomLog,
        feeds: Feeds,
        bus: Routes,
        clock: Callable[[], float],
        *,
        faults: Faults,
    ) -> None:
        """``faults`` are how ``log``, ``feeds`` and ``bus`` fail when their backend is
        out of reach."""
        self.log = log
        self.bus = bus
        self.clock = clock
        self._background = Background()
        self.fanout = FanOut(clock, self._background, self._reassert)
        self.store = RoomStore(log, self.fanout)
        self.follower = Follower(self.store, feeds, bus.node_id, faults, self._background)
        self.store.following = self.follower
        self.presence = Presence(self.store, self.follower, bus, clock, faults)
        self.router = Router(self.store.rooms, bus)
        self._rooms = self.store.rooms

    async def _reassert(self, room_id: RoomId, pid: ParticipantId, peer: Peer) -> None:
        await self.presence.reassert(room_id, pid, peer)  # built after the fan-out

    # -- reading --------------------------------------------------------------------------

    async def room(self, room_id: RoomId) -> Room:
        """The room, brought up to date with its stream (read only: change it through
        `execute`)."""
        entry = await self.store.load(room_id)
        return entry.room

    def peek(self, room_id: RoomId) -> Room | None:
        """This node's fold of the room as it is now, if it serves the room."""
        entry = self._rooms.get(room_id)
        return None if entry is None else entry.room

    @property
    def unrecorded(self) -> int:
        """Lost connections waiting for the backend to come back to be recorded."""
        return len(self.presence.unrecorded)

    @property
    def sweeps(self) -> int:
        """Completed sweeps (lets tests wait for one)."""
        return self.presence.sweeps

    # -- commands and presence ------------------------------------------------------------

    async def execute(self, room_id: RoomId, command: Command) -> list[Event]:
        """Decide ``command`` on the room and record its events; tell everyone attached.

        A command that raises has changed nothing; the error goes back to the caller."""
        return await self.store.execute(room_id, command)

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
        """Attach ``peer`` as ``pid`` and run its arrival ``command`` (`Presence.join`)."""
        return await self.presence.join(
            room_id,
            pid,
            peer,
            command,
            window=window,
            appointment=appointment,
            welcome=welcome,
            name=name,
        )

    async def detach(self, room_id: RoomId, pid: ParticipantId, peer: Peer) -> None:
        """The peer's connection is gone (`Presence.detach`)."""
        await self.presence.detach(room_id, pid, peer)

    async def sweep(self, grace: float, host_absence: float = DEFAULT_HOST_ABSENCE) -> int:
        """What time alone does to the rooms served here (`Presence.sweep`)."""
        return await self.presence.sweep(grace, host_absence)

    async def reap(self, node_timeout: float) -> int:
        """Mark the participants of dead nodes lost (`Presence.reap`)."""
        return await self.presence.reap(node_timeout)

    # -- transient messages and fan-out ---------------------------------------------------

    async def relay(
        self, room_id: RoomId, sender: ParticipantId, to: ParticipantId, message: Message
    ) -> None:
        """Pass a call set-up message between two participants (`Router.relay`)."""
        await self.router.relay(room_id, sender, to, message)

    def receive(self, room_id: RoomId, to: ParticipantId, message: Message) -> None:
        """A transient message from another node for one of ours."""
        self.router.receive(room_id, to, message)

    def retell(self, room_id: RoomId, pid: ParticipantId) -> None:
        """Send participant ``pid``, attached here, what its view does not have."""
        entry = self._rooms.get(room_id)
        if entry is not None:
            self.fanout.retell(entry, pid)

    def refresh(self) -> int:
        """Tell everyone attached what changes with the clock alone; returns how many
        rooms (`FanOut.refresh`)."""
        return self.fanout.refresh(self._rooms.values())

    # -- background work ------------------------------------------------------------------

    async def tail(self, ready: asyncio.Event | None = None) -> None:
        """Follow the feeds of the rooms this node serves, until cancelled
        (`Follower.tail`)."""
        await self.follower.tail(ready)

    def pending(self) -> list[asyncio.Task[None]]:
        """Background work under way (stream reads, reasserts): the node stops them, and
        their connections with them, before it closes its backend."""
        return self._background.pending()
