"""Rooms and join links through the REST API, over real HTTP to a real node (seeds 000, 003).

Every response a test receives is checked against the OpenAPI document the node serves
(`Api.check`): its status must be declared for the operation, and its body must match the
declared envelope and schema exactly (no undeclared field, every required one present, null
only where a field is marked nullable). So the document cannot drift from what is returned.

Then the links are used: each is taken apart (room and token from ``/join/<room>#<token>``)
and presented in a ``hello`` over a real WebSocket, to prove that the API's revoke, expiry and
regenerate are what the signalling endpoint enforces. Time is the node's injected clock.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect

from signalling.client import ClientError
from signalling.wire import Message
from tests.signalling.api.schemas import conform
from tests.signalling.conftest import EPOCH, Node

DAY = 86400
Json = Any  # a decoded JSON value

# --- the API as a test talks to it -------------------------------------------------------------


class Api:
    """An authenticated HTTP client of one node's API that checks every response against
    the node's own OpenAPI document."""

    def __init__(self, http: httpx.AsyncClient, doc: Json, node: Node) -> None:
        self.http = http
        self.doc = doc
        self.node = node

    async def call(
        self,
        method: str,
        template: str,
        *,
        status: int,
        json: Json = None,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
        **path: str,
    ) -> Json:
        """``method template`` with ``path`` filled in; assert the status and the document;
        return the whole envelope."""
        response = await self.http.request(
            method, template.format(**path), json=json, content=content, params=params
        )
        assert response.status_code == status, response.text
        body = response.json()
        self.check(method, template, status, body)
        return body

    def check(self, method: str, template: str, status: int, body: Json) -> None:
        operation = self.doc["paths"][template][method.lower()]
        declared = operation["responses"]
        assert str(status) in declared, f"{method} {template}: {status} is not declared"
        schema = declared[str(status)]["content"]["application/json"]["schema"]
        conform(self.doc, schema, body)

    async def data(self, method: str, template: str, *, status: int = 200, **kw: Any) -> Json:
        return (await self.call(method, template, status=status, **kw))["data"]

    async def error(self, method: str, template: str, *, status: int, **kw: Any) -> Json:
        """The error of a call that must fail with ``status``."""
        body = await self.call(method, template, status=status, **kw)
        assert body["data"] is None
        error: Json = body["error"]
        return error

    # -- shortcuts ----------------------------------------------------------------------------

    async def room(self, **fields: Any) -> Json:
        return await self.data("POST", "/rooms", json=fields, status=201)

    async def link(self, room_id: str, **fields: Any) -> Json:
        return await self.data(
            "POST", "/rooms/{room_id}/links", json=fields, status=201, room_id=room_id
        )

    async def get_link(self, link_id: str) -> Json:
        return await self.data("GET", "/links/{link_id}", link_id=link_id)


@pytest.fixture
async def api(node: Node) -> AsyncIterator[Api]:
    headers = {"authorization": f"Bearer {await node.api_key()}"}
    async with httpx.AsyncClient(base_url=node.http, headers=headers, timeout=10.0) as http:
        response = await http.get("/openapi.json")
        assert response.status_code == 200
        yield Api(http, response.json(), node)


def validation(error: Json, field: str, problem: str | None = None) -> None:
    assert error["code"] == "VALIDATION_ERROR", error
    assert error["details"]["field"] == field, error
    if problem is not None:
        assert error["details"]["problem"] == problem, error


