"""Errors of the admission policy.

Every error carries a stable snake_case ``code`` (a class attribute, safe to put on the wire),
a lowercase human ``message`` naming the state, and JSON-friendly ``details`` (times are unix
seconds as floats, exactly as the caller or token gave them).

The hierarchy::

    AdmissionError                      admission_error
    ├── TokenError                      invalid_token
    │   ├── MalformedToken              invalid_token        not a v1 token, bad field
    │   ├── BadSignature                invalid_token        forged or tampered
    │   ├── UnknownKey                  invalid_token        key id not in the key ring
    │   ├── WrongTokenKind              invalid_token        a resume token used to join, ...
    │   ├── TokenExpired                token_expired        details: expired_at
    │   └── TokenNotYetValid            token_not_yet_valid  details: not_before
    ├── WindowError                     outside_join_window
    │   ├── RoomNotOpenYet              room_not_open        details: opens_at, closes_at
    │   └── RoomClosed                  room_closed          details: closed_at
    ├── Forbidden                       forbidden            "only the host may admit", ...
    ├── UnknownAppointment              unknown_appointment  start names an appointment
    │                                                        nobody here has a link for
    ├── CallInProgress                  call_in_progress     start for another appointment
    │                                                        while a call is active
    ├── NameRequired                    name_required
    ├── InvalidName                     invalid_name         empty, too long, control chars
    ├── NotInCall                       not_in_call          sender of call set-up not in call
    └── PeerNotAdmitted                 peer_not_admitted    addressee not in the call

The four token errors that share ``invalid_token`` are distinct classes for logs and tests;
a client is told no more than "this token is not valid" (which of forged, tampered or signed
by a retired key it is helps an attacker more than a user).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:  # pragma: no cover - annotations only; tokens imports this module
    from admission.tokens import TokenKind

__all__ = [
    "AdmissionError",
    "BadSignature",
    "CallInProgress",
    "Forbidden",
    "InvalidName",
    "MalformedToken",
    "NameRequired",
    "NotInCall",
    "PeerNotAdmitted",
    "RoomClosed",
    "RoomNotOpenYet",
    "TokenError",
    "TokenExpired",
    "TokenNotYetValid",
    "UnknownAppointment",
    "UnknownKey",
    "WindowError",
    "WrongTokenKind",
    "format_time",
]


def format_time(ts: float) -> str:
    """Format unix seconds as ISO 8601 UTC to the second, e.g. ``2026-11-21T10:00:00Z``.

    For messages only (details keep the exact float). A value outside the range datetime can
    represent is shown as the number rather than raising while an error is being built.
    """
    try:
        moment = datetime.datetime.fromtimestamp(ts, datetime.UTC)
    except (OverflowError, ValueError, OSError):
        return repr(ts)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class AdmissionError(Exception):
    """Base of every admission error: catch this to turn policy refusals into replies."""

    code: ClassVar[str] = "admission_error"

    def __init__(self, message: str, details: Mapping[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, object] = dict(details) if details is not None else {}


class TokenError(AdmissionError):
    """The token cannot be used: the caller must obtain a new one (reject, do not retry)."""

    code = "invalid_token"


class MalformedToken(TokenError):
    """The string is not a well-formed v1 token, or its signed claims are not valid claims."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"malformed token: {reason}", {"reason": reason})


class BadSignature(TokenError):
    """The signature does not match: the token was forged or altered after signing."""

    def __init__(self) -> None:
        super().__init__("token signature does not match")


class UnknownKey(TokenError):
    """The token names a key id that is not (or no longer) in the key ring."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"token signed with unknown key {key_id!r}", {"key_id": key_id})


class WrongTokenKind(TokenError):
    """A valid token of another kind, e.g. a resume token presented as a join token."""

    def __init__(self, expected: TokenKind, actual: TokenKind) -> None:
        super().__init__(
            f"expected a {expected.value} token, got a {actual.value} token",
            {"expected": expected.value, "actual": actual.value},
        )


class TokenExpired(TokenError):
    """The token's ``expires_at`` has passed."""

    code = "token_expired"

    def __init__(self, expired_at: float) -> None:
        super().__init__(f"token expired at {format_time(expired_at)}", {"expired_at": expired_at})


class TokenNotYetValid(TokenError):
    """The token's ``not_before`` is still in the future."""

    code = "token_not_yet_valid"

    def __init__(self, not_before: float) -> None:
        super().__init__(
            f"token not valid before {format_time(not_before)}", {"not_before": not_before}
        )


class WindowError(AdmissionError):
    """The room's join window is not open at the time of the request."""

    code = "outside_join_window"


class RoomNotOpenYet(WindowError):
    """Too early: the caller may show ``opens_at`` and try again then."""

    code = "room_not_open"

    def __init__(self, opens_at: float, closes_at: float) -> None:
        super().__init__(
            f"room is not open yet: opens at {format_time(opens_at)}",
            {"opens_at": opens_at, "closes_at": closes_at},
        )


class RoomClosed(WindowError):
    """Too late: the join window has closed for good."""

    code = "room_closed"

    def __init__(self, closed_at: float) -> None:
        super().__init__(
            f"room is closed: closed at {format_time(closed_at)}", {"closed_at": closed_at}
        )


class Forbidden(AdmissionError):
    """The participant's role does not allow the action ("only the host may admit")."""

    code = "forbidden"


class UnknownAppointment(AdmissionError):
    """``start`` names an appointment that neither the host's link nor the link of anyone
    in the room is for: the room cannot tell its times or its capacity."""

    code = "unknown_appointment"


class CallInProgress(AdmissionError):
    """``start`` names another appointment than the active call's: end that call first."""

    code = "call_in_progress"


class NameRequired(AdmissionError):
    """The participant must give a display name before knocking (general-link guests)."""

    code = "name_required"

    def __init__(
        self,
        message: str = "a display name is required to join",
        details: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message, details)


class InvalidName(AdmissionError):
    """The display name given is empty, too long or has control characters."""

    code = "invalid_name"


class NotInCall(AdmissionError):
    """The sender of a call set-up message is not in the call."""

    code = "not_in_call"


class PeerNotAdmitted(AdmissionError):
    """The addressee of a call set-up message is not in the call (or not in the room)."""

    code = "peer_not_admitted"
