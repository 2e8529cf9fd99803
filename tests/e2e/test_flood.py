"""A flood of idle and slow sockets against a real node process (issue 10, finding 2).

2,000 sockets that send nothing and 2,000 that send their request headers a byte at a
time, from 20 loopback addresses (under the default cap of 256 per address, so the node
accepts every one and must close them by its deadline, not refuse them). Meanwhile a real
client completes a visit and /healthz answers; afterwards every flood socket has been closed
by the node, and the node serves on.

Bounded: the flood opens a fixed number of sockets, the drip stops once they are all closed,
and every wait has a limit.
"""

from __future__ import annotations

import asyncio
import json
import resource
import select
import socket
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack

import pytest

from rooms.roles import Role
from signalling.client import Client
from tests.e2e.conftest import Nodes, ServerProcess
from tests.e2e.support import T, new_room
from tests.support import WAIT_FACTOR, token

IDLE = 2_000
SLOW = 2_000
SOURCES = [f"127.1.0.{i}" for i in range(1, 21)]  # 200 sockets each
HEADER_TIMEOUT = 8.0 * WAIT_FACTOR  # long enough for the visit beside the flood
START_OF_REQUEST = b"GET /ws HTTP/1.1\r\nHost: vestibule\r\nUpgrade: websocket\r\nX-Slow: "


@pytest.fixture
def file_limit() -> Iterator[None]:
    """Room for the flood's sockets in this process (as bench/ does)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = IDLE + SLOW + 1_000
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"the hard limit on open files ({hard}) is below {need}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_flood(port: int, count: int, first: bytes) -> list[socket.socket]:
    """``count`` connections to ``port``, spread over SOURCES, each having sent ``first``."""
    out: list[socket.socket] = []
    try:
        for index in range(count):
            sock = socket.socket()
            out.append(sock)
            sock.settimeout(T)
            sock.bind((SOURCES[index % len(SOURCES)], 0))
            sock.connect(("127.0.0.1", port))
            if first:
                sock.sendall(first)
            sock.setblocking(False)
    except BaseException:
        for sock in out:
            sock.close()
        raise
    return out


def wait_closed(socks: list[socket.socket], timeout: float, drip: bool) -> int:
    """Wait until the node has closed every socket (each reads EOF or a reset), sending
    one header byte a second on each open one if ``drip``; return how many are still open
    when ``timeout`` runs out (0: all closed)."""
    open_ = {sock.fileno(): sock for sock in socks}
    poller = select.poll()
    for fd in open_:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    next_drip = time.monotonic()
    while open_ and time.monotonic() < deadline:
        if drip and time.monotonic() >= next_drip:
            for fd, sock in list(open_.items()):
                try:
                    sock.send(b"a")
                except OSError:  # reset by the node: closed
                    poller.unregister(fd)
                    del open_[fd]
            next_drip = time.monotonic() + 1.0
        for fd, _ in poller.poll(100):
            try:
                data = open_[fd].recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:  # EOF or reset: the node closed it
                poller.unregister(fd)
                del open_[fd]
    return len(open_)


async def visit(server: ServerProcess) -> str:
    """Hello, the host starts, the patient is admitted, an offer is relayed."""
    room = new_room()
    now = time.time()
    async with AsyncExitStack() as stack:
        host = await Client.connect(
            server.url,
            room=room,
            token=token(room, Role.HOST, now=now, subject="dr-flood", capacity=1),
            timeout=T,
        )
        stack.push_async_callback(host.close)
        await host.start()
        await host.expect("admitted", timeout=T)
        patient = await Client.connect(
            server.url,
            room=room,
            token=token(room, Role.PATIENT, now=now, subject="pat-flood", name="Flo"),
            timeout=T,
        )
        stack.push_async_callback(patient.close)
        await patient.expect("admitted", timeout=T)
        await patient.offer(host.participant_id, "v=0 flood")
        offer = await host.expect("offer", timeout=T)
        return str(offer["sdp"])


def readyz(server: ServerProcess) -> dict[str, object]:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=T)
    try:
        connection.request("GET", "/readyz")
        body: dict[str, object] = json.loads(connection.getresponse().read())
        return body
    finally:
        connection.close()


@pytest.mark.usefixtures("file_limit")
async def test_idle_and_slow_sockets_are_closed_by_their_deadline_while_a_visit_goes_through(
    nodes: Nodes,
) -> None:
    [server] = nodes(1, VESTIBULE_HEADER_TIMEOUT=str(HEADER_TIMEOUT))
    idle = await asyncio.to_thread(open_flood, server.port, IDLE, b"")
    slow: list[socket.socket] = []
    try:
        slow = await asyncio.to_thread(open_flood, server.port, SLOW, START_OF_REQUEST)
        # Every flood socket was accepted and is held, unauthenticated: none was refused.
        counted = await asyncio.to_thread(readyz, server)
        assert counted["unauthenticated"] == IDLE + SLOW
        # Beside them, a real client gets through and /healthz answers.
        assert await visit(server) == "v=0 flood"
        assert await asyncio.to_thread(server.status, "/healthz") == 200
        # The node closes every one of them by the deadline (counted from its accept):
        # the slow ones although they keep sending.
        limit = HEADER_TIMEOUT + 30.0 * WAIT_FACTOR
        still_open = await asyncio.gather(
            asyncio.to_thread(wait_closed, idle, limit, False),
            asyncio.to_thread(wait_closed, slow, limit, True),
        )
        assert list(still_open) == [0, 0]
    finally:
        for sock in idle + slow:
            sock.close()
    after = await asyncio.to_thread(readyz, server)
    assert (after["status"], after["unauthenticated"]) == ("ready", 0)
    assert await visit(server) == "v=0 flood"  # and it serves on
