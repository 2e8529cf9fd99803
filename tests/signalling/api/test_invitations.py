"""Invitations end to end: real nodes on a real redis-server, a real SMTP server (aiosmtpd)
and a real HTTP receiver on loopback.

The node's clock is a `FakeClock`: retries fall due only when a test moves it, so the
retry schedule is checked to the second without waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiosmtpd.smtp import SMTP, Envelope, Session
from redis.asyncio import Redis

from rooms.appointments import Appointment, ContactChannel, RemoteChannel, book
from rooms.ids import AppointmentId, RoomId
from signalling.api.appointment_store import AppointmentStore, Stored, record_key
from signalling.api.context import ApiContext
from signalling.api.keys import ApiKeys
from signalling.api.links import LinkKind, Links
from signalling.app import create_app
from signalling.bus import Bus
from signalling.outbox import GROUP, OUTBOX, Outbox, ensure_group
from signalling.redis_ports import redis_hub
from signalling.redis_server import RedisProcess
from tests.signalling.conftest import EPOCH, FakeClock, Node, Serve, build_settings
from tests.smtp import SmtpServer
from tests.support import free_port

PATIENT_EMAIL = "jane.doe@example.org"
PATIENT_PHONE = "+447700900123"
PATIENT_NAME = "Jane Doe"
SENDER = "clinic@example.org"
SECRET = "hook-secret-0123"

# Short real waits: the worker looks for due retries every 10 ms.
FAST: dict[str, Any] = {"delivery_poll": 0.01}


# --- real servers on loopback ----------------------------------------------------------------


class Inbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    def message(self, index: int = 0) -> EmailMessage:
        content = self.envelopes[index].original_content
        assert content is not None
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Smtp:
    port: int
    inbox: Inbox

    def settings(self) -> dict[str, Any]:
        return {
            "smtp_host": "127.0.0.1",
            "smtp_port": self.port,
            "smtp_from": SENDER,
            "smtp_starttls": False,
        }


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    inbox = Inbox()
    port = free_port()
    controller = SmtpServer(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield Smtp(port, inbox)
    finally:
        controller.stop()


@dataclass
class Hook:
    """One request the webhook receiver got."""

    line: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A minimal HTTP/1.1 server: answers each request with the next of ``statuses``
    (then 200) and keeps what it got."""

    port: int
    statuses: list[int] = field(default_factory=list)
    hooks: list[Hook] = field(default_factory=list)
    # Connections being served: closed at teardown, since closing the server does not
    # close them (one still read from when the test ends would be left to the garbage
    # collector, whose ResourceWarning then fails whichever test it falls in).
    open: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/invitations"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open.add(writer)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            line, *rest = head.split("\r\n")
            headers = {}
            for item in rest:
                name, colon, value = item.partition(":")
                if colon:
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.hooks.append(Hook(line, headers, body))
            status = self.statuses.pop(0) if self.statuses else 200
            writer.write(
                f"HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            await writer.drain()
        finally:
            self.open.discard(writer)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    hook = Receiver(port)
    server = await asyncio.start_server(hook.handle, "127.0.0.1", port)
    async with server:
        yield hook
        for writer in list(hook.open):
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


# --- helpers ---------------------------------------------------------------------------------


def offline_context(redis: Redis, data_dir: Path, clock: FakeClock) -> ApiContext:
    """What the API modules need, without a running node (to prepare data for one)."""
    return ApiContext(
        redis, build_settings(data_dir), clock, redis_hub(redis, Bus(redis, "t", clock), clock)
    )


async def make_appointment(
    ctx: ApiContext, *, video: bool = True, **fields: Any
) -> tuple[Appointment, str]:
    """A booked remote-video appointment with a real patient join link (unless
    ``video=False``), stored as the appointments API stores it. Returns it and its link."""
    now = ctx.clock()
    values: dict[str, Any] = {
        "patient_id": "pt_1",
        "is_remote": True,
        "remote_channel": RemoteChannel.VIDEO,
        "attendee_email": PATIENT_EMAIL,
        "attendee_name": PATIENT_NAME,
        "attendee_phone": PATIENT_PHONE,
    }
    values.update(fields)
    appointment = book(
        AppointmentId("apt_" + secrets.token_hex(6)),
        title="Physiotherapy review",
        start_time=now + 3600,
        end_time=now + 5400,
        now=now,
        **values,
    )
    link = ""
    stored = Stored(appointment)
    if video:
        room = RoomId("rm_" + secrets.token_hex(6))
        links = Links(ctx)
        patient = await links.issue(
            room, LinkKind.PATIENT, subject="pt_1", name=PATIENT_NAME, appointment=appointment.id
        )
        host = await links.issue(room, LinkKind.CLINICIAN, appointment=appointment.id)
        link = patient.url
        appointment = appointment.with_video(room, video_link=link, meeting_url=host.url, now=now)
        stored = Stored(appointment, patient.id, host.id)
    await AppointmentStore(ctx).create(stored)
    return appointment, link


@dataclass
class Api:
    """An API client for one node."""

    base: str
    key: str

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.key}", **kwargs.pop("headers", {})}
        async with httpx.AsyncClient(base_url=self.base, trust_env=False) as client:
            return await client.request(method, path, headers=headers, **kwargs)

    async def send(self, appointment: str, expect: int = 201, **body: Any) -> dict[str, Any]:
        response = await self.request("POST", f"/appointments/{appointment}/invitations", json=body)
        assert response.status_code == expect, response.text
        return response.json()  # type: ignore[no-any-return]

    async def invitation(self, invitation_id: str) -> dict[str, Any]:
        response = await self.request("GET", f"/invitations/{invitation_id}")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    async def until(
        self, invitation_id: str, *, status: str | None = None, attempts: int | None = None
    ) -> dict[str, Any]:
        """The invitation once it has ``status`` and/or ``attempts``; bounded wait."""
        for _ in range(500):
            data = await self.invitation(invitation_id)
            if (status is None or data["status"] == status) and (
                attempts is None or data["attempts"] == attempts
            ):
                return data
            await asyncio.sleep(0.01)
        raise AssertionError(f"invitation {invitation_id} never reached {status}/{attempts}")


