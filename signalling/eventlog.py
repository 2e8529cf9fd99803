"""Rooms' event streams in Redis: the source of truth and the activity timeline.

Each room has one stream, ``vst:{<room>}:events``; each entry holds one domain event as
msgpack in field ``e``. Appends are compare-and-append: a Lua script adds the events only
if the stream's last id is still the one the caller's fold has seen, so two nodes deciding
on the same room cannot both win. The key carries the room's hash tag and the script
touches only that key, so the same code runs on Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgpack
from redis.asyncio import Redis

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
for i = 2, #ARGV do
  out[#out + 1] = redis.call('XADD', KEYS[1], '*', 'e', ARGV[i])
end
return out
"""


def events_key(room_id: RoomId) -> str:
    return f"vst:{{{room_id}}}:events"


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

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._append = redis.register_script(_APPEND)

    async def append(
        self, room_id: RoomId, expected: StreamId, events: Sequence[Event]
    ) -> list[StreamId]:
        """Append ``events`` if the stream's last id is ``expected``; return their ids.

        Raise Conflict (nothing appended) if another writer got there first."""
        reply = await self._append(
            keys=[events_key(room_id)], args=[expected, *(encode(e) for e in events)]
        )
        status, *rest = (_text(item) for item in reply)
        if status != "ok":
            raise Conflict(rest[0])
        return rest

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

    async def tail(
        self, positions: Mapping[RoomId, StreamId], block_ms: int
    ) -> list[tuple[RoomId, StreamId, Event]]:
        """Wait up to ``block_ms`` for events after the given positions (XREAD BLOCK)."""
        if not positions:
            return []
        streams: dict[Any, Any] = {events_key(room): pos for room, pos in positions.items()}
        reply: Any = await self.redis.xread(streams, count=PAGE, block=block_ms)
        out: list[tuple[RoomId, StreamId, Event]] = []
        for key, entries in reply or []:
            room = RoomId(_text(key).split("{", 1)[1].rsplit("}", 1)[0])
            out += [(room, _text(i), decode(fields[b"e"])) for i, fields in entries]
        return out


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
