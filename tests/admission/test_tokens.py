"""Join and resume tokens: format, signatures, key rotation, validity, every malformed input.

Tokens for the malformed-payload cases are signed here with hmac/hashlib directly, so the
tests pin the wire format independently of the module's own encoder.
"""

import base64
import dataclasses
import hashlib
import hmac
import json
import re
from typing import Any

import pytest

from admission.errors import (
    AdmissionError,
    BadSignature,
    Forbidden,
    InvalidName,
    MalformedToken,
    NameRequired,
    NotInCall,
    PeerNotAdmitted,
    RoomClosed,
    RoomNotOpenYet,
    TokenError,
    TokenExpired,
    TokenNotYetValid,
    UnknownKey,
    WindowError,
    WrongTokenKind,
    format_time,
)
from admission.tokens import (
    MAX_TOKEN_LENGTH,
    JoinClaims,
    KeyRing,
    ResumeClaims,
    TokenKind,
    decode_join,
    decode_resume,
    encode_join,
    encode_resume,
    new_secret,
    new_token_id,
)
from rooms.ids import AppointmentId, ParticipantId, RoomId
from rooms.roles import Role

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
SECRET_A = b"a" * 32
SECRET_B = b"b" * 32
RING = KeyRing.single("k1", SECRET_A)


def join_claims(**changes: Any) -> JoinClaims:
    claims = JoinClaims(
        room=RoomId("r_1"),
        role=Role.PATIENT,
        subject="patient-42",
        name="Ada Lovelace",
        appointment=AppointmentId("ap_7"),
        starts_at=NOW + 600,
        ends_at=NOW + 2400,
        capacity=2,
        not_before=NOW - 60,
        expires_at=NOW + 3600,
        token_id="tok_join",
    )
    return dataclasses.replace(claims, **changes)


def resume_claims(**changes: Any) -> ResumeClaims:
    claims = ResumeClaims(
        room=RoomId("r_1"),
        participant=ParticipantId("p_3"),
        role=Role.GUEST,
        name="Grace",
        appointment=None,
        not_before=NOW - 60,
        expires_at=NOW + 3600,
        token_id="tok_resume",
    )
    return dataclasses.replace(claims, **changes)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_raw(payload: object, *, kid: str = "k1", secret: bytes = SECRET_A) -> str:
    """Sign any payload (bytes as they are, anything else as JSON) the v1 way."""
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    signing_input = f"v1.{kid}.{b64(raw)}"
    sig = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


# Wire form of join_claims() and resume_claims(), short keys, as a client would see it.
JOIN_WIRE: dict[str, object] = {
    "k": "join",
    "rm": "r_1",
    "rl": "patient",
    "sub": "patient-42",
    "nm": "Ada Lovelace",
    "ap": "ap_7",
    "st": NOW + 600,
    "en": NOW + 2400,
    "cap": 2,
    "nbf": NOW - 60,
    "exp": NOW + 3600,
    "jti": "tok_join",
}
RESUME_WIRE: dict[str, object] = {
    "k": "resume",
    "rm": "r_1",
    "pid": "p_3",
    "rl": "guest",
    "nm": "Grace",
    "ap": None,
    "nbf": NOW - 60,
    "exp": NOW + 3600,
    "jti": "tok_resume",
}


def with_fields(wire: dict[str, object], **changes: object) -> dict[str, object]:
    return {**wire, **changes}


def without_field(wire: dict[str, object], key: str) -> dict[str, object]:
    return {k: v for k, v in wire.items() if k != key}


# --- key ring ------------------------------------------------------------------------------


def test_single_key_ring_signs_with_its_only_key() -> None:
    assert RING.signing_key_id == "k1"
    assert dict(RING.keys) == {"k1": SECRET_A}


def test_key_ring_repr_hides_secrets() -> None:
    ring = KeyRing({"old": SECRET_A, "new": SECRET_B}, "new")
    assert repr(ring) == "KeyRing(signing_key_id='new')"
    assert "aaaa" not in repr(ring)


