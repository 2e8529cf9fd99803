"""What each participant is told after a room changes.

Two kinds of message leave the server when events are applied:
- notices about one participant, from the events themselves: ``admitted`` (it entered the
  call), ``denied``, ``ended`` (the host ended the call it was in);
- state, sent whenever the participant's view of it changed: ``status`` (call status),
  ``waiting`` (its reason and place), ``roster`` (who is in the call), ``waiting_list``
  (hosts only). `View` remembers what was last sent, so a change is sent once.

The work of one change is linear in the room's size, not quadratic: the events are grouped
by participant once (`Notices`), and a `Snapshot` builds each payload that several
participants receive (the status, the roster, the waiting list, the lobby's ``waiting``)
once, as a `Shared` message. A shared message equal to the one built for the room's
previous change is that same object, so telling whether a participant has seen it is an
identity check, and `frame` encodes a shared message once per codec for all its receivers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from admission.estimate import expected_starts
from admission.policy import Decision, Verdict, decide
from admission.window import JoinWindow, WindowState
from rooms.events import Event, EventKind, ExitCause
from rooms.ids import AppointmentId, ParticipantId
from rooms.participants import Participant, Stage
from rooms.roles import Role
from rooms.room import Room
from rooms.status import CallStatus, call_status
from signalling.wire import Codec, Message


@dataclass(slots=True)
class View:
    """What one connection was last told of each kind of state, and the appointment its
    join token is for (with its join window), which its call status is worked out for."""

    sent: dict[str, object] = field(default_factory=dict)
    appointment: AppointmentId | None = None
    window: JoinWindow | None = None


class Shared(dict[str, Any]):
    """A message that goes, unchanged, to several participants. Never change one after it
    is built: its frames are kept (`frame`)."""

    __slots__ = ("frames",)

    def __init__(self, fields: Message) -> None:
        super().__init__(fields)
        self.frames: dict[Codec, str | bytes] = {}


def frame(message: Message, codec: Codec) -> str | bytes:
    """``message`` encoded with ``codec``; a `Shared` one is encoded once per codec."""
    if not isinstance(message, Shared):
        return codec.encode(message)
    encoded = message.frames.get(codec)
    if encoded is None:
        encoded = message.frames[codec] = codec.encode(message)
    return encoded


class Snapshot:
    """The room's shared payloads after a change, built on first use.

    ``shared`` holds the shared messages built for the room's previous change (and is
    updated): a payload that has not changed is reused as the same object."""

    def __init__(
        self,
        room: Room,
        *,
        now: float,
        shared: dict[str, Shared] | None = None,
        names: Mapping[ParticipantId, str] | None = None,
    ) -> None:
        """``names`` are the display names of the room's people (the room has none)."""
        self.room = room
        self.names: Mapping[ParticipantId, str] = {} if names is None else names
        self.now = now
        self.shared: dict[str, Shared] = {} if shared is None else shared
        self._lobby: dict[tuple[Role, AppointmentId | None, bool], Shared] = {}
        self._status: dict[tuple[AppointmentId | None, float | None], Shared] = {}

    def status_message(self, view: View) -> Shared:
        """The ``status`` message for ``view``'s appointment, built once per appointment:
        one room holds the people of several appointments (the clinician's persistent
        room), and whether the call has ended, or the window closed, depends on which."""
        window = view.window
        key = (view.appointment, None if window is None else window.closes_at)
        message = self._status.get(key)
        if message is None:
            status = call_status_for(self.room, view, self.now)
            message = self._status[key] = self._reuse(
                f"status {view.appointment}",
                {"type": "status", "call_status": status.value},
            )
        return message

    @cached_property
    def roster(self) -> list[dict[str, object]]:
        return [self._person(p) for p in self.room.in_call()]

    @cached_property
    def waiting_list(self) -> list[dict[str, object]]:
        """The waiting room for the host, in arrival order: who, for which appointment
        (and when it starts), and why each one waits."""
        out: list[dict[str, object]] = []
        for i, p in enumerate(self.room.waiting(), start=1):
            verdict = decide(self.room, p)
            out.append(
                {
                    **self._person(p),
                    "reason": verdict.reason.value,
                    "position": i,
                    "since": p.knocked_at,
                    "appointment_id": p.appointment,
                    "starts_at": p.booking.starts_at,
                    "can_join": verdict.decision is Decision.JOIN_NOW,
                }
            )
        return out

    @cached_property
    def expected(self) -> dict[AppointmentId, float]:
        """When each appointment someone waits for is expected to start (the estimate)."""
        return expected_starts(self.room, self.now)

    def notice_message(self, participant: Participant) -> Message | None:
        """The host's message ``participant`` is to see (hosts: the one to everyone)."""
        room = self.room
        notice = room.notice if participant.is_host else room.notice_for(participant.id)
        if notice is None:
            return None
        built = {"type": "notice", "text": notice.text, "at": notice.at}
        if notice is room.notice:  # the same for everyone: built once
            return self._reuse("notice", built | {"personal": False})
        return built | {"personal": True}

    @cached_property
    def positions(self) -> dict[ParticipantId, int]:
        """Places in the waiting room, from 1."""
        return {p.id: i for i, p in enumerate(self.room.waiting(), start=1)}

    @cached_property
    def roster_message(self) -> Shared:
        return self._reuse("roster", {"type": "roster", "participants": self.roster})

    @cached_property
    def waiting_list_message(self) -> Shared:
        return self._reuse("waiting_list", {"type": "waiting_list", "entries": self.waiting_list})

    def waiting(self, participant: Participant) -> Message | None:
        """The ``waiting`` message for a patient or guest not in the call, else None: why
        it is not in the call (for its own appointment), its place in the waiting room,
        whether it may ask to join, and whether it may join now (a Join now client)."""
        if participant.is_host or participant.stage is Stage.IN_CALL:
            return None
        expected = self.expected.get(participant.appointment) if participant.appointment else None
        if participant.stage is Stage.WAITING:
            return _waiting(
                decide(self.room, participant),
                self.positions.get(participant.id),
                False,
                expected,
            )
        # Everyone in the lobby with the same role and link is told the same: built once.
        key = (participant.role, participant.appointment, participant.join_now)
        message = self._lobby.get(key)
        if message is None:
            verdict = decide(self.room, participant)
            built = _waiting(verdict, None, verdict.decision is not Decision.WAIT, expected)
            message = self._lobby[key] = self._reuse(
                f"waiting:{participant.role.value}:{participant.appointment}:"
                f"{participant.join_now}",
                built,
            )
        return message

    def _person(self, p: Participant) -> dict[str, object]:
        # "connected" lets peers see a participant drop (and come back) within its grace
        return {
            "participant_id": p.id,
            "role": p.role.value,
            "name": self.names.get(p.id),
            "connected": p.connected,
        }

    def _reuse(self, key: str, built: Message) -> Shared:
        previous = self.shared.get(key)
        if previous is not None and previous == built:
            return previous
        message = self.shared[key] = Shared(built)
        return message


