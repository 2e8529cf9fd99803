"""Retention: what a room keeps of its past, and for how long (README "Security and
privacy").

A room's stream is its activity timeline. Its events (pseudonymous: ids, never names) are
kept ``keep`` seconds (`Settings.retention`, 30 days by default) and then trimmed, never
past the room's latest snapshot (the projection's room, `signalling.projector`), so a
room always loads from that snapshot and the tail after it. The audit trail (who admitted
or denied whom, when calls started and ended) is kept ``audit`` seconds
(`Settings.audit_retention`, a year). What the projection keeps per appointment (its
outcome, whether a patient came) is forgotten ``keep`` seconds after its window closed.

The rooms to look at are in ``vst:retention:{t<n>}``, sorted sets (bucketed by room, as
`signalling.keys` says) by when each is next due: the
projector adds a room each time it folds new events, due ``keep`` after the first of them
(or leaves it due earlier, if it is) (`Projector`'s ``retain``); looking at a room trims it and
schedules it again for when what remains falls due. Every node runs `Retention.run`; a room
is looked at by whichever node takes it first (ZREM), and looking twice would do no harm.

Names, routing entries and links have retention of their own: a participant's name and
routing entry go with its departure (`signalling.eventlog`), a link's record expires
``keep`` after the link does (`signalling.api.links`).
"""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis

from rooms.ids import RoomId
from signalling import buckets
from signalling.eventlog import EventLog, StreamId, decode, parse_id
from signalling.keys import (
    ROOM_BUCKETS,
    audit_key,
    events_key,
    projection_key,
    retention_key,
    retention_of,
)
from signalling.projector import Projector

log = logging.getLogger("vestibule.signalling.retention")

BATCH = 50  # rooms looked at per round
PAGE = 500  # events read at a time while looking for where to trim


RETENTION = tuple(retention_key(b) for b in range(ROOM_BUCKETS))


class Retention:
    def __init__(
        self,
        redis: Redis,
        projector: Projector,
        *,
        keep: float,
        audit: float,
    ) -> None:
        self.redis = redis
        self.log = EventLog(redis)
        self.projector = projector
        self.keep = keep
        self.audit = audit

    async def run(self, now: float) -> int:
        """Look at the rooms that are due; returns how many were looked at."""
        due = await buckets.due(self.redis, RETENTION, now, limit=BATCH)
        looked = 0
        for key, raw, _ in due:
            if not await self.redis.zrem(key, raw):
                continue  # another node took it
            room_id = RoomId(raw.decode())
            again = await self.retain(room_id, now)
            if again is not None:  # unless the projector has asked for earlier meanwhile
                await self.redis.zadd(retention_of(room_id), {room_id: again}, lt=True)
            looked += 1
        return looked

    async def retain(self, room_id: RoomId, now: float) -> float | None:
        """Drop what the room keeps past its time; return when to look again (None: it
        keeps nothing that will fall due)."""
        cutoff = now - self.keep
        await self.projector.project(room_id, forget_before=cutoff)
        last: Any = await self.redis.hget(projection_key(room_id), "last")
        if last is not None:
            await self._trim(room_id, cutoff, last.decode())
        await self.redis.zremrangebyscore(audit_key(room_id), "-inf", now - self.audit)
        first: Any = await self.redis.xrange(events_key(room_id), count=1)
        if first:
            return decode(first[0][1][b"e"]).at + self.keep
        oldest: Any = await self.redis.zrange(audit_key(room_id), 0, 0, withscores=True)
        return float(oldest[0][1]) + self.audit if oldest else None

    async def _trim(self, room_id: RoomId, cutoff: float, last: StreamId) -> int:
        """Remove the stream's events from before ``cutoff``, up to ``last`` (the snapshot's)
        at most; returns how many went."""
        key = events_key(room_id)
        keep_from: StreamId | None = None
        start = "-"
        while keep_from is None:
            page: Any = await self.redis.xrange(key, start, last, count=PAGE)
            for raw_id, fields in page:
                if decode(fields[b"e"]).at >= cutoff:
                    keep_from = raw_id.decode()
                    break
            if keep_from is not None or len(page) < PAGE:
                break
            start = "(" + page[-1][0].decode()
        if keep_from is None:  # everything up to the snapshot is past its time
            ms, seq = parse_id(last)
            keep_from = f"{ms}-{seq + 1}"
        # The newest event always stays: an append compares the stream's last entry with
        # the one its fold has seen, and an emptied stream would have none.
        newest = await self.log.last_id(room_id)
        if parse_id(keep_from) > parse_id(newest):
            keep_from = newest
        removed: Any = await self.redis.xtrim(key, minid=keep_from, approximate=False)
        if removed:
            log.info("room %s: %d events past retention removed", room_id, removed)
        return int(removed)
