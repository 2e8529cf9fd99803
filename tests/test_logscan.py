"""The log scan (tests/logscan.py) can fail: a line with a secret fails the session.

Unit checks of `Secrets.leaks`, then whole pytest sessions run in a subprocess with the
plugin: one whose test logs a token (or whose node-process output holds one) must fail, one
that logs nothing secret must pass."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import Secrets

ROOT = Path(__file__).resolve().parents[1]
Session = Callable[[str], pytest.RunResult]


def test_recorded_secrets_and_shapes_of_patient_data_are_found() -> None:
    secrets = Secrets()
    token = secrets.token("v1.test.eyJwYXlsb2FkIjoxfQ.c2lnbmF0dXJl")
    secrets.name("Sam Patel")
    secrets.name("A")  # too short to look for
    assert secrets.leaks(f"hello with {token}") == ["token"]
    assert secrets.leaks('> TEXT \'{"token":"v1.test.eyJ...ZQ"}\'') == ["token"]  # cut short
    assert secrets.leaks("joined as Sam Patel") == ["name"]
    assert secrets.leaks("mail for jane.doe@example.org failed") == ["e-mail"]
    assert secrets.leaks("sms to +447700900123") == ["phone"]
    assert secrets.leaks("p_0638b0bafbe07a42 joined r1 as host (A)") == []
    assert secrets.leaks("Samples: 3, 127.0.0.1:8080 - GET /healthz 200") == []


CONFTEST = """
from tests.logscan import pytest_configure, pytest_sessionfinish, pytest_terminal_summary
"""


@pytest.fixture
def session(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Session:
    """Run a pytest session of one test module, in a subprocess, with the plugin on."""
    pytester.makeconftest(CONFTEST)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))

    def run(test: str) -> pytest.RunResult:
        pytester.makepyfile(test)
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")

    return run


def test_a_session_whose_node_logs_a_token_fails(session: Session) -> None:
    result = session(
        """
import logging
import time
from rooms.roles import Role
from tests.support import token

def test_logs_a_token():
    minted = token("r1", Role.PATIENT, now=time.time(), name="Robin Ray")
    logging.getLogger("vestibule.signalling.connection").debug("hello %s", minted)
""",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*1 log lines hold a secret or patient data:*"])
    result.stdout.fnmatch_lines(["*vestibule.signalling.connection: token: DEBUG*"])


def test_a_session_whose_node_process_wrote_a_name_fails(session: Session) -> None:
    result = session(
        """
import time
from rooms.roles import Role
from tests.logscan import watch
from tests.support import token

def test_process_output(tmp_path):
    token("r1", Role.PATIENT, now=time.time(), name="Robin Ray")
    log = tmp_path / "server.err"
    log.write_text("INFO vestibule.signalling.connection Robin Ray joined\\n")
    watch(log)
""",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*server.err: name: INFO*"])


def test_a_session_that_logs_no_secret_passes(session: Session) -> None:
    result = session(
        """
import logging
import time
from rooms.roles import Role
from tests.support import token

def test_logs_an_id():
    token("r1", Role.PATIENT, now=time.time(), name="Robin Ray")
    logging.getLogger("vestibule.signalling.connection").info("p_1 joined r1 as patient")
    logging.getLogger("websockets.client").debug("the test's own client may log its frames")
""",
    )
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["*logscan: * log lines checked, no secret or patient data in any*"]
    )