async def api_for(node: Node) -> Api:
    return Api(node.http, await node.api_key())


def ctx_of(node: Node) -> ApiContext:
    return ApiContext(node.redis, node.settings, node.clock, node.hub)


def assert_no_patient_data(caplog: pytest.LogCaptureFixture, *secrets_: str) -> None:
    for record in caplog.records:
        text = record.getMessage()
        for secret in secrets_:
            assert secret not in text, f"{record.name} logged patient data: {text!r}"


@contextlib.asynccontextmanager
async def stoppable_node(
    redis_server: RedisProcess, data_dir: Path, clock: FakeClock, **overrides: Any
) -> AsyncIterator[Api]:
    """A node that the test stops (the `serve` fixture's nodes stop at teardown)."""
    settings = build_settings(data_dir, **overrides)
    app = create_app(settings, clock, redis_url=redis_server.url)
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        ws="websockets-sansio",
        lifespan="on",
        log_level="warning",
        log_config=None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        _, key = await ApiKeys(app.state.redis).create("test")
        yield Api(f"http://127.0.0.1:{port}/api/v1", key)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


# --- email -----------------------------------------------------------------------------------


async def test_email_is_delivered_with_the_join_link(
    serve: Serve, smtp: Smtp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="vestibule")
    node = await serve(**smtp.settings(), **FAST)
    api = await api_for(node)
    appointment, link = await make_appointment(ctx_of(node))

    created = (await api.send(appointment.id))["data"]
    assert created["status"] == "pending"
    assert created["channel"] == "email"
    assert created["attempts"] == 0
    assert created["to_hint"] == "j•••@example.org"
    assert created["created_at"] == "2023-11-14T22:13:20.000Z"
    assert created["sent_at"] is None
    assert created["failed_at"] is None
    assert created["last_error"] is None

    sent = await api.until(created["id"], status="sent")
    assert sent["attempts"] == 1
    assert sent["sent_at"] == "2023-11-14T22:13:20.000Z"
    assert sent["next_attempt_at"] is None

    [envelope] = smtp.inbox.envelopes
    assert envelope.mail_from == SENDER
    assert envelope.rcpt_tos == [PATIENT_EMAIL]
    message = smtp.inbox.message()
    assert message["Subject"] == "Your video appointment link"
    assert message["To"] == PATIENT_EMAIL
    assert message["Message-ID"] == f"<{created['id']}@example.org>"
    for header in ("Subject", "From"):  # no patient data outside the body
        assert "Jane" not in str(message[header])
        assert "Physiotherapy" not in str(message[header])
    part = message.get_body(("plain",))
    assert part is not None
    body = part.get_content()
    assert link in body
    assert "Physiotherapy review" in body
    assert "Tuesday 14 November 2023, 23:13 UTC" in body
    token = link.split("#", 1)[1]
    assert_no_patient_data(caplog, PATIENT_EMAIL, PATIENT_NAME, token)


