"""A real Vestibule node for protocol tests: the Starlette app under a real uvicorn server,
in this process, on a free 127.0.0.1 port, with an injected clock.

`serve(**overrides)` starts one node and returns a `Node`: its WebSocket URL, its clock and a
`connect` helper that closes every client it opened at teardown. Overrides name any field of
`Settings` or of `Limits` (``serve(hello_timeout=0.2, outbox=8)``), so each test states the
limits it depends on and keeps real waits short.

The clock is what the app reads for tokens, join windows, grace periods and rate limits; it
never moves on its own. Real time still drives asyncio timeouts (hello, idle) and the sweeper's
period, which is why the defaults here are short.

Server-side errors are part of the contract: a node records the ERROR log records of the app
and of uvicorn (``log_config=None`` leaves logging alone so they reach pytest's capture), and
teardown fails the test if there are any it did not expect (`Node.take_errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import pytest
import uvicorn
from redis.asyncio import Redis
from starlette.applications import Starlette

from rooms.roles import Role
from signalling import uvicorn_server
from signalling.api.keys import ApiKeys
from signalling.app import create_app
from signalling.client import Client
from signalling.hub import Hub
from signalling.redis_server import RedisProcess
from signalling.settings import Limits, Settings
from tests.cluster import LocalCluster
from tests.support import KEYRING, SECRETS, WAIT_FACTOR, free_port, token

# 2023-11-14T22:13:20Z: an arbitrary, round start for every clock.
EPOCH = 1_700_000_000.0

# Short real-time limits, so a test that waits for one finishes in a fraction of a second.
# Everything else keeps the production default unless a test overrides it.
TEST_DEFAULTS: dict[str, object] = {
    "hello_timeout": 2.0,
    "sweep_interval": 0.01,
}

_LIMIT_FIELDS = frozenset(f.name for f in dataclasses.fields(Limits))
_SETTING_FIELDS = frozenset(f.name for f in dataclasses.fields(Settings)) - {"limits"}


class FakeClock:
    """Unix seconds that move only when told to; ``reads`` counts calls."""

    def __init__(self, now: float = EPOCH) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def build_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings with the test key ring, ``data_dir`` and ``overrides`` of Settings or Limits
    fields; an unknown name is a TypeError, like a wrong keyword."""
    unknown = set(overrides) - _LIMIT_FIELDS - _SETTING_FIELDS
    if unknown:
        raise TypeError(f"not a Settings or Limits field: {sorted(unknown)}")
    merged = {**TEST_DEFAULTS, **overrides}
    limits = Limits(**{k: v for k, v in merged.items() if k in _LIMIT_FIELDS})
    rest = {k: v for k, v in merged.items() if k in _SETTING_FIELDS}
    return Settings(keyring=KEYRING, data_dir=data_dir, limits=limits, **rest)


class _Records(logging.Handler):
    """Keeps the ERROR records of one node's loggers."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclasses.dataclass
class Node:
    """One running server: where it listens, its clock, and clients to talk to it."""

    url: str
    clock: FakeClock
    settings: Settings
    app: Starlette
    _clients: list[Client] = dataclasses.field(default_factory=list)
    _errors: _Records = dataclasses.field(default_factory=_Records)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/", 1)[0])

    @property
    def hub(self) -> Hub:
        hub: Hub = self.app.state.hub
        return hub

    @property
    def http(self) -> str:
        """The base URL of the REST API, e.g. ``http://127.0.0.1:PORT/api/v1``."""
        return f"http://127.0.0.1:{self.port}/api/v1"

    @property
    def redis(self) -> Redis:
        redis: Redis = self.app.state.redis
        return redis

    async def api_key(self, name: str = "test") -> str:
        """A fresh API key's secret (as `vestibule keys create` would make)."""
        _, secret = await ApiKeys(self.redis).create(name)
        return secret

    def token(self, room: str, role: Role, **claims: Any) -> str:
        """A join token valid from now on this node's clock (see tests.support.token)."""
        return token(room, role, now=self.clock.now, **claims)

    async def connect(self, *, room: str, token: str, **options: Any) -> Client:
        """`Client.connect` to this node; the client is closed at teardown."""
        SECRETS.token(token)
        SECRETS.name(options.get("name"))
        client = await Client.connect(self.url, room=room, token=token, timeout=5.0, **options)
        self._clients.append(client)
        SECRETS.token(client.resume_token)  # the node's, but no less secret
        return client

    async def sweeps(self, count: int = 2) -> None:
        """Wait until ``count`` more sweeps have completed, so that at least one whole sweep
        has seen the clock as it is now. Bounded: fails after 200 sweep periods."""
        target = self.hub.sweeps + count
        for _ in range(200):
            if self.hub.sweeps >= target:
                return
            await asyncio.sleep(self.settings.sweep_interval)
        raise AssertionError("the sweeper did not run")

    def take_errors(self) -> list[logging.LogRecord]:
        """The ERROR records logged so far (and forget them: teardown checks the rest)."""
        records, self._errors.records = self._errors.records, []
        return records


