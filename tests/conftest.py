"""Fixtures shared by every test folder: a real redis-server on a free port. And the plugin
that fails the session if a log line holds a secret or patient data (tests/logscan.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from signalling.redis_client import connect as connect_redis
from signalling.redis_server import RedisProcess
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
