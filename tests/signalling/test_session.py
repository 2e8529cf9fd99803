"""The per-connection protocol with no I/O (signalling.session): frames and the time in,
actions out. Synchronous: no event loop, no server, no Redis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import SlotNotCoveredError

from admission.errors import RoomNotOpenYet
from rooms.events import EventKind
from rooms.ids import ParticipantId, RoomId
from rooms.roles import Role
from rooms.room import Room
from signalling.errors import LinkRevoked, PeerUnavailable
from signalling.session import (
    CLOSE_HELLO_TIMEOUT,
    CLOSE_IDLE,
    CLOSE_NOT_OPEN,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHORIZED,
    Action,
    Close,
    Execute,
    Join,
    JoinPlan,
    Relay,
    Send,
    Session,
    State,
)
from signalling.settings import Settings
from signalling.wire import Codec
from tests.signalling.conftest import EPOCH, build_settings
from tests.support import token

ROOM = "r1"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return build_settings(tmp_path, rate_per_second=1.0, rate_burst=2, idle_timeout=60.0)


def hello(**fields: Any) -> str:
    return json.dumps({"type": "hello", "room": ROOM, **fields})


def patient_token(now: float = EPOCH, **claims: Any) -> str:
    return token(ROOM, Role.PATIENT, now=now, subject="sam", name="Sam", **claims)


def codes(actions: list[Action]) -> list[str]:
    return [a.message["code"] for a in actions if isinstance(a, Send) and "code" in a.message]


def joined(settings: Settings, **claims: Any) -> tuple[Session, JoinPlan, Room]:
    """A session whose hello was accepted and recorded in a room of its own."""
    session = Session(settings, "c_1", EPOCH)
    [join] = session.receive(hello(token=patient_token(**claims)), EPOCH)
    assert isinstance(join, Join)
    room = Room(RoomId(ROOM))
    join.plan.arrive(room)
    welcome = session.joined(join.plan, room)
    assert welcome["type"] == "welcome"
    return session, join.plan, room


def test_nothing_but_a_hello_before_the_welcome(settings: Settings) -> None:
    session = Session(settings, "c_1", EPOCH)
    actions = session.receive(json.dumps({"type": "ping", "id": 7}), EPOCH)
    assert actions == [Send(actions[0].message, "hello_required")]  # type: ignore[union-attr]
    assert actions[0].message["ref"] == 7  # type: ignore[union-attr]
    assert session.state is State.AWAITING_HELLO
    # Each reply of the handshake is in the codec of the frame it answers.
    session.receive(msgpack.packb({"type": "ping"}), EPOCH)
    assert session.codec is Codec.MSGPACK


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (hello(token="v1.x.y.z"), "invalid_token"),
        (json.dumps({"type": "hello", "room": "other", "token": patient_token()}), "wrong_room"),
    ],
)
def test_a_refused_hello_sends_its_error_then_closes(
    settings: Settings, frame: str, code: str
) -> None:
    session = Session(settings, "c_1", EPOCH)
    send, close = session.receive(frame, EPOCH)
    assert isinstance(send, Send)
    assert (send.message["code"], send.code) == (code, None)  # a refusal, not an error
    assert close == Close(CLOSE_UNAUTHORIZED, code, refused=code)
    assert session.state is State.CLOSING
    assert session.receive(hello(token=patient_token()), EPOCH) == []


def test_a_hello_that_can_be_corrected_keeps_the_session(settings: Settings) -> None:
    session = Session(settings, "c_1", EPOCH)
    general = token(ROOM, Role.GUEST, now=EPOCH)
    assert codes(session.receive(hello(token=general), EPOCH)) == ["name_required"]
    [join] = session.receive(hello(token=general, name="  Kim  "), EPOCH)
    assert isinstance(join, Join)
    assert join.plan.name == "Kim"
    assert join.plan.participant.startswith("g_")
    assert session.state is State.JOINING


def test_the_plan_checks_the_window_on_the_room_itself(settings: Settings) -> None:
    """The join window is checked by the arrival command, on the room it is decided on:
    a newcomer out of its window is refused; someone still in the room comes back."""
    later: dict[str, Any] = {
        "appointment": "apt_1",
        "starts_at": EPOCH + 3600,
        "ends_at": EPOCH + 5400,
    }
    session = Session(settings, "c_1", EPOCH)
    [join] = session.receive(hello(token=patient_token(**later), features=["join_now"]), EPOCH)
    assert isinstance(join, Join)
    plan = join.plan
    assert plan.join_now
    assert plan.booking.appointment == "apt_1"
    room = Room(RoomId(ROOM))
    with pytest.raises(RoomNotOpenYet):
        plan.arrive(room)
    assert room.version == 0
    *_, close = session.failed(RoomNotOpenYet(EPOCH + 3000, EPOCH + 9000), plan.ref)
    assert close == Close(CLOSE_NOT_OPEN, "room_not_open", refused="room_not_open")
    # Already in the room (a reconnect within its grace): no window to check.
    room.arrive(plan.participant, Role.PATIENT, now=EPOCH)
    events = plan.arrive(room)
    assert plan.was_present
    assert events[0].kind is EventKind.RECONNECTED


def test_joined_dispatches_each_message(settings: Settings) -> None:
    session, plan, _ = joined(settings)
    assert session.state is State.JOINED
    assert session.participant == plan.participant
    pong = session.receive(json.dumps({"type": "ping"}), EPOCH)
    assert pong == [Send({"type": "pong"})]
    [relay] = session.receive(json.dumps({"type": "offer", "to": "p_x", "sdp": "v=0"}), EPOCH + 1)
    assert relay == Relay(
        ParticipantId("p_x"), {"type": "offer", "from": plan.participant, "sdp": "v=0"}, "offer",
        None,
    )  # fmt: skip
    [knock] = session.receive(json.dumps({"type": "knock", "id": "k"}), EPOCH + 2)
    assert isinstance(knock, Execute)
    assert (knock.kind, knock.ref, knock.admitting) == ("knock", "k", True)
    assert codes(session.receive(hello(token=patient_token()), EPOCH + 3)) == ["duplicate_hello"]


def test_the_rate_limit_drops_what_is_over_it(settings: Settings) -> None:
    session, _, _ = joined(settings)
    ping = json.dumps({"type": "ping"})
    assert session.receive(ping, EPOCH) == [Send({"type": "pong"})]
    assert session.receive(ping, EPOCH) == [Send({"type": "pong"})]
    assert codes(session.receive(ping, EPOCH)) == ["rate_limited"]  # a burst of 2, at 1/s
    assert session.receive(ping, EPOCH + 1.0) == [Send({"type": "pong"})]


def test_what_the_io_raises_becomes_the_clients_error(settings: Settings) -> None:
    session = Session(settings, "c_1", EPOCH)
    [join] = session.receive(hello(token=patient_token()), EPOCH)
    assert isinstance(join, Join)
    refused = session.failed(LinkRevoked("revoked"), "h1")
    assert refused[-1] == Close(CLOSE_UNAUTHORIZED, "link_revoked", refused="link_revoked")
    session = Session(settings, "c_1", EPOCH)
    session.receive(hello(token=patient_token()), EPOCH)
    down = session.failed(RedisConnectionError("gone"))
    assert down[-1] == Close(CLOSE_TRY_AGAIN, "unavailable", refused="unavailable")
    # Once joined: an error, and the connection stays.
    session, _, _ = joined(settings)
    [send] = session.failed(RedisConnectionError("gone"), "c9")
    assert isinstance(send, Send)
    assert (send.message["code"], send.message["ref"], send.code) == (
        "unavailable",
        "c9",
        "unavailable",
    )
    [send] = session.failed(PeerUnavailable("down", {"participant": "p_x"}), "c10")
    assert isinstance(send, Send)
    assert send.message["details"] == {"participant": "p_x"}
    with pytest.raises(ZeroDivisionError):  # a bug is not the client's error
        session.failed(ZeroDivisionError())


def test_the_clocks_a_session_rules_on(settings: Settings) -> None:
    session = Session(settings, "c_1", EPOCH)
    send, close = session.hello_timeout()
    assert isinstance(send, Send)
    assert send.message["code"] == "hello_timeout"
    assert close == Close(CLOSE_HELLO_TIMEOUT, "hello timeout", refused="hello_timeout")
    session, _, _ = joined(settings)
    assert session.idle(59.9) == []
    assert session.idle(60.0) == [Close(CLOSE_IDLE, "no message within the idle timeout")]
    assert session.idle(120.0) == []  # closing already
    assert session.receive(json.dumps({"type": "ping"}), EPOCH) == []


def run(session: Session, room: Room, message: dict[str, Any], now: float) -> list[Any]:
    """Send ``message`` through ``session`` and run the command it gives on ``room`` (which
    applies the events it returns)."""
    [execute] = session.receive(json.dumps(message), now)
    assert isinstance(execute, Execute), execute
    return execute.command(room)


def test_each_command_does_what_its_message_says(settings: Settings) -> None:
    """Every room command of §5 goes from its message to the room it is applied to."""
    room = Room(RoomId(ROOM))
    booked: dict[str, Any] = {"appointment": "apt_2", "starts_at": EPOCH, "ends_at": EPOCH + 1800}
    links = [
        token(ROOM, Role.HOST, now=EPOCH, subject="dr"),
        token(ROOM, Role.PATIENT, now=EPOCH, subject="p1", name="P1", **booked),
        token(ROOM, Role.PATIENT, now=EPOCH, subject="p2", name="P2", **booked),
        token(ROOM, Role.GUEST, now=EPOCH, subject="g3", name="G3"),
    ]
    sessions = []
    for n, link in enumerate(links):
        session = Session(settings, f"c_{n}", EPOCH)
        [join] = session.receive(hello(token=link), EPOCH)
        assert isinstance(join, Join)
        join.plan.arrive(room)
        session.joined(join.plan, room)
        sessions.append(session)
    host, first, second, third = sessions
    one, two, three = first.participant, second.participant, third.participant
    # Everyone arrives in the waiting room; one steps out of it and asks again, twice.
    run(first, room, {"type": "knock_cancel"}, EPOCH + 1)
    assert room.position(one) is None
    assert [e.kind for e in run(first, room, {"type": "join"}, EPOCH + 2)] == [EventKind.KNOCKED]
    run(first, room, {"type": "knock_cancel"}, EPOCH + 3)
    assert [e.kind for e in run(first, room, {"type": "knock"}, EPOCH + 4)] == [EventKind.KNOCKED]
    assert room.position(one) == 3  # at the end of the queue
    run(host, room, {"type": "deny", "participant_id": two, "message": "not today"}, EPOCH + 5)
    assert two not in room.participants
    # An ad-hoc call: the guest of no appointment comes in; apt_2's patient waits.
    run(host, room, {"type": "start"}, EPOCH + 6)
    assert {p.id for p in room.in_call()} == {host.participant, three}
    run(host, room, {"type": "notice", "text": "two minutes"}, EPOCH + 7)
    assert room.notice_for(one) is not None
    assert run(host, room, {"type": "admit_all"}, EPOCH + 8) == []  # not this call's
    run(host, room, {"type": "admit", "participant_id": one}, EPOCH + 9)
    assert {p.id for p in room.in_call()} == {host.participant, one, three}
    run(third, room, {"type": "leave"}, EPOCH + 10)
    assert three not in room.participants
    run(host, room, {"type": "end"}, EPOCH + 11)
    assert room.active_session is None


def test_a_resume_brings_back_the_same_participant_only(settings: Settings) -> None:
    general = token(ROOM, Role.GUEST, now=EPOCH)
    session = Session(settings, "c_1", EPOCH)
    [join] = session.receive(hello(token=general, name="Kim"), EPOCH)
    assert isinstance(join, Join)
    room = Room(RoomId(ROOM))
    join.plan.arrive(room)
    welcome = session.joined(join.plan, room)
    # A general link makes a new guest each time, unless the hello carries the resume token.
    again = Session(settings, "c_2", EPOCH + 5)
    [join] = again.receive(hello(token=general, resume=welcome["resume_token"]), EPOCH + 5)
    assert isinstance(join, Join)
    assert (join.plan.participant, join.plan.name) == (welcome["participant_id"], "Kim")
    # A resume token of another room, or of another role, is refused.
    host = token(ROOM, Role.HOST, now=EPOCH, subject="dr")
    other = Session(settings, "c_3", EPOCH + 5)
    send, close = other.receive(hello(token=host, resume=welcome["resume_token"]), EPOCH + 5)
    assert isinstance(send, Send)
    assert send.message["code"] == "invalid_resume"
    assert isinstance(close, Close)


def test_a_cluster_without_a_shard_for_the_slot_is_unavailable(settings: Settings) -> None:
    """redis-py's cluster errors are no RedisError: one still reads as `unavailable`."""
    session = Session(settings, "c_1", EPOCH)
    session.receive(hello(token=patient_token()), EPOCH)
    refused = session.failed(SlotNotCoveredError("slot 42 is not covered"))
    assert refused[-1] == Close(CLOSE_TRY_AGAIN, "unavailable", refused="unavailable")
