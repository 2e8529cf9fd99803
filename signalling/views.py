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

The two lists, ``waiting_list`` and ``roster``, are kept between changes (`Listing`), each
with a version, and a client that asked for them (the ``deltas`` feature) is sent only what
changed: ``waiting_list_delta`` and ``roster_delta`` (PROTOCOL.md §6.8). A change that only
brings people without an appointment into the waiting room, or changes their connection
(`quiet_change`: a thousand guests arriving), changes nothing for anyone but them and the
hosts: their entries are worked out, and only they and the hosts are told. The work of such
a change does not grow with the room.
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

DELTAS = "deltas"  # the hello feature: send the lists as deltas (§6.8)


@dataclass(slots=True)
class View:
    """What one connection was last told of each kind of state, and the appointment its
    join token is for (with its join window), which its call status is worked out for.
    ``versions`` are the versions of the lists (`Listing`) it was last sent (None: it does
    not see that list); with ``deltas`` it is sent what changed in them, not the lists."""

    sent: dict[str, object] = field(default_factory=dict)
    appointment: AppointmentId | None = None
    window: JoinWindow | None = None
    deltas: bool = False
    versions: dict[str, int | None] = field(default_factory=dict)


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


Entry = dict[str, Any]  # one participant's entry in a list (no position: it is the order)


class Listing:
    """A list several participants see (``waiting_list``: entries, ``roster``:
    participants), kept between the room's changes: the entries by participant, in order,
    and a version that goes up by one with each change. ``delta`` is the change from the
    version before, as a message (None when it cannot be said as one: an entry moved)."""

    __slots__ = ("_full", "delta", "entries", "field", "kind", "version")

    def __init__(self, kind: str, field: str) -> None:
        self.kind, self.field = kind, field
        self.entries: dict[ParticipantId, Entry] = {}
        self.version = 0
        self.delta: Shared | None = None
        self._full: Shared | None = None

    def full(self) -> Shared:
        """The whole list, as of this version (built once per version)."""
        if self._full is None or self._full["version"] != self.version:
            items: list[Entry] = list(self.entries.values())
            if self.kind == "waiting_list":
                items = [{**e, "position": i} for i, e in enumerate(items, start=1)]
            self._full = Shared({"type": self.kind, self.field: items, "version": self.version})
        return self._full

    def replace(self, new: dict[ParticipantId, Entry]) -> None:
        """The list is now ``new`` (in order): a new version if anything changed."""
        old = self.entries
        removed = [pid for pid in old if pid not in new]
        added: list[Entry] = []
        changed: list[Entry] = []
        in_order = True
        for pid, entry in new.items():
            before = old.get(pid)
            if before is None:
                added.append(entry)
            elif added:
                in_order = False  # someone already listed comes after a newcomer
            elif before != entry:
                changed.append(entry)
        if in_order and [p for p in old if p in new] != [p for p in new if p in old]:
            in_order = False  # someone moved
        if not (removed or added or changed) and in_order:
            return
        self.entries = new
        self._bump(removed, changed, added, in_order)

    def update(self, changes: Iterable[tuple[ParticipantId, Entry | None]]) -> None:
        """Only these entries changed (None: gone); a newcomer goes at the end."""
        removed: list[ParticipantId] = []
        added: list[Entry] = []
        changed: list[Entry] = []
        entries = self.entries
        for pid, entry in changes:
            before = entries.get(pid)
            if entry is None:
                if before is not None:
                    del entries[pid]
                    removed.append(pid)
            elif before is None:
                entries[pid] = entry
                added.append(entry)
            elif before != entry:
                entries[pid] = entry
                changed.append(entry)
        if removed or added or changed:
            self._bump(removed, changed, added, True)

    def _bump(
        self, removed: list[ParticipantId], changed: list[Entry], added: list[Entry], ok: bool
    ) -> None:
        self.version += 1
        self.delta = (
            Shared(
                {
                    "type": f"{self.kind}_delta",
                    "version": self.version,
                    "removed": removed,
                    "changed": changed,
                    "added": added,
                }
            )
            if ok
            else None
        )


# What a change may be to be `quiet_change`: about people who stay out of the call.
_QUIET = frozenset({EventKind.ARRIVED, EventKind.KNOCKED, EventKind.DISCONNECTED,
                    EventKind.RECONNECTED})  # fmt: skip


def signature(room: Room) -> tuple[object, ...]:
    """What everyone's entry rule and call status depend on besides their own record
    (`admission.policy.decide`, `rooms.status.call_status`): the active call, whether a
    host is in it, the occupancy, whether any patient or guest is here, the notice."""
    session = room.active_session
    return (
        None if session is None else (session.id, session.appointment, session.capacity),
        room.host_in_call(),
        room.occupancy(),
        room.present() > 0,
        room.notice,
    )


