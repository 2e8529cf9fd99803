"""The calendar's scripts on a real Redis Cluster (the session's, `tests.cluster`: three
masters with a replica each, on loopback): each keeps to one hash slot, so holds,
confirmations, releases, notes, events and repair tickets work unchanged with calendars
spread over the shards (`signalling.calendar`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import RedisCluster

from rooms.appointments import Actor
from rooms.ids import AppointmentId
from rooms.slots import Busy
from signalling.calendar import Calendar, Outcome, bucket_key, bucket_of
from signalling.keys import busy_key
from tests.cluster import LocalCluster

CLINICIANS = ("cli_1", "cli_2", "cli_3", "dr lee", "x}y", "clinic/7")


@pytest.fixture
async def client(redis_cluster: LocalCluster) -> AsyncIterator[RedisCluster]:
    redis = RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
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
