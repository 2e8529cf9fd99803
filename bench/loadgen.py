"""The load generator: one process, pinned by `bench/run.py` to a core of its own.

It drives one server configuration (Vestibule on one or two nodes, or the raw relay) through
every phase of one repetition and prints the figures as one JSON object on stdout:

- ``idle``: N clients say hello (100 in flight): hello -> welcome rate, RSS growth per
  connection; then they leave.
- ``relay``: for each size, pairs (host + patient, both admitted) exchange ~300-byte
  offers: msgs/s at saturation (a window of messages in flight per sender), server CPU
  per relayed message, then latency p50/p99 at 1 message a second per pair.
- ``knock`` (Vestibule only): knock -> host's waiting list, one at a time.
- ``admit_all`` (Vestibule only): N guests waiting, time until every one is admitted.

Server CPU is the utime+stime delta of the server processes in /proc/<pid>/stat.
"""

# ruff: noqa: S311  (random: room names and timing jitter, nothing secret)
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from rooms.roles import Role  # noqa: E402
from signalling.client import Client  # noqa: E402
from tests.support import token  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
WINDOW = 8  # messages in flight per sender at saturation
IN_FLIGHT = 100  # concurrent handshakes
DRAIN = 60.0  # seconds to wait for messages in flight after saturation
RETRIES = 5  # hellos refused as unavailable, tried again
PAD = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" + "a=x" * 200
SDP_LEN = 250  # with the envelope: ~300 bytes on the wire each way


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes, in seconds."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def loadavg() -> float:
    return os.getloadavg()[0]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(eq=False)
class Peer:
    """One relay client: counts offers received, records latency samples."""

    ws: ClientConnection
    pid: str
    other: Peer | None = None
    got: int = 0
    sent: int = 0
    errors: int = 0
    first_error: str = ""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    samples: list[float] | None = None
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        try:
            async for frame in self.ws:
                if not isinstance(frame, str):
                    continue
                if frame.startswith('{"type":"offer"'):
                    self.got += 1
                    if self.samples is not None:
                        i = frame.find("ts=")
                        if i >= 0:
                            sent = int(frame[i + 3 : frame.find(";", i)])
                            self.samples.append((time.perf_counter_ns() - sent) / 1e6)
                    if self.other is not None:
                        self.other.wake.set()
                elif frame.startswith('{"type":"error"'):
                    self.errors += 1
                    self.first_error = self.first_error or frame[:200]
        except ConnectionClosed:
            pass

    def offer(self, sdp: str) -> Awaitable[None]:
        assert self.other is not None
        self.sent += 1
        message = {"type": "offer", "id": f"m{self.sent}", "to": self.other.pid, "sdp": sdp}
        return self.ws.send(json.dumps(message, separators=(",", ":")))


class Target:
    """How to reach the servers of one configuration and say hello to them."""

    def __init__(self, impl: str, urls: list[str], pids: list[int], extra: list[int]) -> None:
        self.impl, self.urls, self.pids, self.extra = impl, urls, pids, extra
        self.now = time.time()
        self.retries = 0

    @property
    def vestibule(self) -> bool:
        return self.impl != "raw"

    def hello(self, room: str, role: Role, **claims: Any) -> str:
        message: dict[str, Any] = {"type": "hello", "room": room}
        if self.vestibule:
            message["token"] = token(room, role, now=self.now, **claims)
            if role is Role.GUEST:
                message["name"] = "Guest"
        return json.dumps(message, separators=(",", ":"))

    async def join(
        self, url: str, hello: str, until: str = "welcome"
    ) -> tuple[ClientConnection, str]:
        """Connect, say hello, read until the welcome; return the socket and the id.
        A hello refused as ``unavailable`` (the server could not reach Redis in time) is
        retried, as the error asks; `retries` counts them."""
        for attempt in range(RETRIES + 1):
            ws = await connect(url, compression=None, open_timeout=30, max_queue=None)
            await ws.send(hello)
            pid = ""
            while True:
                frame = await asyncio.wait_for(ws.recv(), 30)
                message = json.loads(frame)
                if message["type"] == "welcome":
                    pid = message["participant_id"]
                elif message["type"] == "error":
                    break
                if pid and message["type"] == until:
                    return ws, pid
            await ws.close()
            if message.get("code") != "unavailable" or attempt == RETRIES:
                raise RuntimeError(f"hello refused: {frame!r}")
            self.retries += 1
            await asyncio.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def server_cpu(self) -> float:
        return cpu_seconds(self.pids)


