"""End to end: a real server process, Python clients, and aiortc peers that really connect.

Every wait is bounded: `Client.expect` and `CallPeer` take a timeout, `eventually` polls
with a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from rooms.roles import Role
from signalling.client import Client
from signalling.rtc import CallError, CallPeer, split_candidates
from signalling.wire import Message
from tests.e2e.support import T, audio_frames, ids, media, new_room
from tests.support import token


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = T) -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while True:  # stats have no change event to wait on: poll them
            if await check():
                return
            await asyncio.sleep(0.02)


async def join(stack: AsyncExitStack, url: str, room: str, role: Role, **claims: Any) -> Client:
    """Connect a participant (closed with ``stack``): ``claims`` go in its token, but
    ``hello_name`` is the display name it types (sent in the hello)."""
    name = claims.pop("hello_name", None)
    client = await Client.connect(
        url, room=room, token=token(room, role, now=time.time(), **claims), name=name, timeout=T
    )
    stack.push_async_callback(client.close)
    return client


def expect_trickled(receiver: CallPeer, sender: CallPeer) -> None:
    """The description came without candidates, and each candidate came as a message of
    its own, exactly as sent, ending with end of candidates."""
    assert receiver.remote_sdp is not None
    assert "a=candidate:" not in receiver.remote_sdp
    assert "a=end-of-candidates" not in receiver.remote_sdp
    assert len(receiver.remote_candidates) >= 2
    assert receiver.remote_candidates[-1] is None
    assert receiver.remote_candidates == sender.sent_candidates


def expect_ice_uses_signalled(callee: CallPeer, caller: CallPeer) -> None:
    """The answering side's ICE agent knows the caller by the candidates that crossed the
    server, not by peer-reflexive guesses from incoming checks. (The caller may learn the
    callee's address from a check that overtakes the callee's candidates: not asserted.)"""
    ice = callee.pc.getTransceivers()[0].receiver.transport.transport
    known = {(c.type, c.ip, c.port) for c in ice.getRemoteCandidates()}
    sent = set()
    for candidate in caller.sent_candidates:
        if candidate is not None and candidate["sdpMLineIndex"] == 0:  # the bundled transport
            _, _, _, _, ip, port, _, kind = candidate["candidate"].split()[:8]
            sent.add((kind, ip, int(port)))
    assert known == sent


@pytest.mark.usefixtures("loopback_ice")
async def test_early_patient_waits_then_clinician_calls(server_url: str) -> None:
    room = new_room()
    async with AsyncExitStack() as stack:
        patient = await join(stack, server_url, room, Role.PATIENT, subject="pat-1", name="Pat")
        waiting = await patient.expect("waiting", timeout=T)
        assert waiting["reason"] == "host_not_started"
        assert waiting["position"] == 1
        assert waiting["can_ask"] is False

        host = await join(stack, server_url, room, Role.HOST, subject="dr-1", capacity=1)
        # The welcome carries the status; a `status` message follows only on change.
        assert host.welcome["call_status"] == "patient_waiting"
        waiting_list = await host.expect("waiting_list", timeout=T)
        assert ids(waiting_list["entries"]) == [patient.participant_id]
        assert waiting_list["entries"][0]["name"] == "Pat"
        assert waiting_list["entries"][0]["reason"] == "host_not_started"

        await host.start()
        host_in = await host.expect("admitted", timeout=T)
        admitted = await patient.expect("admitted", timeout=T)
        assert admitted["session_id"] == host_in["session_id"] is not None
        assert admitted["by"] is None  # let in by the start, not by an admit decision
        for client in (host, patient):
            status = await client.expect(
                "status", timeout=T, where=lambda m: m["call_status"] == "in_call"
            )
            assert status["call_status"] == "in_call"

        host_media = media(stack, "sine=frequency=660:sample_rate=48000")
        video = media(stack, "testsrc=size=160x120:rate=15")
        patient_media = media(stack, "sine=frequency=440:sample_rate=48000")
        caller = CallPeer(host, tracks=[host_media.audio, video.video], timeout=T)
        callee = CallPeer(patient, tracks=[patient_media.audio], timeout=T)
        stack.push_async_callback(caller.close)
        stack.push_async_callback(callee.close)

        accepting = asyncio.create_task(callee.accept())
        await caller.call(patient.participant_id)
        assert await accepting == host.participant_id
        await asyncio.gather(caller.connected(), callee.connected())
        assert caller.pc.connectionState == callee.pc.connectionState == "connected"
        expect_trickled(callee, caller)
        expect_trickled(caller, callee)
        expect_ice_uses_signalled(callee, caller)

        # Real audio both ways: decoded frames of a sine are not silence.
        for peer in (caller, callee):
            frames = await audio_frames(peer, 10)
            assert all(frame.sample_rate == 48000 and frame.samples > 0 for frame in frames)
            assert any(any(bytes(frame.planes[0])) for frame in frames)

        async def packets_flow() -> bool:
            got_caller = await caller.packets_received()
            got_callee = await callee.packets_received()
            return (
                got_caller.get("audio", 0) > 0
                and got_callee.get("audio", 0) > 0
                and got_callee.get("video", 0) > 0
            )

        await eventually(packets_flow)


async def test_group_call_with_guests_asking_to_join(server_url: str) -> None:
    room = new_room()
    async with AsyncExitStack() as stack:
        host = await join(stack, server_url, room, Role.HOST, subject="dr-1", capacity=2)
        await host.start()
        session = (await host.expect("admitted", timeout=T))["session_id"]

        # Booked patients who come after the start join at once.
        patients = [
            await join(stack, server_url, room, Role.PATIENT, subject=f"pat-{n}", name=f"P{n}")
            for n in (1, 2)
        ]
        for patient in patients:
            admitted = await patient.expect("admitted", timeout=T)
            assert admitted == {"type": "admitted", "session_id": session, "by": None}
        a, b = patients

        # At capacity, a guest with a general link waits and may ask.
        carol = await join(stack, server_url, room, Role.GUEST, hello_name="Carol")
        assert carol.welcome["name"] == "Carol"
        offered = await carol.expect("waiting", timeout=T)
        assert offered["reason"] == "at_capacity"
        assert offered["can_ask"] is True
        assert offered["position"] is None
        await carol.knock()
        queued = await carol.expect("waiting", timeout=T, where=lambda m: m["position"] == 1)
        assert queued["can_ask"] is False
        listed = await host.expect(
            "waiting_list", timeout=T, where=lambda m: ids(m["entries"]) == [carol.participant_id]
        )
        assert listed["entries"][0]["name"] == "Carol"
        assert listed["entries"][0]["reason"] == "at_capacity"

        dan = await join(stack, server_url, room, Role.GUEST, hello_name="Dan")
        assert (await dan.expect("waiting", timeout=T))["can_ask"] is True
        await dan.knock()
        both = [carol.participant_id, dan.participant_id]
        await host.expect("waiting_list", timeout=T, where=lambda m: ids(m["entries"]) == both)

        # Call set-up messages only pass between participants in the call.
        ref = await carol.offer(a.participant_id, "v=0\r\n")
        refused = await carol.expect("error", timeout=T, where=lambda m: m.get("ref") == ref)
        assert refused["code"] == "not_in_call"
        ref = await a.offer(carol.participant_id, "v=0\r\n")
        refused = await a.expect("error", timeout=T, where=lambda m: m.get("ref") == ref)
        assert refused["code"] == "peer_not_admitted"
        assert not [m for m in carol.pending() if m["type"] == "offer"]
        async with CallPeer(a, timeout=T) as peer:  # the rtc helper reports the refusal
            with pytest.raises(CallError) as refusal:
                await peer.call(carol.participant_id)
            assert refusal.value.code == "peer_not_admitted"
        assert not [m for m in carol.pending() if m["type"] in ("offer", "candidate")]

        await host.deny(carol.participant_id, "Sorry, this call is full")
        denied = await carol.expect("denied", timeout=T)
        assert denied["message"] == "Sorry, this call is full"
        assert await carol.closed(timeout=T) == 4403
        await host.expect(
            "waiting_list", timeout=T, where=lambda m: ids(m["entries"]) == [dan.participant_id]
        )

        await host.admit_all()
        admitted = await dan.expect("admitted", timeout=T)
        assert admitted == {"type": "admitted", "session_id": session, "by": host.participant_id}
        everyone = {host.participant_id, a.participant_id, b.participant_id, dan.participant_id}
        roster = await host.expect(
            "roster", timeout=T, where=lambda m: set(ids(m["participants"])) == everyone
        )
        assert len(roster["participants"]) == 4
        assert host.state["roster"] == roster
        await host.expect("waiting_list", timeout=T, where=lambda m: m["entries"] == [])

        # Now admitted, the guest and a patient exchange an offer, an answer and a
        # candidate through the server.
        await dan.offer(a.participant_id, "v=0\r\ns=offer\r\n")
        offer = await a.expect("offer", timeout=T)
        assert offer == {"type": "offer", "from": dan.participant_id, "sdp": "v=0\r\ns=offer\r\n"}
        await a.answer(dan.participant_id, "v=0\r\ns=answer\r\n")
        answer: Message = await dan.expect("answer", timeout=T)
        assert answer["from"] == a.participant_id
        assert answer["sdp"] == "v=0\r\ns=answer\r\n"
        candidate = {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"}
        await a.candidate(dan.participant_id, candidate)
        relayed = await dan.expect("candidate", timeout=T)
        assert relayed == {"type": "candidate", "from": a.participant_id, "candidate": candidate}
        for client in (host, a, b, dan):  # a may still hold the refusal of its end of
            # candidates to Carol: the CallPeer was closed before the reply came
            errors = [m for m in client.pending() if m["type"] == "error"]
            assert all(m["details"] == {"participant": carol.participant_id} for m in errors)


class CandidatesFirst(CallPeer):
    """A peer that sends its candidates before its description, as a trickling browser
    may: the other side must hold them until the description arrives."""

    async def _send_local(self, kind: str) -> None:
        assert self.peer_id is not None
        sdp, candidates = split_candidates(self.pc.localDescription.sdp)
        for candidate in [*candidates, None]:
            await self.client.candidate(self.peer_id, candidate)
            self.sent_candidates.append(candidate)
        send = self.client.offer if kind == "offer" else self.client.answer
        await send(self.peer_id, sdp)


@pytest.mark.usefixtures("loopback_ice")
async def test_candidates_before_the_description_are_held(
    server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    room = new_room()
    async with AsyncExitStack() as stack:
        host = await join(stack, server_url, room, Role.HOST, subject="dr-1")
        await host.start()
        patient = await join(stack, server_url, room, Role.PATIENT, subject="pat-1")
        await patient.expect("admitted", timeout=T)
        sine = media(stack, "sine=frequency=440:sample_rate=48000")
        caller = CandidatesFirst(host, tracks=[sine.audio], timeout=T)
        callee = CandidatesFirst(patient, timeout=T)
        stack.push_async_callback(caller.close)
        stack.push_async_callback(callee.close)

        accepting = asyncio.create_task(callee.accept())
        await caller.call(patient.participant_id)
        await accepting
        await asyncio.gather(caller.connected(), callee.connected())
        expect_trickled(callee, caller)
        expect_trickled(caller, callee)
        expect_ice_uses_signalled(callee, caller)
        assert await audio_frames(callee, 3)
    # aiortc drops a candidate added without a remote description, with this warning.
    assert "without remote description" not in caplog.text
