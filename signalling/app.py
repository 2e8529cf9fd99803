"""The Starlette application: the WebSocket endpoint, health checks and the web client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from signalling.connection import Connection
from signalling.hub import Hub
from signalling.settings import Settings

log = logging.getLogger("vestibule.signalling.app")


def create_app(settings: Settings, clock: Callable[[], float] = time.time) -> Starlette:
    """The application for one node. ``clock`` gives unix seconds (tests inject one)."""
    hub = Hub(clock)

    async def signalling(ws: WebSocket) -> None:
        await Connection(ws, hub, settings, clock).run()

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def sweep() -> None:
        while True:
            await asyncio.sleep(settings.sweep_interval)
            try:
                hub.sweep(settings.resume_grace)
            except Exception:  # a failed sweep must not stop the next one
                log.exception("sweep failed")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(sweep())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    routes: list[BaseRoute] = [
        WebSocketRoute("/ws", signalling),
        Route("/healthz", health),
        Route("/readyz", health),
    ]
    web = settings.web_dir
    if web is not None:
        join_page = web / "join.html"

        async def join(request: Request) -> Response:
            return FileResponse(join_page)

        routes += [Route("/join/{room}", join), Mount("/", StaticFiles(directory=web, html=True))]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.hub = hub
    return app