def test_key_ring_copies_and_freezes_its_keys() -> None:
    keys = {"k1": SECRET_A}
    ring = KeyRing(keys, "k1")
    keys["k2"] = SECRET_B
    assert set(ring.keys) == {"k1"}
    with pytest.raises(TypeError):
        ring.keys["k2"] = SECRET_B  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ring.signing_key_id = "k2"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("keys", "signing", "error", "match"),
    [
        ({}, "k1", ValueError, "key ring is empty"),
        ({"": SECRET_A}, "", ValueError, "invalid key id ''"),
        ({"a.b": SECRET_A}, "a.b", ValueError, "invalid key id 'a.b'"),
        ({"k" * 65: SECRET_A}, "k" * 65, ValueError, "invalid key id"),
        ({1: SECRET_A}, 1, ValueError, "invalid key id 1"),
        ({"k1": "a" * 32}, "k1", TypeError, "secret of key 'k1' must be bytes"),
        ({"k1": b"short"}, "k1", ValueError, "too short: 5 bytes, need at least 32"),
        ({"k1": SECRET_A}, "k2", ValueError, "signing key 'k2' is not in the key ring"),
    ],
)
def test_key_ring_rejects_bad_configuration(
    keys: dict[Any, Any], signing: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=re.escape(match)):
        KeyRing(keys, signing)


def test_key_ring_accepts_the_whole_key_id_alphabet() -> None:
    kid = "AZaz09_-" + "x" * 56
    assert KeyRing.single(kid, SECRET_A).signing_key_id == kid


def test_rotated_adds_a_signing_key_and_keeps_the_old_one() -> None:
    ring = RING.rotated("k2", SECRET_B)
    assert ring.signing_key_id == "k2"
    assert dict(ring.keys) == {"k1": SECRET_A, "k2": SECRET_B}
    assert dict(RING.keys) == {"k1": SECRET_A}  # the original is untouched


def test_without_drops_a_verifying_key() -> None:
    ring = RING.rotated("k2", SECRET_B).without("k1")
    assert dict(ring.keys) == {"k2": SECRET_B}
    assert ring.signing_key_id == "k2"


def test_without_refuses_the_signing_key_and_unknown_keys() -> None:
    with pytest.raises(ValueError, match="cannot remove key 'k1': it is the signing key"):
        RING.without("k1")
    with pytest.raises(KeyError):
        RING.without("nope")


def test_new_secret_is_random_and_long_enough() -> None:
    first, second = new_secret(), new_secret()
    assert len(first) == 32
    assert first != second
    KeyRing.single("k", first)  # acceptable as a key


def test_new_token_id_is_random_and_url_safe() -> None:
    first, second = new_token_id(), new_token_id()
    assert re.fullmatch(r"[A-Za-z0-9_-]{16}", first)
    assert first != second


