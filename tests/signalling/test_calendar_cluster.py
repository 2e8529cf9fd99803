"""The calendar's scripts on a real Redis Cluster (three masters on loopback): each keeps to
one hash slot, so holds, confirmations, releases, notes, events and repair tickets work
unchanged with calendars spread over the shards (`signalling.calendar`).

The cluster is three ``redis-server --cluster-enabled yes`` processes joined with
``redis-cli --cluster create``; the test waits (bounded) for ``cluster_state:ok``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster

from rooms.appointments import Actor
from rooms.ids import AppointmentId
from rooms.slots import Busy
from signalling.calendar import Calendar, Outcome, bucket_key, bucket_of, busy_key
from signalling.redis_server import RedisProcess
from tests.support import WAIT_FACTOR, free_port

CLINICIANS = ("cli_1", "cli_2", "cli_3", "dr lee", "x}y", "clinic/7")
READY_TIMEOUT = 20.0 * WAIT_FACTOR


class ClusterMember(RedisProcess):
    """A redis-server that takes part in a cluster."""

    def command(self) -> list[str]:
        return [
            *super().command(),
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self.data_dir / "nodes.conf"),
            "--cluster-node-timeout", "2000",
        ]  # fmt: skip


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[int]]:
    """Three masters with all 16384 slots; their ports."""
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.fail(
            "redis-cli is missing (it comes with redis-server: apt-get install redis-tools)"
        )
    members = [ClusterMember(tmp_path / f"r{i}", port=cluster_port(), fsync="no") for i in range(3)]
    with contextlib.ExitStack() as stack:
        for member in members:
            member.start()
            stack.callback(member.stop)
        addresses = [f"127.0.0.1:{m.port}" for m in members]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=READY_TIMEOUT,
        )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT
        ports = [m.port for m in members if m.port is not None]
        while not all(_state_ok(cli, port) for port in ports):
            assert time.monotonic() < deadline, "the cluster did not reach cluster_state:ok"
            time.sleep(0.05)
        yield ports


def cluster_port() -> int:
    """A free port whose cluster bus port (10000 above it) is free too."""
    for _ in range(100):
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise AssertionError("no free pair of ports for a cluster member")


def _state_ok(cli: str, port: int) -> bool:
    done = subprocess.run(
        [cli, "-p", str(port), "cluster", "info"], capture_output=True, text=True, timeout=5
    )
    return "cluster_state:ok" in done.stdout


@pytest.fixture
async def client(cluster: list[int]) -> AsyncIterator[RedisCluster]:
    redis = RedisCluster(host="127.0.0.1", port=cluster[0])
    await redis.initialize()
    yield redis
    await redis.aclose()


async def test_every_step_runs_on_a_cluster_with_calendars_on_several_shards(
    client: RedisCluster,
) -> None:
    calendar = Calendar(client)  # type: ignore[arg-type]  # the same commands
    slots = {int(await client.cluster_keyslot(busy_key(c))) for c in CLINICIANS}
    owners = {client.get_node_from_key(busy_key(c)).name for c in CLINICIANS}  # type: ignore[union-attr]
    assert len(slots) == len(CLINICIANS)
    assert len(owners) >= 2  # spread over shards
    a, b, c = AppointmentId("apt_a"), AppointmentId("apt_b"), AppointmentId("apt_c")
    for clinician in CLINICIANS:
        hold = calendar.hold
        assert await hold(clinician, a, 100.0, 200.0, now=0.0, expires_at=900.0, secret="s") is (
            Outcome.OK
        )
        assert await hold(clinician, b, 150.0, 250.0, now=0.0, expires_at=900.0, secret="s") is (
            Outcome.TAKEN
        )
        assert await calendar.confirm(clinician, a, secret="s", now=1.0) is Outcome.OK
        assert await calendar.note(clinician, c, 300.0, 400.0, now=1.0) is Outcome.OK
        assert await calendar.busy(clinician, 0.0, now=10**6) == [
            Busy(100.0, 200.0),
            Busy(300.0, 400.0),
        ]
        assert await hold(clinician, b, 250.0, 300.0, now=1.0, expires_at=2.0, secret="t") is (
            Outcome.OK
        )
        assert await calendar.expire(clinician, b, now=2.0)
        await calendar.cancel(clinician, a, now=3.0, by=Actor.PATIENT)
        kinds = [e.kind.value for e in await calendar.events(clinician, a, since=0.0)]
        assert kinds == ["held", "confirmed", "cancelled"]
        assert [e.kind.value for e in await calendar.events(clinician, b, since=0.0)] == [
            "held",
            "expired",
        ]
    # Repair tickets: each bucket is its own slot.
    tickets = [await calendar.ticket(c, a, due=5.0) for c in CLINICIANS]
    claimed = []
    for bucket in sorted({bucket_of(c) for c in CLINICIANS}):
        claimed += await calendar.claim(bucket, now=10.0, lease=30.0, limit=10)
    assert sorted(t.member for t in claimed) == sorted(t.member for t in tickets)
    buckets = {int(await client.cluster_keyslot(bucket_key(bucket_of(c)))) for c in CLINICIANS}
    assert len(buckets) == len({bucket_of(c) for c in CLINICIANS})


async def test_concurrent_holds_on_a_cluster_give_one_per_time(client: RedisCluster) -> None:
    calendar = Calendar(client)  # type: ignore[arg-type]
    outcomes = await asyncio.gather(
        *(
            calendar.hold(
                CLINICIANS[i % 3],
                AppointmentId(f"apt_{i}"),
                100.0,
                200.0,
                now=0.0,
                expires_at=900.0,
                secret=str(i),
            )
            for i in range(60)
        )
    )
    assert outcomes.count(Outcome.OK) == 3  # one per clinician
    assert outcomes.count(Outcome.TAKEN) == 57
