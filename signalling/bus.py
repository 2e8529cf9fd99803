"""Nodes sharing one Redis: who is alive, which node holds which participant, and the
delivery of transient messages (offer, answer, candidate) from node to node.

Keys:
- ``vst:nodes``: sorted set, node id -> unix time of its last heartbeat.
- ``vst:node:<id>:rooms``: rooms in which the node has participants (a room leaves it
  when the node stops serving it).
- ``vst:{<room>}:where``: hash, participant id -> ``<node id> <connection id>`` of its
  connection (the connection too, so that cleaning up after a dead node can never touch
  a newer connection of the same participant on a live node).
- channel ``vst:node:<id>``: transient messages for the node's participants.

Transient messages are never stored: if the node is gone, the message is lost, as it
would be with the connection itself.

Relaying across nodes costs no Redis round trip per message once it runs:

- Locations are cached. A cached ``<node> <connection>`` is used only while the caller's
  fold of the room still says the participant is connected on that same connection; the
  connection id changes with every new connection and the location is registered before
  the arrival is appended, so a fold that still shows the cached connection means the
  cache is still right (see `Bus.locate`). No invalidation messages are needed.
- Sends are batched. The messages for one node that come in while the previous publish is
  on its way (or in the same event-loop turn) go out as one PUBLISH: a msgpack array
  ``[room, to, message, room, to, message, ...]`` (one message is the same array as
  before batching). Every sender of a batch waits for its PUBLISH, so a Redis failure
  still reaches each of them, and batches leave one after another, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

import msgpack
from redis.asyncio import Redis
from redis.exceptions import RedisError

from rooms.ids import ParticipantId, RoomId
from signalling.keys import NODES, node_channel, node_rooms_key, reaper_key, where_key
from signalling.pubsub import publish, queue_publish, subscriber
from signalling.records import parse_route, route
from signalling.supervisor import Health, failure
from signalling.wire import Message

log = logging.getLogger("vestibule.signalling.bus")


# Forget a participant's location only if it is still the one we registered.
_UNREGISTER = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""

Receiver = Callable[[RoomId, ParticipantId, Message], None]

T = TypeVar("T")
ROUTES_MAX = 100_000  # cached locations; the cache starts again empty beyond this


class _Shared(asyncio.Future[T]):
    """A result that several tasks wait for (a batch published, a location read). One of
    them cancelled must not cancel the others' wait, so it cannot be cancelled: a
    cancelled waiter stops as soon as the result is in."""

    def cancel(self, msg: Any = None) -> bool:
        return False


class _Batch:
    __slots__ = ("items", "sent")

    def __init__(self) -> None:
        self.items: list[Any] = []  # room, to, message, room, to, message, ...
        self.sent = _Shared[None]()


def new_node_id() -> str:
    return "n_" + secrets.token_hex(6)


rooms_key = node_rooms_key
channel = node_channel


class Bus:
    """This node's membership in the cluster. ``redis`` must not decode responses."""

    def __init__(self, redis: Redis, node_id: str, clock: Callable[[], float]) -> None:
        self.redis = redis
        self.node_id = node_id
        self.clock = clock
        self._unregister = redis.register_script(_UNREGISTER)
        # (room, participant) -> (connection, node): see `locate`.
        self._routes: dict[tuple[RoomId, ParticipantId], tuple[str, str]] = {}
        self._lookups: dict[tuple[RoomId, ParticipantId], _Shared[str | None]] = {}
        self._looker: asyncio.Task[None] | None = None
        self._outgoing: dict[str, _Batch] = {}  # node -> messages not published yet
        self._publisher: asyncio.Task[None] | None = None

    async def heartbeat(self) -> None:
        await self.redis.zadd(NODES, {self.node_id: self.clock()})

    async def register(self, room_id: RoomId, pid: ParticipantId, connection: str) -> None:
        """Route messages for ``pid`` in ``room_id`` to this node's ``connection``."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(where_key(room_id), pid, route(self.node_id, connection))
            pipe.sadd(rooms_key(self.node_id), room_id)
            await pipe.execute()

    async def unserve(self, room_id: RoomId) -> None:
        """This node holds nobody in ``room_id`` any more: its clean-up need not look there."""
        await self.redis.srem(rooms_key(self.node_id), room_id)

    async def serve(self, room_id: RoomId) -> None:
        """This node holds (or is about to hold) participants in ``room_id``."""
        await self.redis.sadd(rooms_key(self.node_id), room_id)

    async def unregister(
        self, room_id: RoomId, pid: ParticipantId, connection: str, node_id: str | None = None
    ) -> None:
        """Stop routing to ``connection`` on ``node_id`` (this node by default), unless a
        newer connection has taken the participant over since."""
        value = route(node_id or self.node_id, connection)
        await self._unregister(keys=[where_key(room_id)], args=[pid, value])

    async def locate(
        self, room_id: RoomId, pid: ParticipantId, connection: str | None = None
    ) -> str | None:
        """The node that holds ``pid``'s connection, or None if none does.

        ``connection`` is the participant's current connection as the caller's fold of the
        room knows it (None if it is not connected there). If the cached location is for
        that connection, no Redis round trip is made: the location is registered before
        the arrival that names the connection is appended, and a newer connection, or a
        lost one, shows in the fold as another connection id or as disconnected. Otherwise
        (a miss, a fold behind or ahead of the registry) the location is read again."""
        key = (room_id, pid)
        if connection is not None:
            cached = self._routes.get(key)
            if cached is not None and cached[0] == connection:
                return cached[1]
        found = self._lookups.get(key)
        if found is None:
            found = self._lookups[key] = _Shared[str | None]()
            if self._looker is None:
                self._looker = asyncio.get_running_loop().create_task(self._look_up())
        return await found

    def pending(self) -> list[asyncio.Task[None]]:
        """Lookups and publishes under way: the node stops them before it closes Redis."""
        return [t for t in (self._looker, self._publisher) if t is not None]

    async def _look_up(self) -> None:
        """Read the locations asked for, all at once, until none are left: when many calls
        start together, one pipeline of HGETs instead of a connection each."""
        try:
            while self._lookups:
                lookups, self._lookups = self._lookups, {}
                values: list[Any]
                try:
                    if len(lookups) == 1:
                        [(room_id, pid)] = lookups
                        values = [await self.redis.hget(where_key(room_id), pid)]
                    else:
                        async with self.redis.pipeline(transaction=False) as pipe:
                            for room_id, pid in lookups:
                                pipe.hget(where_key(room_id), pid)
                            values = await pipe.execute()
                except (RedisError, OSError) as exc:
                    for found in lookups.values():
                        _fail(found, exc)
                    continue
                except BaseException as exc:  # cancelled (node stopping), or a bug
                    for found in lookups.values():
                        _fail(found, RedisError(f"not read: {type(exc).__name__}"))
                    raise
                if len(self._routes) + len(lookups) > ROUTES_MAX:
                    self._routes.clear()
                for (key, found), where in zip(lookups.items(), values, strict=True):
                    if where is None:
                        self._routes.pop(key, None)
                        found.set_result(None)
                    else:
                        node, held = parse_route(where.decode())
                        self._routes[key] = (held, node)
                        found.set_result(node)
        finally:
            self._looker = None
            for found in self._lookups.values():
                _fail(found, RedisError("not read: the node is stopping"))
            self._lookups = {}

    def send(
        self, node_id: str, room_id: RoomId, to: ParticipantId, message: Message
    ) -> asyncio.Future[None]:
        """Publish a message for ``to`` on ``node_id``'s channel. Await the result: it is
        done once the PUBLISH that carries the message has been answered, and raises the
        RedisError if that failed (the message is then lost). Messages to one node go out
        in the order of the calls."""
        batch = self._outgoing.get(node_id)
        if batch is None:
            batch = self._outgoing[node_id] = _Batch()
            if self._publisher is None:
                self._publisher = asyncio.get_running_loop().create_task(self._publish())
        batch.items += (room_id, to, message)
        return batch.sent

    async def _publish(self) -> None:
        """Publish what has been sent, batch by batch, until nothing is left. Started by
        `send` when idle: what is sent in the meantime (the rest of this event-loop turn,
        or while a PUBLISH is on its way) goes out in the next batch."""
        try:
            while self._outgoing:
                outgoing, self._outgoing = self._outgoing, {}
                try:
                    if len(outgoing) == 1:
                        [(node_id, batch)] = outgoing.items()
                        await publish(self.redis, channel(node_id), pack_batch(batch.items))
                        batch.sent.set_result(None)
                        continue
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for node_id, batch in outgoing.items():
                            queue_publish(
                                pipe, self.redis, channel(node_id), pack_batch(batch.items)
                            )
                        results = await pipe.execute(raise_on_error=False)
                    for batch, result in zip(outgoing.values(), results, strict=True):
                        if isinstance(result, Exception):
                            _fail(batch.sent, result)
                        else:
                            batch.sent.set_result(None)
                except (RedisError, OSError) as exc:
                    for batch in outgoing.values():
                        _fail(batch.sent, exc)
                except BaseException as exc:  # cancelled (node stopping), or a bug
                    for batch in outgoing.values():
                        _fail(batch.sent, RedisError(f"not published: {type(exc).__name__}"))
                    raise
        finally:
            self._publisher = None
            # Anything sent after a cancellation would otherwise wait for ever.
            for batch in self._outgoing.values():
                _fail(batch.sent, RedisError("not published: the node is stopping"))
            self._outgoing = {}

    async def listen(
        self,
        receive: Receiver,
        ready: asyncio.Event | None = None,
        health: Health | None = None,
    ) -> None:
        """Deliver messages sent to this node until cancelled. If Redis goes away, it
        subscribes again once Redis is back (what was published meanwhile is lost, as
        transient messages are). Each subscription is reported to ``health`` as a round
        that worked, each Redis failure as one that failed. A message that cannot be
        delivered is dropped, logged without its content, and the next one follows."""
        backoff = 0.1
        while True:
            pubsub = subscriber(self.redis)
            try:
                await pubsub.subscribe(channel(self.node_id))
                if ready is not None:
                    ready.set()
                if health is not None:
                    health.ok()
                backoff = 0.1
                while True:
                    item = await pubsub.get(1.0)
                    if item is None or item.kind != "message":
                        continue
                    deliver_batch(item.data, receive)
            except RedisError as exc:
                # Without this the task ended at the first Redis restart and the node
                # silently stopped receiving offers, answers and candidates from others.
                log.warning("listen: redis unavailable (%s); retrying", type(exc).__name__)
                if health is not None:
                    health.failed(exc)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def dead_nodes(self, timeout: float) -> list[str]:
        """Nodes whose last heartbeat is older than ``timeout`` seconds."""
        stale: Any = await self.redis.zrangebyscore(NODES, "-inf", self.clock() - timeout)
        return [n.decode() for n in stale if n.decode() != self.node_id]

    async def claim(self, node_id: str) -> bool:
        """Take the clean-up of a dead node; only one survivor gets it."""
        claimed: Any = await self.redis.set(reaper_key(node_id), self.node_id, nx=True, ex=60)
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
                node, connection = parse_route(value.decode())
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


def pack_batch(items: list[Any]) -> bytes:
    """A batch of messages for one node: ``[room, to, message, room, to, message, ...]``."""
    return msgpack.packb(items, use_bin_type=True)


def _fail(shared: asyncio.Future[Any], exc: BaseException) -> None:
    if not shared.done():
        shared.set_exception(exc)
        shared.exception()  # nobody may be waiting any more: do not log it as unretrieved


def deliver_batch(data: bytes, receive: Receiver) -> None:
    """Hand each message of a batch published on this node's channel to ``receive``.

    Whatever one message raises, it is dropped and the others are delivered: the listener
    must outlive any message (one that the recipient's codec cannot encode, say). The log
    names what failed and where, never the message: it may hold patient data."""
    try:
        items = msgpack.unpackb(data, raw=False)
    except Exception:  # noqa: BLE001 -- msgpack raises several kinds (ValueError, StackError...)
        items = None
    if not isinstance(items, list) or len(items) % 3:
        log.warning("dropped a malformed batch on the node channel")
        return
    for index in range(0, len(items), 3):
        room_id, to, message = items[index : index + 3]
        try:
            receive(room_id, to, message)
        except (ValueError, TypeError, AttributeError, KeyError, RecursionError) as exc:
            log.warning("dropped a malformed message on the node channel (%s)", failure(exc))
        except Exception as exc:  # noqa: BLE001 -- logged, without the message's content
            log.error("could not deliver a message from the node channel: %s", failure(exc))
