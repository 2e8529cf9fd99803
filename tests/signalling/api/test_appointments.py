"""``/appointments`` over real HTTP to a real node and its real redis-server (seeds 004, 001,
000).

Every response a test reads through `Api.call` is checked against the OpenAPI document the
node serves: its status must be declared for the operation, and its body must match the
declared envelope and schema exactly. Every refused request is followed by a look at what
is stored: a refusal writes nothing. Time is the node's injected clock; the status
projector runs in the node, so tests that wait for it poll, bounded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgpack
import pytest
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import Response

from rooms.ids import RoomId
from signalling.api.envelope import Call
from signalling.api.errors import IdempotencyInProgress, IdempotencyKeyReused
from signalling.api.idempotency import Idempotency, fingerprint, storage_key
from signalling.api.keys import ApiKey, ApiKeys
from signalling.api.schema import format_time
from signalling.client import Client, ClientError
from signalling.keys import outcomes_key, windows_of
from signalling.projector import window_member
from tests.signalling.api.documented import Documented
from tests.signalling.conftest import Node

Json = Any
HOUR = 3600.0


async def window_score(redis: Any, member: str) -> Any:
    """When the projector settles the window ``member`` (room NUL appointment), if noted."""
    return await redis.zscore(windows_of(member.partition("\x00")[0]), member)


# --- the API client -------------------------------------------------------------------------


@dataclass
class Api:
    node: Node
    http: httpx.AsyncClient
    secret: str
    doc: Json

    @property
    def key_id(self) -> str:
        return self.secret.split("_")[1]

    async def call(
        self, method: str, path: str, *, status: int | None = None, **kwargs: Any
    ) -> Json:
        """Send a request, check the response against the document; return its body."""
        return await Documented(self.http, self.doc).call(method, path, status=status, **kwargs)

    async def create(self, **fields: Any) -> Json:
        body = await self.call("POST", "/appointments", json=booking(self.node, **fields))
        assert body["error"] is None, body
        return body["data"]

    async def get(self, appointment: str) -> Json:
        return (await self.call("GET", f"/appointments/{appointment}", status=200))["data"]

    async def stored(self) -> list[Json]:
        """Every appointment, as listed (to show that a refusal wrote nothing)."""
        body = await self.call("GET", "/appointments?limit=100", status=200)
        assert body["meta"]["has_more"] is False
        return list(body["data"])

    async def wait_for(self, appointment: str, **expected: Any) -> Json:
        """Poll until the appointment's fields have the expected values (bounded)."""
        data: Json = None
        for _ in range(500):
            data = await self.get(appointment)
            if all(data[k] == v for k, v in expected.items()):
                return data
            await asyncio.sleep(0.02)
        raise AssertionError(f"appointment never had {expected}: {data}")


def booking(node: Node, **fields: Any) -> dict[str, Any]:
    """A valid booking starting in an hour, for 30 minutes, with ``fields`` on top."""
    start = node.clock.now + HOUR
    return {
        "title": "Follow-up Consultation",
        "start_time": iso(start),
        "end_time": iso(start + 1800),
    } | fields


def iso(seconds: float) -> str:
    text = format_time(seconds)
    assert text is not None
    return text


def video(node: Node, start_in: float = 300.0, **fields: Any) -> dict[str, Any]:
    """A video booking starting ``start_in`` seconds from now (so its room is open)."""
    start = node.clock.now + start_in
    return {
        "start_time": iso(start),
        "end_time": iso(start + 1800),
        "is_remote": True,
        "remote_channel": "video",
        "patient_id": "pat_1",
        "clinician_profile_id": "cli_1",
        "attendee_name": "Sarah Johnson",
        "attendee_email": "sarah@example.com",
    } | fields


def idempotency_key(key_id: str, key: str, operation: str = "createAppointment") -> str:
    return storage_key(key_id, operation, key)


def link_parts(url: str) -> tuple[str, str]:
    """(room, token) of a join link ``<base>/join/<room>#<token>``."""
    parts = urlsplit(url)
    assert parts.path.startswith("/join/")
    assert parts.query == ""  # tokens never in query strings
    return parts.path.removeprefix("/join/"), parts.fragment


@pytest.fixture
async def api(node: Node) -> AsyncIterator[Api]:
    secret = await node.api_key()
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(base_url=node.http, headers=headers, timeout=10.0) as http:
        doc = (await http.get("/openapi.json")).json()
        yield Api(node, http, secret, doc)


# --- booking, reading, listing ---------------------------------------------------------------


async def test_create_returns_the_appointment_and_retrieve_finds_it(api: Api) -> None:
    now = api.node.clock.now
    body = await api.call("POST", "/appointments", json=booking(api.node), status=201)
    data = body["data"]
    assert data["id"].startswith("apt_")
    assert data["status"] == "pending"
    assert data["booking_source"] == "api"
    assert data["duration_minutes"] == 30
    assert data["start_time"] == iso(now + HOUR)
    assert data["created_at"] == data["updated_at"] == iso(now)
    assert data["is_remote"] is False
    assert data["capacity"] == 1
    assert data["video_link"] is data["meeting_url"] is data["call_status"] is None
    assert await api.get(data["id"]) == data
    assert [a["id"] for a in await api.stored()] == [data["id"]]


