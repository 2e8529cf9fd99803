"""End-to-end fixtures: the real server as separate OS processes, and loopback-only ICE."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aioice.ice
import pytest

from signalling.redis_server import RedisProcess
from tests.cluster import LocalCluster
from tests.logscan import watch
from tests.support import KEYS_ENV, free_port

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0  # seconds for the process to answer /healthz (imports dominate)
STOP_TIMEOUT = 5.0  # seconds for a graceful exit after SIGTERM before SIGKILL
POLL = 0.02


class ServerProcess:
    """``python -m signalling.cli serve`` on a free port with the test key ring.

    With ``redis_url`` the node uses that Redis; without, it embeds its own in
    ``data_dir`` (the default a user gets)."""

    def __init__(
        self, data_dir: Path, *, redis_url: str | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.redis_url = redis_url
        self.extra_env = env or {}
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.killed = False
        self.stderr = data_dir / f"server-{self.port}.err"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VESTIBULE_")}
        env.pop("REDIS_URL", None)
        env.update(KEYS_ENV)
        env["VESTIBULE_LOG_LEVEL"] = "debug"  # every line it can write is checked for secrets
        env.update(self.extra_env)
        if self.redis_url is not None:
            env["REDIS_URL"] = self.redis_url
        command = [sys.executable, "-m", "signalling.cli", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--data-dir", str(self.data_dir / "data")]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        watch(self.stderr)  # stdout and stderr: no line may hold a secret (tests/logscan.py)
        with self.stderr.open("ab") as err:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=err, stderr=err)
        self._wait_for("/healthz")
        return self

    def status(self, path: str) -> int | None:
        """The HTTP status of GET ``path``, or None if nothing answers."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1.0)
        try:
            connection.request("GET", path)
            return connection.getresponse().status
        except OSError:
            return None
        finally:
            connection.close()

    def _wait_for(self, path: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited with {self.process.returncode}:\n{self.log()}")
            if self.status(path) == 200:
                return
            time.sleep(POLL)
        pytest.fail(f"the server did not answer {path} within {START_TIMEOUT:g}s")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time (recorded in ``killed``)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.killed = True
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)

    def crash(self) -> None:
        """SIGKILL, as a machine failure would: no clean-up at all."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(STOP_TIMEOUT)

    def log(self) -> str:
        return self.stderr.read_text(errors="replace") if self.stderr.exists() else ""

    def check(self) -> None:
        """Fail the test if the server wrote a traceback or needed killing at stop."""
        if "Traceback" in self.log():
            pytest.fail(f"the server wrote a traceback to stderr:\n{self.log()}")
        if self.killed:
            pytest.fail(f"the server did not exit within {STOP_TIMEOUT:g}s of SIGTERM")


@pytest.fixture
def server_url(tmp_path: Path) -> Iterator[str]:
    """One node on its embedded Redis; yields its WebSocket URL."""
    server = ServerProcess(tmp_path / "node").start()
    try:
        yield server.url
    finally:
        server.stop()
    server.check()


Nodes = Callable[..., list[ServerProcess]]


@pytest.fixture
def nodes(tmp_path: Path, redis_server: RedisProcess) -> Iterator[Nodes]:
    """A factory: ``nodes(2)`` starts two node processes sharing the test's redis-server.
    Every node is stopped and checked at teardown."""
    yield from _nodes(tmp_path, redis_server.url)


@pytest.fixture
def cluster_nodes(tmp_path: Path, redis_cluster: LocalCluster) -> Iterator[Nodes]:
    """`nodes`, on the session's Redis Cluster (emptied first)."""
    yield from _nodes(tmp_path, redis_cluster.url)


def _nodes(tmp_path: Path, url: str) -> Iterator[Nodes]:
    started: list[ServerProcess] = []

    def start(count: int, **env: str) -> list[ServerProcess]:
        batch = [
            ServerProcess(tmp_path / f"node{len(started) + i}", redis_url=url, env=env)
            for i in range(count)
        ]
        started.extend(batch)
        return [server.start() for server in batch]

    try:
        yield start
    finally:
        for server in started:
            server.stop()
    for server in started:
        server.check()


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make aioice gather host candidates on 127.0.0.1 only.

    aioice offers every address but 127.0.0.1, so on a host with only loopback it has none;
    pinning it keeps the tests' media on loopback wherever they run, with one candidate per
    component."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", _loopback)


def _loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return ["127.0.0.1"]
