"""Operations of the REST API, declared once: each gives a Starlette route and its entry in
the OpenAPI document, from the same schemas that validate its requests."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from signalling.api.envelope import Authenticator, Handler, endpoint
from signalling.api.keys import ApiKeys
from signalling.api.schema import Prop, Schema
from signalling.api.sessions import ConsoleSessions
from signalling.metrics import Metrics

ERRORS = {
    400: "The body is not valid JSON (INVALID_JSON).",
    401: "No, unknown or revoked API key, or no valid console session (UNAUTHORIZED).",
    403: "The credentials are valid but do not allow this (NOT_A_CLINICIAN_LINK, ...).",
    404: "No such resource (NOT_FOUND).",
    409: "The action does not fit the resource's state (INVALID_STATE_TRANSITION, ...).",
    422: "A field or parameter is invalid (VALIDATION_ERROR, IDEMPOTENCY_KEY_REUSED).",
    503: "Storage is unreachable; nothing was changed (SERVICE_UNAVAILABLE).",
}


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str  # relative to /api/v1, with {name} parameters
    handler: Handler
    summary: str
    operation_id: str
    body: Schema | None = None
    partial_body: bool = False
    query: tuple[Prop, ...] = ()
    response: Schema | None = None  # the schema of ``data``
    many: bool = False  # ``data`` is a list of ``response``
    status: int = 200
    errors: tuple[int, ...] = (401, 422, 503)
    headers: tuple[Prop, ...] = ()
    public: bool = False  # no API key: the booking page's, used by patients
    console: bool = False  # a clinician's console session instead of an API key
    stream: str | None = None  # the media type of a streamed success response (SSE)
    description: str = ""


@dataclass(slots=True)
class Api:
    keys: ApiKeys
    sessions: ConsoleSessions | None = None  # for the console's operations
    metrics: Metrics | None = None
    title: str = "Vestibule API"
    version: str = "1.0.0"
    operations: list[Operation] = field(default_factory=list)
    schemas: dict[str, Schema] = field(default_factory=dict)

    def add(self, operation: Operation) -> None:
        self.operations.append(operation)
        for schema in (operation.body, operation.response):
            if schema is not None:
                self.schema(schema)

    def schema(self, schema: Schema) -> None:
        self.schemas[schema.name] = schema
        for prop in schema.props:
            if prop.items is not None:
                self.schema(prop.items)

    def is_public(self, path: str) -> bool:
        """Whether ``path`` (under the API's mount) has the shape of a public operation's,
        whatever its ids hold: one the router cannot match (a newline in an id) is still
        answered as that operation's would be, without a key."""
        return any(pattern.fullmatch(path) for pattern in self._public_patterns())

    def _public_patterns(self) -> list[re.Pattern[str]]:
        return [
            re.compile(re.sub(r"\\\{[^}]*\\\}", "[^/]*", re.escape(op.path)), re.DOTALL)
            for op in self.operations
            if op.public
        ]

    def routes(self) -> list[Route]:
        by_path: dict[str, dict[str, Callable[[Request], Any]]] = {}
        for op in self.operations:
            auth: Authenticator | None = self.keys
            if op.public:
                auth = None
            elif op.console:
                assert self.sessions is not None, "console operations need ConsoleSessions"
                auth = self.sessions
            by_path.setdefault(op.path, {})[op.method] = endpoint(auth, op.handler, self.metrics)
        routes = [
            Route(path, _dispatch(methods), methods=list(methods))
            for path, methods in by_path.items()
        ]

        async def document(request: Request) -> Response:
            return JSONResponse(self.openapi())

        return [Route("/openapi.json", document, methods=["GET"]), *routes]

    def openapi(self) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        for op in self.operations:
            paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version},
            "servers": [{"url": "/api/v1"}],
            "security": [{"bearer": []}],
            "paths": paths,
            "components": {
                "securitySchemes": {
                    "bearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "An API key (vk_...), made with `vestibule keys`.",
                    },
                    "console": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "A clinician's console session, from "
                        "POST /console/sessions.",
                    },
                },
                "schemas": {name: schema.openapi() for name, schema in sorted(self.schemas.items())}
                | {"Meta": _META, "Error": _ERROR},
            },
        }


def _dispatch(methods: dict[str, Callable[[Request], Any]]) -> Callable[[Request], Any]:
    async def route(request: Request) -> Response:
        response: Response = await methods[request.method](request)
        return response

    return route


_META: dict[str, Any] = {
    "type": "object",
    "properties": {
        "request_id": {"type": "string"},
        "limit": {"type": "integer"},
        "offset": {"type": "integer"},
        "has_more": {"type": "boolean"},
        "next_offset": {"type": ["integer", "null"]},
    },
    "required": ["request_id"],
    "additionalProperties": True,
}
_ERROR: dict[str, Any] = {
    "type": "object",
    "properties": {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "details": {"type": "object"},
    },
    "required": ["code", "message", "details"],
    "additionalProperties": False,
}


def _envelope(data: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "data": data if data is not None else {"type": "null"},
            "meta": {"$ref": "#/components/schemas/Meta"},
            "error": {"type": "null"}
            if data is not None
            else {"$ref": "#/components/schemas/Error"},
        },
        "required": ["data", "meta", "error"],
        "additionalProperties": False,
    }


def _operation(op: Operation) -> dict[str, Any]:
    data: dict[str, Any] | None = None
    if op.response is not None:
        data = {"$ref": f"#/components/schemas/{op.response.name}"}
        if op.many:
            data = {"type": "array", "items": data}
    params: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "maxLength": 200},
        }
        for name in _path_params(op.path)
    ]
    params += [
        {
            "name": p.name,
            "in": "query",
            "required": False,
            "schema": _param(p),
            "description": p.description,
        }
        for p in op.query
    ]
    params += [
        {
            "name": p.name,
            "in": "header",
            "required": p.required,
            "schema": _param(p),
            "description": p.description,
        }
        for p in op.headers
    ]
    responses: dict[str, Any] = {
        str(op.status): {
            "description": "Success.",
            "content": {"application/json": {"schema": _envelope(data or {"type": "null"})}},
        }
    }
    if op.stream is not None:
        responses[str(op.status)] = {
            "description": "A stream of server-sent events (see the operation's description).",
            "content": {op.stream: {"schema": {"type": "string"}}},
        }
    errors = set(op.errors) | ({404} if _path_params(op.path) else set())
    if op.public:
        errors.discard(401)
    for status in sorted(errors):
        responses[str(status)] = {
            "description": ERRORS[status],
            "content": {"application/json": {"schema": _envelope(None)}},
        }
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "parameters": params,
        "responses": responses,
    }
    if op.public:
        out["security"] = []  # no API key
    elif op.console:
        out["security"] = [{"console": []}]
    if op.description:
        out["description"] = op.description
    if op.body is not None:
        schema = op.body.openapi()
        if op.partial_body:
            schema["required"] = []
        out["requestBody"] = {
            "required": not op.partial_body,
            "content": {"application/json": {"schema": schema}},
        }
    return out


def _param(prop: Prop) -> dict[str, Any]:
    schema = prop.openapi()
    schema.pop("description", None)
    return schema


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]
