"""The lists kept between changes (`signalling.views.Listing`) and what a change is told to.

Random command sequences on one clinician's room (the stateful machine of
tests/admission/test_room_machine.py), and after each change, as the hub fans it out:

- the waiting list and the roster, kept up to date change by change (a quiet change only
  for its own people), equal the lists worked out afresh from the room;
- a client that takes the lists as deltas (`signalling.client.Lists`) holds, after what it
  was sent, exactly the whole list; it never sees a gap;
- a quiet change (`views.quiet_change`) is told only to its people and the hosts: for
  everyone else the change holds nothing new (`updates` is empty), so not looking at them
  loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import settings

from rooms import Event, ParticipantId
from signalling.client import LIST_FIELDS
from signalling.client import Lists as Copy
from signalling.views import Listing, Lists, Snapshot, View, updates
from tests.admission import test_room_machine as machine


class ListsMachine(machine.RoomMachine):
    def _do(self, command: Callable[[], list[Event]]) -> None:
        if not hasattr(self, "lists"):
            self.lists = Lists()
            self.views: dict[ParticipantId, View] = {}
            self.copies: dict[ParticipantId, Copy] = {}
            self.quiet_seen = 0
        done = len(self.log)
        super()._do(command)
        self._fan_out(self.log[done:])

    def _fan_out(self, events: list[Event]) -> None:
        room = self.room
        snapshot = Snapshot(room, now=self.now, lists=self.lists, events=events)
        fresh = Snapshot(room, now=self.now)
        for kept, afresh in ((self.lists.waiting, fresh.lists.waiting),
                             (self.lists.roster, fresh.lists.roster)):  # fmt: skip
            assert list(kept.entries.items()) == list(afresh.entries.items())
            assert kept.full()[kept.field] == afresh.full()[afresh.field]
        for gone in self.views.keys() - room.participants.keys():
            del self.views[gone], self.copies[gone]
        quiet = snapshot.quiet if events else None  # no events: the clock alone (refresh)
        told = set(room.participants) if quiet is None else {*quiet, *room.hosts()}
        self.quiet_seen += quiet is not None and bool(quiet)
        for pid in room.participants:
            view = self.views.setdefault(pid, View(deltas=True))
            copy = self.copies.setdefault(pid, Copy())
            sent = updates(view, pid, snapshot)
            if pid not in told:
                assert sent == [], (pid, sent)
            for message in sent:
                if message["type"].removesuffix("_delta") in LIST_FIELDS:
                    assert copy.take(message) is not None, ("a gap", pid, message)
            self._check_copy(pid, view, copy, self.lists.waiting)
            self._check_copy(pid, view, copy, self.lists.roster)

    @staticmethod
    def _check_copy(pid: ParticipantId, view: View, copy: Copy, listing: Listing) -> None:
        if view.versions.get(listing.kind) is None:
            return  # it does not see this list
        version, entries = copy._lists[listing.kind]
        assert version == listing.version
        assert [_unplaced(e) for e in entries.values()] == [
            _unplaced(e) for e in listing.full()[listing.field]
        ], pid


def _unplaced(entry: dict[str, object]) -> dict[str, object]:
    """An entry without its place (a copy numbers its entries by their order)."""
    return {k: v for k, v in entry.items() if k != "position"}


ListsMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=50, deadline=None)
test_lists_machine = ListsMachine.TestCase


def test_a_delta_says_what_changed_and_a_move_is_sent_whole() -> None:
    a, b, c = (ParticipantId(p) for p in "abc")
    listing = Listing("waiting_list", "entries")
    listing.replace({a: {"participant_id": a}, b: {"participant_id": b}})
    assert (listing.version, listing.full()["entries"][1]["position"]) == (1, 2)
    listing.replace({b: {"participant_id": b, "x": 1}, c: {"participant_id": c}})
    assert listing.delta == {
        "type": "waiting_list_delta",
        "version": 2,
        "removed": [a],
        "changed": [{"participant_id": b, "x": 1}],
        "added": [{"participant_id": c}],
    }
    listing.replace({b: {"participant_id": b, "x": 1}, c: {"participant_id": c}})
    assert listing.version == 2  # nothing changed: no new version
    listing.replace({c: {"participant_id": c}, b: {"participant_id": b, "x": 1}})
    assert listing.version == 3
    assert listing.delta is None  # an entry moved: the whole list is sent
    copy = Copy()
    assert copy.take({"type": "waiting_list_delta", "version": 4, "removed": [],
                      "changed": [], "added": []}) is None  # fmt: skip