async def bounded(count: int, make: Callable[[int], Awaitable[Any]]) -> list[Any]:
    """Run ``make(i)`` for i < count with at most IN_FLIGHT at a time."""
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(i: int) -> Any:
        async with gate:
            return await make(i)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


# -- phases -------------------------------------------------------------------------------


async def idle_phase(target: Target, count: int) -> dict[str, float]:
    """``count`` clients connect and say hello, each in a room of its own (a patient
    waiting for its host), 100 handshakes in flight."""
    await asyncio.sleep(0.3)
    rss0 = rss_bytes(target.pids)
    hellos = [
        target.hello(f"idle-{i}-{random.random()}", Role.PATIENT, subject=f"i{i}")
        for i in range(count)
    ]
    cpu0, gen0, t0 = target.server_cpu(), own_cpu(), time.perf_counter()
    sockets = await bounded(
        count, lambda i: target.join(target.urls[i % len(target.urls)], hellos[i])
    )
    elapsed = time.perf_counter() - t0
    cpu1, gen1 = target.server_cpu(), own_cpu()
    await asyncio.sleep(0.5)
    rss1 = rss_bytes(target.pids)
    await asyncio.gather(*(ws.close() for ws, _ in sockets))
    return {
        "hello_rate": count / elapsed,
        "hello_cpu_us": (cpu1 - cpu0) / count * 1e6,
        "rss_per_conn_kib": (rss1 - rss0) / count / 1024,
        "gen_cpu_pct": (gen1 - gen0) / elapsed * 100,
        "load": loadavg(),
    }


async def add_pairs(target: Target, pairs: list[tuple[Peer, Peer]], count: int) -> None:
    """Grow ``pairs`` to ``count``: a host (started) and a patient (admitted) per room,
    on the first node and the last one (the same one with a single node)."""
    first, last = target.urls[0], target.urls[-1]

    async def make(i: int) -> tuple[Peer, Peer]:
        room = f"pair-{i}-{random.random()}"
        hello = target.hello(room, Role.HOST, subject=f"h{i}", capacity=1)
        ws, pid = await target.join(first, hello)
        if target.vestibule:
            await ws.send('{"type":"start","id":"s"}')
            while not str(await asyncio.wait_for(ws.recv(), 30)).startswith('{"type":"admitted"'):
                pass
        host = Peer(ws, pid)
        until = "admitted" if target.vestibule else "welcome"
        ws, pid = await target.join(last, target.hello(room, Role.PATIENT, subject=f"p{i}"), until)
        patient = Peer(ws, pid, other=host)
        host.other = patient
        for peer in (host, patient):
            peer.reader = asyncio.create_task(peer.read())
        return host, patient

    start = len(pairs)
    pairs += await bounded(count - start, lambda i: make(start + i))


async def saturate(
    target: Target, pairs: list[tuple[Peer, Peer]], seconds: float
) -> dict[str, float]:
    """Every client sends offers to its peer, WINDOW in flight each, for ``seconds``."""
    peers = [p for pair in pairs for p in pair]
    stop = False
    sdp = PAD[:SDP_LEN]

    async def pump(peer: Peer) -> None:
        assert peer.other is not None
        other = peer.other
        while not stop:
            while peer.sent - other.got < WINDOW and not stop:
                await peer.offer(sdp)
            peer.wake.clear()
            if peer.sent - other.got >= WINDOW:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(peer.wake.wait(), 1.0)

    pumps = [asyncio.create_task(pump(p)) for p in peers]
    await asyncio.sleep(min(1.0, seconds / 3))  # warm up
    got0 = sum(p.got for p in peers)
    cpu0, extra0, gen0, t0 = (
        target.server_cpu(),
        cpu_seconds(target.extra),
        own_cpu(),
        time.perf_counter(),
    )
    await asyncio.sleep(seconds)
    got1 = sum(p.got for p in peers)
    cpu1, extra1, gen1, t1 = (
        target.server_cpu(),
        cpu_seconds(target.extra),
        own_cpu(),
        time.perf_counter(),
    )
    stop = True
    await asyncio.wait(pumps, timeout=5)
    # Drain before the latency phase: a backlog left over would be measured as latency.
    drained = time.perf_counter()
    deadline = time.monotonic() + DRAIN
    pending = any(p.sent > p.other.got for p in peers if p.other)
    while pending and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        pending = any(p.sent > p.other.got for p in peers if p.other)
    relayed = max(1, got1 - got0)
    return {
        "msgs_per_s": relayed / (t1 - t0),
        "cpu_us_per_msg": (cpu1 - cpu0) / relayed * 1e6,
        "redis_cpu_us_per_msg": (extra1 - extra0) / relayed * 1e6,
        "server_cpu_pct": (cpu1 - cpu0) / (t1 - t0) * 100,
        "gen_cpu_pct": (gen1 - gen0) / (t1 - t0) * 100,
        "errors": sum(p.errors for p in peers),
        "drain_s": time.perf_counter() - drained,
        "undrained": sum(p.sent - p.other.got for p in peers if p.other),
        "load": loadavg(),
    }


