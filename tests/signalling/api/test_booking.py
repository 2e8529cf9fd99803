"""Self-booking over real HTTP to a real node and redis-server (seed 001): slots, holds,
confirmation, expiry on the node's injected clock, giving up, cancelling from the patient's
link and from the console, and the booking events in the appointment's activity. Every
response is checked against the node's own OpenAPI document; the public operations are
called with no API key.

The clock is the node's `FakeClock` (2023-11-14T22:13:20Z, a Tuesday); the clinician's
window is Wednesdays 09:00-12:00 UTC, so the first slots are the next morning.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from rooms.ids import AppointmentId
from rooms.roles import Role
from signalling.calendar import Calendar, Outcome
from tests.signalling.api.documented import Documented
from tests.signalling.api.test_invitations import Smtp, smtp  # noqa: F401 -- a fixture
from tests.signalling.conftest import Node, Serve, eventually
from tests.support import token

C = "cli_1"
WEDNESDAY = "2023-11-15"
NINE = f"{WEDNESDAY}T09:00:00.000Z"
HALF = f"{WEDNESDAY}T09:30:00.000Z"
WINDOW = {"day": "wednesday", "start_minute": 540, "end_minute": 720, "time_zone": "UTC"}
PATIENT = {"attendee_name": "Sam Patel", "attendee_email": "sam@example.org"}
SWEEP = {"hold_sweep": 0.02, "delivery_poll": 0.01}


@dataclass
class Booking:
    node: Node
    api: Documented  # with the clinic's API key
    public: Documented  # no key: the booking page

    async def window(self, clinician: str = C, **changes: Any) -> Any:
        path = f"/clinicians/{clinician}/availability/windows"
        return await self.api.data("POST", path, 201, json=WINDOW | changes)

    async def slots(self, query: str = f"from={WEDNESDAY}&to={WEDNESDAY}") -> list[str]:
        data = await self.public.data("GET", f"/clinicians/{C}/slots?{query}")
        return [s["start_time"] for s in data]

    async def hold(self, start: str = NINE, clinician: str = C) -> Any:
        return await self.public.data(
            "POST", f"/clinicians/{clinician}/holds", 201, json={"start_time": start}
        )

    async def confirm(self, held: Any, **fields: Any) -> Any:
        body = {"hold_secret": held["hold_secret"]} | PATIENT | fields
        return await self.public.data("POST", f"/holds/{held['id']}/confirm", json=body)

    async def clinic_books(self, start: str = NINE, end: str = HALF, **fields: Any) -> Any:
        """An appointment of the clinic's system for the clinician (POST /appointments)."""
        body = {"title": "From the EHR", "start_time": start, "end_time": end} | fields
        return await self.api.data("POST", "/appointments", 201, json=body | {
            "clinician_profile_id": C,
        })  # fmt: skip

    async def appointment(self, appointment: str) -> Any:
        return await self.api.data("GET", f"/appointments/{appointment}")

    async def activity(self, appointment: str) -> list[tuple[str, str | None]]:
        data = await self.api.data("GET", f"/appointments/{appointment}/activity")
        return [(e["kind"], e["actor"]) for e in data]

    async def wait_for(self, appointment: str, **expected: Any) -> Any:
        """Poll (bounded) until the appointment has the expected fields."""
        data: Any = None
        for _ in range(500):
            data = await self.appointment(appointment)
            if all(data[k] == v for k, v in expected.items()):
                return data
            await asyncio.sleep(0.02)
        raise AssertionError(f"appointment never had {expected}: {data}")


Make = Callable[..., Awaitable[Booking]]


@pytest.fixture
async def booking(serve: Serve) -> AsyncIterator[Make]:
    """A factory: ``await booking(**overrides)`` starts a node and its HTTP clients."""
    clients: list[httpx.AsyncClient] = []

    async def make(**overrides: Any) -> Booking:
        node = await serve(**(SWEEP | overrides))
        secret = await node.api_key()
        api = httpx.AsyncClient(
            base_url=node.http, headers={"Authorization": f"Bearer {secret}"}, timeout=10.0
        )
        public = httpx.AsyncClient(base_url=node.http, timeout=10.0)
        clients.extend((api, public))
        doc = (await public.get("/openapi.json")).json()
        return Booking(node, Documented(api, doc), Documented(public, doc))

    try:
        yield make
    finally:
        for client in clients:
            await client.aclose()


