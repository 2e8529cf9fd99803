"""The API's operations, from every resource module."""

from __future__ import annotations

from signalling.api import appointments, audit, availability, booking, console
from signalling.api import invitations as invitations_api
from signalling.api import rooms as rooms_api
from signalling.api.context import ApiContext
from signalling.api.keys import ApiKeys
from signalling.api.links import clinician_room_id
from signalling.api.registry import Api
from signalling.api.sessions import ConsoleSessions
from signalling.metrics import Metrics


def build_api(ctx: ApiContext, metrics: Metrics | None = None) -> Api:
    """Every operation of ``/api/v1``; `Api.routes` mounts them, `Api.openapi` describes
    them. Redis errors are counted on ``metrics``."""
    sessions = ConsoleSessions(ctx.settings, ctx.clock, clinician_room_id)
    api = Api(ApiKeys(ctx.redis), sessions, metrics)
    handlers = appointments.register(api, ctx)
    rooms_api.register(api, ctx)
    invitations_api.register(api, ctx)
    availability.register(api, ctx)
    booking.register(api, ctx, handlers)
    audit.register(api, ctx)
    console.register(api, ctx, handlers)
    return api
