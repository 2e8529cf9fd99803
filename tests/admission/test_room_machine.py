"""Random command sequences on one clinician's room (hypothesis, stateful): whatever
arrives, asks, starts, ends, admits, denies, drops, leaves or waits for the clock, the
room keeps its invariants:

- its kept counts equal a recount, and the queue holds exactly the waiting participants;
- nobody is in a call without an active session;
- by the rule alone nobody enters the call of another appointment than its link's (only
  the host's explicit admit or admit all may put someone there), and a guest or a link
  without an appointment enters by the rule only under the booked capacity;
- the stream of events it produced folds back into the same room, and so does its
  snapshot.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from admission import policy
from admission.errors import AdmissionError
from rooms import (
    AppointmentId,
    Event,
    EventKind,
    ParticipantId,
    Role,
    Room,
    RoomError,
    SessionId,
    Stage,
)
from rooms.participants import Booking
from tests.admission.support import APPT2, booked, hosted
from tests.rooms.support import APPT, HOST, ROOM_ID, check_counts, state

K = EventKind
PEOPLE = [ParticipantId(f"p_{n}") for n in range(8)]
APPOINTMENTS = [APPT, APPT2, None]
GRACE, ABSENCE = 30.0, 180.0


class RoomMachine(RuleBasedStateMachine):
    @initialize(capacity=st.integers(1, 3), own=st.sampled_from(APPOINTMENTS))
    def open_room(self, capacity: int, own: AppointmentId | None) -> None:
        self.room, self.log = hosted(capacity=capacity, appointment=own)
        self.now = 1.0
        self.sessions = 0

    def _do(self, command: Callable[[], list[Event]]) -> None:
        """Run a command; a refusal must change nothing, and what it did must obey the
        rule (`_check_entries`) and join the log."""
        before = self.room.clone()
        try:
            events = command()
        except (RoomError, AdmissionError):
            assert state(self.room) == state(before)  # a refusal changed nothing
            return
        _check_entries(before, events)
        self.log += events

    # -- what people do --------------------------------------------------------------------

    @rule(
        who=st.sampled_from(PEOPLE),
        role=st.sampled_from([Role.PATIENT, Role.GUEST]),
        appointment=st.sampled_from(APPOINTMENTS),
        join_now=st.booleans(),
    )
    def arrive(
        self, who: ParticipantId, role: Role, appointment: AppointmentId | None, join_now: bool
    ) -> None:
        known = self.room.participants.get(who)
        if known is not None:
            role = known.role
        booking: Booking = booked(appointment, capacity=2)
        self._do(
            lambda: policy.arrive(
                self.room, who, role, now=self.now,
                booking=booking, join_now=join_now, connection=f"c{self.now}",
            )
        )  # fmt: skip

    @rule(who=st.sampled_from(PEOPLE))
    def ask(self, who: ParticipantId) -> None:
        self._do(lambda: policy.ask(self.room, who, self.now))

    @rule(who=st.sampled_from(PEOPLE))
    def cancel(self, who: ParticipantId) -> None:
        self._do(lambda: self.room.cancel_knock(who, self.now))

    @rule(who=st.sampled_from([*PEOPLE, HOST]))
    def leave(self, who: ParticipantId) -> None:
        self._do(lambda: self.room.leave(who, self.now))

    @rule(who=st.sampled_from([*PEOPLE, HOST]))
    def drop(self, who: ParticipantId) -> None:
        self._do(lambda: self.room.disconnect(who, self.now))

    # -- what the host does ----------------------------------------------------------------

    @rule()
    def host_back(self) -> None:
        self._do(
            lambda: policy.arrive(
                self.room, HOST, Role.HOST, now=self.now,
                booking=booked(None, capacity=2), connection=f"h{self.now}",
            )
        )  # fmt: skip

    @rule(appointment=st.sampled_from([*APPOINTMENTS, AppointmentId("apt_unknown")]))
    def start(self, appointment: AppointmentId | None) -> None:
        self.sessions += 1
        session = SessionId(f"s_{self.sessions}")
        self._do(
            lambda: policy.start(
                self.room, HOST, session=session, now=self.now, appointment=appointment
            )
        )

    @rule()
    def end(self) -> None:
        self._do(lambda: policy.end(self.room, HOST, self.now))

    @rule(who=st.sampled_from(PEOPLE))
    def admit(self, who: ParticipantId) -> None:
        self._do(lambda: policy.admit(self.room, HOST, who, self.now))

    @rule()
    def admit_all(self) -> None:
        self._do(lambda: policy.admit_all(self.room, HOST, self.now))

    @rule(who=st.sampled_from(PEOPLE))
    def deny(self, who: ParticipantId) -> None:
        self._do(lambda: policy.deny(self.room, HOST, who, None, self.now))

    # -- what the clock does ---------------------------------------------------------------

    @rule(seconds=st.sampled_from([0.5, 10.0, GRACE, ABSENCE, 5000.0]))
    def wait(self, seconds: float) -> None:
        self.now += seconds
        self._do(lambda: policy.tick(self.room, self.now, grace=GRACE, host_absence=ABSENCE))
        assert not policy.due(self.room, self.now, grace=GRACE, host_absence=ABSENCE)

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def counts_are_true(self) -> None:
        check_counts(self.room)

    @invariant()
    def nobody_in_a_call_that_is_not_active(self) -> None:
        if self.room.active_session is None:
            assert self.room.in_call() == []

    @precondition(lambda self: len(self.log) % 7 == 0)
    @invariant()
    def the_log_folds_back(self) -> None:
        rebuilt = Room(ROOM_ID)
        rebuilt.apply_all(self.log)
        assert state(rebuilt) == state(self.room)
        assert Room.from_snapshot(self.room.snapshot()).snapshot() == self.room.snapshot()


def _check_entries(before: Room, events: list[Event]) -> None:
    """Every entry the rule made (not the host's admit) was allowed by the rule: into the
    call of the participant's own appointment, under capacity unless a booked patient."""
    room = before
    admitted: set[ParticipantId] = set()
    for event in events:
        if event.kind is K.ADMITTED:
            assert event.participant is not None
            admitted.add(event.participant)
        if event.kind is K.PATIENT_ENTERED and event.participant not in admitted:
            assert event.participant is not None
            who = room.get(event.participant)
            session = room.active_session
            assert session is not None
            assert room.host_in_call()
            assert who.appointment == session.appointment
            if who.role is not Role.PATIENT or who.appointment is None:
                assert room.occupancy() < session.capacity
            assert who.stage is not Stage.IN_CALL
        room.apply(event)


RoomMachine.TestCase.settings = settings(max_examples=400, stateful_step_count=50, deadline=None)
test_room_machine = RoomMachine.TestCase
