"""End to end across nodes: node processes sharing one redis-server, node and Redis
crashes, and a single node's restart on its own data directory.

Every wait is bounded: `Client.expect` and `CallPeer` take a timeout, polling loops run a
fixed number of rounds, HTTP requests time out.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect

from rooms.events import Event, EventKind, ExitCause
from rooms.ids import RoomId
from rooms.roles import Role
from signalling.client import Client
from signalling.eventlog import EventLog
from signalling.keys import NODES, where_key
from signalling.keys import node_channel as channel
from signalling.redis_client import connect as connect_redis
from signalling.redis_server import MAX_UNIX_PATH, RedisProcess
from signalling.rtc import CallPeer
from signalling.wire import Message
from tests.cluster import LocalCluster
from tests.e2e.conftest import Nodes, ServerProcess
from tests.e2e.support import T, audio_frames, ids, media, new_room
from tests.support import free_port, token

# While Redis is down a node's command fails at once (connection refused), but at worst
# only after its Redis client's socket timeout (10 s): allow steps in an outage that long.
OUTAGE_T = 15.0
POLL = 0.05


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    """The shared redis-server fixture (which the ``nodes`` fixture uses), but with
    ``appendfsync always``. With the default ``everysec``, Redis postpones its AOF writes
    for up to 2 s while a previous fsync is slow, and still answers meanwhile: a SIGKILL
    then loses acknowledged events (seen here on a loaded machine, and the room's folds
    on the nodes were then ahead of the stream: every command failed with room_busy).
    Only ``always`` promises what test 3 checks."""
    server = RedisProcess(tmp_path / "redis", port=free_port(), fsync="always")
    server.start()
    yield server
    server.stop()


def join_token(room: str, role: Role, **claims: Any) -> str:
    return token(room, role, now=time.time(), **claims)


async def join(
    stack: AsyncExitStack,
    server: ServerProcess,
    room: str,
    role: Role,
    *,
    token: str | None = None,
    resume: str | None = None,
    **claims: Any,
) -> Client:
    """Connect a participant to ``server`` (closed with ``stack``); ``claims`` go in a new
    token unless ``token`` is given."""
    client = await Client.connect(
        server.url,
        room=room,
        token=token or join_token(room, role, **claims),
        resume=resume,
        timeout=T,
    )
    stack.push_async_callback(client.close)
    return client


def http_get(server: ServerProcess, path: str, timeout: float = 3.0) -> tuple[int | None, Any]:
    """GET ``path`` on ``server``: (status, JSON body), or (None, None) if nothing answers.
    (`ServerProcess.status` times out after 1 s, as long as /readyz may take to say 503.)"""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    except (OSError, ValueError):
        return None, None
    finally:
        connection.close()


async def node_id(server: ServerProcess) -> str:
    status, body = await asyncio.to_thread(http_get, server, "/healthz")
    assert status == 200
    return str(body["node"])


async def poll(check: Callable[[], Awaitable[bool]], what: str, timeout: float = T) -> float:
    """Poll ``check`` until true, at most ``timeout`` seconds (a bounded number of
    rounds); return how long it took. Fail the test if it never holds."""
    began = time.monotonic()
    async with asyncio.timeout(timeout + 5.0):  # a check that hangs is bounded too
        for _ in range(max(1, round(timeout / POLL))):
            if await check():
                return time.monotonic() - began
            await asyncio.sleep(POLL)
    pytest.fail(f"{what}: not within {timeout:g} s")


async def readiness(servers: list[ServerProcess], status: int, timeout: float) -> float:
    async def all_say() -> bool:
        got = await asyncio.gather(*(asyncio.to_thread(http_get, s, "/readyz") for s in servers))
        return all(code == status for code, _ in got)

    return await poll(all_say, f"/readyz answering {status} on every node", timeout)


def kinds_of(events: list[Event], pid: str) -> list[EventKind]:
    return [e.kind for e in events if e.participant == pid]


async def reach(
    client: Client, kind: str, where: Callable[[Message], bool], timeout: float = T
) -> Message:
    """Take ``kind`` messages in arrival order until one satisfies ``where``, and return
    it: the earlier ones are states the client has moved past (unlike `Client.expect`
    with ``where``, which leaves them to be found by a later wait)."""
    async with asyncio.timeout(timeout):
        for _ in range(1000):
            message = await client.expect(kind, timeout=timeout)
            if where(message):
                return message
    pytest.fail(f"no {kind} message as expected among the next 1000")


def entry(waiting_list: Message, pid: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [e for e in waiting_list["entries"] if e["participant_id"] == pid]
    assert len(found) == 1, waiting_list
    return found[0]


# -- 1. a call through two nodes ---------------------------------------------------------


@pytest.mark.usefixtures("loopback_ice")
async def test_call_between_two_node_processes(nodes: Nodes, redis: Redis) -> None:
    await _call_between_two_nodes(nodes, redis)


@pytest.mark.usefixtures("loopback_ice")
async def test_call_between_two_node_processes_on_a_redis_cluster(
    cluster_nodes: Nodes, redis_cluster: LocalCluster
) -> None:
    client = connect_redis(redis_cluster.url)
    try:
        await _call_between_two_nodes(cluster_nodes, client)
    finally:
        await client.aclose()


async def _call_between_two_nodes(nodes: Nodes, redis: Redis) -> None:
    a, b = nodes(2)
    room = new_room()
    async with AsyncExitStack() as stack:
        patient = await join(stack, a, room, Role.PATIENT, subject="pat-1", name="Pat")
        waiting = await patient.expect("waiting", timeout=T)
        assert waiting["reason"] == "host_not_started"
        assert waiting["position"] == 1

        host = await join(stack, b, room, Role.HOST, subject="dr-1", capacity=1)
        listed = await host.expect("waiting_list", timeout=T)
        assert ids(listed["entries"]) == [patient.participant_id]
        assert listed["entries"][0]["name"] == "Pat"
        assert listed["entries"][0]["connected"] is True

        # Each participant is held by its own node: what passes between them crosses Redis.
        # (The routing table holds "<node> <connection>" for each participant.)
        where: Any = await redis.hgetall(where_key(RoomId(room)))
        nodes_of = {pid.decode(): value.decode().split(" ", 1)[0] for pid, value in where.items()}
        assert nodes_of == {
            patient.participant_id: await node_id(a),
            host.participant_id: await node_id(b),
        }

        await host.start()
        session = (await host.expect("admitted", timeout=T))["session_id"]
        admitted = await patient.expect("admitted", timeout=T)
        assert admitted["session_id"] == session is not None
        for client in (host, patient):
            await client.expect("status", timeout=T, where=lambda m: m["call_status"] == "in_call")

        caller = CallPeer(host, tracks=[media(stack, "sine=frequency=660").audio], timeout=T)
        callee = CallPeer(patient, tracks=[media(stack, "sine=frequency=440").audio], timeout=T)
        stack.push_async_callback(caller.close)
        stack.push_async_callback(callee.close)
        accepting = asyncio.create_task(callee.accept())
        await caller.call(patient.participant_id)
        assert await accepting == host.participant_id
        await asyncio.gather(caller.connected(), callee.connected())
        assert caller.pc.connectionState == callee.pc.connectionState == "connected"
        # Every candidate crossed the nodes as a message of its own.
        assert callee.remote_candidates == caller.sent_candidates
        assert caller.remote_candidates == callee.sent_candidates

        for peer in (caller, callee):  # decoded frames of a sine are not silence
            frames = await audio_frames(peer, 10)
            assert all(frame.sample_rate == 48000 and frame.samples > 0 for frame in frames)
            assert any(any(bytes(frame.planes[0])) for frame in frames)


# -- 2. a node dies while a patient waits ------------------------------------------------


async def _two_waiting(
    stack: AsyncExitStack, a: ServerProcess, b: ServerProcess, room: str
) -> tuple[Client, Client, Client, str]:
    """Host and patient X on node B, patient Y on node A, waiting in that order. Returns
    the host, X, Y and Y's join token."""
    host = await join(stack, b, room, Role.HOST, subject="dr-1")
    x = await join(stack, b, room, Role.PATIENT, subject="pat-x", name="X")
    assert (await x.expect("waiting", timeout=T))["position"] == 1
    y_token = join_token(room, Role.PATIENT, subject="pat-y", name="Y")
    y = await join(stack, a, room, Role.PATIENT, token=y_token)
    assert (await y.expect("waiting", timeout=T))["position"] == 2
    both = [x.participant_id, y.participant_id]
    await reach(host, "waiting_list", lambda m: ids(m["entries"]) == both)
    return host, x, y, y_token


