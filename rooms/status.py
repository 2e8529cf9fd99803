"""Call status: what the clinician's console shows for a room (seed 000)."""

from __future__ import annotations

import enum

from rooms.ids import AppointmentId
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
    """The call status of ``room`` for ``appointment``.

    The room is persistent: a clinician's room serves one appointment after another, and
    the status of one appointment only counts its own people and its own call. A patient
    waiting for the next appointment makes that one PATIENT_WAITING, not the one in the
    call; a call that ended for an earlier appointment leaves this one READY, not ENDED.
    ``appointment`` None is the room as a whole (a link without an appointment: every
    patient and guest, whichever call). Constant time: the room keeps its counts.
    ``window_closed`` says whether the appointment's join window is over (the caller knows
    the window; the room does not)."""
    session = room.active_session
    ours = session is not None and (appointment is None or session.appointment == appointment)
    if ours and room.host_in_call() and room.occupancy():
        return CallStatus.IN_CALL
    if room.present(appointment):
        return CallStatus.PATIENT_WAITING
    if ours:
        return CallStatus.AWAITING_PATIENT
    if appointment is None:
        if room.session is not None and room.session.appointment is None:
            return CallStatus.ENDED
    elif room.ended(appointment):
        return CallStatus.ENDED
    if window_closed:
        return CallStatus.EXPIRED
    return CallStatus.READY
