"""Signed join and resume tokens, with key rotation.

A token is ``v1.<kid>.<payload>.<sig>``:

- ``kid`` names the key in the :class:`KeyRing` that signed it;
- ``payload`` is base64url (no padding) of compact JSON of the claims under short keys, plus
  ``"k"``, the :class:`TokenKind`;
- ``sig`` is base64url (no padding) of HMAC-SHA256, keyed by the ``kid`` secret, over the
  ASCII bytes ``v1.<kid>.<payload>``.

Decoding checks, in this order: structure (:class:`MalformedToken`), key id
(:class:`UnknownKey`), signature (:class:`BadSignature`), then - only once the payload is known
to be ours - the claims (:class:`MalformedToken`), the kind (:class:`WrongTokenKind`) and the
validity period (:class:`TokenNotYetValid`, :class:`TokenExpired`). Unsigned data is never
parsed as JSON.

Rotation: add the new key and make it the signing key (:meth:`KeyRing.rotated`); tokens
signed by the old key keep verifying until the old key is dropped (:meth:`KeyRing.without`),
at which point they fail with :class:`UnknownKey`. Keep an old key for at least the longest
token lifetime you issue.

Tokens are bearer secrets: they travel in ``hello`` messages or URL fragments, never in query
strings, and are never logged.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import hashlib
import hmac
import json
import math
import re
import secrets
import types
from collections.abc import Callable, Mapping
from typing import Final, NoReturn, TypeVar

from admission.errors import (
    BadSignature,
    MalformedToken,
    TokenExpired,
    TokenNotYetValid,
    UnknownKey,
    WrongTokenKind,
)
from rooms.ids import AppointmentId, ParticipantId, RoomId
from rooms.roles import Role

__all__ = [
    "MAX_TOKEN_LENGTH",
    "MIN_SECRET_BYTES",
    "VERSION",
    "ConsoleClaims",
    "JoinClaims",
    "KeyRing",
    "ResumeClaims",
    "TokenKind",
    "decode_console",
    "decode_join",
    "decode_resume",
    "encode_console",
    "encode_join",
    "encode_resume",
    "new_secret",
    "new_token_id",
]

VERSION: Final = "v1"
#: Longer strings are rejected before any work is done; encoding refuses to produce them.
MAX_TOKEN_LENGTH: Final = 4096
#: HMAC-SHA256 keys shorter than the hash output weaken it.
MIN_SECRET_BYTES: Final = 32

# Key ids appear inside the token and in error details: keep them short and dot-free.
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_SIG_BYTES: Final = hashlib.sha256().digest_size


class TokenKind(enum.Enum):
    """What a token is for: JOIN admits to a room's waiting flow; RESUME rejoins a session;
    CONSOLE is a clinician's console session (the REST operations of the console)."""

    JOIN = "join"
    RESUME = "resume"
    CONSOLE = "console"


def new_secret() -> bytes:
    """Return a fresh random signing secret of :data:`MIN_SECRET_BYTES` bytes."""
    return secrets.token_bytes(MIN_SECRET_BYTES)


def new_token_id() -> str:
    """Return a fresh random token id (16 url-safe characters) for a claims' ``token_id``."""
    return secrets.token_urlsafe(12)


