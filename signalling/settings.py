"""Every limit and setting of a node, read once at start from the environment and flags.

`Settings.from_env` reads ``VESTIBULE_*`` variables (see README "Configuration"); the CLI
overrides some of them with flags. Nothing else in the server reads the environment.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from admission.policy import DEFAULT_HOST_ABSENCE
from admission.tokens import KeyRing, new_secret
from admission.window import DEFAULT_CLOSES_AFTER, DEFAULT_OPENS_BEFORE
from signalling.ice import ice_servers_for
from signalling.redis_client import cluster_url

KEYS_FILE = "signing-keys.json"


class ConfigError(ValueError):
    """A setting has a value the server cannot use; the message names it."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection limits."""

    hello_timeout: float = 10.0  # seconds from accept to a valid hello
    max_message_bytes: int = 64 * 1024  # larger frames get frame_too_large
    transport_max_bytes: int = 1024 * 1024  # larger frames close the socket (1009)
    outbox: int = 512  # queued outgoing messages before a slow consumer is cut off
    rate_per_second: float = 50.0  # sustained client messages per second
    rate_burst: int = 200  # and the burst above it
    idle_timeout: float = 60.0  # close when the client sends nothing this long
    heartbeat_interval: float = 20.0  # what welcome tells the client to ping at
    # Before the hello (signalling.gate, signalling.uvicorn_server):
    header_timeout: float = 10.0  # seconds from TCP accept to the end of the request headers
    max_unauthenticated: int = 4096  # sockets accepted and not authenticated yet, per node
    max_unauthenticated_per_address: int = 256  # ...and per client IP address