async def test_to_overrides_the_appointment_address(serve: Serve, smtp: Smtp) -> None:
    node = await serve(**smtp.settings(), **FAST)
    api = await api_for(node)
    appointment, _ = await make_appointment(ctx_of(node), attendee_email=None)

    created = (await api.send(appointment.id, to="carer@example.net"))["data"]
    assert created["to_hint"] == "c•••@example.net"
    await api.until(created["id"], status="sent")
    assert smtp.inbox.envelopes[0].rcpt_tos == ["carer@example.net"]


async def test_a_closed_smtp_port_retries_with_backoff_then_fails(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="vestibule")
    closed = free_port()  # nobody listens here
    node = await serve(
        smtp_host="127.0.0.1",
        smtp_port=closed,
        smtp_from=SENDER,
        smtp_starttls=False,
        invitation_max_attempts=4,
        invitation_backoff=1.0,
        invitation_backoff_max=3.0,
        **FAST,
    )
    api = await api_for(node)
    appointment, link = await make_appointment(ctx_of(node))
    created = (await api.send(appointment.id))["data"]

    # The clock stands still between steps, so each retry time is exact: 1 s, then 2 s,
    # then 3 s (doubling, capped) after the failure before it.
    first = await api.until(created["id"], attempts=1)
    assert first["status"] == "pending"
    assert first["last_error"] == "smtp: connection refused"
    assert first["next_attempt_at"] == "2023-11-14T22:13:21.000Z"
    for attempt, delay in ((2, 1.0), (3, 2.0)):
        node.clock.advance(delay - 0.5)
        await asyncio.sleep(0.1)  # not due yet: nothing happens
        assert (await api.invitation(created["id"]))["attempts"] == attempt - 1
        node.clock.advance(0.5)
        state = await api.until(created["id"], attempts=attempt)
        assert state["status"] == "pending"
    assert state["next_attempt_at"] == "2023-11-14T22:13:26.000Z"  # 20 + 1 + 2 + 3
    node.clock.advance(3.0)

    failed = await api.until(created["id"], status="failed")
    assert failed["attempts"] == 4
    assert failed["failed_at"] == "2023-11-14T22:13:26.000Z"
    assert failed["last_error"] == "smtp: connection refused"
    assert failed["next_attempt_at"] is None
    assert failed["sent_at"] is None
    node.clock.advance(3600.0)
    await asyncio.sleep(0.1)
    assert (await api.invitation(created["id"]))["attempts"] == 4  # final: never retried
    assert await node.redis.zcard("vst:outbox:due") == 0
    assert_no_patient_data(caplog, PATIENT_EMAIL, PATIENT_NAME, link.split("#", 1)[1])


