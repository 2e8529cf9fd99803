"""Rooms' event streams in Redis: the source of truth and the activity timeline.

Each room has one stream, ``vst:{<room>}:events``; each entry holds one domain event as
msgpack in field ``e``. Appends are compare-and-append: a Lua script adds the events only
if the stream's last id is still the one the caller's fold has seen, so two nodes deciding
on the same room cannot both win. The keys carry the room's hash tag and the script
touches only those, so it runs on the room's shard of a Redis Cluster (tested on a real
one: tests/signalling/test_on_cluster.py, tests/e2e/test_cluster.py).

The same script publishes what it appended on the room's channel, ``vst:{<room>}:feed``:
a msgpack array ``[previous last id, [ids...], [events...], [participant, name, ...]]``
(`signalling.records`, which also holds the stream ids and the events' encoding). A
node that serves the room subscribes to it and folds the events straight from the message
when the previous id is the last one it has folded (otherwise it reads the stream). Redis
sends the message, like the append's reply, only once the append is written (fsynced with
``appendfsync always``); nothing extra is stored. An optional ``note`` is sent in the same
round trip as the append (the projector's change note, `signalling.projector.queue_change`),
and with ``replicas`` the append waits (``WAIT``) until that many replicas have it, so an
event the caller was told is stored survives a failover.

Events are pseudonymous. The display names of the people in a room live beside its stream,
in ``vst:{<room>}:names`` (participant id -> name), written by the append that records their
arrival and deleted by the one that records their departure; the feed message carries the
names an append wrote, so other nodes need no read. The same departure removes the
participant's routing entry (``vst:{<room>}:where``, `signalling.bus`) if it still names
the connection the participant left on. All three keys carry the room's hash tag.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from rooms.events import Event
from rooms.ids import ParticipantId, RoomId
from signalling.keys import events_key, feed_channel, names_key, where_key
from signalling.pubsub import publish_command
from signalling.records import EMPTY as EMPTY
from signalling.records import Conflict as Conflict
from signalling.records import Feed as Feed
from signalling.records import StreamId as StreamId
from signalling.records import decode as decode
from signalling.records import encode as encode
from signalling.records import parse_feed as parse_feed
from signalling.records import parse_id as parse_id
from signalling.redis_client import is_cluster, on_one_connection

PAGE = 1000

# KEYS: the stream, the names, the routing entries. ARGV: the expected last id, the feed
# channel, the command that publishes (PUBLISH, or SPUBLISH on a cluster: the channel has
# the room's tag, so it is on this shard), then three counted lists: events; (participant,
# name) pairs to keep; and (participant, connection) pairs of departures, whose names go
# and whose routing entry goes if it still names that connection.
_APPEND = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local last_id = '0-0'
if #last > 0 then last_id = last[1][1] end
if last_id ~= ARGV[1] then return {'conflict', last_id} end
local out = {'ok'}
local ids, events, names = {}, {}, {}
local i = 4
for _ = 1, tonumber(ARGV[i]) do
  i = i + 1
  local id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[i])
  out[#out + 1] = id
  ids[#ids + 1] = id
  events[#events + 1] = ARGV[i]
end
i = i + 1
for _ = 1, tonumber(ARGV[i]) do
  redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i + 2])
  names[#names + 1] = ARGV[i + 1]
  names[#names + 1] = ARGV[i + 2]
  i = i + 2
end
i = i + 1
for _ = 1, tonumber(ARGV[i]) do
  local pid, connection = ARGV[i + 1], ARGV[i + 2]
  redis.call('HDEL', KEYS[2], pid)
  local where = redis.call('HGET', KEYS[3], pid)
  if where and connection ~= '' and string.sub(where, -#connection - 1) == ' ' .. connection then
    redis.call('HDEL', KEYS[3], pid)
  end
  i = i + 2
end
redis.call(ARGV[3], ARGV[2], cmsgpack.pack({ARGV[1], ids, events, names}))
return out
"""

# The change note of an append: the command that records it (XADD ...), and its key.
Note = Callable[[RoomId], tuple[str, tuple[object, ...]]]


class NotReplicated(RedisError):
    """The events were appended but fewer replicas than asked have them yet: the caller
    must not say they are stored (a failover now could lose them). The room's fold learns
    of them from the stream as of any other append."""