def quiet_change(room: Room, events: Iterable[Event]) -> list[ParticipantId] | None:
    """The participants ``events`` (just applied to ``room``) are about, in order, if the
    change tells nobody else anything new except the hosts (what is in the waiting list):
    patients and guests without an appointment who arrive, wait at the end of the queue,
    or lose or get back their connection, and are not in the call. None for any other
    change (then everyone's view is looked at). The caller checks `signature` too."""
    touched: dict[ParticipantId, None] = {}
    for event in events:
        pid = event.participant
        if event.kind not in _QUIET or pid is None:
            return None
        participant = room.participants.get(pid)
        if (
            participant is None
            or participant.is_host
            or participant.stage is Stage.IN_CALL
            or participant.booking.appointment is not None
        ):
            return None
        touched[pid] = None
    return list(touched)


class Lists:
    """A room's two lists between changes, and what they were last worked out on: the
    room's version and `signature`."""

    __slots__ = ("at", "roster", "signature", "waiting")

    def __init__(self) -> None:
        self.waiting = Listing("waiting_list", "entries")
        self.roster = Listing("roster", "participants")
        self.at = -1  # the room version the lists are of (-1: work them out in full)
        self.signature: tuple[object, ...] | None = None

    def invalidate(self) -> None:
        """The room was replaced (a rebuild): work the lists out in full next time."""
        self.at = -1


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
        lists: Lists | None = None,
        events: list[Event] | None = None,
    ) -> None:
        """``names`` are the display names of the room's people (the room has none).
        ``lists`` are the room's lists as of the change before, and ``events`` the change
        (already applied to ``room``; None: not known, work the lists out in full)."""
        self.room = room
        self.names: Mapping[ParticipantId, str] = {} if names is None else names
        self.now = now
        self.shared: dict[str, Shared] = {} if shared is None else shared
        self.lists = Lists() if lists is None else lists
        self.quiet: list[ParticipantId] | None = None  # set by `_lists`: see quiet_change
        self._update_lists(events)
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

    def _update_lists(self, events: list[Event] | None) -> None:
        """Bring the lists up to this change: only the entries of a quiet change's people,
        if the lists are of the version just before it; else all of them."""
        room, lists = self.room, self.lists
        sign = signature(room)
        quiet = None
        if events is not None and lists.at == room.version - len(events):
            quiet = quiet_change(room, events) if sign == lists.signature else None
        if quiet is not None:
            queued = room.queued
            lists.waiting.update(
                (pid, self._waiting_entry(room.participants[pid]) if queued(pid) else None)
                for pid in quiet
            )
        else:
            lists.waiting.replace({p.id: self._waiting_entry(p) for p in room.waiting()})
            lists.roster.replace({p.id: self._person(p) for p in room.in_call()})
        self.quiet = quiet
        lists.at, lists.signature = room.version, sign

    def _waiting_entry(self, p: Participant) -> Entry:
        verdict = decide(self.room, p)
        return {
            **self._person(p),
            "reason": verdict.reason.value,
            "since": p.knocked_at,
            "appointment_id": p.appointment,
            "starts_at": p.booking.starts_at,
            "can_join": verdict.decision is Decision.JOIN_NOW,
        }

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
    def _tail(self) -> dict[ParticipantId, int]:
        return self.room.last_queued(len(self.quiet or ()))

    def position(self, pid: ParticipantId) -> int | None:
        """``pid``'s place in the waiting room, from 1: in constant time for the people of
        a quiet change at the end of the queue (newcomers), else from `positions`."""
        if not self.room.queued(pid):
            return None
        return self._tail.get(pid) or self.positions[pid]

    def listed(self, view: View, listing: Listing, sees: bool) -> Message | None:
        """What ``view`` is to be sent of ``listing`` now: the list, its delta, or None
        (it has this version, or does not see the list)."""
        had = view.versions.get(listing.kind)
        if not sees:
            view.versions[listing.kind] = None
            return None
        if had == listing.version:
            return None
        view.versions[listing.kind] = listing.version
        if view.deltas and had == listing.version - 1 and listing.delta is not None:
            return listing.delta
        return listing.full()

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
                self.position(participant.id),
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
    lists = snapshot.lists
    for listing, sees in ((lists.roster, sees_call), (lists.waiting, participant.is_host)):
        message = snapshot.listed(view, listing, sees)
        if message is not None:
            out.append(message)
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
