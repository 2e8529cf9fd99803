"""API keys: made and revoked by ``vestibule keys``, stored hashed, never logged.

A key reads ``vk_<id>_<secret>``. Redis keeps only the SHA-256 of the whole key
(``vst:{apikeys}:by_hash``: hash -> record) and an index by id (``vst:{apikeys}:by_id``:
id -> hash), so a leaked database gives no usable key. Both carry one hash tag: they are
written in one transaction, which on a Redis Cluster must keep to one slot.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import msgpack
from redis.asyncio import Redis
from starlette.requests import Request

from signalling.api.errors import NotFound, Unauthorized
from signalling.keys import API_KEY_IDS, API_KEYS

KEYS = API_KEYS
IDS = API_KEY_IDS


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    created_at: float
    revoked_at: float | None = None


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def create(self, name: str, now: float | None = None) -> tuple[ApiKey, str]:
        """A new key; the secret is returned once and never stored."""
        key_id = secrets.token_hex(6)
        secret = f"vk_{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKey(key_id, name, time.time() if now is None else now)
        digest = _digest(secret)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(KEYS, digest, _pack(record))
            pipe.hset(IDS, key_id, digest)
            await pipe.execute()
        return record, secret

    async def revoke(self, key_id: str, now: float | None = None) -> ApiKey:
        digest: Any = await self.redis.hget(IDS, key_id)
        if digest is None:
            raise NotFound(f"no API key {key_id}", {"key_id": key_id})
        raw: Any = await self.redis.hget(KEYS, digest)
        record = _unpack(raw)
        if record.revoked_at is None:
            record = ApiKey(
                record.id, record.name, record.created_at, time.time() if now is None else now
            )
            await self.redis.hset(KEYS, digest, _pack(record))
        return record

    async def list(self) -> list[ApiKey]:
        raw: Any = await self.redis.hvals(KEYS)
        return sorted((_unpack(r) for r in raw), key=lambda k: k.created_at)

    async def authenticate(self, request: Request) -> ApiKey:
        """The key of an ``Authorization: Bearer`` header; raise Unauthorized."""
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.startswith("vk_"):
            raise Unauthorized("send an API key as Authorization: Bearer vk_...")
        raw: Any = await self.redis.hget(KEYS, _digest(secret.strip()))
        if raw is None:
            raise Unauthorized("the API key is not valid")
        # Looked up by the digest of the whole secret: timing reveals nothing usable.
        record = _unpack(raw)
        if record.revoked_at is not None:
            raise Unauthorized("the API key has been revoked", {"key_id": record.id})
        return record


def _pack(key: ApiKey) -> bytes:
    return msgpack.packb([key.id, key.name, key.created_at, key.revoked_at])


def _unpack(raw: bytes) -> ApiKey:
    key_id, name, created_at, revoked_at = msgpack.unpackb(raw, raw=False)
    return ApiKey(key_id, name, created_at, revoked_at)
