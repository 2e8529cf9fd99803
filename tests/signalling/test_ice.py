"""ICE servers and TURN REST API credentials (coturn `use-auth-secret`)."""

import base64
import dataclasses
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Any

import pytest

from signalling.ice import IceServer, ice_servers_for, turn_credentials

NOW = 1_700_000_000.0

# Computed once outside Python, from the formula:
#   printf '%s' '1700086400:alice' | openssl dgst -sha1 -hmac 'north-wind' -binary | base64
KNOWN_USERNAME = "1700086400:alice"
KNOWN_CREDENTIAL = "2cdv8ItP/4kX53j3SEoTDhjFpeM="


def expected_credential(secret: str, username: str) -> str:
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


# --- turn_credentials ----------------------------------------------------------------------


def test_turn_credentials_match_a_known_vector() -> None:
    assert turn_credentials("north-wind", "alice", NOW, 86_400.0) == (
        KNOWN_USERNAME,
        KNOWN_CREDENTIAL,
    )


def test_turn_credentials_match_the_formula() -> None:
    username, credential = turn_credentials("s3cret", "p_3", NOW + 0.9, 3600.5)
    assert username == "1700003601:p_3"  # int(1700003601.4): whole seconds, truncated
    assert credential == expected_credential("s3cret", "1700003601:p_3")
    assert len(base64.b64decode(credential)) == 20  # SHA-1 digest


def test_turn_credentials_encode_secret_and_user_as_utf8() -> None:
    username, credential = turn_credentials("clé", "zoë", NOW, 60)
    assert username == "1700000060:zoë"
    assert credential == expected_credential("clé", "1700000060:zoë")


def test_turn_credentials_depend_on_secret_user_and_time() -> None:
    base = turn_credentials("north-wind", "alice", NOW, 60)
    assert turn_credentials("south-wind", "alice", NOW, 60)[1] != base[1]
    assert turn_credentials("north-wind", "bob", NOW, 60)[1] != base[1]
    assert turn_credentials("north-wind", "alice", NOW + 1, 60)[1] != base[1]


@pytest.mark.parametrize(
    ("secret", "user", "now", "ttl", "match"),
    [
        ("", "alice", NOW, 60.0, "turn secret must not be empty"),
        ("s", "", NOW, 60.0, "turn user must be non-empty"),
        ("s", "a:b", NOW, 60.0, "contain no ':'"),
        ("s", "alice", NOW, 0.0, "turn ttl must be positive"),
        ("s", "alice", NOW, -5.0, "turn ttl must be positive"),
        ("s", "alice", float("nan"), 60.0, "now and ttl must be finite"),
        ("s", "alice", NOW, float("inf"), "now and ttl must be finite"),
    ],
)
def test_turn_credentials_reject_bad_input(
    secret: str, user: str, now: float, ttl: float, match: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(match)):
        turn_credentials(secret, user, now, ttl)


# --- IceServer -----------------------------------------------------------------------------


def test_ice_server_without_credentials_on_the_wire() -> None:
    server = IceServer(("stun:stun.example.org:3478",))
    assert server.to_wire() == {"urls": ["stun:stun.example.org:3478"]}


def test_ice_server_with_credentials_on_the_wire() -> None:
    server = IceServer(("turn:t.example.org:3478", "turns:t.example.org:5349"), "u", "c")
    assert server.to_wire() == {
        "urls": ["turn:t.example.org:3478", "turns:t.example.org:5349"],
        "username": "u",
        "credential": "c",
    }


def test_ice_server_sends_only_the_fields_that_are_set() -> None:
    assert IceServer(("turn:t",), username="u").to_wire() == {"urls": ["turn:t"], "username": "u"}
    assert IceServer(("turn:t",), credential="c").to_wire() == {
        "urls": ["turn:t"],
        "credential": "c",
    }


def test_ice_server_freezes_its_urls() -> None:
    urls = ["stun:a", "stun:b"]
    server = IceServer(urls)  # type: ignore[arg-type]
    urls.append("stun:c")
    assert server.urls == ("stun:a", "stun:b")
    wire = server.to_wire()
    assert isinstance(wire["urls"], list)
    wire["urls"].append("stun:d")
    assert server.urls == ("stun:a", "stun:b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        server.username = "x"  # type: ignore[misc]


def test_ice_server_rejects_a_single_string_and_no_urls() -> None:
    with pytest.raises(TypeError, match="not a single string"):
        IceServer("stun:stun.example.org")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one url"):
        IceServer(())


# --- ice_servers_for -----------------------------------------------------------------------

STUN = ["stun:stun.example.org:3478"]
TURN = ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"]


def servers(**changes: Any) -> list[IceServer]:
    settings: dict[str, Any] = {
        "stun_urls": STUN,
        "turn_urls": TURN,
        "turn_secret": "north-wind",
        "turn_ttl": 86_400.0,
    } | changes
    return ice_servers_for("alice", NOW, **settings)


def test_stun_and_turn() -> None:
    stun, turn = servers()
    assert stun == IceServer(tuple(STUN))
    assert turn == IceServer(tuple(TURN), KNOWN_USERNAME, KNOWN_CREDENTIAL)
    assert [server.to_wire() for server in (stun, turn)] == [
        {"urls": STUN},
        {"urls": TURN, "username": KNOWN_USERNAME, "credential": KNOWN_CREDENTIAL},
    ]


def test_turn_credentials_are_fresh_for_each_call() -> None:
    later = ice_servers_for(
        "alice", NOW + 100, stun_urls=(), turn_urls=TURN, turn_secret="north-wind", turn_ttl=60
    )
    assert later == [
        IceServer(
            tuple(TURN), "1700000160:alice", expected_credential("north-wind", "1700000160:alice")
        )
    ]


def test_stun_only() -> None:
    assert servers(turn_urls=[], turn_secret=None) == [IceServer(tuple(STUN))]


def test_a_secret_without_turn_urls_is_unused() -> None:
    assert servers(turn_urls=()) == [IceServer(tuple(STUN))]


def test_turn_only() -> None:
    (turn,) = servers(stun_urls=[])
    assert turn.urls == tuple(TURN)
    assert turn.username == KNOWN_USERNAME


def test_nothing_configured_gives_no_servers() -> None:
    assert servers(stun_urls=[], turn_urls=[], turn_secret=None) == []


@pytest.mark.parametrize("secret", [None, ""])
def test_turn_urls_without_a_secret_are_a_configuration_error(secret: str | None) -> None:
    with pytest.raises(ValueError, match="turn_urls are configured but turn_secret is not set"):
        servers(turn_secret=secret)


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"stun_urls": "stun:one"}, TypeError, "stun_urls must be a sequence of urls"),
        ({"turn_urls": "turn:one"}, TypeError, "turn_urls must be a sequence of urls"),
        ({"stun_urls": ["turn:x"]}, ValueError, "stun_urls entry 'turn:x' must start with"),
        ({"stun_urls": ["stuns:ok", "http://x"]}, ValueError, "stun_urls entry 'http://x'"),
        ({"turn_urls": ["stun:x"]}, ValueError, "turn_urls entry 'stun:x' must start with"),
        ({"turn_urls": ["turn:ok", ""]}, ValueError, "turn_urls entry ''"),
    ],
)
def test_bad_urls_are_configuration_errors(
    changes: dict[str, Sequence[str]], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=re.escape(match)):
        servers(**changes)


def test_participant_goes_into_the_turn_username() -> None:
    with pytest.raises(ValueError, match="contain no ':'"):
        ice_servers_for(
            "a:b", NOW, stun_urls=[], turn_urls=TURN, turn_secret="north-wind", turn_ttl=60
        )
