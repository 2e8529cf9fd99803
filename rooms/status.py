"""Call status: what the clinician's console shows for a room (seed 000)."""

from __future__ import annotations

import enum

from rooms.ids import AppointmentId
from rooms.participants import Stage
from rooms.room import Room


class CallStatus(enum.Enum):
    READY = "ready"  # the room is available
    AWAITING_PATIENT = "awaiting_patient"  # the host started; no patient yet
    PATIENT_WAITING = "patient_waiting"  # a patient is here and not yet in a call with the host
    IN_CALL = "in_call"  # host and at least one patient in the call
    ENDED = "ended"  # the last call has ended
    EXPIRED = "expired"  # the join window has closed without a call


def call_status(
    room: Room, *, appointment: AppointmentId | None = None, window_closed: bool = False
) -> CallStatus:
    """The call status of ``room`` for ``appointment`` (None: a room without one).

    The room is persistent: a call that ended for an earlier appointment makes this one
    READY, not ENDED. ``window_closed`` says whether the appointment's join window is over
    (the caller knows the window; the room does not)."""
    patients = [p for p in room.participants.values() if not p.is_host]
    host_in_call = room.host_in_call()
    if host_in_call and any(p.stage is Stage.IN_CALL for p in patients):
        return CallStatus.IN_CALL
    if patients:
        return CallStatus.PATIENT_WAITING
    if room.active_session is not None:
        return CallStatus.AWAITING_PATIENT
    if room.session is not None and room.session.appointment == appointment:
        return CallStatus.ENDED
    if window_closed:
        return CallStatus.EXPIRED
    return CallStatus.READY