async def test_patient_resumes_on_another_node_after_a_crash(nodes: Nodes, redis: Redis) -> None:
    await _resume_after_a_crash(nodes, redis)


async def test_patient_resumes_on_another_node_after_a_crash_on_a_redis_cluster(
    cluster_nodes: Nodes, redis_cluster: LocalCluster
) -> None:
    client = connect_redis(redis_cluster.url)
    try:
        await _resume_after_a_crash(cluster_nodes, client)
    finally:
        await client.aclose()


async def _resume_after_a_crash(nodes: Nodes, redis: Redis) -> None:
    a, b = nodes(2, VESTIBULE_NODE_TIMEOUT="1", VESTIBULE_RESUME_GRACE="30")
    dead = await node_id(a)
    room = new_room()
    async with AsyncExitStack() as stack:
        host, x, y, y_token = await _two_waiting(stack, a, b, room)
        a.crash()
        assert await y.closed(timeout=T) == 1006  # no close frame: the node just vanished

        # Y's browser reconnects at once, to the surviving node, and keeps its place.
        back = await join(stack, b, room, Role.PATIENT, token=y_token, resume=y.resume_token)
        assert back.welcome["resumed"] is True
        assert back.participant_id == y.participant_id
        assert back.welcome["stage"] == "waiting"
        waiting = await back.expect("waiting", timeout=T)
        assert (waiting["position"], waiting["reason"]) == (2, "host_not_started")

        # The survivor cleans up after the dead node without touching Y's new connection.
        async def reaped() -> bool:
            return await redis.zscore(NODES, dead) is None

        await poll(reaped, "the dead node forgotten", timeout=10.0)
        await asyncio.sleep(1.0)  # let what the clean-up did, if anything, reach the host
        both = [x.participant_id, y.participant_id]
        since_crash = [m for m in host.pending() if m["type"] == "waiting_list"]
        assert all(ids(m["entries"]) == both for m in since_crash), since_crash
        listed = host.state["waiting_list"]
        assert ids(listed["entries"]) == both
        assert all(e["connected"] for e in listed["entries"]), listed
        assert back.close_code is None
        assert x.close_code is None
        assert back.state["waiting"]["position"] == 2
        assert x.state["waiting"]["position"] == 1

        events = [e for _, e in await EventLog(redis).read(RoomId(room))]
        assert kinds_of(events, y.participant_id).count(EventKind.KNOCKED) == 1
        assert EventKind.RECONNECTED in kinds_of(events, y.participant_id)
        assert not [e for e in events if e.kind is EventKind.DEPARTED]
        assert kinds_of(events, x.participant_id) == [EventKind.ARRIVED, EventKind.KNOCKED]


