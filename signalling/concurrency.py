"""Running several awaitables at once without leaving any behind.

`asyncio.gather` returns (or raises) as soon as one of its awaitables fails, and the others
run on, unowned: on a Redis Cluster a blocking read per shard kept its connection busy
after the loop that asked for it had failed, stopped, or even closed the client (which
left sockets open). `each_of` returns only once every one has ended, and when its caller is
cancelled it cancels them and waits for them too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def each_of(*work: Awaitable[T]) -> list[T]:
    """The results of ``work``, in order, once every one has ended; then the first
    failure, if any, is raised as itself. None is cut short by another's failure: a read
    cancelled half-way may have taken entries it never hands over, a delivery may have
    sent its message without recording it."""
    tasks = [asyncio.ensure_future(each) for each in work]
    if not tasks:
        return []
    try:
        await asyncio.wait(tasks)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        raise
    failures = [task.exception() for task in tasks if not task.cancelled()]  # each seen
    for failure in failures:
        if failure is not None:
            raise failure
    return [task.result() for task in tasks]
