"""What a room's event stream holds, as values: stream ids, encoded events and the feed
message, with no I/O (the Redis log, `signalling.eventlog`, and the in-memory one,
`signalling.memory`, both write these; the hub's pieces read them).

A stream id is Redis's ``<ms>-<seq>``; `parse_id` orders them as the stream does. An event
is stored as msgpack (`encode`, `decode`). The feed message of an append is a msgpack array
``[previous last id, [ids...], [events...], [participant, name, ...]]`` of strings, as the
append script packs it (`pack_feed`, `parse_feed`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgpack

from rooms.events import Event
from rooms.ids import ParticipantId

StreamId = str
EMPTY: StreamId = "0-0"

Feed = tuple[StreamId, list[StreamId], list[bytes], dict[ParticipantId, str]]


def parse_feed(data: bytes) -> Feed:
    """A feed message: the stream's last id before the append, the appended events' ids,
    the events (undecoded), and the names the append recorded."""
    previous, ids, events, names = msgpack.unpackb(data, raw=True)
    pairs = iter(names)
    return (
        previous.decode(),
        [i.decode() for i in ids],
        list(events),
        {
            ParticipantId(pid.decode()): name.decode()
            for pid, name in zip(pairs, pairs, strict=True)
        },
    )


def pack_feed(
    previous: StreamId,
    ids: Sequence[StreamId],
    events: Sequence[bytes],
    names: Mapping[ParticipantId, str],
) -> bytes:
    """The feed message of an append, as the append script's ``cmsgpack.pack`` makes it
    (every item a msgpack string)."""
    flat = [item.encode() for pair in names.items() for item in pair]
    record = [previous.encode(), [i.encode() for i in ids], list(events), flat]
    return msgpack.packb(record, use_bin_type=False)


def parse_id(stream_id: StreamId) -> tuple[int, int]:
    """A stream id as a tuple that orders like the stream."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def route(node_id: str, connection: str) -> str:
    """A participant's routing entry (its field of ``vst:{<room>}:where``): the node and
    the connection that serve it, as the append and unregister scripts compare it."""
    return f"{node_id} {connection}"


def parse_route(entry: str) -> tuple[str, str]:
    """The node and the connection of a routing entry (`route`)."""
    node_id, _, connection = entry.partition(" ")
    return node_id, connection


def encode(event: Event) -> bytes:
    return msgpack.packb(event.to_record(), use_bin_type=True)


def decode(payload: bytes) -> Event:
    return Event.from_record(msgpack.unpackb(payload, raw=False))


class Conflict(Exception):
    """The stream moved on since the caller's fold: catch up and decide again."""

    def __init__(self, last_id: StreamId) -> None:
        super().__init__(f"stream has moved on to {last_id}")
        self.last_id = last_id
