"""Clinicians' calendars in Redis: the lock that keeps two bookers off one time, the booking
events, and the repair tickets that finish a half-done step.

Every key of one clinician's calendar carries the hash tag ``{cal:<clinician>}``, and each
script below touches the keys of that one calendar only, so the same code runs on Redis
Cluster with calendars spread over shards (tests/signalling/test_calendar_cluster.py):

- ``vst:{cal:<c>}:busy``: sorted set, appointment id by the end of the time it blocks.
- ``vst:{cal:<c>}:spans``: hash, appointment id -> its span (`rooms.booking.Span`) as text,
  ``<kind> <start> <end> <expires at or -> <hold secret digest or -> <confirmed at or ->``.
- ``vst:{cal:<c>}:events``: stream of the clinician's booking events (field ``e``, msgpack
  of `rooms.booking.BookingEvent.to_record`): ids, times and actors only, never a name.
- ``vst:{cal:<c>}:windows`` / ``vst:{cal:<c>}:days_off``: the availability
  (`signalling.api.availability_store`).

Hold, confirm, release and note are one script each: each checks, inside the script, that
no other live span (a hold that has not expired at the time the script is given, a
confirmed booking, or an appointment the clinic's system booked) overlaps the time, then
writes. There is no check-then-write across round trips, whatever the number of nodes. A
hold that has expired blocks nothing from its expiry time on, even before anyone removes
it. Spans that ended more than `PRUNE_AFTER` ago are dropped by the writes.

The appointment record itself is the store's (``vst:appt:<id>``), written after the
calendar. A step that touches both leaves a repair ticket first, in one of `BUCKETS`
sorted sets ``vst:{bookings:<n>}:repairs`` (n from the clinician's id; member: msgpack
``[clinician, appointment, nonce]``, score: when to look), and removes it when done. The
nodes' sweepers claim due tickets for a lease (one script per bucket) and make the two
records agree (`rooms.booking.repair`), so a node dying between the writes is repaired and
never leaves two bookings of one time.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import zlib
from dataclasses import dataclass
from typing import Any

import msgpack
from redis.asyncio import Redis

from rooms.appointments import Actor
from rooms.booking import BookingEvent, BookingEventKind, Span, SpanKind
from rooms.ids import AppointmentId
from rooms.slots import Busy
from signalling.keys import busy_key, calendar_events_key, repairs_key, spans_key

BUCKETS = 16
PRUNE_AFTER = 7 * 86400.0  # spans kept this long after they end (history for repairs)
PRUNE_BATCH = 50
EVENT_LOOKBACK = 3600.0  # seconds of clock skew between nodes and Redis allowed for reads

_SPAN = "^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$"

# Shared by the scripts: drop spans that ended long ago; find a live span other than
# ``me``'s that overlaps [s, e) at time ``now``.
_COMMON = """
local SPAN = '@SPAN@'
local function prune(cutoff)
  local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff, 'LIMIT', 0, @BATCH@)
  for _, id in ipairs(old) do
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
  end
end
local function clash(s, e, now, me)
  local ends = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. s, '+inf')
  for _, id in ipairs(ends) do
    local span = redis.call('HGET', KEYS[2], id)
    if span and id ~= me then
      local kind, os, oe, ox = string.match(span, SPAN)
      if tonumber(os) < tonumber(e) and tonumber(oe) > tonumber(s)
         and (kind ~= 'held' or tonumber(ox) > tonumber(now)) then
        return id
      end
    end
  end
  return nil
end
""".replace("@SPAN@", _SPAN).replace("@BATCH@", str(PRUNE_BATCH))

# ARGV: appointment, start, end, now, expires at, secret digest, event, prune cutoff
_HOLD = (
    _COMMON
    + """
prune(ARGV[8])
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return {'exists'} end
local other = clash(ARGV[2], ARGV[3], ARGV[4], ARGV[1])
if other then return {'taken', other} end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1],
  'held ' .. ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[5] .. ' ' .. ARGV[6] .. ' -')
redis.call('XADD', KEYS[3], '*', 'e', ARGV[7])
return {'ok'}
"""
)

# ARGV: appointment, secret digest, now, event
_CONFIRM = (
    _COMMON
    + """
local span = redis.call('HGET', KEYS[2], ARGV[1])
if not span then return {'gone'} end
local kind, s, e, x, h = string.match(span, SPAN)
if h ~= ARGV[2] then return {'forbidden'} end
if kind == 'confirmed' then return {'already'} end
if kind ~= 'held' then return {'gone'} end
if tonumber(x) <= tonumber(ARGV[3]) then return {'expired'} end
local other = clash(s, e, ARGV[3], ARGV[1])
if other then return {'taken', other} end
redis.call('HSET', KEYS[2], ARGV[1], 'confirmed ' .. s .. ' ' .. e .. ' - ' .. h .. ' ' .. ARGV[3])
redis.call('XADD', KEYS[3], '*', 'e', ARGV[4])
return {'ok'}
"""
)

# ARGV: appointment, mode, now, event (or ''). Modes: 'expire' removes a held span only
# once it has expired; 'remove' removes any span and records the event if it did;
# 'cancel' removes any span and records the event in any case.
_RELEASE = (
    _COMMON
    + """
