"""The status projector: call status and appointment outcomes, derived from the rooms'
event streams by a consumer group.

After appending to a room's stream, a node adds the room's id to its bucket's change
notes, ``vst:changes:{c<n>}`` (one of `CHANGE_BUCKETS` streams, by the room's id: no key
is written by every append; in the same round trip as the append: `queue_change`). The
projector is a consumer group (``projector``) on each of those streams, one consumer per
node, so the work is shared and a dead node's unacknowledged entries are claimed by the
others.
For each changed room it folds the new events into the room's projection, stored in
``vst:{<room>}:projection`` with the id of the last event folded; the write is a
compare-and-set on that id, so a room is never folded twice from the same point, however
often a change is delivered. Join windows that close (``vst:windows:{w<n>}``, sorted
sets by closing time, bucketed by room) settle their appointment's outcome: completed, or
no-show. An ``on_outcome`` hook hears of each outcome once, from the consumer whose save
recorded it.

The projection's room is a snapshot of the room at its last event: a node loads a room
from it and the stream's tail (`read_snapshot`), so the stream before it may be trimmed
(`signalling.retention`). With the same save, the projector keeps the room's **audit
trail**, ``vst:{<room>}:audit``: a sorted set, by time, of who admitted or denied whom
and when calls started and ended (pseudonymous ids, the appointment, never names), kept
longer than the events themselves.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgpack
from redis.asyncio import Redis
from redis.exceptions import RedisError

from rooms.events import Event, EventKind
from rooms.ids import AppointmentId, RoomId
from rooms.projection import Outcome, Projection
from rooms.room import Room
from rooms.status import CallStatus
from signalling import buckets
from signalling.eventlog import EMPTY, EventLog, StreamId
from signalling.keys import (
    CHANGE_BUCKETS,
    ROOM_BUCKETS,
    audit_key,
    changes_key,
    changes_of,
    outcomes_key,
    projected_channel,
    projection_key,
    retention_of,
    windows_key,
    windows_of,
)
from signalling.pubsub import publish
from signalling.supervisor import failure

log = logging.getLogger("vestibule.signalling.projector")

CHANGES = tuple(changes_key(b) for b in range(CHANGE_BUCKETS))
GROUP = "projector"
WINDOWS = tuple(windows_key(b) for b in range(ROOM_BUCKETS))
CHANGES_MAXLEN = 10_000  # per bucket
CLAIM_IDLE_MS = 10_000
BATCH = 100  # change notes taken per bucket at a time
LINGER = 0.1  # seconds a node's projector gathers changes before it folds them
CACHED = 256  # projections a consumer keeps decoded, the rooms it projected last

OutcomeHook = Callable[[RoomId, AppointmentId, Outcome], Awaitable[None]]

# KEYS: the projection, the outcomes, the audit trail (one room's: one hash slot). ARGV:
# the revision the fold started from, the new checkpoint, the projection; then three
# counted lists: (appointment, outcome) pairs, appointments forgotten, (time, entry) audit
# pairs. Every save makes a new revision (a settle or a forget saves without a new event,
# so the checkpoint alone would not tell that the projection changed); returns it, 0 if
# the projection is no longer at the revision the fold started from.
_SAVE = """
local rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
if rev ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'last', ARGV[2], 'state', ARGV[3], 'rev', rev + 1)
local i = 4
for _ = 1, tonumber(ARGV[i]) do
  redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i + 2])
  i = i + 2
end
i = i + 1
for _ = 1, tonumber(ARGV[i]) do
  redis.call('HDEL', KEYS[2], ARGV[i + 1])
  i = i + 1
end
i = i + 1
for _ = 1, tonumber(ARGV[i]) do
  redis.call('ZADD', KEYS[3], ARGV[i + 1], ARGV[i + 2])
  i = i + 2
