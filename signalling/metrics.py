"""The node's metrics, served at ``/metrics`` in the Prometheus text format.

One `Metrics` per node (built by the app, passed to what counts), each with its own registry,
so two nodes in one process (the tests) never share a series. Labels only ever hold fixed
words: error codes, message kinds, loop names, delivery results. Never a room, participant,
appointment, name or token.

What is counted where it happens: hellos accepted and refused (by error code), errors sent
to clients (by code), relayed offers, answers and candidates (pre-bound children: the relay
path does no label lookup), the time from a knock to entering the call, Redis errors seen by
commands, the REST API and the background loops, event webhook deliveries. What is read at
scrape time instead, costing nothing in between: open WebSocket connections and how many of
them are in a waiting room, connections not authenticated yet, and each loop's state and
restarts (`signalling.supervisor`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rooms.events import Event, EventKind
from rooms.ids import ParticipantId

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds from a knock to entering the call: minutes matter in a waiting room.
WAIT_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)


class Metrics:
    """The node's counters; `exposition` renders them with the scrape-time readings."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.hellos = Counter(
            "vestibule_hellos", "Hellos accepted (participants joined).", registry=r
        )
        self.refusals = Counter(
            "vestibule_hello_refusals", "Hellos refused, by error code.", ["code"], registry=r
        )
        self.errors = Counter(
            "vestibule_client_errors",
            "Errors sent to clients after the hello, by error code.",
            ["code"],
            registry=r,
        )
        relayed = Counter(
            "vestibule_relayed_messages",
            "Call set-up messages relayed, by kind.",
            ["kind"],
            registry=r,
        )
        self.relayed_offer = relayed.labels("offer")
        self.relayed_answer = relayed.labels("answer")
        self.relayed_candidate = relayed.labels("candidate")
        self._relayed = {
            "offer": self.relayed_offer,
            "answer": self.relayed_answer,
            "candidate": self.relayed_candidate,
        }
        self.knock_to_admit = Histogram(
            "vestibule_knock_to_admit_seconds",
            "Seconds from joining the waiting room to entering the call, as decided here.",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        redis = Counter(
            "vestibule_redis_errors",
            "Redis errors, by what met them (a command of a client, the REST API, a loop).",
            ["where"],
            registry=r,
        )
        self.redis_command = redis.labels("command")
        self.redis_api = redis.labels("api")
        self.redis_loop = redis.labels("loop")
        deliveries = Counter(
            "vestibule_webhook_deliveries",
            "Event webhook POSTs, by result (delivered, failed: retried later, dead: given up).",
            ["result"],
            registry=r,
        )
        self.webhook_delivered = deliveries.labels("delivered")
        self.webhook_failed = deliveries.labels("failed")
        self.webhook_dead = deliveries.labels("dead")

    def relayed(self, kind: str) -> None:
        """One relayed message of ``kind`` (offer, answer, candidate)."""
        self._relayed[kind].inc()

    def watch(self, read: Callable[[], Iterable[Metric]]) -> None:
        """Add readings taken at each scrape (``read`` yields metric families)."""
        self.registry.register(_Reading(read))

    def admitted(self, knocked: dict[ParticipantId, float], events: Iterable[Event]) -> None:
        """Observe the wait of everyone ``events`` let into the call who had knocked (at the
        times in ``knocked``)."""
        for event in events:
            if event.kind is EventKind.PATIENT_ENTERED and event.participant in knocked:
                self.knock_to_admit.observe(max(0.0, event.at - knocked[event.participant]))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Reading(Collector):
    def __init__(self, read: Callable[[], Iterable[Metric]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        yield from self.read()

    def describe(self) -> list[Any]:
        return []  # read at each scrape: nothing to check at registration


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def labelled(
    kind: type[GaugeMetricFamily] | type[CounterMetricFamily],
    name: str,
    documentation: str,
    label: str,
    values: dict[str, float],
) -> Metric:
    """A family with one sample per value of one label (fixed words only)."""
    family = kind(name, documentation, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family