local span = redis.call('HGET', KEYS[2], ARGV[1])
local kind, s, e, x = nil, nil, nil, nil
if span then kind, s, e, x = string.match(span, SPAN) end
if ARGV[2] == 'expire' and (kind ~= 'held' or tonumber(x) > tonumber(ARGV[3])) then
  return {'kept', kind or ''}
end
if span then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
if ARGV[4] ~= '' and (span or ARGV[2] == 'cancel') then
  redis.call('XADD', KEYS[3], '*', 'e', ARGV[4])
end
if span then return {'removed', kind} end
return {'gone', ''}
"""
)

# ARGV: appointment, start, end, prune cutoff. An appointment of the clinic's own system:
# recorded whatever it overlaps (the clinic decides, seed 004), so that holds avoid it. A
# confirmed span keeps its kind with the new times; a held one is not the API's to move.
_NOTE = (
    _COMMON
    + """
prune(ARGV[4])
local span = redis.call('HGET', KEYS[2], ARGV[1])
local kind, rest = 'booked', ' - - -'
if span then
  local k, s, e, x, h, c = string.match(span, SPAN)
  if k == 'held' then return {'held'} end
  if k == 'confirmed' then kind, rest = k, ' - ' .. h .. ' ' .. c end
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], kind .. ' ' .. ARGV[2] .. ' ' .. ARGV[3] .. rest)
return {'ok'}
"""
)

# KEYS: a repair bucket. ARGV: now, lease until, limit. Claim the due tickets for a lease.
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, ticket in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], ticket) end
return due
"""


bucket_key = repairs_key


def bucket_of(clinician: str) -> int:
    return zlib.crc32(clinician.encode()) % BUCKETS


def digest(secret: str) -> str:
    """What the calendar keeps of a hold secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Outcome(enum.Enum):
    """What a calendar script did."""

    OK = "ok"  # done
    TAKEN = "taken"  # another live span overlaps the time
    ALREADY = "already"  # confirm: it was confirmed before, with this secret
    EXPIRED = "expired"  # confirm: the hold has run out
    FORBIDDEN = "forbidden"  # confirm: another secret
    GONE = "gone"  # no such hold
    HELD = "held"  # note: the appointment is held, not the API's to move
    EXISTS = "exists"  # hold: the appointment id has a span already


@dataclass(frozen=True, slots=True)
class Ticket:
    """A repair to look at: the calendar's clinician and the appointment."""

    clinician: str
    appointment: AppointmentId
    member: bytes

    @classmethod
    def new(cls, clinician: str, appointment: AppointmentId) -> Ticket:
        member = msgpack.packb([clinician, appointment, secrets.token_hex(6)])
        return cls(clinician, appointment, member)

    @classmethod
    def parse(cls, member: bytes) -> Ticket:
        clinician, appointment, _ = msgpack.unpackb(member, raw=False)
        return cls(clinician, AppointmentId(appointment), member)