end
return rev + 1
"""

# What the audit trail keeps: the host's decisions about people, and the calls.
AUDITED = frozenset(
    {EventKind.ADMITTED, EventKind.DENIED, EventKind.SESSION_STARTED, EventKind.SESSION_ENDED}
)


def window_member(room_id: RoomId, appointment: AppointmentId) -> str:
    return f"{room_id}\x00{appointment}"


def queue_change(room_id: RoomId) -> tuple[str, tuple[object, ...]]:
    """The change note telling the projector that ``room_id`` has new events: its key and
    the command, which the append sends with its own (`signalling.eventlog.EventLog`'s
    ``note``)."""
    key = changes_of(room_id)
    return key, ("XADD", key, "MAXLEN", "~", CHANGES_MAXLEN, "*", "r", room_id)


async def note_change(redis: Redis, room_id: RoomId) -> None:
    """Send the change note of ``room_id`` on its own."""
    await redis.execute_command(*queue_change(room_id)[1])  # type: ignore[no-untyped-call]


async def note_window(
    redis: Redis, room_id: RoomId, appointment: AppointmentId, closes_at: float
) -> None:
    """Have the projector settle ``appointment`` once its join window closes."""
    await redis.zadd(windows_of(room_id), {window_member(room_id, appointment): closes_at}, nx=True)


async def read_projection(redis: Redis, room_id: RoomId) -> Projection | None:
    raw: Any = await redis.hget(projection_key(room_id), "state")
    return None if raw is None else _projection(raw)


async def read_snapshot(redis: Redis, room_id: RoomId) -> tuple[Room, StreamId] | None:
    """The room as of the projection's last event, and that event's id: load the room from
    it and the stream's events after it. None if there is no usable projection (none yet,
    or one an older version wrote): then the whole stream, which is not trimmed before
    there is one, is the room."""
    raw: Any = await redis.hmget(projection_key(room_id), ["state", "last"])
    state, last = raw
    if state is None or last is None:
        return None
    try:
        return _projection(state).room, last.decode()
    except (KeyError, TypeError, ValueError):
        return None


def _projection(raw: bytes) -> Projection:
    return Projection.from_record(msgpack.unpackb(raw, raw=False))


async def read_audit(redis: Redis, room_id: RoomId) -> list[dict[str, Any]]:
    """The room's audit trail, oldest first."""
    raw: Any = await redis.zrange(audit_key(room_id), 0, -1)
    return [msgpack.unpackb(entry, raw=False) for entry in raw]