def iso(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def stored(redis: Redis, pattern: str) -> int:
    """How many keys match ``pattern``: proof that a refused request wrote nothing."""
    return len([key async for key in redis.scan_iter(match=pattern, count=1000)])


def parts(link: Json) -> tuple[str, str]:
    """The room and the token of a link's URL (``<base>/join/<room>#<token>``)."""
    path, _, token = link["url"].partition("#")
    room = path.rsplit("/join/", 1)[1]
    assert room == link["room_id"]
    return room, token


async def use(node: Node, link: Json, **options: Any) -> Any:
    room, token = parts(link)
    return await node.connect(room=room, token=token, **options)


async def refused(node: Node, link: Json) -> tuple[Message, int | None]:
    """A hello with ``link`` over a bare WebSocket that the node must refuse: its error
    and the close code (the protocol client closes first on refusal, hiding the code)."""
    room, token = parts(link)
    async with connect(node.url, compression=None) as ws:
        await ws.send(json.dumps({"type": "hello", "room": room, "token": token}))
        reply = json.loads(await ws.recv())
        assert reply["type"] == "error", reply
        with contextlib.suppress(Exception):
            await ws.recv()
        await ws.wait_closed()
        return reply, ws.close_code


# === the document =============================================================================

OPERATIONS = {
    ("post", "/rooms"): ("createRoom", "201"),
    ("get", "/rooms/{room_id}"): ("getRoom", "200"),
    ("get", "/clinicians/{clinician_id}/room"): ("getClinicianRoom", "200"),
    ("post", "/rooms/{room_id}/links"): ("createLink", "201"),
    ("get", "/rooms/{room_id}/links"): ("listRoomLinks", "200"),
    ("get", "/links/{link_id}"): ("getLink", "200"),
    ("post", "/links/{link_id}/revoke"): ("revokeLink", "200"),
    ("post", "/links/{link_id}/regenerate"): ("regenerateLink", "201"),
}


async def test_the_document_declares_every_operation_and_marks_nullable_fields(
    api: Api,
) -> None:
    for (method, path), (operation_id, status) in OPERATIONS.items():
        operation = api.doc["paths"][path][method]
        assert operation["operationId"] == operation_id
        assert status in operation["responses"]
        assert {"401", "503"} <= set(operation["responses"])
        if "{" in path and not path.startswith("/clinicians"):
            assert "404" in operation["responses"], path
    schemas = api.doc["components"]["schemas"]
    room, link = schemas["Room"], schemas["JoinLink"]
    assert set(room["required"]) == set(room["properties"])
    assert set(link["required"]) == set(link["properties"])
    nullable = {
        name
        for schema in (room, link)
        for name, prop in schema["properties"].items()
        if "null" in prop["type"]
    }
    assert nullable == {
        "title",
        "clinician_id",
        "patient_id",
        "name",
        "appointment_id",
        "capacity",
        "revoked_at",
    }
    for name in ("RoomCreate", "JoinLinkCreate", "JoinLinkRegenerate"):
        assert schemas[name]["additionalProperties"] is False
    assert schemas["JoinLinkCreate"]["required"] == ["kind"]
    new_link = schemas["JoinLinkCreate"]["properties"]
    assert (new_link["expires_in"]["minimum"], new_link["expires_in"]["maximum"]) == (60, 90 * DAY)
    assert (new_link["capacity"]["minimum"], new_link["capacity"]["maximum"]) == (1, 50)
    listing = api.doc["paths"]["/rooms/{room_id}/links"]["get"]
    limit = next(p for p in listing["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 100


async def test_every_operation_needs_an_api_key(node: Node, api: Api) -> None:
    async with httpx.AsyncClient(base_url=node.http) as anonymous:
        for (method, path), _ in OPERATIONS.items():
            url = path.format(room_id="rm_x", clinician_id="c1", link_id="lk_x")
            response = await anonymous.request(method.upper(), url)
            assert response.status_code == 401, (method, path)
            api.check(method, path, 401, response.json())
            assert response.json()["error"]["code"] == "UNAUTHORIZED"


# === rooms ====================================================================================


async def test_an_ad_hoc_room_and_a_personalised_room(api: Api) -> None:
    adhoc = await api.room()
    assert adhoc["id"].startswith("rm_")
    assert adhoc == {
        "id": adhoc["id"],
        "kind": "adhoc",
        "title": None,
        "clinician_id": None,
        "patient_id": None,
        "created_at": iso(EPOCH),
    }
    personal = await api.room(
        title="  Sessions with Robin  ", clinician_id="dr-lee", patient_id="p-7"
    )
    assert (personal["kind"], personal["title"]) == ("personal", "Sessions with Robin")
    assert (personal["clinician_id"], personal["patient_id"]) == ("dr-lee", "p-7")
    assert personal["id"] != adhoc["id"]
    titled = await api.room(title="Drop-in", clinician_id="dr-lee")
    assert (titled["kind"], titled["title"], titled["patient_id"]) == ("adhoc", "Drop-in", None)
    for room in (adhoc, personal, titled):
        assert await api.data("GET", "/rooms/{room_id}", room_id=room["id"]) == room


async def test_an_unknown_room_is_not_found(api: Api) -> None:
    error = await api.error("GET", "/rooms/{room_id}", status=404, room_id="rm_nope")
    assert error == {
        "code": "NOT_FOUND",
        "message": "no room rm_nope",
        "details": {"room_id": "rm_nope"},
    }
    # Longer than any id: not looked up, still a plain 404.
    error = await api.error("GET", "/rooms/{room_id}", status=404, room_id="r" * 201)
    assert error["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        ({"kind": "adhoc"}, "kind", "unknown"),
        ({"title": 7}, "title", "type"),
        ({"title": None}, "title", "null"),
        ({"title": "t" * 201}, "title", "too_long"),
        ({"title": "   "}, "title", "format"),
        ({"title": "two\nlines"}, "title", "format"),
        ({"clinician_id": ["dr-lee"]}, "clinician_id", "type"),
        ({"clinician_id": "c" * 201}, "clinician_id", "too_long"),
        ({"patient_id": ""}, "patient_id", "format"),
        ({"patient_id": " p-7"}, "patient_id", "format"),
        ({"patient_id": "p\x007"}, "patient_id", "format"),
    ],
)
async def test_a_bad_room_is_refused_and_nothing_is_written(
    api: Api, body: Json, field: str, problem: str
) -> None:
    error = await api.error("POST", "/rooms", status=422, json=body)
    validation(error, field, problem)
    assert await stored(api.node.redis, "vst:room:*") == 0


async def test_a_room_body_must_be_a_json_object(api: Api) -> None:
    error = await api.error("POST", "/rooms", status=422, json=["title"])
    assert error["code"] == "VALIDATION_ERROR"
    error = await api.error("POST", "/rooms", status=400, content=b"{title")
    assert error["code"] == "INVALID_JSON"
    assert await stored(api.node.redis, "vst:room:*") == 0


async def test_the_clinicians_room_is_the_same_on_every_call(api: Api) -> None:
    first = await api.data("GET", "/clinicians/{clinician_id}/room", clinician_id="dr-lee")
    assert first["kind"] == "clinician"
    assert (first["clinician_id"], first["patient_id"], first["title"]) == ("dr-lee", None, None)
    api.node.clock.advance(7 * DAY)
    again = await api.data("GET", "/clinicians/{clinician_id}/room", clinician_id="dr-lee")
    assert again == first  # same id, and created_at is still the first call's
    assert await api.data("GET", "/rooms/{room_id}", room_id=first["id"]) == first
    other = await api.data("GET", "/clinicians/{clinician_id}/room", clinician_id="dr-kim")
    assert other["id"] != first["id"]
    error = await api.error(
        "GET", "/clinicians/{clinician_id}/room", status=422, clinician_id="c" * 201
    )
    validation(error, "clinician_id", "too_long")


# === issuing links ============================================================================


async def test_a_link_of_each_kind(api: Api) -> None:
    room = await api.room(title="Robin", clinician_id="dr-lee", patient_id="p-7")
    patient = await api.link(
        room["id"], kind="patient", patient_id="p-7", name="Robin  Ray", appointment_id="ap-1",
        expires_in=3600,
    )  # fmt: skip
    assert patient["id"].startswith("lk_")
    assert patient == {
        "id": patient["id"],
        "room_id": room["id"],
        "kind": "patient",
        "url": patient["url"],
        "status": "active",
        "patient_id": "p-7",
        "name": "Robin Ray",  # normalised as a typed name would be
        "appointment_id": "ap-1",
        "capacity": None,
        "created_at": iso(EPOCH),
        "expires_at": iso(EPOCH + 3600),
        "revoked_at": None,
    }
    assert patient["url"].startswith(f"{api.node.settings.base_url}/join/{room['id']}#v1.")
    general = await api.link(room["id"], kind="general")
    assert (general["patient_id"], general["name"], general["capacity"]) == (None, None, None)
    assert general["expires_at"] == iso(EPOCH + 30 * DAY)  # the default lifetime
    host = await api.link(room["id"], kind="clinician", name="Dr Lee", capacity=3)
    assert (host["kind"], host["patient_id"], host["capacity"]) == ("clinician", None, 3)
    longest = await api.link(room["id"], kind="general", expires_in=90 * DAY)
    assert longest["expires_at"] == iso(EPOCH + 90 * DAY)
    assert len({patient["url"], general["url"], host["url"], longest["url"]}) == 4


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        ({}, "kind", "required"),
        ({"kind": "host"}, "kind", "enum"),
        ({"kind": "general", "ttl": 60}, "ttl", "unknown"),
        ({"kind": "patient"}, "patient_id", "required"),
        ({"kind": "patient", "patient_id": None}, "patient_id", "null"),
        ({"kind": "patient", "patient_id": 7}, "patient_id", "type"),
        ({"kind": "patient", "patient_id": "p-8"}, "patient_id", "mismatch"),
        ({"kind": "patient", "patient_id": "p-7", "capacity": 2}, "capacity", "not_allowed"),
        ({"kind": "patient", "patient_id": "p-7", "name": "n" * 81}, "name", "too_long"),
        ({"kind": "patient", "patient_id": "p-7", "name": "  "}, "name", "format"),
        ({"kind": "patient", "patient_id": "p-7", "name": "a\tb\x07"}, "name", "format"),
        ({"kind": "general", "name": "Kim"}, "name", "not_allowed"),
        ({"kind": "general", "patient_id": "p-7"}, "patient_id", "not_allowed"),
        ({"kind": "clinician", "patient_id": "p-7"}, "patient_id", "not_allowed"),
        ({"kind": "clinician", "capacity": 0}, "capacity", "range"),
        ({"kind": "clinician", "capacity": 51}, "capacity", "range"),
        ({"kind": "clinician", "capacity": "2"}, "capacity", "type"),
        ({"kind": "general", "expires_in": 59}, "expires_in", "range"),
        ({"kind": "general", "expires_in": 90 * DAY + 1}, "expires_in", "range"),
        ({"kind": "general", "expires_in": 3600.5}, "expires_in", "type"),
        ({"kind": "general", "expires_in": True}, "expires_in", "type"),
        ({"kind": "general", "appointment_id": ""}, "appointment_id", "format"),
        ({"kind": "general", "appointment_id": "a" * 201}, "appointment_id", "too_long"),
    ],
)
async def test_a_bad_link_is_refused_and_nothing_is_written(
    api: Api, body: Json, field: str, problem: str
) -> None:
    room = await api.room(patient_id="p-7")
    error = await api.error(
        "POST", "/rooms/{room_id}/links", status=422, json=body, room_id=room["id"]
    )
    validation(error, field, problem)
    assert await stored(api.node.redis, "vst:link:*") == 0
    listing = await api.data("GET", "/rooms/{room_id}/links", room_id=room["id"])
    assert listing == []


