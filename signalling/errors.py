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
and the client sees only ``internal_error``.
"""

from __future__ import annotations

from collections.abc import Mapping
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
