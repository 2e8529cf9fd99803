"""The supervisor of a node's background loops (signalling/supervisor.py).

Real asyncio, no Redis: loops that crash, return, or report failed rounds, and what the
supervisor makes of them (restarts counted, back-off, up / failing / down). A node's
`/readyz` built on it, against a real redis-server, is tested in test_readiness.py.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from signalling.supervisor import Health, LoopState, Supervisor, failure
from tests.signalling.conftest import eventually


async def stop(sup: Supervisor) -> None:
    for task in sup.tasks():
        task.cancel()
    await asyncio.gather(*sup.tasks(), return_exceptions=True)


@pytest.fixture
async def supervisor() -> AsyncIterator[Supervisor]:
    sup = Supervisor(failing_after=2, backoff=0.01, backoff_max=0.04)
    yield sup
    await stop(sup)


async def test_a_loop_that_crashes_is_restarted_and_counted(
    supervisor: Supervisor, caplog: pytest.LogCaptureFixture
) -> None:
    runs = 0
    secret = "Sam Patel <sam@example.org>"

    async def crashes(health: Health) -> None:
        nonlocal runs
        runs += 1
        if runs <= 3:
            raise KeyError(secret)  # as a bug handling someone's message would
        await asyncio.Event().wait()  # the fourth run stays up

    supervisor.run("bus", crashes, required=True)
    with caplog.at_level(logging.ERROR, logger="vestibule.signalling.supervisor"):
        supervisor.start()
        await eventually(lambda: runs == 4, what="the fourth run")
    status = supervisor.status()["bus"]
    assert (status.state, status.restarts) == (LoopState.UP, 3)
    assert supervisor.problems() == {}
    stopped = [r.getMessage() for r in caplog.records]
    assert len(stopped) == 3
    assert all(m.startswith("the bus loop stopped: restart") for m in stopped)
    assert "KeyError at test_supervisor.py" in stopped[0]
    assert secret not in "\n".join(stopped)  # the kind and the place, never the message


async def test_a_loop_that_returns_is_restarted_too(supervisor: Supervisor) -> None:
    runs = 0

    async def returns(health: Health) -> None:
        nonlocal runs
        runs += 1
        if runs > 2:
            await asyncio.Event().wait()

    supervisor.run("feed", returns, required=True)
    supervisor.start()
    await eventually(lambda: runs == 3, what="the third run")
    assert supervisor.status()["feed"].restarts == 2


async def test_restarts_back_off_doubling_up_to_the_cap() -> None:
    sup = Supervisor(backoff=0.01, backoff_max=0.04)
    starts: list[float] = []
    loop = asyncio.get_running_loop()

    async def crashes(health: Health) -> None:
        starts.append(loop.time())
        raise RuntimeError("bug")

    sup.run("projector", crashes, required=True)
    sup.start()
    try:
        await eventually(lambda: len(starts) >= 6, what="six runs")
    finally:
        await stop(sup)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # Each wait is at least the back-off asked for (timers never fire early): 0.01, 0.02,
    # then 0.04 each time, the cap. Upper bounds would be wall-clock assertions: none.
    waits = [0.01, 0.02, 0.04, 0.04, 0.04]
    assert [gap >= wait for gap, wait in zip(gaps[:5], waits, strict=True)] == [True] * 5


async def test_a_required_loop_is_down_while_it_waits_to_restart() -> None:
    sup = Supervisor(backoff=60.0, backoff_max=60.0)  # the restart is far away
    crashed = asyncio.Event()

    async def crashes(health: Health) -> None:
        crashed.set()
        raise RuntimeError("bug")

    async def optional(health: Health) -> None:
        raise RuntimeError("bug")

    sup.run("heartbeat", crashes, required=True)
    sup.run("sweep", optional, required=False)
    assert sup.problems() == {"heartbeat": LoopState.DOWN}  # not started yet
    sup.start()
    try:
        await crashed.wait()
        await eventually(lambda: sup.status()["heartbeat"].restarts == 1, what="the restart count")
        assert sup.problems() == {"heartbeat": LoopState.DOWN}  # an optional loop is no problem
        assert sup.status()["sweep"].state is LoopState.DOWN
    finally:
        await stop(sup)


async def test_periodic_work_is_failing_after_consecutive_failed_rounds_and_recovers(
    supervisor: Supervisor, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes: asyncio.Queue[str] = asyncio.Queue()  # the test plays each round's outcome
    secret = "Sam Patel"

    async def heartbeat() -> None:
        outcome = await outcomes.get()
        if outcome == "redis":
            raise RedisConnectionError("refused")
        if outcome == "bug":
            raise ValueError(secret)

    health = supervisor.every("heartbeat", 0.001, heartbeat, required=True)

    async def play(outcome: str) -> LoopState:
        rounds = health.rounds
        await outcomes.put(outcome)
        await eventually(lambda: health.rounds > rounds, what=f"the {outcome} round")
        return supervisor.status()["heartbeat"].state

    with caplog.at_level(logging.WARNING, logger="vestibule.signalling.supervisor"):
        supervisor.start()
        # failing_after=2: two failed rounds in a row, of any kind, make it failing
        seen = [await play(o) for o in ["ok", "redis", "bug", "redis", "ok"]]
    assert seen == [LoopState.UP, LoopState.UP, LoopState.FAILING, LoopState.FAILING, LoopState.UP]
    assert supervisor.problems() == {}
    assert health.last_failure == "ConnectionError"  # redis-py's, by its class name
    assert supervisor.status()["heartbeat"].restarts == 0  # failed rounds are no crash
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("heartbeat: redis unavailable (ConnectionError)") == 2
    assert any(m.startswith("heartbeat failed: ValueError at test_supervisor.py") for m in messages)
    assert secret not in "\n".join(messages)


async def test_a_failing_required_loop_is_a_problem(supervisor: Supervisor) -> None:
    async def refused() -> None:
        raise RedisConnectionError("refused")

    health = supervisor.every("heartbeat", 0.001, refused, required=True)
    supervisor.start()
    await eventually(lambda: health.failures >= 2, what="two failed rounds")
    assert supervisor.problems() == {"heartbeat": LoopState.FAILING}


def test_a_name_is_registered_once() -> None:
    sup = Supervisor()

    async def work(health: Health) -> None:
        return None

    sup.run("bus", work, required=True)
    with pytest.raises(ValueError, match="registered already"):
        sup.run("bus", work, required=False)


def test_failure_names_the_kind_and_place_without_the_message() -> None:
    assert failure(KeyError("sam@example.org")) == "KeyError"  # never raised: no place
    empty: dict[str, int] = {}
    try:
        empty["sam@example.org"]  # raised for its traceback
    except KeyError as exc:
        described = failure(exc)
    assert described.startswith("KeyError at test_supervisor.py:")
    assert described.endswith("in test_failure_names_the_kind_and_place_without_the_message")
    assert "sam@example.org" not in described
