"""A participant is reachable by the time any roster names it (issue 11).

The room's feed may tell the node of an arrival (and so send the host a roster naming the
newcomer) before the append that recorded it has returned to the connection that is
joining; until then the newcomer is not attached. A call set-up message sent to it in that
window is kept and delivered right after its welcome, never refused as `peer_unavailable`.

The window is made certain, not hoped for: the test holds the joining append until the
feed has folded its events, and relays the host's offer right there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from rooms.ids import ParticipantId, RoomId
from rooms.participants import Stage
from rooms.roles import Role
from signalling.client import Client
from tests.signalling.conftest import Node, eventually

ROOM = "rm_reachable"


async def test_an_offer_in_the_window_before_attach_reaches_the_newcomer(node: Node) -> None:
    hub = node.hub
    host = await node.connect(room=ROOM, token=node.token(ROOM, Role.HOST, subject="dr"))
    await host.start()
    await host.expect("admitted")
    host_pid = ParticipantId(host.participant_id)
    append = hub.log.append
    relayed: list[ParticipantId] = []

    async def append_then_offer(room_id: RoomId, *args: Any, **kwargs: Any) -> Any:
        ids = await append(room_id, *args, **kwargs)
        room = hub.peek(room_id)
        assert room is not None
        arrived = [p for p in room.participants.values() if p.role is Role.GUEST]
        if arrived and not relayed:
            # The append is recorded; hold its return until the feed has folded it, as
            # happens when the feed's message is read first, and offer then.
            await eventually(
                lambda: any(
                    p.stage is Stage.IN_CALL
                    for p in hub.peek(room_id).participants.values()  # type: ignore[union-attr]
                    if p.role is Role.GUEST
                ),
                what="the feed to fold the arrival",
            )
            guest = next(p.id for p in arrived)
            relayed.append(guest)
            await hub.relay(
                room_id, host_pid, guest, {"type": "offer", "from": host_pid, "sdp": "v=0"}
            )
        return ids

    hub.log.append = append_then_offer  # type: ignore[method-assign]
    try:
        guest = await node.connect(
            room=ROOM, token=node.token(ROOM, Role.GUEST, subject="g1", name="Gia")
        )
    finally:
        hub.log.append = append  # type: ignore[method-assign]
    assert relayed == [ParticipantId(guest.participant_id)]
    offer = await guest.expect("offer")
    assert offer == {"type": "offer", "from": host_pid, "sdp": "v=0"}
    # The host's roster named the guest, and the guest answers through the node as usual.
    await host.expect("roster", where=lambda m: len(m["participants"]) == 2)
    await guest.answer(host.participant_id, "v=0 answer")
    answer = await host.expect("answer")
    assert answer["from"] == guest.participant_id


async def test_offers_sent_on_the_roster_reach_every_newcomer(node: Node) -> None:
    """From outside, as a client sees it: the host offers the moment its roster names a
    newcomer; every offer arrives, none is refused."""
    host_link = node.token(ROOM, Role.HOST, subject="dr", capacity=50)
    host = await node.connect(room=ROOM, token=host_link)
    await host.start()
    await host.expect("admitted")
    guests: list[Client] = []
    for n in range(20):
        guest = await node.connect(
            room=ROOM, token=node.token(ROOM, Role.GUEST, subject=f"g{n}", name=f"G{n}")
        )
        guests.append(guest)
        gid = guest.participant_id
        await host.expect("roster", where=names(gid))
        ref = await host.offer(gid, f"v=0 {n}")
        offer = await guest.expect("offer")
        assert offer["sdp"] == f"v=0 {n}"
        await host.ping()
        pong = await host.expect("pong", "error")
        assert pong["type"] == "pong", (ref, pong)
    await asyncio.gather(*(g.close() for g in guests))


def names(pid: str) -> Callable[[dict[str, Any]], bool]:
    """Whether a roster names ``pid``."""
    return lambda message: pid in {p["participant_id"] for p in message["participants"]}
