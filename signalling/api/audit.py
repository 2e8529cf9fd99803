"""``GET /rooms/{room_id}/audit``: the room's audit trail (`signalling.projector`): who
admitted or denied whom, and when its calls started and ended, oldest first. Kept for
`Settings.audit_retention` (a year by default), longer than the room's events. Ids only,
never names."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from rooms.ids import RoomId
from signalling.api.context import ApiContext
from signalling.api.envelope import Call
from signalling.api.registry import Api, Operation
from signalling.api.schema import Kind, Prop, Schema, format_time
from signalling.projector import AUDITED, read_audit


def _field(name: str, description: str) -> Prop:
    return Prop(name, Kind.STRING, description, required=True, nullable=True)


AUDIT_ENTRY = Schema(
    "AuditEntry",
    (
        Prop(
            "kind",
            Kind.STRING,
            "What was decided: admitted or denied (by the host), session_started or "
            "session_ended (a call).",
            required=True,
            enum=tuple(sorted(kind.value for kind in AUDITED)),
        ),
        Prop("at", Kind.DATETIME, "When (UTC).", required=True),
        _field("actor_id", "Who decided (a participant id); null when the server did."),
        _field("participant_id", "Whom it concerns (a participant id, never a name)."),
        _field("session_id", "The call it was in."),
        _field("appointment_id", "The appointment it was for."),
    ),
    "One decision of the room's audit trail.",
)


def register(api: Api, ctx: ApiContext) -> None:
    async def audit(call: Call) -> Response:
        room = RoomId(call.path_id("room_id"))
        entries = await read_audit(ctx.redis, room)
        return call.ok([_entry(e) for e in entries], room_id=room)

    api.add(
        Operation(
            "GET",
            "/rooms/{room_id}/audit",
            audit,
            "The room's audit trail: admits, denials, calls started and ended, oldest first",
            "getRoomAudit",
            response=AUDIT_ENTRY,
            many=True,
            errors=(401, 404, 503),
        )
    )


def _entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": entry["kind"],
        "at": format_time(entry["at"]),
        "actor_id": entry["actor"],
        "participant_id": entry["participant"],
        "session_id": entry["session"],
        "appointment_id": entry["appointment"],
    }
