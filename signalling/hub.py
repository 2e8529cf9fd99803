"""The rooms of this node and the connections attached to them.

The hub runs every command on a room as one synchronous step: apply the command to the
pure core (which checks its rules and produces events), then fan the resulting messages out
to the room's connections. Fan-out only queues (`Peer.deliver` never blocks), so a slow
socket cannot hold up a room.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from admission.policy import check_signal
from admission.window import JoinWindow, WindowState
from rooms.events import Event, EventKind, ExitCause
from rooms.ids import ParticipantId, RoomId
from rooms.room import Room
from signalling.errors import PeerUnavailable
from signalling.views import Snapshot, View, notices, updates
from signalling.wire import Message

log = logging.getLogger("vestibule.signalling.hub")

Command = Callable[[Room], list[Event]]

CLOSE_NORMAL = 1000
CLOSE_DENIED = 4403
CLOSE_REPLACED = 4409


class Peer(Protocol):
    """What the hub needs of a connection attached to a room."""

    view: View

    def deliver(self, message: Message) -> None:
        """Queue a message for the client; never blocks."""

    def close(self, code: int, reason: str) -> None:
        """Send what is queued, then close with ``code``; never blocks."""


@dataclass(slots=True)
class _Entry:
    room: Room
    peers: dict[ParticipantId, Peer] = field(default_factory=dict)
    window: JoinWindow | None = None


class Hub:
    """All rooms with activity on this node."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._rooms: dict[RoomId, _Entry] = {}

    def room(self, room_id: RoomId) -> Room:
        """The room's current state (read only: change it through `execute`)."""
        return self._entry(room_id).room

    def execute(self, room_id: RoomId, command: Command) -> list[Event]:
        """Run ``command`` on the room and tell everyone attached what changed.

        A command that raises has changed nothing; the error goes back to the caller."""
        entry = self._entry(room_id)
        events = command(entry.room)
        if events:
            self._fan_out(entry, events)
        return events

    def join(
        self,
        room_id: RoomId,
        pid: ParticipantId,
        peer: Peer,
        command: Command,
        *,
        window: JoinWindow | None,
        welcome: Callable[[Room], None],
    ) -> list[Event]:
        """Attach ``peer`` as participant ``pid`` and run its arrival ``command``.

        ``welcome`` is called with the room after the arrival and before any other message
        reaches the peer, so the welcome is always the first thing the client reads. An
        older connection of the same participant is closed as replaced."""
        entry = self._entry(room_id)
        events = command(entry.room)
        if window is not None:
            entry.window = window
        previous = entry.peers.get(pid)
        entry.peers[pid] = peer
        welcome(entry.room)
        self._fan_out(entry, events)
        if previous is not None and previous is not peer:
            previous.close(CLOSE_REPLACED, "replaced by a newer connection")
        return events

    def detach(self, room_id: RoomId, pid: ParticipantId, peer: Peer) -> None:
        """The peer's connection is gone. If it was still the participant's connection, the
        participant keeps its place for the grace period (see `sweep`)."""
        entry = self._rooms.get(room_id)
        if entry is None or entry.peers.get(pid) is not peer:
            return
        del entry.peers[pid]
        if pid in entry.room.participants:
            now = self._clock()
            self.execute(room_id, lambda room: room.disconnect(pid, now))

    def relay(
        self, room_id: RoomId, sender: ParticipantId, to: ParticipantId, message: Message
    ) -> None:
        """Pass a call set-up message between two participants of the same call."""
        entry = self._entry(room_id)
        check_signal(entry.room, sender, to)
        peer = entry.peers.get(to)
        if peer is None:
            raise PeerUnavailable(f"cannot reach {to}: its connection is down", {"participant": to})
        peer.deliver(message)

    def sweep(self, grace: float) -> int:
        """Remove participants whose connection has been gone longer than ``grace``, and
        forget rooms with nobody in them and no call. Returns how many were removed."""
        now = self._clock()
        removed = 0
        for room_id, entry in list(self._rooms.items()):
            if any(not p.connected for p in entry.room.participants.values()):
                events = self.execute(room_id, lambda room: room.expire(now, grace))
                removed += sum(1 for e in events if e.kind is EventKind.DEPARTED)
            if not entry.room.participants and entry.room.active_session is None:
                del self._rooms[room_id]
        return removed

    def _entry(self, room_id: RoomId) -> _Entry:
        entry = self._rooms.get(room_id)
        if entry is None:
            entry = self._rooms[room_id] = _Entry(Room(room_id))
        return entry

    def _fan_out(self, entry: _Entry, events: list[Event]) -> None:
        window_closed = entry.window is not None and (
            entry.window.state(self._clock()) is WindowState.CLOSED
        )
        snapshot = Snapshot(entry.room, window_closed=window_closed)
        for pid, peer in list(entry.peers.items()):
            for message in notices(pid, events):
                peer.deliver(message)
            for message in updates(peer.view, pid, snapshot):
                peer.deliver(message)
        for event in events:
            if event.kind is EventKind.DEPARTED and event.participant is not None:
                gone = entry.peers.get(event.participant)
                if gone is not None:
                    del entry.peers[event.participant]
                    denied = event.cause is ExitCause.DENIED
                    gone.close(
                        CLOSE_DENIED if denied else CLOSE_NORMAL,
                        "denied by the host" if denied else "left the room",
                    )
