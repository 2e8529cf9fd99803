"""`/readyz` and the node's supervised loops, on a real node and a real redis-server.

Issue 10, finding 3: `/readyz` said ready while every heartbeat failed (MOVED errors from a
Redis that still answered PING). Here Redis refuses the heartbeat's command for real (an ACL
rule takes ZADD away from the node's user) and readiness must follow, then come back.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from rooms.roles import Role
from signalling.follower import Follower
from signalling.supervisor import LoopState, Supervisor
from tests.signalling.conftest import Node, Serve, eventually

REQUIRED = {"feed", "bus", "heartbeat", "projector"}


async def readyz(node: Node) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        response = await http.get(f"http://127.0.0.1:{node.port}/readyz")
    body: dict[str, Any] = response.json()
    return response.status_code, body


def supervisor(node: Node) -> Supervisor:
    sup: Supervisor = node.app.state.supervisor
    return sup


async def test_a_ready_node_lists_its_loops_up(node: Node) -> None:
    status, body = await readyz(node)
    assert status == 200
    assert body["status"] == "ready"
    assert {name for name, loop in body["loops"].items() if loop["state"] == "up"} >= REQUIRED
    assert all(loop["restarts"] == 0 for loop in body["loops"].values())
    required = {n for n, s in supervisor(node).status().items() if s.required}
    assert required == REQUIRED


async def test_readyz_is_503_while_redis_refuses_the_heartbeats_and_ready_again_after(
    serve: Serve, redis: Redis
) -> None:
    node = await serve(node_timeout=0.5)  # a heartbeat every 0.1 s
    health = supervisor(node)
    assert (await readyz(node))[0] == 200
    # The node's user may no longer write heartbeats; PING still works, as with MOVED.
    await redis.acl_setuser("default", enabled=True, commands=["-zadd"])
    try:
        await eventually(
            lambda: health.problems() == {"heartbeat": LoopState.FAILING},
            what="the heartbeat loop failing",
        )
        status, body = await readyz(node)
        assert status == 503
        assert body["status"] == "not ready"
        assert body["reason"] == "heartbeat failing"
        assert body["loops"]["heartbeat"] == {"state": "failing", "restarts": 0}
        assert await redis.ping()  # what /readyz used to check alone
    finally:
        await redis.acl_setuser("default", enabled=True, commands=["+zadd"])
    await eventually(lambda: health.problems() == {}, what="the heartbeats working again")
    status, body = await readyz(node)
    assert (status, body["status"]) == (200, "ready")


async def test_a_feed_loop_that_dies_is_restarted_counted_and_serves_again(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = await serve()
    host = await node.connect(room="r1", token=node.token("r1", Role.HOST, subject="dr"))
    resync_all = Follower._resync_all
    crashed = False

    def crash_once(self: Follower) -> None:
        nonlocal crashed
        if not crashed:
            crashed = True
            raise RuntimeError("a bug in the feed loop")
        resync_all(self)

    monkeypatch.setattr(Follower, "_resync_all", crash_once)
    # Whether redis-py reconnects the feed by itself or the loop subscribes anew, the feed
    # loop then reads every room again (`_resync_all`): that is where it meets the bug.
    await node.redis.client_kill_filter(_type="pubsub")
    await eventually(lambda: supervisor(node).status()["feed"].restarts == 1, what="a restart")
    errors = [r.getMessage() for r in node.take_errors()]
    assert len(errors) == 1
    assert errors[0].startswith("the feed loop stopped: restart 1 in 0.1 s: RuntimeError at")
    await eventually(lambda: supervisor(node).problems() == {}, what="the feed loop up again")
    status, body = await readyz(node)
    assert (status, body["loops"]["feed"]) == (200, {"state": "up", "restarts": 1})
    # The restarted feed follows the room again: an arrival recorded by another node
    # reaches the host only through this node's feed.
    other = await serve(clock=node.clock)
    patient = await other.connect(
        room="r1", token=node.token("r1", Role.PATIENT, subject="sam", name="Sam")
    )
    waiting = await host.expect("waiting_list", where=lambda m: bool(m["entries"]))
    assert [e["participant_id"] for e in waiting["entries"]] == [patient.participant_id]
