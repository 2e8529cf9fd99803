"""Shared test helpers: free ports, a fixed key ring, join tokens, the wait factor."""

from __future__ import annotations

import base64
import os
import socket

from admission.tokens import JoinClaims, KeyRing, encode_join, new_token_id
from rooms.ids import AppointmentId, RoomId
from rooms.roles import Role

SECRET = b"vestibule-test-secret-0123456789abcdef"
KEYRING = KeyRing.single("test", SECRET)
# The same key ring for a server started as a process.
KEYS_ENV = {
    "VESTIBULE_KEYS": "test:" + base64.b64encode(SECRET).decode(),
    "VESTIBULE_SIGNING_KEY": "test",
}


# Scales the generous time limits of tests that wait on real time, on slow machines (the
# browser tests read the same variable).
WAIT_FACTOR = float(os.environ.get("VESTIBULE_TEST_WAIT_FACTOR", "1"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def token(
    room: str,
    role: Role,
    *,
    now: float,
    subject: str | None = None,
    name: str | None = None,
    appointment: str | None = None,
    starts_at: float | None = None,
    ends_at: float | None = None,
    capacity: int | None = None,
    valid_for: float = 3600.0,
    keyring: KeyRing = KEYRING,
) -> str:
    """A signed join token for ``room``."""
    claims = JoinClaims(
        room=RoomId(room),
        role=role,
        subject=subject,
        name=name,
        appointment=AppointmentId(appointment) if appointment else None,
        starts_at=starts_at,
        ends_at=ends_at,
        capacity=capacity,
        not_before=now - 1.0,
        expires_at=now + valid_for,
        token_id=new_token_id(),
    )
    return encode_join(claims, keyring)
