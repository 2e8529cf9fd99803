"""Fan-out payloads: shared once per change, reused while unchanged, encoded once."""

from __future__ import annotations

from admission.window import JoinWindow
from rooms.events import WaitReason
from rooms.ids import AppointmentId, ParticipantId, RoomId, SessionId
from rooms.roles import Role
from rooms.room import Room
from signalling.views import Lists, Notices, Shared, Snapshot, View, frame, updates
from signalling.wire import Codec

H, G0, G1, G2 = (ParticipantId(p) for p in ("h", "g0", "g1", "g2"))


def room() -> Room:
    """An ad-hoc call of capacity 1, taken by G0; G1 and G2 asked after it was full."""
    r = Room(RoomId("r"))
    r.arrive(H, Role.HOST, now=1.0)
    r.start(H, session=SessionId("s"), appointment=None, capacity=1, now=1.0)
    r.arrive(G0, Role.GUEST, now=1.5)
    r.enter(G0, now=1.5)
    for g in (G1, G2):
        r.arrive(g, Role.GUEST, now=2.0)
        r.knock(g, 3.0, WaitReason.AT_CAPACITY)
    return r


def test_unchanged_payloads_are_the_same_object_and_sent_once() -> None:
    shared: dict[str, Shared] = {}
    lists = Lists()
    r, host = room(), View()
    first = Snapshot(r, now=5.0, shared=shared, lists=lists)
    sent = updates(host, H, first)
    assert [m["type"] for m in sent] == ["status", "roster", "waiting_list"]
    second = Snapshot(r, now=5.0, shared=shared, lists=lists, events=[])
    assert second.lists.waiting.full() is first.lists.waiting.full()
    assert updates(host, H, second) == []
    guest = View()
    assert updates(guest, G2, second)[1] == {
        "type": "waiting",
        "reason": "at_capacity",
        "position": 2,
        "can_ask": False,
        "can_join": False,
        "expected_at": None,
    }


def test_notices_group_a_commands_events_by_participant() -> None:
    r = room()
    events = r.admit_all(H, now=4.0)
    told = dict(Notices(events))
    assert set(told) == {G1, G2}
    assert told[G2] == [{"type": "admitted", "session_id": "s", "by": H}]


def test_a_shared_message_is_encoded_once_per_codec() -> None:
    message = Shared({"type": "status", "call_status": "ready"})
    assert frame(message, Codec.JSON) is frame(message, Codec.JSON)
    assert frame(message, Codec.MSGPACK) == Codec.MSGPACK.encode(message)
    assert frame({"type": "pong"}, Codec.JSON) == '{"type":"pong"}'


def test_the_status_is_worked_out_once_per_appointment_and_window() -> None:
    r = Room(RoomId("r"))
    r.arrive(H, Role.HOST, now=1.0)
    r.start(H, session=SessionId("s"), appointment=None, capacity=1, now=1.0)
    r.end(H, now=2.0)  # the call (for no appointment) has ended; nobody else is here
    snapshot = Snapshot(r, now=5.0)
    mine = View()
    other = View(appointment=AppointmentId("apt_2"))
    closed = View(appointment=AppointmentId("apt_2"), window=JoinWindow(0.0, 4.5))
    assert snapshot.status_message(mine) is snapshot.status_message(View())
    assert snapshot.status_message(mine)["call_status"] == "ended"
    assert snapshot.status_message(other)["call_status"] == "ready"
    assert snapshot.status_message(closed)["call_status"] == "expired"
