"""How a node talks to Redis: one client, with the pool and retry policy every part of the
node (and the tests) uses, for one Redis or for a Redis Cluster.

A cluster is chosen by the URL's scheme (``redis+cluster://host:port``, or
``rediss+cluster://`` with TLS) or by ``cluster=True`` (``VESTIBULE_REDIS_CLUSTER=1``); the
address is any one member, from which the client learns the others. The cluster client is
a `redis.asyncio.cluster.RedisCluster`: it offers the same commands, routes each one to the
master of its key's slot and follows ``MOVED``/``ASK`` after resharding or failover. Its
type is given as `Redis` below because every caller uses only the commands both share
(each key, script and transaction keeps to one slot: `signalling.keys`); the few places
that must act differently on a cluster ask `is_cluster`.
"""

from __future__ import annotations

from typing import cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

MAX_CONNECTIONS = 256  # per node (per cluster member); redis-server allows 10,000 clients
POOL_WAIT = 10.0  # seconds a command waits for a pooled connection before failing
SOCKET_TIMEOUT = 10.0  # seconds for a reply; a frozen Redis fails commands after this
CONNECT_TIMEOUT = 2.0
# On a cluster a command that meets a dead master is retried after the client has asked
# the cluster for its slots again: a replica takes over within about the cluster's node
# timeout (2 s in the tests, 15 s by default), so a few short retries ride out the
# failover's end; before that the command fails (`unavailable`) and the caller retries.
CLUSTER_RETRIES = 3
CLUSTER_BACKOFF = ExponentialBackoff(cap=0.5, base=0.05)
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def cluster_url(url: str) -> str | None:
    """``url`` as redis-py takes it if it names a cluster (``redis+cluster://``), else None."""
    scheme, sep, rest = url.partition("://")
    plain = CLUSTER_SCHEMES.get(scheme.lower())
    return None if not sep or plain is None else f"{plain}://{rest}"


def connect(url: str, *, cluster: bool = False) -> Redis:
    """A client for ``url`` (responses not decoded): a cluster client if ``cluster`` or if
    the URL's scheme says so (`cluster_url`).

    One immediate retry on a broken connection: after a Redis restart every pooled
    connection is dead, and without it the first command on each failed (`unavailable`)
    although Redis was back. No more than that, and no backoff: redis-py's default (ten
    retries, backing off up to a second each) holds a failing command for seconds, while
    every loop of the node backs off on its own and a client should hear `unavailable` at
    once. Retrying is safe: a retried compare-and-append that had gone through comes back
    as a conflict, never as a duplicate; the rest is idempotent or transient.

    A blocking pool: in a connect storm (bench/: 100 hellos in flight) the default pool
    refused commands when it ran out of connections, so hellos failed as `unavailable`
    and disconnect records were lost; here a command waits briefly for a free one."""
    plain = cluster_url(url)
    if plain is not None or cluster:
        return _cluster(plain or url)
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    return Redis.from_pool(pool)


def _cluster(url: str) -> Redis:
    client = RedisCluster.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        retry=Retry(
            CLUSTER_BACKOFF,
            CLUSTER_RETRIES,
            supported_errors=(RedisConnectionError, RedisTimeoutError),
        ),
    )
    return cast(Redis, client)  # the same commands: see the module's docstring


async def close(redis: Redis) -> None:
    """Close every connection of ``redis`` (made by `connect`); the client is done.

    On a cluster, redis-py 8.1's ``aclose`` disconnects the members it lists now. The
    client also keeps the member it first asked for the command table (its
    ``commands_parser.node``); that one is disconnected too, in case a failover has
    dropped it from the list (redis-py is pinned to the version this was written against:
    tests/signalling/test_pubsub.py). The sockets a failover did leave open came from
    blocking reads that outlived their loop: `signalling.concurrency`."""
    await redis.aclose()
    if isinstance(redis, RedisCluster):
        parser_node = getattr(redis.commands_parser, "node", None)
        if parser_node is not None:
            await parser_node.disconnect()


def is_cluster(redis: Redis) -> bool:
    """Whether ``redis`` is a cluster client (made by `connect` for a cluster)."""
    return isinstance(redis, RedisCluster)


async def on_one_connection(redis: Redis, key: str, *commands: tuple[object, ...]) -> list[object]:
    """Send ``commands`` one after another on one connection to the master of ``key``'s
    slot, in one round trip, and return their replies (an error reply is returned as its
    exception, not raised). For what must share a connection: ``WAIT`` counts the replicas
    that have the writes *of its own connection*, and a cluster pipeline neither runs
    ``EVALSHA`` nor keeps to one connection.

    A ``MOVED``/``ASK`` reply or a broken connection makes the client learn the slots again
    (the next command goes to the new master) and is raised: a caller retries, or the
    client hears `unavailable`, as for any Redis failure."""
    if not isinstance(redis, RedisCluster):
        async with redis.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            replies: list[object] = await pipe.execute(raise_on_error=False)
            return replies
    await redis.initialize()  # a no-op once the client knows the cluster
    try:
        node = redis.get_node_from_key(key)
    except RedisClusterException as exc:  # not a RedisError: the caller must see one
        raise RedisConnectionError(f"no shard serves the key now: {exc}") from exc
    connection = node.acquire_connection()
    out: list[object] = []
    try:
        await connection.send_packed_command(connection.pack_commands(commands))
        for _ in commands:
            try:
                out.append(await connection.read_response())
            except ResponseError as exc:
                out.append(exc)
    except (RedisConnectionError, RedisTimeoutError, OSError):
        await connection.disconnect()
        await redis.nodes_manager.initialize()
        raise
    finally:
        node.release(connection)
    for reply in out:
        if isinstance(reply, (MovedError, AskError, TryAgainError, ClusterDownError)):
            await redis.nodes_manager.initialize()
            raise reply
    return out