async def test_a_link_for_an_unknown_room_is_not_found(api: Api) -> None:
    error = await api.error(
        "POST", "/rooms/{room_id}/links", status=404, json={"kind": "general"}, room_id="rm_x"
    )
    assert error["code"] == "NOT_FOUND"
    assert await stored(api.node.redis, "vst:link:*") == 0


async def test_the_longest_fields_still_make_a_link_that_works(api: Api) -> None:
    """Every field at its maximum length, in 4-byte characters, fits the token's limit."""
    room = await api.room(patient_id="🦉" * 200)
    link = await api.link(
        room["id"], kind="patient", patient_id="🦉" * 200, name="🦉" * 80,
        appointment_id="🦉" * 200,
    )  # fmt: skip
    patient = await use(api.node, link)
    assert patient.welcome["name"] == "🦉" * 80


# === reading, listing, revoking, regenerating =================================================


async def test_the_links_of_a_room_are_listed_oldest_first_in_pages(api: Api) -> None:
    room = await api.room()
    made = []
    for _ in range(5):
        made.append((await api.link(room["id"], kind="general"))["id"])
        api.node.clock.advance(1.0)
    other = await api.room()
    await api.link(other["id"], kind="general")  # not in this room's list

    body = await api.call("GET", "/rooms/{room_id}/links", status=200, room_id=room["id"])
    assert [link["id"] for link in body["data"]] == made
    assert body["meta"]["limit"] == 50
    pages, offset = [], 0
    while True:
        body = await api.call(
            "GET", "/rooms/{room_id}/links", status=200, room_id=room["id"],
            params={"limit": "2", "offset": str(offset)},
        )  # fmt: skip
        pages.append([link["id"] for link in body["data"]])
        meta = body["meta"]
        assert (meta["limit"], meta["offset"]) == (2, offset)
        if not meta["has_more"]:
            assert meta["next_offset"] is None
            break
        offset = meta["next_offset"]
    assert pages == [made[0:2], made[2:4], made[4:5]]
    beyond = await api.data(
        "GET", "/rooms/{room_id}/links", room_id=room["id"], params={"offset": "10"}
    )
    assert beyond == []


