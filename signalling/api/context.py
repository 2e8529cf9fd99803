"""What every API module needs: Redis, settings, the clock, the hub (to read rooms), and
who follows the appointments' changes (the clinicians' consoles, the event webhooks)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis

from signalling.api.followers import Followers
from signalling.hub import Hub
from signalling.settings import Settings


@dataclass(frozen=True, slots=True)
class ApiContext:
    redis: Redis
    settings: Settings
    clock: Callable[[], float]
    hub: Hub
    followers: Followers = field(default_factory=Followers)
