"""A clinician's day from the console, in real Chromium against a real node, with no API
key: opened from the clinician's link, today's list (live: the server pushes each change),
Send to patient, Start and End a call, Complete, Mark no-show after the window, Cancel with a
reason, a "running late" message that a waiting patient sees with the wait expected; the
notices never cover a control, the self view never covers Leave on a phone, a remote camera
that is off is labelled; and axe-core finds no serious problem on the patient page, the
console or the booking page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page
from redis.asyncio import Redis

import dev
from signalling.redis_server import RedisProcess
from tests.e2e.conftest import ServerProcess
from tests.support import SECRETS
from tests.web.conftest import PHONE, WAIT_MS, Web, Webhook, media_flowing, shot, wait_state

CLINICIAN = "doc-day"


@pytest.fixture
def server(tmp_path: Path, redis_server: RedisProcess, webhook: Webhook) -> Iterator[ServerProcess]:
    """A node whose join windows close a minute after the end (a no-show can be marked
    minutes after an appointment), sending invitations to ``webhook``."""
    env = {"VESTIBULE_WEBHOOK_URL": webhook.url, "VESTIBULE_WINDOW_AFTER": "60"}
    node = ServerProcess(tmp_path / "node", redis_url=redis_server.url, env=env).start()
    try:
        yield node
    finally:
        node.stop()
    node.check()


async def book(
    http: httpx.AsyncClient, title: str, start: datetime, name: str, **extra: Any
) -> Any:
    SECRETS.name(name)
    body = {
        "title": title,
        "start_time": start.isoformat(),
        "end_time": (start + timedelta(minutes=15)).isoformat(),
        "clinician_profile_id": CLINICIAN,
        "is_remote": True,
        "attendee_name": name,
        "attendee_phone": "+44 7700 900123",
        "preferred_channel": "webhook",
    } | extra
    response = await http.post("/api/v1/appointments", json=body)
    assert response.status_code == 201, response.text
    return response.json()["data"]


def overlap(a: Any, b: Any) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


async def covered(page: Page) -> list[str]:
    """The visible controls and banners a visible notice overlaps."""
    found: list[str] = await page.evaluate(
        """() => {
        const boxes = [...document.querySelectorAll('.toast')].map(t => t.getBoundingClientRect());
        const out = [];
        for (const el of document.querySelectorAll('button, input, select, textarea, a, .banner')) {
          if (el.closest('.toast') || !el.offsetParent) continue;
          const r = el.getBoundingClientRect();
          for (const t of boxes) {
            if (r.left < t.right && t.left < r.right && r.top < t.bottom && t.top < r.bottom) {
              out.push(el.id || el.textContent.trim().slice(0, 30));
            }
          }
        }
        return out;
    }"""
    )
    return found


async def axe(page: Page) -> list[str]:
    """Serious and critical WCAG 2 A/AA problems axe-core finds on the page."""
    if not dev.AXE_SCRIPT.exists():
        dev.ensure_axe()
    if not dev.AXE_SCRIPT.exists():
        pytest.fail(
            f"{dev.AXE_SCRIPT} is missing: run `python3 dev.py test` (it installs axe-core)"
        )
    await page.add_script_tag(path=str(dev.AXE_SCRIPT))
    found: list[str] = await page.evaluate(
        """async () => {
        const result = await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa']});
        return result.violations.filter(v => ['serious', 'critical'].includes(v.impact))
          .map(v => `${v.id}: ${v.nodes.map(n => n.target.join(' ')).join(', ')}`);
    }"""
    )
    return found


async def shows(page: Page, appointment: str, selector: str, text: str) -> None:
    """Wait until the appointment's row shows ``text`` at ``selector`` (pushed: no reload)."""
    await page.wait_for_function(
        """([id, selector, text]) => {
          const cell = document.querySelector(`tr[data-appointment='${id}'] ${selector}`);
          return cell !== null && cell.textContent.includes(text);
        }""",
        arg=[appointment, selector, text],
    )


async def row_text(page: Page, appointment: str, selector: str) -> str:
    return (
        await page.locator(f"tr[data-appointment='{appointment}'] {selector}").inner_text()
    ).strip()


