"""``/console``: a clinician signs in with their own link and sees and acts on their own
appointments only, with the changes pushed as server-sent events; over real HTTP to a real
node and redis-server. Every JSON response is checked against the served document."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from rooms.roles import Role
from signalling.api.links import clinician_room_id
from signalling.api.schema import format_time
from tests.signalling.api.documented import Documented
from tests.signalling.conftest import Node, Serve
from tests.support import WAIT_FACTOR

Json = Any
HOUR = 3600.0
STREAM_WAIT = 10.0 * WAIT_FACTOR


def iso(seconds: float) -> str:
    text = format_time(seconds)
    assert text is not None
    return text


@dataclass
class Console:
    node: Node
    docs: Documented
    key: str

    async def book(
        self, clinician: str | None = "cli_1", start_in: float = 300.0, **fields: Any
    ) -> Json:
        """A video appointment (is_remote alone) with ``clinician``, booked with the API key."""
        start = self.node.clock.now + start_in
        body = {
            "title": "Follow-up",
            "start_time": iso(start),
            "end_time": iso(start + 1800),
            "is_remote": True,
            "patient_id": "pat_1",
            "attendee_name": "Sarah Johnson",
            "attendee_phone": "+44 7700 900123",
            "preferred_channel": "webhook",
        } | fields
        if clinician is not None:
            body["clinician_profile_id"] = clinician
        return await self.docs.data("POST", "/appointments", 201, json=body, headers=self.api_key)

    @property
    def api_key(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def sign_in(self, meeting_url: str, status: int = 201) -> Json:
        token = meeting_url.split("#", 1)[1]
        return await self.docs.call(
            "POST", "/console/sessions", status=status, json={"token": token}
        )

    async def session(self, clinician: str = "cli_1") -> dict[str, str]:
        """Authorization headers of a fresh session of ``clinician``."""
        booked = await self.book(clinician, title="Sign-in")
        signed = (await self.sign_in(booked["meeting_url"]))["data"]
        return {"Authorization": f"Bearer {signed['token']}"}


@pytest.fixture
async def console(serve: Serve) -> AsyncIterator[Console]:
    node = await serve(webhook_url="http://127.0.0.1:9/never", delivery_poll=0.05)
    async with httpx.AsyncClient(base_url=node.http, trust_env=False, timeout=10) as http:
        doc = (await http.get("/openapi.json")).json()
        yield Console(node, Documented(http, doc), await node.api_key())


async def test_a_clinician_link_signs_in_to_their_room_without_a_key(console: Console) -> None:
    booked = await console.book()
    signed = (await console.sign_in(booked["meeting_url"]))["data"]
    room = clinician_room_id("cli_1")
    assert signed["clinician_id"] == "cli_1"
    assert signed["room_id"] == room == booked["room_id"]
    assert signed["expires_at"] == iso(console.node.clock.now + 12 * HOUR)
    # The room token opens the clinician's room as its host, for no appointment (no window).
    host = await console.node.connect(room=room, token=signed["room_token"])
    assert host.welcome["role"] == "host"
    assert host.welcome["appointment_id"] is None
    # The same participant as the link itself: one console, whichever token opened it.
    again = await console.node.connect(room=room, token=booked["meeting_url"].split("#")[1])
    assert again.participant_id == host.participant_id


async def test_only_a_clinicians_own_link_signs_in(console: Console) -> None:
    booked = await console.book()
    patient = await console.sign_in(booked["video_link"], status=403)
    assert patient["error"]["code"] == "NOT_A_CLINICIAN_LINK"
    adhoc = await console.book(clinician=None)  # a room made for one consultation
    nobody = await console.sign_in(adhoc["meeting_url"], status=403)
    assert nobody["error"]["code"] == "NO_CLINICIAN"
    forged = await console.docs.call(
        "POST", "/console/sessions", status=403, json={"token": "v1.k.not.a-token"}
    )
    assert forged["error"]["details"] == {"reason": "invalid_token"}
    await console.docs.call(
        "POST", f"/appointments/{booked['id']}/cancel", status=200, headers=console.api_key
    )  # the cancellation revokes its links
    revoked = await console.sign_in(booked["meeting_url"], status=403)
    assert revoked["error"]["details"] == {"reason": "link_revoked"}


async def test_a_session_lists_and_acts_on_its_own_clinicians_appointments_only(
    console: Console,
) -> None:
    mine = await console.book()
    theirs = await console.book("cli_2")
    headers = await console.session()
    rows = await console.docs.data("GET", "/console/appointments", headers=headers)
    assert {r["id"] for r in rows} >= {mine["id"]}
    assert theirs["id"] not in {r["id"] for r in rows}
    row = next(r for r in rows if r["id"] == mine["id"])
    assert row["attendee_name"] == "Sarah Johnson"
    assert row["actions"] == ["send", "cancel", "complete"]  # no no-show: the window is open
    assert row["invitations"] == []
    # Another clinician's appointment does not exist for this session.
    for action in ("cancel", "complete", "no_show", "invitations", "activity"):
        method = "GET" if action == "activity" else "POST"
        body = {"cancellation_reason": "x"} if action == "cancel" else {}
        refused = await console.docs.call(
            method, f"/console/appointments/{theirs['id']}/{action}", status=404,
            headers=headers, **({} if method == "GET" else {"json": body}),
        )  # fmt: skip
        assert refused["error"]["code"] == "NOT_FOUND"
    assert (
        await console.docs.data("GET", f"/appointments/{theirs['id']}", headers=console.api_key)
    )["status"] == "pending"
    # A session is not an API key, and an API key is not a session.
    await console.docs.call("GET", "/appointments", status=401, headers=headers)
    await console.docs.call("GET", "/console/appointments", status=401, headers=console.api_key)


async def test_cancel_needs_a_reason_and_no_show_waits_for_the_window(console: Console) -> None:
    booked = await console.book()
    headers = await console.session()
    path = f"/console/appointments/{booked['id']}"
    for body in ({}, {"cancellation_reason": "   "}):
        refused = await console.docs.call(
            "POST", f"{path}/cancel", status=422, json=body, headers=headers
        )
        assert refused["error"]["details"]["field"] == "cancellation_reason"
    early = await console.docs.call("POST", f"{path}/no_show", status=409, json={}, headers=headers)
    assert early["error"]["code"] == "INVALID_STATE_TRANSITION"
    console.node.clock.advance(300 + 1800 + 3600 + 1)  # past the join window
    rows = await console.docs.data("GET", "/console/appointments", headers=headers)
    assert "no_show" in next(r for r in rows if r["id"] == booked["id"])["actions"]
    marked = await console.docs.call(
        "POST", f"{path}/no_show", status=200, json={}, headers=headers
    )
    assert marked["data"]["status"] == "no_show"
    assert marked["data"]["actions"] == []  # nothing can be done to a no-show any more

    other = await console.book(title="Second")
    done = await console.docs.data(
        "POST", f"/console/appointments/{other['id']}/complete", json={}, headers=headers
    )
    assert done["status"] == "completed"
    third = await console.book(title="Third")
    cancelled = await console.docs.data(
        "POST", f"/console/appointments/{third['id']}/cancel",
        json={"cancellation_reason": "Clinician unwell"}, headers=headers,
    )  # fmt: skip
    assert (cancelled["status"], cancelled["cancelled_by"]) == ("cancelled", "clinician")
    assert cancelled["cancellation_reason"] == "Clinician unwell"


async def test_send_to_patient_queues_an_invitation_the_list_then_shows(console: Console) -> None:
    booked = await console.book()
    headers = await console.session()
    sent = await console.docs.data(
        "POST", f"/console/appointments/{booked['id']}/invitations", 201, json={}, headers=headers
    )
    assert (sent["channel"], sent["to_hint"]) == ("webhook", "•••0123")
    rows = await console.docs.data("GET", "/console/appointments", headers=headers)
    row = next(r for r in rows if r["id"] == booked["id"])
    assert [i["id"] for i in row["invitations"]] == [sent["id"]]
    no_phone = await console.book(attendee_phone=None, title="No phone")
    rows = await console.docs.data("GET", "/console/appointments", headers=headers)
    assert "send" not in next(r for r in rows if r["id"] == no_phone["id"])["actions"]
    refused = await console.docs.call(
        "POST", f"/console/appointments/{no_phone['id']}/invitations", status=409, json={},
        headers=headers,
    )  # fmt: skip
    assert refused["error"]["code"] == "NO_RECIPIENT"


async def _events(
    http: httpx.AsyncClient, headers: dict[str, str], out: asyncio.Queue[Json]
) -> None:
    async with http.stream("GET", "/console/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                await out.put((kind, json.loads(line[6:])))


async def test_the_event_stream_pushes_appointment_and_call_changes(console: Console) -> None:
    booked = await console.book()
    headers = await console.session()
    events: asyncio.Queue[Json] = asyncio.Queue()
    async with httpx.AsyncClient(base_url=console.node.http, trust_env=False, timeout=60) as http:
        reader = asyncio.create_task(_events(http, headers, events))
        try:
            async with asyncio.timeout(STREAM_WAIT):
                assert await events.get() == ("ready", {})
            await console.docs.call(
                "PATCH", f"/appointments/{booked['id']}", status=200, json={"title": "Moved"},
                headers=console.api_key,
            )  # fmt: skip
            async with asyncio.timeout(STREAM_WAIT):
                assert await events.get() == ("changed", {"appointment_id": booked["id"]})
            # The patient arrives: the projector saves the room's projection, and says so.
            token = booked["video_link"].split("#", 1)[1]
            await console.node.connect(room=booked["room_id"], token=token)
            async with asyncio.timeout(STREAM_WAIT):
                while (change := await events.get()) != ("changed", {"room_id": booked["room_id"]}):
                    pass
            assert change[0] == "changed"
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    await console.docs.call("GET", "/console/events", status=401)
    assert Role.HOST.value == "host"
