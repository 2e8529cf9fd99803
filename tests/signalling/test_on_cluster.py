"""Nodes on a real Redis Cluster (the session's, `tests.cluster`: three masters with a
replica each): rooms spread over the shards, feeds and node channels on sharded pub/sub,
change notes in buckets, and a failover in the middle of a stream of knocks and admits.

Two nodes run in this process (`cluster_serve`), as `serve` runs them on one Redis.
"""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from rooms.events import Event, EventKind
from rooms.ids import AppointmentId, ParticipantId, RoomId
from rooms.participants import Stage
from rooms.projection import Outcome
from rooms.roles import Role
from rooms.room import Room
from signalling.client import Client, ClientError
from signalling.eventlog import EMPTY, EventLog, NotReplicated
from signalling.keys import events_key
from signalling.projector import queue_change, read_outcomes
from signalling.redis_client import connect
from tests.cluster import LocalCluster
from tests.signalling.conftest import Node, Serve, eventually
from tests.support import WAIT_FACTOR

T = 10.0 * WAIT_FACTOR
ROOMS = [f"room{i}" for i in range(6)]


def _open_sockets() -> set[socket.socket]:
    gc.collect()
    return {s for s in gc.get_objects() if isinstance(s, socket.socket) and s.fileno() != -1}


@pytest.fixture(autouse=True)
def nothing_left_open() -> Iterator[None]:
    """Once a test's nodes have stopped, none of their connections is open. (After a
    failover, redis-py's cluster client kept one member's connections open when it was
    closed: `signalling.redis_client.close`. Left to garbage collection, they failed
    whichever later test happened to collect them.)"""
    before = _open_sockets()
    yield
    left = [s.getpeername() for s in _open_sockets() - before]
    assert left == [], f"connections left open: {left}"


async def folded(node: Node, room: str) -> Room:
    """The room as its stream on the cluster says, folded afresh."""
    fold = Room(RoomId(room))
    for _, event in await EventLog(node.redis).read(RoomId(room)):
        fold.apply(event)
    return fold


async def test_calls_across_two_nodes_in_rooms_on_every_shard(
    cluster_serve: Serve, redis_cluster: LocalCluster
) -> None:
    one = await cluster_serve()
    two = await cluster_serve(clock=one.clock)
    assert len({redis_cluster.master_of(events_key(r)) for r in ROOMS}) >= 2
    for room in ROOMS:
        host = await one.connect(room=room, token=one.token(room, Role.HOST, subject="dr"))
        patient = await two.connect(room=room, token=one.token(room, Role.PATIENT, subject="p"))
        await patient.expect("waiting")
        await host.expect("waiting_list", where=lambda m: len(m["entries"]) == 1)
        await host.start()
        await patient.expect("admitted", timeout=T)
        await patient.offer(host.participant_id, "v=0 offer")  # node two -> node one
        assert (await host.expect("offer", timeout=T))["sdp"] == "v=0 offer"
        await host.answer(patient.participant_id, "v=0 answer")  # node one -> node two
        assert (await patient.expect("answer", timeout=T))["sdp"] == "v=0 answer"


async def test_admit_all_across_nodes(cluster_serve: Serve) -> None:
    one = await cluster_serve()
    two = await cluster_serve(clock=one.clock)
    room = ROOMS[1]
    host = await one.connect(room=room, token=one.token(room, Role.HOST, subject="dr"))
    await host.start()
    await host.expect("admitted")
    patient = await two.connect(room=room, token=one.token(room, Role.PATIENT, subject="p"))
    await patient.expect("admitted", timeout=T)  # the call is full now (capacity 1)
    guests = [
        await (one, two)[i % 2].connect(room=room, token=one.token(room, Role.GUEST), name=n)
        for i, n in enumerate(("Kim", "Lee", "Ann"))
    ]
    for guest in guests:
        await guest.expect("waiting", where=lambda m: m["can_ask"] is True, timeout=T)
        await guest.knock()
    await host.expect("waiting_list", where=lambda m: len(m["entries"]) == 3, timeout=T)
    await host.admit_all()
    for guest in guests:
        assert (await guest.expect("admitted", timeout=T))["by"] == host.participant_id
    await host.expect("roster", where=lambda m: len(m["participants"]) == 5, timeout=T)


async def test_the_projector_settles_outcomes_and_windows_on_a_cluster(
    cluster_serve: Serve,
) -> None:
    node = await cluster_serve()
    appointment = AppointmentId("apt_1")
    now = node.clock.now
    claims: dict[str, Any] = {"appointment": appointment, "starts_at": now, "ends_at": now + 60}
    outcomes: dict[str, Outcome] = {}
    for room, came in ((ROOMS[2], True), (ROOMS[3], False)):
        host = await node.connect(room=room, token=node.token(room, Role.HOST, **claims))
        if came:
            await host.start()
            patient = await node.connect(
                room=room, token=node.token(room, Role.PATIENT, subject="p", **claims)
            )
            await patient.expect("admitted", timeout=T)
            await host.end()
            await patient.expect("ended", timeout=T)
        outcomes[room] = Outcome.COMPLETED if came else Outcome.NO_SHOW
    node.clock.advance(2 * 3600 + 60)  # past both join windows
    settled: dict[str, dict[AppointmentId, Outcome]] = {}

    async def read() -> None:
        for room in outcomes:
            settled[room] = await read_outcomes(node.redis, RoomId(room))

    for _ in range(int(20 * WAIT_FACTOR / 0.1)):
        await read()
        if all(settled[r].get(appointment) is o for r, o in outcomes.items()):
            break
        await asyncio.sleep(0.1)
    assert {r: s.get(appointment) for r, s in settled.items()} == outcomes


