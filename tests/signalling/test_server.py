"""The signalling protocol over a real WebSocket to a real uvicorn server (PROTOCOL.md).

Every bad input gets its documented error code. Where the protocol says the connection stays
open, the test proves it (a ping after the error still gets its pong); where it says the
connection closes, the test reads the close code. No error reply may carry a traceback, and
the `serve` fixture fails any test after which the server logged an ERROR.

Time is the node's injected clock: grace periods, join windows, token lifetimes and the rate
limit move when a test advances it, never by waiting. The only real waits are the ones the
protocol defines in real time (hello deadline, idle timeout), set to fractions of a second, and
bounded polls for the sweeper.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from admission.tokens import KeyRing
from rooms.ids import ParticipantId, RoomId
from rooms.participants import Participant, Stage
from rooms.roles import Role
from signalling.client import Client, ClientError
from signalling.connection import Connection
from signalling.wire import Codec, Message
from tests.signalling.conftest import EPOCH, Node, Serve, eventually

ROOM = "r1"
CANDIDATE = {
    "candidate": "candidate:842163049 1 udp 1677729535 198.51.100.7 50122 typ srflx",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
    "usernameFragment": "abcd",
}
SNAKE_CASE = re.compile(r"[a-z]+(_[a-z]+)*")

# --- tokens and clients ------------------------------------------------------------------------


def host_token(node: Node, **claims: Any) -> str:
    """A booked host with capacity 1 (unless ``claims`` say otherwise)."""
    claims.setdefault("capacity", 1)
    return node.token(ROOM, Role.HOST, subject="dr-lee", name="Dr Lee", **claims)


def patient_token(node: Node, subject: str = "sam", **claims: Any) -> str:
    return node.token(ROOM, Role.PATIENT, subject=subject, name=subject.title(), **claims)


def guest_token(node: Node) -> str:
    return node.token(ROOM, Role.GUEST)


def pids(waiting_list: Message) -> list[str]:
    return [entry["participant_id"] for entry in waiting_list["entries"]]


def roster_ids(roster: Message) -> list[str]:
    return [entry["participant_id"] for entry in roster["participants"]]


def participant(node: Node, pid: str) -> Participant | None:
    """The node's view of a participant (a read-only query of the hub)."""
    room = node.hub.peek(RoomId(ROOM))
    return None if room is None else room.participants.get(ParticipantId(pid))


async def drop(node: Node, client: Client) -> None:
    """Close ``client``'s socket without `leave` (a lost connection) and wait until the node
    has noticed."""
    pid = client.participant_id
    await client.close()

    def lost() -> bool:
        known = participant(node, pid)
        return known is None or not known.connected

    await eventually(lost, what=f"the node to notice that {pid} dropped")


# --- checking replies --------------------------------------------------------------------------


def no_traceback(message: Message) -> None:
    text = json.dumps(message, ensure_ascii=False)
    assert "Traceback" not in text
    assert 'File "' not in text


def check_error(message: Message, code: str, *, ref: object = None) -> Message:
    """``message`` is an error with ``code`` and ``ref``, in the documented shape."""
    assert message["type"] == "error", message
    assert message["code"] == code, message
    assert SNAKE_CASE.fullmatch(message["code"])
    assert isinstance(message["message"], str)
    assert message["message"]
    assert isinstance(message["details"], dict)
    assert message.get("ref") == ref, message
    no_traceback(message)
    return message


async def error(client: Client, code: str, *, ref: object = None) -> Message:
    return check_error(await client.expect("error"), code, ref=ref)


async def still_open(client: Client) -> None:
    """The connection is usable: a ping gets its pong."""
    await client.ping()
    await client.expect("pong")


# --- a bare WebSocket, for the handshake and raw frames --------------------------------------


