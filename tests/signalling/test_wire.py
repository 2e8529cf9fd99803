"""The wire codec and the validation of client messages (signalling/wire.py).

Pure functions, no server: every branch of `decode` is reached by a frame, and each refusal is
checked for its error class, its stable code and the details a client can act on.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from signalling.errors import (
    FrameTooLarge,
    InvalidMessage,
    MalformedMessage,
    SignallingError,
    UnknownType,
)
from signalling.wire import (
    CLIENT_MESSAGES,
    MAX_DEPTH,
    MAX_VALUES,
    Codec,
    Message,
    _from_json,
    _inspect,
    _plainly_portable,
    decode,
    error,
)
from tests.fuzz import VALID

LIMIT = 64 * 1024


def text(message: object) -> str:
    return json.dumps(message)


def packed(message: object) -> bytes:
    data: bytes = msgpack.packb(message, use_bin_type=True)
    return data


def refused(frame: str | bytes, error_type: type[SignallingError], code: str) -> SignallingError:
    """Decode ``frame``, which must raise exactly ``error_type`` with ``code``."""
    with pytest.raises(error_type) as info:
        decode(frame, LIMIT)
    assert type(info.value) is error_type
    assert info.value.code == code
    assert str(info.value) == info.value.message
    return info.value


def invalid(message: object, field: str) -> InvalidMessage:
    """``message`` (sent as JSON) must be refused as invalid_message naming ``field``."""
    exc = refused(text(message), InvalidMessage, "invalid_message")
    assert exc.details["field"] == field
    assert isinstance(exc, InvalidMessage)
    return exc


def test_every_client_message_has_a_valid_example() -> None:
    assert set(VALID) == set(CLIENT_MESSAGES)


# --- accepted messages and the two codecs --------------------------------------------------


@pytest.mark.parametrize("kind", sorted(VALID))
@pytest.mark.parametrize("codec", list(Codec))
def test_valid_messages_decode_unchanged_in_both_codecs(kind: str, codec: Codec) -> None:
    message = VALID[kind]
    assert decode(codec.encode(message), LIMIT) == (message, codec)


def test_text_frames_are_json_and_binary_frames_msgpack() -> None:
    ping = {"type": "ping"}
    assert isinstance(Codec.JSON.encode(ping), str)
    assert isinstance(Codec.MSGPACK.encode(ping), bytes)
    assert decode('{"type":"ping"}', LIMIT)[1] is Codec.JSON
    assert decode(b"\x81\xa4type\xa4ping", LIMIT)[1] is Codec.MSGPACK


def test_json_encoding_is_compact_and_keeps_unicode() -> None:
    assert Codec.JSON.encode({"type": "welcome", "name": "Zoë"}) == (
        '{"type":"welcome","name":"Zoë"}'
    )


def test_msgpack_round_trip_of_a_server_message() -> None:
    message = {"type": "welcome", "name": "Zoë", "n": 3, "ok": True, "list": [1.5, None]}
    data = Codec.MSGPACK.encode(message)
    assert isinstance(data, bytes)
    assert msgpack.unpackb(data, raw=False) == message


def test_optional_fields_may_be_left_out() -> None:
    hello = {"type": "hello", "room": "r1", "token": "t"}
    assert decode(text(hello), LIMIT)[0] == hello
    deny = {"type": "deny", "participant_id": "p_1"}
    assert decode(text(deny), LIMIT)[0] == deny


def test_unknown_fields_are_ignored_so_clients_can_be_newer() -> None:
    message = {"type": "ping", "future": {"nested": [1, 2]}}
    assert decode(text(message), LIMIT)[0] == message


@pytest.mark.parametrize("ref", ["c1", 7, 0, -3, "x" * 64, 2**64 - 1, -(2**63), None])
def test_an_id_may_be_a_short_string_or_integer(ref: object) -> None:
    message = {"type": "ping", "id": ref}
    assert decode(text(message), LIMIT)[0] == message


# --- frame size ------------------------------------------------------------------------------


def test_a_frame_at_the_limit_is_decoded() -> None:
    frame = text({"type": "ping", "pad": ""})
    frame = text({"type": "ping", "pad": "x" * (100 - len(frame))})
    assert len(frame) == 100
    assert decode(frame, 100)[0]["type"] == "ping"


@pytest.mark.parametrize("codec", list(Codec))
def test_a_frame_over_the_limit_is_frame_too_large(codec: Codec) -> None:
    frame = codec.encode({"type": "ping", "pad": "x" * 200})
    size = len(frame.encode() if isinstance(frame, str) else frame)
    with pytest.raises(FrameTooLarge) as info:
        decode(frame, 100)
    assert info.value.code == "frame_too_large"
    assert info.value.details == {"max_bytes": 100, "size": size}


def test_text_frames_are_measured_in_utf8_bytes_not_characters() -> None:
    frame = '{"type":"ping","pad":"' + "é" * 60 + '"}'
    assert len(frame) < 100 < len(frame.encode())
    with pytest.raises(FrameTooLarge) as info:
        decode(frame, 100)
    assert info.value.details["size"] == len(frame.encode())


def test_the_size_is_checked_before_parsing() -> None:
    # Not JSON at all, but too large: the cheaper refusal wins.
    refused("x" * (LIMIT + 1), FrameTooLarge, "frame_too_large")


# --- malformed frames ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    ["", "not json", "{", '{"type":"ping"', "{'type':'ping'}", '{"type":"ping"} trailing'],
)
def test_text_that_is_not_json_is_malformed(frame: str) -> None:
    exc = refused(frame, MalformedMessage, "malformed_message")
    assert exc.message.startswith("cannot decode json message")
    assert exc.details == {}


@pytest.mark.parametrize(
    "frame",
    [
        b"",  # no data
        b"\xc1",  # a reserved byte
        b"\x81\xa4type",  # a map cut short
        b"\x81\xa4type\xa4ping\x00",  # extra data after the message
        b"\x81\xa4type\xa2\xff\xfe",  # a string that is not UTF-8
        b"\x81\x01\xa4ping",  # an integer map key
    ],
)
def test_binary_that_is_not_msgpack_is_malformed(frame: bytes) -> None:
    exc = refused(frame, MalformedMessage, "malformed_message")
    assert exc.message.startswith("cannot decode msgpack message")


def test_msgpack_extension_types_are_refused() -> None:
    frame = packed({"type": "ping", "when": msgpack.ExtType(1, b"\x00\x01")})
    refused(frame, MalformedMessage, "malformed_message")


def test_msgpack_timestamps_are_refused_like_other_extension_types() -> None:
    # msgpack decodes type -1 itself, without calling ext_hook.
    frame = packed({"type": "ping", "when": msgpack.Timestamp(1, 0)})
    exc = refused(frame, MalformedMessage, "malformed_message")
    assert exc.message == "cannot accept msgpack message: Timestamp values are not accepted"


# --- values both codecs carry ------------------------------------------------------------------
# A candidate is relayed whole and errors echo parts of a message, in the recipient's codec:
# a value only one codec can carry would fail when sent to a client of the other.


@pytest.mark.parametrize(
    "value",
    [b"\x00", {"k": b""}, [1, [b"x"]]],
)
def test_msgpack_binary_values_are_refused(value: object) -> None:
    frame = packed({"type": "candidate", "to": "p_1", "candidate": {"candidate": "c", "x": value}})
    exc = refused(frame, MalformedMessage, "malformed_message")
    assert exc.message == "cannot accept msgpack message: bytes values are not accepted"


def test_msgpack_binary_map_keys_are_refused() -> None:
    refused(packed({"type": "ping", b"key": 1}), MalformedMessage, "malformed_message")


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_json_numbers_that_are_not_finite_are_refused(number: str) -> None:
    exc = refused('{"type":"ping","x":[' + number + "]}", MalformedMessage, "malformed_message")
    assert exc.message == "cannot accept json message: a number is not finite"


@pytest.mark.parametrize("number", [2**64, -(2**63) - 1, 10**40])
def test_json_integers_beyond_64_bits_are_refused(number: int) -> None:
    exc = refused(text({"type": "ping", "x": number}), MalformedMessage, "malformed_message")
    assert exc.message == "cannot accept json message: an integer does not fit in 64 bits"


@pytest.mark.parametrize("codec", list(Codec))
def test_values_both_codecs_carry_are_accepted(codec: Codec) -> None:
    value: list[object] = [
        2**64 - 1,
        -(2**63),
        0,
        1.5,
        -0.0,
        True,
        False,
        None,
        "s",
        {"k": [{}]},
        [],
    ]
    message = {"type": "ping", "x": value}
    assert decode(codec.encode(message), LIMIT)[0] == message


def test_deeply_nested_json_is_malformed_not_a_crash() -> None:
    depth = 20_000  # far past the recursion limit, well under the frame limit
    frame = '{"type":"ping","deep":' + "[" * depth + "]" * depth + "}"
    refused(frame, MalformedMessage, "malformed_message")


def test_deeply_nested_msgpack_is_malformed_not_a_crash() -> None:
    depth = 20_000
    frame = b"\x82\xa4type\xa4ping\xa4deep" + b"\x91" * depth + b"\x90"
    refused(frame, MalformedMessage, "malformed_message")


@pytest.mark.parametrize("message", [[], ["ping"], "ping", 1, 1.5, None, True])
@pytest.mark.parametrize("codec", list(Codec))
def test_a_message_that_is_not_a_map_is_malformed(message: object, codec: Codec) -> None:
    frame = text(message) if codec is Codec.JSON else packed(message)
    exc = refused(frame, MalformedMessage, "malformed_message")
    assert exc.message == "a message must be a map with a string type"


def nested(depth: int) -> object:
    """Arrays nested ``depth`` levels deep (1: ``[]``)."""
    deep: object = []
    for _ in range(depth - 1):
        deep = [deep]
    return deep


@pytest.mark.parametrize("codec", list(Codec))
def test_nesting_up_to_the_bound_is_accepted_and_encodes_again_in_both_codecs(
    codec: Codec,
) -> None:
    # The message's own map is level 1: its fields may nest MAX_DEPTH - 1 levels more.
    message = {"type": "ping", "deep": nested(MAX_DEPTH - 1)}
    assert decode(codec.encode(message), LIMIT)[0] == message
    for other in Codec:  # relayed to a client of either codec, or through Redis
        assert decode(other.encode(message), LIMIT)[0] == message


@pytest.mark.parametrize("codec", list(Codec))
def test_nesting_past_the_bound_is_invalid_and_names_the_field(codec: Codec) -> None:
    message = {"type": "ping", "id": "m1", "deep": nested(MAX_DEPTH)}
    exc = refused(codec.encode(message), InvalidMessage, "invalid_message")
    assert exc.details == {"field": "deep", "max_depth": MAX_DEPTH}
    assert exc.ref == "m1"  # read as a map with a type and an id: the error names it


def test_a_deep_candidate_in_msgpack_is_invalid_although_msgpack_decodes_it() -> None:
    # The finding of issue 10: ~1,000 levels pass msgpack's own limit, and json.dumps (a
    # JSON recipient, or an error echoing it) then hit the recursion limit.
    deep: object = {"candidate": "c"}
    for _ in range(1000):
        deep = {"candidate": deep}
    message = {"type": "candidate", "to": "p_1", "candidate": deep}
    frame = packed(message)
    decoded = msgpack.unpackb(frame)  # the decoder alone accepts it...
    with pytest.raises(RecursionError):
        json.dumps(decoded)  # ...and JSON cannot carry it on
    exc = refused(frame, InvalidMessage, "invalid_message")
    assert exc.details == {"field": "candidate", "max_depth": MAX_DEPTH}


def test_a_top_level_map_at_the_bound_holds_scalars() -> None:
    # Depth counts containers: a scalar inside the deepest allowed array is fine.
    message = {"type": "ping", "deep": nested(MAX_DEPTH - 1)}
    innermost: Any = message["deep"]
    while innermost:
        innermost = innermost[0]
    innermost.append(1)
    assert decode(text(message), LIMIT)[0] == message


@pytest.mark.parametrize("codec", list(Codec))
def test_more_values_than_the_bound_is_invalid(codec: Codec) -> None:
    # The message's map, "type" and its value, "many" and its array: 5 values around it.
    fits = {"type": "ping", "many": [0] * (MAX_VALUES - 5)}
    assert decode(codec.encode(fits), LIMIT)[0] == fits
    over = {"type": "ping", "many": [0] * (MAX_VALUES - 4)}
    exc = refused(codec.encode(over), InvalidMessage, "invalid_message")
    assert exc.details == {"max_values": MAX_VALUES}


def test_a_non_portable_value_is_malformed_before_the_bounds_are_applied() -> None:
    message = {"type": "ping", "deep": nested(MAX_DEPTH + 5), "x": b"bin"}
    refused(packed(message), MalformedMessage, "malformed_message")


@pytest.mark.parametrize("message", [{}, {"kind": "ping"}, {"type": None}, {"type": 1}])
def test_a_map_without_a_string_type_is_malformed(message: object) -> None:
    refused(text(message), MalformedMessage, "malformed_message")


@pytest.mark.parametrize("kind", [True, ["ping"], {"t": "ping"}])
def test_a_type_of_another_json_kind_is_malformed(kind: object) -> None:
    refused(text({"type": kind}), MalformedMessage, "malformed_message")


def test_a_msgpack_type_given_as_bytes_is_malformed() -> None:
    refused(packed({"type": b"ping"}), MalformedMessage, "malformed_message")


# --- lone surrogates ---------------------------------------------------------------------------
# JSON can spell a UTF-16 surrogate on its own (\ud800); Python decodes it into a str that no
# UTF-8 encoder accepts, so echoing or relaying it would fail when the reply is sent.


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"ping","id":"\\ud800"}',  # a high surrogate alone
        '{"type":"ping","id":"x\\udfff"}',  # a low surrogate alone
        '{"type":"ping","x":{"\\udc00":1}}',  # in a key
        '{"type":"ping","x":[[0, "\\ud83d"]]}',  # nested, half of a pair
        '{"type":"unknown\\ud800"}',  # in the type, which the error would echo
    ],
)
def test_json_with_a_lone_surrogate_is_malformed(frame: str) -> None:
    exc = refused(frame, MalformedMessage, "malformed_message")
    assert exc.message == "cannot accept json message: a string holds a lone surrogate"


def test_json_escapes_of_real_characters_are_accepted() -> None:
    # A surrogate pair is one character; \u00e9 is é.
    message, _ = decode('{"type":"ping","id":"\\ud83d\\ude00 caf\\u00e9"}', LIMIT)
    assert message["id"] == "\U0001f600 café"


def test_json_with_escapes_and_no_strings_to_check_is_accepted() -> None:
    message, _ = decode('{"type":"ping","\\u0078":[1,null,true,2.5]}', LIMIT)
    assert message == {"type": "ping", "x": [1, None, True, 2.5]}


# --- unknown types -----------------------------------------------------------------------------


def test_an_unknown_type_is_unknown_type_with_the_type_in_details() -> None:
    exc = refused(text({"type": "teleport"}), UnknownType, "unknown_type")
    assert exc.details == {"type": "teleport"}
    assert "teleport" in exc.message


def test_an_unknown_type_is_echoed_cut_to_64_characters() -> None:
    exc = refused(text({"type": "t" * 1000}), UnknownType, "unknown_type")
    assert exc.details == {"type": "t" * 64}
    assert len(exc.message) < 100


@pytest.mark.parametrize("kind", ["error", "welcome", "Ping", " ping", ""])
def test_server_messages_and_near_misses_are_unknown_types(kind: str) -> None:
    refused(text({"type": kind}), UnknownType, "unknown_type")


# --- the id ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ref", [True, False, 1.5, [], {}, "x" * 65, "é" * 65])
def test_a_bad_id_is_invalid(ref: object) -> None:
    exc = invalid({"type": "ping", "id": ref}, "id")
    assert exc.message == "id must be a string or an integer"


def test_the_id_is_checked_before_the_fields() -> None:
    invalid({"type": "admit", "id": True}, "id")


# --- fields -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        (kind, field.name)
        for kind, schema in sorted(CLIENT_MESSAGES.items())
        for field in schema
        if field.required
    ],
)
def test_a_missing_required_field_is_invalid(kind: str, field: str) -> None:
    message = {k: v for k, v in VALID[kind].items() if k != field}
    exc = invalid(message, field)
    assert exc.message == f"{field} is required"


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("hello", "room", 1),
        ("hello", "room", None),
        ("hello", "token", ["t"]),
        ("hello", "resume", {}),
        ("hello", "name", 3.5),
        ("hello", "protocol", "1"),
        ("hello", "protocol", 1.0),
        ("hello", "features", "join_now"),
        ("hello", "features", {"join_now": True}),
        ("start", "appointment", 7),
        ("admit", "participant_id", None),
        ("deny", "message", 1),
        ("offer", "sdp", ["v=0"]),
        ("candidate", "to", 2),
        ("candidate", "candidate", "candidate:1 1 udp"),
        ("candidate", "candidate", []),
    ],
)
def test_a_field_of_the_wrong_type_is_invalid(kind: str, field: str, value: object) -> None:
    message = {**VALID[kind], field: value}
    frame = packed(message)  # msgpack, so bytes are bytes
    exc = refused(frame, InvalidMessage, "invalid_message")
    assert exc.details == {"field": field}
    assert exc.message == f"{field} has the wrong type"


@pytest.mark.parametrize(("kind", "field"), [("hello", "protocol"), ("hello", "room")])
@pytest.mark.parametrize("value", [True, False])
def test_a_bool_is_not_an_int_or_a_string(kind: str, field: str, value: bool) -> None:
    invalid({**VALID[kind], field: value}, field)


@pytest.mark.parametrize(
    ("kind", "field", "max_length"),
    [
        (kind, field.name, field.max_len)
        for kind, schema in sorted(CLIENT_MESSAGES.items())
        for field in schema
        if field.max_len is not None
    ],
)
def test_a_string_at_its_limit_passes_and_one_more_is_invalid(
    kind: str, field: str, max_length: int
) -> None:
    at_limit = {**VALID[kind], field: "x" * max_length}
    assert decode(text(at_limit), 1 << 20)[0] == at_limit
    over = {**VALID[kind], field: "x" * (max_length + 1)}
    with pytest.raises(InvalidMessage) as info:
        decode(text(over), 1 << 20)
    assert info.value.details == {"field": field, "max_length": max_length}
    assert info.value.message == f"{field} is longer than {max_length}"


@pytest.mark.parametrize(
    "features",
    [[1], [None], ["x" * 33], ["f"] * 17, [["join_now"]]],
    ids=["int", "null", "too-long", "too-many", "nested"],
)
def test_features_are_a_short_list_of_short_strings(features: list[object]) -> None:
    message = {**VALID["hello"], "features": features}
    exc = refused(packed(message), InvalidMessage, "invalid_message")
    assert exc.details == {"field": "features", "max_length": 16}
    assert decode(text({**VALID["hello"], "features": ["x" * 32] * 16}), LIMIT)[0]["features"]


def test_string_limits_count_characters() -> None:
    message = {**VALID["admit"], "participant_id": "é" * 64}
    assert decode(text(message), LIMIT)[0] == message


# --- ICE candidates ------------------------------------------------------------------------


def candidate(value: object) -> Message:
    return {"type": "candidate", "to": "p_1", "candidate": value}


@pytest.mark.parametrize(
    "value",
    [
        None,  # end of candidates
        {"candidate": ""},
        {"candidate": "c" * 2048},
        {"candidate": "c", "sdpMid": None, "sdpMLineIndex": None},
        {"candidate": "c", "sdpMid": "m" * 64},
        {"candidate": "c", "sdpMLineIndex": 1023},
        {"candidate": "c", "usernameFragment": "abcd"},
    ],
)
def test_valid_candidates(value: object) -> None:
    assert decode(text(candidate(value)), LIMIT)[0]["candidate"] == value


def assert_bad_candidate(value: object, message: str) -> None:
    exc = invalid(candidate(value), "candidate")
    assert exc.message == message


@pytest.mark.parametrize(
    "value",
    [{}, {"candidate": None}, {"candidate": 1}, {"candidate": ["c"]}, {"candidate": "c" * 2049}],
)
def test_the_candidate_line_must_be_a_short_string(value: object) -> None:
    assert_bad_candidate(value, "candidate.candidate must be a string")


@pytest.mark.parametrize("mid", [0, True, ["0"], "m" * 65])
def test_sdp_mid_must_be_a_short_string(mid: object) -> None:
    assert_bad_candidate({"candidate": "c", "sdpMid": mid}, "candidate.sdpMid must be a string")


@pytest.mark.parametrize("index", [True, False, -1, 1024, 1.0, "0", [0]])
def test_sdp_m_line_index_must_be_a_small_integer(index: object) -> None:
    assert_bad_candidate(
        {"candidate": "c", "sdpMLineIndex": index},
        "candidate.sdpMLineIndex must be a small integer",
    )


def test_a_msgpack_candidate_is_checked_the_same_way() -> None:
    with pytest.raises(InvalidMessage) as info:
        decode(packed(candidate({"candidate": "c", "sdpMLineIndex": -1})), LIMIT)
    assert info.value.details == {"field": "candidate"}


# --- error messages --------------------------------------------------------------------------


def test_error_without_details_or_ref() -> None:
    assert error("forbidden", "only the host may admit") == {
        "type": "error",
        "code": "forbidden",
        "message": "only the host may admit",
        "details": {},
    }


def test_error_with_details_and_ref() -> None:
    details: dict[str, Any] = {"field": "id"}
    out = error("invalid_message", "id must be a string", details, ref=0)
    assert out == {
        "type": "error",
        "code": "invalid_message",
        "message": "id must be a string",
        "details": {"field": "id"},
        "ref": 0,
    }
    details["field"] = "changed"
    assert out["details"] == {"field": "id"}  # a copy, not the caller's dict


# --- the walk skipped for a JSON frame whose text shows there is nothing to find ---------------

_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=8)  # a text frame is UTF-8
)
_VALUES = st.recursive(
    _LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children)
    ),
    max_leaves=40,
)


def _nested(depth: int) -> object:
    value: object = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _walk_finds_nothing(frame: str) -> bool:
    shape = _inspect(json.loads(frame), check_strings=True)
    return (shape.problem, shape.too_deep, shape.too_many) == (None, False, False)


@given(value=_VALUES, ascii=st.booleans())
@example(value="\ud800", ascii=True)  # escaped: \ud800
@example(value=2**63, ascii=True)
@example(value=-(2**63) - 1, ascii=True)  # 19 digits, out of range below
@example(value=float("inf"), ascii=True)
@example(value=float("nan"), ascii=True)
@example(value=1e300, ascii=True)
@example(value=_nested(MAX_DEPTH), ascii=True)  # one level too deep
@example(value=_nested(MAX_DEPTH - 1), ascii=True)  # as deep as allowed
@example(value=list(range(MAX_VALUES)), ascii=True)
def test_a_json_frame_is_walked_unless_the_walk_would_find_nothing(
    value: object, ascii: bool
) -> None:
    frame = json.dumps({"type": "candidate", "value": value}, ensure_ascii=ascii)
    decoded, odd_number = _from_json(frame)
    assert json.dumps(decoded) == json.dumps(json.loads(frame))  # (NaN is not NaN)
    if not odd_number and _plainly_portable(frame):
        assert _walk_finds_nothing(frame)


@pytest.mark.parametrize(
    ("frame", "odd"),
    [
        ('{"a":-9223372036854775809}', True),
        ('{"a":18446744073709551616}', True),
        ('{"a":18446744073709551615}', False),
        ('{"a":1e400}', True),
        ('{"a":-1E+999}', True),
        ('{"a":NaN}', True),
        ('{"a":-Infinity}', True),
        ('{"a":1e300}', False),
    ],
)
def test_the_numbers_the_walk_refuses_are_noted_as_they_are_parsed(frame: str, odd: bool) -> None:
    assert _from_json(frame)[1] is odd


@pytest.mark.parametrize(
    "frame",
    ['{"a":"\\ud800"}', "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), " " * (MAX_VALUES + 1)],
)
def test_a_frame_that_might_hold_what_the_walk_refuses_is_walked(frame: str) -> None:
    assert not _plainly_portable(frame)


def test_a_relayed_candidate_is_not_walked() -> None:
    candidate = {
        "type": "candidate",
        "to": "p_0123456789abcdef",
        "candidate": {
            "candidate": "candidate:842163049 1 udp 1677729535 192.0.2.7 54321 typ srflx "
            "raddr 10.0.0.2 rport 54321 generation 0 ufrag EsAw network-cost 999",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
            "usernameFragment": "EsAw",
        },
    }
    frame = json.dumps(candidate)
    assert _plainly_portable(frame)
    assert decode(frame, LIMIT) == (candidate, Codec.JSON)


@given(value=_VALUES)
@example(value={"é\u2028": ['"\\', 1e300, -0.0, 2**64]})
def test_the_json_codec_writes_what_json_dumps_writes(value: object) -> None:
    message = {"type": "x", "value": value}
    assert Codec.JSON.encode(message) == json.dumps(
        message, separators=(",", ":"), ensure_ascii=False
    )


def test_the_json_codec_refuses_what_json_cannot_carry() -> None:
    with pytest.raises(TypeError):
        Codec.JSON.encode({"type": "x", "value": {1, 2}})
