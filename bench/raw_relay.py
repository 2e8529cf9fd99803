"""The Python ceiling: a minimal relay written directly on `websockets`, same wire shape.

    python bench/raw_relay.py --port 9000

``{"type": "hello", "room": R}`` first (answered by ``welcome`` with a ``participant_id``),
then ``offer``/``answer``/``candidate`` with ``to`` are relayed as ``{"type", "from",
"sdp"|"candidate"}`` to a participant of the same room, ``ping`` gets ``pong``. No tokens,
no Redis, no queues: what any Python relay on this stack must at least spend.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import resource
import sys

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

RELAYED = frozenset({"offer", "answer", "candidate"})
_ids = itertools.count(1)
_peers: dict[str, ServerConnection] = {}
_room_of: dict[str, str] = {}


def _dumps(message: dict[str, object]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


async def _handle(ws: ServerConnection) -> None:
    try:
        hello = json.loads(await ws.recv())
    except (ConnectionClosed, ValueError):
        return
    if not isinstance(hello, dict) or hello.get("type") != "hello":
        await ws.close(4401, "hello first")
        return
    pid = f"r_{next(_ids)}"
    room = str(hello.get("room"))
    _peers[pid] = ws
    _room_of[pid] = room
    try:
        await ws.send(_dumps({"type": "welcome", "participant_id": pid, "room": room}))
        async for frame in ws:
            message = json.loads(frame)
            kind = message["type"]
            if kind in RELAYED:
                to = message["to"]
                target = _peers.get(to)
                if target is None or _room_of.get(to) != room:
                    await ws.send(_dumps({"type": "error", "code": "peer_unavailable"}))
                    continue
                key = "candidate" if kind == "candidate" else "sdp"
                out = _dumps({"type": kind, "from": pid, key: message[key]})
                with contextlib.suppress(ConnectionClosed):
                    await target.send(out)
            elif kind == "ping":
                await ws.send('{"type":"pong"}')
    except ConnectionClosed:
        pass
    finally:
        _peers.pop(pid, None)
        _room_of.pop(pid, None)


async def _main(host: str, port: int) -> None:
    async with serve(_handle, host, port, compression=None, backlog=2048, max_size=2**16):
        await asyncio.Future()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fds", type=int, default=0, help="open files needed (soft limit)")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if args.fds > soft:
        if hard != resource.RLIM_INFINITY and hard < args.fds:
            sys.exit(f"raw_relay: needs {args.fds:,} open files, the hard limit is {hard:,}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.fds, hard))
    try:
        import uvloop

        uvloop.run(_main(args.host, args.port))
    except ImportError:
        asyncio.run(_main(args.host, args.port))


if __name__ == "__main__":
    main()
