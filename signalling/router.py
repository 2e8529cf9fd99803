"""Transient messages between two participants of a call (offer, answer, candidate):
straight to the recipient when it is attached here, through the bus
(`signalling.ports.Routes`) when it is attached to another node.

They are never stored. A message for a participant that is still joining on this node
(its arrival is recorded but its peer not attached yet, `Entry.joining`) is held, up to
`MAX_HELD`, and handed to it right after its welcome (`signalling.roomstore`).
"""

from __future__ import annotations

from admission.policy import check_signal
from rooms.ids import ParticipantId, RoomId
from signalling.errors import PeerUnavailable
from signalling.ports import Routes
from signalling.served import Entry
from signalling.wire import Message

MAX_HELD = 256  # call set-up messages kept for a participant still joining (then dropped)


class Router:
    """Delivers transient messages to participants of the rooms in ``rooms``."""

    def __init__(self, rooms: dict[RoomId, Entry], bus: Routes) -> None:
        self.rooms = rooms
        self.bus = bus

    async def relay(
        self, room_id: RoomId, sender: ParticipantId, to: ParticipantId, message: Message
    ) -> None:
        """Pass a call set-up message between two participants of the same call, through
        the bus only when the recipient is connected to another node."""
        entry = self.rooms[room_id]
        room = entry.room
        check_signal(room, sender, to)
        if self.deliver(entry, to, message):
            return
        # The fold's view of the recipient's connection validates the bus's cached location.
        recipient = room.participants[to]
        connection = recipient.connection if recipient.connected else None
        node = await self.bus.locate(room_id, to, connection)
        if node is None or node == self.bus.node_id:
            raise PeerUnavailable(f"cannot reach {to}: its connection is down", {"participant": to})
        await self.bus.send(node, room_id, to, message)

    def receive(self, room_id: RoomId, to: ParticipantId, message: Message) -> None:
        """A transient message from another node for one of ours."""
        entry = self.rooms.get(room_id)
        if entry is not None:
            self.deliver(entry, to, message)

    def deliver(self, entry: Entry, to: ParticipantId, message: Message) -> bool:
        """Give ``message`` to ``to`` if it is attached here, or keep it for when it is
        (it is joining); False if it is neither."""
        peer = entry.peers.get(to)
        if peer is not None:
            peer.deliver(message)
            return True
        held = entry.joining.get(to)
        if held is None:
            return False
        if len(held) < MAX_HELD:
            held.append(message)
        return True
