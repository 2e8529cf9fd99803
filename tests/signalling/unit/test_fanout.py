"""The fan-out: notices before updates, each peer only what its view needs, and the
connections the events end."""

from __future__ import annotations

from rooms.events import Event, WaitReason
from rooms.roles import Role
from rooms.room import Room
from signalling.memory import World, memory_hub
from signalling.served import CLOSE_DENIED, CLOSE_NORMAL, Command
from tests.signalling.unit.support import (
    HOST,
    PATIENT,
    ROOM,
    Clock,
    FakePeer,
    arrive,
    join,
    start,
)


def _knock(clock: Clock) -> Command:
    def command(room: Room) -> list[Event]:
        return room.arrive(PATIENT, Role.PATIENT, now=clock(), connection="c2") + room.knock(
            PATIENT, clock(), WaitReason.AT_CAPACITY
        )

    return command


async def test_notices_go_before_the_updates_and_each_peer_gets_its_own_view(
    world: World, clock: Clock
) -> None:
    hub = memory_hub(world, "a")
    host, patient = FakePeer("c1"), FakePeer("c2")
    await join(hub, HOST, host, arrive(HOST, Role.HOST, clock, "c1"))
    await hub.execute(ROOM, start(clock))
    await join(hub, PATIENT, patient, _knock(clock))
    assert "waiting_list" in host.types()  # the host sees who waits...
    assert "waiting_list" not in patient.types()  # ...a patient does not
    host.messages.clear()
    patient.messages.clear()
    await hub.execute(ROOM, lambda room: room.admit(HOST, PATIENT, clock()))
    assert patient.types()[0] == "admitted"
    assert len(patient.types()) > 1  # then its state: in the call now
    assert "admitted" not in host.types()
    assert "roster" in patient.types()  # in the call: it sees who is there


async def test_a_departure_closes_the_peer_and_a_denial_says_so(world: World, clock: Clock) -> None:
    hub = memory_hub(world, "a")
    host, patient = FakePeer("c1"), FakePeer("c2")
    await join(hub, HOST, host, arrive(HOST, Role.HOST, clock, "c1"))
    await join(hub, PATIENT, patient, _knock(clock))
    await hub.execute(ROOM, lambda room: room.deny(HOST, PATIENT, None, clock()))
    assert patient.closed == (CLOSE_DENIED, "denied by the host")
    assert "denied" in patient.types()
    await hub.execute(ROOM, lambda room: room.leave(HOST, clock()))
    assert host.closed == (CLOSE_NORMAL, "left the room")


async def test_refresh_tells_only_what_changed(world: World, clock: Clock) -> None:
    hub = memory_hub(world, "a")
    host = FakePeer("c1")
    await join(hub, HOST, host, arrive(HOST, Role.HOST, clock, "c1"))
    told = len(host.messages)
    assert hub.refresh() == 1
    assert len(host.messages) == told  # nothing changed with the clock
