"""End-to-end fixtures: the real server as a separate OS process, and loopback-only ICE."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aioice.ice
import pytest

from tests.support import KEYS_ENV, free_port

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0  # seconds for the process to answer /healthz (imports dominate)
STOP_TIMEOUT = 5.0  # seconds for a graceful exit after SIGTERM before SIGKILL
POLL = 0.02


@pytest.fixture
def server_url(tmp_path: Path) -> Iterator[str]:
    """Run ``python -m signalling.cli serve`` on a free port with the test key ring and
    yield its WebSocket URL. At teardown the process gets SIGTERM (SIGKILL if it does not
    exit in time); the test fails if it needed killing or wrote a traceback to stderr."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VESTIBULE_")}
    env.update(KEYS_ENV)
    command = [sys.executable, "-m", "signalling.cli", "serve"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    stdout, stderr = tmp_path / "server.out", tmp_path / "server.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err)
    killed = False
    try:
        _wait_healthy(process, port, stderr)
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            killed = True
            process.kill()
            process.wait(STOP_TIMEOUT)
    log = stderr.read_text(errors="replace")
    if "Traceback" in log:
        pytest.fail(f"the server wrote a traceback to stderr:\n{log}")
    if killed:
        pytest.fail(f"the server did not exit within {STOP_TIMEOUT:g}s of SIGTERM:\n{log}")


def _wait_healthy(process: subprocess.Popen[bytes], port: int, stderr: Path) -> None:
    """Poll GET /healthz until it answers 200; fail if the process exits or time runs out."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{stderr.read_text()}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
        try:
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass  # not listening yet
        finally:
            connection.close()
        time.sleep(POLL)
    pytest.fail(f"the server did not answer /healthz within {START_TIMEOUT:g}s")


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make aioice gather host candidates on 127.0.0.1 only.

    aioice offers every address but 127.0.0.1, so on a host with only loopback it has none;
    pinning it keeps the tests' media on loopback wherever they run, with one candidate per
    component."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", _loopback)


def _loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return ["127.0.0.1"]
