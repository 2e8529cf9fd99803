"""A room this node serves, as the hub's pieces share it: its fold, the connections
attached here, what they were told, and the work under way on it.

`Entry` is plain data: `signalling.roomstore` keeps it folded, `signalling.follower`
feeds it, `signalling.presence` attaches and detaches its peers, `signalling.router`
delivers to them and `signalling.fanout` tells them what changed. `Background` keeps
the tasks those pieces start (stream reads, reasserts) referenced, so the node can stop
them before it closes its connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from rooms.events import Event
from rooms.ids import AppointmentId, ParticipantId
from rooms.room import Room
from signalling.records import EMPTY, StreamId
from signalling.views import Lists, Shared, View
from signalling.wire import Message

Command = Callable[[Room], list[Event]]

CLOSE_NORMAL = 1000
CLOSE_DENIED = 4403
CLOSE_REPLACED = 4409


class Peer(Protocol):
    """What the hub needs of a connection attached to a room."""

    view: View
    connection_id: str

    def deliver(self, message: Message) -> None:
        """Queue a message for the client; never blocks."""

    def close(self, code: int, reason: str) -> None:
        """Send what is queued, then close with ``code``; never blocks."""


@dataclass(slots=True)
class Entry:
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
    # it) before the append that recorded it returns here (`RoomStore.commit`).
    joining: dict[ParticipantId, list[Message]] = field(default_factory=dict)
    # Join windows this node has noted for the projector (once each, not on every hello).
    windows: set[tuple[AppointmentId, float]] = field(default_factory=set)


class Background:
    """Tasks started for later, kept referenced until they end."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def pending(self) -> list[asyncio.Task[None]]:
        return list(self._tasks)
