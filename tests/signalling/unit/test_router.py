"""The router: call set-up messages to a local peer, to one still joining, or through
the bus to another node."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from rooms.events import Event
from rooms.ids import ParticipantId, RoomId
from rooms.roles import Role
from signalling.errors import PeerUnavailable
from signalling.hub import Hub
from signalling.memory import World, memory_hub
from signalling.records import StreamId
from tests.signalling.unit.support import (
    GUEST,
    HOST,
    ROOM,
    Clock,
    FakePeer,
    arrive,
    enter,
    fold,
    join,
    settle,
    start,
    tailing,
)

OFFER = {"type": "offer", "sdp": "v=0"}


async def _in_call(hub: Hub, host: FakePeer, clock: Clock) -> None:
    await join(hub, HOST, host, arrive(HOST, Role.HOST, clock, host.connection_id))
    await hub.execute(ROOM, start(clock))


def _no_bus(monkeypatch: pytest.MonkeyPatch, hub: Hub) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the bus was used")

    for name in ("locate", "send"):
        monkeypatch.setattr(hub.bus, name, refuse)


async def test_a_message_to_a_local_peer_does_not_touch_the_bus(
    world: World, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = memory_hub(world, "a")
    host, guest = FakePeer("c1"), FakePeer("c2")
    await _in_call(hub, host, clock)
    await join(hub, GUEST, guest, enter(GUEST, clock, "c2"))
    _no_bus(monkeypatch, hub)
    await hub.relay(ROOM, GUEST, HOST, OFFER)
    assert host.messages[-1] == OFFER


async def test_a_message_to_a_participant_still_joining_is_held_until_it_is_attached(
    world: World, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = memory_hub(world, "a")
    await _in_call(hub, FakePeer("c1"), clock)
    guest = FakePeer("c2")
    append = hub.log.append

    async def append_then_offer(
        room_id: RoomId,
        expected: StreamId,
        events: Sequence[Event],
        *,
        names: Mapping[ParticipantId, str] | None = None,
        gone: Sequence[tuple[ParticipantId, str | None]] = (),
    ) -> list[StreamId]:
        ids = await append(room_id, expected, events, names=names, gone=gone)
        hub.receive(room_id, GUEST, OFFER)  # from another node, before the join returns
        return ids

    monkeypatch.setattr(hub.log, "append", append_then_offer)
    await join(hub, GUEST, guest, enter(GUEST, clock, "c2"))
    assert guest.types()[0] == "welcome"
    assert guest.messages[-1] == OFFER  # after the welcome and the views
    assert guest.messages.count(OFFER) == 1


async def test_a_message_to_a_peer_on_another_node_goes_through_the_bus(
    world: World, clock: Clock
) -> None:
    one, two = memory_hub(world, "a"), memory_hub(world, "b")
    host, guest = FakePeer("c1"), FakePeer("c2")
    async with tailing(one, two):
        await _in_call(one, host, clock)
        await join(two, GUEST, guest, enter(GUEST, clock, "c2"))
        await settle(lambda: GUEST in fold(one).participants, "the guest's arrival")
        await two.relay(ROOM, GUEST, HOST, OFFER)
        await settle(lambda: host.messages[-1] == OFFER, "the offer on the other node")
        await one.relay(ROOM, HOST, GUEST, {"type": "answer", "sdp": "v=0"})
        await settle(lambda: guest.messages[-1]["type"] == "answer", "the answer back")


async def test_a_message_to_a_peer_nobody_holds_is_refused(world: World, clock: Clock) -> None:
    hub = memory_hub(world, "a")
    await _in_call(hub, FakePeer("c1"), clock)
    other = memory_hub(world, "b")
    await join(other, GUEST, FakePeer("c2"), enter(GUEST, clock, "c2"))
    await other.bus.unregister(ROOM, GUEST, "c2")  # its route is gone
    await hub.store.catch_up(hub.store.rooms[ROOM])  # it knows the guest is in the call
    with pytest.raises(PeerUnavailable):
        await hub.relay(ROOM, HOST, GUEST, OFFER)
