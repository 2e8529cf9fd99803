"""What the hub needs of storage and messaging, as `typing.Protocol` s: the ports.

- `RoomLog`: the rooms' event streams (compare-and-append, reads, the display names kept
  beside them), the room snapshots the projector keeps, and the join windows it settles.
- `Feeds` / `Feed`: the pub/sub channels on which every append is published (a room's
  feed, `signalling.records.pack_feed`), which the hub follows for the rooms it serves.
- `Routes`: the bus between nodes as the hub uses it (which node holds which
  participant, transient messages to another node, node membership and the clean-up
  after a dead node); `Membership` adds what the node's own loops do with it
  (heartbeats, listening to its channel, leaving).
- `Faults`: how a port says its backend cannot be reached, so the hub can keep a loss
  for later or retry without knowing which backend it is.

Each port has two implementations: Redis (`signalling.eventlog.EventLog` with
`signalling.redis_ports`, `signalling.pubsub.Subscriber`, `signalling.bus.Bus`) and
in-memory (`signalling.memory`), checked against each other by
tests/signalling/test_ports_contract.py. The hub's pieces depend on these ports only,
never on redis-py (an import contract in pyproject.toml).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from rooms.events import Event
from rooms.ids import AppointmentId, ParticipantId, RoomId
from rooms.room import Room
from signalling.records import StreamId
from signalling.wire import Message

Receiver = Callable[[RoomId, ParticipantId, Message], None]


class RoomLog(Protocol):
    """The rooms' event streams, and what is kept beside them."""

    async def append(
        self,
        room_id: RoomId,
        expected: StreamId,
        events: Sequence[Event],
        *,
        names: Mapping[ParticipantId, str] | None = None,
        gone: Sequence[tuple[ParticipantId, str | None]] = (),
    ) -> list[StreamId]:
        """Append ``events`` if the stream's last id is ``expected`` and publish them on
        the room's feed; return their ids. With them, keep ``names`` and forget the names
        and routing entries of ``gone`` (participant, the connection it was on). Raise
        `signalling.records.Conflict` (nothing changed) if another writer got there first."""
        ...

    async def read(self, room_id: RoomId, after: StreamId = ...) -> list[tuple[StreamId, Event]]:
        """Every event after ``after`` (the start by default), oldest first."""
        ...

    async def last_id(self, room_id: RoomId) -> StreamId:
        """The id of the stream's last event (EMPTY if it has none)."""
        ...

    async def names(
        self, room_id: RoomId, participants: Sequence[ParticipantId]
    ) -> dict[ParticipantId, str]:
        """The names of ``participants`` in the room, of those who have one."""
        ...

    async def snapshot(self, room_id: RoomId) -> tuple[Room, StreamId] | None:
        """The room as of its latest snapshot and the id of the last event in it; None if
        there is none (the whole stream is then the room)."""
        ...

    async def note_window(
        self, room_id: RoomId, appointment: AppointmentId, closes_at: float
    ) -> None:
        """Have the appointment settled (completed or no-show) once its window closes."""
        ...


class FeedItem(Protocol):
    """A message on ``channel``, or the backend confirming a (un)subscription."""

    @property
    def kind(self) -> str: ...  # "message", "subscribe" or "unsubscribe"

    @property
    def channel(self) -> str: ...

    @property
    def data(self) -> bytes: ...


class Feed(Protocol):
    """Subscriptions to channels and what is published on them: one task calls `get`, any
    task may (un)subscribe meanwhile (`signalling.pubsub.Subscriber`)."""

    lost: bool  # it reconnected by itself: messages may have been lost meanwhile

    @property
    def connected(self) -> bool: ...

    async def subscribe(self, *channels: str) -> None:
        """Subscribe; each channel is confirmed by a ``subscribe`` item."""
        ...

    async def unsubscribe(self, *channels: str) -> None: ...

    async def get(self, timeout: float) -> FeedItem | None:
        """The next item, or None after ``timeout`` seconds; raises one of the `Faults`
        when a subscription is lost (close this feed, open another)."""
        ...

    async def aclose(self) -> None: ...


class Feeds(Protocol):
    """Where feeds come from."""

    def subscriber(self) -> Feed:
        """A new feed, subscribed to nothing yet."""
        ...


class Routes(Protocol):
    """The bus between nodes, as the hub uses it (`signalling.bus.Bus`)."""

    @property
    def node_id(self) -> str: ...

    async def register(self, room_id: RoomId, pid: ParticipantId, connection: str) -> None:
        """Route messages for ``pid`` in ``room_id`` to this node's ``connection``."""
        ...

    async def unregister(
        self, room_id: RoomId, pid: ParticipantId, connection: str, node_id: str | None = None
    ) -> None:
        """Stop routing to ``connection`` on ``node_id`` (this node by default), unless a
        newer connection has taken the participant over."""
        ...

    async def locate(
        self, room_id: RoomId, pid: ParticipantId, connection: str | None = None
    ) -> str | None:
        """The node that holds ``pid``'s connection (``connection`` as the caller's fold
        knows it), or None."""
        ...

    def send(
        self, node_id: str, room_id: RoomId, to: ParticipantId, message: Message
    ) -> Awaitable[None]:
        """Send a transient message to ``to`` on ``node_id``; await it: done once sent."""
        ...

    async def serve(self, room_id: RoomId) -> None: ...

    async def unserve(self, room_id: RoomId) -> None: ...

    async def dead_nodes(self, timeout: float) -> list[str]:
        """Other nodes whose last heartbeat is older than ``timeout`` seconds."""
        ...

    async def claim(self, node_id: str) -> bool:
        """Take the clean-up of a dead node; only one survivor gets it."""
        ...

    async def held_by(self, node_id: str) -> dict[RoomId, list[tuple[ParticipantId, str]]]:
        """The connections a node held, room by room: (participant, connection id)."""
        ...

    async def forget(self, node_id: str) -> None:
        """The dead node's clean-up is done."""
        ...


class Membership(Routes, Protocol):
    """The bus as the node's own loops use it too."""

    async def heartbeat(self) -> None: ...

    async def listen(self, receive: Receiver, ready: asyncio.Event | None = None) -> None:
        """Hand every message sent to this node to ``receive``, until cancelled."""
        ...

    async def leave(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Faults:
    """How the ports fail when their backend cannot be reached: ``errors`` are the
    exceptions that mean it (a caller may keep the work for later and try again), and
    ``lost`` makes one, for what the hub itself finds unreachable (the feed is down)."""

    errors: tuple[type[Exception], ...]
    lost: Callable[[str], Exception]
