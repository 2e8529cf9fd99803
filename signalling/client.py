"""A small asyncio client of the Vestibule protocol (tests, bots, benchmarks).

    client = await Client.connect("ws://127.0.0.1:8080/ws", room="r1", token=token)
    waiting = await client.expect("waiting")
    await client.knock()

Messages the server sends are kept in arrival order until taken: `expect` takes the first
one of a type (waiting for it if needed) and leaves the others for later, so a test can ask
for messages in the order it cares about. The latest state message of each kind is also
kept in `state`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from signalling.wire import Codec, Message

STATE_TYPES = frozenset({"status", "waiting", "roster", "waiting_list", "notice"})
LIST_FIELDS = {"waiting_list": "entries", "roster": "participants"}  # the lists (§6.8)


class Lists:
    """The client's copy of the lists the server sends as deltas (hello feature
    ``deltas``, PROTOCOL.md §6.8): each delta is applied to the list of the version before
    and turned into the whole list, as the server would have sent it."""

    def __init__(self) -> None:
        self._lists: dict[str, tuple[int, dict[str, Message]]] = {}

    def take(self, message: Message) -> Message | None:
        """The whole list after ``message`` (a list or its delta); None for a delta that
        does not follow on from the copy (a gap: ask for the lists again, ``resync``)."""
        kind = message["type"]
        if kind in LIST_FIELDS:
            entries = {e["participant_id"]: e for e in message[LIST_FIELDS[kind]]}
            self._lists[kind] = (message.get("version", 0), entries)
            return message
        kind = kind.removesuffix("_delta")
        version, entries = self._lists.get(kind, (None, {}))
        if version is None or message["version"] != version + 1:
            self._lists.pop(kind, None)
            return None
        for pid in message["removed"]:
            entries.pop(pid, None)
        for entry in message["changed"]:
            entries[entry["participant_id"]] = entry
        for entry in message["added"]:
            entries[entry["participant_id"]] = entry
        self._lists[kind] = (message["version"], entries)
        items = list(entries.values())
        if kind == "waiting_list":
            items = [{**e, "position": i} for i, e in enumerate(items, start=1)]
        return {"type": kind, LIST_FIELDS[kind]: items, "version": message["version"]}


class ClientError(Exception):
    """The server refused a hello, or the connection ended while waiting."""

    def __init__(self, message: str, reply: Message | None = None) -> None:
        super().__init__(message)
        self.reply = reply

    @property
    def code(self) -> str | None:
        return None if self.reply is None else self.reply.get("code")


class Client:
    """One participant's connection. Use `connect`, not the constructor."""

    def __init__(self, ws: ClientConnection, codec: Codec) -> None:
        self.ws = ws
        self.codec = codec
        self.welcome: Message = {}
        self.state: dict[str, Message] = {}
        self._inbox: list[Message] = []
        self._arrived = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._next_id = 0
        self.lists = Lists()
        self.resyncs = 0  # gaps in the deltas seen (each answered with a resync)

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        room: str,
        token: str,
        name: str | None = None,
        resume: str | None = None,
        codec: Codec = Codec.JSON,
        timeout: float = 10.0,
        heartbeat: bool = True,
        features: tuple[str, ...] = (),
        deltas: bool = True,
    ) -> Client:
        """Open a connection and say hello; raise ClientError if the server refuses.
        With ``heartbeat`` the client pings at the interval the welcome asks for.
        ``features`` go in the hello: ``("join_now",)`` makes the server tell this client
        when it may join (``waiting.can_join``) instead of letting it in by itself; then
        `join` enters. With ``deltas`` the server sends what changed in the lists, and
        the client turns it back into whole lists (`Lists`): what it receives and keeps
        in `state` is the same either way."""
        if deltas and "deltas" not in features:
            features = (*features, "deltas")
        ws = await connect(url, compression=None, open_timeout=timeout)
        client = cls(ws, codec)
        client._reader = asyncio.create_task(client._read())
        hello: Message = {"type": "hello", "room": room, "token": token}
        if name is not None:
            hello["name"] = name
        if resume is not None:
            hello["resume"] = resume
        if features:
            hello["features"] = list(features)
        await client.send(hello)
        reply = await client.expect("welcome", "error", timeout=timeout)
        if reply["type"] == "error":
            await client.close()
            raise ClientError(f"hello refused: {reply['code']}: {reply['message']}", reply)
        client.welcome = reply
        if heartbeat:
            interval = float(reply.get("heartbeat_interval") or 20.0)
            client._pinger = asyncio.create_task(client._ping_every(interval))
        return client

    @property
    def participant_id(self) -> str:
        return str(self.welcome["participant_id"])

    @property
    def resume_token(self) -> str:
        return str(self.welcome["resume_token"])

    @property
    def close_code(self) -> int | None:
        """The close code once the connection has ended, else None."""
        return None if self.ws.close_code is None else int(self.ws.close_code)

    # -- sending --------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        await self.ws.send(self.codec.encode(message))

    async def request(self, kind: str, **fields: Any) -> str:
        """Send a message with a fresh ``id``; return the id (errors carry it as ``ref``)."""
        self._next_id += 1
        ref = f"c{self._next_id}"
        await self.send({"type": kind, "id": ref, **fields})
        return ref

    async def knock(self) -> str:
        return await self.request("knock")

    async def knock_cancel(self) -> str:
        return await self.request("knock_cancel")

    async def join(self) -> str:
        """Join now: enter the call if the rule lets this participant in, else wait."""
        return await self.request("join")

    async def start(self, appointment: str | None = None) -> str:
        """Start (or rejoin) the call: of ``appointment`` if given, else of this link's."""
        if appointment is None:
            return await self.request("start")
        return await self.request("start", appointment=appointment)

    async def admit(self, participant_id: str) -> str:
        return await self.request("admit", participant_id=participant_id)

    async def deny(self, participant_id: str, message: str | None = None) -> str:
        extra = {} if message is None else {"message": message}
        return await self.request("deny", participant_id=participant_id, **extra)

    async def admit_all(self) -> str:
        return await self.request("admit_all")

    async def end(self) -> str:
        return await self.request("end")

    async def notice(self, text: str, participant_id: str | None = None) -> str:
        """(Host) leave a message for everyone waiting, or for one participant: shown to
        them until replaced; "" takes it back."""
        if participant_id is None:
            return await self.request("notice", text=text)
        return await self.request("notice", text=text, participant_id=participant_id)

    async def leave(self) -> str:
        return await self.request("leave")

    async def ping(self) -> str:
        return await self.request("ping")

    async def offer(self, to: str, sdp: str) -> str:
        return await self.request("offer", to=to, sdp=sdp)

    async def answer(self, to: str, sdp: str) -> str:
        return await self.request("answer", to=to, sdp=sdp)

    async def candidate(self, to: str, candidate: dict[str, Any] | None) -> str:
        return await self.request("candidate", to=to, candidate=candidate)

    # -- receiving ------------------------------------------------------------------------

    async def expect(
        self,
        *types: str,
        timeout: float = 10.0,
        where: Callable[[Message], bool] | None = None,
    ) -> Message:
        """Take the first message of one of ``types`` (and matching ``where``), waiting up
        to ``timeout`` seconds; raise ClientError if the connection ends first."""
        async with asyncio.timeout(timeout), self._arrived:
            while True:
                for index, message in enumerate(self._inbox):
                    if message["type"] in types and (where is None or where(message)):
                        return self._inbox.pop(index)
                if self._reader is None or self._reader.done():
                    raise ClientError(
                        f"connection closed ({self.close_code}) while waiting for {types}"
                    )
                await self._arrived.wait()

    def pending(self) -> list[Message]:
        """Messages received and not yet taken, oldest first."""
        return list(self._inbox)

    async def closed(self, timeout: float = 10.0) -> int | None:
        """Wait for the connection to end; return its close code."""
        async with asyncio.timeout(timeout):
            await self.ws.wait_closed()
        return self.close_code

    async def close(self) -> None:
        await self.ws.close()
        for task in (self._pinger, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _ping_every(self, interval: float) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(interval)
                await self.send({"type": "ping"})

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                message = (
                    json.loads(frame)
                    if isinstance(frame, str)
                    else msgpack.unpackb(frame, raw=False)
                )
                if message.get("type") in ("waiting_list_delta", "roster_delta"):
                    whole = self.lists.take(message)
                    if whole is None:
                        self.resyncs += 1
                        await self.send({"type": "resync"})
                        continue
                    message = whole
                elif message.get("type") in LIST_FIELDS:
                    self.lists.take(message)
                if message.get("type") in STATE_TYPES:
                    self.state[message["type"]] = message
                async with self._arrived:
                    self._inbox.append(message)
                    self._arrived.notify_all()
        except ConnectionClosed:
            pass
        finally:
            async with self._arrived:
                self._arrived.notify_all()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
