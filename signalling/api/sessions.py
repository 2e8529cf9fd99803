"""Console sessions: a clinician signs in to the console with their own join link, no key.

The console sends the clinician's join link token (the ``meeting_url`` fragment) in a POST
body, never a URL, and gets back a **console session**: a signed bearer token (the link
key ring, kind ``console``, `admission.tokens.ConsoleClaims`) for that clinician alone, and
a **room token**, a host join token for the clinician's persistent room with no appointment
and no join window, so one console serves back-to-back appointments all day. Both last
``Settings.console_session`` (12 h), never longer than the link they came from.

A session is scoped: it lists and acts on the appointments of its clinician, and only
those; every other appointment is "not found". Only a host link of a clinician's persistent
room (its ``subject`` is the clinician id, and its room is that clinician's) can sign in: a
host link of another room (a room made for one consultation, a link made by
``vestibule link``) is refused with ``NO_CLINICIAN`` and its console has no appointment list.

Sessions are stateless (nothing is stored): one ends when it expires or when the tab that
keeps it closes; revoking the link it came from does not end it (cancelling an appointment
revokes that appointment's links, and the console must not close mid-day for that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from admission.errors import TokenError
from admission.tokens import (
    ConsoleClaims,
    JoinClaims,
    decode_console,
    decode_join,
    encode_console,
    encode_join,
    new_token_id,
)
from rooms.ids import RoomId
from rooms.roles import Role
from signalling.api.errors import ApiError, Unauthorized
from signalling.settings import Settings

LEEWAY = 5.0  # seconds of clock skew, as for hellos


class InvalidLink(ApiError):
    """The link cannot sign in: forged, expired, not yet valid or revoked (``reason``, the
    WebSocket's error code for it)."""

    status = 403
    code = "INVALID_LINK"


class NotAClinicianLink(ApiError):
    """The link is valid but is not a clinician's: a patient's or a guest's."""

    status = 403
    code = "NOT_A_CLINICIAN_LINK"


class NoClinician(ApiError):
    """A host link of a room that is no clinician's persistent room: no appointment list."""

    status = 403
    code = "NO_CLINICIAN"


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """Who a console request comes from: one clinician, and their persistent room."""

    clinician: str
    room: RoomId
    name: str | None
    expires_at: float


@dataclass(frozen=True, slots=True)
class SignIn:
    """What an exchange gives the console."""

    session: ConsoleSession
    token: str  # the console session, sent as Authorization: Bearer
    room_token: str  # a host join token for the clinician's room (the WebSocket's hello)


class ConsoleSessions:
    """Signs clinicians in (`exchange`) and checks their session on each request."""

    def __init__(self, settings: Settings, clock: Any, room_of: Any) -> None:
        """``room_of(clinician)`` is the clinician's persistent room id."""
        self.settings = settings
        self.clock = clock
        self.room_of = room_of

    def exchange(self, claims: JoinClaims) -> SignIn:
        """A session for the clinician of ``claims``, a verified (and not revoked) join link;
        raise NotAClinicianLink or NoClinician."""
        if claims.role is not Role.HOST:
            raise NotAClinicianLink(
                "this is a patient's or a guest's link: open the console with the clinician's",
                {"role": claims.role.value},
            )
        clinician = claims.subject
        if clinician is None or self.room_of(clinician) != claims.room:
            raise NoClinician(
                "this link is not for a clinician's own room, so the console has no "
                "appointment list for it",
                {"room_id": claims.room},
            )
        now = self.clock()
        expires = min(claims.expires_at, now + self.settings.console_session)
        console = ConsoleClaims(
            clinician=clinician, room=claims.room, name=claims.name, not_before=now - 60.0,
            expires_at=expires, token_id=new_token_id(),
        )  # fmt: skip
        room = JoinClaims(
            room=claims.room, role=Role.HOST, subject=clinician, name=claims.name,
            capacity=claims.capacity, not_before=now - 60.0, expires_at=expires,
            token_id=new_token_id(),
        )  # fmt: skip
        keyring = self.settings.keyring
        session = ConsoleSession(clinician, claims.room, claims.name, expires)
        return SignIn(session, encode_console(console, keyring), encode_join(room, keyring))

    def verify_link(self, token: str) -> JoinClaims:
        """The claims of a clinician's join link; raise InvalidLink."""
        try:
            return decode_join(token, self.settings.keyring, self.clock(), leeway=LEEWAY)
        except TokenError as exc:
            raise InvalidLink("the link is not valid", {"reason": exc.code}) from None

    async def authenticate(self, request: Request) -> ConsoleSession:
        """The session of an ``Authorization: Bearer`` header; raise Unauthorized."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("send the console session as Authorization: Bearer ...")
        try:
            claims = decode_console(
                token.strip(), self.settings.keyring, self.clock(), leeway=LEEWAY
            )
        except TokenError as exc:
            raise Unauthorized(
                "the console session is not valid: sign in again", {"reason": exc.code}
            ) from None
        return ConsoleSession(claims.clinician, claims.room, claims.name, claims.expires_at)