def audit_entry(stream_id: StreamId, event: Event, room: Room) -> dict[str, Any]:
    """What the audit trail keeps of ``event`` (folded into ``room`` next): who did what to
    whom, when, in which call, for which appointment. Pseudonymous."""
    participant = None if event.participant is None else room.participants.get(event.participant)
    session = room.session
    appointment = event.appointment
    if appointment is None and participant is not None:
        appointment = participant.appointment
    if appointment is None and session is not None and event.session == session.id:
        appointment = session.appointment
    return {
        "id": stream_id,
        "kind": event.kind.value,
        "at": event.at,
        "actor": event.actor,
        "participant": event.participant,
        "session": event.session,
        "appointment": appointment,
    }


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
        retain: float | None = None,
        linger: float = 0.0,
    ) -> None:
        """``on_outcome`` is awaited after a save for each outcome that save recorded (an
        appointment's status follows it); its failures are logged, never retried here.
        With ``retain`` (seconds), a room whose new events were folded is scheduled for
        `signalling.retention` to look at once the first of them is that old."""
        self.redis = redis
        self.retain = retain
        self.linger = linger
        self.on_outcome = on_outcome
        self.claim_idle_ms = claim_idle_ms
        self.log = EventLog(redis)
        self.consumer = consumer
        self.clock = clock
        self._save = redis.register_script(_SAVE)
        # The projections this consumer saved last, by room, with their revision and the
        # id of their last event (used while Redis still has that revision: `_load`).
        self._cache: OrderedDict[RoomId, tuple[int, StreamId, Projection]] = OrderedDict()

    async def ensure_group(self) -> None:
        await buckets.create_groups(self.redis, CHANGES, GROUP, "0")

    async def step(self, block_ms: int = 0) -> int:
        """Handle one batch: claimed, new and settled; returns how many rooms were folded.
        With ``linger``, the changes of the next ``linger`` seconds join the batch: a busy
        room (a thousand guests arriving) is folded once per batch, not once per event."""
        entries = await self._take(block_ms)
        if entries and self.linger:
            await asyncio.sleep(self.linger)
            entries += await self._take(0)
        rooms: set[RoomId] = set()
        for _, entry_id, fields in entries:
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
        await buckets.ack(self.redis, GROUP, entries)
        return len(rooms) + await self.settle(self.clock())

    async def _take(self, block_ms: int) -> list[buckets.Entry]:
        return await buckets.take(
            self.redis,
            CHANGES,
            GROUP,
            self.consumer,
            count=BATCH,
            claim_idle_ms=self.claim_idle_ms,
            block_ms=block_ms,
        )

    async def settle(self, now: float) -> int:
        """Settle the outcome of every appointment whose join window has closed."""
        by_room: dict[RoomId, dict[AppointmentId, float]] = {}
        for _, member, closes_at in await buckets.due(self.redis, WINDOWS, now):
            room, _, appointment = member.decode().partition("\x00")
            by_room.setdefault(RoomId(room), {})[AppointmentId(appointment)] = closes_at
        for room_id, appointments in by_room.items():
            await self.project(room_id, close=appointments)
            members = [window_member(room_id, a) for a in appointments]
            await self.redis.zrem(windows_of(room_id), *members)
        return len(by_room)

    async def project(
        self,
        room_id: RoomId,
        close: Mapping[AppointmentId, float] | None = None,
        forget_before: float | None = None,
    ) -> Projection:
        """Fold the room's new events into its projection and save it, with their audit
        entries; settle the appointments of ``close`` (whose windows closed then); with
        ``forget_before``, drop what it keeps of appointments whose windows closed before."""
        while True:
            projection, last, rev = await self._load(room_id)
            settled = set(projection.outcomes)
            newest = last
            audit: list[Any] = []
            events = await self.log.read(room_id, after=last)
            for stream_id, event in events:
                if event.kind in AUDITED:
                    entry = audit_entry(stream_id, event, projection.room)
                    audit += [event.at, msgpack.packb(entry, use_bin_type=True)]
                projection.apply(event)
                newest = stream_id
            for appointment, closes_at in (close or {}).items():
                projection.close_window(appointment, closes_at)
            forgotten = [] if forget_before is None else projection.forget(forget_before)
            outcomes: list[str] = []
            for appointment, outcome in projection.outcomes.items():
                outcomes += [appointment, outcome.value]
            record = msgpack.packb(projection.to_record(), use_bin_type=True)
            args: list[Any] = [rev, newest, record, len(outcomes) // 2, *outcomes, len(forgotten)]
            args += [*forgotten, len(audit) // 2, *audit]
            saved = await self._save(
                keys=[projection_key(room_id), outcomes_key(room_id), audit_key(room_id)],
                args=args,
            )
            if saved:
                self._keep(room_id, int(saved), newest, projection)
                if events and self.retain is not None:
                    due: dict[str, float] = {room_id: events[0][1].at + self.retain}
                    # the earlier stands
                    await self.redis.zadd(retention_of(room_id), due, lt=True)
                if newest != last or close:
                    await publish(self.redis, projected_channel(room_id), newest)
                await self._tell(room_id, projection, settled)
                return projection
            # another consumer folded this room meanwhile: start again from its checkpoint

    async def _load(self, room_id: RoomId) -> tuple[Projection, StreamId, int]:
        """The room's projection as saved, the id of its last event and its revision: the
        one this consumer saved last, if Redis still has that revision (no decoding of a
        whole room on every change), else read and decoded. The caller owns what it gets:
        it is out of the cache until `_keep` puts it back."""
        cached = self._cache.pop(room_id, None)
        if cached is not None:
            stored: Any = await self.redis.hget(projection_key(room_id), "rev")
            if stored is not None and int(stored) == cached[0]:
                return cached[2], cached[1], cached[0]
        raw: Any = await self.redis.hmget(projection_key(room_id), ["state", "last", "rev"])
        state, last_raw, rev_raw = raw
        rev = 0 if rev_raw is None else int(rev_raw)
        last = EMPTY if last_raw is None else last_raw.decode()
        if state is None:
            return Projection(Room(room_id)), last, rev
        try:
            return _projection(state), last, rev
        except (KeyError, TypeError, ValueError):  # an older version's: fold again
            return Projection(Room(room_id)), EMPTY, rev

    def _keep(self, room_id: RoomId, rev: int, last: StreamId, projection: Projection) -> None:
        self._cache[room_id] = (rev, last, projection)
        while len(self._cache) > CACHED:
            self._cache.popitem(last=False)  # the room projected longest ago

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
