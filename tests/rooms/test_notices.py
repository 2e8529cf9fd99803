"""The host's message to the waiting room: kept in the room until replaced, to everyone or
to one participant, folded from its events and kept in snapshots."""

from __future__ import annotations

import pytest

from rooms import Event, EventKind, Role, Room, UnknownParticipant
from tests.rooms.support import HOST, NOBODY, ROOM_ID, A, B


def room() -> Room:
    r = Room(ROOM_ID)
    r.arrive(HOST, Role.HOST, now=0.0)
    r.arrive(A, Role.PATIENT, now=0.0)
    r.arrive(B, Role.PATIENT, now=0.0)
    return r


def test_a_notice_to_everyone_is_kept_until_replaced_or_taken_back() -> None:
    r = room()
    [event] = r.notify(HOST, "Running 10 minutes late", 5.0)
    assert (event.kind, event.actor, event.participant) == (EventKind.NOTICE, HOST, None)
    assert Event.from_record(event.to_record()) == event
    assert r.notice is not None
    assert (r.notice.text, r.notice.at) == ("Running 10 minutes late", 5.0)
    assert r.notice_for(A) is r.notice_for(B) is r.notice
    r.notify(HOST, "Running 20 minutes late", 6.0)
    assert r.notice_for(A).text == "Running 20 minutes late"  # type: ignore[union-attr]
    r.notify(HOST, "", 7.0)
    assert r.notice is None
    assert r.notice_for(A) is None


def test_a_notice_to_one_participant_is_theirs_alone_and_the_newest_one_shows() -> None:
    r = room()
    r.notify(HOST, "Everyone: a short delay", 1.0)
    r.notify(HOST, "Sam: please check your microphone", 2.0, to=A)
    assert r.notice_for(A).text == "Sam: please check your microphone"  # type: ignore[union-attr]
    assert r.notice_for(B).text == "Everyone: a short delay"  # type: ignore[union-attr]
    r.notify(HOST, "Everyone: back in five", 3.0)  # newer than A's own
    assert r.notice_for(A).text == "Everyone: back in five"  # type: ignore[union-attr]
    r.notify(HOST, "Sam: your turn next", 4.0, to=A)
    copy = r.clone()
    restored = Room.from_snapshot(r.snapshot())
    assert restored.snapshot() == r.snapshot()
    for other in (copy, restored):
        assert other.notice_for(A) == r.notice_for(A)
        assert other.notice_for(B) == r.notice_for(B)
    r.notify(HOST, "", 5.0, to=A)  # taken back: the one to everyone shows again
    assert r.notice_for(A).text == "Everyone: back in five"  # type: ignore[union-attr]
    r.notify(HOST, "Sam: one more thing", 6.0, to=A)
    r.leave(A, 7.0)
    assert A not in r.snapshot()["notices"][1:]
    assert [n[0] for n in r.snapshot()["notices"]] == [None]


def test_a_notice_needs_a_sender_and_a_recipient_in_the_room() -> None:
    r = room()
    version = r.version
    with pytest.raises(UnknownParticipant):
        r.notify(NOBODY, "hello", 1.0)
    with pytest.raises(UnknownParticipant):
        r.notify(HOST, "hello", 1.0, to=NOBODY)
    assert r.version == version


def test_older_snapshots_have_no_notices() -> None:
    data = room().snapshot()
    del data["notices"]
    assert Room.from_snapshot(data).notice is None


def test_a_notice_record_needs_its_text() -> None:
    record = {"kind": "notice", "at": 1.0, "actor": HOST}
    with pytest.raises(ValueError, match="message"):
        Event.from_record(record)