async def test_is_remote_alone_gives_a_video_room_and_both_links(api: Api) -> None:
    """Seed 004's own fields (is_remote, no remote_channel) book a video appointment."""
    body = video(api.node)
    del body["remote_channel"]
    data = await api.create(**body)
    assert data["remote_channel"] == "video"
    assert data["video_provider"] == "vestibule"
    assert data["room_id"] is not None
    assert link_parts(data["video_link"])[0] == data["room_id"]
    assert link_parts(data["meeting_url"])[0] == data["room_id"]
    phone = await api.create(**(body | {"remote_channel": "phone"}))
    assert phone["video_link"] is phone["meeting_url"] is phone["room_id"] is None


async def test_create_takes_every_optional_field(api: Api) -> None:
    fields = {
        "patient_id": "pat_9",
        "clinician_profile_id": "cli_9",
        "appointment_type_id": "type_1",
        "location_id": "loc_1",
        "episode_id": "ep_1",
        "description": "bring the letter",
        "status": "confirmed",
        "is_remote": True,
        "remote_channel": "phone",
        "capacity": 3,
        "attendee_name": "Sam",
        "attendee_email": "sam@example.org",
        "attendee_phone": "+44 20 7946 0000",
        "preferred_channel": "webhook",
    }
    data = await api.create(**fields)
    assert {k: data[k] for k in fields} == fields
    assert data["video_link"] is None  # a phone appointment has no room


@pytest.mark.parametrize("status", ["pending_approval", "pending", "confirmed", "scheduled"])
async def test_every_initial_status_may_be_booked(api: Api, status: str) -> None:
    assert (await api.create(status=status))["status"] == status


async def test_list_filters_sorts_and_pages(api: Api) -> None:
    now = api.node.clock.now
    day = 86400.0

    async def make(offset: float, **fields: Any) -> str:
        start = now + offset
        data = await api.create(start_time=iso(start), end_time=iso(start + 900), **fields)
        return str(data["id"])

    late = await make(3 * day, patient_id="p1", clinician_profile_id="c1", location_id="l1")
    early = await make(1 * day, patient_id="p1", clinician_profile_id="c2", status="confirmed")
    middle = await make(2 * day, patient_id="p2", clinician_profile_id="c1",
                        appointment_type_id="t1")  # fmt: skip
    cancelled = await make(4 * day, patient_id="p2")
    await api.call("POST", f"/appointments/{cancelled}/cancel", status=200)

    async def ids(query: str) -> list[str]:
        body = await api.call("GET", f"/appointments?{query}", status=200)
        return [a["id"] for a in body["data"]]

    assert await ids("") == [early, middle, late, cancelled]
    assert await ids("patient_id=p1") == [early, late]
    assert await ids("clinician_id=c1") == [middle, late]
    assert await ids("clinician_id=c1&patient_id=p1") == [late]
    assert await ids("status=confirmed") == [early]
    assert await ids("status_in=pending,cancelled") == [middle, late, cancelled]
    assert await ids("status_in=pending&status=cancelled") == []
    assert await ids("appointment_type_id=t1") == [middle]
    assert await ids("location_id=l1") == [late]
    assert await ids("location_id=nowhere") == []
    assert await ids(f"date_gte={iso(now + 2 * day)}") == [middle, late, cancelled]
    assert await ids(f"date_lte={iso(now + 2 * day)}") == [early, middle]
    assert await ids(f"date_gte={iso(now + 2 * day)}&date_lte={iso(now + 3 * day)}") == [
        middle,
        late,
    ]
    # A date alone: from its midnight (gte), through the whole day (lte), UTC.
    second_day = iso(now + 2 * day)[:10]
    assert await ids(f"date_gte={second_day}&date_lte={second_day}") == [middle]

    first = await api.call("GET", "/appointments?limit=2", status=200)
    assert [a["id"] for a in first["data"]] == [early, middle]
    assert first["meta"]["has_more"] is True
    assert first["meta"]["next_offset"] == 2
    assert first["meta"]["limit"] == 2
    last = await api.call("GET", "/appointments?limit=2&offset=2", status=200)
    assert [a["id"] for a in last["data"]] == [late, cancelled]
    assert last["meta"]["has_more"] is False
    assert last["meta"]["next_offset"] is None
    beyond = await api.call("GET", "/appointments?offset=10", status=200)
    assert beyond["data"] == []
    assert beyond["meta"]["has_more"] is False
    # Paging with a filter that the index alone cannot answer.
    page = await api.call("GET", "/appointments?status=pending&limit=1&offset=1", status=200)
    assert [a["id"] for a in page["data"]] == [late]
    assert page["meta"]["has_more"] is False
    filtered = await api.call("GET", "/appointments?status=pending&limit=1", status=200)
    assert filtered["meta"]["has_more"] is True


async def test_list_defaults_to_twenty(api: Api) -> None:
    for _ in range(21):
        await api.create()
    body = await api.call("GET", "/appointments", status=200)
    assert len(body["data"]) == 20
    assert body["meta"]["has_more"] is True
    assert body["meta"]["next_offset"] == 20
    starts = [a["start_time"] for a in body["data"]]
    assert starts == sorted(starts)


# --- updates --------------------------------------------------------------------------------


