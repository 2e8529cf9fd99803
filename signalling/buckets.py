"""Work split over hash-tag buckets (`signalling.keys`, rule 3): one consumer group per
bucket stream, sorted sets per bucket, read a bucket at a time.

On a Redis Cluster no command may name keys of two slots, so the buckets are read with one
command each: the non-blocking ones sent together (a pipeline, which redis-py's cluster
client splits by shard), the blocking read as one ``XREADGROUP ... BLOCK`` per bucket at
once. On one Redis the blocking read is one command over every bucket, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from signalling.concurrency import each_of
from signalling.redis_client import is_cluster

Entry = tuple[str, bytes, dict[bytes, bytes]]  # stream, entry id, fields


async def create_groups(redis: Redis, streams: Sequence[str], group: str, start: str) -> None:
    """The consumer group ``group`` on every stream (made if missing)."""
    async with redis.pipeline(transaction=False) as pipe:
        for stream in streams:
            pipe.xgroup_create(stream, group, id=start, mkstream=True)
        replies = await pipe.execute(raise_on_error=False)
    for reply in replies:
        if isinstance(reply, Exception) and not (
            isinstance(reply, ResponseError) and "BUSYGROUP" in str(reply)
        ):
            raise reply


async def take(
    redis: Redis,
    streams: Sequence[str],
    group: str,
    consumer: str,
    *,
    count: int,
    claim_idle_ms: int,
    block_ms: int,
) -> list[Entry]:
    """Entries of ``group`` for ``consumer``: those idle longer than ``claim_idle_ms`` in
    another consumer's hands (a dead node's), and new ones, waiting up to ``block_ms`` for
    some if there are none. Acknowledge them with `ack` once handled."""
    async with redis.pipeline(transaction=False) as pipe:
        for stream in streams:
            pipe.xautoclaim(stream, group, consumer, min_idle_time=claim_idle_ms, count=count)
        for stream in streams:
            pipe.xreadgroup(group, consumer, {stream: ">"}, count=count)
        replies: list[Any] = await pipe.execute()
    out: list[Entry] = []
    for stream, claimed in zip(streams, replies[: len(streams)], strict=True):
        out += [(stream, entry_id, fields or {}) for entry_id, fields in claimed[1]]
    for reply in replies[len(streams) :]:
        out += _entries(reply)
    if out or not block_ms:
        return out
    if not is_cluster(redis):
        reply = await redis.xreadgroup(
            group, consumer, dict.fromkeys(streams, ">"), count=count, block=block_ms
        )
        return _entries(reply)
    replies = await each_of(
        *(
            redis.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
            for stream in streams
        )
    )
    for reply in replies:
        out += _entries(reply)
    return out


async def ack(redis: Redis, group: str, entries: Sequence[Entry]) -> None:
    by_stream: dict[str, list[bytes]] = {}
    for stream, entry_id, _ in entries:
        by_stream.setdefault(stream, []).append(entry_id)
    if not by_stream:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for stream, ids in by_stream.items():
            pipe.xack(stream, group, *ids)
        await pipe.execute()


async def due(
    redis: Redis, zsets: Sequence[str], now: float, *, limit: int | None = None
) -> list[tuple[str, bytes, float]]:
    """The members of the sorted sets scored ``now`` or earlier: (set, member, score)."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in zsets:
            if limit is None:
                pipe.zrangebyscore(key, "-inf", now, withscores=True)
            else:
                pipe.zrangebyscore(key, "-inf", now, start=0, num=limit, withscores=True)
        replies: list[Any] = await pipe.execute()
    return [
        (key, member, float(score))
        for key, reply in zip(zsets, replies, strict=True)
        for member, score in reply
    ]


def _entries(reply: Any) -> list[Entry]:
    out: list[Entry] = []
    for stream, items in reply or []:
        name = stream.decode() if isinstance(stream, bytes) else stream
        out += [(name, entry_id, fields or {}) for entry_id, fields in items]
    return out
