"""The API's operations, from every resource module."""

from __future__ import annotations

from signalling.api import appointments, audit, availability, booking
from signalling.api import invitations as invitations_api
from signalling.api import rooms as rooms_api
from signalling.api.context import ApiContext
from signalling.api.keys import ApiKeys
from signalling.api.registry import Api


def build_api(ctx: ApiContext) -> Api:
    """Every operation of ``/api/v1``; `Api.routes` mounts them, `Api.openapi` describes
    them."""
    api = Api(ApiKeys(ctx.redis))
    handlers = appointments.register(api, ctx)
    rooms_api.register(api, ctx)
    invitations_api.register(api, ctx)
    availability.register(api, ctx)
    booking.register(api, ctx, handlers)
    audit.register(api, ctx)
    return api