class Calendar:
    """The calendars of every clinician, on one Redis (or Cluster)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._hold = redis.register_script(_HOLD)
        self._confirm = redis.register_script(_CONFIRM)
        self._release = redis.register_script(_RELEASE)
        self._note = redis.register_script(_NOTE)
        self._claim = redis.register_script(_CLAIM)

    # -- the steps ------------------------------------------------------------------------

    async def hold(
        self,
        clinician: str,
        appointment: AppointmentId,
        start: float,
        end: float,
        *,
        now: float,
        expires_at: float,
        secret: str,
    ) -> Outcome:
        """Hold [start, end) for ``appointment`` until ``expires_at``: OK, or TAKEN."""
        event = _event(BookingEventKind.HELD, appointment, now, Actor.PATIENT)
        args: list[str | bytes] = [appointment, repr(start), repr(end), repr(now)]
        args += [repr(expires_at), digest(secret), event, repr(now - PRUNE_AFTER)]
        reply: Any = await self._hold(keys=self._keys(clinician), args=args)
        return Outcome(_text(reply[0]))

    async def confirm(
        self, clinician: str, appointment: AppointmentId, *, secret: str, now: float
    ) -> Outcome:
        """Confirm a live hold: OK (or ALREADY), else FORBIDDEN, EXPIRED, GONE or TAKEN (an
        appointment of the clinic's system was booked over it meanwhile)."""
        event = _event(BookingEventKind.CONFIRMED, appointment, now, Actor.PATIENT)
        args: list[str | bytes] = [appointment, digest(secret), repr(now), event]
        reply: Any = await self._confirm(keys=self._keys(clinician), args=args)
        return Outcome(_text(reply[0]))

    async def expire(self, clinician: str, appointment: AppointmentId, *, now: float) -> bool:
        """Remove a hold that has expired at ``now``, recording its expiry; False (nothing
        done) if it is not there, not a hold, or still live."""
        event = _event(BookingEventKind.EXPIRED, appointment, now, Actor.SYSTEM)
        return await self._remove(clinician, appointment, "expire", now, event)

    async def cancel(
        self, clinician: str, appointment: AppointmentId, *, now: float, by: Actor
    ) -> None:
        """Free the appointment's time and record its cancellation."""
        event = _event(BookingEventKind.CANCELLED, appointment, now, by)
        await self._remove(clinician, appointment, "cancel", now, event)

    async def remove(
        self, clinician: str, appointment: AppointmentId, *, now: float, by: Actor | None
    ) -> bool:
        """Free the appointment's time (it is cancelled, or no longer this clinician's);
        with ``by``, record a cancellation if there was a span. Whether one was removed."""
        event = b"" if by is None else _event(BookingEventKind.CANCELLED, appointment, now, by)
        return await self._remove(clinician, appointment, "remove", now, event)

    async def note(
        self, clinician: str, appointment: AppointmentId, start: float, end: float, *, now: float
    ) -> Outcome:
        """Block [start, end) for an appointment of the clinic's system: OK, or HELD."""
        args = [appointment, repr(start), repr(end), repr(now - PRUNE_AFTER)]
        reply: Any = await self._note(keys=self._keys(clinician), args=args)
        return Outcome(_text(reply[0]))

    # -- reading --------------------------------------------------------------------------

    async def span(self, clinician: str, appointment: AppointmentId) -> Span | None:
        raw: Any = await self.redis.hget(spans_key(clinician), appointment)
        return None if raw is None else parse_span(appointment, _text(raw))

    async def secret_matches(self, clinician: str, appointment: AppointmentId, secret: str) -> bool:
        """Whether ``secret`` is the one the appointment's hold was made with (and its span
        is still there)."""
        raw: Any = await self.redis.hget(spans_key(clinician), appointment)
        if raw is None:
            return False
        return hmac.compare_digest(_text(raw).split(" ")[4], digest(secret))

    async def busy(self, clinician: str, after: float, now: float) -> list[Busy]:
        """The times blocked at ``now`` that end after ``after``."""
        ids: Any = await self.redis.zrangebyscore(busy_key(clinician), f"({after!r}", "+inf")
        if not ids:
            return []
        raws: Any = await self.redis.hmget(spans_key(clinician), ids)
        spans = [
            parse_span(AppointmentId(_text(i)), _text(raw))
            for i, raw in zip(ids, raws, strict=True)
            if raw is not None
        ]
        return [Busy(s.start, s.end) for s in spans if s.live(now)]

    async def events(self, clinician: str, appointment: str, since: float) -> list[BookingEvent]:
        """The booking events of ``appointment`` (made at ``since``), oldest first."""
        first = max(0, int((since - EVENT_LOOKBACK) * 1000))
        entries: Any = await self.redis.xrange(calendar_events_key(clinician), min=f"{first}-0")
        out = []
        for _, fields in entries:
            event = BookingEvent.from_record(msgpack.unpackb(fields[b"e"], raw=False))
            if event.appointment == appointment:
                out.append(event)
        return out

    # -- repair tickets -------------------------------------------------------------------

    async def ticket(self, clinician: str, appointment: AppointmentId, due: float) -> Ticket:
        """Leave a repair ticket, due at ``due``, before a step that touches both records."""
        ticket = Ticket.new(clinician, appointment)
        await self.redis.zadd(bucket_key(bucket_of(clinician)), {ticket.member: due})
        return ticket

    async def done(self, ticket: Ticket) -> None:
        await self.redis.zrem(bucket_key(bucket_of(ticket.clinician)), ticket.member)

    async def later(self, ticket: Ticket, due: float) -> None:
        await self.redis.zadd(bucket_key(bucket_of(ticket.clinician)), {ticket.member: due})

    async def claim(self, bucket: int, now: float, lease: float, limit: int) -> list[Ticket]:
        """The tickets of ``bucket`` due at ``now``, claimed until ``now + lease``."""
        args: list[str | int] = [repr(now), repr(now + lease), limit]
        members: Any = await self._claim(keys=[bucket_key(bucket)], args=args)
        return [Ticket.parse(m) for m in members]

    # -- helpers --------------------------------------------------------------------------

    def _keys(self, clinician: str) -> list[str]:
        return [busy_key(clinician), spans_key(clinician), calendar_events_key(clinician)]

    async def _remove(
        self, clinician: str, appointment: AppointmentId, mode: str, now: float, event: bytes
    ) -> bool:
        args: list[str | bytes] = [appointment, mode, repr(now), event]
        reply: Any = await self._release(keys=self._keys(clinician), args=args)
        return _text(reply[0]) == "removed"


def parse_span(appointment: AppointmentId, text: str) -> Span:
    kind, start, end, expires, _, confirmed = text.split(" ")
    return Span(
        appointment,
        SpanKind(kind),
        float(start),
        float(end),
        expires_at=None if expires == "-" else float(expires),
        confirmed_at=None if confirmed == "-" else float(confirmed),
    )


def _event(kind: BookingEventKind, appointment: AppointmentId, at: float, by: Actor) -> bytes:
    packed: bytes = msgpack.packb(BookingEvent(kind, appointment, at, by).to_record())
    return packed


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