@dataclasses.dataclass(frozen=True, slots=True)
class KeyRing:
    """The secrets tokens are signed and verified with: every key verifies, one key signs.

    ``keys`` maps a key id (1-64 characters of ``A-Z a-z 0-9 _ -``) to a secret of at least
    :data:`MIN_SECRET_BYTES` bytes; ``signing_key_id`` must be one of them. The mapping is
    copied into a read-only view. Secrets are left out of ``repr``.
    """

    keys: Mapping[str, bytes] = dataclasses.field(repr=False)
    signing_key_id: str

    def __post_init__(self) -> None:
        keys = dict(self.keys)
        if not keys:
            raise ValueError("key ring is empty: give at least one key")
        for key_id, secret in keys.items():
            if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
                raise ValueError(f"invalid key id {key_id!r}: use 1-64 of A-Z a-z 0-9 _ -")
            if not isinstance(secret, bytes):
                raise TypeError(f"secret of key {key_id!r} must be bytes")
            if len(secret) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"secret of key {key_id!r} is too short: {len(secret)} bytes, "
                    f"need at least {MIN_SECRET_BYTES}"
                )
        if self.signing_key_id not in keys:
            raise ValueError(f"signing key {self.signing_key_id!r} is not in the key ring")
        object.__setattr__(self, "keys", types.MappingProxyType(keys))

    @classmethod
    def single(cls, key_id: str, secret: bytes) -> KeyRing:
        """Return a ring of one key, which signs."""
        return cls({key_id: secret}, key_id)

    def rotated(self, key_id: str, secret: bytes) -> KeyRing:
        """Return a ring with ``key_id`` added (or replaced) and made the signing key.

        The previous keys still verify; drop them with :meth:`without` once every token they
        signed has expired.
        """
        return KeyRing({**self.keys, key_id: secret}, key_id)

    def without(self, key_id: str) -> KeyRing:
        """Return a ring without ``key_id``; tokens it signed then fail with UnknownKey."""
        if key_id == self.signing_key_id:
            raise ValueError(f"cannot remove key {key_id!r}: it is the signing key")
        if key_id not in self.keys:
            raise KeyError(key_id)
        return KeyRing({k: v for k, v in self.keys.items() if k != key_id}, self.signing_key_id)


def _check_text(name: str, value: str) -> None:
    if not value:
        raise ValueError(f"{name} must not be empty")


def _check_optional_text(name: str, value: str | None) -> None:
    if value is not None:
        _check_text(name, value)


