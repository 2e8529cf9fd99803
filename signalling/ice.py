"""ICE server configuration handed to browsers, with TURN REST API credentials.

TURN credentials follow the "TURN REST API" convention (draft-uberti-behave-turn-rest), which
coturn implements with ``use-auth-secret`` / ``static-auth-secret``: the username is
``"<expiry unix seconds>:<user>"`` and the credential is base64(HMAC-SHA1(secret, username)).
The TURN server recomputes the HMAC with the shared secret and refuses expired usernames, so
no per-user state is shared between this server and the TURN server.

Pure: ``now`` is a parameter; the caller supplies the clock.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import math
from collections.abc import Sequence

__all__ = ["IceServer", "ice_servers_for", "turn_credentials"]

# coturn's default `rest-api-separator`: a user containing it would make the username
# ambiguous (coturn also accepts "<user>:<timestamp>").
_SEPARATOR = ":"
_STUN_SCHEMES = ("stun:", "stuns:")
_TURN_SCHEMES = ("turn:", "turns:")


def turn_credentials(secret: str, user: str, now: float, ttl: float) -> tuple[str, str]:
    """Return ``(username, credential)`` for ``user``, valid until ``int(now + ttl)``.

    ``secret`` is the TURN server's shared ``static-auth-secret``; ``user`` must be non-empty
    and free of ``:``; ``ttl`` is in seconds and must be positive.
    """
    if not secret:
        raise ValueError("turn secret must not be empty")
    if not user or _SEPARATOR in user:
        raise ValueError(f"turn user must be non-empty and contain no {_SEPARATOR!r}: {user!r}")
    if not (math.isfinite(now) and math.isfinite(ttl)):
        raise ValueError(f"now and ttl must be finite, got now={now!r}, ttl={ttl!r}")
    if ttl <= 0:
        raise ValueError(f"turn ttl must be positive, got {ttl!r}")
    username = f"{int(now + ttl)}{_SEPARATOR}{user}"
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


@dataclasses.dataclass(frozen=True, slots=True)
class IceServer:
    """One entry of ``RTCConfiguration.iceServers``."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def __post_init__(self) -> None:
        # A str is a Sequence[str] too: catch IceServer("stun:x") before it becomes letters.
        if isinstance(self.urls, str):
            raise TypeError("urls must be a sequence of url strings, not a single string")
        object.__setattr__(self, "urls", tuple(self.urls))
        if not self.urls:
            raise ValueError("an ice server needs at least one url")

    def to_wire(self) -> dict[str, object]:
        """Return the RTCIceServer dict: ``urls`` always, username/credential only when set."""
        wire: dict[str, object] = {"urls": list(self.urls)}
        if self.username is not None:
            wire["username"] = self.username
        if self.credential is not None:
            wire["credential"] = self.credential
        return wire


def _checked_urls(name: str, urls: Sequence[str], schemes: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(urls, str):
        raise TypeError(f"{name} must be a sequence of urls, not a single string")
    for url in urls:
        if not url.startswith(schemes):
            raise ValueError(f"{name} entry {url!r} must start with one of {list(schemes)}")
    return tuple(urls)


def ice_servers_for(
    participant: str,
    now: float,
    *,
    stun_urls: Sequence[str],
    turn_urls: Sequence[str],
    turn_secret: str | None,
    turn_ttl: float,
) -> list[IceServer]:
    """Return the ICE servers to send ``participant``, TURN credentials fresh as of ``now``.

    A STUN entry when ``stun_urls`` is non-empty; a TURN entry when ``turn_urls`` is
    non-empty. TURN urls without a secret is a configuration error (ValueError): raise it
    at start-up by calling this once with the settings. The list may be empty (host
    candidates only). Call again for each connection: credentials expire after ``turn_ttl``.
    """
    stun = _checked_urls("stun_urls", stun_urls, _STUN_SCHEMES)
    turn = _checked_urls("turn_urls", turn_urls, _TURN_SCHEMES)
    servers: list[IceServer] = []
    if stun:
        servers.append(IceServer(stun))
    if turn:
        if not turn_secret:
            raise ValueError("turn_urls are configured but turn_secret is not set")
        username, credential = turn_credentials(turn_secret, participant, now, turn_ttl)
        servers.append(IceServer(turn, username, credential))
    return servers
