"""The join window: when an appointment's room may be entered.

A room booked for ``starts_at``..``ends_at`` opens :data:`DEFAULT_OPENS_BEFORE` seconds before
the start (patients arrive early and wait) and closes :data:`DEFAULT_CLOSES_AFTER` seconds after
the end (consultations overrun). An ad-hoc room has no window: callers hold ``None`` instead of
a :class:`JoinWindow` and skip the check.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Final

from admission.errors import RoomClosed, RoomNotOpenYet

__all__ = ["DEFAULT_CLOSES_AFTER", "DEFAULT_OPENS_BEFORE", "JoinWindow", "WindowState"]

DEFAULT_OPENS_BEFORE: Final = 600.0
DEFAULT_CLOSES_AFTER: Final = 3600.0


class WindowState(enum.Enum):
    """Where ``now`` falls relative to a join window."""

    NOT_YET_OPEN = "not_yet_open"
    OPEN = "open"
    CLOSED = "closed"


def _check_time(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class JoinWindow:
    """The closed interval ``[opens_at, closes_at]`` (unix seconds) in which joining is allowed.

    Both ends are inclusive: joining at exactly ``closes_at`` is still allowed.
    """

    opens_at: float
    closes_at: float

    def __post_init__(self) -> None:
        _check_time("opens_at", self.opens_at)
        _check_time("closes_at", self.closes_at)
        if self.closes_at < self.opens_at:
            raise ValueError(
                f"join window closes before it opens: closes_at {self.closes_at} < "
                f"opens_at {self.opens_at}"
            )

    @classmethod
    def around(
        cls,
        starts_at: float,
        ends_at: float,
        *,
        opens_before: float = DEFAULT_OPENS_BEFORE,
        closes_after: float = DEFAULT_CLOSES_AFTER,
    ) -> JoinWindow:
        """Return the window for an appointment from ``starts_at`` to ``ends_at``.

        Opens ``opens_before`` seconds before the start, closes ``closes_after`` seconds after
        the end; both margins must be >= 0 and the appointment must not end before it starts.
        """
        _check_time("starts_at", starts_at)
        _check_time("ends_at", ends_at)
        if ends_at < starts_at:
            raise ValueError(
                f"appointment ends before it starts: ends_at {ends_at} < starts_at {starts_at}"
            )
        for name, margin in (("opens_before", opens_before), ("closes_after", closes_after)):
            if not (math.isfinite(margin) and margin >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {margin!r}")
        return cls(starts_at - opens_before, ends_at + closes_after)

    def state(self, now: float) -> WindowState:
        """Return whether the window is not yet open, open, or closed at ``now``."""
        _check_time("now", now)
        if now < self.opens_at:
            return WindowState.NOT_YET_OPEN
        if now > self.closes_at:
            return WindowState.CLOSED
        return WindowState.OPEN

    def check(self, now: float) -> None:
        """Return if the window is open at ``now``; otherwise raise a WindowError.

        Raises RoomNotOpenYet (details: opens_at, closes_at) so the caller can tell the user
        when to come back, or RoomClosed (details: closed_at), after which joining is refused
        for good.
        """
        state = self.state(now)
        if state is WindowState.NOT_YET_OPEN:
            raise RoomNotOpenYet(self.opens_at, self.closes_at)
        if state is WindowState.CLOSED:
            raise RoomClosed(self.closes_at)
