"""The room state machine: a persistent room, its waiting room and its current call.

`Room` is sans-I/O. Commands (`arrive`, `knock`, `admit`, ...) take ``now``, check the
room's rules, and return the events they produced, already applied; a command that raises
has changed nothing. `apply` is the only mutator, so a room rebuilt by applying a stored
event stream is identical to the room that produced it.

Who may do what, and whether a newcomer may enter at once, is policy and lives in
`admission`; this module keeps the structural invariants: one entry per participant, the
waiting room in arrival order, nobody in the call without a started session.

The counts the entry rules and the call status ask for on every change (patients and
guests in the call, hosts in the call, who is present for which appointment) are kept
as events are applied, so answering them costs the same in a room of ten or of a thousand.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from rooms.errors import InvalidState, SessionNotStarted, UnknownParticipant
from rooms.events import Event, EventKind, ExitCause, WaitReason
from rooms.ids import AppointmentId, ParticipantId, RoomId, SessionId
from rooms.participants import NO_BOOKING, Booking, Notice, Participant, Session, Stage
from rooms.roles import Role

K = EventKind
SNAPSHOT_FORMAT = 2  # 2: pseudonymous (no names), appointments per participant and call
ENDED_KEPT = 64  # appointments whose call ended that a room remembers (call status ENDED)


class Room:
    """State of one room, folded from its events."""

    def __init__(self, room_id: RoomId) -> None:
        self.id = room_id
        self.version = 0  # number of events applied
        self.session: Session | None = None  # the current call, or the last one
        self._participants: dict[ParticipantId, Participant] = {}
        self._queue: dict[ParticipantId, None] = {}  # insertion order is arrival order
        self._occupancy = 0  # patients and guests in the call
        self._hosts_in_call = 0
        self._hosts: dict[ParticipantId, None] = {}  # the hosts in the room, at any stage
        self._absent = 0  # participants whose connection is lost
        self._present: Counter[AppointmentId | None] = Counter()  # patients and guests
        # Appointments whose call ended, with when (the latest ENDED_KEPT, oldest first).
        self._ended: dict[AppointmentId | None, float] = {}
        self.notice: Notice | None = None  # the host's message to everyone, until replaced
        self._notices: dict[ParticipantId, Notice] = {}  # ...and to one participant

    def clone(self) -> Room:
        """An independent copy to try a command on (participants are immutable values, so
        copying the maps is enough)."""
        other = Room(self.id)
        other.version = self.version
        other.session = self.session
        other._participants = dict(self._participants)
        other._queue = dict(self._queue)
        other._occupancy = self._occupancy
        other._hosts_in_call = self._hosts_in_call
        other._hosts = dict(self._hosts)
        other._absent = self._absent
        other._present = self._present.copy()
        other._ended = dict(self._ended)
        other.notice = self.notice
        other._notices = dict(self._notices)
        return other

    def snapshot(self) -> dict[str, Any]:
        """The state as primitives, for storage; `from_snapshot` restores it."""
        session = self.session
        return {
            "format": SNAPSHOT_FORMAT,
            "room": self.id,
            "version": self.version,
            "session": None
            if session is None
            else [session.id, session.appointment, session.capacity, session.started_at,
                  session.ended_at, session.closes_at, session.host_away_since,
                  None if session.end_cause is None else session.end_cause.value],
            "participants": [
                [p.id, p.role.value, p.stage.value, p.knocked_at, p.absent_since,
                 p.connection, p.booking.appointment, p.booking.starts_at, p.booking.ends_at,
                 p.booking.capacity, p.join_now]
                for p in self._participants.values()
            ],
            "queue": list(self._queue),
            "ended": [[appointment, at] for appointment, at in self._ended.items()],
            "notices": [
                [pid, n.text, n.at, n.version]
                for pid, n in [(None, self.notice), *self._notices.items()]
                if n is not None
            ],
        }  # fmt: skip

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> Room:
        """Restore a room from `snapshot` output (trusted storage: anything else, a snapshot
        of another format included, raises KeyError, TypeError or ValueError)."""
        if data.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(
                f"room snapshot format {data.get('format')!r} is not {SNAPSHOT_FORMAT}"
            )
        room = cls(RoomId(data["room"]))
        room.version = int(data["version"])
        if data["session"] is not None:
            sid, appointment, capacity, started, ended, closes, away, cause = data["session"]
            room.session = Session(
                SessionId(sid), appointment, capacity, started, ended, closes, away,
                None if cause is None else ExitCause(cause),
            )  # fmt: skip
        for record in data["participants"]:
            pid, role, stage, knocked, absent, conn = record[:6]
            booking = Booking(*record[6:10])
            room._store(
                Participant(
                    pid, Role(role), Stage(stage), knocked, absent, conn,
                    NO_BOOKING if booking == NO_BOOKING else booking, bool(record[10]),
                )
            )  # fmt: skip
        room._queue = {ParticipantId(pid): None for pid in data["queue"]}
        room._ended = {appointment: float(at) for appointment, at in data["ended"]}
        for pid, text, at, version in data.get("notices", ()):  # none in older snapshots
            if pid is None:
                room.notice = Notice(text, at, version)
            else:
                room._notices[ParticipantId(pid)] = Notice(text, at, version)
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

    def queued(self, pid: ParticipantId) -> bool:
        """Whether ``pid`` is in the waiting room (constant time)."""
        return pid in self._queue

    def last_queued(self, count: int) -> dict[ParticipantId, int]:
        """The last ``count`` in the waiting room, with their places (time O(count))."""
        size = len(self._queue)
        out: dict[ParticipantId, int] = {}
        for place, pid in zip(range(size, size - count, -1), reversed(self._queue), strict=False):
            out[pid] = place
        return out

    def position(self, pid: ParticipantId) -> int | None:
        """1-based place in the waiting room, or None if not waiting."""
        for index, queued in enumerate(self._queue, start=1):
            if queued == pid:
                return index
        return None

    def in_call(self) -> list[Participant]:
        return [p for p in self._participants.values() if p.stage is Stage.IN_CALL]

    def occupancy(self) -> int:
        """Patients and guests in the call (the host does not count against capacity)."""
        return self._occupancy

    def hosts(self) -> Iterable[ParticipantId]:
        """The hosts in the room (connected or not, at any stage), without a scan."""
        return self._hosts.keys()

    def host_in_call(self) -> bool:
        """Whether a host is in the call: connected, or within its grace period (a host
        whose grace runs out is removed from the room)."""
        return self._hosts_in_call > 0

    def absent(self) -> int:
        """Participants whose connection is lost (each within its grace period)."""
        return self._absent

    def present(self, appointment: AppointmentId | None = None) -> int:
        """Patients and guests in the room, at any stage, whose links are for
        ``appointment`` (None: every patient and guest, whatever their links say)."""
        if appointment is None:
            return self._present.total()
        return self._present[appointment]

    def notice_for(self, pid: ParticipantId) -> Notice | None:
        """The host's latest message that ``pid`` is to see: the newer of the one to
        everyone and the one to it alone."""
        own = self._notices.get(pid)
        if own is None or (self.notice is not None and self.notice.version > own.version):
            return self.notice
        return own

    def ended(self, appointment: AppointmentId | None) -> bool:
        """Whether a call for ``appointment`` (None: an ad-hoc call) has ended here (among
        the last `ENDED_KEPT` appointments whose call ended)."""
        return appointment in self._ended

    # -- commands ------------------------------------------------------------------------

    def arrive(
        self,
        pid: ParticipantId,
        role: Role,
        *,
        now: float,
        connection: str | None = None,
        booking: Booking = NO_BOOKING,
        join_now: bool = False,
    ) -> list[Event]:
        """A participant connects on ``connection``, with what its link says of its
        appointment (``booking``) and whether its client confirms its own entry
        (``join_now``). Someone already here keeps its place (and its booking): a lost
        connection, or a live one taken over by a new connection, gives RECONNECTED; the
        same live connection again gives nothing. The caller decides next whether it waits
        or enters."""
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
                Event(
                    K.RECONNECTED,
                    now,
                    actor=pid,
                    participant=pid,
                    connection=connection,
                    join_now=join_now or None,
                )
            )
        return self._emit(
            Event(
                K.ARRIVED,
                now,
                actor=pid,
                participant=pid,
                role=role,
                connection=connection,
                appointment=booking.appointment,
                starts_at=booking.starts_at,
                ends_at=booking.ends_at,
                capacity=booking.capacity,
                join_now=join_now or None,
            )
        )

    def knock(self, pid: ParticipantId, now: float, reason: WaitReason) -> list[Event]:
        """Put a participant in the waiting room, at the end; ``reason`` is why it waits
        (the policy's decision), kept in the room's activity."""
        participant = self.get(pid)
        if participant.stage is not Stage.LOBBY:
            raise InvalidState(
                f"cannot knock for {pid}: participant is {participant.stage.value}",
                participant=pid,
            )
        if participant.is_host:
            raise InvalidState(f"cannot knock for {pid}: the host does not wait", participant=pid)
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

    def admit_all(
        self, actor: ParticipantId, now: float, who: Iterable[ParticipantId] | None = None
    ) -> list[Event]:
        """Admit ``who`` (everyone waiting by default), in arrival order; each must be
        waiting."""
        self._expect_session("cannot admit all")
        self.get(actor)
        events: list[Event] = []
        for pid in list(self._queue) if who is None else list(who):
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
        closes_at: float | None = None,
    ) -> list[Event]:
        """The host starts a call for ``appointment`` (None: an ad-hoc call), which ends by
        itself at ``closes_at`` if given, or re-enters the active call (Rejoin)."""
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
                    closes_at=closes_at,
                )
            )
        return events + self.enter(actor, now)

    def end(
        self,
        actor: ParticipantId | None,
        now: float,
        cause: ExitCause = ExitCause.SESSION_ENDED,
    ) -> list[Event]:
        """End the call: everyone in it goes back to the lobby. ``actor`` is the host who
        ended it, or None when the call ends by itself (``cause`` says why)."""
        session = self._expect_session("cannot end the call")
        if actor is not None:
            self.get(actor)
        events: list[Event] = []
        for participant in self.in_call():
            events += self._exit_call(participant, cause, actor, now)
        recorded = None if cause is ExitCause.SESSION_ENDED else cause
        return events + self._emit(
            Event(K.SESSION_ENDED, now, actor=actor, session=session.id, cause=recorded)
        )

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

    def notify(
        self, actor: ParticipantId, text: str, now: float, to: ParticipantId | None = None
    ) -> list[Event]:
        """``actor`` leaves a message (``text``; "" takes it back) for ``to`` or, without
        one, for everyone; it replaces the previous one for the same people."""
        self.get(actor)
        if to is not None:
            self.get(to)
        return self._emit(Event(K.NOTICE, now, actor=actor, participant=to, message=text))

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
            self.session = Session(
                event.session, event.appointment, event.capacity, event.at,
                closes_at=event.closes_at,
                host_away_since=None if self._hosts_in_call else event.at,
            )  # fmt: skip
            return
        if event.kind is K.NOTICE:
            assert event.message is not None
            notice = Notice(event.message, event.at, self.version) if event.message else None
            if pid is None:
                self.notice = notice
            elif notice is None:
                self._notices.pop(pid, None)
            else:
                self._notices[pid] = notice
            return
        if event.kind is K.SESSION_ENDED:
            assert self.session is not None
            self.session = replace(
                self.session, ended_at=event.at, end_cause=event.cause, host_away_since=None
            )
            self._ended.pop(self.session.appointment, None)
            self._ended[self.session.appointment] = event.at
            if len(self._ended) > ENDED_KEPT:
                del self._ended[next(iter(self._ended))]
            return
        assert pid is not None
        if event.kind is K.ARRIVED:
            assert event.role is not None
            booking = Booking(event.appointment, event.starts_at, event.ends_at, event.capacity)
            self._store(
                Participant(
                    pid, event.role, connection=event.connection,
                    booking=NO_BOOKING if booking == NO_BOOKING else booking,
                    join_now=bool(event.join_now),
                ),
                at=event.at,
            )  # fmt: skip
        elif event.kind is K.DEPARTED:
            self._forget(pid, event.at)
            self._queue.pop(pid, None)
            self._notices.pop(pid, None)
        elif event.kind is K.KNOCKED:
            self._set(pid, event.at, stage=Stage.WAITING, knocked_at=event.at)
            self._queue[pid] = None
        elif event.kind in _LEAVES_QUEUE:
            self._queue.pop(pid, None)
            stage = Stage.IN_CALL if event.kind in _ENTERS_CALL else Stage.LOBBY
            self._set(pid, event.at, stage=stage, knocked_at=None)
        elif event.kind in _EXITS_CALL:
            self._set(pid, event.at, stage=Stage.LOBBY)
        elif event.kind is K.DISCONNECTED:
            self._set(pid, event.at, absent_since=event.at)
        elif event.kind is K.RECONNECTED:
            self._set(
                pid,
                event.at,
                absent_since=None,
                connection=event.connection,
                join_now=bool(event.join_now),
            )
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

    def _set(self, pid: ParticipantId, at: float | None = None, **changes: object) -> None:
        self._store(replace(self._participants[pid], **changes), at=at)  # type: ignore[arg-type]

    def _store(self, new: Participant, at: float | None = None) -> None:
        """Put ``new`` in place of its old record, keeping the counts true. ``at`` is when
        (None while restoring a snapshot, whose session already says since when no host
        is in the call)."""
        old = self._participants.get(new.id)
        self._participants[new.id] = new
        self._count(old, -1)
        self._count(new, +1)
        if at is not None:
            self._host_moved(at)

    def _forget(self, pid: ParticipantId, at: float) -> None:
        self._count(self._participants.pop(pid), -1)
        self._host_moved(at)

    def _count(self, participant: Participant | None, sign: int) -> None:
        if participant is None:
            return
        in_call = participant.stage is Stage.IN_CALL
        self._absent += sign * (participant.absent_since is not None)
        if participant.is_host:
            self._hosts_in_call += sign * in_call
            if sign > 0:
                self._hosts[participant.id] = None
            else:
                self._hosts.pop(participant.id, None)
            return
        self._occupancy += sign * in_call
        self._present[participant.booking.appointment] += sign
        if not self._present[participant.booking.appointment]:
            del self._present[participant.booking.appointment]

    def _host_moved(self, at: float) -> None:
        """Keep the active session's ``host_away_since`` true: the time since when no host
        has been in the call, or None while one is."""
        session = self.session
        if session is None or not session.active:
            return
        away = session.host_away_since
        if self._hosts_in_call and away is not None:
            self.session = replace(session, host_away_since=None)
        elif not self._hosts_in_call and away is None:
            self.session = replace(session, host_away_since=at)

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
