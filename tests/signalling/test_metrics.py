"""``/metrics``: scraped from a real node while a visit goes through it, in the Prometheus
text format; what is counted, and that no label names a room, a person or a token."""

from __future__ import annotations

import json

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from rooms.roles import Role
from signalling.client import ClientError
from tests.signalling.conftest import Node


async def scrape(node: Node) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of the node's /metrics: name -> labels -> value."""
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.get(f"http://127.0.0.1:{node.port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def value(
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str
) -> float:
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


async def test_a_visit_is_counted_and_no_label_names_anyone(node: Node) -> None:
    room = "r_metrics"
    before = await scrape(node)
    assert value(before, "vestibule_connections") == 0
    patient_token = node.token(room, Role.PATIENT, subject="pat-1", name="Sam Patel")
    patient = await node.connect(room=room, token=patient_token)
    await patient.expect("waiting")
    # A guest with no name: told so, still connected, not joined (nor authenticated).
    nameless = await connect(node.url, compression=None)
    hello = {"type": "hello", "room": room, "token": node.token(room, Role.GUEST)}
    await nameless.send(json.dumps(hello))
    assert json.loads(await nameless.recv())["code"] == "name_required"
    host = await node.connect(room=room, token=node.token(room, Role.HOST, subject="doc-1"))
    during = await scrape(node)
    assert value(during, "vestibule_connections") == 2  # the nameless guest has not joined
    assert value(during, "vestibule_waiting_participants") == 1
    assert value(during, "vestibule_unauthenticated_connections") == 1
    assert value(during, "vestibule_client_errors_total", code="name_required") == 1
    node.clock.advance(42.0)
    await host.start()
    await patient.expect("admitted")
    for _ in range(3):
        await patient.offer(host.participant_id, "v=0\r\n")
        await host.expect("offer")
    await patient.candidate(host.participant_id, None)
    await host.expect("candidate")
    await patient.admit(host.participant_id)  # forbidden: counted by its code
    await patient.expect("error")

    after = await scrape(node)
    assert value(after, "vestibule_hellos_total") == 2
    assert value(after, "vestibule_relayed_messages_total", kind="offer") == 3
    assert value(after, "vestibule_relayed_messages_total", kind="candidate") == 1
    assert value(after, "vestibule_relayed_messages_total", kind="answer") == 0
    assert value(after, "vestibule_client_errors_total", code="forbidden") == 1
    assert value(after, "vestibule_knock_to_admit_seconds_count") == 1
    assert value(after, "vestibule_knock_to_admit_seconds_sum") == 42.0
    assert value(after, "vestibule_knock_to_admit_seconds_bucket", le="60.0") == 1
    assert value(after, "vestibule_knock_to_admit_seconds_bucket", le="30.0") == 0
    assert value(after, "vestibule_waiting_participants") == 0
    assert value(after, "vestibule_loop_up", loop="projector") == 1
    assert value(after, "vestibule_loop_restarts_total", loop="feed") == 0
    assert value(after, "vestibule_redis_errors_total", where="command") == 0

    await nameless.close()
    await patient.leave()
    assert await patient.closed() == 1000
    with_hello = await node.connect(room=room, token=node.token(room, Role.PATIENT, subject="p2"))
    await with_hello.expect("admitted")  # the call is on: a patient walks in
    bad = node.token("r_other", Role.PATIENT, subject="p3")
    with pytest.raises(ClientError):
        await node.connect(room=room, token=bad)
    final = await scrape(node)
    assert value(final, "vestibule_hello_refusals_total", code="wrong_room") == 1
    ids = {room, patient.participant_id, host.participant_id, with_hello.participant_id}
    secrets = {"Sam Patel", "pat-1", "doc-1", patient_token}
    for name, series in final.items():
        for labels in series:
            for _, label in labels:
                assert label not in ids | secrets, (name, label)
                assert not label.startswith(("p_", "g_", "r_", "v1.")), (name, label)
