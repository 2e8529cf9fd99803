"""The load generator: one process, pinned by `bench/run.py` to a core of its own.

It drives one server configuration (Vestibule on one or two nodes, or the raw relay) through
every phase of one repetition and prints the figures as one JSON object on stdout:

- ``idle``: ``--hello`` clients say hello with 100 handshakes in flight (hello -> welcome
  rate, server CPU per hello), then ``--storm`` more connect all at once (time until all are
  welcomed, failures, retries), then more at 100 in flight up to ``--idle`` connections;
  server RSS after each step (growth per connection); every idle client sends a ``ping``
  and the ``pong`` replies are counted (no message lost). Then they leave.
- ``relay``: for each size, pairs (host + patient, both admitted) exchange ~300-byte
  offers: msgs/s at saturation (a window of messages in flight per sender), server CPU
  per relayed message, then latency p50/p99 at 1 message a second per pair and at half the
  saturation rate just measured.
- ``knock`` (Vestibule only): knock -> host's waiting list, one at a time.
- ``admit_all`` (Vestibule only): N guests waiting, time until every one is admitted.

Every phase runs under a time limit: a phase that overruns it is recorded in ``timeouts``
(its figures stay NaN) and the generator goes on with the next one. ``phases`` holds the
wall time of every phase. Server CPU is the utime+stime delta of the server processes in
/proc/<pid>/stat.
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
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidHandshake  # noqa: E402

from rooms.roles import Role  # noqa: E402
from signalling.client import Client, ClientError  # noqa: E402
from tests.support import token  # noqa: E402

T = TypeVar("T")
TICK = os.sysconf("SC_CLK_TCK")
WINDOW = 8  # messages in flight per sender at saturation, at most ...
IN_FLIGHT_TOTAL = 2000  # ... and about this many in all (at least one per sender): the
# backlog left when the senders stop must drain in seconds, even at ~1,000 msg/s (2 nodes)
IN_FLIGHT = 100  # concurrent handshakes
DRAIN = 30.0  # seconds to wait for messages in flight after saturation
RETRIES = 5  # hellos refused as unavailable (or, in the storm, failed connects) tried again
FD_MARGIN = 500  # file descriptors beyond one per connection (Redis pool, logs, pipes)
PAD = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" + "a=x" * 200
SDP_LEN = 250  # with the envelope: ~300 bytes on the wire each way
NAN = float("nan")
TICK_S = 0.002  # the paced sender's tick (offers due are sent together)
# What a failed connect or hello can raise (the storm counts and retries them).
CONNECT_ERRORS = (OSError, InvalidHandshake, TimeoutError, ConnectionClosed)


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
        return NAN
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def raise_fd_limit(connections: int) -> None:
    """One file descriptor per connection plus a margin; exit with a clear message when
    the hard limit does not allow it (the servers get the same from bench/run.py)."""
    need = connections + FD_MARGIN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        sys.exit(
            f"loadgen: {connections:,} connections need {need:,} open files; the hard limit "
            f"is {hard:,} (raise it, e.g. `ulimit -Hn {need}` as root, or pass a smaller --idle)"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


class Clock:
    """Wall time and time limit of every phase."""

    def __init__(self, impl: str) -> None:
        self.impl = impl
        self.began = time.perf_counter()
        self.phases: dict[str, float] = {}
        self.timeouts: list[str] = []
        self.errors: dict[str, str] = {}

    async def run(self, name: str, limit: float, work: Coroutine[Any, Any, T]) -> T | None:
        """Run ``work`` for at most ``limit`` seconds; None (and ``name`` recorded in
        ``timeouts``) if it overran."""
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(limit):
                return await work
        except TimeoutError:
            self.timeouts.append(name)
            self.note(f"{name} TIMED OUT after {limit:.0f}s")
            return None
        except Exception as exc:  # noqa: BLE001  (one failed phase must not lose the others)
            self.errors[name] = f"{type(exc).__name__}: {exc}"[:500]
            self.note(f"{name} FAILED: {self.errors[name]}")
            return None
        finally:
            self.phases[name] = round(time.perf_counter() - t0, 2)
            self.note(f"{name} {self.phases[name]:.1f}s")

    def note(self, what: str) -> None:
        elapsed = time.perf_counter() - self.began
        print(f"{self.impl}: {what} (at {elapsed:.1f}s)", file=sys.stderr, flush=True)


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

    def stamped(self) -> Awaitable[None]:
        """An offer carrying its send time (the receiver's latency sample)."""
        return self.offer(f"ts={time.perf_counter_ns()};" + PAD[: SDP_LEN - 25])


class Target:
    """How to reach the servers of one configuration and say hello to them."""

    def __init__(self, impl: str, urls: list[str], pids: list[int], extra: list[int]) -> None:
        self.impl, self.urls, self.pids, self.extra = impl, urls, pids, extra
        self.now = time.time()
        self.retries: Counter[str] = Counter()

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
        self,
        url: str,
        hello: str,
        until: str = "welcome",
        timeout: float = 30.0,
        retry_connect: bool = False,
    ) -> tuple[ClientConnection, str]:
        """Connect, say hello, read until the welcome (or ``until``); return the socket and
        the id. A hello refused as ``unavailable`` (the server could not reach Redis in
        time) is retried, as the error asks; with ``retry_connect`` so is a failed connect
        or handshake. `retries` counts both."""
        for attempt in range(RETRIES + 1):
            try:
                ws = await connect(
                    url,
                    compression=None,
                    open_timeout=timeout,
                    max_queue=None,
                    ping_interval=None,  # browsers send no ping frames; the servers do
                )
            except (*CONNECT_ERRORS, AssertionError):
                # websockets 17.4's client fails an internal assertion (send_context:
                # ``close_deadline is None``) when the server closes the socket during the
                # opening handshake, as a node over its cap of unauthenticated sockets
                # does: for the generator that is a refused connect like any other.
                if not retry_connect or attempt == RETRIES:
                    raise
                self.retries["connect"] += 1
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            try:
                await ws.send(hello)
                pid = ""
                while True:
                    frame = await asyncio.wait_for(ws.recv(), timeout)
                    message = json.loads(frame)
                    if message["type"] == "welcome":
                        pid = message["participant_id"]
                    elif message["type"] == "error":
                        break
                    if pid and message["type"] == until:
                        return ws, pid
            except CONNECT_ERRORS:
                await ws.close()
                if not retry_connect or attempt == RETRIES:
                    raise
                self.retries["hello"] += 1
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            await ws.close()
            if message.get("code") != "unavailable" or attempt == RETRIES:
                raise RuntimeError(f"hello refused: {frame!r}")
            self.retries["unavailable"] += 1
            await asyncio.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def server_cpu(self) -> float:
        return cpu_seconds(self.pids)

    async def settle(self, limit: float = 30.0) -> float:
        """Wait until the servers (and Redis) are quiet: under 15 % of a core over half a
        second, for at most ``limit`` seconds; return how long it took."""
        t0 = time.perf_counter()
        pids = self.pids + self.extra
        while time.perf_counter() - t0 < limit:
            cpu0 = cpu_seconds(pids)
            await asyncio.sleep(0.5)
            if cpu_seconds(pids) - cpu0 < 0.075:
                break
        return time.perf_counter() - t0


