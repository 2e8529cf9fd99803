"""The room state machine: a persistent room, its waiting room and its current call.

`Room` is sans-I/O. Commands (`arrive`, `knock`, `admit`, ...) take ``now``, check the
room's rules, and return the events they produced, already applied; a command that raises
has changed nothing. `apply` is the only mutator, so a room rebuilt by applying a stored
event stream is identical to the room that produced it.

Who may do what, and whether a newcomer may enter at once, is policy and lives in
`admission`; this module keeps the structural invariants: one entry per participant, the
waiting room in arrival order, nobody in the call without a started session.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from rooms.errors import InvalidState, SessionNotStarted, UnknownParticipant
from rooms.events import Event, EventKind, ExitCause, WaitReason
from rooms.ids import AppointmentId, ParticipantId, RoomId, SessionId
from rooms.participants import Participant, Session, Stage
from rooms.roles import Role

K = EventKind


class Room:
    """State of one room, folded from its events."""

    def __init__(self, room_id: RoomId) -> None:
        self.id = room_id
        self.version = 0  # number of events applied
        self.session: Session | None = None  # the current call, or the last one
        self._participants: dict[ParticipantId, Participant] = {}
        self._queue: dict[ParticipantId, None] = {}  # insertion order is arrival order

    def clone(self) -> Room:
        """An independent copy to try a command on (participants are immutable values, so
        copying the maps is enough)."""
        other = Room(self.id)
        other.version = self.version
        other.session = self.session
        other._participants = dict(self._participants)
        other._queue = dict(self._queue)
        return other

    def snapshot(self) -> dict[str, Any]:
        """The state as primitives, for storage; `from_snapshot` restores it."""
        session = self.session
        return {
            "room": self.id,
            "version": self.version,
            "session": None
            if session is None
            else [session.id, session.appointment, session.capacity, session.started_at,
                  session.ended_at],
            "participants": [
                [p.id, p.role.value, p.name, p.subject, p.stage.value, p.knocked_at,
                 p.absent_since, p.connection]
                for p in self._participants.values()
            ],
            "queue": list(self._queue),
        }  # fmt: skip

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> Room:
        """Restore a room from `snapshot` output (trusted storage: anything else raises
        KeyError, TypeError or ValueError)."""
        room = cls(RoomId(data["room"]))
        room.version = int(data["version"])
        if data["session"] is not None:
            sid, appointment, capacity, started_at, ended_at = data["session"]
            room.session = Session(SessionId(sid), appointment, capacity, started_at, ended_at)
        for pid, role, name, subject, stage, knocked, absent, conn in data["participants"]:
            room._participants[pid] = Participant(
                pid, Role(role), name, subject, Stage(stage), knocked, absent, conn
            )
        room._queue = {ParticipantId(pid): None for pid in data["queue"]}
        return room

    # -- queries -------------------------------------------------------------------------

    @property
    def participants(self) -> Mapping[ParticipantId, Participant]:
        return self._participants

    def get(self, pid: ParticipantId) -> Participant:
        """The participant, or UnknownParticipant."""
        try:
            return self._participants[pid]
        except KeyError:
            raise UnknownParticipant(f"{pid} is not in room {self.id}", participant=pid) from None

    @property
    def active_session(self) -> Session | None:
        return self.session if self.session is not None and self.session.active else None

    def waiting(self) -> list[Participant]:
        """Participants in the waiting room, first arrival first."""
        return [self._participants[pid] for pid in self._queue]

    def position(self, pid: ParticipantId) -> int | None:
        """1-based place in the waiting room, or None if not waiting."""
        for index, queued in enumerate(self._queue, start=1):
            if queued == pid:
                return index
        return None

    def wait_reason(self) -> WaitReason:
        """Why anyone waiting now is waiting."""
        if self.active_session is None:
            return WaitReason.HOST_NOT_STARTED
        return WaitReason.AT_CAPACITY

    def in_call(self) -> list[Participant]:
        return [p for p in self._participants.values() if p.stage is Stage.IN_CALL]

    def occupancy(self) -> int:
        """Patients and guests in the call (the host does not count against capacity)."""
        return sum(1 for p in self.in_call() if not p.is_host)

    def host_in_call(self) -> bool:
        return any(p.is_host for p in self.in_call())

    # -- commands ------------------------------------------------------------------------

    def arrive(
        self,
        pid: ParticipantId,
        role: Role,
        *,
        name: str | None,
        subject: str | None,
        now: float,
        connection: str | None = None,
    ) -> list[Event]:
        """A participant connects on ``connection``. Someone already here keeps its place:
        a lost connection, or a live one taken over by a new connection, gives RECONNECTED;
        the same live connection again gives nothing. The caller decides next whether it
        waits or enters."""
        known = self._participants.get(pid)
        if known is not None:
            if known.role is not role:
                raise InvalidState(
                    f"cannot arrive as {pid}: already here as {known.role.value}",
                    participant=pid,
                )
            if known.connected and connection in (None, known.connection):
                return []
            return self._emit(
                Event(K.RECONNECTED, now, actor=pid, participant=pid, connection=connection)
            )
        return self._emit(
            Event(
                K.ARRIVED,
                now,
                actor=pid,
                participant=pid,
                role=role,
                name=name,
                subject=subject,
                connection=connection,
            )
        )

    def knock(self, pid: ParticipantId, now: float) -> list[Event]:
        """Put a participant in the waiting room, at the end."""
        participant = self.get(pid)
        if participant.stage is not Stage.LOBBY:
            raise InvalidState(
                f"cannot knock for {pid}: participant is {participant.stage.value}",
                participant=pid,
            )
        if participant.is_host:
            raise InvalidState(f"cannot knock for {pid}: the host does not wait", participant=pid)
        reason = self.wait_reason()
        return self._emit(Event(K.KNOCKED, now, actor=pid, participant=pid, reason=reason))

    def cancel_knock(self, pid: ParticipantId, now: float) -> list[Event]:
        """Take a participant out of the waiting room; it stays connected."""
        self._expect_waiting(pid, "cancel the knock of")
        return self._emit(
            Event(K.KNOCK_CANCELLED, now, actor=pid, participant=pid, cause=ExitCause.CANCELLED)
        )

    def enter(self, pid: ParticipantId, now: float) -> list[Event]:
        """Let a participant into the started call without a host decision (join now)."""
        session = self._expect_session(f"cannot let {pid} in")
        participant = self.get(pid)
        if participant.stage is Stage.IN_CALL:
            raise InvalidState(f"cannot let {pid} in: already in the call", participant=pid)
        kind = K.CLINICIAN_ENTERED if participant.is_host else K.PATIENT_ENTERED
        return self._emit(Event(kind, now, actor=pid, participant=pid, session=session.id))

    def admit(self, actor: ParticipantId, pid: ParticipantId, now: float) -> list[Event]:
        """The host lets a waiting participant in, whatever the capacity."""
        session = self._expect_session(f"cannot admit {pid}")
        self.get(actor)
        self._expect_waiting(pid, "admit")
        return self._emit(
            Event(K.ADMITTED, now, actor=actor, participant=pid, session=session.id),
            Event(K.PATIENT_ENTERED, now, actor=actor, participant=pid, session=session.id),
        )

    def admit_all(self, actor: ParticipantId, now: float) -> list[Event]:
        """Admit everyone waiting, in arrival order."""
        self._expect_session("cannot admit all")
        self.get(actor)
        events: list[Event] = []
        for pid in list(self._queue):
            events += self.admit(actor, pid, now)
        return events

    def deny(
        self, actor: ParticipantId, pid: ParticipantId, message: str | None, now: float
    ) -> list[Event]:
        """The host turns a waiting participant away; it leaves the room."""
        self.get(actor)
        self._expect_waiting(pid, "deny")
        return self._emit(
            Event(K.DENIED, now, actor=actor, participant=pid, message=message),
            Event(K.DEPARTED, now, actor=actor, participant=pid, cause=ExitCause.DENIED),
        )

    def start(
        self,
        actor: ParticipantId,
        *,
        session: SessionId,
        appointment: AppointmentId | None,
        capacity: int,
        now: float,
    ) -> list[Event]:
        """The host starts the call, or re-enters the call it started (Rejoin)."""
        host = self.get(actor)
        if not host.is_host:
            raise InvalidState(f"cannot start with {actor}: not the host", participant=actor)
        if host.stage is Stage.IN_CALL:
            raise InvalidState(f"cannot start: {actor} is already in the call", participant=actor)
        if capacity < 1:
            raise InvalidState(f"cannot start with capacity {capacity}: must be at least 1")
        events: list[Event] = []
        if self.active_session is None:
            events += self._emit(
                Event(
                    K.SESSION_STARTED,
                    now,
                    actor=actor,
                    session=session,
                    appointment=appointment,
                    capacity=capacity,
                )
            )
        return events + self.enter(actor, now)

    def end(self, actor: ParticipantId, now: float) -> list[Event]:
        """The host ends the call: everyone in it goes back to the lobby."""
        session = self._expect_session("cannot end the call")
        self.get(actor)
        events: list[Event] = []
        for participant in self.in_call():
            events += self._exit_call(participant, ExitCause.SESSION_ENDED, actor, now)
        return events + self._emit(Event(K.SESSION_ENDED, now, actor=actor, session=session.id))

    def leave(
        self, pid: ParticipantId, now: float, *, cause: ExitCause = ExitCause.LEFT
    ) -> list[Event]:
        """A participant leaves the room: out of the waiting room or the call, then gone."""
        participant = self.get(pid)
        actor = None if cause is ExitCause.TIMED_OUT else pid
        events: list[Event] = []
        if participant.stage is Stage.WAITING:
            events += self._emit(
                Event(K.KNOCK_CANCELLED, now, actor=actor, participant=pid, cause=cause)
            )
        elif participant.stage is Stage.IN_CALL:
            events += self._exit_call(participant, cause, actor, now)
        return events + self._emit(
            Event(K.DEPARTED, now, actor=actor, participant=pid, cause=cause)
        )

    def disconnect(
        self, pid: ParticipantId, now: float, connection: str | None = None
    ) -> list[Event]:
        """The participant's ``connection`` is gone; it keeps its place until `expire`.
        Nothing happens if a newer connection has taken over (any node may report a
        connection lost late, e.g. when cleaning up after a dead node)."""
        participant = self.get(pid)
        if not participant.connected or connection not in (None, participant.connection):
            return []
        return self._emit(Event(K.DISCONNECTED, now, participant=pid, connection=connection))

    def expire(self, now: float, grace: float) -> list[Event]:
        """Remove everyone whose connection has been gone for ``grace`` seconds or more."""
        events: list[Event] = []
        for participant in list(self._participants.values()):
            since = participant.absent_since
            if since is not None and now - since >= grace:
                events += self.leave(participant.id, now, cause=ExitCause.TIMED_OUT)
        return events

    # -- the fold ------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Fold one event into the state. Events come from this class's commands or from
        a stored stream of them; the caller must apply them in order."""
        pid = event.participant
        self.version += 1
        if event.kind is K.SESSION_STARTED:
            assert event.session is not None
            assert event.capacity is not None
            self.session = Session(event.session, event.appointment, event.capacity, event.at)
            return
        if event.kind is K.SESSION_ENDED:
            assert self.session is not None
            self.session = replace(self.session, ended_at=event.at)
            return
        assert pid is not None
        if event.kind is K.ARRIVED:
            assert event.role is not None
            self._participants[pid] = Participant(
                pid, event.role, event.name, event.subject, connection=event.connection
            )
        elif event.kind is K.DEPARTED:
            del self._participants[pid]
            self._queue.pop(pid, None)
        elif event.kind is K.KNOCKED:
            self._set(pid, stage=Stage.WAITING, knocked_at=event.at)
            self._queue[pid] = None
        elif event.kind in _LEAVES_QUEUE:
            self._queue.pop(pid, None)
            stage = Stage.IN_CALL if event.kind in _ENTERS_CALL else Stage.LOBBY
            self._set(pid, stage=stage, knocked_at=None)
        elif event.kind in _EXITS_CALL:
            self._set(pid, stage=Stage.LOBBY)
        elif event.kind is K.DISCONNECTED:
            self._set(pid, absent_since=event.at)
        elif event.kind is K.RECONNECTED:
            self._set(pid, absent_since=None, connection=event.connection)
        # ADMITTED and DENIED are decisions; the entry or departure that follows them
        # carries the change of state.

    def apply_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.apply(event)

    # -- helpers -------------------------------------------------------------------------

    def _emit(self, *events: Event) -> list[Event]:
        for event in events:
            self.apply(event)
        return list(events)

    def _set(self, pid: ParticipantId, **changes: object) -> None:
        self._participants[pid] = replace(self._participants[pid], **changes)  # type: ignore[arg-type]

    def _expect_session(self, doing: str) -> Session:
        session = self.active_session
        if session is None:
            raise SessionNotStarted(f"{doing}: the host has not started the call")
        return session

    def _expect_waiting(self, pid: ParticipantId, verb: str) -> Participant:
        participant = self.get(pid)
        if participant.stage is not Stage.WAITING:
            raise InvalidState(
                f"cannot {verb} {pid}: participant is not waiting",
                participant=pid,
                stage=participant.stage.value,
            )
        return participant

    def _exit_call(
        self, participant: Participant, cause: ExitCause, actor: ParticipantId | None, now: float
    ) -> list[Event]:
        kind = K.CLINICIAN_EXITED if participant.is_host else K.PATIENT_EXITED
        assert self.session is not None  # nobody is in a call that never started
        return self._emit(
            Event(
                kind,
                now,
                actor=actor,
                participant=participant.id,
                cause=cause,
                session=self.session.id,
            )
        )


_ENTERS_CALL = frozenset({K.PATIENT_ENTERED, K.CLINICIAN_ENTERED})
_LEAVES_QUEUE = _ENTERS_CALL | {K.KNOCK_CANCELLED}
_EXITS_CALL = frozenset({K.PATIENT_EXITED, K.CLINICIAN_EXITED})
