"""Place a WebRTC call between two participants through the Vestibule protocol (aiortc).

    async with CallPeer(host, tracks=[player.audio]) as peer:   # host: a connected Client
        await peer.call(patient_id)       # the other side: `await CallPeer(c).accept()`
        await peer.connected()

aiortc does not trickle: it gathers every ICE candidate before it hands out a local
description and writes them all into the SDP. Browsers trickle. So that aiortc peers take
the browsers' path, in which every candidate crosses the server as a message of its own,
`CallPeer` emulates trickle:

- once gathering is complete it strips the ``a=candidate:`` and ``a=end-of-candidates``
  lines from its local SDP, sends the rest as the ``offer`` or ``answer``, then one
  ``candidate`` message per candidate (an RTCIceCandidateInit: ``candidate``, ``sdpMid``,
  ``sdpMLineIndex``) and a last ``candidate: null``, end of candidates;
- received candidates go to ``RTCPeerConnection.addIceCandidate``. aiortc 1.16 drops, with
  only a logged warning, a candidate added before the remote description is set (on the
  answering side no transceiver has a mid yet), so such candidates are buffered and added
  right after the description. End of candidates (``null``, or an empty candidate string as
  browsers send it) is passed on as ``addIceCandidate(None)``; aiortc ignores candidates
  after it. The remote SDP must not carry ``a=end-of-candidates`` itself, or the trickled
  candidates that follow would be ignored: this module never sends it.

One `CallPeer` places (`call`) or accepts (`accept`) one call. A background task takes the
``offer``, ``answer`` and ``candidate`` messages (and the errors the server returns for the
messages this peer sent) from the client and handles them one at a time, in arrival order;
the client's other messages are left for its owner. `close` stops the task and the peer
connection; the client stays open (its owner closes it).

aiortc is untyped: its objects are ``Any`` here and stay inside this module, except the
peer connection (`CallPeer.pc`) and the tracks, which callers use as aiortc objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from signalling.client import Client, ClientError
from signalling.wire import Message

log = logging.getLogger("vestibule.signalling.rtc")

CandidateInit = dict[str, Any]  # RTCIceCandidateInit: candidate, sdpMid, sdpMLineIndex
_POLL = 3600.0  # the pump's wait for a message; it just waits again after it


class CallError(ClientError):
    """The call could not be set up: the server refused one of its messages (``reply`` is
    the server's error), the connection ended, or the remote peer's description could not
    be used."""


def configuration(ice_servers: Iterable[Mapping[str, Any]]) -> Any:
    """An RTCConfiguration with exactly these ICE servers (the ``ice_servers`` of the
    welcome). An empty list means host candidates only; aiortc would otherwise add a public
    STUN server, and gathering stalls for seconds where it is unreachable."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(
                urls=list(server["urls"]),
                username=server.get("username"),
                credential=server.get("credential"),
            )
            for server in ice_servers
        ]
    )


def split_candidates(sdp: str) -> tuple[str, list[CandidateInit]]:
    """Split a complete SDP into the SDP without candidate and end-of-candidates lines, and
    its candidates as RTCIceCandidateInit maps, in SDP order."""
    kept: list[str] = []
    found: list[tuple[int, str]] = []
    mids: dict[int, str] = {}
    index = -1  # m-line index; candidates only appear in media sections
    for line in sdp.splitlines():
        if line.startswith("m="):
            index += 1
        elif line.startswith("a=mid:"):
            mids[index] = line.removeprefix("a=mid:")
        if line.startswith("a=candidate:"):
            if index >= 0:
                found.append((index, line.removeprefix("a=")))
        elif line != "a=end-of-candidates":
            kept.append(line)
    candidates = [
        {"candidate": line, "sdpMid": mids.get(i), "sdpMLineIndex": i} for i, line in found
    ]
    return "\r\n".join(kept) + "\r\n", candidates


