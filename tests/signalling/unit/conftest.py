"""Unit tests of the hub's pieces against the in-memory ports (`signalling.memory`): no
Redis, no sockets, no real time.

Every test here runs with socket connections forbidden (a test that reached for a server
would fail at once) and must not ask for a fixture that starts one. The clock is injected
and moves only when a test moves it; waits are on the event loop (`settle`), never sleeps.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from signalling.memory import World
from tests.signalling.unit.support import Clock

SERVER_FIXTURES = frozenset({"redis", "redis_server", "redis_cluster", "local_cluster", "serve"})


@pytest.fixture(autouse=True)
def no_servers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail a unit test that asks for a server or opens a connection."""
    asked = SERVER_FIXTURES & set(request.fixturenames)
    assert not asked, f"a unit test must not use {sorted(asked)}"

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a unit test opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def world(clock: Clock) -> World:
    return World(clock)
