"""Requests under /api/ that match no operation still get the envelope, after the key check."""

from __future__ import annotations

import httpx

from tests.signalling.conftest import Node


async def test_an_unmatched_api_path_is_a_json_404_only_for_a_valid_key(node: Node) -> None:
    key = await node.api_key()
    async with httpx.AsyncClient(base_url=node.http) as http:
        # A newline in an id: the router cannot match the path at all.
        for path in ("/appointments/a%0Ab", "/no/such/thing"):
            anonymous = await http.get(path)
            assert anonymous.status_code == 401
            assert anonymous.json()["error"]["code"] == "UNAUTHORIZED"
            known = await http.get(path, headers={"Authorization": f"Bearer {key}"})
            assert known.status_code == 404
            assert known.headers["content-type"].startswith("application/json")
            body = known.json()
            assert body["data"] is None
            assert body["error"]["code"] == "NOT_FOUND"
            assert body["meta"]["request_id"].startswith("req_")
        wrong = await http.delete("/appointments", headers={"Authorization": f"Bearer {key}"})
        assert wrong.status_code == 405
        assert wrong.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as http:
        page = await http.get("/no/such/page")  # outside the API: plain text as usual
        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/plain")


async def test_a_public_operations_path_is_answered_without_a_key(node: Node) -> None:
    """The booking page's operations take no key: a path of their shape that the router
    cannot match (a newline in a hold's id) is their 404, whatever key comes with it."""
    key = await node.api_key()
    async with httpx.AsyncClient(base_url=node.http) as http:
        for headers in ({}, {"Authorization": f"Bearer {key}"}, {"Authorization": "Bearer vk_x"}):
            answer = await http.post("/holds/a%0Ab/confirm", json={}, headers=headers)
            assert answer.status_code == 404, answer.text
            assert answer.json()["error"]["code"] == "NOT_FOUND"
        # Not a public operation's shape: the key is checked, as before.
        assert (await http.post("/holds/a%0Ab/unknown", json={})).status_code == 401
