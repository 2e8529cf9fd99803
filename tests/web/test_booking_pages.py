"""The booking page, the cancel page, the availability page and the console's cancellation,
in real Chromium against a real node process on real time (seed 001).

The node runs with no minimum notice, so a slot a few minutes from now can be booked and
its join window is already open. The clinician's windows are in a fixed-offset zone where
it is the middle of the day now, so no window crosses midnight whenever the test runs; the
patient's browser is in New York, and the page shows the times there.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import Page
from redis.asyncio import Redis

from signalling.api.keys import ApiKeys
from signalling.redis_server import RedisProcess
from tests.e2e.conftest import ServerProcess
from tests.web.conftest import PHONE, WAIT_MS, Web, Webhook, shot, wait_state

PATIENT_ZONE = "America/New_York"
CLINICIAN = "dr-book"
SLOT_MINUTES = 15
HOURS = "09:00\u201312:30"  # as the availability page shows them, with an en dash


@pytest.fixture
def server(
    tmp_path: Path, redis_server: RedisProcess, webhook: Webhook, request: pytest.FixtureRequest
) -> Iterator[ServerProcess]:
    """The conftest's node (web/, the API, invitations to ``webhook``) for booking: no
    minimum notice, a fast sweeper, and any settings the test passes (indirect)."""
    env = {
        "VESTIBULE_WEBHOOK_URL": webhook.url,
        "VESTIBULE_BOOKING_NOTICE": "0",
        "VESTIBULE_HOLD_SWEEP": "0.2",
        **getattr(request, "param", {}),
    }
    node = ServerProcess(tmp_path / "node", redis_url=redis_server.url, env=env).start()
    try:
        yield node
    finally:
        node.stop()
    node.check()


class Clinic:
    """The clinic's side, over the REST API with an API key."""

    def __init__(self, web: Web, key: str) -> None:
        self.key = key
        self.http = httpx.AsyncClient(
            base_url=f"{web.base}/api/v1",
            headers={"Authorization": f"Bearer {key}"},
            timeout=WAIT_MS / 1000,
        )
        self.zone, offset = midday_zone()
        now = datetime.datetime.now(datetime.UTC) + offset
        minute = now.hour * 60 + now.minute
        self.start_minute = (minute // 5 + 2) * 5  # 5 to 10 minutes from now, local
        self.day = now.strftime("%A").lower()
        self.date = now.date().isoformat()

    async def open_window(self, slots: int = 4) -> list[float]:
        """A window of ``slots`` slots from a few minutes from now; their starts."""
        window = {
            "day": self.day,
            "start_minute": self.start_minute,
            "end_minute": self.start_minute + slots * SLOT_MINUTES,
            "time_zone": self.zone,
            "slot_minutes": SLOT_MINUTES,
            "valid_from": self.date,  # today only
            "valid_until": self.date,
        }
        response = await self.http.post(
            f"/clinicians/{CLINICIAN}/availability/windows", json=window
        )
        assert response.status_code == 201, response.text
        listed = await self.http.get(f"/clinicians/{CLINICIAN}/slots")
        starts = [datetime.datetime.fromisoformat(s["start_time"]).timestamp()
                  for s in listed.json()["data"]]  # fmt: skip
        assert len(starts) == slots, listed.text
        return starts

    async def appointment(self, appointment_id: str) -> Any:
        response = await self.http.get(f"/appointments/{appointment_id}")
        assert response.status_code == 200, response.text
        return response.json()["data"]

    async def close(self) -> None:
        await self.http.aclose()


def midday_zone() -> tuple[str, datetime.timedelta]:
    """A fixed-offset zone where it is between 09:00 and 14:00 now, and its offset."""
    hour = datetime.datetime.now(datetime.UTC).hour
    offset = next(o for o in range(-12, 15) if 9 <= (hour + o) % 24 <= 14)
    # POSIX style: Etc/GMT-3 is three hours ahead of UTC.
    name = "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"
    return name, datetime.timedelta(hours=offset)


def iso(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_york(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, ZoneInfo(PATIENT_ZONE)).strftime("%H:%M")


@pytest.fixture
async def clinic(web: Web, redis: Redis) -> AsyncIterator[Clinic]:
    _, key = await ApiKeys(redis).create("booking pages")
    clinic = Clinic(web, key)
    yield clinic
    await clinic.close()


async def patient(web: Web, who: str = "patient", **options: Any) -> Page:
    page = await web.page(who, f"/book/{CLINICIAN}", timezone_id=PATIENT_ZONE, **options)
    await wait_state(page, "s.screen === 'slots' && s.slots.length > 0")
    return page


def new_york_date(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, ZoneInfo(PATIENT_ZONE)).date().isoformat()


async def book(page: Page, start: float) -> None:
    """Pick the slot's day (the patient's date), then the slot."""
    await page.click(f"#days button[data-date='{new_york_date(start)}']")
    await page.click(f"#times button[data-start='{iso(start)}']")
    await wait_state(page, "s.screen === 'details' && s.hold !== null")


async def kept(page: Page) -> str:
    """What the page keeps outside its memory: storage, cookies, its address and history."""
    text: str = await page.evaluate(
        "JSON.stringify([{...sessionStorage}, {...localStorage}, document.cookie,"
        " location.href, history.state, window.vestibule.state()])"
    )
    return text


async def dismiss_notices(page: Page) -> None:
    """Close the notices in the corner, so that screenshots show the page under them."""
    for button in await page.locator("#toasts [aria-label='Dismiss notice']").all():
        await button.click()


# --- booking ------------------------------------------------------------------------------


async def test_a_patient_books_a_slot_in_their_zone_confirms_and_waits_in_the_room(
    web: Web, clinic: Clinic, webhook: Webhook
) -> None:
    starts = await clinic.open_window()
    page = await patient(web, **PHONE)
    s = await wait_state(page, "s.screen === 'slots'")
    assert s["zone"] == PATIENT_ZONE
    # The first day shown is the patient's date of the first slot (near midnight in New
    # York, the four slots may span two of the patient's days).
    first_day = [t for t in starts if new_york_date(t) == new_york_date(starts[0])]
    assert s["day"] == new_york_date(starts[0])
    assert s["slots"] == [iso(t) for t in first_day]
    shown = await page.locator("#times button").all_inner_texts()
    assert shown == [new_york(t) for t in first_day]  # the patient's own time zone
    assert PATIENT_ZONE in await page.locator("#zone-name").inner_text()
    await shot(page, "19-booking-pick-a-time-phone")

    async with page.expect_response(lambda r: r.url.endswith(f"/{CLINICIAN}/holds")) as held:
        await book(page, starts[0])
    secret = (await (await held.value).json())["data"]["hold_secret"]
    s = await wait_state(page, "s.hold.secondsLeft > 0")
    assert secret not in await kept(page)  # in the page's memory only
    assert s["hold"]["start_time"] == iso(starts[0])
    assert 890 <= s["hold"]["secondsLeft"] <= 900
    assert "#" not in page.url
    assert "secret" not in page.url
    countdown = page.locator("#countdown")
    assert "holding this time for you for 1" in await countdown.inner_text()  # 15:00 / 14:59
    # Meanwhile another patient is not offered the held time.
    other = await patient(web, "other patient")
    assert iso(starts[0]) not in (await wait_state(other, "true"))["slots"]
    await page.fill("#name-input", "Sam Patel")
    await page.fill("#email-input", "sam@example.org")
    await shot(page, "20-booking-hold-countdown-phone")

    await page.click("#confirm-button")
    s = await wait_state(page, "s.screen === 'done'")
    assert s["booking"]["status"] == "confirmed"
    assert secret not in await kept(page)
    appointment = await clinic.appointment(s["booking"]["id"])
    assert appointment["status"] == "confirmed"
    assert appointment["attendee_name"] == "Sam Patel"
    join = await page.locator("#join-link").get_attribute("href")
    assert join is not None
    assert join == appointment["video_link"]
    assert await page.locator("#sent-note").is_visible()
    await shot(page, "21-booking-confirmed-phone")
    # The invitation went out through the configured channel (the webhook here).
    deadline = time.monotonic() + WAIT_MS / 1000
    while not any(join.encode() in body for body in webhook.received):
        assert time.monotonic() < deadline, "no invitation reached the webhook"
        await page.wait_for_timeout(200)

    # The join link works: a few minutes before the appointment, the patient waits.
    await page.click("#join-link")
    s = await wait_state(page, "s.screen === 'lobby' && s.stage === 'waiting'")
    assert s["waiting"]["reason"] == "host_not_started"


async def test_the_patient_cancels_and_the_clinician_cancels_with_a_reason_in_the_console(
    web: Web, clinic: Clinic
) -> None:
    starts = await clinic.open_window()
    page = await patient(web)
    await book(page, starts[1])
    await page.fill("#name-input", "Ada Patient")
    await page.fill("#email-input", "ada@example.org")
    await page.click("#confirm-button")
    mine = (await wait_state(page, "s.screen === 'done'"))["booking"]["id"]
    # A second booking, which the clinician will cancel: the first slot, so that its join
    # window (and so the console opened from its clinician link) is open already.
    second = await patient(web, "second patient")
    await book(second, starts[0])
    await second.fill("#name-input", "Ben Second")
    await second.fill("#email-input", "ben@example.org")
    await second.click("#confirm-button")
    theirs = (await wait_state(second, "s.screen === 'done'"))["booking"]["id"]

    record = await clinic.appointment(theirs)
    room, host_token = record["room_id"], record["meeting_url"].split("#", 1)[1]
    console = await web.page("clinician", web.console_url(room, host_token),
                             timezone_id=clinic.zone)  # fmt: skip
    # Signed in with the clinician's link (no API key); the list follows every change.
    await wait_state(console, "s.screen === 'console' && s.signedIn && s.listLoads > 0")
    for appointment in (mine, theirs):
        row = console.locator(f"tr[data-appointment='{appointment}']")
        await row.wait_for()
        assert "Confirmed" in await row.inner_text()

    # The patient cancels from their own link: it drops out of the clinician's list.
    await page.click("#cancel-link")
    await wait_state(page, "s.screen === 'ask'")
    assert "#" not in page.url
    await page.fill("#reason-input", "Feeling better")
    await page.click("#cancel-button")
    s = await wait_state(page, "s.screen === 'message' && s.status === 'cancelled'")
    assert s["status"] == "cancelled"
    await console.locator(f"tr[data-appointment='{mine}']").wait_for(state="detached")

    # The clinician cancels the other one: a reason is required.
    row = console.locator(f"tr[data-appointment='{theirs}']")
    await row.get_by_role("button", name="Cancel Video consultation").click()
    form = row.locator(".cancel-form")
    await form.get_by_role("button", name="Cancel appointment").click()
    assert "Give a reason" in await form.locator(".field-error").inner_text()
    assert (await clinic.appointment(theirs))["status"] == "confirmed"
    await form.locator("textarea").fill("Clinic closed for the afternoon")
    await form.get_by_role("button", name="Cancel appointment").click()
    await row.wait_for(state="detached")
    assert (await clinic.appointment(theirs))["cancelled_by"] == "clinician"

    # With the closed ones shown, each says who cancelled and why.
    await console.select_option("#appointment-filter", "all")
    for appointment, text in (
        (mine, "By the patient: “Feeling better”"),
        (theirs, "By the clinician: “Clinic closed for the afternoon”"),
    ):
        cancelled = console.locator(f"tr[data-appointment='{appointment}']")
        await cancelled.wait_for()
        assert "Cancelled" in await cancelled.inner_text()
        assert text in await cancelled.locator("[data-cancellation]").inner_text()
    await dismiss_notices(console)
    await shot(console, "23-console-cancelled-with-reasons", "#appointments")
    # Both slots are free again.
    listed = await clinic.http.get(f"/clinicians/{CLINICIAN}/slots")
    free = [s["start_time"] for s in listed.json()["data"]]
    assert iso(starts[0]) in free
    assert iso(starts[1]) in free


@pytest.mark.parametrize("server", [{"VESTIBULE_HOLD_SECONDS": "4"}], indirect=True)
async def test_an_expired_hold_says_so_and_offers_the_free_times(
    web: Web, clinic: Clinic, server: ServerProcess
) -> None:
    starts = await clinic.open_window(slots=2)
    page = await patient(web, **PHONE)
    await book(page, starts[0])
    # When the countdown ends, the page says so and shows the times free now, the held
    # one among them again.
    s = await wait_state(page, "s.screen === 'slots' && s.expired")
    assert "hold has expired" in await page.locator("#expired-note").inner_text()
    assert iso(starts[0]) in s["slots"]
    await shot(page, "22-booking-hold-expired-phone")
    await book(page, starts[0])  # and it can be held again
    assert await page.locator("#expired-note").is_hidden()


async def test_the_clinician_sets_windows_and_days_off_on_the_availability_page(
    web: Web, clinic: Clinic
) -> None:
    page = await web.page("clinician", f"/availability.html?clinician={CLINICIAN}",
                          timezone_id="Europe/London")  # fmt: skip
    await page.fill("#api-key", clinic.key)
    await page.click("#access-form button[type=submit]")
    await wait_state(page, "s.loaded && s.windows === 0")
    await page.locator("#add-window summary").click()
    form = page.locator("#window-form")
    await form.locator("select[name=day]").select_option("tuesday")
    await form.locator("input[name=start]").fill("09:00")
    await form.locator("input[name=end]").fill("12:30")
    await form.locator("input[name=slot]").fill("20")
    await form.locator("input[name=buffer]").fill("10")
    assert await form.locator("input[name=time_zone]").input_value() == "Europe/London"
    await form.get_by_role("button", name="Add window").click()
    await wait_state(page, "s.windows === 1")
    row = page.locator("tr[data-window]")
    assert HOURS in await row.inner_text()
    assert "20 min" in await row.inner_text()
    assert await page.locator("#booking-link").input_value() == f"{web.base}/book/{CLINICIAN}"
    # The window is the API's: Tuesday 09:00, 09:30, ... in London.
    windows = (await clinic.http.get(f"/clinicians/{CLINICIAN}/availability/windows")).json()
    assert [(w["day"], w["start_minute"], w["end_minute"], w["buffer_minutes"])
            for w in windows["data"]] == [("tuesday", 540, 750, 10)]  # fmt: skip

    # A bad edit is refused with the API's message, and nothing changes.
    await row.get_by_role("button", name=f"Edit the Tuesday window {HOURS}").click()
    edit = page.locator("form[data-edit]")
    await edit.locator("input[name=end]").fill("08:00")
    await edit.get_by_role("button", name="Save").click()
    error = edit.locator("[data-form-error]:not([hidden])")
    await error.wait_for()
    assert "end_minute" in await error.inner_text()

    await page.fill("#day-off-date", "2031-12-25")
    await page.fill("#day-off-note", "Christmas")
    await page.locator("#day-off-form button[type=submit]").click()
    await wait_state(page, "s.daysOff === 1")
    assert "Christmas" in await page.locator("#days-off").inner_text()
    await page.locator("#add-window summary").click()  # closed again
    await dismiss_notices(page)
    await page.evaluate("window.scrollTo(0, 0)")
    await shot(page, "24-availability")

    await row.get_by_role("button", name=f"Switch off the Tuesday window {HOURS}").click()
    await page.locator("tr[data-window][data-active='false']").wait_for()
    assert await page.locator("#booking-link-row").is_hidden()
    await (
        page.locator("tr[data-window]")
        .get_by_role("button", name=f"Remove the Tuesday window {HOURS}")
        .click()
    )
    await wait_state(page, "s.windows === 0")
    kept = await clinic.http.get(
        f"/clinicians/{CLINICIAN}/availability/windows?include_removed=true"
    )
    assert kept.json()["data"][0]["deleted_at"] is not None