@dataclass(frozen=True, slots=True)
class Settings:
    keyring: KeyRing
    # Keys the participant ids of booked people (HMAC of room, role and the clinic's id for
    # them), so that an id seen in a log or an event gives nothing back. None: derived from
    # the key ring (`participant_key`).
    pseudonym_key: bytes | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("vestibule-data")
    public_url: str | None = None  # base of join links; default http://host:port
    limits: Limits = field(default_factory=Limits)
    resume_grace: float = 30.0  # a lost participant keeps its place this long
    host_absence: float = DEFAULT_HOST_ABSENCE  # a call without a host ends after this long
    # How long what a visit leaves behind is kept (README "Security and privacy"): a room's
    # events, a link's record, an appointment's contact details, after they are over.
    retention: float = 30 * 86400.0
    audit_retention: float = 365 * 86400.0  # who admitted or denied whom, and when
    retention_every: float = 60.0  # how often rooms due for retention are looked at
    resume_ttl: float = 12 * 3600.0  # lifetime of a resume token
    sweep_interval: float = 1.0  # how often grace periods are checked
    window_opens_before: float = DEFAULT_OPENS_BEFORE
    window_closes_after: float = DEFAULT_CLOSES_AFTER
    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: str | None = None
    turn_ttl: float = 3600.0
    web_dir: Path | None = None
    log_level: str = "info"
    redis_url: str | None = None  # None: run an embedded redis-server in data_dir
    # A Redis Cluster (signalling.redis_client): also chosen by a redis+cluster:// URL.
    redis_cluster: bool = False
    # Replicas an append waits for (WAIT) before it is acknowledged: None is 1 on a
    # cluster (an acknowledged event survives a failover), 0 on one Redis.
    redis_wait_replicas: int | None = None
    redis_wait_timeout: float = 1.0  # seconds an append waits for them, then `unavailable`
    node_timeout: float = 5.0  # a node silent this long is dead; survivors clean up
    # Invitations (signalling.outbox, signalling.channels). A channel without its settings
    # is off: sending through it is refused when the invitation is created.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_from: str | None = None  # the From address; needed with smtp_host
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True  # upgrade the connection with STARTTLS before sending
    webhook_url: str | None = None  # receives a JSON POST per invitation (SMS gateway, ...)
    webhook_secret: str | None = None  # signs each POST with HMAC-SHA256
    invitation_max_attempts: int = 5  # attempts per invitation, the first one included
    invitation_backoff: float = 2.0  # seconds before the first retry, doubling each time
    invitation_backoff_max: float = 300.0  # ...up to this
    delivery_timeout: float = 15.0  # one attempt: connect, send, answer
    delivery_claim_idle: float = 60.0  # a dead node's unfinished deliveries move after this
    delivery_poll: float = 1.0  # how often due retries are looked for
    # Self-booking (signalling.api.booking, signalling.calendar).
    hold_seconds: float = 900.0  # how long a patient's hold on a slot lasts unconfirmed
    booking_notice: float = 3600.0  # the soonest a slot may start, seconds from now
    slot_minutes: int = 30  # slot length of windows that name none
    hold_sweep: float = 5.0  # how often a node expires holds and repairs half-done steps
    # The clinician's console (signalling.api.sessions): how long a sign-in lasts.
    console_session: float = 12 * 3600.0
    # Event webhooks (signalling.webhooks): where the room and appointment events go. Off
    # without a URL; a URL needs the secret that signs each POST.
    events_url: str | None = None
    events_secret: str | None = None
    events_max_attempts: int = 20  # attempts per event before it is set aside (dead letter)
    events_backoff: float = 1.0  # seconds before the first retry, doubling each time
    events_backoff_max: float = 300.0  # ...up to this
    events_claim_idle: float = 30.0  # a dead node's unfinished rooms move after this

    @property
    def participant_key(self) -> bytes:
        """The key participant ids are derived with: ``pseudonym_key``, or else one derived
        from the key ring's first key by id, so every node of a deployment (same keys) gets
        the same ids. Retiring that key changes the ids: set VESTIBULE_PSEUDONYM_KEY to keep
        them across rotations."""
        if self.pseudonym_key is not None:
            return self.pseudonym_key
        first = min(self.keyring.keys)
        return hmac.new(self.keyring.keys[first], _PSEUDONYM_LABEL, hashlib.sha256).digest()

    @property
    def cluster(self) -> bool:
        """Whether the Redis is a Redis Cluster: set, or named by the URL's scheme."""
        url = self.redis_url
        return self.redis_cluster or (url is not None and cluster_url(url) is not None)

    @property
    def wait_replicas(self) -> int:
        """How many replicas each append waits for (`redis_wait_replicas`, else 1 on a
        cluster and 0 on one Redis)."""
        if self.redis_wait_replicas is not None:
            return self.redis_wait_replicas
        return 1 if self.cluster else 0

    @property
    def heartbeat_every(self) -> float:
        """How often a node says it is alive: five times per node timeout, so a live node
        is never taken for dead by a late heartbeat or two."""
        return self.node_timeout / 5

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from ``VESTIBULE_*`` variables, then ``overrides``.

        The signing keys come from VESTIBULE_KEYS (``kid:base64secret,...``, with
        VESTIBULE_SIGNING_KEY naming the one that signs) or, when unset, from the data
        directory, where a key is created on first start."""
        env = os.environ if env is None else env
        data_dir = Path(
            str(overrides.pop("data_dir", None) or env.get("VESTIBULE_DATA_DIR", "vestibule-data"))
        )
        default = Limits()
        limits = Limits(
            hello_timeout=_float(env, "VESTIBULE_HELLO_TIMEOUT", default.hello_timeout),
            max_message_bytes=_int(env, "VESTIBULE_MAX_MESSAGE_BYTES", default.max_message_bytes),
            transport_max_bytes=_int(
                env, "VESTIBULE_TRANSPORT_MAX_BYTES", default.transport_max_bytes
            ),
            outbox=_int(env, "VESTIBULE_OUTBOX", default.outbox),
            rate_per_second=_float(env, "VESTIBULE_RATE", default.rate_per_second),
            rate_burst=_int(env, "VESTIBULE_RATE_BURST", default.rate_burst),
            idle_timeout=_float(env, "VESTIBULE_IDLE_TIMEOUT", default.idle_timeout),
            header_timeout=_float(env, "VESTIBULE_HEADER_TIMEOUT", default.header_timeout),
            max_unauthenticated=_int(
                env, "VESTIBULE_MAX_UNAUTHENTICATED", default.max_unauthenticated
            ),
            max_unauthenticated_per_address=_int(
                env,
                "VESTIBULE_MAX_UNAUTHENTICATED_PER_ADDRESS",
                default.max_unauthenticated_per_address,
            ),
        )
        keyring = _keyring(env, data_dir)
        settings = cls(
            keyring=keyring,
            pseudonym_key=_pseudonym_key(env, data_dir),
            host=env.get("VESTIBULE_HOST", "127.0.0.1"),
            port=_int(env, "VESTIBULE_PORT", 8080),
            data_dir=data_dir,
            public_url=env.get("VESTIBULE_PUBLIC_URL") or None,
            limits=limits,
            resume_grace=_float(env, "VESTIBULE_RESUME_GRACE", 30.0),
            host_absence=_float(env, "VESTIBULE_HOST_ABSENCE", DEFAULT_HOST_ABSENCE),
            retention=_float(env, "VESTIBULE_RETENTION_DAYS", 30.0) * 86400.0,
            audit_retention=_float(env, "VESTIBULE_AUDIT_DAYS", 365.0) * 86400.0,
            window_opens_before=_float(env, "VESTIBULE_WINDOW_BEFORE", DEFAULT_OPENS_BEFORE),
            window_closes_after=_float(env, "VESTIBULE_WINDOW_AFTER", DEFAULT_CLOSES_AFTER),
            stun_urls=_list(env, "VESTIBULE_STUN_URLS"),
            turn_urls=_list(env, "VESTIBULE_TURN_URLS"),
            turn_secret=env.get("VESTIBULE_TURN_SECRET") or None,
            turn_ttl=_float(env, "VESTIBULE_TURN_TTL", 3600.0),
            web_dir=_web_dir(env),
            log_level=env.get("VESTIBULE_LOG_LEVEL", "info"),
            redis_url=env.get("VESTIBULE_REDIS_URL") or env.get("REDIS_URL") or None,
            redis_cluster=_bool(env, "VESTIBULE_REDIS_CLUSTER", False),
            redis_wait_replicas=_optional_int(env, "VESTIBULE_REDIS_WAIT"),
            redis_wait_timeout=_float(env, "VESTIBULE_REDIS_WAIT_TIMEOUT", 1.0),
            node_timeout=_float(env, "VESTIBULE_NODE_TIMEOUT", 5.0),
            smtp_host=env.get("VESTIBULE_SMTP_HOST") or None,
            smtp_port=_int(env, "VESTIBULE_SMTP_PORT", 587),
            smtp_from=env.get("VESTIBULE_SMTP_FROM") or None,
            smtp_username=env.get("VESTIBULE_SMTP_USERNAME") or None,
            smtp_password=env.get("VESTIBULE_SMTP_PASSWORD") or None,
            smtp_starttls=_bool(env, "VESTIBULE_SMTP_STARTTLS", True),
            webhook_url=env.get("VESTIBULE_WEBHOOK_URL") or None,
            webhook_secret=env.get("VESTIBULE_WEBHOOK_SECRET") or None,
            invitation_max_attempts=_int(env, "VESTIBULE_INVITATION_MAX_ATTEMPTS", 5),
            invitation_backoff=_float(env, "VESTIBULE_INVITATION_BACKOFF", 2.0),
            invitation_backoff_max=_float(env, "VESTIBULE_INVITATION_BACKOFF_MAX", 300.0),
            delivery_timeout=_float(env, "VESTIBULE_DELIVERY_TIMEOUT", 15.0),
            delivery_claim_idle=_float(env, "VESTIBULE_DELIVERY_CLAIM_IDLE", 60.0),
            delivery_poll=_float(env, "VESTIBULE_DELIVERY_POLL", 1.0),
            hold_seconds=_float(env, "VESTIBULE_HOLD_SECONDS", 900.0),
            booking_notice=_float(env, "VESTIBULE_BOOKING_NOTICE", 3600.0),
            slot_minutes=_int(env, "VESTIBULE_SLOT_MINUTES", 30),
            hold_sweep=_float(env, "VESTIBULE_HOLD_SWEEP", 5.0),
            console_session=_float(env, "VESTIBULE_CONSOLE_SESSION", 12 * 3600.0),
            events_url=env.get("VESTIBULE_EVENTS_URL") or None,
            events_secret=env.get("VESTIBULE_EVENTS_SECRET") or None,
            events_max_attempts=_int(env, "VESTIBULE_EVENTS_MAX_ATTEMPTS", 20),
            events_backoff=_float(env, "VESTIBULE_EVENTS_BACKOFF", 1.0),
            events_backoff_max=_float(env, "VESTIBULE_EVENTS_BACKOFF_MAX", 300.0),
            events_claim_idle=_float(env, "VESTIBULE_EVENTS_CLAIM_IDLE", 30.0),
        )
        settings = replace(settings, **overrides)  # type: ignore[arg-type]
        if settings.turn_urls and not settings.turn_secret:
            raise ConfigError("VESTIBULE_TURN_URLS needs VESTIBULE_TURN_SECRET")
        try:  # the ICE servers every welcome carries: refuse a bad URL now, not per hello
            ice_servers_for(
                "check",
                0.0,
                stun_urls=settings.stun_urls,
                turn_urls=settings.turn_urls,
                turn_secret=settings.turn_secret,
                turn_ttl=settings.turn_ttl,
            )
        except ValueError as exc:
            raise ConfigError(f"ICE servers: {exc}") from None
        if settings.node_timeout <= 0:
            raise ConfigError("VESTIBULE_NODE_TIMEOUT must be positive")
        if settings.redis_wait_timeout <= 0:
            raise ConfigError("VESTIBULE_REDIS_WAIT_TIMEOUT must be more than 0")
        if settings.limits.header_timeout <= 0:
            raise ConfigError("VESTIBULE_HEADER_TIMEOUT must be more than 0")
        if settings.limits.max_unauthenticated < 1:
            raise ConfigError("VESTIBULE_MAX_UNAUTHENTICATED must be at least 1")
        if settings.limits.max_unauthenticated_per_address < 1:
            raise ConfigError("VESTIBULE_MAX_UNAUTHENTICATED_PER_ADDRESS must be at least 1")
        if settings.limits.idle_timeout <= 2 * settings.limits.heartbeat_interval:
            raise ConfigError(
                "VESTIBULE_IDLE_TIMEOUT must be more than twice the heartbeat interval "
                f"({settings.limits.heartbeat_interval:g} s)"
            )
        _check_delivery(settings)
        _check_booking(settings)
        _check_events(settings)
        return settings


def _check_events(settings: Settings) -> None:
    """Refuse console and event webhook settings that cannot work."""
    if settings.console_session <= 0:
        raise ConfigError("VESTIBULE_CONSOLE_SESSION must be more than 0")
    url = settings.events_url
    if url and not url.startswith(("https://", "http://")):
        raise ConfigError("VESTIBULE_EVENTS_URL must be an http:// or https:// URL")
    if url and not settings.events_secret:
        raise ConfigError("VESTIBULE_EVENTS_URL needs VESTIBULE_EVENTS_SECRET (events are signed)")
    if settings.events_max_attempts < 1:
        raise ConfigError("VESTIBULE_EVENTS_MAX_ATTEMPTS must be at least 1")
    if settings.events_backoff_max < settings.events_backoff:
        raise ConfigError(
            "VESTIBULE_EVENTS_BACKOFF_MAX must not be less than VESTIBULE_EVENTS_BACKOFF"
        )
    if settings.events_claim_idle <= settings.delivery_timeout:
        raise ConfigError(
            "VESTIBULE_EVENTS_CLAIM_IDLE must be more than VESTIBULE_DELIVERY_TIMEOUT "
            f"({settings.delivery_timeout:g} s)"
        )


def _check_booking(settings: Settings) -> None:
    """Refuse self-booking settings that cannot work."""
    if settings.hold_seconds <= 0:
        raise ConfigError("VESTIBULE_HOLD_SECONDS must be more than 0")
    if settings.hold_sweep <= 0:
        raise ConfigError("VESTIBULE_HOLD_SWEEP must be more than 0")
    if not 5 <= settings.slot_minutes <= 480:
        raise ConfigError("VESTIBULE_SLOT_MINUTES must be from 5 to 480")


def _check_delivery(settings: Settings) -> None:
    """Refuse channel and retry settings that cannot work."""
    if settings.smtp_host and not settings.smtp_from:
        raise ConfigError("VESTIBULE_SMTP_HOST needs VESTIBULE_SMTP_FROM")
    if settings.smtp_password and not settings.smtp_username:
        raise ConfigError("VESTIBULE_SMTP_PASSWORD needs VESTIBULE_SMTP_USERNAME")
    if settings.webhook_url and not settings.webhook_url.startswith(("https://", "http://")):
        raise ConfigError("VESTIBULE_WEBHOOK_URL must be an http:// or https:// URL")
    if settings.invitation_max_attempts < 1:
        raise ConfigError("VESTIBULE_INVITATION_MAX_ATTEMPTS must be at least 1")
    if settings.delivery_poll <= 0:
        raise ConfigError("VESTIBULE_DELIVERY_POLL must be more than 0")
    if settings.invitation_backoff_max < settings.invitation_backoff:
        raise ConfigError(
            "VESTIBULE_INVITATION_BACKOFF_MAX must not be less than VESTIBULE_INVITATION_BACKOFF"
        )
    # An attempt that outlives the claim time would be taken over by another node while it
    # is still running, and the patient would get the link twice.
    if settings.delivery_claim_idle <= 2 * settings.delivery_timeout:
        raise ConfigError(
            "VESTIBULE_DELIVERY_CLAIM_IDLE must be more than twice VESTIBULE_DELIVERY_TIMEOUT "
            f"({settings.delivery_timeout:g} s)"
        )


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def _optional_int(env: Mapping[str, str], name: str) -> int | None:
    return _int(env, name, 0) if env.get(name) else None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    return value


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def _web_dir(env: Mapping[str, str]) -> Path | None:
    configured = env.get("VESTIBULE_WEB_DIR")
    if configured:
        return Path(configured)
    bundled = Path(__file__).resolve().parent.parent / "web"  # a source checkout
    return bundled if bundled.is_dir() else None


def _keyring(env: Mapping[str, str], data_dir: Path) -> KeyRing:
    configured = env.get("VESTIBULE_KEYS")
    if configured:
        keys: dict[str, bytes] = {}
        for item in configured.split(","):
            kid, _, secret = item.strip().partition(":")
            try:
                keys[kid] = base64.b64decode(secret, validate=True)
            except binascii.Error:
                raise ConfigError(f"VESTIBULE_KEYS: key {kid!r} is not base64") from None
        signing = env.get("VESTIBULE_SIGNING_KEY") or next(iter(keys))
        try:
            return KeyRing(keys, signing)
        except ValueError as exc:
            raise ConfigError(f"VESTIBULE_KEYS: {exc}") from None
    return load_or_create_keys(data_dir)


_PSEUDONYM_LABEL = b"vestibule participant ids v1"


def _pseudonym_key(env: Mapping[str, str], data_dir: Path) -> bytes | None:
    """VESTIBULE_PSEUDONYM_KEY (base64, 32 bytes or more), else the one kept in the data
    directory's key file (embedded default), else None (derived from the key ring)."""
    configured = env.get("VESTIBULE_PSEUDONYM_KEY")
    if configured:
        try:
            key = base64.b64decode(configured, validate=True)
        except binascii.Error:
            raise ConfigError("VESTIBULE_PSEUDONYM_KEY is not base64") from None
        if len(key) < 32:
            raise ConfigError("VESTIBULE_PSEUDONYM_KEY must be at least 32 bytes")
        return key
    if env.get("VESTIBULE_KEYS"):
        return None
    path = data_dir / KEYS_FILE
    try:
        record = json.loads(path.read_text())
        return base64.b64decode(record["pseudonym"]) if "pseudonym" in record else None
    except (OSError, ValueError, TypeError, KeyError):
        return None


def load_or_create_keys(data_dir: Path) -> KeyRing:
    """The key ring kept in ``data_dir``; created (readable by the owner only) if absent."""
    path = data_dir / KEYS_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        kid = "k" + secrets.token_hex(4)
        record = {
            "signing": kid,
            "keys": {kid: base64.b64encode(new_secret()).decode()},
            "pseudonym": base64.b64encode(new_secret()).decode(),
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.chmod(0o600)
        tmp.replace(path)
    try:
        record = json.loads(path.read_text())
        keys = {kid: base64.b64decode(secret) for kid, secret in record["keys"].items()}
        return KeyRing(keys, record["signing"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path} is not a valid key file: {exc}") from None