async def test_update_changes_fields_but_not_the_status(api: Api) -> None:
    data = await api.create(status="confirmed")
    api.node.clock.advance(60)
    patch = {"title": "Review", "attendee_email": "sarah.updated@example.com", "capacity": 2}
    body = await api.call("PATCH", f"/appointments/{data['id']}", json=patch, status=200)
    updated = body["data"]
    assert {k: updated[k] for k in patch} == patch
    assert updated["status"] == "confirmed"
    assert updated["updated_at"] == iso(api.node.clock.now)
    assert updated["created_at"] == data["created_at"]
    assert await api.get(data["id"]) == updated


async def test_update_refuses_the_status_naming_the_actions(api: Api) -> None:
    data = await api.create()
    body = await api.call(
        "PATCH", f"/appointments/{data['id']}", json={"status": "cancelled"}, status=422
    )
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert body["error"]["details"] == {"field": "status", "problem": "read_only"}
    assert "/cancel" in body["error"]["message"]
    assert "/no_show" in body["error"]["message"]
    assert await api.get(data["id"]) == data


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"end_time": "2000-01-01T00:00:00Z"}, "end_time"),
        ({"title": None}, "title"),
        ({"title": 5}, "title"),
        ({"capacity": 0}, "capacity"),
        ({"video_link": "https://elsewhere"}, "video_link"),
        ({"id": "apt_other"}, "id"),
        ({"remote_channel": "video"}, "remote_channel"),  # not remote
        ({"attendee_email": "not an email"}, "attendee_email"),
    ],
)
async def test_update_refuses_bad_fields_and_changes_nothing(
    api: Api, patch: dict[str, Any], field: str
) -> None:
    data = await api.create()
    body = await api.call("PATCH", f"/appointments/{data['id']}", json=patch, status=422)
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert body["error"]["details"]["field"] == field
    assert await api.get(data["id"]) == data


async def test_a_closed_appointment_cannot_be_rescheduled(api: Api) -> None:
    data = await api.create()
    await api.call("POST", f"/appointments/{data['id']}/cancel", status=200)
    later = booking(api.node, title="x")
    patch = {"start_time": iso(api.node.clock.now + 9 * HOUR), "end_time": later["end_time"]}
    body = await api.call("PATCH", f"/appointments/{data['id']}", json=patch, status=409)
    assert body["error"]["details"] == {
        "current_status": "cancelled",
        "attempted_action": "reschedule",
    }


# --- actions --------------------------------------------------------------------------------


async def test_cancel_records_the_reason_and_who_did_it(api: Api) -> None:
    data = await api.create(status="confirmed")
    api.node.clock.advance(30)
    body = await api.call(
        "POST",
        f"/appointments/{data['id']}/cancel",
        json={"cancellation_reason": "Patient request"},
        status=200,
    )
    assert body["data"]["status"] == "cancelled"
    assert body["data"]["cancellation_reason"] == "Patient request"
    assert body["meta"]["action"] == "cancelled"
    assert body["meta"]["performed_at"] == iso(api.node.clock.now)
    assert body["meta"]["performed_by"] == api.key_id
    assert (await api.get(data["id"]))["status"] == "cancelled"


async def test_cancel_needs_no_body(api: Api) -> None:
    data = await api.create()
    body = await api.call("POST", f"/appointments/{data['id']}/cancel", status=200)
    assert body["data"]["cancellation_reason"] is None


async def test_cancel_after_completion_is_an_invalid_transition(api: Api) -> None:
    data = await api.create()
    done = await api.call("POST", f"/appointments/{data['id']}/complete", status=200)
    assert done["data"]["status"] == "completed"
    assert done["data"]["attendance_status"] == "attended"
    assert done["meta"]["action"] == "completed"
    body = await api.call("POST", f"/appointments/{data['id']}/cancel", json={}, status=409)
    assert body["data"] is None
    assert body["error"]["code"] == "INVALID_STATE_TRANSITION"
    assert body["error"]["details"] == {"current_status": "completed", "attempted_action": "cancel"}
    assert (await api.get(data["id"]))["status"] == "completed"


@pytest.mark.parametrize("action", ["cancel", "complete", "no_show"])
async def test_no_action_reopens_a_cancelled_appointment(api: Api, action: str) -> None:
    data = await api.create()
    await api.call("POST", f"/appointments/{data['id']}/cancel", status=200)
    api.node.clock.advance(3 * HOUR)  # the join window is over, for no_show
    body = await api.call("POST", f"/appointments/{data['id']}/{action}", status=409)
    assert body["error"]["details"] == {"current_status": "cancelled", "attempted_action": action}


async def test_no_show_only_once_the_join_window_has_closed(api: Api) -> None:
    data = await api.create(status="scheduled")  # 1 h from now, 30 min, window +60 min
    closes = api.node.clock.now + HOUR + 1800 + 3600
    body = await api.call("POST", f"/appointments/{data['id']}/no_show", status=409)
    assert body["error"]["code"] == "INVALID_STATE_TRANSITION"
    assert body["error"]["details"] == {
        "current_status": "scheduled",
        "attempted_action": "no_show",
        "closes_at": iso(closes),
    }
    api.node.clock.now = closes  # the window's last second: still open
    await api.call("POST", f"/appointments/{data['id']}/no_show", status=409)
    api.node.clock.advance(1)
    body = await api.call("POST", f"/appointments/{data['id']}/no_show", status=200)
    assert body["data"]["status"] == "no_show"
    assert body["data"]["attendance_status"] == "no_show"
    assert body["meta"]["action"] == "no_show"
    assert body["meta"]["performed_by"] == api.key_id