class Raw:
    """A WebSocket without the client's hello: frames go out as given and come back decoded,
    with their frame kind kept in ``kinds``."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.kinds: list[type] = []

    async def send(self, message: Message | str | bytes, codec: Codec = Codec.JSON) -> None:
        frame = message if isinstance(message, str | bytes) else codec.encode(message)
        await self.ws.send(frame)

    async def recv(self) -> Message:
        async with asyncio.timeout(5.0):
            frame = await self.ws.recv()
        self.kinds.append(type(frame))
        message: Message = (
            json.loads(frame) if isinstance(frame, str) else msgpack.unpackb(frame, raw=False)
        )
        if message["type"] == "error":
            no_traceback(message)
        return message

    async def recv_type(self, *types: str) -> Message:
        """The next message of one of ``types``, skipping others."""
        while True:
            message = await self.recv()
            if message["type"] in types:
                return message

    async def hello(self, token: str, codec: Codec = Codec.JSON, **fields: Any) -> Message:
        """Send a hello; return the welcome or the error."""
        await self.send({"type": "hello", "room": ROOM, "token": token, **fields}, codec)
        return await self.recv_type("welcome", "error")

    async def close_code(self) -> int | None:
        """Wait for the server to close the connection; its close code."""
        async with asyncio.timeout(5.0):
            await self.ws.wait_closed()
        return None if self.ws.close_code is None else int(self.ws.close_code)

    async def still_open(self, codec: Codec = Codec.JSON) -> None:
        await self.send({"type": "ping"}, codec)
        await self.recv_type("pong")


@contextlib.asynccontextmanager
async def raw(node: Node, **options: Any) -> AsyncIterator[Raw]:
    async with connect(node.url, compression=None, **options) as ws:
        yield Raw(ws)


async def refused(node: Node, token: str, **fields: Any) -> tuple[Message, int | None]:
    """Send one hello that the node must refuse; the error and the close code."""
    async with raw(node) as ws:
        reply = await ws.hello(token, **fields)
        assert reply["type"] == "error", reply
        return reply, await ws.close_code()


# === bad input after the welcome ===============================================================


async def test_malformed_frames_get_malformed_message_and_the_connection_stays_open(
    node: Node,
) -> None:
    patient = await node.connect(room=ROOM, token=patient_token(node))
    frames: list[str | bytes] = [
        "not json",
        "[1, 2]",
        '{"type": 3}',
        '{"id": "c1"}',
        '{"type": "ping", "x": NaN}',
        b"\xc1",
        b"\x93\x01\x02\x03",
    ]
    for frame in frames:
        await patient.ws.send(frame)
        await error(patient, "malformed_message")
    await still_open(patient)


async def test_an_unknown_type_gets_unknown_type_and_the_connection_stays_open(
    node: Node,
) -> None:
    patient = await node.connect(room=ROOM, token=patient_token(node))
    ref = await patient.request("teleport")
    reply = await error(patient, "unknown_type", ref=ref)  # the ref names the bad message
    assert reply["details"] == {"type": "teleport"}
    await still_open(patient)


async def test_a_missing_field_gets_invalid_message_and_the_connection_stays_open(
    node: Node,
) -> None:
    patient = await node.connect(room=ROOM, token=patient_token(node))
    ref = await patient.request("admit")
    reply = await error(patient, "invalid_message", ref=ref)
    assert reply["details"] == {"field": "participant_id"}
    ref = await patient.request("deny", participant_id="p_1", message="x" * 501)
    reply = await error(patient, "invalid_message", ref=ref)
    assert reply["details"] == {"field": "message", "max_length": 500}
    await still_open(patient)


async def test_oversize_frames(serve: Serve) -> None:
    node = await serve(max_message_bytes=1024, transport_max_bytes=4096)
    patient = await node.connect(room=ROOM, token=patient_token(node))
    # Over max_message_bytes: an error, and the connection stays.
    for frame in [
        json.dumps({"type": "ping", "pad": "x" * 2000}),
        Codec.MSGPACK.encode({"type": "ping", "pad": "x" * 2000}),
    ]:
        await patient.ws.send(frame)
        reply = await error(patient, "frame_too_large")
        size = len(frame.encode() if isinstance(frame, str) else frame)
        assert reply["details"] == {"max_bytes": 1024, "size": size}
    await still_open(patient)
    # Over the transport limit: the WebSocket layer closes with 1009.
    await patient.ws.send(json.dumps({"type": "ping", "pad": "x" * 5000}))
    assert await patient.closed() == 1009


async def test_a_patient_may_not_use_host_commands_and_the_connection_stays_open(
    node: Node,
) -> None:
    patient = await node.connect(room=ROOM, token=patient_token(node))
    me = patient.participant_id
    refs = [
        await patient.admit(me),
        await patient.deny(me, "no"),
        await patient.admit_all(),
        await patient.start(),
        await patient.end(),
    ]
    for ref in refs:
        reply = await error(patient, "forbidden", ref=ref)
        assert reply["details"] == {"role": "patient"}
    await still_open(patient)
    assert participant(node, me) is not None  # still waiting, nothing changed
    assert patient.state["waiting"]["position"] == 1


async def test_the_host_may_not_knock(node: Node) -> None:
    host = await node.connect(room=ROOM, token=host_token(node))
    ref = await host.knock()
    await error(host, "forbidden", ref=ref)
    await still_open(host)


async def test_a_duplicate_hello_gets_duplicate_hello_and_the_connection_stays_open(
    node: Node,
) -> None:
    token = patient_token(node)
    patient = await node.connect(room=ROOM, token=token)
    await patient.send({"type": "hello", "room": ROOM, "token": token, "id": "again"})
    await error(patient, "duplicate_hello", ref="again")
    await still_open(patient)
    assert [m for m in patient.pending() if m["type"] == "welcome"] == []


async def test_the_rate_limit_drops_messages_over_the_burst_until_the_clock_moves(
    serve: Serve,
) -> None:
    node = await serve(rate_per_second=2.0, rate_burst=3)
    patient = await node.connect(room=ROOM, token=patient_token(node))  # the hello is free
    for _ in range(4):
        await patient.ping()
    for _ in range(3):
        await patient.expect("pong")
    reply = await error(patient, "rate_limited")
    assert reply["details"] == {"rate_per_second": 2.0}
    assert [m["type"] for m in patient.pending()] == ["waiting"]
    await patient.ping()
    await error(patient, "rate_limited")  # the clock has not moved: no new tokens
    node.clock.advance(0.5)  # one token at 2 per second
    await still_open(patient)


async def test_no_error_reply_carries_a_traceback(node: Node) -> None:
    """A sweep of hostile frames, before and after the hello, in both codecs: every reply is
    an error with a snake_case code and no trace, and the server logs no ERROR."""
    hostile: list[str | bytes] = [
        "",
        "{" * 5000,
        "[" * 50_000,
        '{"type":"\\ud800"}',
        '{"type":"ping","id":"\\udfff"}',
        '{"type":"offer","to":"\\ud800","sdp":"x"}',
        '{"type":"ping","id":' + "9" * 5000 + "}",
        '{"type":"hello","room":{},"token":[]}',
        '{"type":"candidate","to":"x","candidate":{"candidate":"c","sdpMLineIndex":1e400}}',
        msgpack.packb({"type": "ping", "t": msgpack.Timestamp(0, 0)}),
        msgpack.packb({"type": "ping", "b": b"\x00"}, use_bin_type=True),
        msgpack.packb({"type": msgpack.ExtType(5, b"")}),
        b"\x91" * 5000,
    ]
    async with raw(node) as ws:
        for frame in hostile:
            await ws.send(frame)
            reply = await ws.recv()
            assert reply["type"] == "error"
            assert reply["code"] in {"malformed_message", "invalid_message", "hello_required"}
        welcome = await ws.hello(patient_token(node))
        assert welcome["type"] == "welcome"
        for frame in hostile:
            await ws.send(frame)
            reply = await ws.recv_type("error")
            assert reply["code"] in {"malformed_message", "invalid_message", "unknown_type"}
        await ws.still_open()


# === the handshake ============================================================================


async def test_messages_before_hello_get_hello_required_and_a_later_hello_works(
    node: Node,
) -> None:
    async with raw(node) as ws:
        await ws.send({"type": "ping", "id": "early"})
        check_error(await ws.recv(), "hello_required", ref="early")
        await ws.send({"type": "knock"})
        check_error(await ws.recv(), "hello_required")
        await ws.send("not json")
        check_error(await ws.recv(), "malformed_message")
        welcome = await ws.hello(patient_token(node))
        assert welcome["type"] == "welcome"
        assert welcome["stage"] == "waiting"
        await ws.still_open()


async def test_no_hello_within_the_deadline_gets_hello_timeout_then_close_4408(
    serve: Serve,
) -> None:
    node = await serve(hello_timeout=0.2)
    async with raw(node) as ws:
        await ws.send({"type": "ping"})  # a failed attempt does not restart the deadline
        check_error(await ws.recv(), "hello_required")
        check_error(await ws.recv(), "hello_timeout")
        assert await ws.close_code() == 4408


async def test_a_forged_token_is_refused_with_4401(node: Node) -> None:
    other = KeyRing.single("test", b"not-the-deployment-secret-0123456789")
    forged = node.token(ROOM, Role.HOST, subject="dr-lee", keyring=other)
    reply, code = await refused(node, forged)
    check_error(reply, "invalid_token")
    assert code == 4401
    for junk in ["nonsense", "v1.test.e30.AAAA", patient_token(node)[:-4] + "AAAA"]:
        reply, code = await refused(node, junk)
        check_error(reply, "invalid_token")
        assert code == 4401


async def test_a_client_that_leaves_before_its_hello_changes_nothing(node: Node) -> None:
    async with raw(node) as ws:
        await ws.ws.close()
    patient = await node.connect(room=ROOM, token=patient_token(node))
    assert (await patient.expect("waiting"))["position"] == 1


async def test_a_msgpack_hello_is_answered_in_msgpack_even_when_refused(node: Node) -> None:
    token = guest_token(node)
    async with raw(node) as ws:
        check_error(await ws.hello(token, Codec.MSGPACK), "name_required")
        welcome = await ws.hello(token, Codec.MSGPACK, name="Kim")
        assert welcome["type"] == "welcome"
        assert ws.kinds == [bytes] * len(ws.kinds)
    async with raw(node) as ws:
        check_error(await ws.hello("nonsense", Codec.MSGPACK), "invalid_token")
        assert await ws.close_code() == 4401
        assert ws.kinds == [bytes]


async def test_the_python_client_reports_a_refused_hello_by_code(node: Node) -> None:
    with pytest.raises(ClientError) as info:
        await Client.connect(node.url, room=ROOM, token="nonsense", timeout=5.0)
    assert info.value.code == "invalid_token"


async def test_an_expired_token_is_refused_with_4401(node: Node) -> None:
    token = patient_token(node, valid_for=60.0)
    node.clock.advance(60.0 + 5.0 + 1.0)  # past expiry and the 5 s leeway
    reply, code = await refused(node, token)
    check_error(reply, "token_expired")
    assert reply["details"] == {"expired_at": EPOCH + 60.0}
    assert code == 4401


async def test_a_token_not_yet_valid_is_refused_with_4401(node: Node) -> None:
    token = node.token(ROOM, Role.PATIENT, subject="sam")
    node.clock.now -= 60.0
    reply, code = await refused(node, token)
    check_error(reply, "token_not_yet_valid")
    assert code == 4401


async def test_a_token_for_another_room_is_refused_with_4401(node: Node) -> None:
    token = node.token("r2", Role.PATIENT, subject="sam")
    reply, code = await refused(node, token)
    check_error(reply, "wrong_room")
    assert code == 4401


async def test_a_resume_token_must_match_the_join_token(node: Node) -> None:
    patient = await node.connect(room=ROOM, token=patient_token(node))
    resume = patient.resume_token
    # Another role: invalid_resume.
    reply, code = await refused(node, guest_token(node), name="Kim", resume=resume)
    check_error(reply, "invalid_resume")
    assert code == 4401
    # A resume token is not a join token.
    reply, code = await refused(node, resume)
    check_error(reply, "invalid_token")
    assert code == 4401
    # Nor is a join token a resume token.
    reply, code = await refused(node, patient_token(node), resume=patient_token(node))
    check_error(reply, "invalid_token")
    assert code == 4401


async def test_a_guest_without_a_name_gets_name_required_and_may_try_again(
    node: Node,
) -> None:
    token = guest_token(node)
    async with raw(node) as ws:
        check_error(await ws.hello(token), "name_required")
        reply = check_error(await ws.hello(token, name=" \t "), "invalid_name")
        assert reply["details"] == {"max_length": 80}
        check_error(await ws.hello(token, name="Kim\x07"), "invalid_name")
        check_error(await ws.hello(token, name="K" * 81), "invalid_name")
        welcome = await ws.hello(token, name="  Kim \n Lee ")
        assert welcome["type"] == "welcome"
        assert welcome["name"] == "Kim Lee"
        assert welcome["role"] == "guest"
        await ws.still_open()


async def test_msgpack_binary_frames_carry_the_same_messages(node: Node) -> None:
    async with raw(node) as ws:
        welcome = await ws.hello(patient_token(node), Codec.MSGPACK)
        assert welcome["type"] == "welcome"
        assert welcome["role"] == "patient"
        assert welcome["stage"] == "waiting"
        waiting = await ws.recv()
        assert waiting == {
            "type": "waiting",
            "reason": "host_not_started",
            "position": 1,
            "can_ask": False,
            "can_join": False,
            "expected_at": None,
        }
        await ws.send({"type": "teleport", "id": 7}, Codec.MSGPACK)
        check_error(await ws.recv(), "unknown_type", ref=7)
        await ws.send({"type": "knock_cancel", "id": 8}, Codec.MSGPACK)
        waiting = await ws.recv()
        assert waiting["position"] is None
        await ws.still_open(Codec.MSGPACK)
        await ws.still_open(Codec.JSON)  # a JSON frame is understood, answered in msgpack
        assert ws.kinds == [bytes] * len(ws.kinds)


# === signalling between participants ============================================================


async def in_call(node: Node) -> tuple[Client, Client, Client]:
    """A host (capacity 1) in a started call with a patient; a guest in the lobby."""
    host = await node.connect(room=ROOM, token=host_token(node))
    await host.start()
    await host.expect("admitted")
    patient = await node.connect(room=ROOM, token=patient_token(node))
    await patient.expect("admitted")
    guest = await node.connect(room=ROOM, token=guest_token(node), name="Kim")
    assert guest.welcome["stage"] == "lobby"
    await guest.expect("waiting", where=lambda m: m["can_ask"] is True)
    await host.expect("roster", where=lambda m: len(m["participants"]) == 2)  # the patient is in
    return host, patient, guest


async def test_offer_answer_and_candidates_are_relayed_between_participants_in_the_call(
    node: Node,
) -> None:
    host, patient, _ = await in_call(node)
    await host.offer(patient.participant_id, "v=0 offer")
    assert await patient.expect("offer") == {
        "type": "offer",
        "from": host.participant_id,
        "sdp": "v=0 offer",
    }
    await patient.answer(host.participant_id, "v=0 answer")
    assert await host.expect("answer") == {
        "type": "answer",
        "from": patient.participant_id,
        "sdp": "v=0 answer",
    }
    for candidate in [CANDIDATE, None]:
        await patient.candidate(host.participant_id, candidate)
        relayed = await host.expect("candidate")
        assert relayed == {
            "type": "candidate",
            "from": patient.participant_id,
            "candidate": candidate,
        }


async def test_signalling_outside_the_call_is_refused_and_the_connection_stays_open(
    node: Node,
) -> None:
    host, patient, guest = await in_call(node)
    # To someone not in the call, to nobody, to oneself: peer_not_admitted.
    for to in [guest.participant_id, "p_nobody", host.participant_id]:
        ref = await host.offer(to, "v=0")
        reply = await error(host, "peer_not_admitted", ref=ref)
        assert reply["details"] == {"participant": to}
    # From someone not in the call: not_in_call.
    refs = [
        await guest.offer(host.participant_id, "v=0"),
        await guest.answer(host.participant_id, "v=0"),
        await guest.candidate(host.participant_id, None),
    ]
    for ref in refs:
        await error(guest, "not_in_call", ref=ref)
    for client in (host, patient, guest):
        await still_open(client)
    assert [m for m in patient.pending() if m["type"] in ("offer", "answer", "candidate")] == []


async def test_signalling_to_a_lost_connection_gets_peer_unavailable(node: Node) -> None:
    host, patient, _ = await in_call(node)
    pid = patient.participant_id
    await drop(node, patient)
    ref = await host.offer(pid, "v=0")
    reply = await error(host, "peer_unavailable", ref=ref)
    assert reply["details"] == {"participant": pid}
    await still_open(host)


async def test_a_lone_surrogate_cannot_break_the_recipients_connection(node: Node) -> None:
    """Regression: JSON may escape half a surrogate pair; relayed, it made the recipient's
    writer fail to encode (close 1011) and, before the hello, crashed the handler."""
    host, patient, _ = await in_call(node)
    to = patient.participant_id
    await host.ws.send('{"type":"offer","to":"' + to + '","sdp":"v=0 \\ud800"}')
    reply = await error(host, "malformed_message")
    assert "surrogate" in reply["message"]
    await still_open(patient)
    await still_open(host)
    assert [m for m in patient.pending() if m["type"] == "offer"] == []


async def test_candidates_pass_between_codecs_and_unportable_values_do_not(node: Node) -> None:
    """Regression: a msgpack client could relay bytes (or a timestamp) inside a candidate to
    a JSON client, whose encoder failed: internal_error and a logged exception."""
    host = await node.connect(room=ROOM, token=host_token(node), codec=Codec.MSGPACK)
    await host.start()
    await host.expect("admitted")
    patient = await node.connect(room=ROOM, token=patient_token(node))
    await patient.expect("admitted")
    await host.candidate(patient.participant_id, CANDIDATE)
    relayed = await patient.expect("candidate")
    assert relayed["candidate"] == CANDIDATE
    await host.candidate(patient.participant_id, {**CANDIDATE, "usernameFragment": b"\x00"})
    await error(host, "malformed_message")
    await still_open(patient)


async def test_the_host_admits_one_then_all_and_the_notice_names_the_host(node: Node) -> None:
    host, _, kim = await in_call(node)
    lee = await node.connect(room=ROOM, token=guest_token(node), name="Lee")
    await lee.expect("waiting", where=lambda m: m["can_ask"] is True)
    for guest in (kim, lee):
        await guest.knock()
    both = [kim.participant_id, lee.participant_id]
    await host.expect("waiting_list", where=lambda m: pids(m) == both)

    await host.admit(kim.participant_id)
    assert (await kim.expect("admitted"))["by"] == host.participant_id  # over capacity
    await host.expect("waiting_list", where=lambda m: pids(m) == [lee.participant_id])
    await host.admit_all()
    assert (await lee.expect("admitted"))["by"] == host.participant_id
    roster = await host.expect("roster", where=lambda m: len(m["participants"]) == 4)
    assert set(both) <= set(roster_ids(roster))


async def test_end_sends_ended_and_returns_everyone_to_the_lobby(node: Node) -> None:
    host, patient, guest = await in_call(node)
    session = patient.welcome["session_id"]  # it arrived after the start
    assert session is not None
    await host.end()
    for client in (host, patient):
        ended = await client.expect("ended")
        assert ended == {"type": "ended", "session_id": session, "reason": "host_ended"}
    waiting = await patient.expect("waiting", where=lambda m: m["position"] is None)
    assert waiting == {
        "type": "waiting",
        "reason": "host_not_started",
        "position": None,
        "can_ask": False,
        "can_join": False,
        "expected_at": None,
    }
    assert [m for m in guest.pending() if m["type"] == "ended"] == []  # it was not in the call
    ref = await host.end()
    await error(host, "session_not_started", ref=ref)
    await still_open(host)


async def test_deny_closes_the_denied_connection_with_4403(node: Node) -> None:
    host, _, guest = await in_call(node)
    await guest.knock()
    await host.expect("waiting_list", where=lambda m: pids(m) == [guest.participant_id])
    await host.deny(guest.participant_id, "sorry, not today")
    assert (await guest.expect("denied"))["message"] == "sorry, not today"
    assert await guest.closed() == 4403
    await host.expect("waiting_list", where=lambda m: pids(m) == [])


async def test_leave_closes_with_1000(node: Node) -> None:
    host, patient, _ = await in_call(node)
    await patient.leave()
    assert await patient.closed() == 1000
    await host.expect("roster", where=lambda m: patient.participant_id not in roster_ids(m))


# === limits in real time ========================================================================


# Every limit holds both ways frames can leave: written straight to uvicorn's protocol (the
# default) and through the ASGI send of a layer in between (`indirect`).
BOTH_WRITE_PATHS = pytest.mark.parametrize("indirect", [False, True], ids=["direct", "indirect"])


@BOTH_WRITE_PATHS
async def test_frames_are_written_straight_to_uvicorns_protocol_unless_wrapped(
    serve: Serve, indirect: bool
) -> None:
    node = await serve(indirect=indirect)
    patient = await node.connect(room=ROOM, token=patient_token(node))
    await patient.expect("waiting")
    connection = node.hub._rooms[RoomId(ROOM)].peers[ParticipantId(patient.participant_id)]
    assert isinstance(connection, Connection)
    assert connection.socket.direct is not indirect
    await patient.ping()
    await patient.expect("pong")


@BOTH_WRITE_PATHS
async def test_a_silent_client_is_closed_with_4412(serve: Serve, indirect: bool) -> None:
    node = await serve(idle_timeout=0.2, indirect=indirect)
    patient = await node.connect(room=ROOM, token=patient_token(node))
    assert await patient.closed() == 4412


async def test_a_client_that_talks_is_not_closed_as_idle(serve: Serve) -> None:
    node = await serve(idle_timeout=0.3)
    patient = await node.connect(room=ROOM, token=patient_token(node), heartbeat=False)
    for _ in range(8):  # 0.8 s in all, never 0.3 s silent
        await asyncio.sleep(0.1)
        await patient.ping()
        await patient.expect("pong")
    assert await patient.closed() == 4412  # then silent: closed


async def test_a_stalled_loop_does_not_close_a_client_whose_frame_arrived_in_time(
    serve: Serve,
) -> None:
    """Regression (a CI flake): after the loop stalled past the idle deadline, the idle timer
    ran before the reader had read the ping that had arrived in time, and closed it 4412."""
    node = await serve(idle_timeout=0.3)
    patient = await node.connect(room=ROOM, token=patient_token(node), heartbeat=False)
    await still_open(patient)
    await asyncio.sleep(0.2)
    await patient.ping()  # in the server's socket now, 0.1 s before the deadline
    # The server runs on this loop: block it past the deadline, as a GC pause would.
    time.sleep(0.4)  # noqa: ASYNC251
    await patient.expect("pong")
    await still_open(patient)


@BOTH_WRITE_PATHS
async def test_a_client_that_reads_is_not_cut_off_however_many_frames_arrive_together(
    serve: Serve, indirect: bool
) -> None:
    """Regression: the reader handled a burst of queued frames without letting the writer
    run, so a client pipelining more than ``outbox`` requests was cut off (4429) as slow."""
    node = await serve(outbox=8, indirect=indirect)
    patient = await node.connect(room=ROOM, token=patient_token(node))
    await patient.expect("waiting")
    for _ in range(60):  # written without waiting, so they reach the server together
        await patient.ws.send(json.dumps({"type": "ping"}))
    for _ in range(60):
        await patient.expect("pong")
    await still_open(patient)


@BOTH_WRITE_PATHS
async def test_a_client_that_stops_reading_is_detached_at_once(
    serve: Serve, indirect: bool
) -> None:
    node = await serve(
        outbox=4,
        rate_per_second=1e6,
        rate_burst=1_000_000,
        max_message_bytes=70_000,
        indirect=indirect,
    )
    host = await node.connect(room=ROOM, token=host_token(node))
    await host.start()
    await host.expect("admitted")
    # The patient's socket buffers little and its client stops reading after the welcome,
    # so the server's writes back up into the outbox.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", node.port))
    async with raw(node, sock=sock, max_queue=1) as slow:
        welcome = await slow.hello(patient_token(node))
        sdp = "x" * 60_000
        # 24 MB: several times what the kernel (tcp_wmem max, 4 MB by default) and the
        # transport buffer can hold between the server and a client that does not read.
        sent = 400
        for _ in range(sent):
            await host.offer(welcome["participant_id"], sdp)
        await still_open(host)  # the sender is not held up by the slow reader
        # While the client still reads nothing, the server has already let go of it: the
        # participant is marked disconnected, so its grace period runs.
        pid = welcome["participant_id"]
        await eventually(
            lambda: (p := participant(node, pid)) is not None and not p.connected,
            what="the slow reader to be detached",
        )
        offers = 0
        with contextlib.suppress(ConnectionClosed):
            while True:
                if (await slow.recv())["type"] == "offer":
                    offers += 1
        # The close frame is best effort: it may be stuck behind the data the client never
        # read, and then the client sees the connection end abnormally.
        assert await slow.close_code() in (4429, 1006)
        assert offers < sent


# === reconnecting and resume ==================================================================


async def test_a_waiting_patient_who_drops_resumes_its_place_within_the_grace(
    serve: Serve,
) -> None:
    node = await serve(resume_grace=30.0)
    host = await node.connect(room=ROOM, token=host_token(node))
    ann_token = patient_token(node, "ann")
    ann = await node.connect(room=ROOM, token=ann_token)
    bob = await node.connect(room=ROOM, token=patient_token(node, "bob"))
    a, b = ann.participant_id, bob.participant_id
    await host.expect("waiting_list", where=lambda m: pids(m) == [a, b])

    await drop(node, ann)
    node.clock.advance(29.0)
    await node.sweeps()
    back = await node.connect(room=ROOM, token=ann_token, resume=ann.resume_token)

    assert back.welcome["resumed"] is True
    assert back.participant_id == a
    assert back.welcome["stage"] == "waiting"
    assert (await back.expect("waiting"))["position"] == 1
    await still_open(host)
    assert pids(host.state["waiting_list"]) == [a, b]
    assert bob.state["waiting"]["position"] == 2


async def test_after_the_grace_a_dropped_patient_is_removed_and_returns_last(
    serve: Serve,
) -> None:
    node = await serve(resume_grace=30.0)
    host = await node.connect(room=ROOM, token=host_token(node))
    ann_token = patient_token(node, "ann")
    ann = await node.connect(room=ROOM, token=ann_token)
    bob = await node.connect(room=ROOM, token=patient_token(node, "bob"))
    a, b = ann.participant_id, bob.participant_id
    await host.expect("waiting_list", where=lambda m: pids(m) == [a, b])

    await drop(node, ann)
    node.clock.advance(31.0)
    await host.expect("waiting_list", where=lambda m: pids(m) == [b])  # the sweeper ran
    await bob.expect("waiting", where=lambda m: m["position"] == 1)
    assert participant(node, a) is None

    back = await node.connect(room=ROOM, token=ann_token, resume=ann.resume_token)
    assert back.welcome["resumed"] is False
    assert back.participant_id == a  # the resume token keeps the id, not the place
    assert (await back.expect("waiting"))["position"] == 2
    await host.expect("waiting_list", where=lambda m: pids(m) == [b, a])


async def test_a_guest_resumes_with_its_old_id_only_through_the_resume_token(
    serve: Serve,
) -> None:
    node = await serve(resume_grace=30.0)
    token = guest_token(node)
    guest = await node.connect(room=ROOM, token=token, name="Kim")
    await drop(node, guest)
    back = await node.connect(room=ROOM, token=token, name="Kim", resume=guest.resume_token)
    assert back.participant_id == guest.participant_id
    assert back.welcome["resumed"] is True
    other = await node.connect(room=ROOM, token=token, name="Kim")
    assert other.participant_id != guest.participant_id
    assert other.welcome["resumed"] is False


async def test_a_participant_in_the_call_resumes_in_the_call(serve: Serve) -> None:
    node = await serve(resume_grace=30.0)
    host = await node.connect(room=ROOM, token=host_token(node))
    await host.start()
    await host.expect("admitted")
    token = patient_token(node)
    patient = await node.connect(room=ROOM, token=token)
    session = (await patient.expect("admitted"))["session_id"]
    pid = patient.participant_id
    await host.expect("roster", where=lambda m: pid in roster_ids(m))

    await drop(node, patient)
    node.clock.advance(10.0)
    await node.sweeps()
    back = await node.connect(room=ROOM, token=token, resume=patient.resume_token)

    assert back.welcome["resumed"] is True
    assert back.welcome["stage"] == "in_call"
    assert back.welcome["session_id"] == session
    assert pid in roster_ids(await back.expect("roster"))
    assert pid in roster_ids(host.state["roster"])
    await host.offer(pid, "v=0 again")
    assert (await back.expect("offer"))["sdp"] == "v=0 again"


async def test_a_second_connection_replaces_the_first_without_a_duplicate(
    serve: Serve,
) -> None:
    node = await serve(resume_grace=30.0)
    host = await node.connect(room=ROOM, token=host_token(node))
    token = patient_token(node, "ann")
    first = await node.connect(room=ROOM, token=token)
    bob = await node.connect(room=ROOM, token=patient_token(node, "bob"))
    a, b = first.participant_id, bob.participant_id
    await host.expect("waiting_list", where=lambda m: pids(m) == [a, b])

    second = await node.connect(room=ROOM, token=token)  # another tab, no resume token
    assert await first.closed() == 4409
    assert second.participant_id == a
    assert second.welcome["resumed"] is True  # PROTOCOL §6.1: a newer connection replacing
    assert (await second.expect("waiting"))["position"] == 1
    await still_open(host)
    assert pids(host.state["waiting_list"]) == [a, b]
    room = node.hub.peek(RoomId(ROOM))
    assert room is not None
    assert [p.id for p in room.waiting()] == [a, b]

    # The replaced connection's end is not a lost connection: no grace period starts.
    known = participant(node, a)
    assert known is not None
    assert known.connected
    node.clock.advance(60.0)
    await node.sweeps()
    await still_open(second)
    assert pids(host.state["waiting_list"]) == [a, b]


async def test_the_waiting_room_survives_the_host_dropping(serve: Serve) -> None:
    node = await serve(resume_grace=30.0)
    token = host_token(node)
    host = await node.connect(room=ROOM, token=token)
    patient = await node.connect(room=ROOM, token=patient_token(node))
    pid = patient.participant_id
    await host.expect("waiting_list", where=lambda m: pids(m) == [pid])

    # Within the grace: the host resumes and sees the patient still waiting.
    await drop(node, host)
    node.clock.advance(10.0)
    await node.sweeps()
    host = await node.connect(room=ROOM, token=token, resume=host.resume_token)
    assert host.welcome["resumed"] is True
    assert pids(await host.expect("waiting_list")) == [pid]

    # After the grace: the host is removed, the patient keeps waiting, and the host that
    # comes back as new still sees it and can let it in.
    host_id = host.participant_id
    await drop(node, host)
    node.clock.advance(31.0)
    await eventually(lambda: participant(node, host_id) is None, what="the host's removal")
    known = participant(node, pid)
    assert known is not None
    assert known.stage is Stage.WAITING
    await still_open(patient)
    assert patient.state["waiting"]["position"] == 1

    host = await node.connect(room=ROOM, token=token)
    assert host.welcome["resumed"] is False
    assert pids(await host.expect("waiting_list")) == [pid]
    await host.start()
    await patient.expect("admitted")


# === the join window ==========================================================================


async def test_the_join_window_opens_10_minutes_before_and_closes_60_minutes_after(
    node: Node,
) -> None:
    start = EPOCH + 7200.0
    end = start + 1800.0
    token = patient_token(node, starts_at=start, ends_at=end, valid_for=6 * 3600.0)

    node.clock.now = start - 600.0 - 1.0
    reply, code = await refused(node, token)
    check_error(reply, "room_not_open")
    assert reply["details"] == {"opens_at": start - 600.0, "closes_at": end + 3600.0}
    assert code == 4410

    for now in (start - 600.0, end + 3600.0):
        node.clock.now = now
        patient = await node.connect(room=ROOM, token=token)
        assert patient.welcome["stage"] == "waiting"
        await patient.leave()  # gone from the room, so the next hello is checked again
        assert await patient.closed() == 1000

    node.clock.now = end + 3600.0 + 1.0
    reply, code = await refused(node, token)
    check_error(reply, "room_closed")
    assert reply["details"] == {"closed_at": end + 3600.0}
    assert code == 4410


async def test_a_participant_still_in_the_room_may_reconnect_after_the_window(
    node: Node,
) -> None:
    start = EPOCH + 600.0
    end = start + 1800.0
    token = patient_token(node, starts_at=start, ends_at=end, valid_for=6 * 3600.0)
    patient = await node.connect(room=ROOM, token=token)
    node.clock.now = end + 3600.0 + 5.0
    await drop(node, patient)
    back = await node.connect(room=ROOM, token=token, resume=patient.resume_token)
    assert back.welcome["resumed"] is True


async def test_call_status_is_expired_once_the_window_closed_without_a_call(
    node: Node,
) -> None:
    """Reachable through the protocol in a welcome: the status is worked out when someone
    connects or something happens in the room (PROTOCOL §6.2), never pushed when the window
    closes."""
    start = EPOCH + 600.0
    end = start + 1800.0
    token = host_token(node, starts_at=start, ends_at=end, valid_for=6 * 3600.0)
    first = await node.connect(room=ROOM, token=token)
    assert first.welcome["call_status"] == "ready"

    node.clock.now = end + 3600.0 + 1.0
    second = await node.connect(room=ROOM, token=token)  # the host's other device
    assert second.welcome["call_status"] == "expired"
    assert await first.closed() == 4409
    reply, code = await refused(node, patient_token(node, starts_at=start, ends_at=end))
    check_error(reply, "room_closed")
    assert code == 4410


async def test_status_pushes_are_for_each_participants_own_appointment(node: Node) -> None:
    """The clinician's persistent room holds the people of several appointments. The status
    pushed after a change is worked out for each receiver's own appointment, as in its
    welcome: it was once worked out for the appointment of whoever joined the node last."""
    start = EPOCH + 600.0
    first, second = (start, start + 1800.0), (start + 1800.0, start + 3600.0)
    host = await node.connect(
        room=ROOM,
        token=host_token(node, appointment="apt_1", starts_at=first[0], ends_at=first[1]),
    )
    await host.start()
    await host.expect("admitted")
    # The next appointment's patient comes early, is let in, and goes again.
    node.clock.now = second[0] - 600.0  # its join window opens
    early = patient_token(node, "kim", appointment="apt_2", starts_at=second[0], ends_at=second[1])
    patient = await node.connect(room=ROOM, token=early)
    # It is not its appointment's call: it waits, until the host lets it in by hand.
    assert (await patient.expect("waiting"))["reason"] == "host_busy"
    await host.admit(patient.participant_id)
    await patient.expect("admitted")
    await patient.leave()
    assert await patient.closed() == 1000
    await host.end()
    # The call of apt_1 has ended; for apt_2 the room would be ready.
    status = await host.expect("status", where=lambda m: m["call_status"] in ("ended", "ready"))
    assert status["call_status"] == "ended"