# --- claims validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"room": RoomId("")}, "room must not be empty"),
        ({"subject": ""}, "subject must not be empty"),
        ({"name": ""}, "name must not be empty"),
        ({"appointment": AppointmentId("")}, "appointment must not be empty"),
        ({"token_id": ""}, "token_id must not be empty"),
        ({"not_before": float("nan")}, "not_before must be a finite number"),
        ({"expires_at": float("inf")}, "expires_at must be a finite number"),
        ({"expires_at": NOW - 60}, "token expires before it is valid"),
        ({"expires_at": NOW - 61}, "token expires before it is valid"),
        ({"ends_at": None}, "starts_at and ends_at go together"),
        ({"starts_at": None}, "starts_at and ends_at go together"),
        ({"starts_at": float("-inf")}, "starts_at must be a finite number"),
        ({"ends_at": float("nan")}, "ends_at must be a finite number"),
        ({"ends_at": NOW + 599}, "appointment ends before it starts"),
        ({"capacity": 0}, "capacity must be at least 1, got 0"),
    ],
)
def test_join_claims_reject_invalid_values(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        join_claims(**changes)


def test_join_claims_allow_a_general_link_and_an_instant_appointment() -> None:
    general = join_claims(
        role=Role.GUEST,
        subject=None,
        name=None,
        appointment=None,
        starts_at=None,
        ends_at=None,
        capacity=None,
    )
    assert general.subject is None
    assert join_claims(ends_at=NOW + 600).ends_at == join_claims().starts_at


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"room": RoomId("")}, "room must not be empty"),
        ({"participant": ParticipantId("")}, "participant must not be empty"),
        ({"name": ""}, "name must not be empty"),
        ({"appointment": AppointmentId("")}, "appointment must not be empty"),
        ({"token_id": ""}, "token_id must not be empty"),
        ({"expires_at": NOW - 60}, "token expires before it is valid"),
    ],
)
def test_resume_claims_reject_invalid_values(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        resume_claims(**changes)


def test_claims_are_frozen_keyword_only_values() -> None:
    claims = join_claims()
    with pytest.raises(dataclasses.FrozenInstanceError):
        claims.role = Role.HOST  # type: ignore[misc]
    with pytest.raises(TypeError):
        JoinClaims(RoomId("r"), Role.HOST)  # type: ignore[call-arg]
    assert not hasattr(claims, "__dict__")  # slots


# --- round trip and wire format ------------------------------------------------------------


def test_join_token_round_trips() -> None:
    claims = join_claims()
    assert decode_join(encode_join(claims, RING), RING, NOW) == claims


def test_general_link_join_token_round_trips() -> None:
    claims = join_claims(
        role=Role.GUEST,
        subject=None,
        name=None,
        appointment=None,
        starts_at=None,
        ends_at=None,
        capacity=None,
    )
    assert decode_join(encode_join(claims, RING), RING, NOW) == claims


def test_resume_token_round_trips() -> None:
    claims = resume_claims(appointment=AppointmentId("ap_7"))
    assert decode_resume(encode_resume(claims, RING), RING, NOW) == claims


def test_non_ascii_names_round_trip() -> None:
    claims = join_claims(name="Zoë Ñúñez 李")
    token = encode_join(claims, RING)
    assert token.isascii()
    assert decode_join(token, RING, NOW).name == "Zoë Ñúñez 李"


def test_integer_times_round_trip_as_equal_floats() -> None:
    claims = join_claims(not_before=1, expires_at=2_000_000_000, starts_at=None, ends_at=None)
    decoded = decode_join(encode_join(claims, RING), RING, 1.5)
    assert decoded == claims
    assert isinstance(decoded.not_before, float)


def test_join_token_wire_format() -> None:
    token = encode_join(join_claims(), RING)
    version, kid, payload, sig = token.split(".")
    assert (version, kid) == ("v1", "k1")
    assert json.loads(unb64(payload)) == JOIN_WIRE
    assert b"=" not in payload.encode() + sig.encode()
    expected = hmac.new(SECRET_A, f"v1.k1.{payload}".encode(), hashlib.sha256).digest()
    assert unb64(sig) == expected
    assert token == sign_raw(unb64(payload))  # the independent signer agrees


def test_resume_token_wire_format() -> None:
    token = encode_resume(resume_claims(), RING)
    assert json.loads(unb64(token.split(".")[2])) == RESUME_WIRE


def test_payload_is_compact_and_deterministic() -> None:
    token = encode_join(join_claims(), RING)
    assert token == encode_join(join_claims(), RING)
    assert b" " not in unb64(token.split(".")[2]).replace(b"Ada Lovelace", b"")


def test_independently_signed_tokens_decode() -> None:
    assert decode_join(sign_raw(JOIN_WIRE), RING, NOW) == join_claims()
    assert decode_resume(sign_raw(RESUME_WIRE), RING, NOW) == resume_claims()


def test_encoding_refuses_a_token_over_the_length_limit() -> None:
    with pytest.raises(ValueError, match="over the limit of 4096"):
        encode_join(join_claims(name="x" * MAX_TOKEN_LENGTH), RING)


def test_a_token_at_the_length_limit_decodes() -> None:
    base = len(encode_join(join_claims(name="x"), RING))
    # Three payload bytes are four base64 characters.
    name = "x" * (1 + (MAX_TOKEN_LENGTH - base) // 4 * 3)
    token = encode_join(join_claims(name=name), RING)
    assert MAX_TOKEN_LENGTH - 3 <= len(token) <= MAX_TOKEN_LENGTH
    assert decode_join(token, RING, NOW).name == name
    with pytest.raises(ValueError, match="over the limit"):
        encode_join(join_claims(name=name + "xxx"), RING)


# --- key rotation --------------------------------------------------------------------------


def test_token_signed_by_an_old_key_verifies_while_that_key_is_in_the_ring() -> None:
    old_ring = KeyRing.single("2026-01", SECRET_A)
    old_token = encode_join(join_claims(), old_ring)
    new_ring = old_ring.rotated("2026-02", SECRET_B)
    assert decode_join(old_token, new_ring, NOW) == join_claims()
    new_token = encode_join(join_claims(), new_ring)
    assert new_token.split(".")[1] == "2026-02"
    assert decode_join(new_token, new_ring, NOW) == join_claims()


def test_token_signed_by_a_removed_key_is_unknown() -> None:
    old_ring = KeyRing.single("2026-01", SECRET_A)
    old_token = encode_join(join_claims(), old_ring)
    retired = old_ring.rotated("2026-02", SECRET_B).without("2026-01")
    with pytest.raises(UnknownKey) as info:
        decode_join(old_token, retired, NOW)
    assert info.value.code == "invalid_token"
    assert info.value.details == {"key_id": "2026-01"}
    assert info.value.message == "token signed with unknown key '2026-01'"


def test_unknown_key_is_reported_for_resume_tokens_too() -> None:
    token = encode_resume(resume_claims(), KeyRing.single("other", SECRET_B))
    with pytest.raises(UnknownKey):
        decode_resume(token, RING, NOW)


# --- forged and tampered tokens ------------------------------------------------------------


def test_token_signed_with_another_secret_under_a_known_kid_is_forged() -> None:
    forged = encode_join(join_claims(role=Role.HOST), KeyRing.single("k1", SECRET_B))
    with pytest.raises(BadSignature) as info:
        decode_join(forged, RING, NOW)
    assert info.value.code == "invalid_token"
    assert info.value.message == "token signature does not match"
    assert info.value.details == {}


def test_altered_signature_is_rejected() -> None:
    token = encode_join(join_claims(), RING)
    head, sig = token.rsplit(".", 1)
    altered = ("B" if sig[0] == "A" else "A") + sig[1:]  # still canonical base64url
    with pytest.raises(BadSignature):
        decode_join(f"{head}.{altered}", RING, NOW)


def test_tampered_payload_is_rejected() -> None:
    version, kid, payload, sig = encode_join(join_claims(), RING).split(".")
    promoted = json.loads(unb64(payload)) | {"rl": "host"}
    tampered = b64(json.dumps(promoted).encode())
    with pytest.raises(BadSignature):
        decode_join(f"{version}.{kid}.{tampered}.{sig}", RING, NOW)


def test_moving_a_token_to_another_kid_is_rejected() -> None:
    ring = RING.rotated("k2", SECRET_B)
    _, _, payload, sig = encode_join(join_claims(), ring).split(".")
    with pytest.raises(BadSignature):
        decode_join(f"v1.k1.{payload}.{sig}", ring, NOW)


def test_signature_is_checked_before_the_payload_is_parsed() -> None:
    # Garbage payload, wrong kind and expiry all lose to the bad signature.
    for payload in (b"not json", json.dumps(with_fields(RESUME_WIRE, exp=1.0)).encode()):
        bogus = sign_raw(payload, secret=SECRET_B)
        with pytest.raises(BadSignature):
            decode_join(bogus, RING, NOW)


# --- malformed structure -------------------------------------------------------------------

_VALID = encode_join(join_claims(), RING)
_, _, _PAYLOAD, _SIG = _VALID.split(".")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "unsupported token version"),
        ("garbage", "unsupported token version"),
        ("v1", "expected 4 dot-separated parts, got 2"),
        ("v2.k1.payload.sig", "unsupported token version"),
        ("V1.k1.payload.sig", "unsupported token version"),
        (f"v0{_VALID[2:]}", "unsupported token version"),
        ("v1.k1.payload", "expected 4 dot-separated parts, got 3"),
        (f"{_VALID}.extra", "expected 4 dot-separated parts, got 5"),
        ("v1...", "key id is not valid"),
        (f"v1.k!1.{_PAYLOAD}.{_SIG}", "key id is not valid"),
        (f"v1.{'k' * 65}.{_PAYLOAD}.{_SIG}", "key id is not valid"),
        (f"v1.k1.{_PAYLOAD}=.{_SIG}", "payload is not base64url"),
        (f"v1.k1.{_PAYLOAD.replace('e', '+')}.{_SIG}", "payload is not base64url"),
        (f"v1.k1.ü{_PAYLOAD}.{_SIG}", "payload is not base64url"),
        (f"v1.k1.A.{_SIG}", "payload is not base64url"),  # 1 char: no whole byte
        (f"v1.k1.AB.{_SIG}", "payload is not canonical base64url"),
        (f"v1.k1.{_PAYLOAD}.{_SIG}=", "signature is not base64url"),
        # 32 bytes are 43 characters, the last with 2 spare bits: canonically never "B".
        (f"v1.k1.{_PAYLOAD}.{_SIG[:-1]}B", "signature is not canonical base64url"),
        (f"v1.k1.{_PAYLOAD}.", "signature is 0 bytes, expected 32"),
        (f"v1.k1.{_PAYLOAD}.{b64(bytes(31))}", "signature is 31 bytes, expected 32"),
        (f"v1.k1.{_PAYLOAD}.{b64(bytes(33))}", "signature is 33 bytes, expected 32"),
        ("v1." + "a" * MAX_TOKEN_LENGTH, "token is longer than 4096 characters"),
    ],
)
def test_malformed_structure(token: str, reason: str) -> None:
    for decode in (decode_join, decode_resume):
        with pytest.raises(MalformedToken) as info:
            decode(token, RING, NOW)
        assert info.value.code == "invalid_token"
        assert info.value.message == f"malformed token: {reason}"
        assert info.value.details == {"reason": reason}


