"""Who hears of an appointment's changes, right after each one is saved.

- The clinician's consoles: every write of an appointment (booked, changed, its status, an
  invitation's) is published on ``vst:console:<clinician id>`` (pub/sub, the appointment id
  as the message), which the console's event stream follows (`signalling.api.console`).
  Nothing is stored: a console that is not listening loses nothing, it reads the list when
  it connects.
- The event webhooks: a status change (and a booking) is queued as an event
  (`signalling.webhooks`), when they are configured.

`AppointmentStore` calls `saved` after each create and each saved change; a failure here
fails the request after the change was saved (a Redis error: the client sees 503 and the
change stands, as after any write whose answer was lost).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from rooms.appointments import Appointment
from signalling.keys import console_channel
from signalling.pubsub import publish

StatusHook = Callable[[Appointment | None, Appointment], Awaitable[None]]


class Followers:
    """Told of every appointment write. With no Redis (the default), nobody follows."""

    def __init__(self, redis: Redis | None = None, status: StatusHook | None = None) -> None:
        """``status`` is awaited with (before, after) when a booking or status change is
        saved (``before`` None for a new appointment)."""
        self.redis = redis
        self.status = status

    async def saved(self, old: Appointment | None, new: Appointment) -> None:
        if self.redis is None:
            return
        await self.changed(old, new)
        if self.status is not None and (old is None or old.status is not new.status):
            await self.status(old, new)

    async def changed(self, *appointments: Appointment | None) -> None:
        """Tell the consoles of the appointments' clinicians (one message each)."""
        if self.redis is None:
            return
        told: set[str] = set()
        for a in appointments:
            if a is None or a.clinician_profile_id is None or a.clinician_profile_id in told:
                continue
            told.add(a.clinician_profile_id)
            await publish(self.redis, console_channel(a.clinician_profile_id), a.id)