@pytest.mark.parametrize("action", ["complete", "no_show"])
async def test_actions_other_than_cancel_take_no_fields(api: Api, action: str) -> None:
    data = await api.create()
    api.node.clock.advance(3 * HOUR)
    body = await api.call(
        "POST", f"/appointments/{data['id']}/{action}", json={"reason": "x"}, status=422
    )
    assert body["error"]["details"] == {"field": "reason", "problem": "unknown"}
    assert await api.get(data["id"]) == data


async def test_racing_actions_change_an_appointment_once(api: Api) -> None:
    data = await api.create()
    api.node.clock.advance(3 * HOUR)
    responses = await asyncio.gather(
        *(
            api.http.post(f"/appointments/{data['id']}/{action}")
            for action in ["cancel", "complete", "no_show"] * 3
        )
    )
    winners = [r.json()["data"] for r in responses if r.status_code == 200]
    assert len(winners) == 1
    assert {r.status_code for r in responses} == {200, 409}
    assert (await api.get(data["id"]))["status"] == winners[0]["status"]


# --- bad input: a stable code, and nothing written ----------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"colour": "red"}, "colour", "unknown"),
        ({"status_reason": None}, "status_reason", "unknown"),
        ({"title": None}, "title", "null"),
        ({"title": 42}, "title", "type"),
        ({"title": "x" * 201}, "title", "too_long"),
        ({"title": "   "}, "title", "blank"),
        ({"is_remote": "yes"}, "is_remote", "type"),
        ({"capacity": 0}, "capacity", "range"),
        ({"capacity": 51}, "capacity", "range"),
        ({"capacity": "2"}, "capacity", "type"),
        ({"capacity": 1.5}, "capacity", "type"),
        ({"start_time": "tomorrow"}, "start_time", "format"),
        ({"start_time": "2030-01-01T10:00:00"}, "start_time", "format"),
        ({"start_time": 1893492000}, "start_time", "type"),
        ({"end_time": "2000-01-01T00:00:00Z"}, "end_time", "before_start"),
        ({"status": "cancelled"}, "status", "enum"),
        ({"status": "bogus"}, "status", "enum"),
        ({"remote_channel": "fax", "is_remote": True}, "remote_channel", "enum"),
        ({"remote_channel": "video"}, "remote_channel", "not_remote"),
        ({"preferred_channel": "pigeon"}, "preferred_channel", "enum"),
        ({"attendee_email": "sarah"}, "attendee_email", "format"),
        ({"patient_id": "p" * 201}, "patient_id", "too_long"),
    ],
)
async def test_create_refuses_bad_fields_and_writes_nothing(
    api: Api, change: dict[str, Any], field: str, problem: str
) -> None:
    body = await api.call("POST", "/appointments", json=booking(api.node, **change), status=422)
    assert body["data"] is None
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert body["error"]["details"] == {"field": field, "problem": problem}
    assert await api.stored() == []


@pytest.mark.parametrize("missing", ["title", "start_time", "end_time"])
async def test_create_needs_title_and_times(api: Api, missing: str) -> None:
    fields = booking(api.node)
    del fields[missing]
    body = await api.call("POST", "/appointments", json=fields, status=422)
    assert body["error"]["details"] == {"field": missing, "problem": "required"}
    assert await api.stored() == []


async def test_create_end_at_the_start_is_refused(api: Api) -> None:
    fields = booking(api.node)
    fields["end_time"] = fields["start_time"]
    body = await api.call("POST", "/appointments", json=fields, status=422)
    assert body["error"]["details"] == {"field": "end_time", "problem": "before_start"}
    assert await api.stored() == []


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"{not json", 400, "INVALID_JSON"),
        (b"[1, 2]", 422, "VALIDATION_ERROR"),
        (b'"title"', 422, "VALIDATION_ERROR"),
        (b"", 422, "VALIDATION_ERROR"),  # an empty body lacks the title
    ],
)
async def test_create_refuses_a_body_that_is_not_an_object(
    api: Api, content: bytes, status: int, code: str
) -> None:
    body = await api.call(
        "POST",
        "/appointments",
        content=content,
        headers={"Content-Type": "application/json"},
        status=status,
    )
    assert body["error"]["code"] == code
    assert await api.stored() == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("status=bogus", "status"),
        ("status_in=pending,bogus", "status_in"),
        ("status_in=", "status_in"),
        ("date_gte=yesterday", "date_gte"),
        ("date_lte=2030-01-01T10:00:00", "date_lte"),
        ("sort=desc", "sort"),
    ],
)
async def test_list_refuses_bad_parameters(api: Api, query: str, field: str) -> None:
    await api.create()
    body = await api.call("GET", f"/appointments?{query}", status=422)
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert body["error"]["details"]["field"] == field


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("PATCH", ""),
        ("POST", "/cancel"),
        ("POST", "/complete"),
        ("POST", "/no_show"),
        ("GET", "/activity"),
    ],
)
async def test_unknown_ids_are_not_found(api: Api, method: str, suffix: str) -> None:
    await api.create()
    before = await api.stored()
    kwargs: dict[str, Any] = {"json": {"title": "x"}} if method == "PATCH" else {}
    for appointment in ("apt_nope", "x" * 300):
        body = await api.call(method, f"/appointments/{appointment}{suffix}", status=404, **kwargs)
        assert body["error"]["code"] == "NOT_FOUND"
    assert await api.stored() == before