def test_every_truncation_of_a_token_is_malformed() -> None:
    for end in range(len(_VALID)):
        with pytest.raises(MalformedToken):
            decode_join(_VALID[:end], RING, NOW)


def test_a_non_string_token_is_malformed() -> None:
    with pytest.raises(MalformedToken, match="token is not a string"):
        decode_join(None, RING, NOW)  # type: ignore[arg-type]
    with pytest.raises(MalformedToken, match="token is not a string"):
        decode_resume(_VALID.encode(), RING, NOW)  # type: ignore[arg-type]


# --- malformed signed payloads -------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "payload is not JSON"),
        (b"not json", "payload is not JSON"),
        (b"\xff\xfe{}", "payload is not JSON"),
        (b"NaN", "payload contains NaN"),
        (b'{"k": "join", "exp": Infinity}', "payload contains Infinity"),
        (b'{"k": "join", "exp": -Infinity}', "payload contains -Infinity"),
        (b"[]", "payload is not a JSON object"),
        (b'"join"', "payload is not a JSON object"),
        (b"{}", "token kind is missing or unknown"),
        (b'{"k": "admin"}', "token kind is missing or unknown"),
        (b'{"k": null}', "token kind is missing or unknown"),
        (b'{"k": ["join"]}', "token kind is missing or unknown"),
    ],
)
def test_signed_payload_that_is_not_a_claims_object(payload: bytes, reason: str) -> None:
    for decode in (decode_join, decode_resume):
        with pytest.raises(MalformedToken) as info:
            decode(sign_raw(payload), RING, NOW)
        assert info.value.message == f"malformed token: {reason}"