@pytest.fixture
async def open_booking(booking: Make) -> Booking:
    return await booking()


# --- slots ------------------------------------------------------------------------------------


async def test_a_clinician_without_availability_cannot_be_booked(open_booking: Booking) -> None:
    b = open_booking
    await b.public.error("GET", f"/clinicians/{C}/slots", 404, "NOT_FOUND")
    await b.public.error(
        "POST", f"/clinicians/{C}/holds", 404, "NOT_FOUND", json={"start_time": NINE}
    )
    made = await b.window()
    path = f"/clinicians/{C}/availability/windows/{made['id']}"
    await b.api.data("PATCH", path, json={"active": False})  # switched off: not bookable
    await b.public.error("GET", f"/clinicians/{C}/slots", 404, "NOT_FOUND")


async def test_slots_come_from_the_windows_in_the_patients_time_zone(
    open_booking: Booking,
) -> None:
    b = open_booking
    await b.window(slot_minutes=45, buffer_minutes=15)  # 09:00, 10:00, 11:00
    body = await b.public.call(
        "GET", f"/clinicians/{C}/slots?from=2023-11-15&to=2023-11-22&time_zone=America/New_York"
    )
    assert body["meta"]["time_zone"] == "America/New_York"
    assert body["meta"]["hold_seconds"] == 900
    shown = [(s["date"], s["local_time"], s["utc_offset"]) for s in body["data"]]
    assert shown == [
        ("2023-11-15", "04:00", "-05:00"),
        ("2023-11-15", "05:00", "-05:00"),
        ("2023-11-15", "06:00", "-05:00"),
        ("2023-11-22", "04:00", "-05:00"),
        ("2023-11-22", "05:00", "-05:00"),
        ("2023-11-22", "06:00", "-05:00"),
    ]
    assert body["data"][0]["start_time"] == NINE
    assert body["data"][0]["duration_minutes"] == 45


async def test_slots_leave_out_booked_times_days_off_and_the_minimum_notice(
    open_booking: Booking,
) -> None:
    b = open_booking
    await b.window()
    every = await b.slots()
    assert len(every) == 6
    # An appointment of the clinic's system (09:40-10:10) takes two slots.
    await b.clinic_books(f"{WEDNESDAY}T09:40:00Z", f"{WEDNESDAY}T10:10:00Z")
    assert await b.slots() == [every[0], *every[3:]]
    await b.api.data(
        "POST", f"/clinicians/{C}/availability/exceptions", 201, json={"date": WEDNESDAY}
    )
    assert await b.slots() == []
    assert len(await b.slots("from=2023-11-22&to=2023-11-22")) == 6
    # Too soon: an hour's notice by default.
    b.node.clock.now = _seconds(f"{WEDNESDAY}T09:15:00Z") - 3600
    assert (await b.slots("from=2023-11-22&to=2023-11-22"))[0] == "2023-11-22T09:00:00.000Z"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("time_zone=Nowhere/Land", "time_zone"),
        ("from=2023-11-20&to=2023-11-19", "to"),
        ("from=2023-11-20&to=2023-12-21", "to"),
        ("from=soon", "from"),
        ("colour=blue", "colour"),
    ],
)
async def test_bad_slot_queries_are_refused(open_booking: Booking, query: str, field: str) -> None:
    await open_booking.window()
    error = await open_booking.public.error(
        "GET", f"/clinicians/{C}/slots?{query}", 422, "VALIDATION_ERROR"
    )
    assert error["details"]["field"] == field


# --- holds --------------------------------------------------------------------------------


async def test_a_hold_takes_the_slot_and_a_second_booker_is_told_it_is_taken(
    open_booking: Booking,
) -> None:
    b = open_booking
    await b.window()
    held = await b.hold()
    assert held["status"] == "held"
    assert (held["start_time"], held["end_time"]) == (NINE, HALF)
    assert held["hold_expires_at"] == _iso(b.node.clock.now + 900)
    assert len(held["hold_secret"]) >= 32
    assert held["video_link"] is None
    error = await b.public.error(
        "POST", f"/clinicians/{C}/holds", 409, "SLOT_TAKEN", json={"start_time": NINE}
    )
    assert error["details"] == {"start_time": NINE}
    assert NINE not in await b.slots()
    # The clinic sees it held, booked on the booking page, with no patient data yet.
    record = await b.appointment(held["id"])
    assert (record["status"], record["booking_source"]) == ("held", "booking_page")
    assert record["attendee_name"] is record["attendee_email"] is record["video_link"] is None
    listed = await b.api.data("GET", "/appointments?status=held")
    assert [a["id"] for a in listed] == [held["id"]]
    assert await b.activity(held["id"]) == [("held", "patient")]


