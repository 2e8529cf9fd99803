"""Browser tests: the pages in web/ in real headless Chromium (fake camera and microphone),
driven through Playwright's async API, against the real server process on a real Redis.

Chromium comes from the system (`/usr/bin/chromium`); `playwright install` is never used.
If it is missing, dev.py's system-package step installs it (as root, with apt-get).
Every wait is bounded; ``VESTIBULE_TEST_WAIT_FACTOR`` scales them on slow machines.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from rooms.roles import Role
from signalling.redis_server import RedisProcess
from tests.e2e.conftest import ServerProcess
from tests.support import WAIT_FACTOR, token

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "test-output" / "screenshots"
FACTOR = WAIT_FACTOR
WAIT_MS = 20_000 * FACTOR  # any single page state the tests wait for
MEDIA_WAIT_S = 45.0 * FACTOR  # ICE, DTLS and the first decoded frames, on a loaded machine
POLL_S = 0.2

# Found to work on these machines (NOTES.md): real getUserMedia with fake devices, WebRTC
# between pages on loopback. No --disable-features: Playwright passes its own and Chromium
# keeps only the last one.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    # 10 frames a second instead of 30: four pages in a mesh encode and decode twelve
    # streams at once, on machines with two shared cores.
    "--use-fake-device-for-media-stream=fps=10",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]

PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 860}}


def chromium_path() -> Path:
    """The system Chromium, installed through dev.py if it is missing."""
    if not CHROMIUM.exists():
        import dev  # the repository root is on sys.path (rootdir, tests/ is a package)

        dev.ensure_system_packages()
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing and could not be installed: run as root "
            "`apt-get install -y --no-install-recommends chromium chromium-driver`"
        )
    return CHROMIUM


class Webhook(ThreadingHTTPServer):
    """A stand-in for an SMS gateway: takes every invitation the server posts."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _WebhookHandler)
        self.received: list[bytes] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/invitations"


class _WebhookHandler(BaseHTTPRequestHandler):
    server: Webhook

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.server.received.append(self.rfile.read(length))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output quiet


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    thread = threading.Thread(target=hook.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        hook.shutdown()
        hook.server_close()
        thread.join(5)


@pytest.fixture
def server(tmp_path: Path, redis_server: RedisProcess, webhook: Webhook) -> Iterator[ServerProcess]:
    """One node serving web/, /ws and the REST API, on the test's redis-server, sending
    invitations to ``webhook``."""
    env = {"VESTIBULE_WEBHOOK_URL": webhook.url}
    node = ServerProcess(tmp_path / "node", redis_url=redis_server.url, env=env).start()
    try:
        yield node
    finally:
        node.stop()
    node.check()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    path = chromium_path()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(path), args=CHROMIUM_ARGS, timeout=WAIT_MS * 2
        )
        try:
            yield launched
        finally:
            await launched.close()


class Web:
    """Opens pages, each in its own browser context (its own tab storage, like another
    person's browser), and records uncaught page errors to fail the test with."""

    def __init__(self, browser: Browser, server: ServerProcess) -> None:
        self.browser = browser
        self.base = f"http://127.0.0.1:{server.port}"
        self.errors: list[str] = []
        self.contexts: list[BrowserContext] = []
        self.pages: dict[str, Page] = {}

    async def page(self, who: str, url: str, **options: Any) -> Page:
        """A new page for ``who`` at ``url`` (absolute, or a path on the server)."""
        context = await self.browser.new_context(**{**DESKTOP, **options})
        self.contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda error: self.errors.append(f"{who}: {error}"))
        self.pages[who] = page
        await page.goto(url if url.startswith("http") else self.base + url)
        return page

    def join_url(self, room: str, join_token: str) -> str:
        return f"{self.base}/join/{room}#{join_token}"

    def console_url(self, room: str, host_token: str, patient_link: str | None = None) -> str:
        extra = f"&patient={quote(patient_link, safe='')}" if patient_link else ""
        return f"{self.base}/console/{room}#{host_token}{extra}"

    async def logs(self) -> str:
        """Each page's call set-up history (window.vestibule.log()), for failure reports."""
        out = []
        for who, page in self.pages.items():
            try:
                lines = await page.evaluate("window.vestibule ? window.vestibule.log() : []")
            except Exception as exc:  # noqa: BLE001 -- a closed page has no log
                lines = [f"(no log: {exc})"]
            out.append(f"--- {who}\n" + "\n".join(lines))
        return "\n".join(out)

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


@pytest.fixture
async def web(
    browser: Browser, server: ServerProcess, request: pytest.FixtureRequest
) -> AsyncIterator[Web]:
    pages = Web(browser, server)
    try:
        yield pages
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(await pages.logs())  # shown with the failure
        await pages.close()
    assert not pages.errors, f"uncaught errors in the pages: {pages.errors}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item, so fixtures can tell that it failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def link(room: str, role: Role, **claims: Any) -> str:
    """A join token valid for an hour from now."""
    return token(room, role, now=time.time(), **claims)


async def state(page: Page) -> dict[str, Any]:
    """What the page says it shows (window.vestibule.state(), see web/js)."""
    result: dict[str, Any] = await page.evaluate("window.vestibule.state()")
    return result


async def wait_state(page: Page, condition: str) -> dict[str, Any]:
    """Wait (bounded) until ``condition``, a JS expression over ``s`` (the page's state),
    holds; return the state."""
    probe = "const s = window.vestibule && window.vestibule.state();"
    await page.wait_for_function(
        f"(() => {{ {probe} return s && ({condition}); }})()", timeout=WAIT_MS
    )
    return await state(page)


async def media_flowing(
    page: Page, peers: int, *, above: dict[str, int] | None = None
) -> list[dict[str, Any]]:
    """Wait until the page receives video it decodes from ``peers`` other participants (more
    frames than ``above[participant_id]`` when given) and each remote <video> is playing.
    Returns the per-peer stats."""
    above = above or {}
    deadline = time.monotonic() + MEDIA_WAIT_S
    stats: list[dict[str, Any]] = []
    videos: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        stats = await page.evaluate("window.vestibule.stats()")
        videos = await page.evaluate("window.vestibule.videos()")
        decoding = [s for s in stats if s["framesDecoded"] > above.get(s["participant_id"], 0)]
        playing = [
            v for v in videos if not v["paused"] and v["readyState"] >= 2 and v["videoWidth"] > 0
        ]
        if len(decoding) >= peers and len(playing) >= peers:
            return stats
        await page.wait_for_timeout(POLL_S * 1000)
    pytest.fail(f"media did not flow from {peers} peers in time: stats={stats} videos={videos}")


async def frames(page: Page) -> dict[str, int]:
    stats = await page.evaluate("window.vestibule.stats()")
    return {s["participant_id"]: s["framesDecoded"] for s in stats}


async def shot(page: Page, name: str, selector: str | None = None) -> Path:
    """Save a screenshot of the page (or of the element at ``selector``) as
    test-output/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^a-z0-9-]+', '-', name.lower())}.png"
    # Let transitions and the newest video frame settle.
    await page.wait_for_timeout(300)
    if selector is None:
        await page.screenshot(path=str(path))
    else:
        await page.locator(selector).screenshot(path=str(path))
    return path
