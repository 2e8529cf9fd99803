"""The response envelope and the wrapper every endpoint goes through.

``{"data": ..., "meta": {"request_id": ...}, "error": null}`` on success;
``{"data": null, "meta": {...}, "error": {"code", "message", "details"}}`` on failure.
The wrapper gives each request an id, checks the API key, turns `ApiError` into its
status, Redis outages into 503, and anything unexpected into a logged 500 that shows the
client no trace.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from signalling.api.errors import (
    ApiError,
    InvalidJson,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
)
from signalling.api.keys import ApiKey, ApiKeys
from signalling.api.sessions import ConsoleSession
from signalling.metrics import Metrics

log = logging.getLogger("vestibule.signalling.api")

Handler = Callable[["Call"], Awaitable[Response]]
MAX_BODY = 64 * 1024
MAX_PATH_ID = 200  # the longest id any resource has: a longer path parameter names nothing


class Call:
    """One API request: the Starlette request, its id and the credentials that made it (an
    API key, or a clinician's console session; neither on a public operation)."""

    def __init__(
        self,
        request: Request,
        request_id: str,
        key: ApiKey | None,
        session: ConsoleSession | None = None,
    ) -> None:
        self.request = request
        self.request_id = request_id
        self.key = key
        self.session = session

    @property
    def key_id(self) -> str | None:
        return None if self.key is None else self.key.id

    def ok(self, data: object, status: int = 200, **meta: object) -> Response:
        return JSONResponse(
            {"data": data, "meta": {"request_id": self.request_id, **meta}, "error": None},
            status_code=status,
        )

    def path_id(self, name: str, noun: str | None = None) -> str:
        """Path parameter ``name``, naming a stored resource; NotFound if it is longer than
        any id (``noun`` names the resource, by default ``name`` without ``_id``)."""
        value: str = self.request.path_params[name]
        if len(value) > MAX_PATH_ID:
            what = noun or name.removesuffix("_id")
            raise NotFound(f"no such {what}", {name: value[:MAX_PATH_ID]})
        return value

    async def json(self) -> object:
        """The body parsed as JSON; raise InvalidJson."""
        body = await self.request.body()
        if len(body) > MAX_BODY:
            raise InvalidJson(f"the body is over {MAX_BODY} bytes", {"max_bytes": MAX_BODY})
        if not body:
            return {}
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise InvalidJson("the body is not valid JSON") from None


def failure(request_id: str, error: ApiError) -> Response:
    body = {
        "data": None,
        "meta": {"request_id": request_id},
        "error": {"code": error.code, "message": error.message, "details": error.details},
    }
    return JSONResponse(body, status_code=error.status)


def unrouted(
    keys: ApiKeys, public: Callable[[str], bool] = lambda path: False
) -> Callable[[Request, Exception], Awaitable[Response]]:
    """The handler for 404 and 405 on requests that match no operation. Under ``/api/``
    they get the envelope like every other API error (a path the router cannot even match,
    e.g. with a newline in an id, included), after the same key check, so a caller without
    a valid key learns nothing about what exists; elsewhere, Starlette's plain text. A path
    of a public operation's shape (``public``, given the path under ``/api/v1``) is
    answered without a key check, as that operation is."""

    async def handle(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        path = request.url.path
        if not path.startswith("/api/"):
            text = "Method Not Allowed" if status == 405 else "Not Found"
            return PlainTextResponse(text, status)

        async def answer(call: Call) -> Response:
            if status == 405:
                raise MethodNotAllowed("this method is not allowed here")
            raise NotFound("no such resource")

        checked = None if public(path.removeprefix(API_ROOT)) else keys
        return await endpoint(checked, answer)(request)

    return handle


API_ROOT = "/api/v1"


class Authenticator(Protocol):
    """Who may call an operation: `ApiKeys` (the clinic's systems) or `ConsoleSessions` (a
    clinician's console)."""

    async def authenticate(self, request: Request) -> ApiKey | ConsoleSession:
        """The caller's credentials; raise Unauthorized."""
        ...


def endpoint(
    auth: Authenticator | None, handler: Handler, metrics: Metrics | None = None
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap ``handler``; ``auth=None`` makes the endpoint public. Redis errors are counted
    on ``metrics``."""

    async def wrapped(request: Request) -> Response:
        request_id = "req_" + secrets.token_hex(8)
        try:
            who = None if auth is None else await auth.authenticate(request)
            key = who if isinstance(who, ApiKey) else None
            session = who if isinstance(who, ConsoleSession) else None
            return await handler(Call(request, request_id, key, session))
        except ApiError as exc:
            return failure(request_id, exc)
        except RedisError as exc:
            log.warning("%s: redis unavailable (%s)", request_id, type(exc).__name__)
            if metrics is not None:
                metrics.redis_api.inc()
            return failure(request_id, ServiceUnavailable("storage is unreachable: try again"))
        except Exception:  # a bug, not the client's input: logged, and no trace shown
            log.exception("%s failed", request_id)
            return failure(request_id, ApiError("the server failed to handle this request"))

    return wrapped


def paged(call: Call, items: list[Any], *, limit: int, offset: int, total: int) -> Response:
    more = offset + len(items) < total
    return call.ok(
        items,
        limit=limit,
        offset=offset,
        has_more=more,
        next_offset=offset + limit if more else None,
    )