async def test_only_a_slot_can_be_held_and_not_too_soon(open_booking: Booking) -> None:
    b = open_booking
    await b.window()
    for start, problem in (
        (f"{WEDNESDAY}T09:10:00Z", "not_a_slot"),
        ("2023-11-16T09:00:00Z", "not_a_slot"),  # a Thursday
        (f"{WEDNESDAY}T11:45:00Z", "not_a_slot"),  # would end after the window
    ):
        error = await b.public.error(
            "POST", f"/clinicians/{C}/holds", 409, "SLOT_UNAVAILABLE", json={"start_time": start}
        )
        assert error["details"]["problem"] == problem
    b.node.clock.now = _seconds(NINE) - 600
    error = await b.public.error(
        "POST", f"/clinicians/{C}/holds", 409, "SLOT_UNAVAILABLE", json={"start_time": NINE}
    )
    assert error["details"]["problem"] == "too_soon"
    assert await b.api.data("GET", "/appointments") == []  # nothing was written


async def test_a_hold_is_confirmed_with_the_patients_name_and_email(
    booking: Make,
    smtp: Smtp,  # noqa: F811 -- the fixture
) -> None:
    b = await booking(**smtp.settings())
    await b.window(appointment_type_id="type_video")
    held = await b.hold()
    wrong = {"hold_secret": "not-it"} | PATIENT
    await b.public.error("POST", f"/holds/{held['id']}/confirm", 404, "NOT_FOUND", json=wrong)
    booked = await b.confirm(held)
    assert booked["status"] == "confirmed"
    assert booked["hold_expires_at"] is None
    assert booked["invitation_channel"] == "email"
    link = urlsplit(booked["video_link"])
    assert link.path.startswith("/join/")
    assert link.fragment
    assert not link.query
    record = await b.appointment(held["id"])
    assert (record["attendee_name"], record["attendee_email"]) == ("Sam Patel", "sam@example.org")
    assert record["is_remote"]
    assert record["remote_channel"] == "video"
    assert record["video_link"] == booked["video_link"]
    assert record["meeting_url"] is not None  # the clinician's, never given to the patient
    assert record["appointment_type_id"] == "type_video"
    assert "meeting_url" not in booked
    # A retry (a double click) changes nothing and answers the same.
    again = await b.confirm(held)
    assert again["video_link"] == booked["video_link"]
    assert await b.activity(held["id"]) == [("held", "patient"), ("confirmed", "patient")]
    # The invitation went out by e-mail, with the join link.
    await eventually(lambda: len(smtp.inbox.envelopes) == 1, what="the invitation e-mail")
    assert smtp.inbox.envelopes[0].rcpt_tos == ["sam@example.org"]
    assert booked["video_link"] in smtp.inbox.message().get_content()
    # Five minutes before the start, the patient joins their room and waits.
    b.node.clock.now = _seconds(NINE) - 300
    room, token = link.path.removeprefix("/join/"), link.fragment
    patient = await b.node.connect(room=room, token=token)
    assert patient.welcome["name"] == "Sam Patel"
    assert patient.welcome["stage"] == "waiting"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"attendee_email": "not an address"}, "attendee_email"),
        ({"attendee_name": "   "}, "attendee_name"),
        ({"attendee_name": "Sam\x07"}, "attendee_name"),
    ],
)
async def test_a_confirmation_with_bad_details_is_refused_and_the_hold_stays(
    open_booking: Booking, fields: dict[str, Any], field: str
) -> None:
    b = open_booking
    await b.window()
    held = await b.hold()
    body = {"hold_secret": held["hold_secret"]} | PATIENT | fields
    error = await b.public.error(
        "POST", f"/holds/{held['id']}/confirm", 422, "VALIDATION_ERROR", json=body
    )
    assert error["details"]["field"] == field
    assert (await b.appointment(held["id"]))["status"] == "held"
    assert (await b.confirm(held))["status"] == "confirmed"