@pytest.mark.parametrize(
    ("key", "field"),
    [
        ("rm", "room"),
        ("rl", "role"),
        ("sub", "subject"),
        ("nm", "name"),
        ("ap", "appointment"),
        ("st", "starts_at"),
        ("en", "ends_at"),
        ("cap", "capacity"),
        ("nbf", "not_before"),
        ("exp", "expires_at"),
        ("jti", "token_id"),
    ],
)
def test_join_payload_missing_a_field(key: str, field: str) -> None:
    with pytest.raises(MalformedToken, match=f"^malformed token: missing field {field}$"):
        decode_join(sign_raw(without_field(JOIN_WIRE, key)), RING, NOW)


@pytest.mark.parametrize(
    ("key", "field"),
    [
        ("rm", "room"),
        ("pid", "participant"),
        ("rl", "role"),
        ("nm", "name"),
        ("ap", "appointment"),
        ("nbf", "not_before"),
        ("exp", "expires_at"),
        ("jti", "token_id"),
    ],
)
def test_resume_payload_missing_a_field(key: str, field: str) -> None:
    with pytest.raises(MalformedToken, match=f"^malformed token: missing field {field}$"):
        decode_resume(sign_raw(without_field(RESUME_WIRE, key)), RING, NOW)


def test_payload_with_unexpected_fields() -> None:
    with pytest.raises(MalformedToken, match=re.escape("unexpected fields ['admin', 'z']")):
        decode_join(sign_raw(with_fields(JOIN_WIRE, z=1, admin=True)), RING, NOW)
    with pytest.raises(MalformedToken, match=re.escape("unexpected fields ['sub']")):
        decode_resume(sign_raw(with_fields(RESUME_WIRE, sub="x")), RING, NOW)


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("rm", 1, "room"),
        ("rm", None, "room"),
        ("rl", "admin", "role"),
        ("rl", "HOST", "role"),
        ("rl", None, "role"),
        ("rl", ["host"], "role"),
        ("sub", 42, "subject"),
        ("nm", False, "name"),
        ("ap", {"id": "ap_7"}, "appointment"),
        ("st", "1800000600", "starts_at"),
        ("en", True, "ends_at"),
        ("cap", 1.5, "capacity"),
        ("cap", 2.0, "capacity"),
        ("cap", True, "capacity"),
        ("cap", "2", "capacity"),
        ("nbf", "now", "not_before"),
        ("nbf", None, "not_before"),
        ("exp", False, "expires_at"),
        ("exp", [NOW], "expires_at"),
        ("jti", 5, "token_id"),
        ("jti", None, "token_id"),
    ],
)
def test_join_payload_field_of_the_wrong_type(key: str, value: object, field: str) -> None:
    token = sign_raw(with_fields(JOIN_WIRE, **{key: value}))
    with pytest.raises(MalformedToken) as info:
        decode_join(token, RING, NOW)
    assert info.value.message == f"malformed token: field {field} has the wrong type"


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("rm", [], "room"),
        ("pid", 3, "participant"),
        ("pid", None, "participant"),
        ("rl", "patient ", "role"),
        ("nm", 1, "name"),
        ("ap", 7, "appointment"),
        ("nbf", "0", "not_before"),
        ("exp", None, "expires_at"),
        ("jti", True, "token_id"),
    ],
)
def test_resume_payload_field_of_the_wrong_type(key: str, value: object, field: str) -> None:
    token = sign_raw(with_fields(RESUME_WIRE, **{key: value}))
    with pytest.raises(MalformedToken, match=f"^malformed token: field {field} has the wrong"):
        decode_resume(token, RING, NOW)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"rm": ""}, "room must not be empty"),
        ({"nm": ""}, "name must not be empty"),
        ({"cap": 0}, "capacity must be at least 1"),
        ({"cap": -3}, "capacity must be at least 1"),
        ({"st": None}, "starts_at and ends_at go together"),
        ({"en": NOW}, "appointment ends before it starts"),
        ({"exp": NOW - 60}, "token expires before it is valid"),
        ({"exp": 10**400}, "expires_at must be a finite number"),  # too big for a float
        ({"nbf": -(10**400)}, "not_before must be a finite number"),
    ],
)
def test_join_payload_with_invalid_claims(changes: dict[str, object], match: str) -> None:
    token = sign_raw(with_fields(JOIN_WIRE, **changes))
    with pytest.raises(MalformedToken, match=f"^malformed token: invalid claims: {match}"):
        decode_join(token, RING, NOW)


