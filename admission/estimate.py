"""When a waiting patient's appointment can be expected to start, from how late the
clinician is running (seed 002: the patient sees that they are waiting, and for how long).

The clinician sees one appointment after another. The current call is expected to last its
booked length from when it started, and never to end before now: a call that started 10
minutes late ends 10 minutes late, and one that runs past its end ends "now" at the
earliest, later with every minute it goes on. After it, the appointments of the people
waiting in the room follow in the order of their start times, each at its start time or
when the one before is expected to end, whichever is later, for its booked length. With no
call on, the clinician is expected to begin at once (or at the start time).

Only what the room knows counts: the times come from the join links of the people in the
room (an appointment whose patient has not arrived is not counted), and a call with no
times (an ad-hoc call, or one whose people have all left) is expected to end now. Pure:
``now`` is a parameter; O(n log n) in the people of the room, once per change.
"""

from __future__ import annotations

import math

from rooms.ids import AppointmentId
from rooms.participants import Stage
from rooms.room import Room

ROUND = 60.0  # expected times are whole minutes, rounded up: a wait is never understated


def expected_starts(room: Room, now: float) -> dict[AppointmentId, float]:
    """For each appointment someone in the room is waiting for (not the active call's),
    when it can be expected to start, in unix seconds rounded up to the minute."""
    times: dict[AppointmentId, tuple[float, float]] = {}
    waiting: set[AppointmentId] = set()
    for p in room.participants.values():
        booking = p.booking
        if booking.appointment is None or booking.starts_at is None or booking.ends_at is None:
            continue
        times.setdefault(booking.appointment, (booking.starts_at, booking.ends_at))
        if not p.is_host and p.stage is not Stage.IN_CALL:
            waiting.add(booking.appointment)
    free_at = now
    session = room.active_session
    current = None if session is None else session.appointment
    if session is not None and current in times:
        starts, ends = times[current]
        late = max(0.0, session.started_at - starts, now - ends)
        free_at = ends + late
    out: dict[AppointmentId, float] = {}
    for starts, appointment in sorted((times[a][0], a) for a in waiting if a != current):
        begins = max(free_at, starts)
        out[appointment] = math.ceil(begins / ROUND) * ROUND
        free_at = begins + (times[appointment][1] - starts)
    return out
