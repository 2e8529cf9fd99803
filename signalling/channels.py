"""Channels: how an invitation reaches the patient.

A channel is anything with ``async send(invitation, appointment)`` that returns once the
message is accepted and raises `DeliveryError` otherwise. Two ship here:

- `EmailChannel`: a plain-text email over SMTP (stdlib ``smtplib`` in a worker thread),
  optionally upgraded with STARTTLS and authenticated.
- `WebhookChannel`: a JSON POST to a URL of the operator's (an SMS gateway, a CRM, ...),
  signed with HMAC-SHA256 when a secret is configured. Any 2xx answer means sent.

Delivery is at least once: a node that dies between a send and recording it leaves the
invitation to be sent again by another node. Both channels give the receiver a stable key to
drop such repeats: the email's Message-ID and the webhook's ``Idempotency-Key`` header are
derived from the invitation id.

Failure reasons (`DeliveryError.reason`) are stored and shown to the clinician, so they name
what failed ("smtp: connection refused", "webhook: HTTP 503") and never carry the server's
own text, which may echo the address.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import hmac
import json
import smtplib
import ssl
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Protocol

import httpx

from rooms.appointments import Appointment, ContactChannel
from rooms.invitations import Invitation
from signalling.api.schema import format_time
from signalling.settings import Settings

SUBJECT = "Your video appointment link"  # the same for everyone: no patient data
SIGNATURE_HEADER = "X-Vestibule-Signature"
TIMESTAMP_HEADER = "X-Vestibule-Timestamp"


class DeliveryError(Exception):
    """A send did not succeed. ``reason`` is short and free of patient data;
    ``permanent`` says that trying again cannot help (the invitation fails at once)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class Channel(Protocol):
    async def send(self, invitation: Invitation, appointment: Appointment) -> None:
        """Deliver the appointment's join link to ``invitation.to``; raise DeliveryError."""
        ...


def configured(settings: Settings) -> frozenset[ContactChannel]:
    """The channels these settings make available."""
    out = set()
    if settings.smtp_host and settings.smtp_from:
        out.add(ContactChannel.EMAIL)
    if settings.webhook_url:
        out.add(ContactChannel.WEBHOOK)
    return frozenset(out)


@contextlib.asynccontextmanager
async def open_channels(
    settings: Settings, clock: Callable[[], float]
) -> AsyncIterator[dict[ContactChannel, Channel]]:
    """The configured channels, ready to send; their connections close on exit."""
    channels: dict[ContactChannel, Channel] = {}
    if settings.smtp_host and settings.smtp_from:
        channels[ContactChannel.EMAIL] = EmailChannel(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_from,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            timeout=settings.delivery_timeout,
            clock=clock,
        )
    # trust_env=False: settings are read once, from VESTIBULE_* only (no proxy variables).
    async with httpx.AsyncClient(
        timeout=settings.delivery_timeout, follow_redirects=False, trust_env=False
    ) as client:
        if settings.webhook_url:
            channels[ContactChannel.WEBHOOK] = WebhookChannel(
                client, settings.webhook_url, settings.webhook_secret, clock
            )
        yield channels


def starts_at_text(appointment: Appointment) -> str:
    """The start time as a person reads it, in UTC (the patient's zone is not known)."""
    moment = datetime.datetime.fromtimestamp(appointment.start_time, datetime.UTC)
    return moment.strftime("%A %d %B %Y, %H:%M UTC")


def compose_email(
    invitation: Invitation, appointment: Appointment, *, sender: str, now: float
) -> EmailMessage:
    """The invitation email: fixed subject, plain text with the title, time and link."""
    link = appointment.video_link
    if not link:
        raise DeliveryError("the appointment has no video link", permanent=True)
    domain = sender.rpartition("@")[2] or "vestibule.invalid"
    message = EmailMessage()
    try:
        message["From"] = sender
        message["To"] = invitation.to
    except ValueError:  # a line break or the like: the policy refuses the header
        raise DeliveryError("email: invalid address", permanent=True) from None
    message["Subject"] = SUBJECT
    message["Date"] = format_datetime(datetime.datetime.fromtimestamp(now, datetime.UTC))
    message["Message-ID"] = f"<{invitation.id}@{domain}>"
    message.set_content(
        f"You have a video appointment: {appointment.title}\n"
        f"It starts {starts_at_text(appointment)}.\n"
        "\n"
        "Join it from this link a few minutes before the start:\n"
        f"{link}\n"
        "\n"
        "You will wait in a waiting room until your clinician lets you in. Use a recent\n"
        "browser and allow it to use your camera and microphone.\n"
        "\n"
        "The link is for you alone: please do not share it.\n"
    )
    return message


class EmailChannel:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None,
        password: str | None,
        starttls: bool,
        timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self.password = password
        self.starttls = starttls
        self.timeout = timeout
        self.clock = clock

    async def send(self, invitation: Invitation, appointment: Appointment) -> None:
        message = compose_email(invitation, appointment, sender=self.sender, now=self.clock())
        # smtplib blocks: a worker thread keeps the event loop free. A cancelled send still
        # finishes (or times out) in its thread; that is the at-least-once case above.
        await asyncio.to_thread(self._deliver, message, invitation.to)

    def _deliver(self, message: EmailMessage, to: str) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username is not None:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(message, from_addr=self.sender, to_addrs=[to])
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            code = codes[0] if codes else 0
            # 5xx: the server will not take this address, however long we wait.
            raise DeliveryError(f"smtp: {code} recipient refused", permanent=code >= 500) from None
        except smtplib.SMTPNotSupportedError:
            raise DeliveryError("smtp: the server does not support STARTTLS") from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(f"smtp: {exc.smtp_code} from the server") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"smtp: {_network_reason(exc)}") from None


class WebhookChannel:
    """POSTs ``{invitation_id, appointment_id, to, channel, link, starts_at}`` as JSON.

    With a secret, ``X-Vestibule-Timestamp`` carries unix seconds and
    ``X-Vestibule-Signature`` is ``sha256=`` and the hex HMAC-SHA256, keyed by the secret,
    of ``<timestamp>.<body>``: the receiver recomputes it over the raw body and may refuse
    old timestamps to stop replays."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        secret: str | None,
        clock: Callable[[], float],
    ) -> None:
        self.client = client
        self.url = url
        self.secret = secret
        self.clock = clock

    async def send(self, invitation: Invitation, appointment: Appointment) -> None:
        if not appointment.video_link:
            raise DeliveryError("the appointment has no video link", permanent=True)
        payload = {
            "invitation_id": invitation.id,
            "appointment_id": invitation.appointment_id,
            "to": invitation.to,
            "channel": invitation.channel.value,
            "link": appointment.video_link,
            "starts_at": format_time(appointment.start_time),
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "vestibule",
            "Idempotency-Key": invitation.id,
        }
        if self.secret is not None:
            timestamp = str(int(self.clock()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = "sha256=" + sign(self.secret, timestamp, body)
        try:
            response = await self.client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise DeliveryError("webhook: timed out") from None
        except httpx.HTTPError as exc:
            # The exception's text may hold the URL (and a token in it): name the kind only.
            raise DeliveryError(f"webhook: {type(exc).__name__}") from None
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"webhook: HTTP {response.status_code}")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 a webhook receiver checks (see `WebhookChannel`)."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _network_reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return "TLS failed"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return "the server disconnected"
    return type(exc).__name__