def _check_time(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of unix seconds, got {value!r}")


def _check_period(not_before: float, expires_at: float) -> None:
    _check_time("not_before", not_before)
    _check_time("expires_at", expires_at)
    if expires_at <= not_before:
        raise ValueError(
            f"token expires before it is valid: expires_at {expires_at} <= not_before {not_before}"
        )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class JoinClaims:
    """What a join token grants: entry to ``room`` in ``role``, within its validity period.

    ``subject`` is the stable id of a booked person (None for a general link); ``name`` the
    display name where known. ``starts_at``/``ends_at`` are the appointment times (both or
    neither), from which the caller derives the join window; ``capacity`` is the booked
    capacity, meaningful on host and appointment tokens. Construction validates the values and
    raises ValueError; a decoded token that fails it is a MalformedToken.
    """

    room: RoomId
    role: Role
    subject: str | None = None
    name: str | None = None
    appointment: AppointmentId | None = None
    starts_at: float | None = None
    ends_at: float | None = None
    capacity: int | None = None
    not_before: float
    expires_at: float
    token_id: str

    def __post_init__(self) -> None:
        _check_text("room", self.room)
        _check_optional_text("subject", self.subject)
        _check_optional_text("name", self.name)
        _check_optional_text("appointment", self.appointment)
        _check_text("token_id", self.token_id)
        _check_period(self.not_before, self.expires_at)
        if (self.starts_at is None) != (self.ends_at is None):
            raise ValueError("starts_at and ends_at go together: give both or neither")
        if self.starts_at is not None and self.ends_at is not None:
            _check_time("starts_at", self.starts_at)
            _check_time("ends_at", self.ends_at)
            if self.ends_at < self.starts_at:
                raise ValueError(
                    f"appointment ends before it starts: ends_at {self.ends_at} < "
                    f"starts_at {self.starts_at}"
                )
        if self.capacity is not None and self.capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {self.capacity}")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ResumeClaims:
    """What a resume token grants: ``participant`` may rejoin ``room`` in ``role``.

    Issued to a participant once admitted, so a dropped connection can come back without
    knocking again. Construction validates like :class:`JoinClaims`.
    """

    room: RoomId
    participant: ParticipantId
    role: Role
    name: str | None = None
    appointment: AppointmentId | None = None
    not_before: float
    expires_at: float
    token_id: str

    def __post_init__(self) -> None:
        _check_text("room", self.room)
        _check_text("participant", self.participant)
        _check_optional_text("name", self.name)
        _check_optional_text("appointment", self.appointment)
        _check_text("token_id", self.token_id)
        _check_period(self.not_before, self.expires_at)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleClaims:
    """What a console session grants: the console operations of one ``clinician`` (the
    clinic's id for them, which their persistent ``room`` follows from), within its validity
    period. Issued in exchange for a clinician's join link; construction validates like
    :class:`JoinClaims`."""

    clinician: str
    room: RoomId
    name: str | None = None
    not_before: float
    expires_at: float
    token_id: str

    def __post_init__(self) -> None:
        _check_text("clinician", self.clinician)
        _check_text("room", self.room)
        _check_optional_text("name", self.name)
        _check_text("token_id", self.token_id)
        _check_period(self.not_before, self.expires_at)


# --- wire form ---------------------------------------------------------------------------

# Short payload keys. Every field is always present (null when unset), so "missing" is
# unambiguous and the field set is checked exactly.
_KIND_KEY: Final = "k"
_JOIN_FIELDS: Final = {
    "room": "rm",
    "role": "rl",
    "subject": "sub",
    "name": "nm",
    "appointment": "ap",
    "starts_at": "st",
    "ends_at": "en",
    "capacity": "cap",
    "not_before": "nbf",
    "expires_at": "exp",
    "token_id": "jti",
}
_RESUME_FIELDS: Final = {
    "room": "rm",
    "participant": "pid",
    "role": "rl",
    "name": "nm",
    "appointment": "ap",
    "not_before": "nbf",
    "expires_at": "exp",
    "token_id": "jti",
}


_CONSOLE_FIELDS: Final = {
    "clinician": "cli",
    "room": "rm",
    "name": "nm",
    "not_before": "nbf",
    "expires_at": "exp",
    "token_id": "jti",
}


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str, what: str) -> bytes:
    # The stdlib decoder skips foreign characters and ignores non-zero trailing bits; accept
    # only the one canonical spelling so a token has exactly one valid string form.
    if not _B64URL.fullmatch(text):
        raise MalformedToken(f"{what} is not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:
        raise MalformedToken(f"{what} is not base64url") from None
    if _b64encode(data) != text:
        raise MalformedToken(f"{what} is not canonical base64url")
    return data


def _signature(secret: bytes, signing_input: str) -> bytes:
    return hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()


def _encode(
    kind: TokenKind,
    claims: JoinClaims | ResumeClaims | ConsoleClaims,
    names: Mapping[str, str],
    keyring: KeyRing,
) -> str:
    fields: dict[str, object] = {_KIND_KEY: kind.value}
    for name, key in names.items():
        value = getattr(claims, name)
        fields[key] = value.value if isinstance(value, Role) else value
    payload = json.dumps(
        fields, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
    kid = keyring.signing_key_id
    signing_input = f"{VERSION}.{kid}.{_b64encode(payload)}"
    token = f"{signing_input}.{_b64encode(_signature(keyring.keys[kid], signing_input))}"
    if len(token) > MAX_TOKEN_LENGTH:
        raise ValueError(
            f"token would be {len(token)} characters, over the limit of {MAX_TOKEN_LENGTH}"
        )
    return token


def encode_join(claims: JoinClaims, keyring: KeyRing) -> str:
    """Sign ``claims`` with the ring's signing key and return the token string.

    Raises ValueError if the token would exceed :data:`MAX_TOKEN_LENGTH` (overlong names):
    no token is issued that :func:`decode_join` would refuse.
    """
    return _encode(TokenKind.JOIN, claims, _JOIN_FIELDS, keyring)


def encode_resume(claims: ResumeClaims, keyring: KeyRing) -> str:
    """Sign ``claims`` with the ring's signing key and return the token string.

    Raises ValueError past :data:`MAX_TOKEN_LENGTH`, like :func:`encode_join`.
    """
    return _encode(TokenKind.RESUME, claims, _RESUME_FIELDS, keyring)


def encode_console(claims: ConsoleClaims, keyring: KeyRing) -> str:
    """Sign ``claims`` and return the session token (ValueError past the length limit)."""
    return _encode(TokenKind.CONSOLE, claims, _CONSOLE_FIELDS, keyring)


def _reject_constant(name: str) -> NoReturn:
    raise MalformedToken(f"payload contains {name}")


def _verified_payload(token: str, keyring: KeyRing) -> bytes:
    """Check structure, key id and signature; return the payload bytes, still unparsed."""
    if not isinstance(token, str):
        raise MalformedToken("token is not a string")
    if len(token) > MAX_TOKEN_LENGTH:
        raise MalformedToken(f"token is longer than {MAX_TOKEN_LENGTH} characters")
    version, _, rest = token.partition(".")
    if version != VERSION:
        raise MalformedToken("unsupported token version")
    parts = rest.split(".")
    if len(parts) != 3:
        raise MalformedToken(f"expected 4 dot-separated parts, got {len(parts) + 1}")
    kid, payload_b64, sig_b64 = parts
    if not _KEY_ID.fullmatch(kid):
        raise MalformedToken("key id is not valid")
    payload = _b64decode(payload_b64, "payload")
    sig = _b64decode(sig_b64, "signature")
    if len(sig) != _SIG_BYTES:
        raise MalformedToken(f"signature is {len(sig)} bytes, expected {_SIG_BYTES}")
    secret = keyring.keys.get(kid)
    if secret is None:
        raise UnknownKey(kid)
    if not hmac.compare_digest(_signature(secret, f"{VERSION}.{kid}.{payload_b64}"), sig):
        raise BadSignature()
    return payload


def _signed_fields(
    token: str, keyring: KeyRing, expected: TokenKind, names: Mapping[str, str]
) -> dict[str, object]:
    """Verify ``token`` and return its claims by field name, kind checked, types unchecked."""
    payload = _verified_payload(token, keyring)
    try:
        obj: object = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError):
        # JSONDecodeError is a ValueError; so is the int-digits limit.
        raise MalformedToken("payload is not JSON") from None
    if not isinstance(obj, dict):
        raise MalformedToken("payload is not a JSON object")
    raw_kind = obj.pop(_KIND_KEY, None)
    try:
        kind = TokenKind(raw_kind)
    except ValueError:
        raise MalformedToken("token kind is missing or unknown") from None
    if kind is not expected:
        raise WrongTokenKind(expected, kind)
    for name, key in names.items():
        if key not in obj:
            raise MalformedToken(f"missing field {name}")
    extra = obj.keys() - names.values()
    if extra:
        raise MalformedToken(f"unexpected fields {sorted(extra)}")
    return {name: obj[key] for name, key in names.items()}


_T = TypeVar("_T")


def _field(fields: Mapping[str, object], name: str, check: Callable[[object], _T | None]) -> _T:
    value = check(fields[name])
    if value is None:
        raise MalformedToken(f"field {name} has the wrong type")
    return value


def _optional(
    fields: Mapping[str, object], name: str, check: Callable[[object], _T | None]
) -> _T | None:
    if fields[name] is None:
        return None
    return _field(fields, name, check)


def _as_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _as_appointment(value: object) -> AppointmentId | None:
    return AppointmentId(value) if isinstance(value, str) else None


def _as_int(value: object) -> int | None:
    # bool is an int subclass; JSON true is not a number.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _as_float(value: object) -> float | None:
    if isinstance(value, float):
        return value
    number = _as_int(value)
    if number is None:
        return None
    try:
        return float(number)
    except OverflowError:
        # A giant JSON integer: claims validation rejects the infinity like any other.
        return math.inf if number > 0 else -math.inf


def _as_role(value: object) -> Role | None:
    try:
        return Role(value)
    except ValueError:
        return None


def _claims(build: Callable[[], _T]) -> _T:
    try:
        return build()
    except ValueError as exc:
        raise MalformedToken(f"invalid claims: {exc}") from None


def _check_clock(now: float, leeway: float) -> None:
    # Caller bugs, not token problems: a NaN `now` would make every comparison false.
    if not math.isfinite(now):
        raise ValueError(f"now must be finite, got {now!r}")
    if not (math.isfinite(leeway) and leeway >= 0):
        raise ValueError(f"leeway must be a finite number >= 0, got {leeway!r}")


def _check_validity(not_before: float, expires_at: float, now: float, leeway: float) -> None:
    if not_before > now + leeway:
        raise TokenNotYetValid(not_before)
    if expires_at <= now - leeway:
        raise TokenExpired(expires_at)


def decode_join(token: str, keyring: KeyRing, now: float, *, leeway: float = 0.0) -> JoinClaims:
    """Verify a join token and return its claims, valid at ``now`` (give or take ``leeway``).

    Raises a :class:`~admission.errors.TokenError`; the caller must then refuse entry. The
    claims are not checked against a room or join window: that is the caller's next step.
    """
    _check_clock(now, leeway)
    f = _signed_fields(token, keyring, TokenKind.JOIN, _JOIN_FIELDS)
    claims = _claims(
        lambda: JoinClaims(
            room=RoomId(_field(f, "room", _as_str)),
            role=_field(f, "role", _as_role),
            subject=_optional(f, "subject", _as_str),
            name=_optional(f, "name", _as_str),
            appointment=_optional(f, "appointment", _as_appointment),
            starts_at=_optional(f, "starts_at", _as_float),
            ends_at=_optional(f, "ends_at", _as_float),
            capacity=_optional(f, "capacity", _as_int),
            not_before=_field(f, "not_before", _as_float),
            expires_at=_field(f, "expires_at", _as_float),
            token_id=_field(f, "token_id", _as_str),
        )
    )
    _check_validity(claims.not_before, claims.expires_at, now, leeway)
    return claims


def decode_resume(token: str, keyring: KeyRing, now: float, *, leeway: float = 0.0) -> ResumeClaims:
    """Verify a resume token and return its claims, valid at ``now`` (give or take ``leeway``).

    Raises a :class:`~admission.errors.TokenError`; the caller must then make the participant
    join afresh. Whether the participant is still known to the room is the caller's check.
    """
    _check_clock(now, leeway)
    f = _signed_fields(token, keyring, TokenKind.RESUME, _RESUME_FIELDS)
    claims = _claims(
        lambda: ResumeClaims(
            room=RoomId(_field(f, "room", _as_str)),
            participant=ParticipantId(_field(f, "participant", _as_str)),
            role=_field(f, "role", _as_role),
            name=_optional(f, "name", _as_str),
            appointment=_optional(f, "appointment", _as_appointment),
            not_before=_field(f, "not_before", _as_float),
            expires_at=_field(f, "expires_at", _as_float),
            token_id=_field(f, "token_id", _as_str),
        )
    )
    _check_validity(claims.not_before, claims.expires_at, now, leeway)
    return claims


def decode_console(
    token: str, keyring: KeyRing, now: float, *, leeway: float = 0.0
) -> ConsoleClaims:
    """Verify a console session token and return its claims, valid at ``now``; raise a
    :class:`~admission.errors.TokenError` (a join or resume token is a WrongTokenKind)."""
    _check_clock(now, leeway)
    f = _signed_fields(token, keyring, TokenKind.CONSOLE, _CONSOLE_FIELDS)
    claims = _claims(
        lambda: ConsoleClaims(
            clinician=_field(f, "clinician", _as_str),
            room=RoomId(_field(f, "room", _as_str)),
            name=_optional(f, "name", _as_str),
            not_before=_field(f, "not_before", _as_float),
            expires_at=_field(f, "expires_at", _as_float),
            token_id=_field(f, "token_id", _as_str),
        )
    )
    _check_validity(claims.not_before, claims.expires_at, now, leeway)
    return claims
