"""What the admission policy tests share: a room with a host booked for one appointment,
participants that arrive with what their links say, and the events they produce."""

from __future__ import annotations

from admission import policy
from rooms import AppointmentId, Event, EventKind, ParticipantId, Role, Room, Stage, WaitReason
from rooms.participants import NO_BOOKING, Booking
from tests.rooms.support import APPT, HOST, ROOM_ID, S1, check_counts, state

K = EventKind
APPT2 = AppointmentId("apt_2")
STARTS, ENDS = 1000.0, 1900.0  # APPT's times
CLOSES_AFTER = 3600.0  # the join window closes this long after the end
HOST_ABSENCE = 180.0


def booked(
    appointment: AppointmentId | None = APPT,
    *,
    capacity: int | None = 2,
    starts_at: float | None = STARTS,
    ends_at: float | None = ENDS,
) -> Booking:
    """What a link for ``appointment`` says (None: a link without an appointment)."""
    if appointment is None:
        return Booking(capacity=capacity) if capacity is not None else NO_BOOKING
    return Booking(appointment, starts_at, ends_at, capacity)


def arrive(
    room: Room,
    pid: ParticipantId,
    role: Role,
    now: float,
    name: str | None = None,
    *,
    booking: Booking | None = None,
    join_now: bool = False,
) -> list[Event]:
    """``pid`` arrives with a link for APPT unless ``booking`` says otherwise."""
    return policy.arrive(
        room,
        pid,
        role,
        now=now,
        booking=booked(capacity=None) if booking is None else booking,
        join_now=join_now,
    )


def hosted(capacity: int = 2, appointment: AppointmentId | None = APPT) -> tuple[Room, list[Event]]:
    """A room whose host has a link for ``appointment`` with ``capacity``, and the events
    that made it (a story's log starts with them)."""
    room = Room(ROOM_ID)
    events = policy.arrive(
        room,
        HOST,
        Role.HOST,
        now=0.0,
        booking=booked(appointment, capacity=capacity),
    )
    return room, events


def room_with_host(capacity: int = 2, appointment: AppointmentId | None = APPT) -> Room:
    return hosted(capacity, appointment)[0]


def start(
    room: Room, *, now: float = 1.0, appointment: AppointmentId | None = None, session: str = S1
) -> list[Event]:
    return policy.start(
        room,
        HOST,
        session=session,  # type: ignore[arg-type]
        now=now,
        appointment=appointment,
        closes_after=CLOSES_AFTER,
    )


def tick(room: Room, now: float, grace: float = 30.0) -> list[Event]:
    return policy.tick(room, now, grace=grace, host_absence=HOST_ABSENCE)


def due(room: Room, now: float, grace: float = 30.0) -> bool:
    return policy.due(room, now, grace=grace, host_absence=HOST_ABSENCE)


def arrived(
    pid: ParticipantId,
    role: Role,
    now: float,
    name: str | None = None,
    booking: Booking | None = None,
    join_now: bool = False,
) -> Event:
    b = booked(capacity=None) if booking is None else booking
    return Event(
        K.ARRIVED,
        now,
        actor=pid,
        participant=pid,
        role=role,
        appointment=b.appointment,
        starts_at=b.starts_at,
        ends_at=b.ends_at,
        capacity=b.capacity,
        join_now=join_now or None,
    )


def knocked(pid: ParticipantId, now: float, reason: WaitReason) -> Event:
    return Event(K.KNOCKED, now, actor=pid, participant=pid, reason=reason)


def entered(
    pid: ParticipantId, now: float, actor: ParticipantId | None = None, session: str = S1
) -> Event:
    return Event(K.PATIENT_ENTERED, now, actor=actor or pid, participant=pid, session=session)  # type: ignore[arg-type]


def stages(room: Room) -> dict[ParticipantId, Stage]:
    return {pid: p.stage for pid, p in room.participants.items()}


def waiting_ids(room: Room) -> list[ParticipantId]:
    return [p.id for p in room.waiting()]


def assert_folds(room: Room, log: list[Event]) -> None:
    """The events collected, and their storage records, rebuild the room, and so does its
    snapshot."""
    for events in (log, [Event.from_record(event.to_record()) for event in log]):
        rebuilt = Room(ROOM_ID)
        rebuilt.apply_all(events)
        assert state(rebuilt) == state(room)
        assert rebuilt.snapshot() == room.snapshot()
        check_counts(rebuilt)
    restored = Room.from_snapshot(room.snapshot())
    assert state(restored) == state(room)
    check_counts(restored)
    check_counts(room)
    assert room.version == len(log)
