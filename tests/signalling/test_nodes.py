"""Two nodes in one process, sharing one real redis-server: what one node does, the other
sees; a participant's newest connection wins wherever it is; Redis outages lose nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from rooms.events import EventKind, ExitCause
from rooms.ids import ParticipantId, RoomId
from rooms.roles import Role
from signalling.eventlog import EventLog
from signalling.keys import NODES
from signalling.redis_server import RedisProcess
from tests.signalling.conftest import Serve, eventually

ROOM = "r1"


async def test_a_newer_connection_on_another_node_replaces_the_old_one(serve: Serve) -> None:
    one = await serve()
    two = await serve(clock=one.clock)
    host = await one.connect(room=ROOM, token=one.token(ROOM, Role.HOST, subject="dr"))
    token = one.token(ROOM, Role.PATIENT, subject="sam", name="Sam")
    first = await one.connect(room=ROOM, token=token)
    await first.expect("waiting")
    second = await two.connect(room=ROOM, token=token)  # the same patient, another device
    assert second.participant_id == first.participant_id
    assert await first.closed() == 4409
    assert (await second.expect("waiting"))["position"] == 1
    await eventually(
        lambda: (
            [e["participant_id"] for e in host.state["waiting_list"]["entries"]]
            == [second.participant_id]
        ),
        what="one entry for the patient on the host's list",
    )
    await second.ping()
    await second.expect("pong")


async def test_a_connection_lost_while_redis_is_down_is_recorded_once_it_is_back(
    serve: Serve, redis_server: RedisProcess
) -> None:
    node = await serve(sweep_interval=0.05)
    patient = await node.connect(room=ROOM, token=node.token(ROOM, Role.PATIENT, subject="sam"))
    await patient.expect("waiting")
    pid = ParticipantId(patient.participant_id)
    redis_server.kill()
    await patient.close()  # the node cannot record this now
    await eventually(lambda: node.hub.unrecorded == 1, what="the loss to be kept for later")
    room = node.hub.peek(RoomId(ROOM))
    assert room is not None
    assert room.get(pid).connected  # not recorded yet
    redis_server.start()

    def absent() -> bool:
        room = node.hub.peek(RoomId(ROOM))
        return room is not None and pid in room.participants and not room.get(pid).connected

    await eventually(absent, what="the lost connection to be recorded", timeout=15.0)
    assert node.hub.unrecorded == 0
    # The outage was logged as a warning, not an error; nothing else went wrong.
    assert node.take_errors() == []


async def test_a_room_stays_served_while_a_departure_is_being_recorded(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sweep that ran while the departure was still on its way to Redis used to see no
    # peer and nobody absent, and dropped the room from the node.
    node = await serve(sweep_interval=0.01)
    patient = await node.connect(room=ROOM, token=node.token(ROOM, Role.PATIENT, subject="sam"))
    await patient.expect("waiting")
    pid = ParticipantId(patient.participant_id)
    entered, gate = asyncio.Event(), asyncio.Event()
    unregister = node.hub.bus.unregister

    async def slow_unregister(*args: Any, **kwargs: Any) -> None:
        entered.set()
        await gate.wait()
        await unregister(*args, **kwargs)

    monkeypatch.setattr(node.hub.bus, "unregister", slow_unregister)
    await patient.close()
    await asyncio.wait_for(entered.wait(), 5.0)
    sweeps = node.hub.sweeps
    await eventually(lambda: node.hub.sweeps >= sweeps + 3, what="three sweeps meanwhile")
    assert node.hub.peek(RoomId(ROOM)) is not None
    gate.set()

    def absent() -> bool:
        room = node.hub.peek(RoomId(ROOM))
        return room is not None and not room.get(pid).connected

    await eventually(absent, what="the departure to be recorded")


async def test_a_node_taken_for_dead_while_alive_keeps_its_participants(serve: Serve) -> None:
    # Under load a node's heartbeats can be late enough for another node to reap it. Its
    # participants are still connected to it: it records them back, and they are not
    # removed when their grace runs out.
    one = await serve(resume_grace=30.0)
    two = await serve(clock=one.clock, resume_grace=30.0)
    patient = await one.connect(room=ROOM, token=one.token(ROOM, Role.PATIENT, subject="sam"))
    await patient.expect("waiting")
    pid = ParticipantId(patient.participant_id)
    await one.redis.zadd(NODES, {one.hub.bus.node_id: one.clock() - 60})  # looks dead
    assert await two.hub.reap(5.0) == 1  # marked lost by the other node...

    where: object = None
    for _ in range(500):  # routed here again (only a node that saw the loss does that)...
        where = await one.redis.hget(f"vst:{{{ROOM}}}:where", pid)
        room = one.hub.peek(RoomId(ROOM))
        if where is not None and room is not None and room.get(pid).connected:
            break  # ...and recorded back
        await asyncio.sleep(0.01)
    assert isinstance(where, bytes)
    assert where.decode().split(" ")[0] == one.hub.bus.node_id
    one.clock.advance(31.0)  # ...and its grace would be over by now
    await one.sweeps()
    await two.sweeps()
    room = one.hub.peek(RoomId(ROOM))
    assert room is not None
    assert pid in room.participants
    await patient.ping()
    await patient.expect("pong")


async def test_a_loss_recorded_late_counts_its_grace_from_the_drop(
    serve: Serve, redis_server: RedisProcess, redis: Redis
) -> None:
    node = await serve(sweep_interval=0.05)
    patient = await node.connect(room=ROOM, token=node.token(ROOM, Role.PATIENT, subject="sam"))
    await patient.expect("waiting")
    pid = ParticipantId(patient.participant_id)
    dropped_at = node.clock.now
    redis_server.kill()
    await patient.close()
    await eventually(lambda: node.hub.unrecorded == 1, what="the loss to be kept for later")
    node.clock.advance(node.settings.resume_grace + 1.0)  # the outage outlasts the grace
    redis_server.start()

    def removed() -> bool:
        room = node.hub.peek(RoomId(ROOM))
        return room is None or pid not in room.participants

    await eventually(removed, what="the participant to be removed", timeout=15.0)
    mine = [e for _, e in await EventLog(redis).read(RoomId(ROOM)) if e.participant == pid]
    [lost] = [e for e in mine if e.kind is EventKind.DISCONNECTED]
    [departed] = [e for e in mine if e.kind is EventKind.DEPARTED]
    assert lost.at == dropped_at  # recorded late, dated when the socket dropped
    assert departed.cause is ExitCause.TIMED_OUT
