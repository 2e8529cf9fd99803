"""Availability windows and days off over real HTTP to a real node and redis-server: add,
edit, switch off, remove (soft), validity, and what bad input gets. Every response is
checked against the node's own OpenAPI document."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.signalling.api.documented import Documented
from tests.signalling.conftest import Node

BASE = "/clinicians/cli_1/availability"
WINDOW = {"day": "wednesday", "start_minute": 540, "end_minute": 720, "time_zone": "Europe/London"}


@pytest.fixture
async def api(node: Node) -> AsyncIterator[Documented]:
    secret = await node.api_key()
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(base_url=node.http, headers=headers, timeout=10.0) as http:
        yield Documented(http, (await http.get("/openapi.json")).json())


async def windows(api: Documented, query: str = "") -> list[Any]:
    listed: list[Any] = await api.data("GET", f"{BASE}/windows{query}")
    return listed


async def test_a_window_is_added_read_listed_and_edited(api: Documented) -> None:
    made = await api.data("POST", f"{BASE}/windows", 201, json=WINDOW | {"buffer_minutes": 5})
    assert made["id"].startswith("aw_")
    assert {k: made[k] for k in WINDOW} == WINDOW
    assert made["clinician_id"] == "cli_1"
    assert made["slot_minutes"] is None
    assert made["slot_length_minutes"] == 30  # the node's default
    assert (made["active"], made["deleted_at"], made["valid_from"]) == (True, None, None)
    one = f"{BASE}/windows/{made['id']}"
    assert await api.data("GET", one) == made
    assert [w["id"] for w in await windows(api)] == [made["id"]]
    edit = {"start_minute": 600, "slot_minutes": 20, "valid_from": "2030-01-01"}
    edited = await api.data("PATCH", one, json=edit)
    assert (edited["start_minute"], edited["slot_length_minutes"]) == (600, 20)
    assert edited["valid_from"] == "2030-01-01"
    assert edited["created_at"] == made["created_at"]
    # Another clinician's list is their own.
    assert await api.data("GET", "/clinicians/cli_2/availability/windows") == []


async def test_a_window_is_switched_off_and_on_and_removed_softly(api: Documented) -> None:
    made = await api.data("POST", f"{BASE}/windows", 201, json=WINDOW)
    one = f"{BASE}/windows/{made['id']}"
    off = await api.data("PATCH", one, json={"active": False})
    assert off["active"] is False
    assert [w["active"] for w in await windows(api)] == [False]  # still listed
    assert (await api.data("PATCH", one, json={"active": True}))["active"] is True
    removed = await api.data("DELETE", one)
    assert removed["deleted_at"] is not None
    assert await windows(api) == []
    kept = await windows(api, "?include_removed=true")
    assert [w["id"] for w in kept] == [made["id"]]
    assert kept[0]["start_minute"] == 540  # kept for history
    assert await api.data("DELETE", one) == removed  # removing again changes nothing
    error = await api.error("PATCH", one, 422, "VALIDATION_ERROR", json={"active": True})
    assert error["details"] == {"field": "id", "problem": "removed"}


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"time_zone": "Mars/Base"}, "time_zone", "unknown"),
        ({"end_minute": 500}, "end_minute", "range"),
        ({"end_minute": 1441}, "end_minute", "range"),
        ({"day": "someday"}, "day", "enum"),
        ({"slot_minutes": 200}, "slot_minutes", "too_long"),
        ({"valid_from": "2030-02-30"}, "valid_from", "format"),
        ({"valid_from": "20300101"}, "valid_from", "format"),
        ({"valid_from": "2030-02-02", "valid_until": "2030-02-01"}, "valid_until", "range"),
        ({"clinician_id": "cli_2"}, "clinician_id", "unknown"),
    ],
)
async def test_a_bad_window_is_refused_and_nothing_is_written(
    api: Documented, change: dict[str, Any], field: str, problem: str
) -> None:
    error = await api.error(
        "POST", f"{BASE}/windows", 422, "VALIDATION_ERROR", json=WINDOW | change
    )
    assert error["details"] == {"field": field, "problem": problem}
    assert await windows(api, "?include_removed=true") == []


async def test_a_window_needs_its_day_times_and_zone(api: Documented) -> None:
    for name in WINDOW:
        body = {k: v for k, v in WINDOW.items() if k != name}
        error = await api.error("POST", f"{BASE}/windows", 422, "VALIDATION_ERROR", json=body)
        assert error["details"] == {"field": name, "problem": "required"}


async def test_a_replayed_create_adds_one_window(api: Documented) -> None:
    headers = {"Idempotency-Key": "add-monday"}
    first = await api.data("POST", f"{BASE}/windows", 201, json=WINDOW, headers=headers)
    again = await api.data("POST", f"{BASE}/windows", 201, json=WINDOW, headers=headers)
    assert again == first
    assert len(await windows(api)) == 1


async def test_unknown_windows_and_clinician_ids_that_name_nothing(api: Documented) -> None:
    await api.error("GET", f"{BASE}/windows/aw_nope", 404, "NOT_FOUND")
    await api.error("DELETE", f"{BASE}/exceptions/ax_nope", 404, "NOT_FOUND")
    error = await api.error(
        "GET", "/clinicians/%20cli/availability/windows", 422, "VALIDATION_ERROR"
    )
    assert error["details"] == {"field": "clinician_id", "problem": "format"}


async def test_days_off_are_listed_by_date_and_removed_softly(api: Documented) -> None:
    late = await api.data(
        "POST", f"{BASE}/exceptions", 201, json={"date": "2030-12-25", "note": " Holiday "}
    )
    early = await api.data("POST", f"{BASE}/exceptions", 201, json={"date": "2030-06-01"})
    assert late["id"].startswith("ax_")
    assert (late["date"], late["note"]) == ("2030-12-25", "Holiday")
    listed = await api.data("GET", f"{BASE}/exceptions")
    assert [d["id"] for d in listed] == [early["id"], late["id"]]
    removed = await api.data("DELETE", f"{BASE}/exceptions/{early['id']}")
    assert removed["deleted_at"] is not None
    assert [d["id"] for d in await api.data("GET", f"{BASE}/exceptions")] == [late["id"]]
    everything = await api.data("GET", f"{BASE}/exceptions?include_removed=true")
    assert len(everything) == 2
    for bad in ({"date": "tomorrow"}, {"date": "2030-01-01", "note": " "}):
        error = await api.error("POST", f"{BASE}/exceptions", 422, "VALIDATION_ERROR", json=bad)
        assert error["details"]["problem"] == "format"
    assert len(await api.data("GET", f"{BASE}/exceptions?include_removed=true")) == 2


async def test_availability_needs_an_api_key(node: Node) -> None:
    async with httpx.AsyncClient(base_url=node.http, timeout=10.0) as http:
        for method, path in (("GET", f"{BASE}/windows"), ("POST", f"{BASE}/windows"),
                             ("POST", f"{BASE}/exceptions")):  # fmt: skip
            response = await http.request(method, path, json=WINDOW)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "UNAUTHORIZED"


async def test_concurrent_edits_of_one_window_are_both_kept(api: Documented) -> None:
    """Each edit is a compare-and-set on the record: one decided on a stale read is decided
    again, so neither edit is lost."""
    made = await api.data("POST", f"{BASE}/windows", 201, json=WINDOW)
    one = f"{BASE}/windows/{made['id']}"
    edits = [{"buffer_minutes": 10}, {"slot_minutes": 20}, {"valid_until": "2031-01-01"},
             {"appointment_type_id": "type_1"}, {"start_minute": 600}]  # fmt: skip
    await asyncio.gather(*(api.data("PATCH", one, json=edit) for edit in edits))
    final = await api.data("GET", one)
    assert (final["buffer_minutes"], final["slot_minutes"], final["valid_until"]) == (
        10,
        20,
        "2031-01-01",
    )
    assert (final["appointment_type_id"], final["start_minute"]) == ("type_1", 600)
