"""Fuzzing real node processes over real WebSockets (issue 10), with the strategies of
tests/fuzz.py: two nodes on one real redis-server, a host on the first (JSON) and a patient
on the second (msgpack), in a started call.

- Before the hello, on a fresh socket to either node, every frame gets one documented error
  (or a documented refusal and close), never ``internal_error``.
- After the hello, from either participant, in either codec, the same; and after every
  example an offer still crosses from one node to the other.
- What is relayed across the nodes, whatever it holds, arrives whole in the recipient's
  codec, or the sender is told why not.
- The deep candidate of the finding: ``invalid_message`` for the sender, and relay goes on.

At the end no node logged an ERROR or a traceback. Examples are bounded (`FUZZ`), so the
module adds well under a minute; ``deadline=None``, since a real server answers each one.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from rooms.roles import Role
from signalling.client import Client
from signalling.errors import (
    DuplicateHello,
    FrameTooLarge,
    HelloRequired,
    InvalidMessage,
    MalformedMessage,
    PeerUnavailable,
    UnknownType,
)
from signalling.wire import Codec
from tests.e2e.conftest import Nodes, ServerProcess
from tests.e2e.support import T, new_room
from tests.fuzz import encode, frames, messages, nest, values
from tests.support import token

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Errors a client's message may get (PROTOCOL.md §11), besides the refusals of a hello.
MESSAGE_ERRORS = {
    c.code
    for c in (
        MalformedMessage,
        UnknownType,
        InvalidMessage,
        FrameTooLarge,
        HelloRequired,
        DuplicateHello,
        PeerUnavailable,
    )
} | {"forbidden", "invalid_state", "unknown_participant", "not_in_call", "peer_not_admitted"}
MESSAGE_ERRORS |= {"unknown_appointment", "call_in_progress"}  # start naming an appointment
REFUSALS = {"invalid_token", "token_expired", "token_not_yet_valid", "wrong_room", "invalid_name"}
REFUSALS |= {"name_required", "invalid_resume", "room_not_open", "room_closed"}
ERROR_LINE = re.compile(r"(^|\s)(ERROR|CRITICAL)[:\s]|Traceback")
SENDABLE = 512 * 1024  # bytes: frames over 1 MiB close the socket (1009), not sent here
# Commands that would take the fixture's call apart; everything else may be sent.
BREAKING = {"leave", "end"}


@dataclass
class Call:
    servers: list[ServerProcess]
    host: Client  # on servers[0], JSON
    patient: Client  # on servers[1], msgpack
    checks: int = 0

    async def relay_still_works(self) -> None:
        """An offer from the patient (second node) reaches the host (first node)."""
        self.checks += 1
        sdp = f"v=0 check {self.checks}"
        await self.patient.offer(self.host.participant_id, sdp)
        await self.host.expect("offer", timeout=T, where=lambda m: m["sdp"] == sdp)


@pytest.fixture
async def call(nodes: Nodes) -> AsyncIterator[Call]:
    servers = nodes(2, VESTIBULE_RATE="100000", VESTIBULE_RATE_BURST="100000")
    room = new_room()
    now = time.time()
    host = await Client.connect(
        servers[0].url,
        room=room,
        token=token(room, Role.HOST, now=now, subject="dr-fuzz", capacity=1),
        timeout=T,
    )
    patient = await Client.connect(
        servers[1].url,
        room=room,
        token=token(room, Role.PATIENT, now=now, subject="pat-fuzz", name="Fuzz Patient"),
        codec=Codec.MSGPACK,
        timeout=T,
    )
    await host.start()
    await patient.expect("admitted", timeout=T)
    result = Call(servers, host, patient)
    await result.relay_still_works()
    yield result
    for client in (host, patient):
        await client.close()
    for server in servers:
        errors = [line for line in server.log().splitlines() if ERROR_LINE.search(line)]
        assert not errors, f"{server.url} logged errors: {errors[:5]}"


def reply_of(frame: str | bytes) -> dict[str, Any]:
    message: dict[str, Any] = (
        json.loads(frame) if isinstance(frame, str) else msgpack.unpackb(frame, raw=False)
    )
    return message


async def answers(ws: ClientConnection, frame: str | bytes) -> dict[str, Any] | None:
    """Send ``frame`` on a socket before its hello; the node's one reply, or None if it
    closed the socket (after a refusal's error, whose code it then checks)."""
    await ws.send(frame)
    try:
        async with asyncio.timeout(T):
            return reply_of(await ws.recv())
    except ConnectionClosed:
        return None


@FUZZ
@given(st.lists(frames, min_size=1, max_size=4), st.integers(0, 1))
async def test_frames_before_the_hello_get_documented_errors(
    call: Call, sent: list[str | bytes], node: int
) -> None:
    async with connect(call.servers[node].url, open_timeout=T, max_size=None) as ws:
        for frame in sent:
            reply = await answers(ws, frame)
            if reply is None:
                break  # closed by the WebSocket layer (a frame over 1 MiB): none are sent
            assert reply["type"] == "error", reply
            assert reply["code"] in MESSAGE_ERRORS | REFUSALS | {"unavailable"}, reply
            assert "Traceback" not in json.dumps(reply)
            if reply["code"] in REFUSALS - {"name_required", "invalid_name"}:
                break  # refused: the node closes the socket
    await call.relay_still_works()


async def drain(client: Client) -> list[dict[str, Any]]:
    """Ping and take everything up to the pong: the replies to what was sent before."""
    await client.send({"type": "ping", "id": "drain"})
    replies: list[dict[str, Any]] = []
    async with asyncio.timeout(T):
        while True:
            message = await client.expect(*_ALL, timeout=T)
            if message["type"] == "pong":
                return replies
            replies.append(message)


_ALL = ("error", "pong", "offer", "answer", "candidate", "roster", "status", "waiting_list")


@FUZZ
@given(
    st.lists(
        messages.filter(lambda m: not (isinstance(m, dict) and m.get("type") in BREAKING)),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from(["host", "patient"]),
    st.sampled_from(list(Codec)),
)
async def test_messages_after_the_hello_get_documented_errors_and_relay_goes_on(
    call: Call, sent: list[Any], who: str, codec: Codec
) -> None:
    sender = call.host if who == "host" else call.patient
    for message in sent:
        try:
            frame = encode(message, codec)
        except (TypeError, ValueError, OverflowError, RecursionError):
            continue  # not something a client could send in this codec
        if len(frame) > SENDABLE:
            continue  # the WebSocket layer would close the fixture's connection (1009)
        await sender.ws.send(frame)
    for reply in await drain(sender):
        if reply["type"] == "error":
            assert reply["code"] in MESSAGE_ERRORS, reply
    await drain(call.host if sender is call.patient else call.patient)
    await call.relay_still_works()


@FUZZ
@given(
    st.dictionaries(st.text(max_size=12), values, max_size=5).filter(
        lambda extra: len(json.dumps(extra)) < SENDABLE // 4  # 4 bytes a character at most
    ),
    st.booleans(),
)
async def test_what_is_relayed_across_the_nodes_arrives_whole(
    call: Call, extra: dict[str, Any], to_host: bool
) -> None:
    sender, recipient = (call.patient, call.host) if to_host else (call.host, call.patient)
    candidate = {**extra, "candidate": "candidate:1 1 udp 1 192.0.2.1 9 typ host", "sdpMid": "0"}
    candidate.pop("sdpMLineIndex", None)
    ref = await sender.request("candidate", to=recipient.participant_id, candidate=candidate)
    replies = await drain(sender)
    # A frame over the size limit is refused before it is read, so its error has no ref
    # (PROTOCOL.md §3); it can only be this message's, the one sent.
    refused = [
        r
        for r in replies
        if r["type"] == "error" and (r.get("ref") == ref or r["code"] == "frame_too_large")
    ]
    if refused:  # too large, too deep, or a field of the wrong type: said, not relayed
        assert refused[0]["code"] in {"invalid_message", "frame_too_large"}, refused
        return
    got = await recipient.expect("candidate", timeout=T)
    assert got == {"type": "candidate", "from": sender.participant_id, "candidate": candidate}


async def test_a_deep_candidate_is_invalid_for_the_sender_and_relay_goes_on(call: Call) -> None:
    # Issue 10, finding 1: it passed decoding, the JSON node's listener died on it, and
    # nothing was relayed to that node again.
    deep = nest(1_000, as_map=True)
    frame = msgpack.packb(
        {"type": "candidate", "id": "deep", "to": call.host.participant_id, "candidate": deep},
        use_bin_type=True,
    )
    await call.patient.ws.send(frame)
    reply = await call.patient.expect("error", timeout=T)
    assert (reply["code"], reply["ref"]) == ("invalid_message", "deep")
    assert reply["details"] == {"field": "candidate", "max_depth": 32}
    for _ in range(3):
        await call.relay_still_works()
    # The deep candidate never reached the host.
    assert [m for m in call.host.pending() if m["type"] == "candidate"] == []