async def latency(
    target: Target, pairs: list[tuple[Peer, Peer]], seconds: float
) -> dict[str, float]:
    """Each pair's host sends one offer a second to its patient, at a random phase."""
    samples: list[float] = []
    for _, patient in pairs:
        patient.samples = samples
    deadline = time.monotonic() + seconds + 1.0

    async def tick(host: Peer) -> None:
        await asyncio.sleep(random.random())
        while time.monotonic() < deadline:
            await host.offer(f"ts={time.perf_counter_ns()};" + PAD[: SDP_LEN - 25])
            await asyncio.sleep(1.0)

    cpu0, gen0, t0 = target.server_cpu(), own_cpu(), time.perf_counter()
    await asyncio.gather(*(tick(host) for host, _ in pairs))
    await asyncio.sleep(0.2)
    cpu1, gen1, t1 = target.server_cpu(), own_cpu(), time.perf_counter()
    for _, patient in pairs:
        patient.samples = None
    return {
        "lat_p50_ms": pct(samples, 0.5),
        "lat_p99_ms": pct(samples, 0.99),
        "lat_samples": len(samples),
        "lat_server_cpu_pct": (cpu1 - cpu0) / (t1 - t0) * 100,
        "lat_gen_cpu_pct": (gen1 - gen0) / (t1 - t0) * 100,
        "load": loadavg(),
    }


async def knock_phase(target: Target, count: int) -> dict[str, float]:
    """``count`` rooms, each with a started host and a patient (so it is at capacity) on
    the first node and a guest on the last; each guest knocks in turn, timed until its
    host's waiting list shows it."""
    first, last = target.urls[0], target.urls[-1]
    latencies: list[float] = []
    clients: list[Client] = []
    try:
        for i in range(count):
            room = f"knock-{i}-{random.random()}"
            now = time.time()
            host = await Client.connect(
                first, room=room, token=token(room, Role.HOST, now=now, subject="h", capacity=1)
            )
            clients.append(host)
            await host.start()
            await host.expect("admitted")
            patient = await Client.connect(
                first, room=room, token=token(room, Role.PATIENT, now=now, subject="p")
            )
            clients.append(patient)
            await patient.expect("admitted")
            guest = await Client.connect(
                last, room=room, token=token(room, Role.GUEST, now=now), name="G"
            )
            clients.append(guest)
            await guest.expect("waiting", where=lambda m: bool(m.get("can_ask")))
            await asyncio.sleep(0.05)  # let the arrival's updates settle
            host._inbox.clear()  # only what follows the knock counts
            t0 = time.perf_counter()
            await guest.knock()
            await host.expect(
                "waiting_list",
                where=_lists(guest.participant_id),
            )
            latencies.append((time.perf_counter() - t0) * 1000)
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return {
        "knock_p50_ms": pct(latencies, 0.5),
        "knock_p99_ms": pct(latencies, 0.99),
        "knock_samples": len(latencies),
        "load": loadavg(),
    }


def _lists(pid: str) -> Callable[[dict[str, Any]], bool]:
    """A `Client.expect` filter: a waiting list that shows ``pid``."""

    def check(message: dict[str, Any]) -> bool:
        return any(entry["participant_id"] == pid for entry in message["entries"])

    return check


