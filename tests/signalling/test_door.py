"""The waiting room guards the door, over real WebSockets to a real node (PROTOCOL.md §8).

One clinician's persistent room serves two appointments back to back. The second
appointment's patient, early, waits while the first call runs: it is never named in that
call's rosters and receives none of its signalling; once the clinician ends the first call
and starts the second, it is told it may join (Join now) and enters. And a call whose
clinician has gone takes nobody in, and ends by itself once the absence lasts.

The node's clock is injected: grace periods and the absence limit pass when the test
moves it, and the sweeper (every 10 ms here) acts on the next round.
"""

from __future__ import annotations

from typing import Any

from rooms.roles import Role
from signalling.client import Client
from signalling.wire import Message
from tests.signalling.conftest import Node, Serve

ROOM = "rm_clinician"
JOIN_NOW = ("join_now",)


def booking(node: Node, appointment: str, start_in: float) -> dict[str, Any]:
    """The claims of a link for ``appointment``, 30 minutes long, starting ``start_in``
    seconds from now on the node's clock (within 10 minutes, its window is open)."""
    start = node.clock.now + start_in
    return {"appointment": appointment, "starts_at": start, "ends_at": start + 1800.0}


def roster_ids(message: Message) -> list[str]:
    return [p["participant_id"] for p in message["participants"]]


def rosters(client: Client) -> list[list[str]]:
    """Every roster the client has received and not yet taken, oldest first."""
    return [roster_ids(m) for m in client.pending() if m["type"] == "roster"]


async def round_trip(*clients: Client) -> None:
    """Each client's ping is answered: everything sent to it before has been read."""
    for client in clients:
        await client.ping()
        await client.expect("pong")


