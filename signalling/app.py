"""The Starlette application: the WebSocket endpoint, health checks and the web client.

The lifespan connects to Redis and runs the node's background work: following its rooms'
streams, receiving messages from other nodes, heartbeats and clean-up after dead nodes,
grace-period sweeps, the status projector and (embedded default) watching redis-server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from signalling.api.app import build_api
from signalling.api.context import ApiContext
from signalling.bus import Bus, new_node_id
from signalling.connection import Connection
from signalling.hub import Hub
from signalling.projector import Projector
from signalling.redis_server import RedisProcess
from signalling.settings import Settings

log = logging.getLogger("vestibule.signalling.app")


def create_app(
    settings: Settings,
    clock: Callable[[], float] = time.time,
    *,
    redis_url: str | None = None,
    embedded: RedisProcess | None = None,
) -> Starlette:
    """The application for one node. ``clock`` gives unix seconds (tests inject one);
    ``redis_url`` overrides the settings'; ``embedded`` is a redis-server to supervise."""
    url = redis_url or settings.redis_url
    if url is None:
        raise ValueError("no Redis: pass redis_url or run `vestibule serve`, which embeds one")
    redis = Redis.from_url(url, socket_timeout=10.0, socket_connect_timeout=2.0)
    node_id = new_node_id()
    bus = Bus(redis, node_id, clock)
    hub = Hub(redis, bus, clock)
    projector = Projector(redis, node_id, clock)

    async def signalling(ws: WebSocket) -> None:
        await Connection(ws, hub, settings, clock).run()

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "node": node_id})

    async def ready(request: Request) -> Response:
        try:
            async with asyncio.timeout(1.0):
                await redis.ping()
        except (RedisError, OSError, TimeoutError):
            return JSONResponse({"status": "not ready", "reason": "redis unavailable"}, 503)
        return JSONResponse({"status": "ready", "node": node_id})

    async def every(seconds: float, work: Callable[[], Awaitable[object]], what: str) -> None:
        while True:
            try:
                await work()
            except RedisError as exc:
                log.warning("%s: redis unavailable (%s)", what, type(exc).__name__)
            except Exception:  # one failed round must not stop the next
                log.exception("%s failed", what)
            await asyncio.sleep(seconds)

    async def keep_alive() -> None:
        await bus.heartbeat()
        await hub.reap(settings.node_timeout)

    async def watch_redis() -> None:
        if embedded is not None and not embedded.alive():
            log.error("embedded redis-server stopped: restarting it")
            await asyncio.to_thread(embedded.start)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tailing, listening = asyncio.Event(), asyncio.Event()
        tasks = [
            asyncio.create_task(hub.tail(tailing)),
            asyncio.create_task(bus.listen(hub.receive, listening)),
            asyncio.create_task(every(settings.heartbeat_every, keep_alive, "heartbeat")),
            asyncio.create_task(every(settings.sweep_interval, _sweep(hub, settings), "sweep")),
            asyncio.create_task(projector.run()),
            asyncio.create_task(every(1.0, watch_redis, "redis watch")),
        ]
        await asyncio.wait_for(asyncio.gather(tailing.wait(), listening.wait()), 30)
        log.info("node %s ready", node_id)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(RedisError, OSError):
                await bus.leave()
            await redis.aclose()

    api = build_api(ApiContext(redis, settings, clock, hub))
    routes: list[BaseRoute] = [
        WebSocketRoute("/ws", signalling),
        Route("/healthz", health),
        Route("/readyz", ready),
        Mount("/api/v1", routes=api.routes()),
    ]
    web = settings.web_dir
    if web is not None:
        join_page = web / "join.html"

        async def join(request: Request) -> Response:
            return FileResponse(join_page)

        routes += [Route("/join/{room}", join), Mount("/", StaticFiles(directory=web, html=True))]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.hub = hub
    app.state.redis = redis
    app.state.node_id = node_id
    app.state.api = api
    return app


def _sweep(hub: Hub, settings: Settings) -> Callable[[], Awaitable[int]]:
    return lambda: hub.sweep(settings.resume_grace)
