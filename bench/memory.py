"""Where a node's memory per connection goes: a `tracemalloc` diff of one node.

    python3 bench/memory.py                      # 2,000 idle patients, each alone in a room
    python3 bench/memory.py --call --connections 2000   # 1,000 pairs, each in a call

It starts a redis-server and one node (``vestibule serve``, tracing its allocations with
``-X tracemalloc``) and connects the clients from this process, so that only the node's
allocations are traced. After ``--warm`` warm-up connections (the one-off allocations of
the first ones: imports, pools, caches) and after the rest, the node dumps a snapshot on
SIGUSR1 (after a full collection); the difference, divided by the connections added, is
printed by the line that allocated it, and summed by package. The RSS growth per connection
is printed beside it: the traced total is what Python allocated, RSS adds the allocator's
overhead and fragmentation. Tracing makes the node several times slower, so this is no
figure of speed; bench/run.py measures RSS per connection without it.

Only 127.0.0.1; the node and redis-server are stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the venv re-exec and helpers of bench/run.py
sys.path.insert(0, str(HERE.parent))

NODE = "--node"  # the node's own mode: `bench/memory.py --node DIR serve ...`


def node(snapshots: Path, argv: list[str]) -> int:
    """Run `vestibule serve` with ``argv``; on SIGUSR1, dump a snapshot into
    ``snapshots`` (``<n>.snap``, then ``<n>.done`` once written)."""
    from signalling import cli

    taken = 0

    def dump(signum: int, frame: Any) -> None:
        nonlocal taken
        gc.collect()
        path = snapshots / f"{taken}.snap"
        tracemalloc.take_snapshot().dump(str(path))
        (snapshots / f"{taken}.done").write_text("")
        taken += 1

    signal.signal(signal.SIGUSR1, dump)
    return cli.main(argv)


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def snapshot(process: subprocess.Popen[bytes], snapshots: Path, n: int) -> Path:
    process.send_signal(signal.SIGUSR1)
    done = snapshots / f"{n}.done"
    deadline = time.monotonic() + 300
    while not done.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the node wrote no snapshot")
        await asyncio.sleep(0.1)
    return snapshots / f"{n}.snap"


def package(filename: str) -> str:
    """The first path component under site-packages or the checkout, else the file."""
    parts = Path(filename).parts
    for anchor in ("site-packages", HERE.parent.name):
        if anchor in parts:
            rest = parts[parts.index(anchor) + 1 :]
            if rest:
                return rest[0].removesuffix(".py")
    if "python3.11" in parts or "lib" in parts:
        return "stdlib " + Path(filename).stem
    return Path(filename).name


def report(before: Path, after: Path, count: int, rss_per: float, top: int) -> str:
    old = tracemalloc.Snapshot.load(str(before))
    new = tracemalloc.Snapshot.load(str(after))
    diffs = new.compare_to(old, "lineno")
    total = sum(d.size_diff for d in diffs)
    packages: Counter[str] = Counter()
    for d in diffs:
        packages[package(d.traceback[0].filename)] += d.size_diff
    lines = [
        f"connections added: {count:,}",
        f"traced Python allocations per connection: {total / count / 1024:.1f} KiB",
        f"RSS growth per connection: {rss_per / 1024:.1f} KiB",
        "",
        "| package (allocating file) | bytes / connection | share |",
        "|---|---|---|",
    ]
    for name, size in packages.most_common(12):
        lines.append(f"| {name} | {size / count:,.0f} | {100 * size / total:.1f} % |")
    lines += ["", "| allocated at | bytes / connection | blocks / connection |", "|---|---|---|"]
    root = str(HERE.parent) + "/"
    for d in sorted(diffs, key=lambda d: d.size_diff, reverse=True)[:top]:
        frame = d.traceback[0]
        where = frame.filename.replace(root, "")
        if "site-packages/" in where:
            where = where.split("site-packages/", 1)[1]
        lines.append(
            f"| {where}:{frame.lineno} | {d.size_diff / count:,.0f} | {d.count_diff / count:.1f} |"
        )
    return "\n".join(lines)


async def drive(args: argparse.Namespace) -> str:
    import run

    from bench.loadgen import Idle, Target, add_pairs, raise_fd_limit
    from signalling.redis_server import RedisProcess
    from tests.support import KEYS_ENV

    raise_fd_limit(args.connections + args.warm)
    work = Path(tempfile.mkdtemp(prefix="vst-memory-"))
    snapshots = work / "snapshots"
    snapshots.mkdir()
    redis = RedisProcess(work / "redis")
    redis.start()
    port = run.free_port()
    env = os.environ | KEYS_ENV | run.SERVER_ENV | {"REDIS_URL": redis.url}
    command = [sys.executable, "-X", f"tracemalloc={args.frames}", __file__, NODE, str(snapshots)]
    command += ["serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(work)]
    log = work / "node.err"
    with log.open("ab") as err:
        # (our own command line; started once, before any client)
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err)  # noqa: S603, ASYNC220
    try:
        run.wait_ready(port, "/healthz", process, log)
        target = Target("vestibule1", [f"ws://127.0.0.1:{port}/ws"], [process.pid], [])
        idle = Idle(target)
        pairs: list[Any] = []

        async def grow(count: int) -> None:
            if args.call:
                await add_pairs(target, pairs, len(pairs) + count // 2)
            else:
                await idle.paced(count, "step")
            await target.settle(60)

        await grow(args.warm)
        before, rss0 = await snapshot(process, snapshots, 0), rss(process.pid)
        await grow(args.connections)
        rss1 = rss(process.pid)
        after = await snapshot(process, snapshots, 1)
        return report(before, after, args.connections, (rss1 - rss0) / args.connections, args.top)
    finally:
        run.stop([process])
        redis.stop()


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == NODE:
        return node(Path(sys.argv[2]), sys.argv[3:])
    import run  # noqa: F401 -- in a fresh clone, builds the venv and runs this again in it

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2000, help="connections measured")
    parser.add_argument(
        "--warm", type=int, default=200, help="connections before the first snapshot"
    )
    parser.add_argument("--call", action="store_true", help="pairs in a call, not idle patients")
    parser.add_argument("--frames", type=int, default=1, help="frames traced per allocation")
    parser.add_argument("--top", type=int, default=25, help="lines of the diff printed")
    print(asyncio.run(drive(parser.parse_args())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
