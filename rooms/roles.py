"""Who a participant is in a room."""

import enum


class Role(enum.Enum):
    """The role a join token grants.

    HOST is the clinician who owns the room; PATIENT is a booked patient (counted in the
    booked capacity); GUEST joined through a general link and must give a display name.
    """

    HOST = "host"
    PATIENT = "patient"
    GUEST = "guest"
