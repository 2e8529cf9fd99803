"""What a node does before a client's hello, and what it logs (signalling/uvicorn_server.py,
signalling/gate.py), on a real uvicorn server in this process.

Issue 10, findings 2 and 4: idle or slow sockets were never closed before the upgrade;
a query string, frame contents and a traceback for invalid UTF-8 reached the logs. The
first test fails loudly when uvicorn changes what the adapter relies on.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import re
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets.protocol
import websockets.server
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets import websockets_sansio_impl
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rooms.roles import Role
from signalling.gate import Gate
from signalling.uvicorn_server import INVALID_UTF8, QueryFilter, ReceiveQueue, WriteGate
from tests.signalling.conftest import Node, Serve, eventually
from tests.support import WAIT_FACTOR

ROOT = Path(__file__).resolve().parents[2]
T = 5.0 * WAIT_FACTOR  # seconds any one step may take


# --- what the adapter relies on ----------------------------------------------------------------


def test_uvicorn_is_the_version_the_adapter_was_written_for() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [d for d in pyproject["project"]["dependencies"] if d.startswith("uvicorn")]
    assert pins == ["uvicorn[standard]>=0.54,<0.55"], "review signalling/uvicorn_server.py"
    assert uvicorn.__version__.startswith("0.54."), "review signalling/uvicorn_server.py"


def test_the_uvicorn_internals_the_adapter_overrides_are_there() -> None:
    for name in (
        "connection_made",
        "data_received",
        "on_message_begin",
        "on_headers_complete",
        "handle_websocket_upgrade",
        "connection_lost",
        "_should_upgrade",
    ):
        assert callable(getattr(HttpToolsProtocol, name, None)), f"HttpToolsProtocol.{name}"
    assert callable(getattr(WebSocketsSansIOProtocol, "connection_lost", None))
    http = inspect.getsource(HttpToolsProtocol)
    # The request's peer, where the gate finds it; the transport it closes; the timer loop.
    for needle in ("self.client = get_remote_addr(transport)", "self.transport = transport"):
        assert needle in http, needle
    assert "self.loop = " in inspect.getsource(HttpToolsProtocol.__init__)
    ws = inspect.getsource(WebSocketsSansIOProtocol)
    assert "self.client = get_remote_addr(transport)" in ws
    assert "self.conn = ServerProtocol(" in ws  # whose `debug` switch is turned off
    # The log lines QueryFilter rewrites.
    assert f'self.logger.exception("{INVALID_UTF8}")' in inspect.getsource(websockets_sansio_impl)
    assert '"WebSocket %s"' in inspect.getsource(websockets_sansio_impl)
    # The lines logged for every connection, which QueryFilter turns into DEBUG ones.
    assert "'%s - \"WebSocket %s\" [accepted]'" in inspect.getsource(websockets_sansio_impl)
    assert 'logger=logging.getLogger("uvicorn.error")' in ws  # websockets logs on it
    sansio = inspect.getsource(websockets.server) + inspect.getsource(websockets.protocol)
    for line in ("connection open", "connection closed"):
        assert f'self.logger.info("{line}")' in sansio, line
    assert "get_path_with_query_string(self.scope)" in inspect.getsource(httptools_impl)


def test_the_query_filter_cuts_queries_and_the_utf8_traceback() -> None:
    line = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "x",
        1,
        '%s - "%s %s" %d',
        ("1.2.3.4:5", "GET", "/ws?t=s", 400),
        None,
    )
    assert QueryFilter().filter(line)
    assert line.getMessage() == '1.2.3.4:5 - "GET /ws" 400'
    try:
        b"\xff".decode()
    except UnicodeDecodeError:
        import sys

        utf8 = logging.LogRecord(
            "uvicorn.error", logging.ERROR, "x", 1, INVALID_UTF8, (), sys.exc_info()
        )
    assert QueryFilter().filter(utf8)
    assert (utf8.levelno, utf8.exc_info) == (logging.INFO, None)


@pytest.mark.parametrize(
    ("msg", "args"),
    [
        ('%s - "WebSocket %s" [accepted]', ("1.2.3.4:5", "/ws")),
        ("connection open", ()),
        ("connection closed", ()),
    ],
)
def test_the_lines_for_every_connection_are_debug_lines(msg: str, args: tuple[str, ...]) -> None:
    logger = logging.getLogger("uvicorn.error")
    before = logger.level
    try:
        for level, kept in ((logging.INFO, False), (logging.DEBUG, True)):
            logger.setLevel(level)
            line = logging.LogRecord("uvicorn.error", logging.INFO, "x", 1, msg, args, None)
            assert QueryFilter().filter(line) is kept
            assert line.levelno == logging.DEBUG
    finally:
        logger.setLevel(before)
    refused = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        "x",
        1,
        '%s - "WebSocket %s" %d',
        ("1.2.3.4:5", "/ws", 503),
        None,
    )
    assert QueryFilter().filter(refused)
    assert refused.levelno == logging.INFO


def test_what_uvicorn_does_with_the_queue_and_the_handshake_is_what_the_adapter_replaces() -> None:
    source = inspect.getsource(WebSocketsSansIOProtocol)
    # The receive queue: only these, so a ReceiveQueue can stand in for the asyncio.Queue.
    used = set(re.findall(r"self\.queue\.(\w+)", source))
    assert used == {"put_nowait", "get", "empty"}, used
    assert "self.queue: asyncio.Queue[ASGIReceiveEvent] = asyncio.Queue()" in source
    # The write gate: only these, so a WriteGate can stand in for the asyncio.Event.
    assert set(re.findall(r"self\.writable\.(\w+)", source)) == {"set", "clear", "wait"}
    # The scope's headers: read by uvicorn only while it builds the scope and logs.
    assert "self.scope[" not in source
    # The handshake's request and response, let go after the accept: read nowhere else
    # than in handle_connect and in the accept branch of send.
    for name in ("request", "response"):
        for method in ("handle_connect", "send"):
            source = source.replace(
                inspect.getsource(getattr(WebSocketsSansIOProtocol, method)), ""
            )
        assert f"self.{name}" not in source, name
    # websockets' parser holds the request in its frame for the socket's life: the adapter
    # empties its headers rather than only dropping uvicorn's reference.
    assert "request = yield from Request.parse(" in inspect.getsource(websockets.server)


async def test_the_receive_queue_hands_items_over_in_order_to_its_one_reader() -> None:
    queue: ReceiveQueue[int] = ReceiveQueue(asyncio.get_running_loop())
    assert queue.empty()
    reader = asyncio.create_task(queue.get())
    await asyncio.sleep(0)  # the reader waits
    with pytest.raises(RuntimeError, match="one reader"):
        await queue.get()
    queue.put_nowait(1)
    queue.put_nowait(2)
    assert await reader == 1
    assert (queue.qsize(), queue.empty()) == (1, False)
    queue.put_nowait(3)
    assert [await queue.get(), await queue.get()] == [2, 3]
    assert queue.empty()
    # A reader cancelled while it waits takes nothing, and the next one gets the item.
    cancelled = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    queue.put_nowait(4)
    assert await queue.get() == 4
    assert queue.empty()


async def test_the_write_gate_holds_writers_while_cleared_and_releases_them_all() -> None:
    writable = WriteGate(asyncio.get_running_loop())
    assert writable.is_set()
    assert await writable.wait()  # set: no wait
    writable.clear()
    assert not writable.is_set()
    writers = [asyncio.create_task(writable.wait()) for _ in range(3)]
    cancelled = asyncio.create_task(writable.wait())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert not any(w.done() for w in writers)
    writable.set()
    assert await asyncio.gather(*writers) == [True, True, True]
    writable.set()  # set twice: nothing to release
    assert writable.is_set()


async def test_an_accepted_socket_keeps_no_handshake_request_or_response(serve: Serve) -> None:
    node = await serve()
    protocols: list[WebSocketsSansIOProtocol] = []
    original = WebSocketsSansIOProtocol.connection_made

    def record(self: WebSocketsSansIOProtocol, transport: asyncio.BaseTransport) -> None:
        protocols.append(self)
        original(self, transport)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(WebSocketsSansIOProtocol, "connection_made", record)
        async with connect(f"ws://127.0.0.1:{node.port}/ws") as ws:
            await ws.send(json.dumps({"type": "ping"}))
            await asyncio.wait_for(ws.recv(), T)  # the node answers: the socket is in use
            [protocol] = protocols
            assert isinstance(protocol.queue, ReceiveQueue)
            kept: tuple[object, object] = (protocol.request, protocol.response)
            assert kept == (None, None)
            assert protocol.scope["headers"] == []
            assert isinstance(protocol.writable, WriteGate)
            parser: Any = protocol.conn.parser  # websockets' parser, a generator
            held = parser.gi_frame.f_locals["request"]
            assert len(held.headers) == 0


# --- helpers -----------------------------------------------------------------------------------


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Raw = Callable[..., Awaitable[Streams]]


@pytest.fixture
async def raw() -> AsyncIterator[Raw]:
    """``await raw(node, source)``: a plain TCP connection to ``node`` from ``source`` (any
    127.x.y.z is loopback); all are closed at teardown."""
    writers: list[asyncio.StreamWriter] = []

    async def open_(node: Node, source: str = "127.0.0.1") -> Streams:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", node.port, local_addr=(source, 0)
        )
        writers.append(writer)
        return reader, writer

    yield open_
    for writer in writers:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def ends(reader: asyncio.StreamReader) -> bytes:
    """Everything the node sends until it closes the connection (bounded)."""
    async with asyncio.timeout(T):
        try:
            return await reader.read()
        except ConnectionResetError:
            return b""


def gate(node: Node) -> Gate:
    g: Gate = node.app.state.gate
    return g


async def healthz(node: Node, source: str = "127.0.0.1") -> int:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(transport=transport, timeout=T) as http:
        return (await http.get(f"http://127.0.0.1:{node.port}/healthz")).status_code


# --- the request-header deadline ---------------------------------------------------------------


async def test_a_socket_that_sends_nothing_is_closed_at_the_header_deadline(
    serve: Serve, raw: Raw
) -> None:
    node = await serve(header_timeout=0.3)
    reader, writer = await raw(node)
    await eventually(lambda: gate(node).count == 1, what="the socket counted")
    assert await ends(reader) == b""  # closed, with nothing said
    writer.close()
    assert (gate(node).timed_out, gate(node).count) == (1, 0)


async def test_headers_sent_a_byte_at_a_time_are_cut_off_at_the_deadline(
    serve: Serve, raw: Raw
) -> None:
    node = await serve(header_timeout=0.3)
    reader, writer = await raw(node)
    request = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" + b"X-Slow: " + b"a" * 10_000
    closed = asyncio.ensure_future(ends(reader))
    with pytest.raises(ConnectionError):  # noqa: PT012 -- the drip goes on until the hang-up
        for byte in request:
            if closed.done():
                raise ConnectionResetError  # closed: the drip has no one to drip to
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.01)
    assert await closed == b""
    assert gate(node).timed_out == 1


async def test_a_kept_alive_connection_gets_the_deadline_again_for_its_next_request(
    serve: Serve,
    raw: Raw,
) -> None:
    node = await serve(header_timeout=0.3)
    reader, writer = await raw(node)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    rest = await ends(reader)
    assert b"HTTP/1.1 200" not in rest.split(b"\r\n\r\n", 1)[-1]  # the second got no answer
    assert gate(node).timed_out == 1


# --- the caps ----------------------------------------------------------------------------------


async def test_over_the_cap_per_address_a_socket_is_refused_and_other_addresses_get_in(
    serve: Serve,
    raw: Raw,
) -> None:
    node = await serve(max_unauthenticated_per_address=2)
    idle = [await raw(node, "127.0.0.2") for _ in range(2)]
    await eventually(lambda: gate(node).count == 2, what="two sockets counted")
    reader, writer = await raw(node, "127.0.0.2")
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    refusal = await ends(reader)
    assert refusal.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"retry-after: 5\r\n" in refusal
    assert gate(node).refused == 1
    # Another address is not held back: /healthz answers, and a client joins.
    assert await healthz(node, "127.0.0.3") == 200
    host = await node.connect(room="r1", token=node.token("r1", Role.HOST, subject="dr"))
    assert host.welcome["type"] == "welcome"
    for _, w in idle:
        w.close()


async def test_over_the_node_cap_every_address_is_refused_until_a_socket_goes(
    serve: Serve,
    raw: Raw,
) -> None:
    node = await serve(max_unauthenticated=2)
    first = await raw(node, "127.0.0.2")
    second = await raw(node, "127.0.0.3")
    await eventually(lambda: gate(node).count == 2, what="two sockets counted")
    with pytest.raises(InvalidStatus) as refused:
        async with connect(node.url, open_timeout=T):
            pass
    assert refused.value.response.status_code == 503
    first[1].close()
    await eventually(lambda: gate(node).count == 1, what="a socket gone")
    assert await healthz(node) == 200
    second[1].close()


async def test_a_socket_counts_until_its_hello_is_accepted(serve: Serve) -> None:
    node = await serve(max_unauthenticated_per_address=1)
    async with connect(node.url, open_timeout=T) as ws:  # upgraded, no hello yet
        await eventually(lambda: gate(node).count == 1, what="the WebSocket counted")
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv())["code"] == "hello_required"
        assert gate(node).count == 1  # still unauthenticated
        await ws.send(
            json.dumps(
                {"type": "hello", "room": "r1", "token": node.token("r1", Role.HOST, subject="d")}
            )
        )
        assert json.loads(await ws.recv())["type"] == "welcome"
        assert gate(node).count == 0
        # With this address's one place free again, a second client gets in beside it.
        patient = await node.connect(
            room="r1", token=node.token("r1", Role.PATIENT, subject="s", name="S")
        )
        assert patient.welcome["type"] == "welcome"
    await eventually(lambda: gate(node).count == 0, what="nothing counted")


async def test_a_socket_that_closes_before_its_hello_no_longer_counts(
    serve: Serve, raw: Raw
) -> None:
    node = await serve()
    async with connect(node.url, open_timeout=T):
        await eventually(lambda: gate(node).count == 1, what="the WebSocket counted")
    await eventually(lambda: gate(node).count == 0, what="the closed WebSocket forgotten")
    reader, writer = await raw(node)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await ends(reader)).startswith(b"HTTP/1.1 200")
    assert gate(node).count == 0  # plain HTTP counts only until its headers are in


# --- logs --------------------------------------------------------------------------------------


async def test_the_websocket_endpoint_refuses_a_query_string_and_never_logs_it(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    secret = node.token("r1", Role.HOST, subject="dr")
    with caplog.at_level(logging.DEBUG, logger="uvicorn.error"):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{node.url}?token={secret}&email=sam@example.org", open_timeout=T):
                pass
        await eventually(
            lambda: any("400" in r.getMessage() for r in caplog.records), what="the log line"
        )
    response = refused.value.response
    assert response.status_code == 400
    assert b"takes no query string" in response.body
    lines = [r.getMessage() for r in caplog.records]
    assert any('"WebSocket /ws" 400' in line for line in lines), lines
    assert not [line for line in lines if secret in line or "sam@example.org" in line]


async def test_the_access_log_prints_paths_without_their_query(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        async with httpx.AsyncClient(timeout=T) as http:
            await http.get(f"http://127.0.0.1:{node.port}/healthz?email=sam@example.org")
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert len(lines) == 1
    assert '"GET /healthz HTTP/1.1" 200' in lines[0]
    assert "sam@example.org" not in lines[0]


async def test_at_debug_no_frame_content_is_logged(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    secret = node.token("r1", Role.HOST, subject="dr", name="Dr Secretname")
    # As at VESTIBULE_LOG_LEVEL=debug: uvicorn's logger (which websockets logs frames on) too.
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="uvicorn.error"):
        host = await node.connect(room="r1", token=secret)
        await host.ping()
        await host.expect("pong")
    server = [r for r in caplog.records if r.name.startswith(("uvicorn", "vestibule"))]
    assert server  # debug was on: the server logged, only not these
    logged = "\n".join(r.getMessage() for r in server)
    for value in (secret, host.resume_token, "Secretname", '"type"'):
        assert value not in logged


async def test_invalid_utf8_closes_1007_with_no_traceback_and_no_error(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="uvicorn.error"):
        async with connect(node.url, open_timeout=T) as ws:
            await ws.send(b'{"type":"ping","x":"\xff"}', text=True)
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(T):
                    await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1007
    records = [r for r in caplog.records if r.name.startswith("uvicorn")]
    assert not [r for r in records if r.levelno >= logging.WARNING or r.exc_info]
    assert node.take_errors() == []


async def test_a_malformed_upgrade_is_refused_with_no_traceback(
    serve: Serve, raw: Raw, caplog: pytest.LogCaptureFixture
) -> None:
    node = await serve()
    with caplog.at_level(logging.DEBUG, logger="uvicorn.error"):
        reader, writer = await raw(node)
        # An upgrade without Sec-WebSocket-Key: websockets refuses it (400), and would log
        # the reason with a traceback at debug.
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        )
        assert (await ends(reader)).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]
    await eventually(lambda: gate(node).count == 0, what="the refused upgrade forgotten")
