"""The invitation outbox: invitations stored in Redis and delivered by every node's worker.

Keys:

All of them carry one hash tag, ``{outbox}`` (`signalling.keys`, rule 4): the scripts and
transactions below change several of them together, which on a Redis Cluster must keep to
one slot. Invitations are a few per appointment, never on the path of a hello or an event.

- ``vst:{outbox}:invitation:<id>``: the invitation (msgpack of `rooms.invitations.Invitation`), the
  record the API shows. Every change is a compare-and-set on the whole record. Once sent or
  failed for good it is kept `Settings.retention` (it holds the address), then expires.
- ``vst:{outbox}:invitations:<appointment>``: the appointment's invitation ids, newest first.
- ``vst:{outbox}:tickets``: a stream of *tickets*, one per attempt that is due; consumer group
  ``delivery``, one consumer per node, so nodes share the work and the entries a dead node
  read but did not finish are claimed by the others (XAUTOCLAIM) after
  ``delivery_claim_idle``.
- ``vst:{outbox}:due``: a sorted set of the retries to come, by due time. A worker moves the
  due ones to the stream in one script, so a retry is neither lost nor doubled, whichever
  nodes are running when it falls due.

A ticket reads ``<invitation id>:<attempts so far>``: it stands for one attempt, and a ticket
whose count no longer matches the record (the attempt was recorded, and its entry not yet
acknowledged, when a node died) is dropped instead of sending twice. Recording an attempt,
scheduling the retry and acknowledging the ticket are one script; what remains unavoidable
is a node dying after the channel accepted a message and before recording it: the
invitation is then sent again (at least once, see `signalling.channels`).

Logs name invitations by id, channel and attempt; never the address, a name or the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import msgpack
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from rooms.appointments import Appointment, ContactChannel
from rooms.ids import AppointmentId
from rooms.invitations import Invitation, InvitationId, InvitationStatus, RetryPolicy
from signalling import keys
from signalling.channels import Channel, DeliveryError, open_channels
from signalling.concurrency import each_of
from signalling.settings import Settings

log = logging.getLogger("vestibule.signalling.outbox")

OUTBOX = keys.OUTBOX
GROUP = "delivery"
DUE = keys.OUTBOX_DUE
OUTBOX_MAXLEN = 100_000
BATCH = 16  # tickets a node handles at once
MAX_BLOCK_MS = 5_000  # below the Redis client's socket timeout
PRUNE_EVERY = 300.0  # seconds between removals of consumers of nodes long gone
GONE_AFTER_MS = 3_600_000  # a consumer this long silent, with nothing pending, is removed

Lookup = Callable[[AppointmentId], Awaitable[Appointment | None]]

# Move the due retries to the stream: both changes or neither, so that two nodes promoting
# at once cannot both issue a ticket for the same attempt.
_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, ticket in ipairs(due) do
  redis.call('ZREM', KEYS[1], ticket)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 't', ticket)
end
return #due
"""

# Record an attempt: save the invitation if it is still what the worker read, schedule its
# retry (if any) and acknowledge the ticket, at once. A settled invitation (sent, or failed
# for good) is kept for the retention period (ARGV[7] seconds): it holds the address.
_RECORD = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[7])
end
redis.call('XACK', KEYS[3], ARGV[6], ARGV[5])
return 1
"""


invitation_key = keys.invitation_key


appointment_key = keys.appointment_invitations_key


def ticket(invitation: Invitation) -> str:
    """The stream entry for ``invitation``'s next attempt."""
    return f"{invitation.id}:{invitation.attempts}"


def policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=settings.invitation_max_attempts,
        first_backoff=settings.invitation_backoff,
        max_backoff=settings.invitation_backoff_max,
    )


def _pack(invitation: Invitation) -> bytes:
    return msgpack.packb(invitation.to_record(), use_bin_type=True)


def _unpack(raw: bytes) -> Invitation:
    return Invitation.from_record(msgpack.unpackb(raw, raw=False))


