"""Presence: lost connections and their grace, losses kept while the backend is down,
idle rooms no longer served, and the clean-up after a dead node."""

from __future__ import annotations

import pytest

from rooms.events import EventKind
from rooms.roles import Role
from signalling.memory import Unavailable, World, memory_hub
from tests.signalling.unit.support import (
    HOST,
    PATIENT,
    ROOM,
    Clock,
    FakePeer,
    arrive,
    fold,
    heartbeat,
    join,
    settle,
    tailing,
)

GRACE = 30.0


async def test_a_lost_connection_keeps_its_place_until_the_grace_is_over(
    world: World, clock: Clock
) -> None:
    hub = memory_hub(world, "a")
    patient = FakePeer("c2")
    await join(hub, HOST, FakePeer("c1"), arrive(HOST, Role.HOST, clock, "c1"))
    await join(hub, PATIENT, patient, arrive(PATIENT, Role.PATIENT, clock, "c2"))
    await hub.detach(ROOM, PATIENT, patient)
    assert not fold(hub).participants[PATIENT].connected
    assert PATIENT not in world.where[ROOM]  # no longer routed here
    clock.advance(GRACE - 1)
    assert await hub.sweep(GRACE) == 0
    clock.advance(1)
    assert await hub.sweep(GRACE) == 1
    assert PATIENT not in fold(hub).participants
    kinds = [e.kind for _, e in await hub.log.read(ROOM)]
    assert kinds[-2:] == [EventKind.DISCONNECTED, EventKind.DEPARTED]


async def test_a_loss_while_the_backend_is_down_is_recorded_by_the_next_sweep(
    world: World, clock: Clock
) -> None:
    hub = memory_hub(world, "a")
    patient = FakePeer("c2")
    await join(hub, PATIENT, patient, arrive(PATIENT, Role.PATIENT, clock, "c2"))
    world.down = True
    with pytest.raises(Unavailable):
        await hub.detach(ROOM, PATIENT, patient)
    assert hub.unrecorded == 1
    with pytest.raises(Unavailable):
        await hub.sweep(GRACE)
    assert hub.unrecorded == 1  # still kept
    assert fold(hub).participants[PATIENT].connected
    world.down = False
    await hub.sweep(GRACE)
    assert hub.unrecorded == 0
    assert not fold(hub).participants[PATIENT].connected


async def test_a_room_with_nobody_here_is_no_longer_served(world: World, clock: Clock) -> None:
    hub = memory_hub(world, "a")
    host = FakePeer("c1")
    await join(hub, HOST, host, arrive(HOST, Role.HOST, clock, "c1"))
    assert ROOM in world.node_rooms["a"]
    await hub.execute(ROOM, lambda room: room.leave(HOST, clock()))
    await hub.sweep(GRACE)
    assert hub.peek(ROOM) is None
    assert ROOM not in world.node_rooms["a"]


async def test_reap_claims_a_dead_node_and_marks_its_participants_lost(
    world: World, clock: Clock
) -> None:
    dead, one, two = memory_hub(world, "a"), memory_hub(world, "b"), memory_hub(world, "c")
    await heartbeat(dead)
    await join(dead, PATIENT, FakePeer("c2"), arrive(PATIENT, Role.PATIENT, clock, "c2"))
    clock.advance(60)
    for survivor in (one, two):
        await heartbeat(survivor)
    assert await one.reap(5.0) == 1
    assert await two.reap(5.0) == 0  # nothing left to claim
    assert PATIENT not in world.where[ROOM]
    assert "a" not in world.heartbeats
    assert world.claims["a"][0] == "b"
    assert not fold(one).participants[PATIENT].connected


async def test_a_live_connection_reported_lost_is_recorded_back(world: World, clock: Clock) -> None:
    """A node that was only slow sees its participant's loss and records it back."""
    slow, other = memory_hub(world, "a"), memory_hub(world, "b")
    async with tailing(slow, other):
        await heartbeat(slow)
        await join(slow, PATIENT, FakePeer("c2"), arrive(PATIENT, Role.PATIENT, clock, "c2"))
        clock.advance(60)
        assert await other.reap(5.0) == 1
        await settle(
            lambda: (
                fold(slow).participants[PATIENT].connected
                and fold(other).participants[PATIENT].connected
            ),
            "the connection recorded back",
        )
        assert world.where[ROOM][PATIENT] == "a c2"  # routed here again
