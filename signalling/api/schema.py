"""Request and response schemas, written once: they validate requests and they generate
the OpenAPI document, so the two cannot drift apart.
"""

from __future__ import annotations

import datetime
import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from signalling.api.errors import ValidationFailed


class Kind(enum.Enum):
    STRING = "string"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    DATETIME = "date-time"  # ISO 8601 with a time zone, returned as a string
    OBJECT = "object"
    ARRAY = "array"


@dataclass(frozen=True, slots=True)
class Prop:
    """One field. ``nullable`` fields accept and may return null."""

    name: str
    kind: Kind
    description: str
    required: bool = False
    nullable: bool = False
    enum: tuple[str, ...] | None = None
    max_length: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    items: Schema | None = None  # for ARRAY of objects
    item_kind: Kind | None = None  # for ARRAY of scalars
    ref: str | None = None  # for OBJECT: a named schema

    def openapi(self) -> dict[str, Any]:
        if self.kind is Kind.OBJECT and self.ref is not None:
            out: dict[str, Any] = {"$ref": f"#/components/schemas/{self.ref}"}
            return {"anyOf": [out, {"type": "null"}]} if self.nullable else out
        if self.kind is Kind.ARRAY:
            if self.items is not None:
                item: dict[str, Any] = {"$ref": f"#/components/schemas/{self.items.name}"}
            else:
                assert self.item_kind is not None
                item = _scalar(self.item_kind)
            out = {"type": "array", "items": item}
        else:
            out = _scalar(self.kind)
        if self.enum is not None:
            out["enum"] = list(self.enum) + ([None] if self.nullable else [])
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.nullable:
            out["type"] = [out["type"], "null"]
        out["description"] = self.description
        return out


def _scalar(kind: Kind) -> dict[str, Any]:
    if kind is Kind.DATETIME:
        return {"type": "string", "format": "date-time"}
    return {"type": kind.value}


@dataclass(frozen=True, slots=True)
class Schema:
    """A named object schema. Unknown fields are refused (``VALIDATION_ERROR``)."""

    name: str
    props: tuple[Prop, ...]
    description: str = ""
    by_name: dict[str, Prop] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {p.name: p for p in self.props})

    def openapi(self, *, closed: bool = True) -> dict[str, Any]:
        return {
            "type": "object",
            "description": self.description,
            "properties": {p.name: p.openapi() for p in self.props},
            "required": [p.name for p in self.props if p.required],
            "additionalProperties": not closed,
        }

    def validate(self, data: object, *, partial: bool = False) -> dict[str, Any]:
        """The request body checked against the schema, with date-times parsed to unix
        seconds. ``partial`` (PATCH) makes every field optional. Raise ValidationFailed
        naming the first bad field."""
        if not isinstance(data, dict):
            raise ValidationFailed("the request body must be a JSON object")
        unknown = sorted(set(data) - set(self.by_name))
        if unknown:
            raise ValidationFailed(
                f"unknown field {unknown[0]!r}", {"field": unknown[0], "problem": "unknown"}
            )
        out: dict[str, Any] = {}
        for prop in self.props:
            if prop.name not in data:
                if prop.required and not partial:
                    raise _bad(prop, "required", f"{prop.name} is required")
                continue
            out[prop.name] = check(prop, data[prop.name])
        return out


def check(prop: Prop, value: object) -> Any:
    """One value checked (and date-times parsed) against ``prop``."""
    if value is None:
        if prop.nullable:
            return None
        raise _bad(prop, "null", f"{prop.name} must not be null")
    if prop.kind is Kind.STRING or prop.kind is Kind.DATETIME:
        if not isinstance(value, str):
            raise _bad(prop, "type", f"{prop.name} must be a string")
        if prop.max_length is not None and len(value) > prop.max_length:
            raise _bad(prop, "too_long", f"{prop.name} is longer than {prop.max_length}")
        if prop.enum is not None and value not in prop.enum:
            raise _bad(prop, "enum", f"{prop.name} must be one of {', '.join(prop.enum)}")
        if prop.kind is Kind.DATETIME:
            return parse_time(value, prop.name)
        return value
    if prop.kind is Kind.BOOLEAN:
        if not isinstance(value, bool):
            raise _bad(prop, "type", f"{prop.name} must be true or false")
        return value
    if prop.kind is Kind.INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(prop, "type", f"{prop.name} must be an integer")
        if prop.minimum is not None and value < prop.minimum:
            raise _bad(prop, "range", f"{prop.name} must be at least {prop.minimum}")
        if prop.maximum is not None and value > prop.maximum:
            raise _bad(prop, "range", f"{prop.name} must be at most {prop.maximum}")
        return value
    raise _bad(prop, "type", f"{prop.name} cannot be set")


def _bad(prop: Prop, problem: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, {"field": prop.name, "problem": problem})


def parse_time(value: str, name: str) -> float:
    """ISO 8601 with a time zone (or a date, taken as midnight UTC) to unix seconds."""
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(
            f"{name} must be an ISO 8601 date-time", {"field": name, "problem": "format"}
        ) from None
    if moment.tzinfo is None:
        if len(value) > 10:  # a time without a zone is ambiguous for a clinic's calendar
            raise ValidationFailed(
                f"{name} must include a time zone", {"field": name, "problem": "format"}
            )
        moment = moment.replace(tzinfo=datetime.UTC)
    seconds = moment.timestamp()
    if not math.isfinite(seconds):
        raise ValidationFailed(f"{name} is out of range", {"field": name, "problem": "range"})
    return seconds


def format_time(seconds: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC with a ``Z``, to the millisecond."""
    if seconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def query(params: Mapping[str, str], props: Sequence[Prop]) -> dict[str, Any]:
    """Query parameters checked against ``props`` (integers and booleans parsed from
    text); unknown parameters are refused."""
    known = {p.name: p for p in props}
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValidationFailed(
            f"unknown query parameter {unknown[0]!r}", {"field": unknown[0], "problem": "unknown"}
        )
    out: dict[str, Any] = {}
    for name, raw in params.items():
        prop = known[name]
        value: object = raw
        if prop.kind is Kind.INTEGER:
            try:
                value = int(raw)
            except ValueError:
                raise _bad(prop, "type", f"{name} must be an integer") from None
        out[name] = check(prop, value)
    return out


# Paging of list operations (limit/offset), shared so every list pages the same way.
MAX_PAGE = 100
DEFAULT_PAGE = 50
MAX_OFFSET = 100_000
PAGE = (
    Prop(
        "limit",
        Kind.INTEGER,
        f"Items per page (default {DEFAULT_PAGE}).",
        minimum=1,
        maximum=MAX_PAGE,
    ),
    Prop("offset", Kind.INTEGER, "Items to skip (default 0).", minimum=0, maximum=MAX_OFFSET),
)
