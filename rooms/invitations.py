"""Invitations: a patient's join link sent through a channel, and what became of it
(seed 000, "Send to Patient" and "Invitations Sent").

Pure: the outbox (`signalling.outbox`) stores invitations and tries to deliver them; this
module decides what one attempt's result does to an invitation and when the next attempt is
due. An invitation is PENDING until a send succeeds (SENT) or the attempts run out or a
failure cannot get better by waiting (FAILED). SENT and FAILED are final.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any, NewType

from rooms.appointments import ContactChannel
from rooms.errors import InvalidState
from rooms.ids import AppointmentId

InvitationId = NewType("InvitationId", str)

# A failure reason is a short diagnostic, stored and shown to the clinician: never a
# message body, an address or a name. Longer text is cut here, whatever the caller passed.
MAX_REASON = 200


class InvitationStatus(enum.Enum):
    PENDING = "pending"  # queued: not yet delivered, another attempt is due
    SENT = "sent"  # the channel accepted the message
    FAILED = "failed"  # no more attempts


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how fast a failed invitation is tried again: the first retry
    ``first_backoff`` seconds after the first failure, doubling each time, never more than
    ``max_backoff`` apart, at most ``max_attempts`` attempts in all."""

    max_attempts: int = 5
    first_backoff: float = 2.0
    max_backoff: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.first_backoff < 0 or self.max_backoff < self.first_backoff:
            raise ValueError("need 0 <= first_backoff <= max_backoff")

    def delay(self, failures: int) -> float:
        """Seconds between the ``failures``-th failed attempt (1-based) and the next one."""
        if failures < 1:
            raise ValueError("delay is defined after at least one failure")
        # The exponent is bounded so that a huge count cannot overflow a float.
        return min(self.first_backoff * 2.0 ** min(failures - 1, 64), self.max_backoff)

    def schedule(self) -> list[float]:
        """Every delay, in order: what a send that never succeeds waits in all."""
        return [self.delay(n) for n in range(1, self.max_attempts)]


@dataclass(frozen=True, slots=True)
class Invitation:
    """One send of a join link. ``to`` is the patient's address or number: patient data,
    stored for delivery and never logged; the API shows only `to_hint`."""

    id: InvitationId
    appointment_id: AppointmentId
    channel: ContactChannel
    to: str
    status: InvitationStatus
    attempts: int  # attempts that have finished, successful or not
    created_at: float
    sent_at: float | None = None
    failed_at: float | None = None
    last_error: str | None = None
    next_attempt_at: float | None = None  # when PENDING: the earliest time to try

    @classmethod
    def new(
        cls,
        invitation_id: InvitationId,
        appointment_id: AppointmentId,
        channel: ContactChannel,
        to: str,
        *,
        now: float,
    ) -> Invitation:
        """A pending invitation whose first attempt is due at once."""
        return cls(
            invitation_id, appointment_id, channel, to, InvitationStatus.PENDING, 0, now,
            next_attempt_at=now,
        )  # fmt: skip

    @property
    def to_hint(self) -> str:
        return mask(self.to)

    def due(self, now: float) -> bool:
        """Whether an attempt may start at ``now``."""
        if self.status is not InvitationStatus.PENDING:
            return False
        return self.next_attempt_at is None or self.next_attempt_at <= now

    def delivered(self, now: float) -> Invitation:
        """The invitation after an attempt that succeeded."""
        self._check_pending("record a delivery")
        return replace(
            self,
            status=InvitationStatus.SENT,
            attempts=self.attempts + 1,
            sent_at=now,
            next_attempt_at=None,
        )

    def attempt_failed(
        self, now: float, reason: str, policy: RetryPolicy, *, permanent: bool = False
    ) -> Invitation:
        """The invitation after an attempt that failed for ``reason``: pending with the next
        attempt scheduled, or failed when the attempts are used up or ``permanent`` says
        that waiting cannot help. The caller schedules the retry at `next_attempt_at`."""
        self._check_pending("record a failure")
        attempts = self.attempts + 1
        reason = reason[:MAX_REASON]
        if permanent or attempts >= policy.max_attempts:
            return replace(
                self,
                status=InvitationStatus.FAILED,
                attempts=attempts,
                failed_at=now,
                last_error=reason,
                next_attempt_at=None,
            )
        return replace(
            self,
            attempts=attempts,
            last_error=reason,
            next_attempt_at=now + policy.delay(attempts),
        )

    def _check_pending(self, action: str) -> None:
        if self.status is not InvitationStatus.PENDING:
            raise InvalidState(
                f"cannot {action} for {self.id}: invitation is {self.status.value}",
                invitation_id=self.id,
                status=self.status.value,
            )

    def to_record(self) -> list[object]:
        return [
            self.id, self.appointment_id, self.channel.value, self.to, self.status.value,
            self.attempts, self.created_at, self.sent_at, self.failed_at, self.last_error,
            self.next_attempt_at,
        ]  # fmt: skip

    @classmethod
    def from_record(cls, record: list[Any]) -> Invitation:
        (iid, appointment, channel, to, status, attempts, created_at, sent_at, failed_at,
         last_error, next_attempt_at) = record  # fmt: skip
        return cls(
            InvitationId(str(iid)),
            AppointmentId(str(appointment)),
            ContactChannel(channel),
            str(to),
            InvitationStatus(status),
            int(attempts),
            float(created_at),
            None if sent_at is None else float(sent_at),
            None if failed_at is None else float(failed_at),
            None if last_error is None else str(last_error),
            None if next_attempt_at is None else float(next_attempt_at),
        )


def mask(address: str) -> str:
    """Enough of an address to recognise it, not to use it: ``j•••@example.org``,
    ``•••0123``."""
    local, at, domain = address.rpartition("@")
    if at:
        return f"{local[:1]}•••@{domain}"
    return "•••" + address[-4:] if len(address) > 6 else "•••"