def test_join_payload_with_an_overflowing_float() -> None:
    # JSON 1e400 parses as inf (json.dumps would write a Python inf as Infinity instead).
    payload = json.dumps(with_fields(JOIN_WIRE, exp="BIG")).replace('"BIG"', "1e400")
    with pytest.raises(MalformedToken, match="invalid claims: expires_at must be a finite"):
        decode_join(sign_raw(payload.encode()), RING, NOW)


def test_resume_payload_with_invalid_claims() -> None:
    token = sign_raw(with_fields(RESUME_WIRE, pid=""))
    with pytest.raises(MalformedToken, match="invalid claims: participant must not be empty"):
        decode_resume(token, RING, NOW)


def test_json_integer_times_are_accepted() -> None:
    token = sign_raw(with_fields(JOIN_WIRE, nbf=1_799_999_940, exp=1_800_003_600))
    assert decode_join(token, RING, NOW) == join_claims()


# --- token kind ----------------------------------------------------------------------------


def test_resume_token_is_not_a_join_token() -> None:
    token = encode_resume(resume_claims(), RING)
    with pytest.raises(WrongTokenKind) as info:
        decode_join(token, RING, NOW)
    assert info.value.code == "invalid_token"
    assert info.value.message == "expected a join token, got a resume token"
    assert info.value.details == {"expected": "join", "actual": "resume"}