async def test_patient_who_never_returns_is_removed_after_the_grace(
    nodes: Nodes, redis: Redis
) -> None:
    grace = 2.0
    a, b = nodes(2, VESTIBULE_NODE_TIMEOUT="1", VESTIBULE_RESUME_GRACE=f"{grace:g}")
    room = new_room()
    async with AsyncExitStack() as stack:
        host, x, y, _ = await _two_waiting(stack, a, b, room)
        gone = y.participant_id
        a.crash()

        # The survivor notices the dead node: Y keeps its place, shown as disconnected...
        lost = await reach(
            host,
            "waiting_list",
            lambda m: gone in ids(m["entries"]) and not entry(m, gone)["connected"],
            timeout=T + 5.0,
        )
        assert ids(lost["entries"]) == [x.participant_id, gone]
        assert entry(lost, x.participant_id)["connected"] is True
        # ...until the grace period runs out.
        left = await reach(
            host, "waiting_list", lambda m: ids(m["entries"]) == [x.participant_id], grace + T
        )
        assert entry(left, x.participant_id)["connected"] is True

        events = [e for _, e in await EventLog(redis).read(RoomId(room))]
        assert kinds_of(events, gone) == [
            EventKind.ARRIVED,
            EventKind.KNOCKED,
            EventKind.DISCONNECTED,
            EventKind.KNOCK_CANCELLED,
            EventKind.DEPARTED,
        ]
        disconnected = next(
            e for e in events if e.participant == gone and e.kind is EventKind.DISCONNECTED
        )
        departed = next(e for e in events if e.participant == gone and e.kind is EventKind.DEPARTED)
        assert departed.cause is ExitCause.TIMED_OUT
        assert departed.at - disconnected.at >= grace  # the place was kept the whole grace

        # X was untouched: same place, still connected, told nothing new about its wait.
        assert kinds_of(events, x.participant_id) == [EventKind.ARRIVED, EventKind.KNOCKED]
        assert x.close_code is None
        assert x.state["waiting"]["position"] == 1
        assert not [m for m in x.pending() if m["type"] in ("waiting", "error")]


# -- 3. Redis crashes and comes back ----------------------------------------------------


