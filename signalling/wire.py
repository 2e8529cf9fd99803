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
from collections.abc import Mapping
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


class Codec(enum.Enum):
    JSON = "json"
    MSGPACK = "msgpack"

    def encode(self, message: Mapping[str, object]) -> str | bytes:
        if self is Codec.JSON:
            return json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        return msgpack.packb(message, use_bin_type=True)


def decode(frame: str | bytes, max_bytes: int) -> tuple[Message, Codec]:
    """Decode one frame into a message map and the codec it came in.

    Raise FrameTooLarge, MalformedMessage, UnknownType or InvalidMessage; the caller
    answers with an error and keeps the connection."""
    size = len(frame.encode()) if isinstance(frame, str) else len(frame)
    if size > max_bytes:
        raise FrameTooLarge(
            f"message of {size} bytes is over the limit of {max_bytes}",
            {"max_bytes": max_bytes, "size": size},
        )
    codec = Codec.JSON if isinstance(frame, str) else Codec.MSGPACK
    try:
        if isinstance(frame, str):
            message = json.loads(frame)
        else:
            message = msgpack.unpackb(frame, raw=False, strict_map_key=True, ext_hook=_no_ext)
    except (ValueError, RecursionError, msgpack.UnpackException, TypeError) as exc:
        raise MalformedMessage(
            f"cannot decode {codec.value} message: {type(exc).__name__}"
        ) from None
    escapes = isinstance(frame, str) and "\\u" in frame
    problem = _not_portable(message, check_strings=escapes)
    if problem is not None:
        raise MalformedMessage(f"cannot accept {codec.value} message: {problem}")
    if not isinstance(message, dict):
        raise MalformedMessage("a message must be a map with a string type")
    kind = message.get("type")
    if not isinstance(kind, str):
        raise MalformedMessage("a message must be a map with a string type")
    try:
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


def _not_portable(value: object, *, check_strings: bool) -> str | None:
    """Why ``value`` cannot be carried by both codecs, or None if it can.

    Parts of a message reach other clients (a candidate is relayed whole) and errors echo
    parts back, in the recipient's codec; a value that codec cannot encode would fail when
    the message is sent, after the command took effect. So only values both codecs carry are
    accepted: maps with string keys, lists, strings, 64-bit integers, finite floats, booleans
    and null. That refuses msgpack binary and timestamps (msgpack decodes timestamps itself,
    without calling ``ext_hook``), and JSON NaN, huge integers and lone surrogates (JSON may
    spell ``\\ud800`` alone; no UTF-8 encoder accepts it). Surrogates can only come from a
    ``\\u`` escape, so strings are searched only when ``check_strings`` says the frame has one.
    Iterative: the decoders already bound the depth, and this must not recurse past them."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if check_strings and _SURROGATE.search(item):
                return "a string holds a lone surrogate"
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, bool) or item is None:
            pass
        elif isinstance(item, int):
            if item not in _MSGPACK_INTS:
                return "an integer does not fit in 64 bits"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "a number is not finite"
        else:
            return f"{type(item).__name__} values are not accepted"
    return None


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