async def bounded(count: int, make: Callable[[int], Awaitable[T]]) -> list[T]:
    """Run ``make(i)`` for i < count with at most IN_FLIGHT at a time."""
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(i: int) -> T:
        async with gate:
            return await make(i)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def leave_all(clients: list[Client]) -> None:
    """Every client leaves (a bare close would count as a lost connection, whose
    participant is removed only after the resume grace, 30 s: in the next phase)."""

    async def end(client: Client) -> None:
        with contextlib.suppress(ConnectionClosed, ClientError, TimeoutError):
            await client.leave()
            await client.closed(30)
        await client.close()

    await asyncio.gather(*(end(c) for c in clients), return_exceptions=True)


# -- idle connections: hello rate, connect storm, memory, no message lost -----------------


class Idle:
    """The idle phase's connections (each a patient alone in its room, waiting), kept open
    from step to step so the RSS steps and the ping count cover all of them."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.sockets: list[ClientConnection] = []
        self.made = 0
        self.out: dict[str, float] = {}

    def hellos(self, count: int) -> list[str]:
        """Prepared before a step's clock starts (signing tokens is the generator's work)."""
        first, self.made = self.made, self.made + count
        tag = random.random()
        return [
            self.target.hello(f"idle-{i}-{tag}", Role.PATIENT, subject=f"i{i}")
            for i in range(first, first + count)
        ]

    def url(self, i: int) -> str:
        return self.target.urls[i % len(self.target.urls)]

    async def paced(self, count: int, key: str) -> bool:
        """``count`` hellos, IN_FLIGHT at a time: hello -> welcome rate and CPU per hello."""
        hellos = self.hellos(count)
        target = self.target
        cpu0, gen0, t0 = target.server_cpu(), own_cpu(), time.perf_counter()

        async def one(i: int) -> None:
            ws, _ = await target.join(self.url(i), hellos[i])
            self.sockets.append(ws)

        await bounded(count, one)
        elapsed = time.perf_counter() - t0
        cpu1, gen1 = target.server_cpu(), own_cpu()
        self.out[f"{key}_rate"] = count / elapsed
        self.out[f"{key}_cpu_us"] = (cpu1 - cpu0) / count * 1e6
        self.out[f"{key}_gen_cpu_pct"] = (gen1 - gen0) / elapsed * 100
        return True

    async def storm(self, count: int, limit: float) -> bool:
        """``count`` clients connect at once (no limit in flight), each retrying a failed
        connect or hello up to RETRIES times: time until every one has its welcome."""
        hellos = self.hellos(count)
        target = self.target
        done: list[float] = []
        failed: Counter[str] = Counter()
        before = sum(target.retries.values())
        cpu0, gen0, t0 = target.server_cpu(), own_cpu(), time.perf_counter()

        async def one(i: int) -> None:
            try:
                ws, _ = await target.join(self.url(i), hellos[i], timeout=limit, retry_connect=True)
            except (*CONNECT_ERRORS, RuntimeError) as exc:
                failed[type(exc).__name__] += 1
                return
            self.sockets.append(ws)
            done.append(time.perf_counter() - t0)

        try:
            await asyncio.gather(*(one(i) for i in range(count)))
            return True
        finally:
            elapsed = time.perf_counter() - t0
            cpu1, gen1 = target.server_cpu(), own_cpu()
            self.out |= {
                "storm_all_welcomed_s": max(done) if len(done) == count else NAN,
                "storm_p50_s": pct(done, 0.5),
                "storm_welcomed": len(done),
                "storm_failed": sum(failed.values()),  # gave up after RETRIES
                # still connecting when the phase's time limit ended it
                "storm_unfinished": count - len(done) - sum(failed.values()),
                "storm_retries": sum(target.retries.values()) - before,
                "storm_cpu_us": (cpu1 - cpu0) / max(1, len(done)) * 1e6,
                "storm_gen_cpu_pct": (gen1 - gen0) / elapsed * 100,
            }
            for kind, n in failed.items():
                self.out[f"storm_failed_{kind}"] = n

    async def rss_step(self, rss0: int, gen_rss0: int) -> None:
        """Server RSS now, after the step's connections (and their first messages) settled."""
        await asyncio.sleep(0.5)
        n = len(self.sockets)
        rss = rss_bytes(self.target.pids)
        self.out[f"rss_mib_at_{n}"] = rss / 2**20
        self.out[f"rss_per_conn_kib_at_{n}"] = (rss - rss0) / max(1, n) / 1024
        self.out["rss_per_conn_kib"] = (rss - rss0) / max(1, n) / 1024
        self.out["rss_conns"] = n
        gen = rss_bytes([os.getpid()])
        self.out["gen_rss_per_conn_kib"] = (gen - gen_rss0) / max(1, n) / 1024

    async def ping_all(self) -> None:
        """Every idle connection sends ``ping``; count the ``pong`` replies."""
        pongs = 0
        sockets = list(self.sockets)

        async def one(ws: ClientConnection) -> None:
            nonlocal pongs
            await ws.send('{"type":"ping"}')
            while True:
                frame = await ws.recv()
                if isinstance(frame, str) and frame.startswith('{"type":"pong"'):
                    pongs += 1
                    return

        t0 = time.perf_counter()
        try:
            await asyncio.gather(*(one(ws) for ws in sockets), return_exceptions=True)
        finally:
            self.out["pings"] = len(sockets)
            self.out["pongs"] = pongs
            self.out["pongs_missing"] = len(sockets) - pongs
            self.out["ping_all_s"] = time.perf_counter() - t0


