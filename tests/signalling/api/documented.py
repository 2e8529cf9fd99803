"""An HTTP client for the API tests that checks every response against the node's own
OpenAPI document: the status must be declared for the operation, and the body must match
the declared envelope and schema exactly (`tests.signalling.api.schemas.conform`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

from tests.signalling.api.schemas import conform

Json = Any
REQUEST_ID = re.compile(r"req_[0-9a-f]{16}")


def operation_of(doc: Json, method: str, path: str) -> Json:
    """The document's operation that ``method path`` (no query) is a request of; of the
    templates it fits, the one with most literal segments (``/bookings/cancel`` before
    ``/bookings/{id}``)."""
    parts = path.strip("/").split("/")
    best: tuple[int, Json] | None = None
    for template, methods in doc["paths"].items():
        names = template.strip("/").split("/")
        if len(names) != len(parts) or method.lower() not in methods:
            continue
        pairs = list(zip(names, parts, strict=True))
        if all(n == p or n.startswith("{") for n, p in pairs):
            literal = sum(n == p for n, p in pairs)
            if best is None or literal > best[0]:
                best = (literal, methods[method.lower()])
    assert best is not None, f"{method} {path} is not a documented operation"
    return best[1]


@dataclass
class Documented:
    http: httpx.AsyncClient
    doc: Json

    async def call(
        self, method: str, path: str, *, status: int | None = None, **kwargs: Any
    ) -> Json:
        """Send a request, check the response against the document; return its body."""
        response = await self.http.request(method, path, **kwargs)
        body = response.json()
        declared = operation_of(self.doc, method, path.split("?")[0])["responses"]
        code = str(response.status_code)
        assert code in declared, f"{method} {path}: undeclared status {code}: {body}"
        conform(self.doc, declared[code]["content"]["application/json"]["schema"], body)
        assert REQUEST_ID.fullmatch(body["meta"]["request_id"])
        if status is not None:
            assert response.status_code == status, body
        return body

    async def data(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Json:
        """The ``data`` of a request that must succeed with ``status``."""
        return (await self.call(method, path, status=status, **kwargs))["data"]

    async def error(self, method: str, path: str, status: int, code: str, **kwargs: Any) -> Json:
        """The ``error`` of a request that must fail with ``status`` and ``code``."""
        body = await self.call(method, path, status=status, **kwargs)
        assert body["error"]["code"] == code, body
        return body["error"]
