"""Self-booking across node processes on one real redis-server, on real time.

The race: 200 bookers at once, spread over three nodes, over HTTP on loopback, each trying to
hold one of the same four slots and to confirm it. Exactly one hold per slot, every other
booker is told SLOT_TAKEN, and afterwards no two confirmed appointments of the clinician
overlap. The expiry: with a two-second hold, an unconfirmed hold stops blocking its slot and
a node's sweeper marks it expired, with the event in its activity.

Every request has a timeout and each test a budget, both scaled by the wait factor.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from typing import Any

import httpx
from redis.asyncio import Redis

from signalling.api.keys import ApiKeys
from signalling.keys import spans_key
from tests.e2e.conftest import Nodes, ServerProcess
from tests.support import WAIT_FACTOR

BOOKERS = 200
SLOTS = 4
BUDGET = 120.0 * WAIT_FACTOR  # seconds for a whole test
REQUEST = 30.0 * WAIT_FACTOR  # seconds for one request (200 at once on two shared cores)
CLINICIAN = "dr-race"
EVERY_DAY = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def base(node: ServerProcess) -> str:
    return f"http://127.0.0.1:{node.port}/api/v1"


async def open_calendar(http: httpx.AsyncClient, node: ServerProcess, key: str) -> None:
    """Availability every day, all day, in 30-minute slots (UTC)."""
    for day in EVERY_DAY:
        window = {"day": day, "start_minute": 0, "end_minute": 1440, "time_zone": "UTC"}
        response = await http.post(
            f"{base(node)}/clinicians/{CLINICIAN}/availability/windows",
            json=window,
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 201, response.text


async def first_slots(http: httpx.AsyncClient, node: ServerProcess, count: int) -> list[str]:
    response = await http.get(f"{base(node)}/clinicians/{CLINICIAN}/slots")
    assert response.status_code == 200, response.text
    starts = [s["start_time"] for s in response.json()["data"]][:count]
    assert len(starts) == count
    return starts


async def test_two_hundred_bookers_on_three_nodes_get_one_hold_per_slot(
    nodes: Nodes, redis: Redis
) -> None:
    servers = nodes(3, VESTIBULE_LOG_LEVEL="warning")
    _, key = await ApiKeys(redis).create("race")
    limits = httpx.Limits(max_connections=BOOKERS, max_keepalive_connections=BOOKERS)
    async with asyncio.timeout(BUDGET), httpx.AsyncClient(timeout=REQUEST, limits=limits) as http:
        await open_calendar(http, servers[0], key)
        slots = await first_slots(http, servers[1], SLOTS)
        start = asyncio.Event()

        async def booker(i: int) -> tuple[str, str, Any]:
            """Hold slot i % SLOTS through node i % 3 and confirm it: (slot, outcome, data)."""
            node, slot = servers[i % len(servers)], slots[i % SLOTS]
            await start.wait()
            held = await http.post(
                f"{base(node)}/clinicians/{CLINICIAN}/holds", json={"start_time": slot}
            )
            body = held.json()
            if held.status_code != 201:
                assert held.status_code == 409, body
                return slot, body["error"]["code"], body["error"]
            confirm = {
                "hold_secret": body["data"]["hold_secret"],
                "attendee_name": f"Booker {i}",
                "attendee_email": f"booker{i}@example.org",
            }
            # Confirmed through another node than the one that held it.
            other = servers[(i + 1) % len(servers)]
            done = await http.post(
                f"{base(other)}/holds/{body['data']['id']}/confirm", json=confirm
            )
            assert done.status_code == 200, done.text
            return slot, "CONFIRMED", done.json()["data"]

        tasks = [asyncio.create_task(booker(i)) for i in range(BOOKERS)]
        await asyncio.sleep(0)  # every booker is waiting at the start line
        start.set()
        results = await asyncio.gather(*tasks)

        outcomes = Counter(outcome for _, outcome, _ in results)
        assert outcomes == {"CONFIRMED": SLOTS, "SLOT_TAKEN": BOOKERS - SLOTS}, outcomes
        winners = {slot: data for slot, outcome, data in results if outcome == "CONFIRMED"}
        assert sorted(winners) == sorted(slots)  # exactly one per slot
        for slot, outcome, error in results:
            if outcome == "SLOT_TAKEN":
                assert error["details"] == {"start_time": slot}
                assert "taken" in error["message"]

        # Afterwards, as the clinic sees it: four confirmed appointments, none overlapping.
        listed = await http.get(
            f"{base(servers[2])}/appointments",
            params={"clinician_id": CLINICIAN, "limit": "100"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert listed.status_code == 200, listed.text
        appointments = listed.json()["data"]
        confirmed = [a for a in appointments if a["status"] == "confirmed"]
        assert len(appointments) == len(confirmed) == SLOTS
        assert {a["id"] for a in confirmed} == {w["id"] for w in winners.values()}
        for a, b in itertools.combinations(confirmed, 2):
            assert a["end_time"] <= b["start_time"] or b["end_time"] <= a["start_time"], (a, b)
        assert all(a["video_link"] and a["booking_source"] == "booking_page" for a in confirmed)
        # The calendar holds exactly their spans.
        spans: Any = await redis.hgetall(spans_key(CLINICIAN))
        assert sorted(k.decode() for k in spans) == sorted(a["id"] for a in confirmed)


async def test_an_unconfirmed_hold_expires_on_real_time_and_its_slot_comes_back(
    nodes: Nodes, redis: Redis
) -> None:
    node_a, node_b = nodes(2, VESTIBULE_HOLD_SECONDS="2", VESTIBULE_HOLD_SWEEP="0.2")
    _, key = await ApiKeys(redis).create("expiry")
    auth = {"Authorization": f"Bearer {key}"}
    async with asyncio.timeout(BUDGET), httpx.AsyncClient(timeout=REQUEST) as http:
        await open_calendar(http, node_a, key)
        slot = (await first_slots(http, node_a, 1))[0]
        held = await http.post(
            f"{base(node_a)}/clinicians/{CLINICIAN}/holds", json={"start_time": slot}
        )
        assert held.status_code == 201, held.text
        hold = held.json()["data"]
        taken = await http.post(
            f"{base(node_b)}/clinicians/{CLINICIAN}/holds", json={"start_time": slot}
        )
        assert taken.status_code == 409
        assert slot not in await first_slots(http, node_b, 3)
        # Two seconds on: the slot is bookable again and a sweeper marks the hold expired.
        deadline = time.monotonic() + BUDGET / 2
        status = None
        while time.monotonic() < deadline:
            got = await http.get(f"{base(node_b)}/appointments/{hold['id']}", headers=auth)
            status = got.json()["data"]["status"]
            if status == "expired":
                break
            await asyncio.sleep(0.1)
        assert status == "expired"
        assert slot in await first_slots(http, node_b, 3)
        activity = await http.get(
            f"{base(node_a)}/appointments/{hold['id']}/activity", headers=auth
        )
        kinds = [(e["kind"], e["actor"]) for e in activity.json()["data"]]
        assert kinds == [("held", "patient"), ("expired", "system")]
        late = await http.post(
            f"{base(node_b)}/holds/{hold['id']}/confirm",
            json={
                "hold_secret": hold["hold_secret"],
                "attendee_name": "Late",
                "attendee_email": "late@example.org",
            },
        )
        assert late.status_code == 409
        assert late.json()["error"]["code"] == "HOLD_EXPIRED"
        again = await http.post(
            f"{base(node_b)}/clinicians/{CLINICIAN}/holds", json={"start_time": slot}
        )
        assert again.status_code == 201, again.text