async def idle_phases(target: Target, clock: Clock, args: argparse.Namespace) -> dict[str, float]:
    """Hello rate (``--hello`` at 100 in flight), connect storm (``--storm`` at once), then
    up to ``--idle`` connections at 100 in flight; RSS after each step; ping them all."""
    idle = Idle(target)
    await asyncio.sleep(0.3)
    rss0, gen_rss0 = rss_bytes(target.pids), rss_bytes([os.getpid()])
    idle.out["rss_mib_at_0"] = rss0 / 2**20
    # No teardown: bench/run.py stops these servers after this phase (ending 10,000
    # connections would cost the server more than the phase itself).
    if args.hello:
        done = await clock.run("idle: hellos", args.limit, idle.paced(args.hello, "hello"))
        if done is None:
            return idle.out
        await idle.rss_step(rss0, gen_rss0)
    if args.storm:
        done = await clock.run("idle: storm", args.limit, idle.storm(args.storm, args.limit))
        if done is None:
            return idle.out
        await idle.rss_step(rss0, gen_rss0)
    rest = args.idle - len(idle.sockets)
    if rest > 0:
        done = await clock.run("idle: fill", args.limit, idle.paced(rest, "fill"))
        if done is None:
            return idle.out
        await idle.rss_step(rss0, gen_rss0)
    if idle.sockets:
        await clock.run("idle: ping all", 60.0, idle.ping_all())
    idle.out["load"] = loadavg()
    return idle.out


