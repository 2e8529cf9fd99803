"""The status projector: call status and appointment outcomes, derived from the rooms'
event streams by a consumer group.

After appending to a room's stream, a node adds the room's id to ``vst:changes`` (in the
same round trip as the append: `queue_change`). The
projector is a consumer group (``projector``) on that stream, one consumer per node, so
the work is shared and a dead node's unacknowledged entries are claimed by the others.
For each changed room it folds the new events into the room's projection, stored in
``vst:{<room>}:projection`` with the id of the last event folded; the write is a
compare-and-set on that id, so a room is never folded twice from the same point, however
often a change is delivered. Join windows that close (``vst:windows``, a sorted set by
closing time) settle their appointment's outcome: completed, or no-show. An ``on_outcome``
hook hears of each outcome once, from the consumer whose save recorded it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgpack
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, ResponseError

from rooms.ids import AppointmentId, RoomId
from rooms.projection import Outcome, Projection
from rooms.room import Room
from rooms.status import CallStatus
from signalling.eventlog import EMPTY, EventLog
from signalling.supervisor import failure

log = logging.getLogger("vestibule.signalling.projector")

CHANGES = "vst:changes"
GROUP = "projector"
WINDOWS = "vst:windows"
CHANGES_MAXLEN = 100_000
CLAIM_IDLE_MS = 10_000

OutcomeHook = Callable[[RoomId, AppointmentId, Outcome], Awaitable[None]]

_SAVE = """
local last = redis.call('HGET', KEYS[1], 'last')
if (last or '0-0') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'last', ARGV[2], 'state', ARGV[3])
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
"""


def projection_key(room_id: RoomId) -> str:
    return f"vst:{{{room_id}}}:projection"


def outcomes_key(room_id: RoomId) -> str:
    return f"vst:{{{room_id}}}:outcomes"


def projected_channel(room_id: RoomId) -> str:
    """Where the projector says that it saved a new projection of ``room_id`` (its call
    statuses may have changed): the clinicians' consoles follow it."""
    return f"vst:{{{room_id}}}:projected"


def window_member(room_id: RoomId, appointment: AppointmentId) -> str:
    return f"{room_id}\x00{appointment}"


def queue_change(pipe: Pipeline, room_id: RoomId) -> None:
    """Tell the projector that ``room_id`` has new events: queued on ``pipe``, the append's
    own (`signalling.eventlog.EventLog`'s ``note``)."""
    pipe.xadd(CHANGES, {"r": room_id}, maxlen=CHANGES_MAXLEN, approximate=True)


async def note_window(
    redis: Redis, room_id: RoomId, appointment: AppointmentId, closes_at: float
) -> None:
    """Have the projector settle ``appointment`` once its join window closes."""
    await redis.zadd(WINDOWS, {window_member(room_id, appointment): closes_at}, nx=True)


async def read_projection(redis: Redis, room_id: RoomId) -> Projection | None:
    raw: Any = await redis.hget(projection_key(room_id), "state")
    return None if raw is None else Projection.from_record(msgpack.unpackb(raw, raw=False))


async def read_status(
    redis: Redis, room_id: RoomId, appointment: AppointmentId | None
) -> CallStatus:
    projection = await read_projection(redis, room_id)
    return CallStatus.READY if projection is None else projection.status(appointment)


async def read_outcomes(redis: Redis, room_id: RoomId) -> dict[AppointmentId, Outcome]:
    raw: Any = await redis.hgetall(outcomes_key(room_id))
    return {AppointmentId(k.decode()): Outcome(v.decode()) for k, v in raw.items()}