@pytest.mark.parametrize(
    ("params", "field", "problem"),
    [
        ({"limit": "0"}, "limit", "range"),
        ({"limit": "101"}, "limit", "range"),
        ({"limit": "ten"}, "limit", "type"),
        ({"offset": "-1"}, "offset", "range"),
        ({"offset": "100001"}, "offset", "range"),
        ({"page": "2"}, "page", "unknown"),
    ],
)
async def test_bad_paging_is_refused(
    api: Api, params: dict[str, str], field: str, problem: str
) -> None:
    room = await api.room()
    error = await api.error(
        "GET", "/rooms/{room_id}/links", status=422, room_id=room["id"], params=params
    )
    validation(error, field, problem)


async def test_the_links_of_an_unknown_room_are_not_found(api: Api) -> None:
    error = await api.error("GET", "/rooms/{room_id}/links", status=404, room_id="rm_x")
    assert error["code"] == "NOT_FOUND"


async def test_an_unknown_link_is_not_found_everywhere(api: Api) -> None:
    for method, path in [
        ("GET", "/links/{link_id}"),
        ("POST", "/links/{link_id}/revoke"),
        ("POST", "/links/{link_id}/regenerate"),
    ]:
        error = await api.error(method, path, status=404, link_id="lk_nope")
        assert error == {
            "code": "NOT_FOUND",
            "message": "no link lk_nope",
            "details": {"link_id": "lk_nope"},
        }
    assert await stored(api.node.redis, "vst:link:*") == 0


