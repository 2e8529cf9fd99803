"""The outbox's worker on a real redis-server, one step at a time: promotion of due
retries, stale tickets, failures that cannot improve, and consumers of nodes long gone.

Appointments come from a dict and the channel records what it was asked to send: the
channels themselves are tested against real servers in tests/signalling/api.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from rooms.appointments import Appointment, ContactChannel, RemoteChannel, book
from rooms.ids import AppointmentId, RoomId
from rooms.invitations import Invitation, InvitationStatus
from signalling import outbox
from signalling.channels import Channel, DeliveryError
from signalling.outbox import DUE, GROUP, OUTBOX, Delivery, Outbox, ensure_group, invitation_key
from signalling.redis_server import RedisProcess
from tests.signalling.conftest import FakeClock, build_settings

ADDRESS = "pat@example.org"


class Recorder:
    """A channel that records each send and raises the next of ``failures``, if any."""

    def __init__(self, *failures: BaseException, delay: float = 0.0) -> None:
        self.failures = list(failures)
        self.delay = delay
        self.sent: list[str] = []

    async def send(self, invitation: Invitation, appointment: Appointment) -> None:
        await asyncio.sleep(self.delay)
        self.sent.append(invitation.id)
        if self.failures:
            raise self.failures.pop(0)


class World:
    """Appointments, a clock, and workers on one redis-server."""

    def __init__(self, redis: Redis, tmp_path: Path) -> None:
        self.redis = redis
        self.tmp_path = tmp_path
        self.clock = FakeClock()
        self.appointments: dict[str, Appointment] = {}
        self.outbox = Outbox(redis, self.clock)

    def appointment(self) -> Appointment:
        now = self.clock()
        booked = book(
            AppointmentId(f"apt_{len(self.appointments)}"),
            title="Review",
            start_time=now + 60,
            end_time=now + 120,
            now=now,
            is_remote=True,
            remote_channel=RemoteChannel.VIDEO,
        ).with_video(RoomId("rm_1"), video_link="http://x/join/rm_1#t", meeting_url="m", now=now)
        self.appointments[booked.id] = booked
        return booked

    async def lookup(self, appointment_id: str) -> Appointment | None:
        return self.appointments.get(appointment_id)

    def worker(self, name: str, channel: Channel | None, **overrides: Any) -> Delivery:
        settings = build_settings(self.tmp_path, **{"invitation_backoff": 1.0, **overrides})
        channels = {} if channel is None else {ContactChannel.EMAIL: channel}
        return Delivery(self.redis, name, self.clock, settings, self.lookup, channels=channels)

    async def invitation(self) -> Invitation:
        await ensure_group(self.redis)
        return await self.outbox.enqueue(self.appointment().id, ContactChannel.EMAIL, ADDRESS)

    async def get(self, invitation: Invitation) -> Invitation:
        found = await self.outbox.get(invitation.id)
        assert found is not None
        return found


@pytest.fixture
def world(redis: Redis, tmp_path: Path) -> World:
    return World(redis, tmp_path)


async def test_a_due_retry_is_queued_once_by_racing_workers(world: World) -> None:
    channel = Recorder(DeliveryError("smtp: timed out"))
    a, b = world.worker("a", channel), world.worker("b", channel)
    invitation = await world.invitation()
    assert await a.step() == 1
    assert (await world.get(invitation)).attempts == 1
    assert await world.redis.zcard(DUE) == 1

    assert await a.promote(world.clock()) == 0  # not due yet
    world.clock.advance(1.0)
    moved = await asyncio.gather(*(w.promote(world.clock()) for w in (a, b, a, b)))
    assert sum(moved) == 1
    assert await world.redis.zcard(DUE) == 0
    handled = await asyncio.gather(a.step(), b.step())
    assert sum(handled) == 1
    assert channel.sent == [invitation.id, invitation.id]
    assert (await world.get(invitation)).status is InvitationStatus.SENT
    # Settled, it is kept for the retention period (it holds the address), no longer.
    ttl = await world.redis.ttl(invitation_key(invitation.id))
    assert 30 * 86400 - 60 < ttl <= 30 * 86400 + 1


async def test_a_stale_ticket_sends_nothing(world: World) -> None:
    channel = Recorder(DeliveryError("smtp: timed out"))
    worker = world.worker("a", channel)
    invitation = await world.invitation()
    await worker.step()
    # The ticket of the attempt just recorded, as a node that died before acknowledging
    # it would leave it to be claimed.
    await world.redis.xadd(OUTBOX, {"t": f"{invitation.id}:0"})
    assert await worker.step() == 1
    assert channel.sent == [invitation.id]
    assert (await world.get(invitation)).attempts == 1
    pending: Any = await world.redis.xpending(OUTBOX, GROUP)
    assert pending["pending"] == 0


async def test_a_settled_invitation_is_not_sent_again(world: World) -> None:
    channel = Recorder()
    worker = world.worker("a", channel)
    invitation = await world.invitation()
    await worker.step()
    await world.redis.xadd(OUTBOX, {"t": f"{invitation.id}:1"})
    await world.redis.xadd(OUTBOX, {"t": "inv_unknown:0"})
    await world.redis.xadd(OUTBOX, {"other": "field"})
    assert await worker.step() == 3
    assert channel.sent == [invitation.id]


@pytest.mark.parametrize("case", ["gone", "cancelled", "no_link", "no_channel", "permanent"])
async def test_failures_that_waiting_cannot_fix_end_at_once(world: World, case: str) -> None:
    channel = Recorder(DeliveryError("smtp: 550 recipient refused", permanent=True))
    worker = world.worker("a", None if case == "no_channel" else channel)
    invitation = await world.invitation()
    appointment = world.appointments[invitation.appointment_id]
    if case == "gone":
        del world.appointments[appointment.id]
    elif case == "cancelled":
        world.appointments[appointment.id] = appointment.cancel(None, world.clock())
    elif case == "no_link":
        world.appointments[appointment.id] = appointment.without_video(world.clock())
    await worker.step()
    failed = await world.get(invitation)
    assert failed.status is InvitationStatus.FAILED
    assert failed.attempts == 1
    assert (
        failed.last_error
        == {
            "gone": "the appointment no longer exists",
            "cancelled": "the appointment is cancelled",
            "no_link": "the appointment has no video link",
            "no_channel": "the email channel is not configured",
            "permanent": "smtp: 550 recipient refused",
        }[case]
    )
    assert await world.redis.zcard(DUE) == 0


async def test_a_slow_channel_times_out(world: World) -> None:
    worker = world.worker("a", Recorder(delay=5.0), delivery_timeout=0.05)
    invitation = await world.invitation()
    await worker.step()
    after = await world.get(invitation)
    assert after.status is InvitationStatus.PENDING
    assert after.last_error == "email: timed out"


async def test_a_channel_bug_is_logged_and_counted(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    worker = world.worker("a", Recorder(RuntimeError("boom")), invitation_max_attempts=1)
    invitation = await world.invitation()
    await worker.step()
    after = await world.get(invitation)
    assert after.status is InvitationStatus.FAILED
    assert after.last_error == "email: internal error"
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.getMessage() == f"invitation {invitation.id}: the email channel failed"


async def test_consumers_of_nodes_long_gone_are_removed(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await world.invitation()
    await world.redis.xgroup_createconsumer(OUTBOX, GROUP, "gone")
    await world.worker("live", Recorder()).step()
    await world.invitation()
    await world.redis.xreadgroup(GROUP, "holder", {OUTBOX: ">"}, count=1)

    async def names() -> set[bytes]:
        return {c["name"] for c in await world.redis.xinfo_consumers(OUTBOX, GROUP)}

    assert await names() == {b"gone", b"live", b"holder"}  # silent for under an hour: kept
    monkeypatch.setattr(outbox, "GONE_AFTER_MS", -1)
    await world.worker("other", Recorder()).step()
    assert await names() == {b"holder"}  # its unfinished work is still to be claimed


async def test_run_delivers_and_stops_when_cancelled(world: World) -> None:
    channel = Recorder()
    worker = world.worker("a", channel, delivery_poll=0.01)
    task = asyncio.create_task(worker.run())
    invitation = await world.invitation()
    await eventually_sent(world, invitation)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert channel.sent == [invitation.id]


async def test_two_workers_on_one_ticket_send_twice_and_record_once(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # What a claim of a live but slow worker's ticket would do (the settings forbid a
    # claim time this short): the message goes out twice, the record counts one attempt.
    caplog.set_level(logging.INFO, logger="vestibule")
    channel = Recorder(delay=0.05)
    a, b = world.worker("a", channel), world.worker("b", channel)
    invitation = await world.invitation()
    read: Any = await world.redis.xreadgroup(GROUP, "a", {OUTBOX: ">"}, count=1)
    [(entry_id, fields)] = read[0][1]
    await asyncio.gather(a.handle(entry_id, fields), b.handle(entry_id, fields))
    assert channel.sent == [invitation.id, invitation.id]
    after = await world.get(invitation)
    assert after.status is InvitationStatus.SENT
    assert after.attempts == 1
    assert any("recorded elsewhere" in r.getMessage() for r in caplog.records)
    pending: Any = await world.redis.xpending(OUTBOX, GROUP)
    assert pending["pending"] == 0


async def test_the_worker_rides_out_a_redis_restart(
    world: World, redis_server: RedisProcess
) -> None:
    channel = Recorder()
    worker = world.worker("a", channel, delivery_poll=0.01)
    task = asyncio.create_task(worker.run())
    try:
        first = await world.invitation()
        await eventually_sent(world, first)
        await asyncio.to_thread(redis_server.stop)
        await asyncio.sleep(0.3)  # the worker meets errors and backs off
        await asyncio.to_thread(redis_server.start)
        second = await world.invitation()
        await eventually_sent(world, second)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert channel.sent == [first.id, second.id]


async def eventually_sent(world: World, invitation: Invitation) -> None:
    """Wait until the invitation is sent: at least 15 s, ample for a worker backing off
    from an outage (at most 2 s between tries)."""
    for _ in range(1500):
        with contextlib.suppress(RedisError):
            if (await world.get(invitation)).status is InvitationStatus.SENT:
                return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{invitation.id} was not sent")
