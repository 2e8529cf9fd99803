"""An example receiver of Vestibule's event webhooks (README, "Events out"): standard library
only. Run it with ``python3 -m examples.webhook_receiver --port 9000 --secret SECRET`` and set
``VESTIBULE_EVENTS_URL=http://127.0.0.1:9000/events`` and ``VESTIBULE_EVENTS_SECRET=SECRET``.

It does what every receiver must:

1. check the signature: ``X-Vestibule-Signature`` is ``sha256=`` and the hex HMAC-SHA256, keyed
   by the shared secret, of ``<X-Vestibule-Timestamp>.<raw body>``; refuse a stale timestamp
   (replays);
2. drop repeats by the CloudEvent ``id``: delivery is at least once, so an event may come
   again (after a node died between sending it and recording that it was sent);
3. answer 2xx only once the event is safely handled; any other answer, or none, makes the
   node send it again later, and events of the same room wait behind it (order holds).

The tests run this receiver (tests/e2e/test_webhooks.py).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_SKEW = 300.0  # seconds a timestamp may be off before the request is refused


def verify(secret: str, timestamp: str, body: bytes, signature: str, now: float) -> bool:
    """Whether ``signature`` signs ``body`` at ``timestamp`` and the timestamp is recent."""
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    try:
        fresh = abs(now - float(timestamp)) <= MAX_SKEW
    except ValueError:
        return False
    return fresh and hmac.compare_digest("sha256=" + expected.hexdigest(), signature)


class Receiver(ThreadingHTTPServer):
    """Keeps every event once, in arrival order (``events``), and counts what it got."""

    def __init__(self, secret: str, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.secret = secret
        self.events: list[dict[str, Any]] = []  # each id once, as first received
        self.seen: set[str] = set()
        self.repeats = 0  # deliveries of an id already kept
        self.refused = 0  # bad signatures
        self.fail_next = 0  # answer 503 to this many requests (to test retries)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/events"

    def take(self, body: bytes) -> int:
        """Handle one delivery; the HTTP status to answer."""
        with self.lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return 503
            event = json.loads(body)
            if event["id"] in self.seen:
                self.repeats += 1
            else:
                self.seen.add(event["id"])
                self.events.append(event)
            return 204


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        timestamp = self.headers.get("X-Vestibule-Timestamp", "")
        signature = self.headers.get("X-Vestibule-Signature", "")
        if not verify(self.server.secret, timestamp, body, signature, time.time()):
            with self.server.lock:
                self.server.refused += 1
            status = 401
        else:
            status = self.server.take(body)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret", required=True)
    options = parser.parse_args()
    receiver = Receiver(options.secret, options.port)
    print(f"listening on {receiver.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        receiver.serve_forever()
    for event in receiver.events:
        print(event["type"], event.get("subject"), event["id"])


if __name__ == "__main__":
    main()