async def _hello(node: Node, room: str, token: str, name: str) -> Client:
    """Connect, saying hello again while it is refused as `unavailable` (a failover under
    way). Bounded."""
    for _ in range(int(50 * WAIT_FACTOR)):
        try:
            return await node.connect(room=room, token=token, name=name)
        except ClientError as exc:
            if "unavailable" not in str(exc):
                raise
            await asyncio.sleep(0.1)
    raise AssertionError("the hello was never accepted")


def _reply_to(kind: str, ref: str, done: Any = None) -> Any:
    return lambda m: (m["type"] == kind and (done is None or done(m))) or m.get("ref") == ref


def _names(pid: str) -> Any:
    return lambda m: pid in [p["participant_id"] for p in m["participants"]]


def _admit(host: Client, pid: str) -> Any:
    return lambda: host.admit(pid)


def _knocked(host: Client, pid: str) -> Any:
    def on_list() -> bool:
        entries: list[Any] = host.state.get("waiting_list", {}).get("entries", [])
        return pid in [e["participant_id"] for e in entries]

    return on_list


async def _until(client: Client, send: Any, kind: str, done: Any = None) -> Any:
    """Send (``send()``) until ``kind`` comes back (one for which ``done`` holds, if
    given): a command refused as `unavailable` (a failover under way) is sent again.
    Bounded. (A roster sent for another reason, a guest's connection lost for a moment in
    the failover, say, is no answer to an admit: hence ``done``.)"""
    for _ in range(int(50 * WAIT_FACTOR)):
        ref = await send()
        message = await client.expect(
            kind,
            "error",
            timeout=T,
            where=_reply_to(kind, ref, done),
        )
        if message["type"] == kind:
            return message
        assert message["code"] in ("unavailable", "room_busy"), message
        await asyncio.sleep(0.1)
    raise AssertionError(f"{kind} never came")


async def test_a_failover_amid_knocks_and_admits_loses_no_acknowledged_event(
    cluster_serve: Serve, redis_cluster: LocalCluster
) -> None:
    """CLUSTER FAILOVER on the replica of the room's master, in the middle of the stream.
    (A SIGKILL of the master, with the cluster promoting the replica by itself, passed
    alone but left the shared cluster unusable for the tests after it: not in the suite
    until that is understood.)"""
    one = await cluster_serve()
    two = await cluster_serve(clock=one.clock)
    room = ROOMS[4]
    host = await one.connect(room=room, token=one.token(room, Role.HOST, subject="dr"))
    await _until(host, host.start, "admitted")
    patient = await two.connect(room=room, token=one.token(room, Role.PATIENT, subject="p"))
    await patient.expect("admitted", timeout=T)
    admitted: list[str] = []
    guests: list[tuple[Client, str]] = []
    failover: asyncio.Task[tuple[int, int]] | None = None
    for i in range(8):
        if i == 3:  # the room's master hands over to its replica while guests come and go
            failover = asyncio.create_task(
                asyncio.to_thread(redis_cluster.failover, events_key(room))
            )
        node = (one, two)[i % 2]
        token = one.token(room, Role.GUEST)
        guest = await _hello(node, room, token, f"Guest{i}")
        guests.append((guest, token))
        await guest.expect("waiting", where=lambda m: m["can_ask"] is True, timeout=T)
        await _until(guest, guest.knock, "waiting")
        pid = guest.participant_id
        await eventually(
            _knocked(host, pid),
            what="the knock on the host's list",
            timeout=T,
        )
        await _until(host, _admit(host, pid), "roster", _names(pid))
        await guest.expect("admitted", timeout=T)
        admitted.append(pid)
    assert failover is not None
    _, new = await failover
    assert "role:master" in redis_cluster.call(new, "info", "replication")
    # Every admission a client was told of is in the stream; each node's fold is the stream's.
    truth = await folded(one, room)
    for pid in admitted:
        assert truth.get(ParticipantId(pid)).stage is Stage.IN_CALL
    kinds = [e.kind for _, e in await EventLog(one.redis).read(RoomId(room))]
    assert kinds.count(EventKind.ADMITTED) >= len(admitted)
    for node in (one, two):

        def same(node: Node = node) -> bool:
            fold = node.hub.peek(RoomId(room))
            return fold is not None and dict(fold.participants) == dict(truth.participants)

        await eventually(same, what="the node's fold to match the stream", timeout=T)
    # Every guest resumes (on the other node) in the state the stream holds.
    for i, (guest, token) in enumerate(guests):
        resume, pid = guest.resume_token, guest.participant_id
        await guest.close()
        node = (two, one)[i % 2]
        back = await node.connect(room=room, token=token, resume=resume, name=f"Guest{i}")
        assert back.participant_id == pid
        assert back.welcome["stage"] == truth.get(ParticipantId(pid)).stage.value


async def test_an_append_that_no_replica_has_in_time_is_not_acknowledged(
    redis_cluster: LocalCluster,
) -> None:
    redis = connect(redis_cluster.url)
    room = RoomId(ROOMS[5])
    log = EventLog(redis, note=queue_change, replicas=1, replica_timeout=0.2)
    participant = ParticipantId("p_1")
    event = Event(
        EventKind.ARRIVED, 1.0, actor=participant, participant=participant, role=Role.GUEST
    )
    first = await log.append(room, EMPTY, [event])  # with its replica: acknowledged
    replica = redis_cluster.replica_of(redis_cluster.master_of(events_key(room)))
    redis_cluster.pause(replica)
    try:
        with pytest.raises(NotReplicated):
            await log.append(room, first[-1], [event])
    finally:
        redis_cluster.resume(replica)
    try:
        # Appended all the same: the stream, which every node folds, has it; the client
        # that asked was told `unavailable` rather than that it is safe.
        assert len(await log.read(room)) == 2
    finally:
        await redis.aclose()