async def test_an_expired_hold_frees_the_slot_at_once_and_is_marked_by_the_sweeper(
    open_booking: Booking,
) -> None:
    b = open_booking
    await b.window()
    held = await b.hold()
    b.node.clock.advance(899)
    await b.public.error(
        "POST", f"/clinicians/{C}/holds", 409, "SLOT_TAKEN", json={"start_time": NINE}
    )
    b.node.clock.advance(1)  # the hold's expiry time: the slot is free, whatever has run
    assert NINE in await b.slots()
    error = await b.public.error(
        "POST",
        f"/holds/{held['id']}/confirm",
        409,
        "HOLD_EXPIRED",
        json={"hold_secret": held["hold_secret"]} | PATIENT,
    )
    assert error["details"] == {"expired_at": held["hold_expires_at"]}
    # The sweeper (on the node's clock) marks it expired, once, and says so.
    await b.wait_for(held["id"], status="expired")
    assert await b.activity(held["id"]) == [("held", "patient"), ("expired", "system")]
    listed = await b.api.data("GET", "/appointments?status_in=held,expired")
    assert [a["status"] for a in listed] == ["expired"]
    second = await b.hold()
    assert second["id"] != held["id"]
    await b.public.error(
        "POST",
        f"/holds/{held['id']}/confirm",
        409,
        "HOLD_EXPIRED",
        json={"hold_secret": held["hold_secret"]} | PATIENT,
    )


async def test_an_expired_hold_keeps_no_patient_data(open_booking: Booking) -> None:
    # The patient typed their details and confirmed just too late.
    b = open_booking
    await b.window()
    held = await b.hold()
    calendar = Calendar(b.node.redis)
    appointment = AppointmentId(held["id"])
    b.node.clock.advance(900)
    assert await calendar.confirm(C, appointment, secret=held["hold_secret"],
                                  now=b.node.clock.now) is Outcome.EXPIRED  # fmt: skip
    record = await b.wait_for(held["id"], status="expired")
    assert record["attendee_name"] is record["attendee_email"] is None


async def test_a_hold_given_up_frees_the_slot(open_booking: Booking) -> None:
    b = open_booking
    await b.window()
    held = await b.hold()
    path = f"/holds/{held['id']}/release"
    await b.public.error("POST", path, 404, "NOT_FOUND", json={"hold_secret": "nope"})
    released = await b.public.data("POST", path, json={"hold_secret": held["hold_secret"]})
    assert released["status"] == "cancelled"
    assert NINE in await b.slots()
    assert await b.activity(held["id"]) == [("held", "patient"), ("cancelled", "patient")]
    assert (await b.appointment(held["id"]))["cancelled_by"] == "patient"
    await b.public.error("POST", path, 404, "NOT_FOUND", json={"hold_secret": held["hold_secret"]})


async def test_an_api_appointment_over_a_hold_stops_its_confirmation(open_booking: Booking) -> None:
    b = open_booking
    await b.window()
    held = await b.hold()
    await b.clinic_books(f"{WEDNESDAY}T09:15:00Z", f"{WEDNESDAY}T09:45:00Z")
    body = {"hold_secret": held["hold_secret"]} | PATIENT
    await b.public.error("POST", f"/holds/{held['id']}/confirm", 409, "SLOT_TAKEN", json=body)


# --- cancelling ---------------------------------------------------------------------------


