"""Fixtures shared by every test folder: a real redis-server on a free port. And the plugin
that fails the session if a log line holds a secret or patient data (tests/logscan.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from signalling.redis_client import connect as connect_redis
from signalling.redis_server import RedisProcess
from tests.cluster import LocalCluster
from tests.logscan import (  # noqa: F401 -- hooks, found by name
    pytest_configure,
    pytest_sessionfinish,
    pytest_terminal_summary,
)
from tests.support import free_port

pytest_plugins = ["pytester"]  # tests/test_logscan.py runs a session of its own


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    """A real redis-server for this test alone, with AOF persistence in tmp_path."""
    server = RedisProcess(tmp_path / "redis", port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis(redis_server: RedisProcess) -> AsyncIterator[Redis]:
    client = connect_redis(redis_server.url)  # as a node connects
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One real Redis Cluster (three masters, a replica each) for the whole session: start
    it once, it takes a few seconds. Use `redis_cluster`, which empties it first."""
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster(local_cluster: LocalCluster) -> LocalCluster:
    """The session's Redis Cluster, emptied for this test (and healthy again, if an earlier
    test failed a master over)."""
    local_cluster.wait_ok()
    local_cluster.flush()
    return local_cluster