async def test_an_appointment_deleted_meanwhile_fails_the_invitation(serve: Serve) -> None:
    node = await serve(
        smtp_host="127.0.0.1", smtp_port=free_port(), smtp_from=SENDER, smtp_starttls=False,
        **FAST,
    )  # fmt: skip
    api = await api_for(node)
    appointment, _ = await make_appointment(ctx_of(node))
    created = (await api.send(appointment.id))["data"]
    await api.until(created["id"], attempts=1)
    await node.redis.delete(record_key(appointment.id))
    node.clock.advance(2.0)
    failed = await api.until(created["id"], status="failed")
    assert failed["attempts"] == 2
    assert failed["last_error"] == "the appointment no longer exists"


# --- webhook ---------------------------------------------------------------------------------


async def test_webhook_gets_signed_json_and_a_5xx_is_retried(
    serve: Serve, receiver: Receiver
) -> None:
    receiver.statuses = [503]
    node = await serve(webhook_url=receiver.url, webhook_secret=SECRET, **FAST)
    api = await api_for(node)
    # The preferred channel decides when the request names none.
    appointment, link = await make_appointment(
        ctx_of(node), preferred_channel=ContactChannel.WEBHOOK
    )
    created = (await api.send(appointment.id))["data"]
    assert created["channel"] == "webhook"
    assert created["to_hint"] == "•••0123"

    retrying = await api.until(created["id"], attempts=1)
    assert retrying["status"] == "pending"
    assert retrying["last_error"] == "webhook: HTTP 503"
    node.clock.advance(2.0)  # the default first backoff
    sent = await api.until(created["id"], status="sent")
    assert sent["attempts"] == 2

    assert len(receiver.hooks) == 2
    hook = receiver.hooks[-1]
    assert hook.line == "POST /hooks/invitations HTTP/1.1"
    assert hook.headers["content-type"] == "application/json"
    assert hook.headers["idempotency-key"] == created["id"]
    assert json.loads(hook.body) == {
        "invitation_id": created["id"],
        "appointment_id": appointment.id,
        "to": PATIENT_PHONE,
        "channel": "webhook",
        "link": link,
        "starts_at": "2023-11-14T23:13:20.000Z",
    }
    timestamp = hook.headers["x-vestibule-timestamp"]
    assert timestamp == str(int(EPOCH + 2.0))
    expected = hmac.new(
        SECRET.encode(), timestamp.encode() + b"." + hook.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(hook.headers["x-vestibule-signature"], f"sha256={expected}")


async def test_webhook_without_a_secret_is_unsigned(serve: Serve, receiver: Receiver) -> None:
    node = await serve(webhook_url=receiver.url, **FAST)
    api = await api_for(node)
    appointment, _ = await make_appointment(ctx_of(node))
    created = (await api.send(appointment.id, channel="webhook", to="+15550100"))["data"]
    await api.until(created["id"], status="sent")
    [hook] = receiver.hooks
    assert "x-vestibule-signature" not in hook.headers
    assert json.loads(hook.body)["to"] == "+15550100"


# --- restarts --------------------------------------------------------------------------------


async def test_a_retry_survives_a_restart(
    serve: Serve, smtp: Smtp, redis_server: RedisProcess, redis: Redis, tmp_path: Path
) -> None:
    clock = FakeClock()
    appointment, _ = await make_appointment(offline_context(redis, tmp_path, clock))
    broken = {**smtp.settings(), "smtp_port": free_port()}
    async with stoppable_node(redis_server, tmp_path / "first", clock, **broken, **FAST) as api:
        created = (await api.send(appointment.id))["data"]
        pending = await api.until(created["id"], attempts=1)
        assert pending["status"] == "pending"
    # The first node is gone; its retry waits in Redis for whichever node runs next.
    node = await serve(clock=clock, **smtp.settings(), **FAST)
    api = await api_for(node)
    clock.advance(2.0)
    sent = await api.until(created["id"], status="sent")
    assert sent["attempts"] == 2
    assert [e.rcpt_tos for e in smtp.inbox.envelopes] == [[PATIENT_EMAIL]]


async def test_a_dead_nodes_unfinished_delivery_is_claimed(
    serve: Serve, smtp: Smtp, redis: Redis, tmp_path: Path
) -> None:
    clock = FakeClock()
    appointment, _ = await make_appointment(offline_context(redis, tmp_path, clock))
    invitation = await Outbox(redis, clock).enqueue(
        appointment.id, ContactChannel.EMAIL, PATIENT_EMAIL
    )
    # A node reads the ticket and dies before sending it.
    await ensure_group(redis)
    read: Any = await redis.xreadgroup(GROUP, "dead-node", {OUTBOX: ">"}, count=10)
    assert len(read[0][1]) == 1

    node = await serve(clock=clock, delivery_claim_idle=0.2, **smtp.settings(), **FAST)
    api = await api_for(node)
    sent = await api.until(invitation.id, status="sent")
    assert sent["attempts"] == 1
    assert len(smtp.inbox.envelopes) == 1
    summary: Any = await redis.xpending(OUTBOX, GROUP)
    assert summary["pending"] == 0


# --- the API ---------------------------------------------------------------------------------


async def test_refusals(serve: Serve, smtp: Smtp) -> None:
    node = await serve(**smtp.settings(), **FAST)  # email only: no webhook URL
    api = await api_for(node)
    ctx = ctx_of(node)
    appointment, _ = await make_appointment(ctx)

    async def refused(appointment_id: str, status: int, code: str, **body: Any) -> Any:
        error = (await api.send(appointment_id, expect=status, **body))["error"]
        assert error["code"] == code, error
        return error

    await refused("apt_missing", 404, "NOT_FOUND")
    no_video, _ = await make_appointment(ctx, video=False)
    await refused(no_video.id, 409, "NO_VIDEO_LINK")
    no_email, _ = await make_appointment(ctx, attendee_email=None)
    error = await refused(no_email.id, 409, "NO_RECIPIENT")
    assert error["details"] == {"channel": "email", "field": "attendee_email"}
    await refused(appointment.id, 409, "CHANNEL_NOT_CONFIGURED", channel="webhook")
    error = await refused(appointment.id, 422, "VALIDATION_ERROR", channel="sms")
    assert error["details"]["field"] == "channel"
    error = await refused(appointment.id, 422, "VALIDATION_ERROR", to="not an address")
    assert error["details"] == {"field": "to", "problem": "format"}
    await refused(appointment.id, 422, "VALIDATION_ERROR", to="a@b\r\nBcc: x@y")
    await refused(appointment.id, 422, "VALIDATION_ERROR", to=" a@example.org")
    await refused(appointment.id, 422, "VALIDATION_ERROR", to="")
    await refused(appointment.id, 422, "VALIDATION_ERROR", to="a" * 250 + "@example.org")
    await refused(appointment.id, 422, "VALIDATION_ERROR", subject="hi")
    cancelled = appointment.cancel(None, node.clock())
    store = AppointmentStore(ctx)
    _, raw = await store.load(appointment.id)
    assert await store.save(raw, Stored(cancelled))
    error = await refused(appointment.id, 409, "INVALID_STATE_TRANSITION")
    assert error["details"]["current_status"] == "cancelled"

    unauthorised = Api(node.http, "vk_nope_nope")
    response = await unauthorised.request("GET", "/invitations/inv_x")
    assert response.status_code == 401
    response = await api.request("GET", "/invitations/inv_missing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    response = await api.request("GET", "/appointments/apt_missing/invitations")
    assert response.status_code == 404
    assert await node.redis.xlen(OUTBOX) == 0  # nothing was queued


async def test_list_newest_first_and_get(serve: Serve, smtp: Smtp) -> None:
    await _list_newest_first_and_get(serve, smtp)


async def test_list_newest_first_and_get_on_a_redis_cluster(
    cluster_serve: Serve, smtp: Smtp
) -> None:
    # The outbox's scripts and transactions keep to its one tag; the appointments listed
    # and the links signed are read across the shards.
    await _list_newest_first_and_get(cluster_serve, smtp)


async def _list_newest_first_and_get(serve: Serve, smtp: Smtp) -> None:
    node = await serve(**smtp.settings(), **FAST)
    api = await api_for(node)
    appointment, _ = await make_appointment(ctx_of(node))
    other, _ = await make_appointment(ctx_of(node))
    ids = []
    for _ in range(3):
        ids.append((await api.send(appointment.id))["data"]["id"])
        node.clock.advance(1.0)
    await api.send(other.id)

    response = await api.request("GET", f"/appointments/{appointment.id}/invitations")
    assert response.status_code == 200
    listed = response.json()
    assert [i["id"] for i in listed["data"]] == ids[::-1]
    assert listed["meta"]["has_more"] is False
    response = await api.request(
        "GET", f"/appointments/{appointment.id}/invitations", params={"limit": 2, "offset": 1}
    )
    page = response.json()
    assert [i["id"] for i in page["data"]] == ids[1::-1]
    assert page["meta"]["has_more"] is False
    assert page["meta"]["offset"] == 1
    response = await api.request(
        "GET", f"/appointments/{appointment.id}/invitations", params={"limit": 1}
    )
    assert response.json()["meta"]["next_offset"] == 1

    for invitation_id in ids:
        got = await api.until(invitation_id, status="sent")
        assert got["appointment_id"] == appointment.id
    assert len(smtp.inbox.envelopes) == 4


async def test_an_idempotency_key_sends_once(serve: Serve, smtp: Smtp) -> None:
    node = await serve(**smtp.settings(), **FAST)
    api = await api_for(node)
    appointment, _ = await make_appointment(ctx_of(node))
    path = f"/appointments/{appointment.id}/invitations"
    headers = {"Idempotency-Key": "click-1"}
    first = await api.request("POST", path, json={}, headers=headers)
    again = await api.request("POST", path, json={}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert first.json()["data"]["id"] == again.json()["data"]["id"]
    other = await api.request("POST", path, json={"to": "x@example.net"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    await api.until(first.json()["data"]["id"], status="sent")
    listed = await api.request("GET", path)
    assert len(listed.json()["data"]) == 1


async def test_openapi_describes_the_responses(serve: Serve, smtp: Smtp) -> None:
    node = await serve(**smtp.settings(), **FAST)
    api = await api_for(node)
    appointment, _ = await make_appointment(ctx_of(node))
    created = (await api.send(appointment.id))["data"]

    document = (await api.request("GET", "/openapi.json")).json()
    schema = document["components"]["schemas"]["Invitation"]
    assert set(schema["properties"]) == set(created)
    assert set(schema["required"]) == set(created)
    assert schema["additionalProperties"] is False
    assert schema["properties"]["status"]["enum"] == ["pending", "sent", "failed"]
    paths = document["paths"]
    post = paths["/appointments/{appointment_id}/invitations"]["post"]
    assert post["operationId"] == "createInvitation"
    assert set(post["responses"]) == {"201", "400", "401", "404", "409", "422", "503"}
    assert post["requestBody"]["required"] is False
    body = document["components"]["schemas"]["InvitationCreate"]
    assert set(body["properties"]) == {"channel", "to"}
    assert [p["name"] for p in post["parameters"]] == ["appointment_id", "Idempotency-Key"]
    listing = paths["/appointments/{appointment_id}/invitations"]["get"]
    assert listing["responses"]["200"]["content"]["application/json"]["schema"]["properties"][
        "data"
    ] == {"type": "array", "items": {"$ref": "#/components/schemas/Invitation"}}
    assert paths["/invitations/{invitation_id}"]["get"]["operationId"] == "getInvitation"
