"""``Idempotency-Key``: a retried request gets the first response instead of a second effect.

Keys are scoped to the API key and the operation, and kept for 24 hours:
``vst:idem:<sha256(api key id, operation, key)>``. The first request claims the key with a
*pending* marker (SET NX, with a short lifetime of its own so that a node dying mid-request
frees the key); concurrent duplicates wait for it, bounded, then return the stored response.
The same key with another body is refused (``IDEMPOTENCY_KEY_REUSED``). Only a success is
stored: a request that failed (a 503, say) released the key and may simply be retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
from redis.asyncio import Redis
from starlette.responses import Response

from signalling.api.envelope import Call
from signalling.api.errors import (
    IdempotencyInProgress,
    IdempotencyKeyReused,
    ValidationFailed,
)
from signalling.api.schema import Kind, Prop
from signalling.keys import idempotency_key

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
TTL = 24 * 3600  # seconds a response is replayed
PENDING_TTL_MS = 60_000  # how long a claim outlives a node that died holding it
WAIT = 10.0  # seconds a duplicate waits for the first request before giving up
POLL = 0.02

HEADER_PROP = Prop(
    HEADER,
    Kind.STRING,
    "Any unique string (a UUID): a retry with the same key and body returns the first "
    "response instead of acting twice, for 24 hours.",
    max_length=MAX_KEY_LENGTH,
)

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def fingerprint(body: object) -> str:
    """The request body's identity, whatever its key order or spacing."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def storage_key(key_id: str | None, operation: str, key: str) -> str:
    scope = f"{key_id}\0{operation}\0{key}"
    return idempotency_key(hashlib.sha256(scope.encode()).hexdigest())


class Idempotency:
    def __init__(self, redis: Redis, *, wait: float = WAIT) -> None:
        self.redis = redis
        self.wait = wait
        self._release = redis.register_script(_RELEASE)

    @staticmethod
    def key_of(call: Call) -> str | None:
        """The request's idempotency key, or None; raise ValidationFailed if malformed."""
        key = call.request.headers.get(HEADER)
        if key is None:
            return None
        if not 0 < len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
            raise ValidationFailed(
                f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
                {"field": HEADER, "problem": "format"},
            )
        return key

    async def run(
        self,
        call: Call,
        operation: str,
        key: str,
        body: object,
        act: Callable[[], Awaitable[Response]],
    ) -> Response:
        """``act`` once per (API key, operation, key); later calls get its response."""
        name = storage_key(call.key_id, operation, key)
        print_ = fingerprint(body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        while True:
            marker = msgpack.packb(["pending", print_, secrets.token_hex(8)])
            if await self.redis.set(name, marker, nx=True, px=PENDING_TTL_MS):
                return await self._first(name, marker, print_, act)
            raw: Any = await self.redis.get(name)
            if raw is None:  # the first request failed or its claim lapsed: claim it now
                continue
            state, stored_print, *rest = msgpack.unpackb(raw, raw=False)
            if stored_print != print_:
                raise IdempotencyKeyReused(
                    f"this {HEADER} was used with another request body",
                    {"idempotency_key": key},
                )
            if state == "done":
                status, content = rest
                return _replay(call, status, content)
            if loop.time() >= deadline:
                raise IdempotencyInProgress(
                    f"a request with this {HEADER} is still being handled: retry later",
                    {"idempotency_key": key},
                )
            await asyncio.sleep(POLL)

    async def _first(
        self, name: str, marker: bytes, print_: str, act: Callable[[], Awaitable[Response]]
    ) -> Response:
        try:
            response = await act()
        except BaseException:
            await asyncio.shield(self._release(keys=[name], args=[marker]))
            raise
        if response.status_code < 300:
            done = msgpack.packb(["done", print_, response.status_code, bytes(response.body)])
            await self.redis.set(name, done, ex=TTL)
        else:
            await self._release(keys=[name], args=[marker])
        return response


def _replay(call: Call, status: int, content: bytes) -> Response:
    body = json.loads(content)
    body["meta"]["request_id"] = call.request_id
    return Response(
        json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
        headers={"Idempotent-Replayed": "true"},
    )
