"""A small validator for the OpenAPI 3.1 subset the API emits, shared by the API tests: every
response a test receives is checked against the node's own served document."""

from __future__ import annotations

import datetime
from typing import Any

Json = Any  # a decoded JSON value


def conform(doc: Json, schema: Json, value: Json, where: str = "$") -> None:
    """Raise AssertionError unless ``value`` matches ``schema`` (refs resolved in ``doc``)."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        conform(doc, doc["components"]["schemas"][name], value, where)
        return
    if "anyOf" in schema:
        failures = []
        for option in schema["anyOf"]:
            try:
                conform(doc, option, value, where)
                return
            except AssertionError as exc:
                failures.append(str(exc))
        raise AssertionError(f"{where}: matches no option: {failures}")
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        assert any(_is(t, value) for t in types), f"{where}: {value!r} is not {types}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if isinstance(value, str):
        if "maxLength" in schema:
            assert len(value) <= schema["maxLength"], f"{where}: too long"
        if schema.get("format") == "date-time":
            moment = datetime.datetime.fromisoformat(value)
            assert moment.tzinfo is not None, f"{where}: no time zone in {value!r}"
            assert value.endswith("Z"), f"{where}: {value!r} is not UTC"
    if isinstance(value, int) and not isinstance(value, bool):
        assert value >= schema.get("minimum", value), f"{where}: below minimum"
        assert value <= schema.get("maximum", value), f"{where}: above maximum"
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        missing = set(schema.get("required", [])) - set(value)
        assert not missing, f"{where}: missing {sorted(missing)}"
        if schema.get("additionalProperties") is False:
            extra = set(value) - set(props)
            assert not extra, f"{where}: undeclared {sorted(extra)}"
        for key, item in value.items():
            if key in props:
                conform(doc, props[key], item, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            conform(doc, schema["items"], item, f"{where}[{index}]")


def _is(kind: str, value: Json) -> bool:
    return {
        "null": value is None,
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
    }[kind]
