"""What the unit tests of the hub's pieces share: a clock, a peer, commands, waits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from rooms.events import Event
from rooms.ids import ParticipantId, RoomId, SessionId
from rooms.roles import Role
from rooms.room import Room
from signalling.hub import Hub
from signalling.memory import MemoryBus
from signalling.served import Command
from signalling.views import View
from signalling.wire import Message

ROOM = RoomId("r1")
HOST = ParticipantId("p_host")
PATIENT = ParticipantId("p_patient")
GUEST = ParticipantId("p_guest")
EPOCH = 1_700_000_000.0  # as tests/signalling/conftest.py
TURNS = 1000  # event-loop turns a wait may take before it fails


class Clock:
    """Unix seconds that move only when told to."""

    def __init__(self, now: float = EPOCH) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakePeer:
    """A connection attached to a room: keeps what it is sent and how it was closed."""

    connection_id: str
    view: View = field(default_factory=View)
    messages: list[Message] = field(default_factory=list)
    closed: tuple[int, str] | None = None

    def deliver(self, message: Message) -> None:
        self.messages.append(message)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def types(self) -> list[object]:
        return [m["type"] for m in self.messages]


def fold(hub: Hub, room_id: RoomId = ROOM) -> Room:
    """The hub's fold of the room (it must serve it)."""
    room = hub.peek(room_id)
    assert room is not None, f"{room_id} is not served"
    return room


async def heartbeat(hub: Hub) -> None:
    """The hub's node says it is alive (its bus is a `MemoryBus`)."""
    bus = hub.bus
    assert isinstance(bus, MemoryBus)
    await bus.heartbeat()


async def settle(condition: Callable[[], bool], what: str) -> None:
    """Let the event loop run until ``condition`` holds (the in-memory ports do no I/O, so
    a few turns are enough); fail after `TURNS` turns, saying ``what``."""
    for _ in range(TURNS):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


def arrive(pid: ParticipantId, role: Role, clock: Callable[[], float], connection: str) -> Command:
    return lambda room: room.arrive(pid, role, now=clock(), connection=connection)


def start(clock: Callable[[], float]) -> Command:
    """The host starts an ad-hoc call."""
    return lambda room: room.start(
        HOST, session=SessionId("s1"), appointment=None, capacity=4, now=clock()
    )


def enter(pid: ParticipantId, clock: Callable[[], float], connection: str) -> Command:
    """``pid`` arrives as a guest and enters the running call."""

    def command(room: Room) -> list[Event]:
        return room.arrive(pid, Role.GUEST, now=clock(), connection=connection) + room.enter(
            pid, clock()
        )

    return command


async def join(
    hub: Hub, pid: ParticipantId, peer: FakePeer, command: Command, room_id: RoomId = ROOM
) -> list[Event]:
    """Attach ``peer`` as ``pid`` with ``command``, welcomed with a ``welcome`` message."""
    return await hub.join(
        room_id,
        pid,
        peer,
        command,
        window=None,
        appointment=None,
        welcome=lambda room: peer.deliver({"type": "welcome"}),
    )


@contextlib.asynccontextmanager
async def tailing(*hubs: Hub) -> AsyncIterator[None]:
    """The hubs follow their rooms' feeds (and listen on the bus) while inside."""
    tasks: list[asyncio.Task[None]] = []
    for hub in hubs:
        ready, listening = asyncio.Event(), asyncio.Event()
        tasks.append(asyncio.create_task(hub.tail(ready)))
        bus = hub.bus
        assert isinstance(bus, MemoryBus)
        tasks.append(asyncio.create_task(bus.listen(hub.receive, listening)))
        await ready.wait()
        await listening.wait()
    try:
        yield
    finally:
        for task in tasks + [t for hub in hubs for t in hub.pending()]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