@pytest.mark.parametrize(
    "authorization", [None, "Basic abc", "Bearer", "Bearer vk_nope_nope", "vk_x_y"]
)
async def test_requests_without_a_valid_key_are_refused(
    api: Api, authorization: str | None
) -> None:
    data = await api.create()
    headers = {} if authorization is None else {"Authorization": authorization}
    async with httpx.AsyncClient(base_url=api.node.http, headers=headers) as anonymous:
        for method, path in [
            ("POST", "/appointments"),
            ("GET", "/appointments"),
            ("GET", f"/appointments/{data['id']}"),
            ("PATCH", f"/appointments/{data['id']}"),
            ("POST", f"/appointments/{data['id']}/cancel"),
            ("GET", f"/appointments/{data['id']}/activity"),
        ]:
            response = await anonymous.request(method, path, json=booking(api.node))
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "UNAUTHORIZED"
    assert await api.stored() == [data]


async def test_a_revoked_key_is_refused(api: Api) -> None:
    secret = await api.node.api_key("leaver")
    await ApiKeys(api.node.redis).revoke(secret.split("_")[1])
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(base_url=api.node.http, headers=headers) as revoked:
        response = await revoked.post("/appointments", json=booking(api.node))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"
    assert await api.stored() == []


# --- idempotency ----------------------------------------------------------------------------


