"""Helpers shared by the end-to-end tests: room names, waiting-list ids, and the media of
aiortc peers."""

from __future__ import annotations

import asyncio
import secrets
from contextlib import AsyncExitStack
from typing import Any

from aiortc.contrib.media import MediaPlayer

from signalling.rtc import CallPeer

T = 5.0  # seconds any one ordinary step may take


def new_room() -> str:
    return "room-" + secrets.token_hex(4)


def ids(entries: list[dict[str, Any]]) -> list[str]:
    """The participant ids of waiting-list or roster entries, in order."""
    return [entry["participant_id"] for entry in entries]


def media(stack: AsyncExitStack, source: str) -> Any:
    """A lavfi MediaPlayer whose tracks are stopped (and its thread ended) with ``stack``."""
    player = MediaPlayer(source, format="lavfi")
    for track in (player.audio, player.video):
        if track is not None:
            stack.callback(track.stop)
    return player


async def audio_frames(peer: CallPeer, count: int) -> list[Any]:
    """The next ``count`` decoded frames of the audio the other side sends."""
    track = peer.remote_track("audio")
    async with asyncio.timeout(T):
        return [await track.recv() for _ in range(count)]