class Projector:
    """One node's consumer in the projector group."""

    def __init__(
        self,
        redis: Redis,
        consumer: str,
        clock: Callable[[], float],
        *,
        claim_idle_ms: int = CLAIM_IDLE_MS,
        on_outcome: OutcomeHook | None = None,
    ) -> None:
        """``on_outcome`` is awaited after a save for each outcome that save recorded (an
        appointment's status follows it); its failures are logged, never retried here."""
        self.redis = redis
        self.on_outcome = on_outcome
        self.claim_idle_ms = claim_idle_ms
        self.log = EventLog(redis)
        self.consumer = consumer
        self.clock = clock
        self._save = redis.register_script(_SAVE)

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(CHANGES, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self, block_ms: int = 1000) -> None:
        """Project until cancelled; survives Redis restarts."""
        backoff = 0.1
        while True:
            try:
                await self.ensure_group()
                await self.step(block_ms)
                backoff = 0.1
            except RedisError as exc:
                log.warning("projector: redis unavailable (%s); retrying", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def step(self, block_ms: int = 0) -> int:
        """Handle one batch: claimed, new and settled; returns how many rooms were folded."""
        claimed: Any = await self.redis.xautoclaim(
            CHANGES, GROUP, self.consumer, min_idle_time=self.claim_idle_ms, count=100
        )
        entries = list(claimed[1])
        reply: Any = await self.redis.xreadgroup(
            GROUP, self.consumer, {CHANGES: ">"}, count=100, block=block_ms or None
        )
        for _, items in reply or []:
            entries += items
        rooms: set[RoomId] = set()
        for entry_id, fields in entries:
            try:
                if fields:
                    rooms.add(RoomId(fields[b"r"].decode()))
            except (KeyError, UnicodeDecodeError):
                log.warning("projector: skipped a malformed change entry %s", entry_id)
        for room_id in rooms:
            try:
                await self.project(room_id)
            except RedisError:
                raise  # the round fails and is tried again; the entries stay pending
            except Exception as exc:  # noqa: BLE001 -- one room must not stop the others
                log.error("projector: room %s not projected: %s", room_id, failure(exc))
        if entries:
            await self.redis.xack(CHANGES, GROUP, *[entry_id for entry_id, _ in entries])
        return len(rooms) + await self.settle(self.clock())

    async def settle(self, now: float) -> int:
        """Settle the outcome of every appointment whose join window has closed."""
        due: Any = await self.redis.zrangebyscore(WINDOWS, "-inf", now)
        by_room: dict[RoomId, list[AppointmentId]] = {}
        for member in due:
            room, _, appointment = member.decode().partition("\x00")
            by_room.setdefault(RoomId(room), []).append(AppointmentId(appointment))
        for room_id, appointments in by_room.items():
            await self.project(room_id, close=appointments)
            members = [window_member(room_id, a) for a in appointments]
            await self.redis.zrem(WINDOWS, *members)
        return len(by_room)

    async def project(self, room_id: RoomId, close: Iterable[AppointmentId] = ()) -> Projection:
        """Fold the room's new events into its projection and save it."""
        while True:
            raw: Any = await self.redis.hmget(projection_key(room_id), ["state", "last"])
            state, last_raw = raw
            last = EMPTY if last_raw is None else last_raw.decode()
            projection = (
                Projection(Room(room_id))
                if state is None
                else Projection.from_record(msgpack.unpackb(state, raw=False))
            )
            settled = set(projection.outcomes)
            newest = last
            for stream_id, event in await self.log.read(room_id, after=last):
                projection.apply(event)
                newest = stream_id
            for appointment in close:
                projection.close_window(appointment)
            outcomes: list[str] = []
            for appointment, outcome in projection.outcomes.items():
                outcomes += [appointment, outcome.value]
            record = msgpack.packb(projection.to_record(), use_bin_type=True)
            saved = await self._save(
                keys=[projection_key(room_id), outcomes_key(room_id)],
                args=[last, newest, record, *outcomes],
            )
            if saved:
                if newest != last or close:
                    await self.redis.publish(projected_channel(room_id), newest)
                await self._tell(room_id, projection, settled)
                return projection
            # another consumer folded this room meanwhile: start again from its checkpoint

    async def _tell(
        self, room_id: RoomId, projection: Projection, settled: set[AppointmentId]
    ) -> None:
        if self.on_outcome is None:
            return
        for appointment, outcome in projection.outcomes.items():
            if appointment in settled:
                continue
            try:
                await self.on_outcome(room_id, appointment, outcome)
            except RedisError as exc:
                log.warning(
                    "projector: outcome of %s not passed on: redis unavailable (%s)",
                    appointment,
                    type(exc).__name__,
                )
            except Exception:  # the hook's bug must not stop the projection of other rooms
                log.exception("projector: outcome hook failed for %s", appointment)
