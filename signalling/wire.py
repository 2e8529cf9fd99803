"""The wire format: envelope, codecs and validation of client messages.

Every message is a map with a string ``type``. JSON text frames and msgpack binary frames
carry the same maps; the server answers in the codec of the client's hello. A client may
put an ``id`` (string or integer) on any message; errors caused by it carry it back as
``ref``. Unknown fields are ignored, so clients can be newer than the server.
See PROTOCOL.md beside this file.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from signalling.errors import (
    FrameTooLarge,
    InvalidMessage,
    MalformedMessage,
    SignallingError,
    UnknownType,
)

Message = dict[str, Any]

# Bounds on what a message may hold, so that anything accepted can be encoded again, in
# either codec, wherever it goes (relayed whole to another client, through Redis to another
# node, echoed in an error): json.dumps recurses, and msgpack refuses deep nesting too.
MAX_DEPTH = 32  # levels of maps and arrays, the message's own map included
MAX_VALUES = 10_000  # values in total: every map key, map value and array element


def _json_encoder() -> Callable[[object], str]:
    """``json.dumps(value, separators=(",", ":"), ensure_ascii=False)``, faster.

    `json.dumps` with arguments builds a `json.JSONEncoder`, and its `encode` a C encoder,
    on every call: 5.7 us of a relayed candidate's ~6 us of encoding. The C encoder
    (`json.encoder.c_make_encoder`, CPython's) is built here once, with the arguments
    `JSONEncoder.iterencode` gives it, and used only if it writes what `json.dumps` writes
    for a sample; otherwise one `JSONEncoder` is kept. No circular check: a message is a
    tree (a cycle would end in RecursionError, as a too deep one does)."""
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is not None:
        try:
            c_encode = make(
                None, encoder.default, json.encoder.encode_basestring, None, ":", ",",
                False, False, True,
            )  # fmt: skip

            def fast(value: object) -> str:
                return "".join(c_encode(value, 0))

            sample = {"a": [1, -2.5, 1e300, True, None, 'é\u2028"\\'], "b": {"c": ""}}
            if fast(sample) == json.dumps(sample, separators=(",", ":"), ensure_ascii=False):
                return fast
        except (TypeError, ValueError):  # another Python's C encoder: the plain way
            pass
    return encoder.encode


_to_json = _json_encoder()


class Codec(enum.Enum):
    JSON = "json"
    MSGPACK = "msgpack"

    def encode(self, message: Mapping[str, object]) -> str | bytes:
        if self is Codec.JSON:
            return _to_json(message)
        return msgpack.packb(message, use_bin_type=True)


def decode(frame: str | bytes, max_bytes: int) -> tuple[Message, Codec]:
    """Decode one frame into a message map and the codec it came in.

    Raise FrameTooLarge, MalformedMessage, UnknownType or InvalidMessage; the caller
    answers with an error and keeps the connection."""
    if isinstance(frame, str):
        size = len(frame) if frame.isascii() else len(frame.encode())
    else:
        size = len(frame)
    if size > max_bytes:
        raise FrameTooLarge(
            f"message of {size} bytes is over the limit of {max_bytes}",
            {"max_bytes": max_bytes, "size": size},
        )
    codec = Codec.JSON if isinstance(frame, str) else Codec.MSGPACK
    odd_number = False
    try:
        if isinstance(frame, str):
            message, odd_number = _from_json(frame)
        else:
            message = msgpack.unpackb(frame, raw=False, strict_map_key=True, ext_hook=_no_ext)
    except (ValueError, RecursionError, msgpack.UnpackException, TypeError) as exc:
        raise MalformedMessage(
            f"cannot decode {codec.value} message: {type(exc).__name__}"
        ) from None
    if isinstance(frame, str) and not odd_number and _plainly_portable(frame):
        shape = _PORTABLE  # (a candidate relayed: no walk over every value)
    else:
        shape = _inspect(message, check_strings=isinstance(frame, str) and "\\u" in frame)
    if shape.problem is not None:
        raise MalformedMessage(f"cannot accept {codec.value} message: {shape.problem}")
    if not isinstance(message, dict):
        raise MalformedMessage("a message must be a map with a string type")
    kind = message.get("type")
    if not isinstance(kind, str):
        raise MalformedMessage("a message must be a map with a string type")
    try:
        shape.check_bounds()
        schema = CLIENT_MESSAGES.get(kind)
        if schema is None:
            raise UnknownType(f"unknown message type {kind[:64]!r}", {"type": kind[:64]})
        _validate(message, schema)
    except SignallingError as exc:
        ref = message.get("id")
        if isinstance(ref, str | int) and not isinstance(ref, bool) and len(str(ref)) <= _ID:
            exc.ref = ref  # so the client can tell which of its messages failed
        raise
    return message, codec


def _no_ext(code: int, data: bytes) -> object:
    raise ValueError("msgpack extension types are not accepted")


_MSGPACK_INTS = range(-(2**63), 2**64)
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(slots=True)
class _Shape:
    """What `_inspect` found: a value neither codec could carry (``problem``), or past the
    bounds: nested deeper than MAX_DEPTH (under the top-level field ``deep_field``, None if
    the message itself holds no field there) or over MAX_VALUES values."""

    problem: str | None = None
    too_deep: bool = False
    deep_field: str | None = None
    too_many: bool = False

    def check_bounds(self) -> None:
        """Raise InvalidMessage if the message is past MAX_DEPTH or MAX_VALUES."""
        if self.too_deep:
            details: dict[str, object] = {"max_depth": MAX_DEPTH}
            if self.deep_field is not None:
                details["field"] = self.deep_field
            where = f"{self.deep_field} is" if self.deep_field is not None else "values are"
            raise InvalidMessage(f"{where} nested deeper than {MAX_DEPTH} levels", details)
        if self.too_many:
            raise InvalidMessage(
                f"the message holds more than {MAX_VALUES} values", {"max_values": MAX_VALUES}
            )


_PORTABLE = _Shape()  # nothing found (never changed)
_odd_number = [False]  # set by the hooks below while `_from_json` decodes


def _note_int(text: str) -> int:
    value = int(text)
    if value not in _MSGPACK_INTS:
        _odd_number[0] = True
    return value


def _note_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        _odd_number[0] = True
    return value


def _note_constant(text: str) -> float:
    _odd_number[0] = True  # NaN, Infinity, -Infinity
    return float(text)


# json.loads, noting the numbers `_inspect` refuses as they are parsed (a few per message).
_JSON_DECODER = json.JSONDecoder(
    parse_int=_note_int, parse_float=_note_float, parse_constant=_note_constant
)


def _from_json(frame: str) -> tuple[Any, bool]:
    """``json.loads(frame)``, and whether it holds a number that `_inspect` refuses (an
    integer past 64 bits, a number that is not finite)."""
    _odd_number[0] = False
    return _JSON_DECODER.decode(frame), _odd_number[0]


def _plainly_portable(frame: str) -> bool:
    """Whether a JSON frame, once `_from_json` found no odd number in it, holds nothing
    else that `_inspect` would find, so that the walk can be skipped: no ``\\u`` escape (the
    only way to a lone surrogate), no more characters than MAX_VALUES (every value, key and
    element starts at a character of its own) and no more ``{`` and ``[`` than MAX_DEPTH (a
    container's depth is at most the number of containers). Three scans in C; the walk
    was 8 % of a relayed candidate's CPU. tests/signalling/test_wire.py holds the two to
    the same verdict."""
    return (
        len(frame) <= MAX_VALUES
        and "\\u" not in frame
        and frame.count("{") + frame.count("[") <= MAX_DEPTH
    )


def _inspect(value: object, *, check_strings: bool) -> _Shape:
    """Check that ``value`` can be carried by both codecs and is within the bounds.

    Parts of a message reach other clients (a candidate is relayed whole) and errors echo
    parts back, in the recipient's codec; a value that codec cannot encode would fail when
    the message is sent, after the command took effect. So only values both codecs carry are
    accepted: maps with string keys, lists, strings, 64-bit integers, finite floats, booleans
    and null. That refuses msgpack binary and timestamps (msgpack decodes timestamps itself,
    without calling ``ext_hook``), and JSON NaN, huge integers and lone surrogates (JSON may
    spell ``\\ud800`` alone; no UTF-8 encoder accepts it). Surrogates can only come from a
    ``\\u`` escape, so strings are searched only when ``check_strings`` says the frame has one.

    Iterative, and it stops at the bounds: past MAX_DEPTH it looks no deeper, past
    MAX_VALUES no further, so its work is bounded whatever the decoders let through (msgpack
    nests up to 1024 levels)."""
    shape = _Shape()
    # (value, its depth: 1 for the message's own map, the top-level field it is under)
    stack: list[tuple[object, int, str | None]] = [(value, 1, None)]
    seen = 0
    while stack:
        item, depth, field = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            shape.too_many = True
            return shape
        if isinstance(item, str):
            if check_strings and _SURROGATE.search(item):
                shape.problem = "a string holds a lone surrogate"
                return shape
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                if not shape.too_deep:
                    shape.too_deep, shape.deep_field = True, field
                continue
            if isinstance(item, dict):
                for key, child in item.items():
                    under = key if depth == 1 and isinstance(key, str) else field
                    stack.append((key, depth + 1, under))
                    stack.append((child, depth + 1, under))
            else:
                stack.extend((child, depth + 1, field) for child in item)
        elif isinstance(item, bool) or item is None:
            pass
        elif isinstance(item, int):
            if item not in _MSGPACK_INTS:
                shape.problem = "an integer does not fit in 64 bits"
                return shape
        elif isinstance(item, float):
            if not math.isfinite(item):
                shape.problem = "a number is not finite"
                return shape
        else:
            shape.problem = f"{type(item).__name__} values are not accepted"
            return shape
    return shape


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: type | tuple[type, ...]
    required: bool = True
    max_len: int | None = None


_ID = 64  # participant ids, room ids
_SDP = 60_000


def _str(name: str, max_len: int, required: bool = True) -> Field:
    return Field(name, str, required, max_len)


CLIENT_MESSAGES: dict[str, tuple[Field, ...]] = {
    "hello": (
        _str("room", 128),
        _str("token", 4096),
        _str("resume", 4096, required=False),
        _str("name", 200, required=False),
        Field("protocol", int, required=False),
        Field("features", list, required=False),
    ),
    "knock": (),
    "join": (),
    "knock_cancel": (),
    "start": (_str("appointment", _ID, required=False),),
    "admit": (_str("participant_id", _ID),),
    "deny": (_str("participant_id", _ID), _str("message", 500, required=False)),
    "admit_all": (),
    "offer": (_str("to", _ID), _str("sdp", _SDP)),
    "answer": (_str("to", _ID), _str("sdp", _SDP)),
    "candidate": (_str("to", _ID), Field("candidate", (dict, type(None)))),
    "leave": (),
    "end": (),
    "ping": (),
    "resync": (),
    "notice": (_str("text", 200), _str("participant_id", _ID, required=False)),
}


def _validate(message: Message, schema: tuple[Field, ...]) -> None:
    ref = message.get("id")
    if ref is not None and (
        isinstance(ref, bool) or not isinstance(ref, str | int) or len(str(ref)) > _ID
    ):
        raise InvalidMessage("id must be a string or an integer", {"field": "id"})
    for field in schema:
        if field.name not in message:
            if field.required:
                raise InvalidMessage(f"{field.name} is required", {"field": field.name})
            continue
        value = message[field.name]
        if not isinstance(value, field.kind) or isinstance(value, bool):
            raise InvalidMessage(f"{field.name} has the wrong type", {"field": field.name})
        if field.max_len is not None and isinstance(value, str) and len(value) > field.max_len:
            raise InvalidMessage(
                f"{field.name} is longer than {field.max_len}",
                {"field": field.name, "max_length": field.max_len},
            )
    if message["type"] == "candidate" and message["candidate"] is not None:
        _validate_candidate(message["candidate"])
    if message["type"] == "hello" and "features" in message:
        _validate_features(message["features"])


MAX_FEATURES = 16
_FEATURE = 32


def _validate_features(features: list[object]) -> None:
    """``hello.features``: what the client can do, as short strings (unknown ones are
    ignored, so a client may name features this server does not have)."""
    if len(features) > MAX_FEATURES or not all(
        isinstance(f, str) and len(f) <= _FEATURE for f in features
    ):
        raise InvalidMessage(
            f"features must be a list of at most {MAX_FEATURES} strings of at most "
            f"{_FEATURE} characters",
            {"field": "features", "max_length": MAX_FEATURES},
        )


def _validate_candidate(candidate: Mapping[str, object]) -> None:
    """An RTCIceCandidateInit: candidate line, sdpMid, sdpMLineIndex."""
    line = candidate.get("candidate")
    mid = candidate.get("sdpMid")
    index = candidate.get("sdpMLineIndex")
    if not isinstance(line, str) or len(line) > 2048:
        raise InvalidMessage("candidate.candidate must be a string", {"field": "candidate"})
    if mid is not None and (not isinstance(mid, str) or len(mid) > _ID):
        raise InvalidMessage("candidate.sdpMid must be a string", {"field": "candidate"})
    if index is not None and (
        isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 1024
    ):
        raise InvalidMessage(
            "candidate.sdpMLineIndex must be a small integer", {"field": "candidate"}
        )


def error(
    code: str, message: str, details: Mapping[str, object] | None = None, ref: object = None
) -> Message:
    """An error message for the client."""
    out: Message = {
        "type": "error",
        "code": code,
        "message": message,
        "details": dict(details or {}),
    }
    if ref is not None:
        out["ref"] = ref
    return out
