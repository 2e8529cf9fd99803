"""Event webhooks: what happens in the rooms and to the appointments, POSTed to the clinic's
system as CloudEvents (JSON, structured mode), signed, at least once, in order per room.

Sources, both durable in Redis before anything is sent:

- the rooms' event streams (`signalling.eventlog`): a patient waiting, admitted, leaving, a
  call started or ended. A consumer group ``webhooks`` on the change notes ``vst:changes:{c<n>}``
  (the projector's are another group) says which rooms have new events;
- appointment status changes (booked, confirmed, cancelled, completed, no-show, ...): queued
  by `Followers` right after each is saved, in the room's outbox ``vst:{<room>}:hooks`` with
  the id of the room's last event at that moment (one Lua script: both keys share the room's
  hash tag), so that they fall in place between the room's events. The room is the
  appointment's video room, else its clinician's persistent room; an appointment with
  neither (no clinician, not video) sends no events.

Delivery, per room: a node takes the room's lease (``vst:{<room>}:hooking``), then POSTs the
room's undelivered events one at a time, merged in order, from its checkpoint
``vst:{<room>}:hooked`` (the last event and outbox entry sent, and the room's fold there,
which says who each participant is). The checkpoint moves after each answer 2xx; a failure
stops the room there and retries it after a back-off (doubling from
``events_backoff`` to ``events_backoff_max``, ``vst:hooks:due:{h<n>}``, by room); after
``events_max_attempts`` the event is set aside in ``vst:hooks:dead`` and the room goes on.
A node that dies leaves its change notes unacknowledged: another node claims them after
``events_claim_idle`` (and the lease, given for as long), and carries on from the
checkpoint. So every event arrives at least once (again, if a node died between a 2xx and
its checkpoint), in order per room and so per appointment; ``id`` is stable across
redeliveries: receivers drop repeats by it.

An event's ``data`` holds ids and codes only (participant ids are pseudonymous, `rooms`):
never a name, an e-mail address, a phone number, a link or a token. The first time a room
changes after webhooks are configured, its whole stream is sent (the fold starts there).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

import httpx
import msgpack
from redis.asyncio import Redis

from rooms.appointments import Appointment
from rooms.events import Event, EventKind
from rooms.ids import RoomId
from rooms.invitations import RetryPolicy
from rooms.room import Room
from signalling import buckets
from signalling.api.links import clinician_room_id
from signalling.api.schema import format_time
from signalling.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from signalling.concurrency import each_of
from signalling.eventlog import EMPTY, EventLog, StreamId, parse_id
from signalling.keys import (
    HOOKS_DEAD,
    ROOM_BUCKETS,
    events_key,
    hooked_key,
    hooking_key,
    hooks_due_key,
    hooks_due_of,
    hooks_key,
)
from signalling.metrics import Metrics
from signalling.projector import CHANGES, note_change
from signalling.settings import Settings

log = logging.getLogger("vestibule.signalling.webhooks")

GROUP = "webhooks"
DUE = tuple(hooks_due_key(b) for b in range(ROOM_BUCKETS))
DEAD = HOOKS_DEAD
BATCH = 100
TYPE = "com.vestibule."

# Queue a status event after the room's last event: KEYS the room's stream and its outbox.
_QUEUE = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local after = '0-0'
if #last > 0 then after = last[1][1] end
return redis.call('XADD', KEYS[2], '*', 'e', ARGV[1], 'after', after)
"""


outbox_key = hooks_key
checkpoint_key = hooked_key
lease_key = hooking_key


def pipeline_room(a: Appointment) -> RoomId | None:
    """The room whose events an appointment's status events go with."""
    if a.room_id is not None:
        return a.room_id
    return None if a.clinician_profile_id is None else clinician_room_id(a.clinician_profile_id)