class EventLog:
    """Append to and read rooms' event streams. ``redis`` must not decode responses."""

    def __init__(
        self,
        redis: Redis,
        note: Note | None = None,
        *,
        replicas: int = 0,
        replica_timeout: float = 1.0,
    ) -> None:
        """``note`` gives the change note to send with every append, in the same round
        trip (whether or not the append then succeeds). With ``replicas``, an append is
        acknowledged once that many replicas have it (``WAIT``), else it raises
        NotReplicated after ``replica_timeout`` seconds."""
        self.redis = redis
        self.note = note
        self.replicas = replicas
        self.replica_timeout_ms = max(1, int(replica_timeout * 1000))
        self._append = redis.register_script(_APPEND)
        self._publish = publish_command(redis)
        self._cluster = is_cluster(redis)

    async def append(
        self,
        room_id: RoomId,
        expected: StreamId,
        events: Sequence[Event],
        *,
        names: Mapping[ParticipantId, str] | None = None,
        gone: Sequence[tuple[ParticipantId, str | None]] = (),
    ) -> list[StreamId]:
        """Append ``events`` if the stream's last id is ``expected``; return their ids.
        With them, keep ``names`` (the people the events bring in) and forget the names and
        routing entries of ``gone`` (participant, the connection it was on).

        Raise Conflict (nothing appended, nothing kept or forgotten) if another writer got
        there first."""
        names = names or {}
        args: list[Any] = [expected, feed_channel(room_id), self._publish, len(events)]
        args += [encode(e) for e in events]
        args.append(len(names))
        for pid, name in names.items():
            args += [pid, name]
        args.append(len(gone))
        for pid, connection in gone:
            args += [pid, connection or ""]
        keys = [events_key(room_id), names_key(room_id), where_key(room_id)]
        if self.note is None and not self.replicas:
            reply = await self._append(keys=keys, args=args)
        else:
            reply = await self._append_noted(room_id, keys, args)
        status, *rest = (_text(item) for item in reply)
        if status != "ok":
            raise Conflict(rest[0])
        return rest

    async def _append_noted(self, room_id: RoomId, keys: list[str], args: list[Any]) -> Any:
        """The script, its ``WAIT`` and the note, in one round trip.

        On one Redis all three go in one pipeline (commands that arrive together are
        written together: one fsync). On a cluster the script and its ``WAIT`` go on one
        connection to the room's shard (`on_one_connection`) while the note goes to its
        bucket's shard at the same time: a cluster pipeline runs no ``EVALSHA``."""
        for _ in range(2):
            append: tuple[object, ...] = ("EVALSHA", self._append.sha, len(keys), *keys, *args)
            commands = [append]
            if self.replicas:
                commands.append(("WAIT", self.replicas, self.replica_timeout_ms))
            note = None if self.note is None else self.note(room_id)
            if note is not None and not self._cluster:
                commands.append(note[1])
            replies = await self._send(keys[0], commands, note if self._cluster else None)
            reply = replies[0]
            if not isinstance(reply, NoScriptError):
                for item in replies:
                    if isinstance(item, Exception):
                        raise item
                appended = isinstance(reply, list) and bool(reply) and _text(reply[0]) == "ok"
                copies = int(replies[1]) if appended and self.replicas else 0  # type: ignore[call-overload]
                if appended and copies < self.replicas:
                    raise NotReplicated(
                        f"room {room_id}: appended, but on {copies} of "
                        f"{self.replicas} replicas in time"
                    )
                return reply
            # Redis does not know the script (first use, or restarted): nothing was
            # appended. Load it and send both again (a second note is harmless).
            self._append.sha = await self.redis.script_load(self._append.script)
        raise NoScriptError("the append script could not be loaded")

    async def _send(
        self,
        key: str,
        commands: list[tuple[object, ...]],
        note: tuple[str, tuple[object, ...]] | None,
    ) -> list[object]:
        if note is None:
            return await on_one_connection(self.redis, key, *commands)
        note_key, note_command = note
        replies, noted = await asyncio.gather(
            on_one_connection(self.redis, key, *commands),
            on_one_connection(self.redis, note_key, note_command),
            return_exceptions=True,
        )
        if isinstance(replies, BaseException):
            raise replies
        if isinstance(noted, BaseException):
            raise noted
        return [*replies, *noted]

    async def last_id(self, room_id: RoomId) -> StreamId:
        """The id of the stream's last event (EMPTY if it has none)."""
        last: Any = await self.redis.xrevrange(events_key(room_id), count=1)
        return _text(last[0][0]) if last else EMPTY

    async def names(
        self, room_id: RoomId, participants: Sequence[ParticipantId]
    ) -> dict[ParticipantId, str]:
        """The names of ``participants`` in the room, of those who have one."""
        if not participants:
            return {}
        values: Any = await self.redis.hmget(names_key(room_id), list(participants))
        return {p: _text(v) for p, v in zip(participants, values, strict=True) if v is not None}

    async def read(self, room_id: RoomId, after: StreamId = EMPTY) -> list[tuple[StreamId, Event]]:
        """Every event after ``after``, oldest first."""
        out: list[tuple[StreamId, Event]] = []
        start = after
        while True:
            page: Any = await self.redis.xrange(events_key(room_id), f"({start}", "+", count=PAGE)
            out += [(_text(entry_id), decode(fields[b"e"])) for entry_id, fields in page]
            if len(page) < PAGE:
                return out
            start = out[-1][0]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
