"""Errors of the protocol layer.

    SignallingError            base; ``code`` is the stable wire error code
    ├── MalformedMessage       not JSON or msgpack, not an object, no string type
    │                                                            (malformed_message)
    ├── UnknownType            a type this server does not know  (unknown_type)
    ├── InvalidMessage         a field is missing or has the wrong type or size
    │                                                            (invalid_message)
    ├── FrameTooLarge          over the message size limit       (frame_too_large)
    ├── HelloRequired          a message before hello            (hello_required)
    ├── DuplicateHello         hello after hello                 (duplicate_hello)
    ├── WrongRoom              the token is for another room      (wrong_room)
    ├── PeerUnavailable        the peer's connection is down      (peer_unavailable)
    ├── RateLimited            too many messages                  (rate_limited)
    ├── InvalidResume          the resume token does not match     (invalid_resume)
    ├── LinkRevoked            the join link was revoked           (link_revoked)
    ├── RoomBusy               too many concurrent decisions       (room_busy)
    └── Unavailable            Redis cannot be reached             (unavailable)

Errors of the core (`rooms.RoomError`, `admission.errors.AdmissionError`) reach the client
the same way: code, message, details. Nothing else does: an unexpected exception is logged
and the client sees only ``internal_error``, and logs name it with `failure`: its class and
where it was raised, never its message.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar


class SignallingError(Exception):
    code: ClassVar[str] = "signalling_error"

    def __init__(self, message: str, details: Mapping[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, object] = dict(details or {})
        self.ref: object = None  # the offending message's id, once known


class MalformedMessage(SignallingError):
    code = "malformed_message"


class UnknownType(SignallingError):
    code = "unknown_type"


class InvalidMessage(SignallingError):
    code = "invalid_message"


class FrameTooLarge(SignallingError):
    code = "frame_too_large"


class HelloRequired(SignallingError):
    code = "hello_required"


class DuplicateHello(SignallingError):
    code = "duplicate_hello"


class WrongRoom(SignallingError):
    code = "wrong_room"


class PeerUnavailable(SignallingError):
    code = "peer_unavailable"


class RateLimited(SignallingError):
    code = "rate_limited"


class InvalidResume(SignallingError):
    code = "invalid_resume"


class RoomBusy(SignallingError):
    code = "room_busy"


class Unavailable(SignallingError):
    code = "unavailable"


class LinkRevoked(SignallingError):
    code = "link_revoked"


def failure(exc: BaseException) -> str:
    """``exc`` described without its message: its class and the innermost place it was
    raised (``KeyError at hub.py:312 in receive``). Exception messages may quote the data
    being handled (a name, a token), so logs name the kind and the place only."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    return f"{type(exc).__name__} at {Path(last.filename).name}:{last.lineno} in {last.name}"