async def test_a_clinicians_day_from_the_console_without_an_api_key(
    web: Web, redis: Redis, webhook: Webhook
) -> None:
    from signalling.api.keys import ApiKeys

    _, key = await ApiKeys(redis).create("the clinic's system")
    now = datetime.now(UTC).replace(microsecond=0)
    if (now - timedelta(minutes=20)).date() != now.date() or (
        now + timedelta(hours=2)
    ).date() != now.date():
        pytest.skip("too close to midnight (UTC) for a day of appointments")
    async with httpx.AsyncClient(
        base_url=web.base, headers={"Authorization": f"Bearer {key}"}
    ) as http:
        first = await book(http, "Follow-up", now + timedelta(minutes=2), "Sam Patel")
        second = await book(http, "Review", now + timedelta(minutes=8), "Kim Lee")
        missed = await book(
            http, "Phone check", now - timedelta(minutes=20), "Lou Grant", remote_channel="phone"
        )
        later = await book(http, "Results", now + timedelta(minutes=110), "Max Roe")

    # Kim waits for the second appointment, on a phone.
    kim = await web.page("kim", second["video_link"], **PHONE)
    await wait_state(kim, "s.screen === 'lobby' && s.waiting && s.waiting.position === 1")

    console = await web.page(
        "clinician", first["meeting_url"], permissions=["clipboard-read", "clipboard-write"]
    )
    await wait_state(console, "s.screen === 'console' && s.signedIn && s.listLoads > 0")
    assert "#" not in console.url
    assert await console.locator("#who").inner_text() == "Signed in with the room's link"
    for a in (first, second, missed, later):
        await console.locator(f"tr[data-appointment='{a['id']}']").wait_for()
    assert await row_text(console, first["id"], "[data-appointment-status]") == "Pending"
    assert await row_text(console, second["id"], ".status-badge") == "Patient waiting"
    assert "Kim Lee" in await console.locator("#current").inner_text()
    assert await console.locator("#api-key").count() == 0  # no key to paste

    # Send to patient: the invitation's status follows in the list, pushed.
    await console.get_by_role("button", name="Send the link to Sam Patel").click()
    await console.locator(
        f"tr[data-appointment='{first['id']}'] [data-invitation][data-status='sent']"
    ).wait_for(state="attached")
    assert first["video_link"].encode() in webhook.received[0]

    # Sam arrives: the list says so without a reload.
    sam = await web.page("sam", first["video_link"], **PHONE)
    await wait_state(sam, "s.screen === 'lobby'")
    await shows(console, first["id"], ".status-badge", "Patient waiting")
    # Running late: the waiting patients see the message and when they can expect to start.
    await console.fill("#notice-text", "Running 10 minutes late, sorry")
    await console.click("#notice-form button[type=submit]")
    await wait_state(kim, "s.notice === 'Running 10 minutes late, sorry'")
    assert await kim.locator("#host-notice-text").inner_text() == "Running 10 minutes late, sorry"
    assert (
        "Expected wait" in await kim.locator("#lobby-estimate").inner_text()
        or "next minute" in await kim.locator("#lobby-estimate").inner_text()
    )
    assert await covered(kim) == []
    await shot(kim, "28-patient-running-late-message-phone")

    # Start Sam's appointment from its row; Sam joins; camera off is labelled.
    await console.get_by_role("button", name="Start the call of Follow-up with Sam Patel").click()
    await wait_state(console, "s.stage === 'in_call'")
    await wait_state(sam, "s.screen === 'lobby' && s.waiting && s.waiting.can_join")
    await sam.click("#join-now-button")
    await wait_state(sam, "s.screen === 'call' && s.stage === 'in_call'")
    await media_flowing(console, 1)
    self_view = await sam.locator(".tile-self").bounding_box()
    leave = await sam.locator("#leave-button").bounding_box()
    assert self_view is not None
    assert leave is not None
    assert not overlap(self_view, leave), (self_view, leave)
    await shot(sam, "29-patient-in-call-phone")
    await shows(console, first["id"], ".status-badge", "In call")
    assert (await console.locator("#current").inner_text()).startswith("Now:")
    await shot(console, "30-console-day-in-call")
    await sam.click("#camera-button")
    await console.locator(".tile[data-camera='off']").wait_for(timeout=WAIT_MS)
    await console.click("#end-button")
    await wait_state(console, "s.stage === 'lobby' && s.sessionId === null")

    # Complete the first, mark the missed phone appointment a no-show, cancel the last.
    await console.get_by_role("button", name="Mark Follow-up completed").click()
    await console.select_option("#appointment-filter", "all")  # the done ones stay listed
    await shows(console, first["id"], "[data-appointment-status]", "Completed")
    await console.get_by_role("button", name="Mark Phone check a no-show").click()
    await shows(console, missed["id"], "[data-appointment-status]", "No-show")
    await console.get_by_role("button", name="Cancel Results").click()
    row = console.locator(f"tr[data-appointment='{later['id']}']")
    await row.locator("button[type=submit]").click()
    assert "Give a reason" in await row.locator(".field-error").inner_text()
    await row.locator("textarea").fill("Clinician called away")
    await row.locator("button[type=submit]").click()
    await shows(console, later["id"], "[data-cancellation]", "Clinician called away")
    assert await row_text(console, first["id"], "[data-appointment-status]") == "Completed"
    assert await covered(console) == []
    await shot(console, "31-console-day-list", "#appointments")
    assert await axe(console) == []
    assert await axe(kim) == []
    await console.set_viewport_size(PHONE["viewport"])
    await shot(console, "32-console-phone")
    assert await covered(console) == []

    book_page = await web.page("booker", f"/book/{CLINICIAN}", **PHONE)
    await book_page.wait_for_load_state("networkidle")
    assert await axe(book_page) == []
