"""The node's background loops, kept running and watched.

Each loop is registered with a name, and `Supervisor.start` runs it as a task. A loop that
ends (it raised, or returned, which a loop must never do) is logged, counted and started
again after a back-off that doubles from ``backoff`` up to ``backoff_max`` (and starts over
once a restarted loop has run that long). One loop's death never stops another.

What each loop is doing is tracked per loop, for ``/readyz``:

- ``down``: not running (not started yet, or dead and waiting to restart);
- ``failing``: running, but its last ``failing_after`` rounds failed (each loop says so
  through the `Health` it is given: `Health.ok` after a round that worked, `Health.failed`
  after one that did not, e.g. a heartbeat that Redis refused);
- ``up``: running, and not failing.

`Supervisor.problems` names the *required* loops that are down or failing: the node is not
ready while there are any. Periodic work (`Supervisor.every`) reports its rounds itself: a
round that raises is logged (a `RedisError` by its class, anything else by its class and
where it was raised, never its message, which may quote what was being handled) and the next
round follows after the period.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from signalling.errors import failure as failure

log = logging.getLogger("vestibule.signalling.supervisor")

FAILING_AFTER = 3  # consecutive failed rounds after which a loop counts as failing
BACKOFF = 0.1  # seconds before the first restart of a dead loop
BACKOFF_MAX = 5.0  # ...doubling up to this
RETRY_MAX = 2.0  # seconds at most between failed rounds of periodic work


class LoopState(enum.Enum):
    DOWN = "down"
    FAILING = "failing"
    UP = "up"


def frames(exc: BaseException) -> str:
    """Where ``exc`` came from, as a traceback's frames without the exception's message."""
    return "".join(traceback.format_tb(exc.__traceback__)).rstrip()


class Health:
    """How one loop is doing; the loop reports each round's outcome here."""

    def __init__(self, failing_after: int) -> None:
        self.failing_after = failing_after
        self.failures = 0  # consecutive failed rounds
        self.rounds = 0  # rounds reported, ok or not (lets tests wait for one)
        self.last_failure: str | None = None  # the class of the last failure, if any
        self.running = False

    def ok(self) -> None:
        """A round worked."""
        self.failures = 0
        self.rounds += 1

    def failed(self, exc: BaseException) -> None:
        """A round failed with ``exc`` (already handled and logged by the loop)."""
        self.failures += 1
        self.rounds += 1
        self.last_failure = type(exc).__name__

    @property
    def state(self) -> LoopState:
        if not self.running:
            return LoopState.DOWN
        return LoopState.FAILING if self.failures >= self.failing_after else LoopState.UP


Work = Callable[[Health], Awaitable[object]]


@dataclass(slots=True)
class _Loop:
    name: str
    work: Work
    required: bool
    health: Health
    restarts: int = 0
    task: asyncio.Task[None] | None = None


@dataclass(frozen=True, slots=True)
class LoopStatus:
    state: LoopState
    required: bool
    restarts: int
    failures: int


class Supervisor:
    """Runs the registered loops until `stop`; see the module docstring."""

    def __init__(
        self,
        *,
        failing_after: int = FAILING_AFTER,
        backoff: float = BACKOFF,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        self.failing_after = failing_after
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.redis_errors = 0  # rounds of periodic work that Redis failed (for /metrics)
        self._loops: dict[str, _Loop] = {}

    def run(self, name: str, work: Work, *, required: bool) -> Health:
        """Register a loop: ``work(health)`` runs until cancelled, reporting its rounds on
        ``health`` if it has any. It is called again, after a back-off, whenever it ends."""
        if name in self._loops:
            raise ValueError(f"a loop named {name} is registered already")
        health = Health(self.failing_after)
        self._loops[name] = _Loop(name, work, required, health)
        return health

    def every(
        self, name: str, seconds: float, work: Callable[[], Awaitable[object]], *, required: bool
    ) -> Health:
        """Register periodic work: ``work()`` every ``seconds``, each round reported. After
        a failed round the wait grows (doubling from ``backoff`` up to ``RETRY_MAX``), so a
        round that fails at once (Redis refusing connections) does not spin."""

        async def rounds(health: Health) -> None:
            me = asyncio.current_task()
            retry = self.backoff
            while True:
                # redis-py sends every command under asyncio.wait_for, which before Python
                # 3.12 loses a cancellation that arrives as the send completes (CPython
                # gh-86296): the request is still counted on the task, so honour it here.
                if me is not None and me.cancelling():
                    raise asyncio.CancelledError
                try:
                    await work()
                except RedisError as exc:
                    log.warning("%s: redis unavailable (%s)", name, type(exc).__name__)
                    self.redis_errors += 1
                    health.failed(exc)
                except Exception as exc:  # noqa: BLE001 -- one failed round must not stop the next
                    log.error("%s failed: %s\n%s", name, failure(exc), frames(exc))
                    health.failed(exc)
                else:
                    health.ok()
                    retry = self.backoff
                    await asyncio.sleep(seconds)
                    continue
                await asyncio.sleep(max(seconds, retry))
                retry = min(retry * 2, RETRY_MAX)

        return self.run(name, rounds, required=required)

    def start(self) -> None:
        """Start every registered loop (in the running event loop)."""
        for loop in self._loops.values():
            if loop.task is None:
                loop.task = asyncio.get_running_loop().create_task(
                    self._keep(loop), name=f"vestibule:{loop.name}"
                )

    def tasks(self) -> list[asyncio.Task[None]]:
        """The loops' tasks, for the node to cancel when it stops."""
        return [loop.task for loop in self._loops.values() if loop.task is not None]

    def status(self) -> dict[str, LoopStatus]:
        return {
            name: LoopStatus(loop.health.state, loop.required, loop.restarts, loop.health.failures)
            for name, loop in self._loops.items()
        }

    def problems(self) -> dict[str, LoopState]:
        """The required loops that are down or failing: the node is not ready with any."""
        return {
            name: loop.health.state
            for name, loop in self._loops.items()
            if loop.required and loop.health.state is not LoopState.UP
        }

    async def _keep(self, loop: _Loop) -> None:
        delay = self.backoff
        while True:
            began = time.monotonic()
            loop.health.running = True
            try:
                await loop.work(loop.health)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 -- logged below, and restarted
                why = f"{failure(exc)}\n{frames(exc)}"
            else:
                why = "it returned"
            finally:
                loop.health.running = False
            if time.monotonic() - began >= self.backoff_max:
                delay = self.backoff  # it had been running a good while: not a crash loop
            loop.restarts += 1
            log.error(
                "the %s loop stopped: restart %d in %.1f s: %s",
                loop.name,
                loop.restarts,
                delay,
                why,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max)
