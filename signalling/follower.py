"""Following the feeds of the rooms this node serves, so that their folds stay current.

Every append is published on the room's feed channel with its events
(`signalling.records.pack_feed`). This node subscribes to the feed of each room it serves
on one `signalling.ports.Feed` (`tail` keeps it open, and opens another when it is lost):
subscribing to one more room is one subscription on that feed, and the other rooms'
subscriptions are not touched. A message that follows on from the fold is folded straight
from the message; one that does not (the feed was lost meanwhile, say) makes the node read
the stream instead (`resync`), so nothing is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from rooms.ids import RoomId
from signalling.errors import failure
from signalling.keys import feed_channel, node_home_channel, parse_feed_channel
from signalling.ports import Faults, Feed, Feeds
from signalling.records import decode, parse_feed, parse_id
from signalling.roomstore import RoomStore
from signalling.served import Background, Entry

log = logging.getLogger("vestibule.signalling.hub")

FEED_POLL = 1.0  # seconds the feed waits for a message before it looks again
FEED_WAIT = 5.0  # seconds a room waits for the feed to be back before it gives up


class Follower:
    """Keeps the rooms of ``store`` following their feeds from ``feeds``."""

    def __init__(
        self,
        store: RoomStore,
        feeds: Feeds,
        node_id: str,
        faults: Faults,
        background: Background,
    ) -> None:
        self.store = store
        self.feeds = feeds
        self.faults = faults
        self.background = background
        self._home = node_home_channel(node_id)  # keeps the feed subscribed
        self._tailing = False
        self._feed: Feed | None = None  # while `tail` runs and is connected
        self._feed_up = asyncio.Event()
        self._subscribing: dict[str, list[asyncio.Future[None]]] = {}

    async def tail(self, ready: asyncio.Event | None = None) -> None:
        """Follow the feeds of the rooms this node serves, until cancelled. ``ready`` is
        set once the feed is subscribed."""
        self._tailing = True
        backoff = 0.1
        try:
            while True:
                feed = self.feeds.subscriber()
                try:
                    await feed.subscribe(self._home)
                    self._feed = feed
                    # Every room served, loaded or loading: a room loaded meanwhile that
                    # subscribed on the previous feed (or on none) must not be missed.
                    channels = [feed_channel(room_id) for room_id in self.store.rooms]
                    if channels:
                        await feed.subscribe(*channels)
                    self._resync_all()  # what was published while no feed listened
                    self._feed_up.set()
                    if ready is not None:
                        ready.set()
                    backoff = 0.1
                    await self._listen(feed)
                except self.faults.errors as exc:
                    log.warning("tail: redis unavailable (%s); retrying", type(exc).__name__)
                    self._feed_lost(exc)
                finally:
                    self._feed = None
                    self._feed_up.clear()
                    with contextlib.suppress(*self.faults.errors, OSError):
                        await feed.aclose()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        finally:
            self._tailing = False

    async def _listen(self, feed: Feed) -> None:
        while True:
            if feed.lost:  # it reconnected by itself: messages may be lost
                feed.lost = False
                self._resync_all()
            item = await feed.get(FEED_POLL)
            if item is None:
                continue
            kind = item.kind
            channel = item.channel
            room_id = parse_feed_channel(channel)
            if kind == "message" and room_id is not None:  # not the home channel
                entry = self.store.rooms.get(room_id)
                if entry is None:
                    continue  # no longer served here
                if entry.loaded:
                    try:
                        self.take(entry, item.data)
                    except Exception as exc:  # noqa: BLE001 -- one message must not stop the feed
                        log.warning(
                            "room %s: unreadable feed message (%s)", entry.room.id, failure(exc)
                        )
                        self.resync(entry)  # the stream has the truth
                else:  # its stream is being read: look at this once that is done
                    entry.early.append(item.data)
            elif kind == "subscribe":
                for done in self._subscribing.pop(channel, []):
                    if not done.done():
                        done.set_result(None)

    def _feed_lost(self, exc: Exception) -> None:
        subscribing, self._subscribing = self._subscribing, {}
        for waiters in subscribing.values():
            for done in waiters:
                if not done.done():
                    done.set_exception(type(exc)(f"the rooms' feed was lost: {exc}"))

    async def follow(self, room_id: RoomId) -> None:
        """Subscribe to the room's feed and wait until the backend has confirmed it."""
        if not self._tailing:
            return  # nobody follows feeds on this hub (no `tail` running)
        if self._feed is None:
            try:
                async with asyncio.timeout(FEED_WAIT):
                    await self._feed_up.wait()
            except TimeoutError:
                raise self.faults.lost("not subscribed to the rooms' feeds") from None
        feed = self._feed
        if feed is None or not feed.connected:
            # (None: lost again since it was up, as when a cluster's shard keeps failing.)
            # Only the feed's listener may connect it again: a second task reconnecting the
            # same redis-py connection at once opens two sockets and leaks one. It
            # subscribes every served room when it is back.
            raise self.faults.lost("the rooms' feed is reconnecting")
        channel = feed_channel(room_id)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._subscribing.setdefault(channel, []).append(done)
        try:
            await feed.subscribe(channel)
            await done
        finally:
            waiters = self._subscribing.get(channel)
            if waiters is not None and done in waiters:
                waiters.remove(done)
                if not waiters:
                    del self._subscribing[channel]

    async def unfollow(self, room_id: RoomId) -> None:
        """Stop following a room no longer served (follow it again if it is served anew
        meanwhile)."""
        feed = self._feed
        if feed is None or not feed.connected:
            return  # reconnecting: skip it; messages for rooms not served are ignored
        with contextlib.suppress(*self.faults.errors, OSError):
            await feed.unsubscribe(feed_channel(room_id))
        entry = self.store.rooms.get(room_id)
        if entry is not None:  # served again meanwhile: follow it again, catch up
            await self.follow(room_id)
            if entry.loaded:
                self.resync(entry)

    def take(self, entry: Entry, data: bytes) -> None:
        """A message from the room's feed: fold it if it follows on from the fold, skip it
        if the fold has it, else read the stream."""
        previous, ids, events, names = parse_feed(data)
        last = parse_id(entry.last_id)
        if parse_id(ids[-1]) <= last:
            return  # this node appended it, or read it already
        if parse_id(previous) == last:
            entry.names.update(names)
            self.store.absorb(entry, [(i, decode(e)) for i, e in zip(ids, events, strict=True)])
        else:
            self.resync(entry)

    def _resync_all(self) -> None:
        for entry in self.store.rooms.values():
            if entry.loaded:
                self.resync(entry)

    def resync(self, entry: Entry) -> None:
        """Read what the room's stream has beyond the fold (in the background)."""
        entry.stale = True
        if entry.resync is None:
            entry.resync = self.background.start(self._read_stale(entry))

    async def _read_stale(self, entry: Entry) -> None:
        try:
            while entry.stale:
                entry.stale = False
                await self.store.catch_up(entry)
        except self.faults.errors as exc:  # the feed fails too, and reads again once back
            log.warning("room %s: cannot read its stream (%s)", entry.room.id, type(exc).__name__)
        finally:
            entry.resync = None