def _waiting(
    verdict: Verdict, position: int | None, can_ask: bool, expected_at: float | None
) -> Message:
    return {
        "type": "waiting",
        "reason": verdict.reason.value,
        "position": position,
        "can_ask": can_ask,
        "can_join": verdict.decision is Decision.JOIN_NOW,
        "expected_at": expected_at,
    }


# Sent once to someone who was shown a notice the host then took back.
NO_NOTICE = Shared({"type": "notice", "text": None, "at": None, "personal": False})


def call_status_for(room: Room, view: View, now: float) -> CallStatus:
    """The call status for the appointment (and join window) of ``view``'s token."""
    closed = view.window is not None and view.window.state(now) is WindowState.CLOSED
    return call_status(room, appointment=view.appointment, window_closed=closed)


def notices(pid: ParticipantId, events: Iterable[Event]) -> list[Message]:
    """Messages about ``pid`` itself, from the events of one command."""
    out: list[Message] = []
    admitted_by: ParticipantId | None = None
    for event in events:
        if event.participant != pid:
            continue
        kind = event.kind
        if kind is EventKind.ADMITTED:
            admitted_by = event.actor
        elif kind in (EventKind.PATIENT_ENTERED, EventKind.CLINICIAN_ENTERED):
            out.append({"type": "admitted", "session_id": event.session, "by": admitted_by})
        elif kind is EventKind.DENIED:
            out.append({"type": "denied", "message": event.message})
        elif kind in (EventKind.PATIENT_EXITED, EventKind.CLINICIAN_EXITED):
            reason = ENDED_BECAUSE.get(event.cause) if event.cause is not None else None
            if reason is not None:
                out.append({"type": "ended", "session_id": event.session, "reason": reason})
    return out


# Why a call ended, as ``ended.reason`` says it: the host ended it, or it ended by itself.
ENDED_BECAUSE = {
    ExitCause.SESSION_ENDED: "host_ended",
    ExitCause.HOST_ABSENT: "host_absent",
    ExitCause.WINDOW_CLOSED: "window_closed",
}


class Notices:
    """The notices of one command's events, participant by participant: the events are
    grouped once, so telling N participants costs O(events + N), not O(events x N)."""

    def __init__(self, events: Iterable[Event]) -> None:
        self._events: dict[ParticipantId, list[Event]] = {}
        for event in events:
            if event.participant is not None:
                self._events.setdefault(event.participant, []).append(event)

    def __iter__(self) -> Iterator[tuple[ParticipantId, list[Message]]]:
        """(participant, its notices) for every participant the events are about."""
        for pid, events in self._events.items():
            messages = notices(pid, events)
            if messages:
                yield pid, messages


def updates(view: View, pid: ParticipantId, snapshot: Snapshot) -> list[Message]:
    """State messages for ``pid`` whose content changed since ``view`` last saw them."""
    participant = snapshot.room.participants.get(pid)
    if participant is None:
        return []
    sees_call = participant.is_host or participant.stage is Stage.IN_CALL
    out: list[Message] = []
    sent = view.sent
    _update(sent, out, "status", snapshot.status_message(view))
    _update(sent, out, "waiting", snapshot.waiting(participant))
    _update(sent, out, "roster", snapshot.roster_message if sees_call else None)
    _update(
        sent, out, "waiting_list", snapshot.waiting_list_message if participant.is_host else None
    )
    notice = snapshot.notice_message(participant)
    if notice is not None or sent.get("notice") is not None:
        _update(sent, out, "notice", notice or NO_NOTICE)
    return out


def _update(sent: dict[str, object], out: list[Message], key: str, message: Message | None) -> None:
    if message is not None:
        previous = sent.get(key)
        if previous is not message and previous != message:
            out.append(message)
    sent[key] = message