async def test_a_replayed_create_returns_the_first_response(api: Api) -> None:
    fields = booking(api.node)
    headers = {"Idempotency-Key": "550e8400-e29b-41d4-a716-446655440000"}
    first = await api.http.post("/appointments", json=fields, headers=headers)
    api.node.clock.advance(5)
    # The same body, its keys in another order and spaced otherwise, is the same request.
    again = await api.http.post(
        "/appointments",
        content=json.dumps(dict(reversed(fields.items())), indent=2),
        headers=headers | {"Content-Type": "application/json"},
    )
    assert first.status_code == again.status_code == 201
    one, two = first.json(), again.json()
    assert two["data"] == one["data"]
    assert two["meta"]["request_id"] != one["meta"]["request_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert [a["id"] for a in await api.stored()] == [one["data"]["id"]]


async def test_a_key_reused_with_another_body_is_refused(api: Api) -> None:
    headers = {"Idempotency-Key": "k1"}
    await api.call("POST", "/appointments", json=booking(api.node), headers=headers, status=201)
    before = await api.stored()
    other = booking(api.node, title="Another")
    body = await api.call("POST", "/appointments", json=other, headers=headers, status=422)
    assert body["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await api.stored() == before


async def test_a_refused_request_does_not_use_up_its_key(api: Api) -> None:
    headers = {"Idempotency-Key": "k2"}
    bad = booking(api.node, capacity=0)
    await api.call("POST", "/appointments", json=bad, headers=headers, status=422)
    await api.call("POST", "/appointments", json=booking(api.node), headers=headers, status=201)
    assert len(await api.stored()) == 1


async def test_idempotency_keys_belong_to_one_api_key(api: Api) -> None:
    headers = {"Idempotency-Key": "shared"}
    fields = booking(api.node)
    mine = await api.call("POST", "/appointments", json=fields, headers=headers, status=201)
    other_secret = await api.node.api_key("other clinic system")
    auth = {"Authorization": f"Bearer {other_secret}"} | headers
    theirs = (await api.http.post("/appointments", json=fields, headers=auth)).json()
    assert theirs["data"]["id"] != mine["data"]["id"]
    assert len(await api.stored()) == 2


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
async def test_a_malformed_idempotency_key_is_refused(api: Api, key: str) -> None:
    headers = {"Idempotency-Key": key.encode("latin-1")}
    body = await api.call(
        "POST", "/appointments", json=booking(api.node), headers=headers, status=422
    )
    assert body["error"]["details"]["field"] == "Idempotency-Key"
    assert await api.stored() == []


async def test_a_duplicate_waits_out_a_claim_its_holder_abandoned(api: Api) -> None:
    # A node that died mid-request leaves a pending claim; it lapses and a retry proceeds.
    fields = booking(api.node)
    await api.node.redis.set(
        idempotency_key(api.key_id, "abandoned"),
        msgpack.packb(["pending", fingerprint(fields), "gone"]),
        px=200,
    )
    headers = {"Idempotency-Key": "abandoned"}
    await api.call("POST", "/appointments", json=fields, headers=headers, status=201)
    assert len(await api.stored()) == 1


async def test_concurrent_duplicates_create_one_appointment(api: Api) -> None:
    fields = booking(api.node)
    headers = {"Idempotency-Key": "burst"}
    responses = await asyncio.gather(
        *(api.http.post("/appointments", json=fields, headers=headers) for _ in range(10))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["data"]["id"] for r in responses}) == 1
    assert len({r.json()["meta"]["request_id"] for r in responses}) == 10
    assert len(await api.stored()) == 1


async def test_a_duplicate_gives_up_waiting_for_a_request_still_running(redis: Redis) -> None:
    idempotency = Idempotency(redis, wait=0.1)
    call = Call(Request({"type": "http", "headers": []}), "req_1", ApiKey("k1", "test", 0.0))
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> Response:
        started.set()
        await release.wait()
        return call.ok({"n": 1}, status=201)

    first = asyncio.create_task(idempotency.run(call, "op", "key", {"a": 1}, slow))
    await started.wait()
    with pytest.raises(IdempotencyInProgress):
        await idempotency.run(call, "op", "key", {"a": 1}, slow)
    with pytest.raises(IdempotencyKeyReused):
        await idempotency.run(call, "op", "key", {"a": 2}, slow)
    release.set()
    assert (await first).status_code == 201
    replayed = await idempotency.run(call, "op", "key", {"a": 1}, slow)
    assert replayed.status_code == 201
    assert json.loads(bytes(replayed.body))["data"] == {"n": 1}


async def test_a_failed_request_releases_its_idempotency_key(redis: Redis) -> None:
    idempotency = Idempotency(redis, wait=0.1)
    call = Call(Request({"type": "http", "headers": []}), "req_1", ApiKey("k1", "test", 0.0))

    async def broken() -> Response:
        raise RuntimeError("boom")

    async def refused() -> Response:
        return call.ok(None, status=409)

    async def works() -> Response:
        return call.ok({"ok": True}, status=201)

    with pytest.raises(RuntimeError):
        await idempotency.run(call, "op", "key", {}, broken)
    assert (await idempotency.run(call, "op", "key", {}, refused)).status_code == 409
    assert (await idempotency.run(call, "op", "key", {}, works)).status_code == 201
    assert await redis.ttl(idempotency_key("k1", "key", "op")) > 23 * 3600


# --- video: the room, its links and what happened in it -------------------------------------


async def test_a_video_appointment_gets_the_clinicians_room_and_two_links(api: Api) -> None:
    data = await api.create(**video(api.node, title="Video", capacity=2))
    assert data["video_provider"] == "vestibule"
    assert data["call_status"] == "ready"
    patient_room, patient_token = link_parts(data["video_link"])
    host_room, host_token = link_parts(data["meeting_url"])
    assert patient_room == host_room == data["room_id"]
    assert patient_token != host_token
    # The same persistent room for every appointment of the clinician; a fresh one without.
    second = await api.create(**video(api.node, title="Later", start_in=5 * HOUR))
    assert second["room_id"] == data["room_id"]
    other = await api.create(**video(api.node, title="Other", clinician_profile_id="cli_2"))
    assert other["room_id"] != data["room_id"]
    alone = await api.create(**video(api.node, title="Ad hoc", clinician_profile_id=None))
    assert alone["room_id"] not in (data["room_id"], other["room_id"])
    assert alone["video_link"] is not None
    member = window_member(data["room_id"], data["id"])
    closes = api.node.clock.now + 300 + 1800 + 3600
    assert await window_score(api.node.redis, member) == closes


async def test_an_appointment_is_joined_end_to_end(api: Api) -> None:
    node = api.node
    data = await api.create(**video(node, title="Video"))
    room, patient_token = link_parts(data["video_link"])
    _, host_token = link_parts(data["meeting_url"])

    patient = await node.connect(room=room, token=patient_token)
    assert patient.welcome["stage"] == "waiting"
    assert patient.welcome["name"] == "Sarah Johnson"
    await api.wait_for(data["id"], call_status="patient_waiting")

    host = await node.connect(room=room, token=host_token)
    await host.start()
    admitted = await patient.expect("admitted")
    assert admitted["session_id"] is not None
    await api.wait_for(data["id"], call_status="in_call")

    # The call is at its booked capacity: a guest with a general link for this appointment
    # must ask to join, and the clinician admits them.
    general = await api.http.post(
        f"/rooms/{room}/links", json={"kind": "general", "appointment_id": data["id"]}
    )
    assert general.status_code == 201, general.text
    guest_room, guest_token = link_parts(general.json()["data"]["url"])
    assert guest_room == room
    guest = await node.connect(room=room, token=guest_token, name="Gale Guest")
    asking = await guest.expect("waiting")
    assert asking["reason"] == "at_capacity"
    assert asking["can_ask"] is True
    await guest.knock()
    await host.expect(
        "waiting_list",
        where=lambda m: [e["participant_id"] for e in m["entries"]] == [guest.participant_id],
    )
    await host.admit(guest.participant_id)
    let_in = await guest.expect("admitted")
    assert let_in["by"] == host.participant_id

    await host.end()
    await patient.expect("ended")
    await guest.expect("ended")
    done = await api.wait_for(data["id"], status="completed")
    assert done["attendance_status"] == "attended"
    await patient.leave()
    await guest.leave()
    await api.wait_for(data["id"], call_status="ended")

    body = await api.call("GET", f"/appointments/{data['id']}/activity", status=200)
    assert body["meta"]["room_id"] == room
    kinds = [e["kind"] for e in body["data"]]
    for kind in [
        "arrived",
        "knocked",
        "session_started",
        "clinician_entered",
        "patient_entered",
        "patient_exited",
        "clinician_exited",
        "session_ended",
    ]:
        assert kind in kinds, kinds
    assert (
        kinds.index("knocked") < kinds.index("clinician_entered") < kinds.index("patient_entered")
    )
    roles = {e["participant_id"]: e["role"] for e in body["data"] if e["participant_id"]}
    assert roles == {
        patient.participant_id: "patient",
        host.participant_id: "host",
        guest.participant_id: "guest",
    }
    admission = next(e for e in body["data"] if e["kind"] == "admitted")
    assert admission["participant_id"] == guest.participant_id
    assert admission["actor_id"] == host.participant_id
    knocked = next(e for e in body["data"] if e["kind"] == "knocked")
    assert knocked["actor_id"] == patient.participant_id
    assert knocked["at"] == iso(node.clock.now)
    text = json.dumps(body)
    for private in ("Sarah", "sarah@example.com", "pat_1", "cli_1", "Gale"):
        assert private not in text


async def test_activity_keeps_to_each_appointments_own_people_and_calls(api: Api) -> None:
    """Two back-to-back appointments in the clinician's room: each one's activity shows
    its own patient and its own call, never the other's; a console reload within the grace
    period adds nothing."""
    node = api.node
    first = await api.create(**video(node, title="First"))
    second = await api.create(
        **video(node, title="Second", start_in=600.0, patient_id="pat_2", attendee_name="Kim")
    )
    room, host_token = link_parts(first["meeting_url"])
    assert link_parts(second["video_link"])[0] == room  # one persistent room
    patient_1 = await node.connect(room=room, token=link_parts(first["video_link"])[1])
    host = await node.connect(room=room, token=host_token)
    await host.start()
    await patient_1.expect("admitted")
    patient_2 = await node.connect(room=room, token=link_parts(second["video_link"])[1])
    assert (await patient_2.expect("waiting"))["reason"] == "host_busy"
    # The console is reloaded: the clinician comes back within its grace period.
    await host.close()
    host = await node.connect(room=room, token=host_token, resume=host.resume_token)
    assert host.welcome["resumed"] is True
    await host.end()
    await patient_1.expect("ended")
    await host.start(second["id"])
    await patient_2.expect("admitted")
    await host.end()

    def timeline(body: dict[str, Any]) -> list[tuple[str, str | None]]:
        return [(e["kind"], e["participant_id"]) for e in body["data"]]

    mine = timeline(await api.call("GET", f"/appointments/{first['id']}/activity", status=200))
    theirs = timeline(await api.call("GET", f"/appointments/{second['id']}/activity", status=200))
    h, p1, p2 = host.participant_id, patient_1.participant_id, patient_2.participant_id
    assert mine == [
        ("arrived", p1),
        ("knocked", p1),
        ("session_started", None),
        ("clinician_entered", h),
        ("patient_entered", p1),
        ("patient_exited", p1),  # in the order they came to the room: p1 was first
        ("clinician_exited", h),
        ("session_ended", None),
    ]
    assert theirs == [
        ("arrived", p2),
        ("knocked", p2),
        ("session_started", None),
        ("clinician_entered", h),
        ("patient_entered", p2),
        ("clinician_exited", h),
        ("patient_exited", p2),
        ("session_ended", None),
    ]
    phone = await api.create(is_remote=True, remote_channel="phone")
    none = await api.call("GET", f"/appointments/{phone['id']}/activity", status=200)
    assert none["data"] == []
    assert none["meta"]["room_id"] is None
    # The room's audit trail, kept longer than its events: both calls, and nothing else.
    for _ in range(200):
        audit = await api.call("GET", f"/rooms/{room}/audit", status=200)
        if len(audit["data"]) == 4:
            break
        await asyncio.sleep(0.02)  # the projector writes it as it folds the events
    assert [(e["kind"], e["appointment_id"]) for e in audit["data"]] == [
        ("session_started", first["id"]),
        ("session_ended", first["id"]),
        ("session_started", second["id"]),
        ("session_ended", second["id"]),
    ]
    assert "Kim" not in json.dumps(audit)


async def test_the_projector_marks_a_no_show_once_the_window_closes(api: Api) -> None:
    data = await api.create(**video(api.node, title="Nobody came"))
    api.node.clock.advance(300 + 1800 + 3600 + 1)
    missed = await api.wait_for(data["id"], status="no_show")
    assert missed["attendance_status"] == "no_show"
    assert missed["call_status"] == "expired"
    # Settled once: an action cannot change it any more.
    body = await api.call("POST", f"/appointments/{data['id']}/complete", status=409)
    assert body["error"]["details"]["current_status"] == "no_show"


async def test_a_settled_outcome_reaches_the_appointment_when_read(api: Api) -> None:
    # As if the projector's hook had been lost after the outcome was saved.
    data = await api.create(**video(api.node, title="x"))
    await api.node.redis.hset(outcomes_key(data["room_id"]), data["id"], "completed")
    assert (await api.get(data["id"]))["status"] == "completed"
    # An action on it sees the settled status too.
    data = await api.create(**video(api.node, title="y", start_in=2 * HOUR))
    await api.node.redis.hset(outcomes_key(data["room_id"]), data["id"], "no_show")
    body = await api.call("POST", f"/appointments/{data['id']}/cancel", status=409)
    assert body["error"]["details"]["current_status"] == "no_show"


async def test_rescheduling_replaces_both_links_and_the_window(api: Api) -> None:
    node = api.node
    data = await api.create(**video(node, title="Moving"))
    room, old_token = link_parts(data["video_link"])
    start = node.clock.now + 600
    patch = {"start_time": iso(start), "end_time": iso(start + 3600)}
    body = await api.call("PATCH", f"/appointments/{data['id']}", json=patch, status=200)
    moved = body["data"]
    assert moved["room_id"] == room
    assert moved["video_link"] != data["video_link"]
    assert moved["meeting_url"] != data["meeting_url"]
    assert moved["duration_minutes"] == 60
    member = window_member(RoomId(room), data["id"])
    assert await window_score(node.redis, member) == start + 3600 + 3600
    with pytest.raises(ClientError) as refused:
        await node.connect(room=room, token=old_token)
    assert refused.value.code == "link_revoked"
    _, new_token = link_parts(moved["video_link"])
    patient: Client = await node.connect(room=room, token=new_token)
    assert patient.welcome["stage"] == "waiting"
    # A change the links do not carry keeps them.
    same = await api.call("PATCH", f"/appointments/{data['id']}", json={"title": "t"}, status=200)
    assert same["data"]["video_link"] == moved["video_link"]


async def test_a_new_clinician_moves_the_appointment_to_their_room(api: Api) -> None:
    data = await api.create(**video(api.node, title="x"))
    patch = {"clinician_profile_id": "cli_2"}
    moved = (await api.call("PATCH", f"/appointments/{data['id']}", json=patch))["data"]
    other = await api.create(**video(api.node, title="y", clinician_profile_id="cli_2"))
    assert moved["room_id"] == other["room_id"] != data["room_id"]
    old = window_member(data["room_id"], data["id"])
    assert await window_score(api.node.redis, old) is None
    assert await window_score(api.node.redis, window_member(moved["room_id"], data["id"]))


async def test_video_comes_and_goes_with_the_remote_channel(api: Api) -> None:
    data = await api.create(title="In person")
    assert data["room_id"] is None
    patch = {"is_remote": True, "remote_channel": "video", "clinician_profile_id": "cli_1"}
    on = (await api.call("PATCH", f"/appointments/{data['id']}", json=patch))["data"]
    assert on["video_provider"] == "vestibule"
    room, token = link_parts(on["video_link"])
    assert on["call_status"] == "ready"
    off = (await api.call("PATCH", f"/appointments/{data['id']}", json={"is_remote": False}))[
        "data"
    ]
    assert off["remote_channel"] is None
    assert off["room_id"] is off["video_link"] is off["meeting_url"] is off["call_status"] is None
    with pytest.raises(ClientError) as refused:
        await api.node.connect(room=room, token=token)
    assert refused.value.code == "link_revoked"
    assert await window_score(api.node.redis, window_member(RoomId(room), data["id"])) is None


async def test_cancelling_revokes_the_links(api: Api) -> None:
    data = await api.create(**video(api.node, title="x"))
    room, token = link_parts(data["video_link"])
    body = await api.call("POST", f"/appointments/{data['id']}/cancel", status=200)
    assert body["data"]["video_link"] is body["data"]["meeting_url"] is None
    assert body["data"]["room_id"] == room
    with pytest.raises(ClientError) as refused:
        await api.node.connect(room=room, token=token)
    assert refused.value.code == "link_revoked"
    assert await window_score(api.node.redis, window_member(RoomId(room), data["id"])) is None
    # Corrections to a cancelled appointment give it no new links.
    patch = {"patient_id": "pat_2", "attendee_name": "Sam"}
    fixed = await api.call("PATCH", f"/appointments/{data['id']}", json=patch, status=200)
    assert fixed["data"]["video_link"] is fixed["data"]["meeting_url"] is None
    assert fixed["data"]["patient_id"] == "pat_2"


# --- the document ---------------------------------------------------------------------------


async def test_the_document_describes_every_operation(api: Api) -> None:
    paths = api.doc["paths"]
    operations = {
        (method, path): op["operationId"]
        for path, methods in paths.items()
        if path.startswith("/appointments")
        for method, op in methods.items()
    }
    # (other modules add operations under /appointments/{...}/ too)
    assert (
        operations.items()
        >= {
            ("get", "/appointments"): "listAppointments",
            ("post", "/appointments"): "createAppointment",
            ("get", "/appointments/{id}"): "getAppointment",
            ("patch", "/appointments/{id}"): "updateAppointment",
            ("post", "/appointments/{id}/cancel"): "cancelAppointment",
            ("post", "/appointments/{id}/complete"): "completeAppointment",
            ("post", "/appointments/{id}/no_show"): "markAppointmentNoShow",
            ("get", "/appointments/{id}/activity"): "getAppointmentActivity",
        }.items()
    )
    create = paths["/appointments"]["post"]
    assert "201" in create["responses"]
    assert [p["name"] for p in create["parameters"]] == ["Idempotency-Key"]
    schema = api.doc["components"]["schemas"]["Appointment"]
    assert set(schema["required"]) == set(schema["properties"])
    assert schema["properties"]["video_link"]["type"] == ["string", "null"]
    assert schema["properties"]["title"]["type"] == "string"
    listed = [p["name"] for p in paths["/appointments"]["get"]["parameters"]]
    assert listed == [
        "limit",
        "offset",
        "patient_id",
        "clinician_id",
        "status",
        "status_in",
        "date_gte",
        "date_lte",
        "appointment_type_id",
        "location_id",
    ]
    update = paths["/appointments/{id}"]["patch"]["requestBody"]
    assert update["required"] is False
    assert "status" not in update["content"]["application/json"]["schema"]["properties"]
