"""`signalling.concurrency.each_of`: nothing it starts outlives it (pure asyncio, no I/O)."""

from __future__ import annotations

import asyncio

import pytest

from signalling.concurrency import each_of


async def test_results_come_back_in_order() -> None:
    async def value(n: int) -> int:
        await asyncio.sleep(0)
        return n

    assert await each_of(value(1), value(2), value(3)) == [1, 2, 3]
    assert await each_of() == []


async def test_a_failure_is_raised_only_once_the_others_have_ended() -> None:
    release = asyncio.Event()
    ended: list[str] = []

    async def fail() -> None:
        raise ValueError("first")

    async def slow() -> None:
        await release.wait()
        ended.append("slow")

    async def other_failure() -> None:
        await release.wait()
        raise KeyError("second")  # seen, not left unretrieved

    running = asyncio.ensure_future(each_of(fail(), slow(), other_failure()))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not running.done()  # the failure waits for the slow one
    release.set()
    with pytest.raises(ValueError, match="first"):
        await running
    assert ended == ["slow"]


async def test_cancelling_the_caller_cancels_and_awaits_every_one() -> None:
    started = asyncio.Event()
    cleaned: list[str] = []

    async def blocked(name: str) -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # its clean-up takes a turn of the loop
            cleaned.append(name)

    running = asyncio.ensure_future(each_of(blocked("a"), blocked("b")))
    await started.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert sorted(cleaned) == ["a", "b"]  # both ended before the caller saw the cancel
