"""Rooms' event streams in Redis: the source of truth and the activity timeline.

Each room has one stream, ``vst:{<room>}:events``; each entry holds one domain event as
msgpack in field ``e``. Appends are compare-and-append: a Lua script adds the events only
if the stream's last id is still the one the caller's fold has seen, so two nodes deciding
on the same room cannot both win. The key carries the room's hash tag and the script
touches only that key, so the same code runs on Redis Cluster.

The same script publishes what it appended on the room's channel, ``vst:{<room>}:feed``:
a msgpack array ``[previous last id, [ids...], [events...]]``. A node that serves the room
subscribes to it and folds the events straight from the message when the previous id is
the last one it has folded (otherwise it reads the stream). Redis sends the message, like
the append's reply, only once the append is written (fsynced with ``appendfsync
always``); nothing extra is stored. An optional ``note`` is queued in the same round trip
as the append (the projector's change note, `signalling.projector.queue_change`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgpack
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

from rooms.events import Event
from rooms.ids import RoomId

StreamId = str
EMPTY: StreamId = "0-0"
PAGE = 1000

_APPEND = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local last_id = '0-0'
if #last > 0 then last_id = last[1][1] end
if last_id ~= ARGV[1] then return {'conflict', last_id} end
local out = {'ok'}
local ids, events = {}, {}
for i = 3, #ARGV do
  local id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[i])
  out[#out + 1] = id
  ids[#ids + 1] = id
  events[#events + 1] = ARGV[i]
end
redis.call('PUBLISH', ARGV[2], cmsgpack.pack({ARGV[1], ids, events}))
return out
"""

Note = Callable[[Pipeline, RoomId], object]


def events_key(room_id: RoomId) -> str:
    return f"vst:{{{room_id}}}:events"


def feed_channel(room_id: RoomId) -> str:
    """Where the appends to ``room_id`` are published."""
    return f"vst:{{{room_id}}}:feed"


def parse_feed(data: bytes) -> tuple[StreamId, list[StreamId], list[bytes]]:
    """A feed message: the stream's last id before the append, the appended events' ids,
    and the events (undecoded)."""
    previous, ids, events = msgpack.unpackb(data, raw=True)
    return previous.decode(), [i.decode() for i in ids], list(events)


def parse_id(stream_id: StreamId) -> tuple[int, int]:
    """A stream id as a tuple that orders like the stream."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def encode(event: Event) -> bytes:
    return msgpack.packb(event.to_record(), use_bin_type=True)


def decode(payload: bytes) -> Event:
    return Event.from_record(msgpack.unpackb(payload, raw=False))


class Conflict(Exception):
    """The stream moved on since the caller's fold: catch up and decide again."""

    def __init__(self, last_id: StreamId) -> None:
        super().__init__(f"stream has moved on to {last_id}")
        self.last_id = last_id


class EventLog:
    """Append to and read rooms' event streams. ``redis`` must not decode responses."""

    def __init__(self, redis: Redis, note: Note | None = None) -> None:
        """``note`` queues commands to send with every append, in the same round trip
        (whether or not the append then succeeds)."""
        self.redis = redis
        self.note = note
        self._append = redis.register_script(_APPEND)

    async def append(
        self, room_id: RoomId, expected: StreamId, events: Sequence[Event]
    ) -> list[StreamId]:
        """Append ``events`` if the stream's last id is ``expected``; return their ids.

        Raise Conflict (nothing appended) if another writer got there first."""
        args: list[Any] = [expected, feed_channel(room_id), *(encode(e) for e in events)]
        key = events_key(room_id)
        if self.note is None:
            reply = await self._append(keys=[key], args=args)
        else:
            reply = await self._append_noted(room_id, key, args)
        status, *rest = (_text(item) for item in reply)
        if status != "ok":
            raise Conflict(rest[0])
        return rest

    async def _append_noted(self, room_id: RoomId, key: str, args: list[Any]) -> Any:
        """The script and the note in one pipeline: one round trip, and (commands that
        arrive together are written together) one fsync."""
        assert self.note is not None
        for _ in range(2):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.evalsha(self._append.sha, 1, key, *args)
                self.note(pipe, room_id)
                replies = await pipe.execute(raise_on_error=False)
            reply = replies[0]
            if not isinstance(reply, NoScriptError):
                for item in replies:
                    if isinstance(item, Exception):
                        raise item
                return reply
            # Redis does not know the script (first use, or restarted): nothing was
            # appended. Load it and send both again (a second note is harmless).
            self._append.sha = await self.redis.script_load(self._append.script)
        raise NoScriptError("the append script could not be loaded")

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