def test_join_token_is_not_a_resume_token() -> None:
    token = encode_join(join_claims(), RING)
    with pytest.raises(WrongTokenKind) as info:
        decode_resume(token, RING, NOW)
    assert info.value.details == {"expected": "resume", "actual": "join"}


def test_kind_is_checked_before_the_fields_and_the_clock() -> None:
    expired_resume = encode_resume(resume_claims(not_before=0.0, expires_at=1.0), RING)
    with pytest.raises(WrongTokenKind):
        decode_join(expired_resume, RING, NOW)


def test_token_kind_values() -> None:
    assert [kind.value for kind in TokenKind] == ["join", "resume", "console"]


def test_a_console_session_round_trips_and_is_no_join_token() -> None:
    from admission.tokens import ConsoleClaims, decode_console, encode_console

    claims = ConsoleClaims(
        clinician="cli_1", room=RoomId("rm_1"), name="Dr Lee", not_before=0.0,
        expires_at=100.0, token_id="t1",
    )  # fmt: skip
    ring = KeyRing.single("k1", b"s" * 32)
    token = encode_console(claims, ring)
    assert decode_console(token, ring, 50.0) == claims
    with pytest.raises(WrongTokenKind):
        decode_join(token, ring, 50.0)
    with pytest.raises(TokenExpired):
        decode_console(token, ring, 100.0)
    with pytest.raises(ValueError, match="clinician"):
        ConsoleClaims(
            clinician="", room=RoomId("rm_1"), not_before=0.0, expires_at=1.0, token_id="t"
        )


# --- validity period and leeway ------------------------------------------------------------


def test_token_not_yet_valid() -> None:
    token = encode_join(join_claims(not_before=NOW + 10), RING)
    with pytest.raises(TokenNotYetValid) as info:
        decode_join(token, RING, NOW)
    assert info.value.code == "token_not_yet_valid"
    assert info.value.message == "token not valid before 2027-01-15T08:00:10Z"
    assert info.value.details == {"not_before": NOW + 10}


@pytest.mark.parametrize(
    ("now", "leeway", "valid"),
    [
        (NOW + 10, 0.0, True),  # not_before itself is valid
        (NOW + 9.5, 0.0, False),
        (NOW, 10.0, True),  # not_before == now + leeway
        (NOW, 9.5, False),
        (NOW - 1, 11.0, True),
    ],
)
def test_not_before_edges(now: float, leeway: float, valid: bool) -> None:
    token = encode_join(join_claims(not_before=NOW + 10), RING)
    if valid:
        assert decode_join(token, RING, now, leeway=leeway).not_before == NOW + 10
    else:
        with pytest.raises(TokenNotYetValid):
            decode_join(token, RING, now, leeway=leeway)


def test_token_expired() -> None:
    token = encode_join(join_claims(expires_at=NOW), RING)
    with pytest.raises(TokenExpired) as info:
        decode_join(token, RING, NOW)
    assert info.value.code == "token_expired"
    assert info.value.message == "token expired at 2027-01-15T08:00:00Z"
    assert info.value.details == {"expired_at": NOW}


@pytest.mark.parametrize(
    ("now", "leeway", "valid"),
    [
        (NOW, 0.0, False),  # expires_at itself is expired
        (NOW - 0.5, 0.0, True),
        (NOW + 5, 5.0, False),  # expires_at == now - leeway
        (NOW + 5, 5.5, True),
        (NOW + 4.5, 5.0, True),
    ],
)
def test_expiry_edges(now: float, leeway: float, valid: bool) -> None:
    token = encode_join(join_claims(expires_at=NOW), RING)
    if valid:
        assert decode_join(token, RING, now, leeway=leeway).expires_at == NOW
    else:
        with pytest.raises(TokenExpired):
            decode_join(token, RING, now, leeway=leeway)


