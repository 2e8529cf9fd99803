"""A pytest plugin: no log line of the test run may hold a secret or patient data.

It sees every log record of this process (the in-process nodes and everything else, at any
level: the ``vestibule`` loggers are set to DEBUG for the run) and, at the end of the
session, every line that the node processes the tests started wrote (`watch`: their stdout
and stderr). Each line is checked against `tests.support.SECRETS`, the tokens, names and
e-mail addresses the tests used, and the shapes of e-mail addresses and phone numbers. If
any line holds one, the session fails, listing them.

The records of test-side clients are not the node's logs and are left out (`CLIENT_SIDE`):
the websockets client logs its own frames at debug, hello and token included, as it should.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import SECRETS, Secrets

# Loggers of the tests' own clients and stand-ins (an HTTP client, a WebSocket client, the
# test SMTP server), not of the server.
CLIENT_SIDE = ("websockets.client", "httpx", "httpcore", "mail.log", "aiosmtpd")
SHOWN = 20  # leaks listed in the report, at most


@dataclass(frozen=True, slots=True)
class Leak:
    where: str  # a logger's name, or a node process's log file
    kinds: tuple[str, ...]
    line: str


@dataclass
class Scan:
    """The lines seen so far and what they leaked."""

    secrets: Secrets
    files: list[Path] = field(default_factory=list)
    leaks: list[Leak] = field(default_factory=list)
    lines: int = 0

    def line(self, where: str, text: str) -> None:
        self.lines += 1
        kinds = self.secrets.leaks(text)
        if kinds:
            self.leaks.append(Leak(where, tuple(kinds), text[:300]))

    def record(self, record: logging.LogRecord, formatter: logging.Formatter) -> None:
        if record.name.startswith(CLIENT_SIDE):
            return
        try:
            text = formatter.format(record)
        except Exception as exc:  # noqa: BLE001 -- a record that cannot be formatted
            text = f"{record.msg!r} {record.args!r} ({type(exc).__name__})"
        for line in text.splitlines():
            self.line(record.name, line)

    def read_files(self) -> None:
        for path in self.files:
            if path.exists():
                for line in path.read_text(errors="replace").splitlines():
                    self.line(path.name, line)
        self.files = []

    def report(self) -> str:
        shown = "\n".join(
            f"  {leak.where}: {', '.join(leak.kinds)}: {leak.line}" for leak in self.leaks[:SHOWN]
        )
        more = len(self.leaks) - SHOWN
        tail = f"\n  ... and {more} more" if more > 0 else ""
        return f"{len(self.leaks)} log lines hold a secret or patient data:\n{shown}{tail}"


class _Handler(logging.Handler):
    def __init__(self, scan: Scan) -> None:
        super().__init__(logging.NOTSET)
        self.scan = scan
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        assert self.formatter is not None
        self.scan.record(record, self.formatter)


SCAN = Scan(SECRETS)


def watch(path: Path) -> None:
    """Scan ``path`` (a node process's output) at the end of the session."""
    if path not in SCAN.files:
        SCAN.files.append(path)


def pytest_configure(config: pytest.Config) -> None:
    logging.getLogger().addHandler(_Handler(SCAN))
    logging.getLogger("vestibule").setLevel(logging.DEBUG)  # every level of the node's own


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    SCAN.read_files()
    if SCAN.leaks and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SCAN.leaks:
        terminalreporter.section("secrets in logs", red=True)
        terminalreporter.line(SCAN.report())
    else:
        terminalreporter.line(
            f"logscan: {SCAN.lines} log lines checked, no secret or patient data in any"
        )
