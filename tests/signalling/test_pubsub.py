"""The pub/sub adapter (signalling/pubsub.py) and the cluster helpers of
signalling/redis_client.py: what of redis-py they rely on (the first tests fail loudly when
redis-py changes it), and the same behaviour on one Redis and on a real Redis Cluster."""

from __future__ import annotations

import asyncio
import inspect
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
from redis._parsers import AsyncCommandsParser
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, NodesManager, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

from signalling.keys import feed_channel, node_channel
from signalling.pubsub import Item, publish, sharded, subscriber
from signalling.redis_client import connect, is_cluster, on_one_connection
from signalling.redis_server import RedisProcess
from tests.cluster import LocalCluster
from tests.support import WAIT_FACTOR

ROOT = Path(__file__).resolve().parents[2]
T = 5.0 * WAIT_FACTOR
CHANNELS = [feed_channel(f"room{i}") for i in range(8)] + [node_channel("n_1")]


def test_redis_py_is_the_version_the_adapters_were_written_for() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [d for d in pyproject["project"]["dependencies"] if d.startswith("redis[")]
    assert pins == ["redis[hiredis]>=8.1,<8.2"], "review signalling/pubsub.py, redis_client.py"
    assert redis.__version__.startswith("8.1."), "review signalling/pubsub.py, redis_client.py"


def test_the_redis_py_internals_the_adapters_use_are_there() -> None:
    # signalling.pubsub: the reconnect hook, the connection, the shard subscriptions.
    assert "on_connect" in PubSub.__dict__
    assert "self.connection" in inspect.getsource(PubSub.__init__)
    assert "shard_channels" in inspect.getsource(PubSub.__init__)
    assert isinstance(PubSub.__dict__["subscribed"], property)
    for name in ("ssubscribe", "sunsubscribe", "get_message", "aclose"):
        assert callable(getattr(PubSub, name, None)), f"PubSub.{name}"
    # signalling.redis_client.on_one_connection and the subscriber's topology refresh.
    assert callable(RedisCluster.get_node_from_key)
    assert callable(NodesManager.initialize)
    for name in ("acquire_connection", "release"):
        assert callable(getattr(ClusterNode, name, None)), f"ClusterNode.{name}"
    for name in ("pack_commands", "send_packed_command", "read_response", "disconnect"):
        assert callable(getattr(AbstractConnection, name, None)), f"Connection.{name}"
    # signalling.redis_client.close: the command table's member, which aclose leaves open.
    assert "self.commands_parser = " in inspect.getsource(RedisCluster.__init__)
    assert "node" in AsyncCommandsParser.__slots__
    assert callable(ClusterNode.disconnect)


@pytest.fixture(params=["redis", "cluster"])
async def client(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Redis, LocalCluster | None]]:
    """A node's client on one Redis, then on the session's Redis Cluster."""
    if request.param == "redis":
        server: RedisProcess = request.getfixturevalue("redis_server")
        plain = connect(server.url)
        yield plain, None
        await plain.aclose()
    else:
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        made = connect(cluster.url)
        yield made, cluster
        await made.aclose()


async def _items(sub: object, count: int) -> list[Item]:
    out: list[Item] = []
    async with asyncio.timeout(T):
        while len(out) < count:
            item = await sub.get(0.1)  # type: ignore[attr-defined]
            if item is not None:
                out.append(item)
    return out


async def _until_lost(sub: object) -> None:
    async with asyncio.timeout(T):
        while True:
            await sub.get(0.1)  # type: ignore[attr-defined]


async def test_messages_on_channels_of_every_slot_arrive(
    client: tuple[Redis, LocalCluster | None],
) -> None:
    r, cluster = client
    assert sharded(r) is is_cluster(r) is (cluster is not None)
    sub = subscriber(r)
    try:
        await sub.subscribe(*CHANNELS)
        confirmed = await _items(sub, len(CHANNELS))
        assert sorted(i.channel for i in confirmed) == sorted(CHANNELS)
        assert {i.kind for i in confirmed} == {"subscribe"}
        assert sub.connected
        assert not sub.lost
        for channel in CHANNELS:
            await publish(r, channel, channel.encode())
        got = await _items(sub, len(CHANNELS))
        assert sorted((i.channel, i.data) for i in got) == sorted((c, c.encode()) for c in CHANNELS)
        await sub.unsubscribe(CHANNELS[0])
        [gone] = await _items(sub, 1)
        assert (gone.kind, gone.channel) == ("unsubscribe", CHANNELS[0])
        await publish(r, CHANNELS[0], b"not heard")
        await publish(r, CHANNELS[1], b"heard")
        [heard] = await _items(sub, 1)
        assert (heard.channel, heard.data) == (CHANNELS[1], b"heard")
    finally:
        await sub.aclose()


async def test_concurrent_first_subscriptions_are_each_confirmed_and_heard(
    client: tuple[Redis, LocalCluster | None],
) -> None:
    """A node that serves many new rooms at once subscribes to their feeds concurrently (a
    connect storm): every subscription is confirmed and every feed heard. On a cluster,
    concurrent first subscriptions to a shard each opened a connection of their own, all
    but one never read: the hellos of most new rooms hung."""
    r, _ = client
    channels = [feed_channel(f"storm-{n}") for n in range(60)]
    sub = subscriber(r)
    try:
        await asyncio.gather(*(sub.subscribe(c) for c in channels))
        confirmed = await _items(sub, len(channels))
        assert sorted(i.channel for i in confirmed) == sorted(channels)
        for channel in channels:
            await publish(r, channel, b"x")
        heard = await _items(sub, len(channels))
        assert sorted(i.channel for i in heard) == sorted(channels)
    finally:
        await sub.aclose()


async def test_commands_on_one_connection_and_wait(
    client: tuple[Redis, LocalCluster | None],
) -> None:
    r, cluster = client
    key = "vst:{room1}:x"
    replies = await on_one_connection(r, key, ("SET", key, "1"), ("WAIT", 1, 2000))
    assert replies[0] in (True, b"OK")
    assert replies[1] == (1 if cluster is not None else 0)  # the cluster's replica has it


async def test_a_failover_ends_the_subscription_and_a_new_one_follows_the_new_master(
    redis_cluster: LocalCluster,
) -> None:
    r = connect(redis_cluster.url)
    channel = feed_channel("room1")
    sub = subscriber(r)
    try:
        await sub.subscribe(channel)
        await _items(sub, 1)
        redis_cluster.failover(channel)
        with pytest.raises(RedisConnectionError):
            await _until_lost(sub)
        assert not sub.connected
        await sub.aclose()
        sub = subscriber(r)
        await sub.subscribe(channel)
        await _items(sub, 1)
        await publish(r, channel, b"after")
        [item] = await _items(sub, 1)
        assert item.data == b"after"
    finally:
        await sub.aclose()
        await r.aclose()
