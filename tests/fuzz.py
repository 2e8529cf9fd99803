"""Hypothesis strategies for fuzzing the protocol: the codec (tests/signalling/test_fuzz.py)
and real nodes (tests/e2e/test_fuzz.py) draw from the same ones.

- `values`: anything both codecs carry, nested, with unicode edge cases and large strings;
- `deep`: arrays or maps nested up to past msgpack's own limit;
- `wrong_field`: a valid message of every type with one field given a wrong value;
- `messages`: any of those as messages, plus maps with random types;
- `frames`: messages encoded in either codec, plus frames that are not messages at all.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import msgpack
from hypothesis import strategies as st

from signalling.wire import CLIENT_MESSAGES, MAX_DEPTH, Codec, Message

# Characters that trip up text handling: NUL, BOM, the last code point, line and paragraph
# separators, right-to-left marks, combining marks, astral emoji.
EDGE = ["\x00", "\ufeff", "\U0010ffff", "\u2028", "\u2029", "\u202e", "\u0301", "🦉", "\x7f"]
edge_text = st.text(
    alphabet=st.one_of(st.characters(codec="utf-8"), st.sampled_from(EDGE)), max_size=40
)
# Large strings, cheaply: a size around the field and frame limits, and one character.
large_text = st.builds(
    lambda n, c: c * n,
    st.sampled_from([64, 65, 128, 129, 200, 201, 2048, 2049, 4096, 4097, 60_000, 60_001]),
    st.sampled_from(["a", "é", "🦉"]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    edge_text,
)
values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(scalars, large_text),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(edge_text, children, max_size=4)
    ),
    max_leaves=12,
)


def nest(depth: int, as_map: bool) -> Any:
    """Arrays or maps nested ``depth`` levels deep."""
    inner: Any = "x"
    for _ in range(depth):
        inner = {"k": inner} if as_map else [inner]
    return inner


deep = st.builds(
    nest,
    st.one_of(
        st.integers(MAX_DEPTH - 3, MAX_DEPTH + 3),  # around the bound
        st.integers(1, 1_000),  # anywhere, up to the finding's depth (msgpack packs ~1,000)
    ),
    st.booleans(),
)

# One valid example of every client message, with every optional field present.
CANDIDATE = {"candidate": "candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host", "sdpMid": "0"}
VALID: dict[str, Message] = {
    "hello": {
        "type": "hello",
        "room": "r1",
        "token": "v1.k.p.s",
        "resume": "v1.k.p.s",
        "name": "Ada",
        "protocol": 1,
        "features": ["join_now", "deltas", "some_future_feature"],
    },
    "knock": {"type": "knock"},
    "join": {"type": "join"},
    "knock_cancel": {"type": "knock_cancel"},
    "start": {"type": "start", "appointment": "apt_1"},
    "admit": {"type": "admit", "participant_id": "p_1"},
    "deny": {"type": "deny", "participant_id": "p_1", "message": "not today"},
    "admit_all": {"type": "admit_all"},
    "offer": {"type": "offer", "to": "p_1", "sdp": "v=0\r\n"},
    "answer": {"type": "answer", "to": "p_1", "sdp": "v=0\r\n"},
    "candidate": {
        "type": "candidate",
        "to": "p_1",
        "candidate": {**CANDIDATE, "sdpMLineIndex": 0},
    },
    "leave": {"type": "leave"},
    "end": {"type": "end"},
    "ping": {"type": "ping"},
    "resync": {"type": "resync"},
    "notice": {"type": "notice", "text": "Running 10 minutes late", "participant_id": "p_1"},
}
assert set(VALID) == set(CLIENT_MESSAGES)  # every message type is fuzzed

FIELDS = [(kind, field.name) for kind, schema in CLIENT_MESSAGES.items() for field in schema]
FIELDS += [(kind, "id") for kind in CLIENT_MESSAGES]  # the envelope's optional id
FIELDS += [("candidate", f"candidate.{name}") for name in ("candidate", "sdpMid", "sdpMLineIndex")]


def with_field(kind: str, field: str, value: Any) -> Message:
    """The valid ``kind`` message with ``field`` (``candidate.x``: inside the candidate)
    set to ``value``."""
    message: Message = json.loads(json.dumps(VALID[kind]))
    if field.startswith("candidate."):
        message["candidate"][field.split(".", 1)[1]] = value
    else:
        message[field] = value
    return message


wrong_field = st.sampled_from(FIELDS).flatmap(
    lambda kf: st.one_of(values, deep).map(lambda v: with_field(kf[0], kf[1], v))
)
random_type = st.builds(
    lambda kind, extra: {**extra, "type": kind},
    st.one_of(st.sampled_from(sorted(CLIENT_MESSAGES)), edge_text, st.just("")),
    st.dictionaries(edge_text, values, max_size=4),
)
deep_field = st.builds(
    lambda kind, value: {**VALID[kind], "extra": value}, st.sampled_from(sorted(VALID)), deep
)
messages: st.SearchStrategy[Any] = st.one_of(wrong_field, random_type, deep_field, values)

NOT_MESSAGES = [
    "",
    "{",
    "[]",
    "null",
    '{"type":"ping","n":NaN}',
    '{"type":"ping","n":1e400}',
    '{"type":"ping","n":123456789012345678901234567890}',
    '{"type":"ping","s":"\\ud800"}',
    '{"type":"ping","type":"hello"}',
]


def encode(message: Any, codec: Codec) -> str | bytes:
    """``message`` as a client would send it (deep ones too: the limit is the server's)."""
    if codec is Codec.JSON:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 5_000))
        try:
            return json.dumps(message, ensure_ascii=False)
        finally:
            sys.setrecursionlimit(limit)
    packed: bytes = msgpack.packb(message, use_bin_type=True)
    return packed


frames: st.SearchStrategy[str | bytes] = st.one_of(
    st.builds(encode, messages, st.sampled_from(list(Codec))),
    st.sampled_from(NOT_MESSAGES),
    st.binary(max_size=64),  # msgpack that is anything, or nothing
    edge_text,
)
