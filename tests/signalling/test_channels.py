"""The channels against real servers on loopback, and their settings.

Each failure must come back as a short reason with no server text in it (the server's
text may quote the address), and as permanent only when waiting cannot help.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from rooms.appointments import Appointment, ContactChannel, RemoteChannel, book
from rooms.ids import AppointmentId, RoomId
from rooms.invitations import Invitation, InvitationId
from signalling.channels import (
    DeliveryError,
    EmailChannel,
    compose_email,
    configured,
    open_channels,
    starts_at_text,
)
from signalling.settings import ConfigError, Settings
from tests.signalling.conftest import EPOCH, FakeClock, build_settings
from tests.smtp import SmtpServer
from tests.support import KEYS_ENV, free_port

SENDER = "clinic@example.org"
LINK = "http://127.0.0.1:8080/join/rm_1#secret-token"


def appointment(link: str | None = LINK) -> Appointment:
    booked = book(
        AppointmentId("apt_1"),
        title="Follow-up",
        start_time=EPOCH + 86400,
        end_time=EPOCH + 88200,
        now=EPOCH,
        is_remote=True,
        remote_channel=RemoteChannel.VIDEO,
    )
    if link is None:
        return booked
    return booked.with_video(RoomId("rm_1"), video_link=link, meeting_url="m", now=EPOCH)


def invitation(
    to: str = "pat@example.org", channel: ContactChannel = ContactChannel.EMAIL
) -> Invitation:
    return Invitation.new(InvitationId("inv_1"), AppointmentId("apt_1"), channel, to, now=EPOCH)


# --- the message -----------------------------------------------------------------------------


def test_the_email_carries_the_link_and_time_and_nothing_in_the_subject() -> None:
    message = compose_email(invitation(), appointment(), sender=SENDER, now=EPOCH)
    assert message["Subject"] == "Your video appointment link"
    assert message["Message-ID"] == "<inv_1@example.org>"
    assert message["Date"] == "Tue, 14 Nov 2023 22:13:20 +0000"
    body = message.get_content()
    assert LINK in body
    assert "Follow-up" in body
    assert starts_at_text(appointment()) == "Wednesday 15 November 2023, 22:13 UTC"
    assert starts_at_text(appointment()) in body


def test_an_email_needs_a_link_and_a_clean_address() -> None:
    with pytest.raises(DeliveryError, match="no video link") as raised:
        compose_email(invitation(), appointment(link=None), sender=SENDER, now=EPOCH)
    assert raised.value.permanent
    with pytest.raises(DeliveryError, match="invalid address") as raised:
        compose_email(invitation("a@b\r\nBcc: c@d"), appointment(), sender=SENDER, now=EPOCH)
    assert raised.value.permanent


# --- SMTP ------------------------------------------------------------------------------------


class Refusing:
    """Refuses every recipient with ``code``."""

    def __init__(self, code: int) -> None:
        self.code = code

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        return f"{self.code} no thanks, {address}"


class Accepting:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


def check_password(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data == (b"clinic", b"right")
    return AuthResult(success=ok)


@contextlib.contextmanager
def smtp_server(handler: object, **options: Any) -> Iterator[int]:
    port = free_port()
    controller = SmtpServer(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def email_channel(port: int, **options: Any) -> EmailChannel:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "sender": SENDER,
        "username": None,
        "password": None,
        "starttls": False,
        "timeout": 5.0,
        "clock": FakeClock(),
    }
    values.update(options)
    return EmailChannel(**values)


@pytest.mark.parametrize(("code", "permanent"), [(550, True), (450, False)])
async def test_a_refused_recipient(code: int, permanent: bool) -> None:
    with smtp_server(Refusing(code)) as port, pytest.raises(DeliveryError) as raised:
        await email_channel(port).send(invitation(), appointment())
    assert raised.value.reason == f"smtp: {code} recipient refused"
    assert raised.value.permanent is permanent
    assert "pat@" not in str(raised.value)


async def test_starttls_that_the_server_lacks_is_an_error() -> None:
    with smtp_server(Accepting()) as port, pytest.raises(DeliveryError) as raised:
        await email_channel(port, starttls=True).send(invitation(), appointment())
    assert raised.value.reason == "smtp: the server does not support STARTTLS"
    assert not raised.value.permanent


async def test_login() -> None:
    handler = Accepting()
    options = {"authenticator": check_password, "auth_require_tls": False}
    with smtp_server(handler, **options) as port:
        right = email_channel(port, username="clinic", password="right")
        await right.send(invitation(), appointment())
        wrong = email_channel(port, username="clinic", password="wrong")
        with pytest.raises(DeliveryError) as raised:
            await wrong.send(invitation(), appointment())
    assert len(handler.envelopes) == 1
    # smtplib tries each mechanism the server offers; aiosmtpd answers the first with 535
    # and hangs up on the next: either way a short reason, without the credentials.
    assert raised.value.reason in ("smtp: 535 from the server", "smtp: the server disconnected")
    assert not raised.value.permanent


async def test_nobody_listening() -> None:
    with pytest.raises(DeliveryError) as raised:
        await email_channel(free_port()).send(invitation(), appointment())
    assert raised.value.reason == "smtp: connection refused"


# --- webhook ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """Accepts connections and never answers."""
    port = free_port()
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", port)
    try:
        async with server:
            yield port
    finally:
        for writer in held:
            writer.close()


async def webhook_failure(settings: Settings) -> DeliveryError:
    async with open_channels(settings, FakeClock()) as channels:
        with pytest.raises(DeliveryError) as raised:
            await channels[ContactChannel.WEBHOOK].send(
                invitation("+15550100", ContactChannel.WEBHOOK), appointment()
            )
    return raised.value


async def test_webhook_network_failures_are_retried(tmp_path: Path) -> None:
    closed = build_settings(tmp_path, webhook_url=f"http://127.0.0.1:{free_port()}/x?token=t")
    error = await webhook_failure(closed)
    assert error.reason == "webhook: ConnectError"
    assert not error.permanent
    async with silent_server() as port:
        slow = replace(closed, webhook_url=f"http://127.0.0.1:{port}/x", delivery_timeout=0.2)
        error = await webhook_failure(slow)
    assert error.reason == "webhook: timed out"
    assert not error.permanent


async def test_webhook_refuses_a_missing_link(tmp_path: Path) -> None:
    settings = build_settings(tmp_path, webhook_url="http://127.0.0.1:1/x")
    async with open_channels(settings, FakeClock()) as channels:
        with pytest.raises(DeliveryError, match="no video link"):
            await channels[ContactChannel.WEBHOOK].send(invitation(), appointment(link=None))


# --- settings --------------------------------------------------------------------------------


def from_env(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({**KEYS_ENV, **env}, data_dir=tmp_path)


def test_no_channel_by_default(tmp_path: Path) -> None:
    settings = from_env(tmp_path)
    assert configured(settings) == frozenset()
    assert settings.invitation_max_attempts == 5
    assert settings.invitation_backoff == 2.0
    assert settings.smtp_starttls is True


def test_channel_settings_from_the_environment(tmp_path: Path) -> None:
    settings = from_env(
        tmp_path,
        VESTIBULE_SMTP_HOST="mail.example.org",
        VESTIBULE_SMTP_PORT="2525",
        VESTIBULE_SMTP_FROM=SENDER,
        VESTIBULE_SMTP_USERNAME="clinic",
        VESTIBULE_SMTP_PASSWORD="pw",
        VESTIBULE_SMTP_STARTTLS="false",
        VESTIBULE_WEBHOOK_URL="https://sms.example.org/send",
        VESTIBULE_WEBHOOK_SECRET="s",
        VESTIBULE_INVITATION_MAX_ATTEMPTS="3",
        VESTIBULE_INVITATION_BACKOFF="0.5",
        VESTIBULE_INVITATION_BACKOFF_MAX="10",
        VESTIBULE_DELIVERY_TIMEOUT="5",
        VESTIBULE_DELIVERY_CLAIM_IDLE="30",
        VESTIBULE_DELIVERY_POLL="0.5",
    )
    assert configured(settings) == {ContactChannel.EMAIL, ContactChannel.WEBHOOK}
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_from) == (
        "mail.example.org",
        2525,
        SENDER,
    )
    assert (settings.smtp_username, settings.smtp_password) == ("clinic", "pw")
    assert settings.smtp_starttls is False
    assert (settings.webhook_url, settings.webhook_secret) == ("https://sms.example.org/send", "s")
    assert settings.invitation_max_attempts == 3
    assert (settings.invitation_backoff, settings.invitation_backoff_max) == (0.5, 10.0)
    assert (settings.delivery_timeout, settings.delivery_claim_idle) == (5.0, 30.0)
    assert settings.delivery_poll == 0.5


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VESTIBULE_SMTP_HOST": "mail"}, "needs VESTIBULE_SMTP_FROM"),
        ({"VESTIBULE_SMTP_PASSWORD": "pw"}, "needs VESTIBULE_SMTP_USERNAME"),
        ({"VESTIBULE_SMTP_STARTTLS": "maybe"}, "must be true or false"),
        ({"VESTIBULE_WEBHOOK_URL": "ftp://x"}, "http:// or https://"),
        ({"VESTIBULE_INVITATION_MAX_ATTEMPTS": "0"}, "at least 1"),
        ({"VESTIBULE_INVITATION_BACKOFF": "20", "VESTIBULE_INVITATION_BACKOFF_MAX": "10"},
         "must not be less"),
        ({"VESTIBULE_DELIVERY_CLAIM_IDLE": "20"}, "more than twice"),
        ({"VESTIBULE_DELIVERY_POLL": "0"}, "more than 0"),
    ],
)  # fmt: skip
def test_impossible_channel_settings(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_env(tmp_path, **env)
