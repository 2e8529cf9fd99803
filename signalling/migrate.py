"""Moving what an older version left under key names of before (`signalling.keys`).

Until the keys were laid out for Redis Cluster, a few were global (one change-note stream,
one sorted set of windows, of retention, of webhook retries) or unrelated names that a
transaction wrote together (the API keys and their index, the invitation outbox). A node
that starts on a single Redis moves them, before its loops start:

- renamed keys (``RENAMENX``: the stream keeps its consumer group and pending entries);
- the global sorted sets: every member into its room's bucket, with its score;
- the global change notes: one note per room they name, into the room's bucket (the
  projector folds from its checkpoint, so a repeated note is harmless);
- invitations and each appointment's list of them, found with ``SCAN``.

Every step is idempotent, so two nodes starting at once, or a start cut short, are safe.
On a cluster there is nothing to move: those names never worked there.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from rooms.ids import RoomId
from signalling.keys import (
    LEGACY_CHANGES,
    LEGACY_HOOKS_DUE,
    LEGACY_PATTERNS,
    LEGACY_RENAMES,
    LEGACY_RETENTION,
    LEGACY_WINDOWS,
    hooks_due_of,
    retention_of,
    windows_of,
)
from signalling.projector import note_change
from signalling.redis_client import is_cluster

PAGE = 500


async def migrate(redis: Redis) -> int:
    """Move the keys of before; returns how many keys were moved."""
    if is_cluster(redis):
        return 0
    moved = 0
    for old, new in LEGACY_RENAMES.items():
        if await redis.exists(old) and await redis.renamenx(old, new):
            moved += 1
    for old, bucket in (
        (LEGACY_WINDOWS, lambda m: windows_of(m.partition("\x00")[0])),
        (LEGACY_RETENTION, retention_of),
        (LEGACY_HOOKS_DUE, hooks_due_of),
    ):
        moved += await _spread(redis, old, bucket)
    moved += await _changes(redis)
    for prefix, builder in LEGACY_PATTERNS.items():
        async for raw in redis.scan_iter(match=f"{prefix}*", count=PAGE):
            name = raw.decode()
            if await redis.renamenx(name, builder(name[len(prefix) :])):
                moved += 1
    return moved


async def _spread(redis: Redis, old: str, bucket: Any) -> int:
    members: Any = await redis.zrange(old, 0, -1, withscores=True)
    if not members:
        return 0
    for member, score in members:
        text = member.decode()
        await redis.zadd(bucket(text), {text: score}, lt=True)
    await redis.delete(old)
    return 1


async def _changes(redis: Redis) -> int:
    entries: Any = await redis.xrange(LEGACY_CHANGES)
    if not entries:
        return 0
    rooms = {fields[b"r"].decode() for _, fields in entries if b"r" in fields}
    for room in rooms:
        await note_change(redis, RoomId(room))
    await redis.delete(LEGACY_CHANGES)
    return 1