async def refused_hello(server: ServerProcess, room: str, join_token: str) -> tuple[Message, int]:
    """Say hello on a raw WebSocket; return the reply and the close code that follows."""
    async with connect(server.url, compression=None, open_timeout=T) as ws:
        await ws.send(json.dumps({"type": "hello", "room": room, "token": join_token}))
        async with asyncio.timeout(OUTAGE_T):
            reply: Message = json.loads(await ws.recv())
            await ws.wait_closed()
    assert ws.close_code is not None
    return reply, ws.close_code


async def test_redis_crash_and_restart(nodes: Nodes, redis_server: RedisProcess) -> None:
    node_timeout, outage = 2.0, 3.0  # Redis stays down longer than the node timeout
    a, b = nodes(2, VESTIBULE_NODE_TIMEOUT=f"{node_timeout:g}")
    room = new_room()
    async with AsyncExitStack() as stack:
        patient = await join(stack, a, room, Role.PATIENT, subject="pat-1", name="Pat")
        assert (await patient.expect("waiting", timeout=T))["position"] == 1
        # Capacity 2: the patients' links have no appointment, so they enter by capacity.
        host = await join(stack, b, room, Role.HOST, subject="dr-1", capacity=2)
        await reach(host, "waiting_list", lambda m: ids(m["entries"]) == [patient.participant_id])
        before_client = Redis.from_url(redis_server.url)
        before = await EventLog(before_client).read(RoomId(room))
        await before_client.aclose()
        kinds = [EventKind.ARRIVED, EventKind.KNOCKED, EventKind.ARRIVED]
        assert [e.kind for _, e in before] == kinds

        redis_server.kill()
        down_at = time.monotonic()
        await readiness([a, b], 503, timeout=10.0)
        # A command meanwhile gets a clear error, and the connection stays open.
        ref = await host.start()
        refused = await host.expect("error", timeout=OUTAGE_T, where=lambda m: m.get("ref") == ref)
        assert refused["code"] == "unavailable"
        assert host.close_code is None
        # A new hello is refused, and the socket closed with "try again later" (1013).
        late = join_token(room, Role.PATIENT, subject="pat-2", name="Late")
        reply, code = await refused_hello(a, room, late)
        assert (reply["type"], reply["code"], code) == ("error", "unavailable", 1013)
        await asyncio.sleep(max(0.0, down_at + outage - time.monotonic()))

        # Same data directory: it replays the AOF. Started from this thread, not a worker
        # thread: redis-server gets SIGTERM when the thread that started it ends.
        redis_server.start()
        back_at = time.monotonic()
        await readiness([a, b], 200, timeout=10.0)
        redis = Redis.from_url(redis_server.url)
        stack.push_async_callback(redis.aclose)
        after = await EventLog(redis).read(RoomId(room))
        assert after[: len(before)] == before  # every acknowledged event survived the crash

        # The same connections carry on: the first command after the outage succeeds.
        await host.start()
        started = await host.expect("admitted", "error", timeout=T)
        assert started["type"] == "admitted", started  # not a stale-connection `unavailable`
        session = started["session_id"]
        assert (await patient.expect("admitted", timeout=T))["session_id"] == session

        # Call set-up crosses the nodes again once both have subscribed again to their
        # channels (what is published before that is lost, as transient messages are).
        channels = [channel(await node_id(n)) for n in (a, b)]

        async def subscribed() -> bool:
            counts: Any = await redis.pubsub_numsub(*channels)
            return all(count == 1 for _, count in counts)

        await poll(subscribed, "both nodes listening on their channels")
        sdp = "v=0\r\ns=after the outage\r\n"
        await host.offer(patient.participant_id, sdp)
        assert await patient.expect("offer", timeout=T) == {
            "type": "offer",
            "from": host.participant_id,
            "sdp": sdp,
        }
        await patient.answer(host.participant_id, sdp)
        assert (await host.expect("answer", timeout=T))["from"] == patient.participant_id
        # And a newcomer gets in.
        newcomer = await join(stack, a, room, Role.PATIENT, token=late)
        assert newcomer.welcome["resumed"] is False

        # Nobody was taken for gone: the outage outlasted the node timeout, but the nodes
        # did not reap each other once Redis was back (wait out a node timeout and more).
        await asyncio.sleep(max(0.0, back_at + node_timeout + 1.5 - time.monotonic()))
        events = [e for _, e in await EventLog(redis).read(RoomId(room))]
        assert not [e for e in events if e.kind in (EventKind.DISCONNECTED, EventKind.DEPARTED)]
        roster = host.state["roster"]["participants"]
        assert {p["participant_id"]: p["connected"] for p in roster} == {
            host.participant_id: True,
            patient.participant_id: True,
            newcomer.participant_id: True,  # under capacity, it joins a started call at once
        }
        assert host.close_code is None
        assert patient.close_code is None
        assert not [m for m in host.pending() + patient.pending() if m["type"] == "error"]