def test_resume_token_validity_period() -> None:
    early = encode_resume(resume_claims(not_before=NOW + 1), RING)
    with pytest.raises(TokenNotYetValid):
        decode_resume(early, RING, NOW)
    assert decode_resume(early, RING, NOW, leeway=1.0).not_before == NOW + 1
    late = encode_resume(resume_claims(expires_at=NOW - 1), RING)
    with pytest.raises(TokenExpired):
        decode_resume(late, RING, NOW)
    assert decode_resume(late, RING, NOW, leeway=1.5).expires_at == NOW - 1


@pytest.mark.parametrize(
    ("now", "leeway", "match"),
    [
        (float("nan"), 0.0, "now must be finite"),
        (float("inf"), 0.0, "now must be finite"),
        (NOW, -1.0, "leeway must be a finite number >= 0"),
        (NOW, float("inf"), "leeway must be a finite number >= 0"),
        (NOW, float("nan"), "leeway must be a finite number >= 0"),
    ],
)
def test_clock_arguments_are_checked_first(now: float, leeway: float, match: str) -> None:
    # A caller bug, reported even for a token that would be rejected anyway.
    for decode in (decode_join, decode_resume):
        with pytest.raises(ValueError, match=match):
            decode("garbage", RING, now, leeway=leeway)


# --- the error contract --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "parent", "code"),
    [
        (AdmissionError, Exception, "admission_error"),
        (TokenError, AdmissionError, "invalid_token"),
        (MalformedToken, TokenError, "invalid_token"),
        (BadSignature, TokenError, "invalid_token"),
        (UnknownKey, TokenError, "invalid_token"),
        (WrongTokenKind, TokenError, "invalid_token"),
        (TokenExpired, TokenError, "token_expired"),
        (TokenNotYetValid, TokenError, "token_not_yet_valid"),
        (WindowError, AdmissionError, "outside_join_window"),
        (RoomNotOpenYet, WindowError, "room_not_open"),
        (RoomClosed, WindowError, "room_closed"),
        (Forbidden, AdmissionError, "forbidden"),
        (NameRequired, AdmissionError, "name_required"),
        (InvalidName, AdmissionError, "invalid_name"),
        (NotInCall, AdmissionError, "not_in_call"),
        (PeerNotAdmitted, AdmissionError, "peer_not_admitted"),
    ],
)
def test_error_hierarchy_and_codes(
    error: type[AdmissionError], parent: type[Exception], code: str
) -> None:
    assert error.__bases__ == (parent,)
    assert error.code == code
    assert re.fullmatch(r"[a-z]+(_[a-z]+)*", code)


@pytest.mark.parametrize(
    "error",
    [
        AdmissionError("something went wrong"),
        MalformedToken("token kind is missing or unknown"),
        BadSignature(),
        UnknownKey("K9"),
        WrongTokenKind(TokenKind.JOIN, TokenKind.RESUME),
        TokenExpired(NOW),
        TokenNotYetValid(NOW),
        RoomNotOpenYet(NOW, NOW + 60),
        RoomClosed(NOW),
        Forbidden("only the host may admit"),
        NameRequired(),
    ],
)
def test_error_messages_are_lowercase_and_are_the_str(error: AdmissionError) -> None:
    # Quoted values (key ids) are data, not prose.
    prose = re.sub(r"'[^']*'|\d{4}-\d\d-\d\dT[\d:]+Z", "", error.message)
    assert prose == prose.lower()
    assert str(error) == error.message


def test_admission_error_details_default_to_a_fresh_dict_and_are_copied() -> None:
    given: dict[str, object] = {"participant": "p_3"}
    error = Forbidden("only the host may admit", given)
    given["participant"] = "p_4"
    assert error.details == {"participant": "p_3"}
    assert AdmissionError("x").details == {}
    assert AdmissionError("x").details is not AdmissionError("x").details


def test_name_required_has_a_default_message_and_accepts_its_own() -> None:
    assert NameRequired().message == "a display name is required to join"
    custom = NameRequired("a display name is required for a general link", {"room": "r_1"})
    assert custom.message == "a display name is required for a general link"
    assert custom.details == {"room": "r_1"}


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (NOW, "2027-01-15T08:00:00Z"),
        (NOW + 0.999, "2027-01-15T08:00:00Z"),
        (0.0, "1970-01-01T00:00:00Z"),
        (1e20, "1e+20"),  # out of datetime's range: shown, not raised
        (float("nan"), "nan"),
    ],
)
def test_format_time(ts: float, text: str) -> None:
    assert format_time(ts) == text