async def test_the_patient_cancels_from_their_own_link(open_booking: Booking) -> None:
    b = open_booking
    await b.window()
    booked = await b.confirm(await b.hold())
    token = urlsplit(booked["video_link"]).fragment
    record = await b.appointment(booked["id"])
    host_token = urlsplit(record["meeting_url"]).fragment
    for bad in ("garbage", host_token):
        await b.public.error("POST", "/bookings/cancel", 404, "NOT_FOUND", json={"token": bad})
    await b.public.error("POST", "/bookings/cancel", 422, "VALIDATION_ERROR",
                         json={"token": token, "cancellation_reason": " "})  # fmt: skip
    cancelled = await b.public.data(
        "POST", "/bookings/cancel", json={"token": token, "cancellation_reason": "Feeling better"}
    )
    assert (cancelled["status"], cancelled["cancellation_reason"]) == (
        "cancelled",
        "Feeling better",
    )
    assert cancelled["video_link"] is None
    record = await b.appointment(booked["id"])
    assert (record["cancelled_by"], record["cancellation_reason"]) == ("patient", "Feeling better")
    # It drops out of the active list, the slot is free, and the activity says who.
    active = "held,pending_approval,pending,confirmed,scheduled"
    assert await b.api.data("GET", f"/appointments?status_in={active}") == []
    assert NINE in await b.slots()
    assert (await b.activity(booked["id"]))[-1] == ("cancelled", "patient")
    error = await b.public.error("POST", "/bookings/cancel", 409, "INVALID_STATE_TRANSITION",
                                 json={"token": token})  # fmt: skip
    assert error["details"]["current_status"] == "cancelled"


async def test_the_api_cancel_refuses_a_blank_reason_and_a_clinician_must_give_one(
    open_booking: Booking,
) -> None:
    b = open_booking
    await b.window()
    booked = await b.confirm(await b.hold())
    path = f"/appointments/{booked['id']}/cancel"
    for body, problem in (
        ({"cancellation_reason": ""}, "blank"),
        ({"cancelled_by": "clinician"}, "required"),
        ({"cancelled_by": "clinician", "cancellation_reason": "  "}, "blank"),
    ):
        error = await b.api.error("POST", path, 422, "VALIDATION_ERROR", json=body)
        assert error["details"] == {"field": "cancellation_reason", "problem": problem}
    assert (await b.appointment(booked["id"]))["status"] == "confirmed"
    assert NINE not in await b.slots()
    done = await b.api.data(
        "POST", path, json={"cancelled_by": "clinician", "cancellation_reason": "Unwell"}
    )
    assert (done["cancelled_by"], done["cancellation_reason"]) == ("clinician", "Unwell")
    assert NINE in await b.slots()
    assert (await b.activity(booked["id"]))[-1] == ("cancelled", "clinician")
    # The API's own cancel still needs no body (seed 004), and says it was the api.
    other = await b.clinic_books()
    assert NINE not in await b.slots()
    plain = await b.api.data("POST", f"/appointments/{other['id']}/cancel")
    assert (plain["cancelled_by"], plain["cancellation_reason"]) == ("api", None)
    assert NINE in await b.slots()


async def test_the_api_cannot_book_or_change_a_hold(open_booking: Booking) -> None:
    b = open_booking
    await b.window()
    held = await b.hold()
    error = await b.api.error("POST", "/appointments", 422, "VALIDATION_ERROR", json={
        "title": "x", "start_time": NINE, "end_time": HALF, "status": "held",
    })  # fmt: skip
    assert error["details"] == {"field": "status", "problem": "enum"}
    error = await b.api.error("PATCH", f"/appointments/{held['id']}", 409,
                              "INVALID_STATE_TRANSITION", json={"title": "moved"})  # fmt: skip
    assert error["details"] == {"current_status": "held", "attempted_action": "update"}
    for action in ("complete", "no_show"):
        await b.api.error("POST", f"/appointments/{held['id']}/{action}", 409,
                          "INVALID_STATE_TRANSITION")  # fmt: skip


async def test_moving_an_api_appointment_moves_the_time_it_blocks(open_booking: Booking) -> None:
    b = open_booking
    await b.window()
    made = await b.clinic_books()
    assert NINE not in await b.slots()
    later = {"start_time": f"{WEDNESDAY}T11:00:00Z", "end_time": f"{WEDNESDAY}T11:30:00Z"}
    await b.api.data("PATCH", f"/appointments/{made['id']}", json=later)
    slots = await b.slots()
    assert NINE in slots
    assert f"{WEDNESDAY}T11:00:00.000Z" not in slots
    await b.api.data("PATCH", f"/appointments/{made['id']}", json={"clinician_profile_id": "cli_2"})
    assert len(await b.slots()) == 6


# --- patient data -------------------------------------------------------------------------


