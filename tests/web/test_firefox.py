"""The patient page in Firefox, with the clinician in Chromium: the same waiting room and a
call with video both ways. Needs Debian's firefox-esr; skipped (saying so) without it."""

from __future__ import annotations

import pytest

from rooms.roles import Role
from tests.web.conftest import (
    MEDIA_WAIT_S,
    SCREENSHOTS,
    WAIT_MS,
    Web,
    link,
    media_flowing,
    wait_state,
)
from tests.web.firefox import FIREFOX, firefox

WAIT_S = WAIT_MS / 1000
STATE = "window.vestibule && window.vestibule.state()"


async def test_patient_in_firefox_waits_and_sees_the_clinician_in_chromium(web: Web) -> None:
    if not FIREFOX.exists():
        pytest.skip(f"{FIREFOX} is missing: apt-get install -y --no-install-recommends firefox-esr")
    room = "r_firefox"
    patient_token = link(room, Role.PATIENT, subject="pat-1", name="Sam Patel")
    host = link(room, Role.HOST, subject="doc-1", name="Dr Ada Lee")

    async with firefox() as patient:
        await patient.goto(web.join_url(room, patient_token))
        state = await patient.wait_for(
            f"{STATE} && {STATE}.screen === 'lobby' && {STATE}.waiting && {STATE}", WAIT_S
        )
        assert state["waiting"]["position"] == 1
        assert "#" not in await patient.evaluate("location.href")
        await patient.wait_for("document.querySelector('#preview').videoWidth > 0", WAIT_S)

        console = await web.page("clinician", web.console_url(room, host))
        await wait_state(console, "s.waiting.length === 1 && s.waiting[0].name === 'Sam Patel'")
        await console.click("#join-button")
        # Join now (seed 002): the page offers it once the clinician has started.
        await patient.wait_for(f"{STATE}.waiting && {STATE}.waiting.can_join", WAIT_S)
        await patient.evaluate("document.querySelector('#join-now-button').click()")

        await patient.wait_for(f"{STATE}.screen === 'call'", WAIT_S)
        await patient.wait_for(
            "window.vestibule.stats().then((s) => s.length === 1 && s[0].framesDecoded > 0"
            " && window.vestibule.videos().some((v) => !v.paused && v.videoWidth > 0))",
            MEDIA_WAIT_S,
        )
        await media_flowing(console, 1)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        png = await patient.screenshot()
        (SCREENSHOTS / "17-firefox-patient-in-call.png").write_bytes(png)
