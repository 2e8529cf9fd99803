"""The Starlette application: the WebSocket endpoint, health checks and the web client.

The lifespan connects to Redis and runs the node's background work: following its rooms'
streams, receiving messages from other nodes, heartbeats and clean-up after dead nodes,
grace-period sweeps, the status projector, invitation delivery and (embedded default)
watching redis-server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from rooms.participants import Stage
from signalling.api.app import build_api
from signalling.api.appointment_store import outcome_hook
from signalling.api.booking_repair import repairs
from signalling.api.context import ApiContext
from signalling.api.envelope import unrouted
from signalling.api.followers import Followers
from signalling.api.invitations import delivery_worker
from signalling.api.links import is_revoked, migrate_revocations
from signalling.bus import Bus, new_node_id
from signalling.client_socket import ClientSocket
from signalling.connection import Connection
from signalling.gate import Gate
from signalling.hub import Hub
from signalling.metrics import CONTENT_TYPE, Metrics, gauge, labelled
from signalling.migrate import migrate
from signalling.projector import LINGER as PROJECTOR_LINGER
from signalling.projector import Projector
from signalling.redis_client import close as close_redis
from signalling.redis_client import connect as connect_redis
from signalling.redis_ports import redis_hub
from signalling.redis_server import RedisProcess
from signalling.retention import Retention
from signalling.settings import Settings
from signalling.supervisor import LoopState, Supervisor
from signalling.webhooks import StatusEvents, Webhooks

log = logging.getLogger("vestibule.signalling.app")
LEAVE_TIMEOUT = 1.0  # seconds a stopping node tries to remove itself; else it is reaped
PROJECTOR_BLOCK_MS = 1000  # how long one projector round waits for changes
ESTIMATES_EVERY = 30.0  # seconds between refreshes of the waits patients are told


def create_app(
    settings: Settings,
    clock: Callable[[], float] = time.time,
    *,
    redis_url: str | None = None,
    embedded: RedisProcess | None = None,
) -> Starlette:
    """The application for one node. ``clock`` gives unix seconds (tests inject one);
    ``redis_url`` overrides the settings'; ``embedded`` is a redis-server to supervise."""
    if redis_url is not None:
        settings = dataclasses.replace(settings, redis_url=redis_url)
    url = settings.redis_url
    if url is None:
        raise ValueError("no Redis: pass redis_url or run `vestibule serve`, which embeds one")
    redis = connect_redis(url, cluster=settings.redis_cluster)
    node_id = new_node_id()
    bus = Bus(redis, node_id, clock)
    hub = redis_hub(
        redis,
        bus,
        clock,
        replicas=settings.wait_replicas,
        replica_timeout=settings.redis_wait_timeout,
    )
    metrics = Metrics()
    hooks = StatusEvents(redis) if settings.events_url else None
    ctx = ApiContext(redis, settings, clock, hub, Followers(redis, hooks))
    projector = Projector(
        redis,
        node_id,
        clock,
        on_outcome=outcome_hook(ctx),
        retain=settings.retention,
        linger=PROJECTOR_LINGER,
    )
    retention = Retention(redis, projector, keep=settings.retention, audit=settings.audit_retention)
    supervisor = Supervisor()
    limits = settings.limits
    gate = Gate(limits.max_unauthenticated, limits.max_unauthenticated_per_address)

    async def revoked(token_id: str) -> bool:
        return await is_revoked(redis, token_id)

    async def signalling(scope: Scope, receive: Receive, send: Send) -> None:
        peer = scope.get("client")
        socket = ClientSocket(
            receive, send, backlog=settings.limits.outbox, on_authenticated=lambda: gate.leave(peer)
        )
        connection = Connection(socket, hub, settings, clock, metrics, revoked)
        connections.add(connection)
        try:
            await connection.run()
        except asyncio.CancelledError:
            # Only uvicorn cancels a connection's task: when a stopping node's grace for
            # its connections is over (Redis slow or frozen). The departure may be left
            # unrecorded; the other nodes reap this node's participants once its
            # heartbeat is stale. The task ends here, quietly: a stop is not a crash.
            log.warning("stopped before %s had left %s", connection.pid, connection.room_id)
        finally:
            connections.discard(connection)
            gate.leave(peer)

    connections: set[Connection] = set()

    def readings() -> list[Any]:
        """What /metrics reads at each scrape: nothing of it costs anything in between."""
        joined = [c for c in connections if c.joined]
        waiting = 0
        for c in joined:
            room = hub.peek(c.room_id)
            known = None if room is None else room.participants.get(c.pid)
            waiting += known is not None and known.stage is Stage.WAITING
        loops = supervisor.status()
        return [
            gauge("vestibule_connections", "WebSocket connections joined to a room.", len(joined)),
            gauge(
                "vestibule_waiting_participants",
                "Participants connected to this node who are in a waiting room.",
                waiting,
            ),
            gauge(
                "vestibule_unauthenticated_connections",
                "Connections accepted that have not authenticated yet.",
                gate.count,
            ),
            labelled(
                CounterMetricFamily, "vestibule_loop_restarts",
                "Restarts of each background loop.", "loop",
                {name: loop.restarts for name, loop in loops.items()},
            ),
            labelled(
                GaugeMetricFamily, "vestibule_loop_up",
                "1 while a background loop runs and is not failing.", "loop",
                {name: float(loop.state is LoopState.UP) for name, loop in loops.items()},
            ),
            CounterMetricFamily(
                "vestibule_loop_redis_errors",
                "Rounds of periodic background work that Redis failed.",
                value=supervisor.redis_errors,
            ),
        ]  # fmt: skip

    metrics.watch(readings)

    async def scrape(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "node": node_id})

    async def ready(request: Request) -> Response:
        loops = {
            name: {"state": loop.state.value, "restarts": loop.restarts}
            for name, loop in supervisor.status().items()
        }
        body: dict[str, object] = {
            "node": node_id,
            "loops": loops,
            "unauthenticated": gate.count,
        }
        try:
            async with asyncio.timeout(1.0):
                await redis.ping()
        except (RedisError, OSError, TimeoutError):
            return JSONResponse({"status": "not ready", "reason": "redis unavailable", **body}, 503)
        problems = supervisor.problems()
        if problems:
            named = ", ".join(f"{name} {state.value}" for name, state in problems.items())
            return JSONResponse({"status": "not ready", "reason": named, **body}, 503)
        return JSONResponse({"status": "ready", **body})

    healthy_since: float | None = None  # since when this node's heartbeats succeed

    async def keep_alive() -> None:
        nonlocal healthy_since
        try:
            await bus.heartbeat()
        except RedisError:
            healthy_since = None
            raise
        if healthy_since is None:
            healthy_since = clock()

    async def judge_others() -> None:
        # After Redis (or this node's link to it) was down, every other node's heartbeat
        # looks stale: nobody could write one. Judge the others only once this node has
        # seen Redis for a whole node timeout, time for any live node to heartbeat again;
        # otherwise survivors of a long Redis outage reap each other and evict live
        # participants when their grace runs out. A loop of its own: cleaning up after a
        # node with thousands of participants takes a while, and this node's heartbeats
        # must not wait for it (a late heartbeat gets this node reaped in turn).
        if healthy_since is not None and clock() - healthy_since >= settings.node_timeout:
            await hub.reap(settings.node_timeout)

    async def watch_redis() -> None:
        if embedded is not None and not embedded.alive():
            log.error("embedded redis-server stopped: restarting it")
            await asyncio.to_thread(embedded.start)

    async def project() -> None:
        await projector.ensure_group()
        await projector.step(PROJECTOR_BLOCK_MS)

    tailing, listening = asyncio.Event(), asyncio.Event()
    # Required loops: without any of them the node cannot serve its clients (/readyz).
    supervisor.run("feed", lambda health: hub.tail(tailing), required=True)
    supervisor.run("bus", lambda health: bus.listen(hub.receive, listening, health), required=True)
    supervisor.every("heartbeat", settings.heartbeat_every, keep_alive, required=True)
    supervisor.every("projector", 0, project, required=True)
    supervisor.every("reaper", settings.heartbeat_every, judge_others, required=False)
    supervisor.every("sweep", settings.sweep_interval, _sweep(hub, settings), required=False)
    supervisor.run("delivery", lambda health: delivery_worker(ctx, node_id).run(), required=False)
    supervisor.every("booking sweep", settings.hold_sweep, repairs(ctx).sweep, required=False)
    supervisor.every(
        "retention", settings.retention_every, lambda: retention.run(clock()), required=False
    )
    supervisor.every("redis watch", 1.0, watch_redis, required=False)

    async def refresh() -> None:
        hub.refresh()

    supervisor.every("estimates", ESTIMATES_EVERY, refresh, required=False)
    if settings.events_url:
        webhooks = Webhooks(redis, node_id, clock, settings, metrics)
        supervisor.run("webhooks", lambda health: webhooks.run(), required=False)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        with contextlib.suppress(RedisError, OSError):  # another node will do it, or the next start
            renamed = await migrate(redis)  # before the loops read the keys of now
            if renamed:
                log.info("moved %d keys of an older version to their names of now", renamed)
        supervisor.start()
        with contextlib.suppress(RedisError, OSError):  # another node will do it, or the next start
            moved = await migrate_revocations(redis)
            if moved:
                log.info("moved %d revocations onto their links' records", moved)
        await asyncio.wait_for(asyncio.gather(tailing.wait(), listening.wait()), 30)
        log.info("node %s ready", node_id)
        try:
            yield
        finally:
            await _stop(supervisor.tasks())
            # Then whatever they started in the background, so that no command is left
            # half-way on a connection when Redis is closed (its socket would leak).
            await _stop(hub.pending() + bus.pending())
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(LEAVE_TIMEOUT):  # a frozen Redis never answers
                    await bus.leave()
            await close_redis(redis)

    api = build_api(ctx, metrics)
    routes: list[BaseRoute] = [
        Route("/healthz", health),
        Route("/readyz", ready),
        Route("/metrics", scrape),
        Mount("/api/v1", routes=api.routes()),
    ]
    web = settings.web_dir
    if web is not None:
        join_page = web / "join.html"
        console_page = web / "console.html"

        async def join(request: Request) -> Response:
            return FileResponse(join_page)

        async def console(request: Request) -> Response:
            # The clinician's console, opened from the clinician's link (token in the fragment).
            return FileResponse(console_page)

        async def book(request: Request) -> Response:  # a clinician's booking page
            return FileResponse(web / "book.html")

        routes += [
            Route("/join/{room}", join),
            Route("/console/{room}", console),
            Route("/book/{clinician}", book),
            Mount("/", StaticFiles(directory=web, html=True)),
        ]
    unrouted_api = unrouted(api.keys, api.is_public)
    app = Starlette(
        routes=routes,
        middleware=[Middleware(_WebSocketEndpoint, path="/ws", endpoint=signalling)],
        lifespan=lifespan,
        exception_handlers={404: unrouted_api, 405: unrouted_api},
    )
    app.state.hub = hub
    app.state.redis = redis
    app.state.node_id = node_id
    app.state.supervisor = supervisor
    app.state.gate = gate
    app.state.api = api
    app.state.metrics = metrics
    return app