async def ensure_group(redis: Redis) -> None:
    """Create the ``delivery`` group (from the stream's start) unless it exists."""
    try:
        await redis.xgroup_create(OUTBOX, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class Outbox:
    """Invitations as the API sees them: queue one, read them."""

    def __init__(self, redis: Redis, clock: Callable[[], float]) -> None:
        self.redis = redis
        self.clock = clock

    async def enqueue(
        self, appointment_id: AppointmentId, channel: ContactChannel, to: str
    ) -> Invitation:
        """Store a pending invitation and queue its first attempt, in one transaction: a
        worker on any node sends it."""
        invitation = Invitation.new(
            InvitationId("inv_" + secrets.token_hex(10)),
            appointment_id,
            channel,
            to,
            now=self.clock(),
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(invitation_key(invitation.id), _pack(invitation))
            pipe.lpush(appointment_key(appointment_id), invitation.id)
            pipe.xadd(OUTBOX, {"t": ticket(invitation)}, maxlen=OUTBOX_MAXLEN, approximate=True)
            await pipe.execute()
        return invitation

    async def get(self, invitation_id: str) -> Invitation | None:
        raw: Any = await self.redis.get(invitation_key(invitation_id))
        return None if raw is None else _unpack(raw)

    async def of_appointment(
        self, appointment_id: str, *, offset: int = 0, limit: int = 50
    ) -> tuple[list[Invitation], int]:
        """A page of the appointment's invitations, newest first, and how many there are."""
        key = appointment_key(appointment_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.llen(key)
            pipe.lrange(key, offset, offset + limit - 1)
            total, ids = await pipe.execute()
        if not ids:
            return [], int(total)
        raws: Any = await self.redis.mget([invitation_key(i.decode()) for i in ids])
        return [_unpack(raw) for raw in raws if raw is not None], int(total)


class Delivery:
    """One node's delivery worker: a consumer of the ``delivery`` group.

    ``lookup`` reads the appointment at send time (None if it is gone), so a retry sends
    the current link and time. ``channels`` replaces the ones the settings configure."""

    def __init__(
        self,
        redis: Redis,
        consumer: str,
        clock: Callable[[], float],
        settings: Settings,
        lookup: Lookup,
        *,
        channels: Mapping[ContactChannel, Channel] | None = None,
        on_recorded: Callable[[Invitation], Awaitable[None]] | None = None,
    ) -> None:
        """``on_recorded`` is awaited with each attempt this worker records (the clinician's
        console follows the status)."""
        self.on_recorded = on_recorded
        self.redis = redis
        self.consumer = consumer
        self.clock = clock
        self.settings = settings
        self.lookup = lookup
        self.policy = policy(settings)
        self.channels: Mapping[ContactChannel, Channel] = channels or {}
        self._given = channels is not None
        self._promote = redis.register_script(_PROMOTE)
        self._record = redis.register_script(_RECORD)
        self._pruned_at: float | None = None
        self.attempts = 0  # attempts finished by this worker (for tests and metrics)

    @property
    def claim_idle_ms(self) -> int:
        return int(self.settings.delivery_claim_idle * 1000)

    async def run(self) -> None:
        """Deliver until cancelled; survives Redis outages (the work waits in Redis)."""
        me = asyncio.current_task()
        async with self._open() as channels:
            self.channels = channels
            block_ms = min(int(self.settings.delivery_poll * 1000), MAX_BLOCK_MS)
            backoff = 0.1
            while True:
                # redis-py sends every command under asyncio.wait_for, which before Python
                # 3.12 loses a cancellation that arrives as the send completes (CPython
                # gh-86296). The request is still counted on the task: honour it here, or a
                # stopping node would deliver forever.
                if me is not None and me.cancelling():
                    raise asyncio.CancelledError
                try:
                    await ensure_group(self.redis)
                    await self.step(max(block_ms, 1))
                    backoff = 0.1
                except RedisError as exc:
                    log.warning("delivery: redis unavailable (%s); retrying", type(exc).__name__)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)

    @contextlib.asynccontextmanager
    async def _open(self) -> AsyncIterator[Mapping[ContactChannel, Channel]]:
        if self._given:
            yield self.channels
        else:
            async with open_channels(self.settings, self.clock) as channels:
                yield channels

    async def step(self, block_ms: int = 0) -> int:
        """Promote due retries, then handle one batch of tickets: a dead node's first, then
        new ones (waiting up to ``block_ms`` for some). Returns how many were handled."""
        await self.promote(self.clock())
        await self._prune()
        claimed: Any = await self.redis.xautoclaim(
            OUTBOX, GROUP, self.consumer, min_idle_time=self.claim_idle_ms, count=BATCH
        )
        entries: list[tuple[bytes, dict[bytes, bytes] | None]] = list(claimed[1])
        if not entries:
            reply: Any = await self.redis.xreadgroup(
                GROUP, self.consumer, {OUTBOX: ">"}, count=BATCH, block=block_ms or None
            )
            for _, items in reply or []:
                entries += items
        if entries:
            await each_of(*(self.handle(entry_id, fields) for entry_id, fields in entries))
        return len(entries)

    async def promote(self, now: float) -> int:
        """Queue every retry due at ``now``; returns how many."""
        moved: Any = await self._promote(keys=[DUE, OUTBOX], args=[repr(now), 100, OUTBOX_MAXLEN])
        return int(moved)

    async def handle(self, entry_id: bytes, fields: dict[bytes, bytes] | None) -> None:
        """Make the attempt a ticket stands for, record it and acknowledge the ticket."""
        raw_ticket = (fields or {}).get(b"t")
        if raw_ticket is None:  # trimmed from the stream, or not ours
            await self.redis.xack(OUTBOX, GROUP, entry_id)
            return
        invitation_id, _, count = raw_ticket.decode().rpartition(":")
        raw: Any = await self.redis.get(invitation_key(invitation_id))
        if raw is None:
            await self.redis.xack(OUTBOX, GROUP, entry_id)
            return
        before = _unpack(raw)
        if before.status is not InvitationStatus.PENDING or str(before.attempts) != count:
            await self.redis.xack(OUTBOX, GROUP, entry_id)  # settled, or a stale ticket
            return
        reason, permanent = await self._send(before)
        now = self.clock()
        if reason is None:
            after = before.delivered(now)
        else:
            after = before.attempt_failed(now, reason, self.policy, permanent=permanent)
        retry = after.status is InvitationStatus.PENDING and after.next_attempt_at is not None
        saved = await self._record(
            keys=[invitation_key(before.id), DUE, OUTBOX],
            args=[
                raw,
                _pack(after),
                ticket(after) if retry else "",
                repr(after.next_attempt_at) if retry else "0",
                entry_id,
                GROUP,
                max(1, int(self.settings.retention)),
            ],
        )
        self.attempts += 1
        if not saved:  # another worker recorded this attempt first
            await self.redis.xack(OUTBOX, GROUP, entry_id)
            log.info("invitation %s: attempt %d was recorded elsewhere", before.id, after.attempts)
            return
        self._log(after)
        if self.on_recorded is not None:
            await self.on_recorded(after)

    async def _send(self, invitation: Invitation) -> tuple[str | None, bool]:
        """Try the channel once: (None, _) when sent, else (reason, permanent)."""
        channel_name = invitation.channel.value
        try:
            appointment = await self.lookup(invitation.appointment_id)
            if appointment is None:
                raise DeliveryError("the appointment no longer exists", permanent=True)
            if not appointment.active:
                raise DeliveryError(
                    f"the appointment is {appointment.status.value}", permanent=True
                )
            if not appointment.video_link:
                raise DeliveryError("the appointment has no video link", permanent=True)
            channel = self.channels.get(invitation.channel)
            if channel is None:
                raise DeliveryError(f"the {channel_name} channel is not configured", permanent=True)
            async with asyncio.timeout(self.settings.delivery_timeout):
                await channel.send(invitation, appointment)
        except DeliveryError as exc:
            return exc.reason, exc.permanent
        except TimeoutError:
            return f"{channel_name}: timed out", False
        except RedisError:
            raise  # the ticket stays unacknowledged and is tried again
        except Exception:  # a channel's bug: counted as a failed attempt, so attempts end
            log.exception("invitation %s: the %s channel failed", invitation.id, channel_name)
            return f"{channel_name}: internal error", False
        return None, False

    def _log(self, invitation: Invitation) -> None:
        channel = invitation.channel.value
        if invitation.status is InvitationStatus.SENT:
            log.info(
                "invitation %s sent by %s (attempt %d)", invitation.id, channel, invitation.attempts
            )
        elif invitation.status is InvitationStatus.FAILED:
            log.warning(
                "invitation %s failed by %s after %d attempt(s): %s",
                invitation.id, channel, invitation.attempts, invitation.last_error,
            )  # fmt: skip
        else:
            log.info(
                "invitation %s: attempt %d by %s failed (%s); retrying at %.3f",
                invitation.id, invitation.attempts, channel, invitation.last_error,
                invitation.next_attempt_at,
            )  # fmt: skip

    async def _prune(self) -> None:
        """Remove the group's consumers of nodes long gone that hold nothing, so restarts
        (each a new node id) do not grow the group without end."""
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        consumers: Any = await self.redis.xinfo_consumers(OUTBOX, GROUP)
        for consumer in consumers:
            name = consumer["name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            if (
                name != self.consumer
                and int(consumer["pending"]) == 0
                and int(consumer["idle"]) > GONE_AFTER_MS
            ):
                await self.redis.xgroup_delconsumer(OUTBOX, GROUP, name)
