"""How a node talks to Redis: one client, with the pool and retry policy every part of the
node (and the tests) uses."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

MAX_CONNECTIONS = 256  # per node; redis-server allows 10,000 clients
POOL_WAIT = 10.0  # seconds a command waits for a pooled connection before failing
SOCKET_TIMEOUT = 10.0  # seconds for a reply; a frozen Redis fails commands after this
CONNECT_TIMEOUT = 2.0


def connect(url: str) -> Redis:
    """A client for ``url`` (responses not decoded).

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
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    return Redis.from_pool(pool)
