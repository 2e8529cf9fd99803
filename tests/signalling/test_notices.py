"""The host's notice and the wait estimate over real WebSockets: a waiting patient sees the
clinician's "running late" message (kept for a reconnect, replaced by the next one), a
message to one patient reaches that patient alone, and the waiting message says when the
patient's appointment can be expected to start."""

from __future__ import annotations

from rooms.roles import Role
from tests.signalling.conftest import Node

MIN = 60.0


def up(seconds: float) -> float:
    return -(-seconds // MIN) * MIN


async def test_a_running_late_notice_reaches_the_waiting_room_and_stays(node: Node) -> None:
    room = "rm_notice"
    now = node.clock.now
    host = await node.connect(room=room, token=node.token(room, Role.HOST, subject="doc"))
    # Sam's 15 minutes began 10 minutes ago; Kim's follow them (both windows are open).
    first = node.token(
        room, Role.PATIENT, subject="sam", appointment="apt_1", starts_at=now - 600,
        ends_at=now + 300,
    )  # fmt: skip
    second = node.token(
        room, Role.PATIENT, subject="kim", appointment="apt_2", starts_at=now + 300,
        ends_at=now + 2100,
    )  # fmt: skip
    sam = await node.connect(room=room, token=first, features=("join_now",))
    kim = await node.connect(room=room, token=second, features=("join_now",))
    waiting = await kim.expect("waiting", where=lambda m: m["position"] == 2)
    assert waiting["expected_at"] == up(now + 900)  # after Sam's, begun now

    await host.notice("  Running\n10 minutes   late ")
    for patient in (sam, kim):
        told = await patient.expect("notice")
        assert (told["text"], told["personal"], told["at"]) == (
            "Running 10 minutes late", False, now,
        )  # fmt: skip
    assert (await host.expect("notice"))["text"] == "Running 10 minutes late"

    # A message to Sam alone; Kim still sees the one to everyone.
    await host.notice("Sam: please check your microphone", participant_id=sam.participant_id)
    personal = await sam.expect("notice")
    assert (personal["text"], personal["personal"]) == ("Sam: please check your microphone", True)
    # A reconnecting patient is told the notice again.
    await kim.close()
    again = await node.connect(
        room=room, token=second, features=("join_now",), resume=kim.resume_token
    )
    assert (await again.expect("notice"))["text"] == "Running 10 minutes late"

    # The clinician starts Sam's call 20 minutes late: Kim's is expected 20 minutes late.
    node.clock.advance(10 * MIN)
    await host.start("apt_1")
    await sam.join()
    await sam.expect("admitted")
    later = await again.expect("waiting", where=lambda m: m["expected_at"] == up(now + 1500))
    assert later["reason"] == "host_busy"
    # Taken back: those who saw it are told once.
    await host.notice("")
    cleared = await again.expect("notice")
    assert cleared == {"type": "notice", "text": None, "at": None, "personal": False}

    patient_tries = await again.notice("I'm here")
    refused = await again.expect("error")
    assert (refused["code"], refused["ref"]) == ("forbidden", patient_tries)
    await host.notice("x", participant_id="p_nobody")
    assert (await host.expect("error"))["code"] == "unknown_participant"
    await host.request("notice", text="y" * 201)
    assert (await host.expect("error"))["details"] == {"field": "text", "max_length": 200}
