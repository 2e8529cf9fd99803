"""The Redis adapters of the hub's ports (`signalling.ports`), and the hub built on them.

The room log is `signalling.eventlog.EventLog` with the two reads of the projector's keys
the hub makes (`RedisRoomLog`); the feeds are `signalling.pubsub` subscribers; the bus is
`signalling.bus.Bus` as it is. The composition root (`signalling.app.create_app`) calls
`redis_hub` once per node.
"""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from rooms.ids import AppointmentId, RoomId
from rooms.room import Room
from signalling.eventlog import EventLog, StreamId
from signalling.hub import Hub
from signalling.ports import Faults, Routes
from signalling.projector import note_window, queue_change, read_snapshot
from signalling.pubsub import Subscriber, subscriber

REDIS_FAULTS = Faults(errors=(RedisError,), lost=RedisConnectionError)


class RedisRoomLog(EventLog):
    """The rooms' streams (`EventLog`), their snapshots and join windows (the projector's
    keys, `signalling.projector`)."""

    async def snapshot(self, room_id: RoomId) -> tuple[Room, StreamId] | None:
        return await read_snapshot(self.redis, room_id)

    async def note_window(
        self, room_id: RoomId, appointment: AppointmentId, closes_at: float
    ) -> None:
        await note_window(self.redis, room_id, appointment, closes_at)


class RedisFeeds:
    """Subscribers on one Redis (sharded on a cluster)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def subscriber(self) -> Subscriber:
        return subscriber(self.redis)


def redis_hub(
    redis: Redis,
    bus: Routes,
    clock: Callable[[], float],
    *,
    replicas: int = 0,
    replica_timeout: float = 1.0,
) -> Hub:
    """The hub of a node on ``redis`` (which must not decode responses). ``replicas``: how
    many replicas must have each append before it counts as done (`EventLog`); each
    append sends the projector's change note with it (`queue_change`)."""
    log = RedisRoomLog(redis, note=queue_change, replicas=replicas, replica_timeout=replica_timeout)
    return Hub(log, RedisFeeds(redis), bus, clock, faults=REDIS_FAULTS)