async def test_no_name_email_or_secret_reaches_a_log_or_an_event(
    open_booking: Booking, caplog: pytest.LogCaptureFixture
) -> None:
    b = open_booking
    caplog.set_level(logging.DEBUG)
    await b.window()
    held = await b.hold()
    booked = await b.confirm(held)
    token = urlsplit(booked["video_link"]).fragment
    await b.public.data("POST", "/bookings/cancel", json={"token": token})
    assert any("booking" in r.getMessage() for r in caplog.records)  # it did log
    logged = "\n".join(r.getMessage() for r in caplog.records)
    events: Any = await b.node.redis.xrange(f"vst:{{cal:{C}}}:events")
    assert len(events) == 3  # held, confirmed, cancelled
    stored = json.dumps([repr(e) for e in events])
    for private in ("Sam Patel", "sam@example.org", held["hold_secret"], token):
        assert private not in logged
        assert private not in stored
    spans = await b.node.redis.hgetall(f"vst:{{cal:{C}}}:spans")
    assert held["hold_secret"] not in repr(spans)


def _seconds(text: str) -> float:
    from signalling.api.schema import parse_time

    return parse_time(text, "t")


def _iso(seconds: float) -> str:
    from signalling.api.schema import format_time

    text = format_time(seconds)
    assert text is not None
    return text


# --- what cannot be booked, confirmed, released or cancelled -------------------------------


async def test_holds_outside_the_horizon_and_the_past_are_refused(open_booking: Booking) -> None:
    b = open_booking
    await b.window()
    for start, problem in (("2023-11-01T09:00:00Z", "too_soon"), ("2030-11-13T09:00:00Z",
                                                                  "too_far")):  # fmt: skip
        error = await b.public.error(
            "POST", f"/clinicians/{C}/holds", 409, "SLOT_UNAVAILABLE", json={"start_time": start}
        )
        assert error["details"]["problem"] == problem
    for day in ("2023-11-12", "2030-01-01"):  # before yesterday, after a year
        error = await b.public.error(
            "GET", f"/clinicians/{C}/slots?from={day}", 422, "VALIDATION_ERROR"
        )
        assert error["details"] == {"field": "from", "problem": "range"}


async def test_only_the_booking_pages_own_holds_can_be_confirmed_or_released(
    open_booking: Booking,
) -> None:
    b = open_booking
    await b.window()
    body = {"hold_secret": "x"} | PATIENT
    await b.public.error("POST", "/holds/apt_unknown/confirm", 404, "NOT_FOUND", json=body)
    made = await b.clinic_books()  # an appointment of the clinic's system: not a hold
    await b.public.error("POST", f"/holds/{made['id']}/confirm", 404, "NOT_FOUND", json=body)
    await b.public.error("POST", f"/holds/{made['id']}/release", 404, "NOT_FOUND",
                         json={"hold_secret": "x"})  # fmt: skip
    # A confirmed booking is not a hold any more: it is cancelled, not released.
    held = await b.hold(HALF)
    await b.confirm(held)
    error = await b.public.error("POST", f"/holds/{held['id']}/release", 409,
                                 "INVALID_STATE_TRANSITION",
                                 json={"hold_secret": held["hold_secret"]})  # fmt: skip
    assert error["details"] == {"current_status": "confirmed", "attempted_action": "release"}


async def test_a_hold_the_clinic_cancelled_cannot_be_confirmed(open_booking: Booking) -> None:
    b = open_booking
    await b.window()
    held = await b.hold()
    await b.api.data("POST", f"/appointments/{held['id']}/cancel",
                     json={"cancellation_reason": "Clinic closed"})  # fmt: skip
    body = {"hold_secret": held["hold_secret"]} | PATIENT
    # Its span is gone with the cancellation, so the secret proves nothing any more.
    await b.public.error("POST", f"/holds/{held['id']}/confirm", 404, "NOT_FOUND", json=body)
    assert (await b.appointment(held["id"]))["attendee_name"] is None
    assert await b.activity(held["id"]) == [("held", "patient"), ("cancelled", "api")]


async def test_a_link_that_names_no_appointment_cancels_nothing(open_booking: Booking) -> None:
    b = open_booking
    now = b.node.clock.now
    for appointment in ("apt_nowhere", None):
        link = token("rm_x", Role.PATIENT, now=now, subject="p", appointment=appointment)
        await b.public.error("POST", "/bookings/cancel", 404, "NOT_FOUND", json={"token": link})
