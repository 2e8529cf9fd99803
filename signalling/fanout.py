"""Telling the connections attached to a room what its events changed for them.

Fan-out never blocks (`Peer.deliver` does not), so a slow socket cannot hold up a room. It
tells every participant its notices first (``admitted``...), then the state updates, each
as its own view needs them (`signalling.views`). It also acts on what the events say of
the connections attached here: a participant that departed is closed, one taken over by a
newer connection is closed as replaced, and a live one that another node reported lost is
handed to ``alive`` (`signalling.presence.Presence.reassert`) to be recorded back.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

from rooms.events import Event, EventKind, ExitCause
from rooms.ids import ParticipantId, RoomId
from signalling.served import (
    CLOSE_DENIED,
    CLOSE_NORMAL,
    CLOSE_REPLACED,
    Background,
    Entry,
    Peer,
)
from signalling.views import Notices, Snapshot, notices, updates

Alive = Callable[[RoomId, ParticipantId, Peer], Coroutine[Any, Any, None]]


class FanOut:
    """Tells attached peers what changed; ``clock`` gives the time the views are worked
    out for."""

    def __init__(self, clock: Callable[[], float], background: Background, alive: Alive) -> None:
        self.clock = clock
        self.background = background
        self.alive = alive

    def fan_out(self, entry: Entry, events: list[Event], clock: bool = False) -> None:
        """Tell everyone attached what ``events`` (or, with ``clock``, the time alone)
        changed for them: first every participant's notices (an ``admitted`` must not
        wait for the rosters of a thousand others), then the state updates. A quiet
        change (`views.quiet_change`) is told only to its own people and the hosts."""
        attached = entry.peers
        if events:
            for pid, messages in Notices(events):
                peer = attached.get(pid)
                if peer is not None:
                    for message in messages:
                        peer.deliver(message)
        snapshot = self.snapshot(entry, events)
        if snapshot.quiet is None or clock:
            told = list(attached.items())
        else:
            hosts = entry.room.hosts()
            told = [
                (pid, attached[pid])
                for pid in dict.fromkeys([*snapshot.quiet, *hosts])
                if pid in attached
            ]
        for pid, peer in told:
            for message in updates(peer.view, pid, snapshot):
                peer.deliver(message)
        for event in events:
            if event.kind is EventKind.DISCONNECTED and event.participant is not None:
                alive = entry.peers.get(event.participant)
                if alive is not None and alive.connection_id == event.connection:
                    # Another node reported this live connection lost: it took this node
                    # for dead (heartbeats late under load). Say it is alive again, or the
                    # participant would be removed when its grace runs out.
                    self.background.start(self.alive(entry.room.id, event.participant, alive))
            if event.kind is EventKind.RECONNECTED and event.participant is not None:
                # Taken over by a newer connection, perhaps on another node: ours is stale.
                stale = entry.peers.get(event.participant)
                if stale is not None and stale.connection_id != event.connection:
                    del entry.peers[event.participant]
                    stale.close(CLOSE_REPLACED, "replaced by a newer connection")
            if event.kind is EventKind.DEPARTED and event.participant is not None:
                entry.names.pop(event.participant, None)
                gone = entry.peers.get(event.participant)
                if gone is not None:
                    del entry.peers[event.participant]
                    denied = event.cause is ExitCause.DENIED
                    gone.close(
                        CLOSE_DENIED if denied else CLOSE_NORMAL,
                        "denied by the host" if denied else "left the room",
                    )

    def refresh(self, entries: Iterable[Entry]) -> int:
        """Tell everyone attached what changes with the clock alone (the wait a patient can
        expect, while a call runs past its end): a fan-out of each room served here with a
        connection, sending only what changed. Returns how many rooms."""
        served = [entry for entry in entries if entry.loaded and entry.peers]
        for entry in served:
            self.fan_out(entry, [], clock=True)
        return len(served)

    def retell(self, entry: Entry, pid: ParticipantId) -> None:
        """Send participant ``pid``, if attached, what its view does not have (after a
        ``resync``, its whole state: the lists in full)."""
        peer = entry.peers.get(pid)
        if peer is not None:
            self.tell(entry, pid, peer, [])

    def tell(
        self,
        entry: Entry,
        pid: ParticipantId,
        peer: Peer,
        events: list[Event],
        snapshot: Snapshot | None = None,
    ) -> None:
        """Tell one peer its notices of ``events`` and what its view does not have."""
        for message in notices(pid, events):
            peer.deliver(message)
        for message in updates(peer.view, pid, snapshot or self.snapshot(entry)):
            peer.deliver(message)

    def snapshot(self, entry: Entry, events: Sequence[Event] = ()) -> Snapshot:
        """The room's payloads after ``events`` (none: as the lists were last told)."""
        return Snapshot(
            entry.room,
            now=self.clock(),
            shared=entry.shared,
            names=entry.names,
            lists=entry.lists,
            events=list(events),
        )