class _WebSocketEndpoint:
    """Serves the WebSocket endpoint at ``path`` ahead of Starlette's routing and exception
    middleware, which wrap ``send`` and ``receive`` in a coroutine layer each per message:
    the connection gets the server's own, so `ClientSocket` can write frames directly.

    The endpoint takes no query string (tokens go in the hello, never in a URL, which
    servers and proxies log): a request with one is refused with HTTP 400 before the
    upgrade, and nothing of it is logged."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str,
        endpoint: Callable[[Scope, Receive, Send], Awaitable[None]],
    ) -> None:
        self.app, self.path, self.endpoint = app, path, endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == self.path:
            if scope.get("query_string"):
                await _refuse_query(receive, send)
            else:
                await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)


QUERY_REFUSED = b"the WebSocket endpoint takes no query string: send the token in the hello\n"


async def _refuse_query(receive: Receive, send: Send) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 400,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "websocket.http.response.body", "body": QUERY_REFUSED})


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the background tasks and return once all of them have ended.

    One cancel is not always enough: on Python 3.11 `asyncio.wait_for`, which redis-py
    puts around each command's socket write when a socket timeout is set, drops a
    cancellation that arrives as the write completes (CPython gh-86296, fixed in 3.12), and
    the task's loop goes on to its next blocking read. So cancel again until all are done,
    or the node would ignore SIGTERM."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
    await asyncio.gather(*tasks, return_exceptions=True)  # all done: collect their ends


def _sweep(hub: Hub, settings: Settings) -> Callable[[], Awaitable[int]]:
    return lambda: hub.sweep(settings.resume_grace, settings.host_absence)