async def test_revoking_is_idempotent(api: Api) -> None:
    room = await api.room()
    link = await api.link(room["id"], kind="general")
    api.node.clock.advance(10.0)
    revoked = await api.data("POST", "/links/{link_id}/revoke", link_id=link["id"])
    assert revoked == link | {"status": "revoked", "revoked_at": iso(EPOCH + 10.0)}
    api.node.clock.advance(10.0)
    again = await api.data("POST", "/links/{link_id}/revoke", link_id=link["id"])
    assert again == revoked  # the first revocation's time stands
    assert await api.get_link(link["id"]) == revoked


async def test_a_link_past_its_expiry_needs_regenerating(api: Api) -> None:
    room = await api.room()
    link = await api.link(room["id"], kind="general", expires_in=60)
    api.node.clock.advance(59.0)
    assert (await api.get_link(link["id"]))["status"] == "active"
    api.node.clock.advance(1.0)
    assert (await api.get_link(link["id"]))["status"] == "expired"
    listing = await api.data("GET", "/rooms/{room_id}/links", room_id=room["id"])
    assert [entry["status"] for entry in listing] == ["expired"]
    fresh = await api.data("POST", "/links/{link_id}/regenerate", status=201, link_id=link["id"])
    assert fresh["status"] == "active"
    assert fresh["expires_at"] == iso(EPOCH + 60.0 + 60.0)  # the old link's lifetime again
    # Revoked wins over expired: the old link reads revoked from now on.
    assert (await api.get_link(link["id"]))["status"] == "revoked"