_WATCHED_LOGGERS = ("vestibule", "uvicorn.error")


async def eventually(
    condition: Callable[[], bool], *, what: str, timeout: float = 5.0, step: float = 0.01
) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds (times the suite's
    wait factor) saying ``what``."""
    for _ in range(int(timeout * WAIT_FACTOR / step)):
        if condition():
            return
        await asyncio.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


class Serve(Protocol):
    def __call__(
        self, *, clock: FakeClock | None = None, indirect: bool = False, **overrides: Any
    ) -> Awaitable[Node]: ...


def _indirect(app: Starlette) -> Callable[..., Awaitable[None]]:
    """``app`` behind a layer that wraps ``send``, as any ASGI middleware would: the
    connection cannot write frames straight to uvicorn's protocol and takes its fallback."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        async def relay(message: Any) -> None:
            await send(message)

        await app(scope, receive, relay)

    return wrapped


@pytest.fixture
async def serve(tmp_path: Path, redis_server: RedisProcess) -> AsyncIterator[Serve]:
    """A factory: ``await serve(**overrides)`` starts a node; all stop at teardown. The
    nodes of one test share one real redis-server, as a deployment's nodes do."""
    async with serving(tmp_path, redis_server.url) as start:
        yield start


@pytest.fixture
async def cluster_serve(tmp_path: Path, redis_cluster: LocalCluster) -> AsyncIterator[Serve]:
    """`serve`, with the nodes on the session's real Redis Cluster (emptied first)."""
    async with serving(tmp_path, redis_cluster.url) as start:
        yield start


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, redis_url: str) -> AsyncIterator[Serve]:
    """Start nodes on ``redis_url``; stop them all, and check their logs, at the end."""
    running: list[tuple[Node, uvicorn.Server, asyncio.Task[None]]] = []

    async def start(
        *, clock: FakeClock | None = None, indirect: bool = False, **overrides: Any
    ) -> Node:
        clock = clock or FakeClock()
        settings = build_settings(tmp_path / f"node{len(running)}", **overrides)
        app = create_app(settings, clock, redis_url=redis_url)
        port = free_port()
        config = uvicorn_server.config(  # the protocols `vestibule serve` runs
            _indirect(app) if indirect else app,
            app.state.gate,
            settings.limits,
            host="127.0.0.1",
            port=port,
            lifespan="on",
            log_level="warning",
            log_config=None,  # leave logging alone: ERROR records must reach `_Records`
        )
        server = uvicorn.Server(config)
        node = Node(f"ws://127.0.0.1:{port}/ws", clock, settings, app)
        for name in _WATCHED_LOGGERS:
            logging.getLogger(name).addHandler(node._errors)
        task = asyncio.create_task(server.serve())
        running.append((node, server, task))
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            raise RuntimeError(f"uvicorn did not start on port {port}")
        return node

    try:
        yield start
    finally:
        for node, server, task in running:
            for client in node._clients:
                with contextlib.suppress(Exception):
                    await client.close()
            server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(task), 15)
            except TimeoutError:
                stuck = "\n".join(_stack(t) for t in asyncio.all_tasks() if not t.done())
                task.cancel()
                raise AssertionError(f"the server did not stop; tasks:\n{stuck}") from None
            for name in _WATCHED_LOGGERS:
                logging.getLogger(name).removeHandler(node._errors)
        for node, _, _ in running:
            errors = [r.getMessage() for r in node.take_errors()]
            assert not errors, f"the server logged errors: {errors}"


def _stack(task: asyncio.Task[Any]) -> str:
    frames = task.get_stack(limit=8)
    where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(frames))
    return f"{task.get_name()}: {where}"


@pytest.fixture
async def node(serve: Serve) -> Node:
    """One node with the test defaults."""
    return await serve()
