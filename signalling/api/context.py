"""What every API module needs: Redis, settings, the clock, the hub (to read rooms)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from signalling.hub import Hub
from signalling.settings import Settings


@dataclass(frozen=True, slots=True)
class ApiContext:
    redis: Redis
    settings: Settings
    clock: Callable[[], float]
    hub: Hub
