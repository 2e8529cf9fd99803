"""Invitations (seed 000): the retry schedule and what each attempt's result does."""

from __future__ import annotations

import pytest

from rooms.appointments import ContactChannel
from rooms.errors import InvalidState
from rooms.ids import AppointmentId
from rooms.invitations import (
    MAX_REASON,
    Invitation,
    InvitationId,
    InvitationStatus,
    RetryPolicy,
    mask,
)

T0 = 1000.0


def pending(now: float = T0) -> Invitation:
    return Invitation.new(
        InvitationId("inv_1"), AppointmentId("apt_1"), ContactChannel.EMAIL, "a@b.org", now=now
    )


# --- the schedule ----------------------------------------------------------------------------


def test_the_default_schedule_doubles_from_two_seconds() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 5
    assert policy.schedule() == [2.0, 4.0, 8.0, 16.0]


def test_delays_are_capped() -> None:
    policy = RetryPolicy(max_attempts=8, first_backoff=10.0, max_backoff=60.0)
    assert policy.schedule() == [10.0, 20.0, 40.0, 60.0, 60.0, 60.0, 60.0]
    assert policy.delay(10_000) == 60.0  # no overflow, however many failures


def test_one_attempt_has_no_retries() -> None:
    assert RetryPolicy(max_attempts=1).schedule() == []


@pytest.mark.parametrize(
    ("attempts", "first", "cap"),
    [(0, 2.0, 300.0), (3, -1.0, 300.0), (3, 10.0, 5.0)],
)
def test_impossible_policies_are_refused(attempts: int, first: float, cap: float) -> None:
    with pytest.raises(ValueError, match=r"must|need"):
        RetryPolicy(max_attempts=attempts, first_backoff=first, max_backoff=cap)


def test_delay_needs_a_failure() -> None:
    with pytest.raises(ValueError, match="at least one failure"):
        RetryPolicy().delay(0)


# --- attempts --------------------------------------------------------------------------------


def test_a_new_invitation_is_due_at_once() -> None:
    invitation = pending()
    assert invitation.status is InvitationStatus.PENDING
    assert invitation.attempts == 0
    assert invitation.next_attempt_at == T0
    assert invitation.due(T0)
    assert not invitation.due(T0 - 0.001)


def test_a_delivery_is_final() -> None:
    sent = pending().delivered(T0 + 1)
    assert sent.status is InvitationStatus.SENT
    assert sent.attempts == 1
    assert sent.sent_at == T0 + 1
    assert sent.next_attempt_at is None
    assert not sent.due(T0 + 100)
    with pytest.raises(InvalidState, match="invitation is sent"):
        sent.delivered(T0 + 2)
    with pytest.raises(InvalidState, match="invitation is sent"):
        sent.attempt_failed(T0 + 2, "x", RetryPolicy())


def test_failures_follow_the_schedule_then_fail() -> None:
    policy = RetryPolicy(max_attempts=3, first_backoff=2.0, max_backoff=300.0)
    invitation = pending()
    invitation = invitation.attempt_failed(T0, "smtp: connection refused", policy)
    assert invitation.status is InvitationStatus.PENDING
    assert (invitation.attempts, invitation.next_attempt_at) == (1, T0 + 2)
    assert not invitation.due(T0 + 1.999)
    assert invitation.due(T0 + 2)
    invitation = invitation.attempt_failed(T0 + 2, "smtp: timed out", policy)
    assert (invitation.attempts, invitation.next_attempt_at) == (2, T0 + 6)
    assert invitation.last_error == "smtp: timed out"
    invitation = invitation.attempt_failed(T0 + 6, "smtp: 451 from the server", policy)
    assert invitation.status is InvitationStatus.FAILED
    assert invitation.attempts == 3
    assert invitation.failed_at == T0 + 6
    assert invitation.next_attempt_at is None
    assert invitation.last_error == "smtp: 451 from the server"
    with pytest.raises(InvalidState, match="cannot record a failure for inv_1"):
        invitation.attempt_failed(T0 + 7, "x", policy)


def test_a_permanent_failure_ends_at_once() -> None:
    failed = pending().attempt_failed(T0, "gone", RetryPolicy(), permanent=True)
    assert failed.status is InvitationStatus.FAILED
    assert failed.attempts == 1


def test_a_success_after_failures_keeps_the_last_error() -> None:
    policy = RetryPolicy()
    sent = pending().attempt_failed(T0, "webhook: HTTP 503", policy).delivered(T0 + 2)
    assert sent.status is InvitationStatus.SENT
    assert sent.attempts == 2
    assert sent.last_error == "webhook: HTTP 503"


def test_reasons_are_cut_short() -> None:
    failed = pending().attempt_failed(T0, "x" * 1000, RetryPolicy(), permanent=True)
    assert failed.last_error == "x" * MAX_REASON


def test_the_record_round_trips() -> None:
    invitation = pending().attempt_failed(T0, "smtp: timed out", RetryPolicy())
    assert Invitation.from_record(invitation.to_record()) == invitation
    sent = invitation.delivered(T0 + 3)
    assert Invitation.from_record(sent.to_record()) == sent


# --- masking ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "hint"),
    [
        ("jane.doe@example.org", "j•••@example.org"),
        ("a@b", "a•••@b"),
        ("+447700900123", "•••0123"),
        ("12345", "•••"),
        ("", "•••"),
    ],
)
def test_mask(address: str, hint: str) -> None:
    assert mask(address) == hint


def test_the_hint_masks_the_address() -> None:
    assert pending().to_hint == "a•••@b.org"
