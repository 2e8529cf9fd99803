"""Shared test helpers: free ports, a fixed key ring, join tokens, the wait factor, and the
registry of the secrets and patient data the tests use (`SECRETS`), which no log line of
the run may contain (tests/logscan.py checks every one at the end of the session)."""

from __future__ import annotations

import base64
import os
import random
import re
import socket
from pathlib import Path

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


# Scales every bounded wait of the suite: raise it on a slow or loaded machine.
WAIT_FACTOR = float(os.environ.get("VESTIBULE_TEST_WAIT_FACTOR", "1"))


# Shapes of patient data the node must never log, whoever's it is: an e-mail address, a
# phone number in E.164 (as the REST API takes them), whatever test made them up.
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_PHONE = re.compile(r"\+[1-9]\d{7,14}\b")
_TOKEN = re.compile(r"v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_.-]+")
MIN_NAME = 3  # shorter test names ("A", "Dr") are too common in text to look for


class Secrets:
    """The tokens, names and e-mail addresses the tests used: none may be in a log line.

    Tokens are found whole, and by their start (``v1.<key id>.``, which every token signed
    with a test key has): a log that cuts a token short still shows it. Names are found
    as whole words; e-mail addresses and phone numbers by their shape as well, so that the
    ones the REST API tests make up inline are found too."""

    def __init__(self) -> None:
        self.tokens: set[str] = set()
        self.markers: set[str] = set()  # "v1.<kid>." of the tokens recorded
        self.names: set[str] = set()
        self.emails: set[str] = set()
        self._names: re.Pattern[str] | None = None

    def token(self, value: str) -> str:
        self.tokens.add(value)
        version, _, rest = value.partition(".")
        kid = rest.partition(".")[0]
        if version and kid:
            self.markers.add(f"{version}.{kid}.")
        return value

    def name(self, value: str | None) -> None:
        if value is not None and len(value.strip()) >= MIN_NAME:
            self.names.add(value.strip())
            self._names = None

    def email(self, value: str) -> None:
        self.emails.add(value)

    def leaks(self, line: str) -> list[str]:
        """What of the recorded secrets, or of patient data by its shape, ``line`` holds
        (kinds, e.g. ``["token", "e-mail"]``); empty if nothing."""
        found: list[str] = []
        if any(marker in line for marker in self.markers) or any(
            match in self.tokens for match in _TOKEN.findall(line)
        ):
            found.append("token")
        if _EMAIL.search(line) or any(email in line for email in self.emails):
            found.append("e-mail")
        if _PHONE.search(line):
            found.append("phone")
        if self.names:
            if self._names is None:
                words = sorted(self.names, key=len, reverse=True)
                self._names = re.compile(r"\b(?:" + "|".join(map(re.escape, words)) + r")\b")
            if self._names.search(line):
                found.append("name")
        return found


SECRETS = Secrets()


def free_port(below: int | None = None) -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, under ``below`` (by default the
    start of the kernel's ephemeral range).

    Not one the kernel hands out (bind to port 0): those are ephemeral ports, and between
    this check and the server's own bind, any outgoing connection on the machine (a client
    of another test's server, the cluster bus between members) may take the same one, and
    the server fails with "address already in use". Below the ephemeral range only another
    listener can take it, and the bind here shows whether one has."""
    top = min(below or EPHEMERAL_LOW, EPHEMERAL_LOW)
    if top - PORTS_FROM < 1000:  # an unusual ephemeral range: take what the kernel gives
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            given: int = sock.getsockname()[1]
            return given
    for _ in range(1000):
        port = random.randrange(PORTS_FROM, top)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port between {PORTS_FROM} and {top}")


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux), or the IANA default."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152


PORTS_FROM = 10000  # under it: well-known and registered services a machine may run
EPHEMERAL_LOW = _ephemeral_low()


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
    SECRETS.name(name)
    return SECRETS.token(encode_join(claims, keyring))