class StatusEvents:
    """Queues appointment status events (`Followers`' status hook)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._queue = redis.register_script(_QUEUE)

    async def __call__(self, old: Appointment | None, new: Appointment) -> None:
        room = pipeline_room(new)
        if room is None:
            return
        data = {
            "appointment_id": new.id,
            "status": new.status.value,
            "previous_status": None if old is None else old.status.value,
            "cancelled_by": None if new.cancelled_by is None else new.cancelled_by.value,
            "attendance_status": None
            if new.attendance_status is None
            else new.attendance_status.value,
        }
        kind = "appointment.booked" if old is None else f"appointment.{new.status.value}"
        record = msgpack.packb([kind, new.id, new.updated_at, data], use_bin_type=True)
        await self._queue(keys=[events_key(room), outbox_key(room)], args=[record])
        await note_change(self.redis, room)


def cloud_event(
    settings: Settings, room: RoomId, event_id: str, kind: str, subject: str | None, at: float,
    data: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """A CloudEvent (specversion 1.0, structured JSON)."""
    out: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": f"{settings.base_url}/rooms/{room}",
        "type": TYPE + kind,
        "time": format_time(at),
        "datacontenttype": "application/json",
        "data": data,
    }
    if subject is not None:
        out["subject"] = subject
    return out


def room_event(room: Room, event: Event) -> tuple[str, str | None, dict[str, Any]] | None:
    """(type, subject, data) of a room event worth telling, given the fold before it."""
    pid = event.participant
    who = None if pid is None else room.participants.get(pid)
    if event.kind is EventKind.SESSION_STARTED:
        data: dict[str, Any] = {"session_id": event.session, "appointment_id": event.appointment}
        return "call.started", event.appointment, data
    if event.kind is EventKind.SESSION_ENDED:
        appointment = None if room.session is None else room.session.appointment
        cause = None if event.cause is None else event.cause.value
        data = {"session_id": event.session, "appointment_id": appointment, "cause": cause}
        return "call.ended", appointment, data
    if who is None or who.is_host:
        return None
    base: dict[str, Any] = {
        "participant_id": pid,
        "role": who.role.value,
        "appointment_id": who.appointment,
    }
    if event.kind is EventKind.KNOCKED:
        reason = None if event.reason is None else event.reason.value
        return "patient.waiting", who.appointment, base | {"reason": reason}
    if event.kind is EventKind.PATIENT_ENTERED:
        by = "host" if event.actor != pid else "rule"
        call = None if room.session is None else room.session.appointment
        data = base | {"session_id": event.session, "call_appointment_id": call, "by": by}
        return "patient.admitted", who.appointment, data
    if event.kind is EventKind.DEPARTED:
        cause = None if event.cause is None else event.cause.value
        return "patient.left", who.appointment, base | {"cause": cause}
    return None


class Webhooks:
    """One node's deliverer: a consumer of the ``webhooks`` group."""

    def __init__(
        self,
        redis: Redis,
        consumer: str,
        clock: Callable[[], float],
        settings: Settings,
        metrics: Metrics | None = None,
    ) -> None:
        assert settings.events_url is not None
        assert settings.events_secret is not None
        self.redis = redis
        self.consumer = consumer
        self.clock = clock
        self.settings = settings
        self.url = settings.events_url
        self.secret = settings.events_secret
        self.metrics = metrics or Metrics()
        self.log = EventLog(redis)
        self.policy = RetryPolicy(
            settings.events_max_attempts, settings.events_backoff, settings.events_backoff_max
        )
        self.lease_ms = int(settings.events_claim_idle * 1000)
        self.http: httpx.AsyncClient | None = None

    async def run(self, block_ms: int = 1000) -> None:
        """Deliver until cancelled (the supervisor restarts it after a failure)."""
        async with httpx.AsyncClient(
            timeout=self.settings.delivery_timeout, follow_redirects=False, trust_env=False
        ) as http:
            self.http = http
            while True:
                await self.ensure_group()
                await self.step(block_ms)

    async def ensure_group(self) -> None:
        await buckets.create_groups(self.redis, CHANGES, GROUP, "$")

    async def step(self, block_ms: int = 0) -> int:
        """Deliver the rooms that are due, then those a batch of change notes names."""
        due = await buckets.due(self.redis, DUE, self.clock(), limit=BATCH)
        for key, raw, _ in due:
            room = RoomId(raw.decode())
            if await self.redis.zrem(key, room):  # this node's to retry
                await self.deliver(room)
        entries = await buckets.take(
            self.redis,
            CHANGES,
            GROUP,
            self.consumer,
            count=BATCH,
            claim_idle_ms=self.lease_ms,
            block_ms=block_ms,
        )
        rooms = {RoomId(f[b"r"].decode()) for _, _, f in entries if f and b"r" in f}
        await each_of(*(self.deliver(room) for room in rooms))
        await buckets.ack(self.redis, GROUP, entries)
        return len(rooms) + len(due)

    async def deliver(self, room: RoomId) -> None:
        """Send the room's undelivered events in order, while its lease is ours."""
        token = secrets.token_hex(8)
        if not await self.redis.set(lease_key(room), token, nx=True, px=self.lease_ms):
            await self.redis.zadd(hooks_due_of(room), {room: self.clock() + 1.0})  # look again soon
            return
        try:
            await self._send(room)
        finally:
            if await self.redis.get(lease_key(room)) == token.encode():
                await self.redis.delete(lease_key(room))

    async def _send(self, room: RoomId) -> None:
        """Deliver what the room has beyond its checkpoint, until done or a failure."""
        state: Any = await self.redis.hgetall(checkpoint_key(room))
        events_at: StreamId = state.get(b"events", EMPTY.encode()).decode()
        hooks_at: StreamId = state.get(b"hooks", EMPTY.encode()).decode()
        attempts = int(state.get(b"attempts", b"0"))
        fold = Room(room)
        if b"room" in state:
            fold = Room.from_snapshot(msgpack.unpackb(state[b"room"], raw=False))
        # All of both: a status event is placed by the room events before it, so a merge of
        # parts of either could send it out of order. (Delivered outbox entries are removed.)
        events = await self.log.read(room, after=events_at)
        hooks: Any = await self.redis.xrange(outbox_key(room), f"({hooks_at}", "+")
        i = j = 0
        while i < len(events) or j < len(hooks):
            take_hook = j < len(hooks) and (
                i >= len(events)
                or parse_id(hooks[j][1][b"after"].decode()) < parse_id(events[i][0])
            )
            if take_hook:
                hook_id = hooks[j][0].decode()
                kind, appointment, at, data = msgpack.unpackb(hooks[j][1][b"e"], raw=False)
                body = cloud_event(
                    self.settings, room, f"{room}/hooks/{hook_id}", kind, appointment, at, data
                )
            else:
                stream_id, event = events[i]
                told = room_event(fold, event)
                body = None
                if told is not None:
                    kind, subject, data = told
                    body = cloud_event(
                        self.settings, room, f"{room}/{stream_id}", kind, subject, event.at, data
                    )
            if body is not None and not await self._post(body):
                attempts += 1
                if attempts < self.policy.max_attempts:
                    await self.redis.hset(checkpoint_key(room), "attempts", attempts)
                    retry = self.clock() + self.policy.delay(attempts)
                    await self.redis.zadd(hooks_due_of(room), {room: retry})
                    return
                self.metrics.webhook_dead.inc()
                log.warning("event %s set aside after %d attempts", body["id"], attempts)
                await self.redis.xadd(DEAD, {"e": json.dumps(body)}, maxlen=10_000)
            attempts = 0
            fields: dict[str, Any] = {"attempts": 0}
            if take_hook:
                fields["hooks"] = hook_id
                j += 1
            else:
                fold.apply(event)
                fields["events"] = stream_id
                fields["room"] = msgpack.packb(fold.snapshot(), use_bin_type=True)
                i += 1
            await self.redis.hset(checkpoint_key(room), mapping=fields)  # type: ignore[arg-type]
            if take_hook:
                await self.redis.xdel(outbox_key(room), hook_id)
            await self.redis.pexpire(lease_key(room), self.lease_ms)

    async def _post(self, body: dict[str, Any]) -> bool:
        """One attempt; True on a 2xx answer."""
        assert self.http is not None
        content = json.dumps(body, separators=(",", ":")).encode()
        timestamp = str(int(self.clock()))
        headers = {
            "Content-Type": "application/cloudevents+json; charset=utf-8",
            "User-Agent": "vestibule",
            "Idempotency-Key": body["id"],
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: "sha256=" + sign(self.secret, timestamp, content),
        }
        try:
            response = await self.http.post(self.url, content=content, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("event %s not delivered (%s)", body["id"], type(exc).__name__)
            self.metrics.webhook_failed.inc()
            return False
        if not 200 <= response.status_code < 300:
            log.warning("event %s not delivered (HTTP %d)", body["id"], response.status_code)
            self.metrics.webhook_failed.inc()
            return False
        self.metrics.webhook_delivered.inc()
        return True