async def test_regenerate_replaces_a_link_for_the_same_person(api: Api) -> None:
    room = await api.room(patient_id="p-7")
    old = await api.link(
        room["id"], kind="patient", patient_id="p-7", name="Robin", appointment_id="ap-1",
        expires_in=7200,
    )  # fmt: skip
    api.node.clock.advance(30.0)
    new = await api.data("POST", "/links/{link_id}/regenerate", status=201, link_id=old["id"])
    assert new["id"] != old["id"]
    assert new["url"] != old["url"]
    for field in ("room_id", "kind", "patient_id", "name", "appointment_id", "capacity"):
        assert new[field] == old[field], field
    assert (new["status"], new["revoked_at"]) == ("active", None)
    assert (new["created_at"], new["expires_at"]) == (iso(EPOCH + 30), iso(EPOCH + 30 + 7200))
    assert await api.get_link(old["id"]) == old | {
        "status": "revoked",
        "revoked_at": iso(EPOCH + 30),
    }
    # Above, no body: the old lifetime. Here a chosen one.
    api.node.clock.advance(1.0)
    longer = await api.data(
        "POST", "/links/{link_id}/regenerate", status=201, link_id=new["id"],
        json={"expires_in": 3 * DAY},
    )  # fmt: skip
    assert longer["expires_at"] == iso(EPOCH + 31 + 3 * DAY)
    listing = await api.data("GET", "/rooms/{room_id}/links", room_id=room["id"])
    assert [(e["id"], e["status"]) for e in listing] == [
        (old["id"], "revoked"),
        (new["id"], "revoked"),
        (longer["id"], "active"),
    ]


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        ({"expires_in": 59}, "expires_in", "range"),
        ({"expires_in": "60"}, "expires_in", "type"),
        ({"kind": "general"}, "kind", "unknown"),
    ],
)
async def test_a_bad_regenerate_changes_nothing(
    api: Api, body: Json, field: str, problem: str
) -> None:
    room = await api.room()
    link = await api.link(room["id"], kind="general")
    error = await api.error(
        "POST", "/links/{link_id}/regenerate", status=422, json=body, link_id=link["id"]
    )
    validation(error, field, problem)
    assert await api.get_link(link["id"]) == link
    assert await stored(api.node.redis, "vst:link:*") == 1


# === the links at the door (hello) ============================================================


async def test_a_general_link_lets_a_guest_in_with_a_typed_name(api: Api) -> None:
    room = await api.room(title="Drop-in")
    link = await api.link(room["id"], kind="general")
    guest = await use(api.node, link, name="  Kim   Park ")
    assert (guest.welcome["role"], guest.welcome["name"]) == ("guest", "Kim Park")
    assert guest.welcome["room"] == room["id"]
    # Anyone with the link gets in, each as their own guest.
    other = await use(api.node, link, name="Alex")
    assert other.participant_id != guest.participant_id
    # Without a name there is no entry: the guest is asked for one.
    with pytest.raises(ClientError) as info:
        await use(api.node, link)
    assert info.value.code == "name_required"


