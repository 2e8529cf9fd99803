"""A real SMTP server on loopback for the tests (aiosmtpd), stopped cleanly.

aiosmtpd's `Controller.stop` stops its loop and cancels the loop's tasks without letting
them run, so a connection still open (a node whose delivery was under way when its test
ended) is never closed: its transport is left to the garbage collector, whose
ResourceWarning then fails whichever later test it happens in. `SmtpServer` closes every
connection it served, and lets the loop run their clean-up, before it stops."""

from __future__ import annotations

import threading
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

STOP_WAIT = 5.0  # seconds the server's thread has to close its connections


class SmtpServer(Controller):
    def __init__(self, handler: Any, **options: Any) -> None:
        super().__init__(handler, **options)
        self.sessions: list[SMTP] = []

    def factory(self) -> SMTP:
        server: SMTP = super().factory()  # type: ignore[no-untyped-call]
        self.sessions.append(server)
        return server

    def stop(self, no_assert: bool = False) -> None:
        closed = threading.Event()

        def close_all() -> None:
            for session in self.sessions:
                transport = getattr(session, "transport", None)
                if transport is not None:
                    transport.close()
            # After the transports' own clean-up, which close() has just scheduled.
            self.loop.call_soon(closed.set)

        if self._thread is not None:
            self.loop.call_soon_threadsafe(close_all)
            closed.wait(STOP_WAIT)
        super().stop(no_assert)