# -- 4. one node, no configuration, restarted on its data directory ----------------------


def embedded_redis_url(server: ServerProcess) -> str:
    """The URL of the redis-server a node embeds in its data directory: its unix socket,
    or (where that path is too long for a socket) the loopback port it was given, read
    from the process title redis-server sets ("redis-server 127.0.0.1:PORT")."""
    data = (server.data_dir / "data" / "redis").resolve()
    socket_path = data / "redis.sock"
    if len(str(socket_path)) <= MAX_UNIX_PATH:
        return f"unix://{socket_path}"
    pid = int((data / "redis.pid").read_text().strip())
    title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    found = re.search(r"127\.0\.0\.1:(\d+)", title)
    assert found is not None, title
    return f"redis://127.0.0.1:{found[1]}/0"


async def read_embedded(server: ServerProcess, room: str) -> list[tuple[str, Event]]:
    client = Redis.from_url(embedded_redis_url(server))
    try:
        return await EventLog(client).read(RoomId(room))
    finally:
        await client.aclose()


async def test_serve_keeps_the_waiting_room_across_its_restart(tmp_path: Path) -> None:
    room = new_room()
    first = ServerProcess(tmp_path / "solo")  # no Redis configured: `vestibule serve` embeds one
    assert first.redis_url is None
    second = ServerProcess(tmp_path / "solo")  # the same data directory, a new port
    try:
        await asyncio.to_thread(first.start)
        async with AsyncExitStack() as stack:
            patient_token = join_token(room, Role.PATIENT, subject="pat-1", name="Pat")
            patient = await join(stack, first, room, Role.PATIENT, token=patient_token)
            waiting = await patient.expect("waiting", timeout=T)
            assert (waiting["position"], waiting["reason"]) == (1, "host_not_started")
            before = await read_embedded(first, room)
            assert [e.kind for _, e in before] == [EventKind.ARRIVED, EventKind.KNOCKED]

            await asyncio.to_thread(first.stop)  # SIGTERM: a clean stop, embedded Redis too
            assert await patient.closed(timeout=T) == 1012  # "service restart"
            first.check()

            await asyncio.to_thread(second.start)
            back = await join(
                stack, second, room, Role.PATIENT, token=patient_token, resume=patient.resume_token
            )
            assert back.welcome["resumed"] is True
            assert back.participant_id == patient.participant_id
            waiting = await back.expect("waiting", timeout=T)
            assert (waiting["position"], waiting["reason"]) == (1, "host_not_started")

            host = await join(stack, second, room, Role.HOST, subject="dr-1")
            listed = await host.expect("waiting_list", timeout=T)
            assert ids(listed["entries"]) == [patient.participant_id]
            assert listed["entries"][0]["connected"] is True
            assert listed["entries"][0]["name"] == "Pat"

            after = await read_embedded(second, room)
            assert after[: len(before)] == before  # the events from before the restart
            assert [e.kind for _, e in after[len(before) :]] == [
                EventKind.DISCONNECTED,  # recorded as the first node stopped
                EventKind.RECONNECTED,
                EventKind.ARRIVED,  # the host
            ]
    finally:
        for server in (first, second):
            await asyncio.to_thread(server.stop)
    second.check()


async def test_a_node_exits_on_sigterm_while_redis_hangs(
    nodes: Nodes, redis_server: RedisProcess
) -> None:
    """A stopping node whose Redis answers nothing (frozen, not gone: no error comes before
    the client's 10 s socket timeout, per command) still exits, and cleanly: its connections
    get a bounded time to record their departures, and so does its own clean-up."""
    [a] = nodes(1)
    room = new_room()
    async with AsyncExitStack() as stack:
        patient = await join(stack, a, room, Role.PATIENT)
        await patient.expect("waiting", timeout=T)
        assert redis_server.process is not None
        assert a.process is not None
        redis_server.process.send_signal(signal.SIGSTOP)
        try:
            a.process.send_signal(signal.SIGTERM)
            # Bounded by the node's 2 s grace and 1 s for its own clean-up; a node that
            # waited on Redis would still be running when two socket timeouts were up.
            await asyncio.to_thread(a.process.wait, 2 * OUTAGE_T)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the node did not exit on SIGTERM while Redis hung:\n{a.log()}")
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
        assert await patient.closed() == 1012
    assert "stopped before" in a.log()  # the connection was ended by the grace, quietly
