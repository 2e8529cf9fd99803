"""The node's door for sockets that have not authenticated yet.

A socket counts from the moment the node accepts its TCP connection until its ``hello`` is
accepted (a WebSocket), its request headers are in (plain HTTP: `/healthz`, the REST API), or
it closes. Two caps bound these sockets, so that idle or slow connections cannot use up the
node's file descriptors and lock real clients out:

- ``limit`` per node: a flood from many addresses fills at most this many;
- ``per_address`` per client IP address: a flood from one address is refused early and
  leaves room for everyone else.

A socket over either cap is refused (HTTP 503, see `signalling.uvicorn_server`). Sockets are
known by their peer ``(host, port)``, which is what the server's protocol objects and the
ASGI scope (``client``) both carry; one without a peer (a unix socket) is not counted.
"""

from __future__ import annotations

from collections import Counter

Peer = tuple[str, int]


class Gate:
    """Counts unauthenticated sockets per node and per client address."""

    def __init__(self, limit: int, per_address: int) -> None:
        if limit < 1 or per_address < 1:
            raise ValueError("the gate's caps must be at least 1")
        self.limit = limit
        self.per_address = per_address
        self._open: set[Peer] = set()
        self._by_address: Counter[str] = Counter()
        self.refused = 0  # sockets refused over a cap (for tests and operators)
        self.timed_out = 0  # sockets closed by the request-header deadline

    @property
    def count(self) -> int:
        """Unauthenticated sockets now."""
        return len(self._open)

    def enter(self, peer: Peer | None) -> bool:
        """Count a new socket; False (and nothing counted) if a cap is reached."""
        if peer is None or peer in self._open:
            return True
        if len(self._open) >= self.limit or self._by_address[peer[0]] >= self.per_address:
            self.refused += 1
            return False
        self._open.add(peer)
        self._by_address[peer[0]] += 1
        return True

    def leave(self, peer: Peer | None) -> None:
        """The socket has authenticated or closed: it no longer counts. Idempotent."""
        if peer is None or peer not in self._open:
            return
        self._open.discard(peer)
        self._by_address[peer[0]] -= 1
        if not self._by_address[peer[0]]:
            del self._by_address[peer[0]]