# -- relay --------------------------------------------------------------------------------


async def add_pairs(target: Target, pairs: list[tuple[Peer, Peer]], count: int) -> bool:
    """Grow ``pairs`` to ``count``: a host (started) and a patient (admitted) per room,
    on the first node and the last one (the same one with a single node)."""
    first, last = target.urls[0], target.urls[-1]
    tag = random.random()

    async def make(i: int) -> None:
        room = f"pair-{i}-{tag}"
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
        pairs.append((host, patient))  # as soon as made: a timed-out set-up closes them too

    start = len(pairs)
    await bounded(count - start, lambda i: make(start + i))
    return True


async def saturate(
    target: Target, pairs: list[tuple[Peer, Peer]], warm: float, seconds: float
) -> dict[str, float]:
    """Every client sends offers to its peer, ``window`` in flight each, for ``seconds`` after
    ``warm`` seconds of warm-up; then waits (up to DRAIN) for every message in flight."""
    peers = [p for pair in pairs for p in pair]
    stop = False
    sdp = PAD[:SDP_LEN]
    window = max(1, min(WINDOW, IN_FLIGHT_TOTAL // len(peers)))

    async def pump(peer: Peer) -> None:
        assert peer.other is not None
        other = peer.other
        while not stop:
            while peer.sent - other.got < window and not stop:
                await peer.offer(sdp)
            peer.wake.clear()
            if peer.sent - other.got >= window:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(peer.wake.wait(), 1.0)

    pumps = [asyncio.create_task(pump(p)) for p in peers]
    try:
        await asyncio.sleep(warm)
        got0 = sum(p.got for p in peers)
        cpu0, extra0 = target.server_cpu(), cpu_seconds(target.extra)
        gen0, t0 = own_cpu(), time.perf_counter()
        await asyncio.sleep(seconds)
        got1 = sum(p.got for p in peers)
        cpu1, extra1 = target.server_cpu(), cpu_seconds(target.extra)
        gen1, t1 = own_cpu(), time.perf_counter()
    finally:
        stop = True
        for task in pumps:  # at once: 5,000 senders noticing `stop` take seconds
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
    # Drain before the latency phases: a backlog left over would be measured as latency.
    drained = time.perf_counter()
    undrained = await wait_delivered(peers, DRAIN)
    relayed = max(1, got1 - got0)
    return {
        "msgs_per_s": relayed / (t1 - t0),
        "cpu_us_per_msg": (cpu1 - cpu0) / relayed * 1e6,
        "redis_cpu_us_per_msg": (extra1 - extra0) / relayed * 1e6,
        "server_cpu_pct": (cpu1 - cpu0) / (t1 - t0) * 100,
        "gen_cpu_pct": (gen1 - gen0) / (t1 - t0) * 100,
        "errors": sum(p.errors for p in peers),
        "window": window,
        "drain_s": time.perf_counter() - drained,
        "undrained": undrained,
        "load": loadavg(),
    }


async def wait_delivered(peers: list[Peer], limit: float) -> int:
    """Wait (up to ``limit`` s) until every offer sent has arrived; return how many have not."""

    def missing() -> int:
        return sum(p.sent - p.other.got for p in peers if p.other)

    deadline = time.monotonic() + limit
    while missing() > 0 and time.monotonic() < deadline:  # noqa: ASYNC110  (counters)
        await asyncio.sleep(0.02)
    return missing()


async def latency(
    target: Target, pairs: list[tuple[Peer, Peer]], seconds: float
) -> dict[str, float]:
    """Each pair's host sends one offer a second to its patient, at a random phase, for
    ``seconds`` seconds."""
    samples: list[float] = []
    for _, patient in pairs:
        patient.samples = samples
    sends = max(1, round(seconds))

    async def tick(host: Peer) -> None:
        start = time.monotonic() + random.random()
        for k in range(sends):
            await asyncio.sleep(max(0.0, start + k - time.monotonic()))
            await host.stamped()

    cpu0, gen0, t0 = target.server_cpu(), own_cpu(), time.perf_counter()
    try:
        await asyncio.gather(*(tick(host) for host, _ in pairs))
        lost = await wait_delivered([p for pair in pairs for p in pair], 5.0)
        cpu1, gen1, t1 = target.server_cpu(), own_cpu(), time.perf_counter()
    finally:
        for _, patient in pairs:
            patient.samples = None
    return latency_figures("lat", samples, lost, (cpu1 - cpu0, gen1 - gen0, t1 - t0))


async def latency_at(
    target: Target, pairs: list[tuple[Peer, Peer]], rate: float, seconds: float
) -> dict[str, float]:
    """Offers at ``rate`` a second in total (both directions, senders taken in turn in a
    shuffled order, evenly spaced) for ``seconds``: latency under a known fraction of the
    saturation load."""
    peers = [p for pair in pairs for p in pair]
    random.shuffle(peers)
    samples: list[float] = []
    for peer in peers:
        peer.samples = samples
    total = max(1, int(rate * seconds))
    cpu0, gen0, t0 = target.server_cpu(), own_cpu(), time.perf_counter()
    try:
        sent = 0
        while sent < total:
            due = min(total, int((time.perf_counter() - t0) * rate) + 1)
            while sent < due:
                await peers[sent % len(peers)].stamped()
                sent += 1
            # A fixed tick: uvloop's timers have 1 ms resolution, a shorter sleep would spin.
            await asyncio.sleep(TICK_S)
        t_sent = time.perf_counter()
        lost = await wait_delivered(peers, 10.0)
        cpu1, gen1, t1 = target.server_cpu(), own_cpu(), time.perf_counter()
    finally:
        for peer in peers:
            peer.samples = None
    figures = latency_figures("lat50", samples, lost, (cpu1 - cpu0, gen1 - gen0, t1 - t0))
    return {"lat50_rate": total / (t_sent - t0), **figures}


def latency_figures(
    prefix: str, samples: list[float], lost: int, used: tuple[float, float, float]
) -> dict[str, float]:
    """p50/p99, counts, and server and generator CPU % from (server s, generator s, wall s)."""
    server, generator, wall = used
    return {
        f"{prefix}_p50_ms": pct(samples, 0.5),
        f"{prefix}_p99_ms": pct(samples, 0.99),
        f"{prefix}_samples": len(samples),
        f"{prefix}_lost": lost,
        f"{prefix}_server_cpu_pct": server / wall * 100,
        f"{prefix}_gen_cpu_pct": generator / wall * 100,
    }


async def relay_phases(target: Target, clock: Clock, args: argparse.Namespace) -> dict[str, Any]:
    pairs: list[tuple[Peer, Peer]] = []
    out: dict[str, Any] = {}
    # No teardown: bench/run.py stops these servers after this phase.
    for size in (int(s) for s in args.sizes.split(",") if s):
        figures: dict[str, float] = {}
        setup = clock.run(f"relay {size}: set-up", args.limit, add_pairs(target, pairs, size // 2))
        if await setup is None:
            break
        figures["connect_s"] = clock.phases[f"relay {size}: set-up"]
        sat = await clock.run(
            f"relay {size}: saturation + drain",
            args.warm + args.sat + DRAIN + 10,
            saturate(target, pairs, args.warm, args.sat),
        )
        if sat is None:
            out[str(size)] = figures
            break
        figures |= sat
        lat = await clock.run(
            f"relay {size}: latency 1/s", args.lat + 20, latency(target, pairs, args.lat)
        )
        figures |= lat or {}
        if args.lat50:
            rate = figures["msgs_per_s"] / 2
            lat50 = await clock.run(
                f"relay {size}: latency 50%",
                args.lat50 + 30,
                latency_at(target, pairs, rate, args.lat50),
            )
            figures |= lat50 or {}
        out[str(size)] = figures
    return out


# -- knock and admit_all (Vestibule only) -------------------------------------------------


async def knock_phase(target: Target, count: int) -> dict[str, float]:
    """``count`` rooms, each with a started host and a patient (so it is at capacity) on
    the first node and a guest on the last, set up 100 at a time; then each guest knocks
    in turn, timed until its host's waiting list shows it."""
    first, last = target.urls[0], target.urls[-1]
    latencies: list[float] = []
    clients: list[Client] = []
    tag = random.random()

    async def room(i: int) -> tuple[Client, Client]:
        room = f"knock-{i}-{tag}"
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
        return host, guest

    try:
        rooms = await bounded(count, room)
        await target.settle(10.0)  # the arrivals' updates, before the first knock
        for host, guest in rooms:
            t0 = time.perf_counter()
            await guest.knock()
            # Only a list that shows this guest counts: it cannot precede the knock.
            await host.expect("waiting_list", where=_lists(guest.participant_id))
            latencies.append((time.perf_counter() - t0) * 1000)
    finally:
        await leave_all(clients)
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


async def admit_all_phase(
    target: Target, clock: Clock, count: int, limit: float
) -> dict[str, float]:
    """A started host at capacity and ``count`` guests who knocked (spread over the nodes);
    the time from sending admit_all until every guest has its ``admitted``."""
    room = f"admit-{random.random()}"
    now = time.time()
    first = target.urls[0]
    admitted_at: list[float] = []
    sockets: list[ClientConnection] = []
    readers: list[asyncio.Task[None]] = []
    clients: list[Client] = []
    out: dict[str, float] = {}

    async def watch(ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                if isinstance(frame, str) and frame.startswith('{"type":"admitted"'):
                    admitted_at.append(time.perf_counter())
                    return
        except ConnectionClosed:
            pass

    async def guest(i: int) -> None:
        hello = target.hello(room, Role.GUEST)
        ws, _ = await target.join(target.urls[i % len(target.urls)], hello, timeout=limit)
        sockets.append(ws)
        await ws.send('{"type":"knock","id":"k"}')
        readers.append(asyncio.create_task(watch(ws)))

    async def setup() -> Client:
        host = await Client.connect(
            first, room=room, token=token(room, Role.HOST, now=now, subject="h", capacity=1)
        )
        clients.append(host)
        await host.start()
        await host.expect("admitted")
        clients.append(
            await Client.connect(
                first, room=room, token=token(room, Role.PATIENT, now=now, subject="p")
            )
        )
        # In chunks of IN_FLIGHT, each until the host's list has it: the server CPU of each
        # chunk says whether a join costs more as the room fills (issue 11: the last 100
        # within 1.3x the first 100).
        chunks: list[float] = []
        for start in range(0, count, IN_FLIGHT):
            size = min(IN_FLIGHT, count - start)
            cpu0 = target.server_cpu()
            await bounded(size, lambda i, start=start: guest(start + i))
            await host.expect(
                "waiting_list",
                where=lambda m, n=start + size: len(m["entries"]) >= n,
                timeout=limit,
            )
            chunks.append((target.server_cpu() - cpu0) / size)
        out.update(
            join_cpu_s=sum(c * min(IN_FLIGHT, count - i * IN_FLIGHT) for i, c in enumerate(chunks)),
            join_cpu_first_ms=chunks[0] * 1000,
            join_cpu_last_ms=chunks[-1] * 1000,
            join_cpu_growth=chunks[-1] / chunks[0] if chunks[0] else NAN,
        )
        await target.settle(10.0)
        return host

    async def admit(host: Client) -> None:
        cpu0, gen0 = target.server_cpu(), own_cpu()
        t0 = time.perf_counter()
        await host.admit_all()
        try:
            await asyncio.wait(readers)
        finally:
            cpu1, gen1 = target.server_cpu(), own_cpu()
            done = [t - t0 for t in admitted_at]
            out.update(
                admit_all_ms=max(done) * 1000 if len(done) == count else NAN,
                admit_all_p50_ms=pct(done, 0.5) * 1000,
                admit_all_admitted=len(done),
                admit_all_server_cpu_s=cpu1 - cpu0,
                admit_all_gen_cpu_s=gen1 - gen0,
                load=loadavg(),
            )

    try:
        host = await clock.run("admit_all: set-up", limit, setup())
        if host is not None:
            out["admit_all_setup_s"] = clock.phases["admit_all: set-up"]
            await clock.run("admit_all: admit", 60.0, admit(host))
        else:
            out["admit_all_setup_joined"] = len(sockets)
        return out
    finally:
        # No leave: the servers are stopped after this phase (1,000 leaving one room would
        # cost them more than the phase itself).
        for task in readers:
            task.cancel()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    target = Target(
        args.impl,
        args.urls.split(","),
        [int(p) for p in args.pids.split(",")],
        [int(p) for p in args.extra.split(",") if p],
    )
    clock = Clock(args.impl)
    out: dict[str, Any] = {"impl": args.impl}
    if args.hello or args.storm or args.idle:
        out["idle"] = await idle_phases(target, clock, args)
    if args.sizes:
        out["relay"] = await relay_phases(target, clock, args)
    if target.vestibule and args.knocks:
        knock = await clock.run("knock", args.limit, knock_phase(target, args.knocks))
        out["knock"] = knock or {}
        clock.phases["knock: leave + settle"] = round(await target.settle(10.0), 2)
    if target.vestibule and args.admit:
        out["admit_all"] = await admit_all_phase(target, clock, args.admit, args.limit)
    out["hello_retries"] = sum(target.retries.values())
    out["retries"] = dict(target.retries)
    out["phases"] = clock.phases
    out["timeouts"] = clock.timeouts
    out["errors"] = clock.errors
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impl", required=True, help="vestibule1, vestibule2 or raw")
    parser.add_argument("--urls", required=True, help="WebSocket URLs, comma-separated")
    parser.add_argument("--pids", required=True, help="server process ids, comma-separated")
    parser.add_argument("--extra", default="", help="other process ids to account (redis)")
    parser.add_argument("--hello", type=int, default=0, help="hellos at 100 in flight")
    parser.add_argument("--storm", type=int, default=0, help="clients connecting at once")
    parser.add_argument("--idle", type=int, default=0, help="idle connections in the end")
    parser.add_argument("--sizes", default="", help="relay: connected clients, e.g. 100,1000")
    parser.add_argument("--warm", type=float, default=1.0, help="relay warm-up seconds")
    parser.add_argument("--sat", type=float, default=3.0, help="relay saturation seconds")
    parser.add_argument("--lat", type=float, default=5.0, help="seconds at 1 msg/s per pair")
    parser.add_argument("--lat50", type=float, default=3.0, help="seconds at 50%% saturation")
    parser.add_argument("--knocks", type=int, default=0)
    parser.add_argument("--admit", type=int, default=0)
    parser.add_argument("--limit", type=float, default=120.0, help="seconds per phase, at most")
    args = parser.parse_args()
    largest = max(
        [args.idle, args.hello + args.storm, *map(int, filter(None, args.sizes.split(",")))]
    )
    raise_fd_limit(max(largest, args.admit))
    try:
        import uvloop

        result = uvloop.run(run(args))
    except ImportError:
        result = asyncio.run(run(args))
    print(json.dumps(result), flush=True)
    sys.stderr.flush()
    # The servers are stopped next: closing 10,000 sockets and collecting their objects
    # on the way out would only add seconds to every group.
    os._exit(0)


if __name__ == "__main__":
    main()