async def test_a_personal_link_lets_its_patient_in(api: Api) -> None:
    room = await api.room(title="Robin", clinician_id="dr-lee", patient_id="p-7")
    link = await api.link(room["id"], kind="patient", patient_id="p-7", name="Robin")
    patient = await use(api.node, link)
    welcome = patient.welcome
    assert (welcome["role"], welcome["name"], welcome["room"]) == ("patient", "Robin", room["id"])
    # The same link is the same participant every time (a second tab replaces the first).
    again = await use(api.node, link)
    assert again.participant_id == patient.participant_id


async def test_a_revoked_link_is_refused_at_hello_but_nobody_is_thrown_out(api: Api) -> None:
    """Revoking closes the door, it does not empty the room.

    A link is checked once, at ``hello``. Someone already inside stays: revoking is what a
    clinic does to stop a link being used again (sent to the wrong address, a regenerated
    link's predecessor), and cutting a consultation off mid-sentence would punish the patient
    for the clinic's housekeeping; a host who wants someone out has the protocol's own means.
    From the revocation on, the link is refused with ``link_revoked`` and close 4401, and
    that includes coming back with a resume token, which is always presented with its join
    token: a participant who drops after the revocation needs a new link.
    """
    room = await api.room(patient_id="p-7")
    link = await api.link(room["id"], kind="patient", patient_id="p-7", name="Robin")
    inside = await use(api.node, link)
    await api.data("POST", "/links/{link_id}/revoke", link_id=link["id"])

    with pytest.raises(ClientError) as info:
        await use(api.node, link)
    assert info.value.code == "link_revoked"
    reply, code = await refused(api.node, link)
    assert reply["code"] == "link_revoked"
    assert code == 4401

    await inside.ping()  # still connected, still answered
    await inside.expect("pong")
    assert inside.close_code is None

    room_id, token = parts(link)
    with pytest.raises(ClientError) as info:
        await api.node.connect(room=room_id, token=token, resume=inside.resume_token)
    assert info.value.code == "link_revoked"


async def test_an_expired_link_is_refused_and_reads_expired(api: Api) -> None:
    room = await api.room()
    link = await api.link(room["id"], kind="general", expires_in=60)
    # Past expires_at and the hello's 5 s clock-skew leeway.
    api.node.clock.advance(60.0 + 5.0 + 1.0)
    with pytest.raises(ClientError) as info:
        await use(api.node, link, name="Kim")
    assert info.value.code == "token_expired"
    reply, code = await refused(api.node, link)
    assert reply["code"] == "token_expired"
    assert code == 4401
    assert (await api.get_link(link["id"]))["status"] == "expired"


async def test_a_regenerated_link_works_and_the_old_one_is_refused(api: Api) -> None:
    room = await api.room(patient_id="p-7")
    old = await api.link(room["id"], kind="patient", patient_id="p-7", expires_in=60)
    api.node.clock.advance(120.0)  # expired: needs regenerating
    new = await api.data("POST", "/links/{link_id}/regenerate", status=201, link_id=old["id"])
    patient = await use(api.node, new)
    assert patient.welcome["role"] == "patient"
    with pytest.raises(ClientError) as info:
        await use(api.node, old)
    assert info.value.code == "token_expired"  # expiry is checked first; it is revoked too
    # Within its lifetime the old link would still have worked: it is the revocation that
    # refuses it.
    fresh = await api.link(room["id"], kind="patient", patient_id="p-7")
    await api.data("POST", "/links/{link_id}/regenerate", status=201, link_id=fresh["id"])
    with pytest.raises(ClientError) as info:
        await use(api.node, fresh)
    assert info.value.code == "link_revoked"


async def test_the_clinicians_persistent_room_takes_the_host_in(api: Api) -> None:
    room = await api.data("GET", "/clinicians/{clinician_id}/room", clinician_id="dr-lee")
    link = await api.link(room["id"], kind="clinician", name="Dr Lee", capacity=2)
    host = await use(api.node, link)
    assert (host.welcome["role"], host.welcome["name"]) == ("host", "Dr Lee")
    again = await api.data("GET", "/clinicians/{clinician_id}/room", clinician_id="dr-lee")
    assert again["id"] == host.welcome["room"] == room["id"]
