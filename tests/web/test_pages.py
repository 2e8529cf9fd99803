"""The patient page and the clinician console in real Chromium, against the real server:
waiting room, notices, admit/deny/admit all, video both ways, reconnection, dead links."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import httpx
from playwright.async_api import Page
from redis.asyncio import Redis

from rooms.roles import Role
from signalling.api.keys import ApiKeys
from tests.support import token
from tests.web.conftest import (
    PHONE,
    WAIT_MS,
    Web,
    Webhook,
    frames,
    link,
    media_flowing,
    shot,
    state,
    wait_state,
)


async def text(page: Page, selector: str) -> str:
    return (await page.locator(selector).inner_text()).strip()


async def clock_time(page: Page, at: float) -> str:
    """``at`` (unix seconds) as the page shows a time of day (ui.js localTime, no date)."""
    shown: str = await page.evaluate(
        "(t) => new Date(t * 1000).toLocaleTimeString(undefined,"
        " {hour: '2-digit', minute: '2-digit'})",
        at,
    )
    return shown


async def join_now(page: Page) -> None:
    """The patient presses Join now once the page offers it: the clinician has started
    their call (seed 002)."""
    await wait_state(page, "s.screen === 'lobby' && s.waiting && s.waiting.can_join")
    assert await text(page, "#lobby-title") == "Your clinician is ready"
    await page.click("#join-now-button")


async def guest_named(web: Web, room: str, general: str, name: str, **options: object) -> Page:
    """A guest opens the general link and gives a name."""
    page = await web.page(name, web.join_url(room, general), **options)
    await wait_state(page, "s.screen === 'name'")
    await page.fill("#name-input", name)
    await page.click("text=Continue")
    return page


async def test_patient_waits_clinician_is_notified_starts_and_both_see_video(web: Web) -> None:
    room = "r_start"
    patient_link = web.join_url(room, link(room, Role.PATIENT, subject="pat-1", name="Sam Patel"))
    host = link(room, Role.HOST, subject="doc-1", name="Dr Ada Lee", capacity=1)

    patient = await web.page("patient", patient_link)
    s = await wait_state(patient, "s.screen === 'lobby' && s.waiting && s.waiting.position === 1")
    assert s["stage"] == "waiting"
    assert "#" not in patient.url, "the token stays in the address bar"
    assert await patient.locator("#lobby-position").get_attribute("data-position") == "1"
    await patient.wait_for_function("document.querySelector('#preview').videoWidth > 0")
    assert "camera" in (await text(patient, "#device-summary")).lower()
    await shot(patient, "01-patient-waiting-room")

    console = await web.page(
        "clinician",
        web.console_url(room, host, patient_link),
        permissions=["clipboard-read", "clipboard-write"],
    )
    s = await wait_state(console, "s.screen === 'console' && s.waiting.length === 1")
    assert s["callStatus"] == "patient_waiting"
    assert s["beeps"] >= 1  # the sound was played (or tried: no click yet, so no audio)
    assert s["notices"] == 1
    notice = console.locator("[data-toast-id^='wait-']")
    await notice.wait_for()
    assert "Sam Patel" in await notice.inner_text()
    assert (await console.title()).startswith("(1) waiting")
    assert await text(console, "#status-badge") == "Patient waiting"
    assert await text(console, "#join-button") == "Start call"
    await shot(console, "02-console-patient-waiting")

    await console.click("#copy-link")
    copied = await console.evaluate("navigator.clipboard.readText()")
    assert copied == patient_link

    await console.click("#join-button")
    await wait_state(console, "s.stage === 'in_call'")
    await join_now(patient)
    await wait_state(console, "s.stage === 'in_call' && s.callStatus === 'in_call'")
    await wait_state(patient, "s.screen === 'call' && s.stage === 'in_call'")
    await media_flowing(patient, 1)
    await media_flowing(console, 1)
    assert await text(console, "#status-badge") == "In call"
    assert not (await console.title()).startswith("(")
    await shot(patient, "03-patient-in-call")
    await shot(console, "04-console-in-call")

    # Mute and camera off are the patient's own tracks, shown on both buttons.
    await patient.click("#mute-button")
    assert await patient.locator("#mute-button").get_attribute("aria-pressed") == "true"
    microphone = "document.querySelector('#preview').srcObject.getAudioTracks()[0].enabled"
    assert await patient.evaluate(microphone) is False

    # The clinician steps out (the call goes on) and comes back with Rejoin.
    await console.click("#leave-button")
    await wait_state(console, "s.stage === 'lobby' && s.sessionId !== null && s.connected")
    # The patient is told the clinician has left the call (and may be back).
    await patient.wait_for_function("document.body.dataset.clinician === 'left'")
    assert "Your clinician has left the call" in await text(patient, "#call-notice")
    assert await text(console, "#join-button") == "Rejoin"
    await console.click("#join-button")
    await wait_state(console, "s.stage === 'in_call' && s.roster.length === 2")
    await patient.wait_for_function("document.body.dataset.clinician === 'present'")
    assert await patient.locator("#call-notice").is_hidden()
    await media_flowing(console, 1)
    await media_flowing(patient, 1)

    await console.click("#end-button")
    await wait_state(patient, "s.screen === 'lobby' && s.stage === 'lobby'")
    assert await text(patient, "#lobby-title") == "The call has ended"
    await wait_state(console, "s.stage === 'lobby' && s.sessionId === null")
    assert await text(console, "#join-button") == "Start call"

    await patient.click("#lobby-leave")
    await wait_state(patient, "s.screen === 'message'")
    assert await text(patient, "#message-title") == "You have left the visit"
    await wait_state(console, "s.callStatus === 'ended'")
    assert await text(console, "#status-badge") == "Ended"


async def test_patient_who_refuses_the_camera_still_joins_and_sees_the_clinician(
    web: Web,
) -> None:
    room = "r_nomedia"
    patient_token = link(room, Role.PATIENT, subject="pat-1", name="Sam Patel")
    host = link(room, Role.HOST, subject="doc-1", name="Dr Ada Lee")
    console = await web.page("clinician", web.console_url(room, host))
    await wait_state(console, "s.screen === 'console'")
    await console.click("#join-button")
    await wait_state(console, "s.stage === 'in_call'")

    context = await web.browser.new_context(**PHONE)
    web.contexts.append(context)
    # As if the patient answered "Block" to the browser's question.
    await context.add_init_script(
        "navigator.mediaDevices.getUserMedia = () =>"
        " Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));"
    )
    patient = await context.new_page()
    patient.on("pageerror", lambda error: web.errors.append(f"patient: {error}"))
    await patient.goto(web.join_url(room, patient_token))
    await join_now(patient)  # the clinician has started: Join now, even without a camera
    await wait_state(patient, "s.screen === 'call'")
    await media_flowing(patient, 1)  # it still receives the clinician's video
    assert await patient.locator("#mute-button").is_disabled()
    assert await text(patient, "#mute-button") == "No microphone"
    assert await text(patient, "#camera-button") == "No camera"
    assert "chose not to share" in await text(patient, "#device-problem")
    await wait_state(console, "s.callStatus === 'in_call' && s.roster.length === 2")
    await shot(patient, "18-patient-without-camera-in-call-phone")


async def test_guest_gives_a_name_on_a_phone_and_is_denied_with_a_message(web: Web) -> None:
    """... and, before the call has started, Admit starts it and lets the chosen one in."""
    room = "r_deny"
    general = link(room, Role.GUEST)
    host = link(room, Role.HOST, subject="doc-1", name="Dr Ada Lee", capacity=1)

    guest = await web.page("guest", web.join_url(room, general), **PHONE)
    await wait_state(guest, "s.screen === 'name'")
    await guest.click("text=Continue")  # no name yet
    assert await text(guest, "#name-error") == "Please enter your name."
    assert await guest.locator("#name-input").get_attribute("aria-invalid") == "true"
    await shot(guest, "05-guest-name-entry-phone")
    await guest.fill("#name-input", "  Kim   Lee ")
    await guest.click("text=Continue")
    await wait_state(guest, "s.screen === 'lobby' && s.waiting && s.waiting.position === 1")
    width = await guest.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"the phone page scrolls sideways: {width}"
    await shot(guest, "06-guest-waiting-room-phone")

    console = await web.page("clinician", web.console_url(room, host))
    await wait_state(console, "s.waiting.length === 1 && s.waiting[0].name === 'Kim Lee'")
    entry = console.locator("#waiting-list li")
    await entry.get_by_role("button", name="Deny Kim Lee").click()
    await console.fill("#waiting-list textarea", "Please use the personal link we emailed you.")
    await shot(console, "07-console-deny-with-message")
    await entry.locator("button[type=submit]").click()

    await wait_state(guest, "s.screen === 'message'")
    assert await text(guest, "#message-title") == "You were not let in"
    assert await text(guest, "#denied-message") == "Please use the personal link we emailed you."
    await shot(guest, "08-guest-denied-phone")
    await wait_state(console, "s.waiting.length === 0")

    # Two more wait for a call not yet started; the clinician admits the second. Admit
    # starts the call, then admits: the one booked place is taken, so the first, who had
    # not pressed Join now yet, now waits to be let in, and is admitted in turn.
    lou = await guest_named(web, room, general, "Lou")
    max_ = await guest_named(web, room, general, "Max")
    await wait_state(max_, "s.screen === 'lobby' && s.waiting && s.waiting.position === 2")
    await wait_state(console, "s.waiting.length === 2 && s.stage !== 'in_call' && !s.sessionId")
    await console.locator("#waiting-list").get_by_role("button", name="Admit Max").click()
    await wait_state(max_, "s.screen === 'call' && s.stage === 'in_call'")
    await wait_state(lou, "s.waiting && s.waiting.reason === 'at_capacity' && !s.waiting.can_join")
    assert await text(lou, "#lobby-title") == "Waiting to be let in"
    await console.locator("#waiting-list").get_by_role("button", name="Admit Lou").click()
    await wait_state(lou, "s.screen === 'call' && s.stage === 'in_call'")
    await wait_state(console, "s.stage === 'in_call' && s.roster.length === 3")
    assert await max_.locator("#lobby-title").is_hidden()


async def test_admit_all_lets_in_two_guests_who_asked_once_the_call_was_full(web: Web) -> None:
    room = "r_group"
    general = link(room, Role.GUEST)
    host = link(room, Role.HOST, subject="doc-1", name="Dr Ada Lee", capacity=1)

    console = await web.page("clinician", web.console_url(room, host))
    await wait_state(console, "s.screen === 'console' && s.callStatus === 'ready'")
    await console.click("#join-button")
    await wait_state(console, "s.stage === 'in_call' && s.callStatus === 'awaiting_patient'")

    first = await guest_named(web, room, general, "Ana")
    await join_now(first)  # under capacity: Join now
    await wait_state(first, "s.screen === 'call'")
    askers = [await guest_named(web, room, general, name) for name in ("Ben", "Cleo")]
    for asker in askers:
        await wait_state(asker, "s.screen === 'lobby' && s.waiting && s.waiting.can_ask")
        assert await text(asker, "#lobby-title") == "This call is full"
    await shot(askers[0], "09-guest-ask-to-join")
    for asker in askers:
        await asker.click("#ask-button")
    await wait_state(askers[1], "s.waiting && s.waiting.position === 2")
    assert "number 2" in await text(askers[1], "#lobby-position")

    await wait_state(console, "s.waiting.length === 2")
    notices = await console.locator("[data-toast-id^='wait-']").all_inner_texts()
    assert any("Ben is asking to join" in n for n in notices), notices
    assert (await console.title()).startswith("(2) waiting")
    await shot(console, "10-console-two-ask-to-join")
    await console.click("#admit-all")

    everyone = [console, first, *askers]
    for page in everyone:
        await wait_state(page, "s.stage === 'in_call' && s.roster.length === 4")
    for page in everyone:
        await media_flowing(page, 3)  # a full mesh: video from each of the three others
    await shot(console, "11-console-group-call")


async def test_patient_keeps_its_place_and_its_call_after_losing_the_connection(web: Web) -> None:
    room = "r_resume"
    host = link(room, Role.HOST, subject="doc-1", name="Dr Ada Lee", capacity=2)
    first = await web.page(
        "first", web.join_url(room, link(room, Role.PATIENT, subject="p1", name="Pat One"))
    )
    s = await wait_state(first, "s.waiting && s.waiting.position === 1")
    first_id = s["participantId"]
    second = await web.page(
        "second", web.join_url(room, link(room, Role.PATIENT, subject="p2", name="Pat Two"))
    )
    await wait_state(second, "s.waiting && s.waiting.position === 2")
    console = await web.page("clinician", web.console_url(room, host))
    await wait_state(console, "s.waiting.length === 2")

    # The network goes: the socket is dropped and new ones fail until it is back.
    context = first.context
    await context.set_offline(True)
    await first.evaluate("window.vestibule.dropConnection()")
    await wait_state(first, "s.reconnecting")
    assert "Connection lost" in await text(first, "#connection")
    await wait_state(console, "s.waiting.length === 2 && !s.waiting[0].connected")
    await shot(first, "12-patient-reconnecting")
    await context.set_offline(False)
    s = await wait_state(
        first, "!s.reconnecting && s.connected && s.waiting && s.waiting.position === 1"
    )
    assert s["participantId"] == first_id
    s = await wait_state(console, "s.waiting.length === 2 && s.waiting[0].connected")
    assert s["waiting"][0]["participant_id"] == first_id

    await console.click("#join-button")
    for page in (first, second):
        await join_now(page)
    for page in (first, second, console):
        await wait_state(page, "s.stage === 'in_call' && s.roster.length === 3")
    await media_flowing(console, 2)
    await media_flowing(first, 2)

    # In the call: the socket drops; the media goes on and the call is kept.
    before = await frames(console)
    await context.set_offline(True)
    await first.evaluate("window.vestibule.dropConnection()")
    await wait_state(first, "s.reconnecting")
    await context.set_offline(False)
    s = await wait_state(first, "!s.reconnecting && s.connected && s.stage === 'in_call'")
    assert s["participantId"] == first_id
    await wait_state(
        console, f"s.roster.some(p => p.participant_id === '{first_id}' && p.connected)"
    )
    await media_flowing(console, 2, above=before)
    await media_flowing(first, 2, above=await frames(first))
    assert (await state(first))["screen"] == "call"


async def test_links_that_cannot_be_used_get_a_clear_page(web: Web, redis: Redis) -> None:
    room = "r_links"
    now = time.time()

    old = token(room, Role.PATIENT, now=now - 7200, subject="p", valid_for=3600)
    expired = await web.page("expired", web.join_url(room, old))
    await wait_state(expired, "s.problem === 'token_expired'")
    assert await text(expired, "#message-title") == "This link has expired"
    await shot(expired, "13-link-expired")

    broken = await web.page("invalid", web.join_url(room, "v1.test.not-a-token.sig"))
    await wait_state(broken, "s.problem === 'invalid_token'")
    assert await text(broken, "#message-title") == "This link doesn't work"

    missing = await web.page("missing", f"/join/{room}")
    await wait_state(missing, "s.problem === 'missing'")
    assert await text(missing, "#message-title") == "This link is incomplete"

    # A link the clinic's system made and then revoked, through the REST API.
    _, secret = await ApiKeys(redis).create("web test")
    async with httpx.AsyncClient(
        base_url=f"{web.base}/api/v1", headers={"Authorization": f"Bearer {secret}"}
    ) as api:
        made = await api.post("/rooms", json={})
        assert made.status_code == 201, made.text
        room_id = made.json()["data"]["id"]
        issued = await api.post(
            f"/rooms/{room_id}/links", json={"kind": "patient", "patient_id": "p-revoked"}
        )
        assert issued.status_code == 201, issued.text
        cancelled = issued.json()["data"]
        assert (await api.post(f"/links/{cancelled['id']}/revoke")).status_code == 200
    revoked = await web.page("revoked", cancelled["url"])
    await wait_state(revoked, "s.problem === 'link_revoked'")
    assert await text(revoked, "#message-title") == "This link has been cancelled"
    await shot(revoked, "14-link-revoked")

    starts = now + 3 * 3600
    early_link = link(
        room, Role.PATIENT, subject="p-early", appointment="apt-1",
        starts_at=starts, ends_at=starts + 1800, valid_for=6 * 3600,
    )  # fmt: skip
    early = await web.page("early", web.join_url(room, early_link), **PHONE)
    await wait_state(early, "s.problem === 'room_not_open'")
    assert await text(early, "#message-title") == "It's a little early"
    opens = starts - 600  # the join window opens 10 minutes before (VESTIBULE_WINDOW_BEFORE)
    expected = await early.evaluate(
        """(t) => new Date(t * 1000).toLocaleString(undefined, {
            weekday: 'long', day: 'numeric', month: 'long', hour: '2-digit', minute: '2-digit'})""",
        opens,
    )
    assert await text(early, "#opens-at") == expected
    await shot(early, "15-room-not-open-phone")
    # Nothing was left connected by the refused pages.
    assert await early.locator("#message-action").is_visible(timeout=WAIT_MS)


async def test_console_lists_todays_appointments_and_sends_the_patient_link(
    web: Web, redis: Redis, webhook: Webhook
) -> None:
    _, secret = await ApiKeys(redis).create("web test")
    # "Today" must hold for the appointment, with its join window open: five minutes ahead,
    # unless that is already tomorrow (the last minutes before midnight), then just begun.
    now = datetime.now(UTC).replace(microsecond=0)
    start = now + timedelta(minutes=5)
    if start.date() != now.date():
        start = now - timedelta(minutes=20)
    booking = {
        "title": "Follow-up",
        "start_time": start.isoformat(),
        "end_time": (start + timedelta(minutes=30)).isoformat(),
        "patient_id": "pat-42",
        "clinician_profile_id": "doc-1",
        "is_remote": True,
        "remote_channel": "video",
        "attendee_name": "Sam Patel",
        "attendee_phone": "+44 7700 900123",
        "preferred_channel": "webhook",
    }
    async with httpx.AsyncClient(base_url=web.base, timeout=WAIT_MS / 1000) as api:
        response = await api.post(
            "/api/v1/appointments", json=booking, headers={"Authorization": f"Bearer {secret}"}
        )
    assert response.status_code == 201, response.text
    appointment = response.json()["data"]
    meeting = appointment["meeting_url"]
    room = appointment["room_id"]
    host_token = meeting.split("#", 1)[1]

    # The clinician's link signs the console in: no API key.
    console = await web.page(
        "clinician",
        web.console_url(room, host_token),
        permissions=["clipboard-read", "clipboard-write"],
    )
    await wait_state(console, "s.screen === 'console' && s.signedIn && s.listLoads > 0")
    row = console.locator(f"tr[data-appointment='{appointment['id']}']")
    await row.wait_for()
    assert "Sam Patel" in await row.inner_text()
    assert "No invitation sent yet." in await row.inner_text()

    # The room activity, open before the patient comes: it is polled while open.
    activity = row.locator(f"details[data-activity='{appointment['id']}']")
    await activity.locator("summary").click()
    await activity.locator("summary", has_text="Room activity (").wait_for()  # loaded
    assert await activity.locator("li[data-kind='knocked']").count() == 0

    await row.get_by_role("button", name="Copy the patient link of Follow-up").click()
    assert await console.evaluate("navigator.clipboard.readText()") == appointment["video_link"]

    await row.get_by_role("button", name="Send the link to Sam Patel").click()
    sent = row.locator("[data-invitation][data-status='sent']")
    await sent.wait_for(state="attached")  # the page polls while the invitation is pending
    assert len(webhook.received) == 1
    assert appointment["video_link"].encode() in webhook.received[0]

    patient = await web.page("patient", appointment["video_link"])
    await wait_state(patient, "s.screen === 'lobby'")
    await wait_state(console, "s.callStatus === 'patient_waiting'")
    notice = console.locator("[data-toast-id^='wait-']")
    await notice.get_by_role("button", name="Dismiss notice").click()
    badge = row.locator(".status-badge")
    # The list's status follows the room, pushed by the server: no reload, no polling.
    await console.wait_for_function(
        "(id) => document.querySelector(`tr[data-appointment='${id}'] .status-badge`)"
        "?.textContent === 'Patient waiting'",
        arg=appointment["id"],
    )
    assert await badge.inner_text() == "Patient waiting"
    # The knock shows up in the open timeline (kept open across the reloads above), with
    # the patient's role (never a name) and a local time.
    knocked = activity.locator("li[data-kind='knocked']")
    await knocked.wait_for()
    assert "Patient knocked" in await knocked.inner_text()
    assert "Sam Patel" not in await activity.inner_text()
    at = await knocked.locator("time").get_attribute("datetime")
    assert at is not None
    assert abs(datetime.fromisoformat(at).timestamp() - time.time()) < 300
    shown = await knocked.locator("time").inner_text()
    assert re.search(r"\d{1,2}:\d{2}", shown), shown
    await row.locator("details[data-invitations] summary").click()
    await shot(console, "16-console-todays-appointments", "#appointments")


async def test_console_runs_two_appointments_back_to_back(web: Web) -> None:
    """One clinician's room, two appointments: the next patient, early, is told the
    clinician is with another patient, and the console lists them with their appointment
    time; after End, the console starts the next appointment and only its patient enters."""
    room = "r_back_to_back"
    now = time.time()
    first_at, second_at = now + 120, now + 480  # both join windows are open
    host = link(room, Role.HOST, subject="doc-1", name="Dr Ada Lee", capacity=1)
    sam_link = link(
        room, Role.PATIENT, subject="sam", name="Sam Patel", appointment="apt-10",
        starts_at=first_at, ends_at=first_at + 360,
    )  # fmt: skip
    kim_link = link(
        room, Role.PATIENT, subject="kim", name="Kim Lee", appointment="apt-11",
        starts_at=second_at, ends_at=second_at + 360,
    )  # fmt: skip
    sam = await web.page("sam", web.join_url(room, sam_link))
    await wait_state(sam, "s.screen === 'lobby' && s.waiting && s.waiting.position === 1")
    console = await web.page("clinician", web.console_url(room, host))
    await wait_state(console, "s.screen === 'console' && s.waiting.length === 1")
    first_time = await clock_time(console, first_at)
    assert await text(console, "#join-button") == f"Start call: {first_time} appointment"
    await console.click("#join-button")
    await join_now(sam)
    await wait_state(console, "s.callStatus === 'in_call' && s.roster.length === 2")
    await media_flowing(console, 1)

    # The next appointment's patient arrives early, during the first call.
    kim = await web.page("kim", web.join_url(room, kim_link), **PHONE)
    await wait_state(kim, "s.screen === 'lobby' && s.waiting && s.waiting.reason === 'host_busy'")
    assert await text(kim, "#lobby-title") == "Your clinician is with another patient"
    await kim.wait_for_function("document.querySelector('#preview').videoWidth > 0")
    await shot(kim, "25-patient-clinician-with-another-patient-phone")
    row = console.locator("#waiting-list li[data-reason='host_busy']")
    await row.wait_for()
    second_time = await clock_time(console, second_at)
    shown = await row.inner_text()
    assert "Kim Lee" in shown
    assert "waiting for their own appointment" in shown
    assert second_time in await row.locator(".appointment").inner_text()
    assert await console.locator("#admit-all-row").is_hidden()  # Kim is not this call's
    assert await row.get_attribute("data-appointment") == "apt-11"
    await shot(console, "26-console-next-appointment-waiting")
    # Kim sees nothing of the first call.
    s = await state(kim)
    assert (s["stage"], s["roster"]) == ("waiting", [])

    # Back to back: End the first call, Start the next appointment from the same console.
    await console.click("#end-button")
    await wait_state(sam, "s.screen === 'lobby' && s.stage === 'lobby'")
    assert await text(sam, "#lobby-title") == "The call has ended"
    await wait_state(console, "s.stage === 'lobby' && s.sessionId === null")
    assert await text(console, "#join-button") == f"Start call: {second_time} appointment"
    await console.click("#join-button")
    await join_now(kim)
    s = await wait_state(console, "s.stage === 'in_call' && s.roster.length === 2")
    assert s["callAppointment"] == "apt-11"
    await media_flowing(kim, 1)
    roster = {p["participant_id"] for p in (await state(kim))["roster"]}
    assert (await state(sam))["participantId"] not in roster
    # Sam, still on the page, is not let into Kim's appointment.
    await wait_state(sam, "s.waiting && s.waiting.reason === 'host_busy' && s.stage === 'lobby'")
    await shot(console, "27-console-second-appointment-in-call")
