"""Event webhooks end to end: two node processes on one redis-server, the example receiver
(examples/webhook_receiver.py) on loopback, a whole visit, and a SIGKILL of a node mid-visit.
The receiver gets every event of the visit, each id once after dropping repeats, in order,
signed, and with no name, e-mail address, phone number or token in any of them."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from redis.asyncio import Redis

from examples.webhook_receiver import Receiver
from signalling.api.keys import ApiKeys
from signalling.client import Client
from tests.e2e.conftest import Nodes
from tests.support import SECRETS, WAIT_FACTOR

SECRET = "event-webhook-secret-for-tests"
WAIT = 30.0 * WAIT_FACTOR


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(SECRET)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def until(what: str, check: object) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def of(receiver: Receiver, appointment: str) -> list[str]:
    return [
        e["type"].removeprefix("com.vestibule.")
        for e in receiver.events
        if e.get("subject") == appointment
    ]


async def test_every_event_of_a_visit_arrives_once_in_order_across_a_node_kill(
    nodes: Nodes, receiver: Receiver, redis: Redis
) -> None:
    env = {
        "VESTIBULE_EVENTS_URL": receiver.url,
        "VESTIBULE_EVENTS_SECRET": SECRET,
        "VESTIBULE_EVENTS_CLAIM_IDLE": "2",
        "VESTIBULE_DELIVERY_TIMEOUT": "1",
        "VESTIBULE_DELIVERY_CLAIM_IDLE": "3",
        "VESTIBULE_EVENTS_BACKOFF": "0.2",
        "VESTIBULE_NODE_TIMEOUT": "1",
    }
    doomed, survivor = nodes(2, **env)
    _, key = await ApiKeys(redis).create("webhooks")
    start = datetime.now(UTC) + timedelta(minutes=2)
    booking = {
        "title": "Follow-up",
        "start_time": start.isoformat(),
        "end_time": (start + timedelta(minutes=30)).isoformat(),
        "clinician_profile_id": "cli_hooks",
        "patient_id": "pat_hooks",
        "is_remote": True,
        "attendee_name": "Sam Patel",
        "attendee_email": "sam@example.org",
    }
    SECRETS.name("Sam Patel")
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(headers=headers, timeout=10, trust_env=False) as http:
        made = await http.post(f"http://127.0.0.1:{doomed.port}/api/v1/appointments", json=booking)
        assert made.status_code == 201, made.text
        appointment = made.json()["data"]
        room = appointment["room_id"]
        patient_token = appointment["video_link"].split("#", 1)[1]
        host_token = appointment["meeting_url"].split("#", 1)[1]

        receiver.fail_next = 2  # the first deliveries fail: retried, in order
        patient = await Client.connect(survivor.url, room=room, token=patient_token)
        host = await Client.connect(doomed.url, room=room, token=host_token)
        await patient.expect("waiting")
        await host.start()
        await patient.expect("admitted")
        await until(
            "the call to be told", lambda: "patient.admitted" in of(receiver, appointment["id"])
        )

        doomed.crash()  # SIGKILL, mid-visit: its change notes and lease are left behind
        with pytest.raises(Exception):  # noqa: B017, PT011 -- the socket is gone
            await host.expect("nothing", timeout=5)
        back = await Client.connect(
            survivor.url, room=room, token=host_token, resume=host.resume_token
        )
        assert back.welcome["stage"] == "in_call"
        await back.end()
        await patient.expect("ended")
        await patient.leave()
        # The room saw the call: the projector completes the appointment by itself; the
        # clinic's system may get there first. Either way, one completed event.
        done = await http.post(
            f"http://127.0.0.1:{survivor.port}/api/v1/appointments/{appointment['id']}/complete"
        )
        assert done.status_code in (200, 409), done.text
        if done.status_code == 409:
            assert done.json()["error"]["details"]["current_status"] == "completed"
        for client in (back, host, patient):
            await client.close()

    expected = [
        "appointment.booked",
        "patient.waiting",
        "call.started",
        "patient.admitted",
        "call.ended",
        "patient.left",
        "appointment.completed",
    ]
    await until("every event", lambda: of(receiver, appointment["id"]) == expected)
    assert receiver.refused == 0
    ids = [e["id"] for e in receiver.events]
    assert len(ids) == len(set(ids))
    for event in receiver.events:
        assert event["specversion"] == "1.0"
        assert event["source"].endswith(f"/rooms/{room}")
        assert event["id"].startswith(f"{room}/")
        text = json.dumps(event)
        for secret in ("Sam Patel", "sam@example.org", patient_token, host_token, "pat_hooks"):
            assert secret not in text
    statuses = [e["data"] for e in receiver.events if e["type"].endswith("completed")]
    assert statuses == [
        {
            "appointment_id": appointment["id"],
            "status": "completed",
            "previous_status": "pending",
            "cancelled_by": None,
            "attendance_status": "attended",
        }
    ]
