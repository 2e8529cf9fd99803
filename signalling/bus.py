"""Nodes sharing one Redis: who is alive, which node holds which participant, and the
delivery of transient messages (offer, answer, candidate) from node to node.

Keys:
- ``vst:nodes``: sorted set, node id -> unix time of its last heartbeat.
- ``vst:node:<id>:rooms``: rooms in which the node has (or had) participants.
- ``vst:{<room>}:where``: hash, participant id -> ``<node id> <connection id>`` of its
  connection (the connection too, so that cleaning up after a dead node can never touch
  a newer connection of the same participant on a live node).
- channel ``vst:node:<id>``: transient messages for the node's participants.

Transient messages are never stored: if the node is gone, the message is lost, as it
would be with the connection itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

import msgpack
from redis.asyncio import Redis
from redis.exceptions import RedisError

from rooms.ids import ParticipantId, RoomId
from signalling.wire import Message

log = logging.getLogger("vestibule.signalling.bus")

NODES = "vst:nodes"

# Forget a participant's location only if it is still the one we registered.
_UNREGISTER = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""

Receiver = Callable[[RoomId, ParticipantId, Message], None]


def new_node_id() -> str:
    return "n_" + secrets.token_hex(6)


def where_key(room_id: RoomId) -> str:
    return f"vst:{{{room_id}}}:where"


def rooms_key(node_id: str) -> str:
    return f"vst:node:{node_id}:rooms"


def channel(node_id: str) -> str:
    return f"vst:node:{node_id}"


class Bus:
    """This node's membership in the cluster. ``redis`` must not decode responses."""

    def __init__(self, redis: Redis, node_id: str, clock: Callable[[], float]) -> None:
        self.redis = redis
        self.node_id = node_id
        self.clock = clock
        self._unregister = redis.register_script(_UNREGISTER)

    async def heartbeat(self) -> None:
        await self.redis.zadd(NODES, {self.node_id: self.clock()})

    async def register(self, room_id: RoomId, pid: ParticipantId, connection: str) -> None:
        """Route messages for ``pid`` in ``room_id`` to this node's ``connection``."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(where_key(room_id), pid, f"{self.node_id} {connection}")
            pipe.sadd(rooms_key(self.node_id), room_id)
            await pipe.execute()

    async def unregister(
        self, room_id: RoomId, pid: ParticipantId, connection: str, node_id: str | None = None
    ) -> None:
        """Stop routing to ``connection`` on ``node_id`` (this node by default), unless a
        newer connection has taken the participant over since."""
        value = f"{node_id or self.node_id} {connection}"
        await self._unregister(keys=[where_key(room_id)], args=[pid, value])

    async def locate(self, room_id: RoomId, pid: ParticipantId) -> str | None:
        where: Any = await self.redis.hget(where_key(room_id), pid)
        return None if where is None else where.decode().split(" ", 1)[0]

    async def send(
        self, node_id: str, room_id: RoomId, to: ParticipantId, message: Message
    ) -> None:
        payload = msgpack.packb([room_id, to, message], use_bin_type=True)
        await self.redis.publish(channel(node_id), payload)

    async def listen(self, receive: Receiver, ready: asyncio.Event | None = None) -> None:
        """Deliver messages sent to this node until cancelled. If Redis goes away, it
        subscribes again once Redis is back (what was published meanwhile is lost, as
        transient messages are)."""
        backoff = 0.1
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel(self.node_id))
                if ready is not None:
                    ready.set()
                backoff = 0.1
                while True:
                    item: Any = await pubsub.get_message(timeout=1.0)
                    if item is None:
                        continue
                    try:
                        room_id, to, message = msgpack.unpackb(item["data"], raw=False)
                        receive(RoomId(room_id), ParticipantId(to), message)
                    except (ValueError, TypeError, msgpack.UnpackException):
                        log.warning("dropped a malformed message on the node channel")
            except RedisError as exc:
                # Without this the task ended at the first Redis restart and the node
                # silently stopped receiving offers, answers and candidates from others.
                log.warning("listen: redis unavailable (%s); retrying", type(exc).__name__)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def dead_nodes(self, timeout: float) -> list[str]:
        """Nodes whose last heartbeat is older than ``timeout`` seconds."""
        stale: Any = await self.redis.zrangebyscore(NODES, "-inf", self.clock() - timeout)
        return [n.decode() for n in stale if n.decode() != self.node_id]

    async def claim(self, node_id: str) -> bool:
        """Take the clean-up of a dead node; only one survivor gets it."""
        claimed: Any = await self.redis.set(
            f"vst:node:{node_id}:reaper", self.node_id, nx=True, ex=60
        )
        return bool(claimed)

    async def held_by(self, node_id: str) -> dict[RoomId, list[tuple[ParticipantId, str]]]:
        """The connections a node held, room by room: (participant, connection id)."""
        rooms: Any = await self.redis.smembers(rooms_key(node_id))
        out: dict[RoomId, list[tuple[ParticipantId, str]]] = {}
        for raw in rooms:
            room_id = RoomId(raw.decode())
            where: Any = await self.redis.hgetall(where_key(room_id))
            held = []
            for pid, value in where.items():
                node, _, connection = value.decode().partition(" ")
                if node == node_id:
                    held.append((ParticipantId(pid.decode()), connection))
            if held:
                out[room_id] = held
        return out

    async def forget(self, node_id: str) -> None:
        """The dead node's clean-up is done."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(NODES, node_id)
            pipe.delete(rooms_key(node_id))
            await pipe.execute()

    async def leave(self) -> None:
        """This node stops cleanly."""
        await self.forget(self.node_id)
