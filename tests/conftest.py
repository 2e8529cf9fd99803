"""Fixtures shared by every test folder: a real redis-server on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from signalling.redis_client import connect as connect_redis
from signalling.redis_server import RedisProcess
from tests.support import free_port


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