async def admit_all_phase(target: Target, count: int) -> dict[str, float]:
    """A started host at capacity and ``count`` guests who knocked (spread over the nodes);
    the time from sending admit_all until every guest has its ``admitted``."""
    room = f"admit-{random.random()}"
    now = time.time()
    first = target.urls[0]
    host = await Client.connect(
        first, room=room, token=token(room, Role.HOST, now=now, subject="h", capacity=1)
    )
    await host.start()
    await host.expect("admitted")
    patient = await Client.connect(
        first, room=room, token=token(room, Role.PATIENT, now=now, subject="p")
    )
    admitted_at: list[float] = []
    sockets: list[ClientConnection] = []
    readers: list[asyncio.Task[None]] = []

    async def watch(ws: ClientConnection) -> None:
        with_close = ConnectionClosed
        try:
            async for frame in ws:
                if isinstance(frame, str) and frame.startswith('{"type":"admitted"'):
                    admitted_at.append(time.perf_counter())
                    return
        except with_close:
            pass

    async def guest(i: int) -> None:
        hello = target.hello(room, Role.GUEST)
        ws, _ = await target.join(target.urls[i % len(target.urls)], hello)
        sockets.append(ws)
        await ws.send('{"type":"knock","id":"k"}')
        readers.append(asyncio.create_task(watch(ws)))

    try:
        t_setup = time.perf_counter()
        await bounded(count, guest)
        await host.expect("waiting_list", where=lambda m: len(m["entries"]) >= count, timeout=300)
        setup = time.perf_counter() - t_setup
        await asyncio.sleep(0.5)
        cpu0, gen0 = target.server_cpu(), own_cpu()
        t0 = time.perf_counter()
        await host.admit_all()
        await asyncio.wait(readers, timeout=60)
        cpu1, gen1 = target.server_cpu(), own_cpu()
        done = [t - t0 for t in admitted_at]
        return {
            "admit_all_ms": max(done) * 1000 if len(done) == count else float("nan"),
            "admit_all_p50_ms": pct(done, 0.5) * 1000,
            "admit_all_admitted": len(done),
            "admit_all_setup_s": setup,
            "admit_all_server_cpu_s": cpu1 - cpu0,
            "admit_all_gen_cpu_s": gen1 - gen0,
            "load": loadavg(),
        }
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        await asyncio.gather(host.close(), patient.close(), return_exceptions=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    target = Target(
        args.impl,
        args.urls.split(","),
        [int(p) for p in args.pids.split(",")],
        [int(p) for p in args.extra.split(",") if p],
    )
    out: dict[str, Any] = {"impl": args.impl}
    began = time.perf_counter()

    def note(what: str) -> None:
        print(f"{args.impl}: {what} at {time.perf_counter() - began:.1f}s", file=sys.stderr)

    if args.idle:
        out["idle"] = await idle_phase(target, args.idle)
        note("idle")
    pairs: list[tuple[Peer, Peer]] = []
    out["relay"] = {}
    for size in (int(s) for s in args.sizes.split(",") if s):
        t0 = time.perf_counter()
        await add_pairs(target, pairs, size // 2)
        figures: dict[str, float] = {"connect_s": time.perf_counter() - t0}
        figures |= await saturate(target, pairs, args.sat)
        figures |= await latency(target, pairs, args.lat)
        out["relay"][str(size)] = figures
        note(f"relay {size}")
    for host, patient in pairs:
        for peer in (host, patient):
            if peer.reader is not None:
                peer.reader.cancel()
    await asyncio.gather(*(p.ws.close() for pair in pairs for p in pair), return_exceptions=True)
    if target.vestibule and args.knocks:
        out["knock"] = await knock_phase(target, args.knocks)
        note("knock")
    if target.vestibule and args.admit:
        out["admit_all"] = await admit_all_phase(target, args.admit)
        note("admit_all")
    out["hello_retries"] = target.retries
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impl", required=True, help="vestibule1, vestibule2 or raw")
    parser.add_argument("--urls", required=True, help="WebSocket URLs, comma-separated")
    parser.add_argument("--pids", required=True, help="server process ids, comma-separated")
    parser.add_argument("--extra", default="", help="other process ids to account (redis)")
    parser.add_argument("--idle", type=int, default=0)
    parser.add_argument("--sizes", default="")
    parser.add_argument("--sat", type=float, default=3.0)
    parser.add_argument("--lat", type=float, default=5.0)
    parser.add_argument("--knocks", type=int, default=0)
    parser.add_argument("--admit", type=int, default=0)
    args = parser.parse_args()
    try:
        import uvloop

        result = uvloop.run(run(args))
    except ImportError:
        result = asyncio.run(run(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