def _ice_candidate(init: Mapping[str, Any]) -> Any:
    """The aiortc RTCIceCandidate for an RTCIceCandidateInit; ValueError if unparseable."""
    line = str(init.get("candidate", "")).removeprefix("a=").removeprefix("candidate:")
    try:
        candidate = candidate_from_sdp(line)
    except (AssertionError, IndexError, ValueError):  # aiortc asserts on the field count
        raise ValueError(f"cannot parse ICE candidate {line[:100]!r}") from None
    candidate.sdpMid = init.get("sdpMid")
    candidate.sdpMLineIndex = init.get("sdpMLineIndex")
    return candidate


class CallPeer:
    """One side of a call: an aiortc RTCPeerConnection signalled through a `Client`.

    Create it inside a running event loop. ``tracks`` are sent to the other side;
    ``rtc_configuration`` defaults to the ICE servers of the client's welcome."""

    def __init__(
        self,
        client: Client,
        *,
        tracks: Iterable[Any] = (),
        rtc_configuration: Any = None,
        timeout: float = 10.0,
    ) -> None:
        self.client = client
        self.timeout = timeout
        if rtc_configuration is None:
            rtc_configuration = configuration(client.welcome.get("ice_servers", []))
        self.pc: Any = RTCPeerConnection(rtc_configuration)
        self.peer_id: str | None = None
        # What crossed the server, for callers (and tests) to inspect.
        self.remote_sdp: str | None = None
        self.remote_candidates: list[CandidateInit | None] = []
        self.sent_candidates: list[CandidateInit | None] = []
        self.remote_tracks: list[Any] = []
        self._role: str | None = None
        self._early: list[tuple[str, CandidateInit | None]] = []
        self._refs: set[str] = set()
        loop = asyncio.get_running_loop()
        self._answered: asyncio.Future[None] = loop.create_future()
        self._accepted: asyncio.Future[str] = loop.create_future()
        self._state_changed = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        for track in tracks:
            self.pc.addTrack(track)
        self.pc.on("track", self.remote_tracks.append)
        self.pc.on("connectionstatechange", self._state_changed.set)

    # -- the call -------------------------------------------------------------------------

    async def call(self, peer_id: str, timeout: float | None = None) -> None:
        """Offer a call to ``peer_id`` and return once its answer is applied; then await
        `connected`. Raise CallError if the server refuses the offer (e.g. the peer is
        not in the call), TimeoutError if no answer comes within ``timeout``."""
        self._take_role("caller")
        self.peer_id = peer_id
        self._start_pump()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self._send_local("offer")
        async with asyncio.timeout(self._timeout(timeout)):
            await asyncio.shield(self._answered)

    async def accept(self, timeout: float | None = None) -> str:
        """Wait for an offer, answer it, and return the caller's participant id; then
        await `connected`. Raise CallError if the offer cannot be used or the server
        refuses the answer, TimeoutError if no offer comes within ``timeout``."""
        self._take_role("callee")
        self._start_pump()
        async with asyncio.timeout(self._timeout(timeout)):
            return await asyncio.shield(self._accepted)

    async def connected(self, timeout: float | None = None) -> None:
        """Wait until the peer connection's connectionState is "connected" (ICE and DTLS
        done); raise CallError if it fails or closes first."""
        async with asyncio.timeout(self._timeout(timeout)):
            while (state := self.pc.connectionState) != "connected":
                if state in ("failed", "closed"):
                    raise CallError(f"the peer connection is {state}")
                self._state_changed.clear()
                await self._state_changed.wait()

    def remote_track(self, kind: str) -> Any:
        """The track of ``kind`` ("audio" or "video") the other side sends; it exists
        once `call` or `accept` has returned. LookupError if there is none."""
        for track in self.remote_tracks:
            if track.kind == kind:
                return track
        raise LookupError(f"no remote {kind} track")

    async def packets_received(self) -> dict[str, int]:
        """RTP packets received so far per media kind (``inbound-rtp`` stats)."""
        received: dict[str, int] = {}
        for stats in (await self.pc.getStats()).values():
            if stats.type == "inbound-rtp":
                received[stats.kind] = received.get(stats.kind, 0) + int(stats.packetsReceived)
        return received

    async def close(self) -> None:
        """Stop handling messages and close the peer connection (the client stays open)."""
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        await self.pc.close()

    async def __aenter__(self) -> CallPeer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- sending --------------------------------------------------------------------------

    async def _send_local(self, kind: str) -> None:
        """Send the local description without its candidates, then each candidate, then
        end of candidates (emulated trickle; see the module docstring)."""
        assert self.peer_id is not None
        sdp, candidates = split_candidates(self.pc.localDescription.sdp)
        send = self.client.offer if kind == "offer" else self.client.answer
        self._refs.add(await send(self.peer_id, sdp))
        for candidate in [*candidates, None]:
            self._refs.add(await self.client.candidate(self.peer_id, candidate))
            self.sent_candidates.append(candidate)

    # -- receiving ------------------------------------------------------------------------

    def _start_pump(self) -> None:
        self._pump = asyncio.create_task(self._run_pump(), name=f"rtc-pump-{self._role}")

    def _ours(self, message: Message) -> bool:
        return message["type"] != "error" or message.get("ref") in self._refs

    async def _run_pump(self) -> None:
        while True:
            try:
                message = await self.client.expect(
                    "offer", "answer", "candidate", "error", timeout=_POLL, where=self._ours
                )
            except TimeoutError:
                continue
            except ClientError as exc:  # the connection has ended
                self._fail(CallError(str(exc)))
                return
            try:
                await self._handle(message)
            except CallError as exc:
                self._fail(exc)
            except Exception as exc:  # a bad description must not kill the pump silently
                log.exception("cannot handle a %s message", message["type"])
                self._fail(CallError(f"cannot handle the {message['type']}: {exc}"))

    async def _handle(self, message: Message) -> None:
        kind = message["type"]
        if kind == "error":
            raise CallError(f"the server refused a message: {message.get('code')}", message)
        sender = str(message["from"])
        if kind == "candidate":
            candidate: CandidateInit | None = message["candidate"]
            self.remote_candidates.append(candidate)
            if self.pc.remoteDescription is None or sender != self.peer_id:
                self._early.append((sender, candidate))  # until the description is set
            else:
                await self._add_candidate(candidate)
        elif kind == "offer" and self._role == "callee" and self.peer_id is None:
            self.peer_id = sender
            await self._set_remote(message["sdp"], "offer")
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            await self._send_local("answer")
            if not self._accepted.done():
                self._accepted.set_result(sender)
        elif kind == "answer" and sender == self.peer_id and not self._answered.done():
            await self._set_remote(message["sdp"], "answer")
            self._answered.set_result(None)
        else:  # a second offer, an offer to a caller, a stray answer: one call per peer
            log.warning("ignoring an unexpected %s from %s", kind, sender)

    async def _set_remote(self, sdp: str, kind: str) -> None:
        """Apply the remote description, then the candidates that arrived before it."""
        self.remote_sdp = sdp
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        early, self._early = self._early, []
        for sender, candidate in early:
            if sender == self.peer_id:
                await self._add_candidate(candidate)

    async def _add_candidate(self, init: CandidateInit | None) -> None:
        if init is None or not init.get("candidate"):  # "" is a browser's end of candidates
            await self.pc.addIceCandidate(None)
            return
        try:
            candidate = _ice_candidate(init)
            await self.pc.addIceCandidate(candidate)
        except ValueError as exc:  # one bad candidate must not end the call
            log.warning("ignoring a remote candidate: %s", exc)

    # -- helpers --------------------------------------------------------------------------

    def _take_role(self, role: str) -> None:
        if self._role is not None:
            raise RuntimeError(f"this peer is already the {self._role} of a call: use a new one")
        self._role = role

    def _timeout(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout

    def _fail(self, error: CallError) -> None:
        """Report ``error`` to whoever waits for this peer's set-up step."""
        waiter: asyncio.Future[Any] = self._answered if self._role == "caller" else self._accepted
        if not waiter.done():
            waiter.set_exception(error)
        else:
            log.warning("call of %s: %s", self.client.participant_id, error)