async def test_back_to_back_appointments_keep_each_patient_to_their_own_call(node: Node) -> None:
    # The clinician's own link for the room has no appointment: each call names its own.
    host = await node.connect(
        room=ROOM, token=node.token(ROOM, Role.HOST, subject="dr-lee", name="Dr Lee", capacity=1)
    )
    first = node.token(ROOM, Role.PATIENT, subject="sam", name="Sam", **booking(node, "apt_1", 60))
    second_claims = booking(node, "apt_2", 300)
    second = node.token(ROOM, Role.PATIENT, subject="kim", name="Kim", **second_claims)
    sam = await node.connect(room=ROOM, token=first, features=JOIN_NOW)
    entry = await host.expect("waiting_list", where=lambda m: len(m["entries"]) == 1)
    assert entry["entries"][0]["appointment_id"] == "apt_1"
    await host.start("apt_1")
    assert (await host.expect("admitted"))["session_id"] is not None
    ready = await sam.expect("waiting", where=lambda m: m["can_join"])
    assert ready == {
        "type": "waiting",
        "reason": "host_ready",
        "position": 1,
        "can_ask": False,
        "can_join": True,
        "expected_at": None,
    }
    await sam.join()
    await sam.expect("admitted")
    await host.expect("roster", where=lambda m: len(m["participants"]) == 2)

    # Appointment 2's patient arrives early, during appointment 1's call.
    kim = await node.connect(room=ROOM, token=second, features=JOIN_NOW)
    assert kim.welcome["stage"] == "waiting"
    busy = await kim.expect("waiting")
    assert busy == {
        "type": "waiting",
        "reason": "host_busy",
        "position": 1,
        "can_ask": False,
        "can_join": False,
        # After appointment 1, which began early and is expected to take its 30 minutes.
        "expected_at": -(-(node.clock.now + 60 + 1800) // 60) * 60,
    }
    listed = await host.expect(
        "waiting_list",
        where=lambda m: [e["participant_id"] for e in m["entries"]] == [kim.participant_id],
    )
    [entry] = listed["entries"]
    assert (entry["appointment_id"], entry["starts_at"], entry["reason"]) == (
        "apt_2",
        second_claims["starts_at"],
        "host_busy",
    )
    assert kim.welcome["call_status"] == "patient_waiting"  # its own appointment's status

    # Nothing of the first call reaches it, and it cannot reach the first call.
    ref = await sam.offer(kim.participant_id, "v=0\r\ns=to the wrong patient\r\n")
    assert (await sam.expect("error"))["code"] == "peer_not_admitted"
    ref = await host.candidate(kim.participant_id, None)
    error = await host.expect("error")
    assert (error["code"], error["ref"]) == ("peer_not_admitted", ref)
    await kim.offer(sam.participant_id, "v=0\r\n")
    assert (await kim.expect("error"))["code"] == "not_in_call"
    await kim.knock()  # asking does not get it in either
    assert (await kim.expect("error"))["code"] == "invalid_state"
    await round_trip(kim, sam, host)
    kinds = {m["type"] for m in kim.pending()}
    assert not kinds & {"roster", "offer", "answer", "candidate", "admitted"}, kim.pending()
    assert all(kim.participant_id not in ids for ids in rosters(sam) + rosters(host))

    # Back to back: end the first call, start the second from the same console.
    await host.end()
    assert (await sam.expect("ended"))["reason"] == "host_ended"
    await host.start("apt_2")
    ready = await kim.expect("waiting", where=lambda m: m["can_join"])
    assert ready["reason"] == "host_ready"
    # Sam, still connected, is not let into Kim's appointment.
    told = await sam.expect("waiting", where=lambda m: m["reason"] == "host_busy")
    assert told["can_join"] is False
    await kim.join()
    assert (await kim.expect("admitted"))["by"] is None
    in_call = await kim.expect("roster")
    assert sorted(roster_ids(in_call)) == sorted([host.participant_id, kim.participant_id])
    await sam.offer(kim.participant_id, "v=0\r\n")
    assert (await sam.expect("error"))["code"] == "not_in_call"
    await host.offer(kim.participant_id, "v=0\r\ns=the second consultation\r\n")
    assert (await kim.expect("offer"))["from"] == host.participant_id
    status = await kim.expect("status", where=lambda m: m["call_status"] == "in_call")
    assert status["call_status"] == "in_call"


async def test_start_names_only_appointments_the_room_knows(node: Node) -> None:
    host = await node.connect(
        room=ROOM, token=node.token(ROOM, Role.HOST, subject="dr-lee", **booking(node, "a1", 60))
    )
    ref = await host.start("apt_nobody_has")
    error = await host.expect("error")
    assert (error["code"], error["ref"]) == ("unknown_appointment", ref)
    assert error["details"] == {"appointment": "apt_nobody_has"}
    await host.start()  # its own link's appointment
    await host.expect("admitted")
    ref = await host.request("start", appointment="a2")
    error = await host.expect("error")
    assert (error["code"], error["ref"]) == ("call_in_progress", ref)
    assert error["details"] == {"appointment": "a2", "active": "a1"}


async def test_a_call_without_its_clinician_lets_nobody_in_and_ends_by_itself(
    serve: Serve,
) -> None:
    node = await serve(resume_grace=30.0, host_absence=120.0)
    claims = booking(node, "apt_1", 60)
    host = await node.connect(
        room=ROOM, token=node.token(ROOM, Role.HOST, subject="dr-lee", capacity=2, **claims)
    )
    sam = await node.connect(
        room=ROOM, token=node.token(ROOM, Role.PATIENT, subject="sam", **claims)
    )
    await host.start()
    await sam.expect("admitted")
    # The clinician's browser closes without ending the call.
    await host.close()
    roster = await sam.expect(
        "roster", where=lambda m: not all(p["connected"] for p in m["participants"])
    )
    assert {p["participant_id"]: p["connected"] for p in roster["participants"]} == {
        sam.participant_id: True,
        host.participant_id: False,  # "your clinician is reconnecting"
    }
    node.clock.advance(30.0)  # the grace passes: the clinician is gone
    await sam.expect("roster", where=lambda m: roster_ids(m) == [sam.participant_id])
    # A patient of the same appointment arriving now waits: nobody is hosting.
    ava = await node.connect(
        room=ROOM, token=node.token(ROOM, Role.PATIENT, subject="ava", **claims)
    )
    assert ava.welcome["stage"] == "waiting"
    assert (await ava.expect("waiting"))["reason"] == "host_away"
    await node.sweeps()
    await round_trip(ava)
    assert "admitted" not in {m["type"] for m in ava.pending()}
    # After the absence limit the call ends by itself, and Sam goes back to waiting.
    node.clock.advance(120.0)
    ended = await sam.expect("ended")
    assert ended["reason"] == "host_absent"
    back = await sam.expect("waiting", where=lambda m: m["position"] == 2)  # behind Ava
    assert back["reason"] == "host_not_started"
    assert (await ava.expect("waiting", where=lambda m: m["reason"] == "host_not_started"))[
        "position"
    ] == 1
    # The clinician comes back and starts again: both are let in.
    host = await node.connect(
        room=ROOM, token=node.token(ROOM, Role.HOST, subject="dr-lee", capacity=2, **claims)
    )
    await host.start()
    await sam.expect("admitted")
    await ava.expect("admitted")


async def test_a_call_ends_by_itself_when_its_join_window_closes(serve: Serve) -> None:
    node = await serve(window_closes_after=60.0)
    claims = booking(node, "apt_1", 0)
    host = await node.connect(
        room=ROOM, token=node.token(ROOM, Role.HOST, subject="dr-lee", **claims)
    )
    sam = await node.connect(
        room=ROOM, token=node.token(ROOM, Role.PATIENT, subject="sam", **claims)
    )
    await host.start()
    await sam.expect("admitted")
    node.clock.advance(1800.0 + 61.0)
    for client in (host, sam):
        assert (await client.expect("ended"))["reason"] == "window_closed"
    assert (await sam.expect("waiting", where=lambda m: m["position"] == 1))["reason"] == (
        "host_not_started"
    )
