"""Stock Firefox (Debian's firefox-esr) driven over WebDriver BiDi, for the cross-browser test.

Playwright drives Firefox through its own patched build, which cannot be downloaded here, and
its BiDi mode asks stock Firefox for commands that ESR lacks. Firefox speaks BiDi itself, so
a few commands are enough: navigate, evaluate a script, take a screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

FIREFOX = Path("/usr/bin/firefox-esr")
START_TIMEOUT = 60.0
COMMAND_TIMEOUT = 30.0
PREFS: dict[str, object] = {
    # Fake camera and microphone, and no permission prompt (the --use-fake-* of Chromium).
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.autoplay.default": 0,
    # Offer plain host addresses, as Chromium's fake-UI flag does.
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "media.peerconnection.ice.loopback": True,
    "browser.shell.checkDefaultBrowser": False,
    "datareporting.policy.dataSubmissionEnabled": False,
}


class ScriptError(Exception):
    """A script evaluated in the page threw."""


class Firefox:
    """One headless Firefox with one tab."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.context = ""  # the tab's browsing context id, set once the session exists
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}

    async def command(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[number] = future
        await self.ws.send(json.dumps({"id": number, "method": method, "params": params}))
        reply = await asyncio.wait_for(future, COMMAND_TIMEOUT)
        if reply.get("type") == "error":
            raise RuntimeError(f"{method}: {reply.get('error')}: {reply.get('message')}")
        result: dict[str, Any] = reply["result"]
        return result

    async def goto(self, url: str) -> None:
        await self.command(
            "browsingContext.navigate", context=self.context, url=url, wait="complete"
        )

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` (awaited if it is a promise)."""
        reply = await self.command(
            "script.evaluate",
            expression=f"Promise.resolve({expression}).then((v) => JSON.stringify(v ?? null))",
            target={"context": self.context},
            awaitPromise=True,
            resultOwnership="none",
        )
        if reply.get("type") == "exception":
            raise ScriptError(reply["exceptionDetails"]["text"])
        return json.loads(reply["result"]["value"])

    async def wait_for(self, expression: str, timeout: float) -> Any:
        """Poll until ``expression`` is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} still false after {timeout:g}s")
            await asyncio.sleep(0.2)

    async def screenshot(self) -> bytes:
        """The tab as a PNG."""
        reply = await self.command("browsingContext.captureScreenshot", context=self.context)
        return base64.b64decode(reply["data"])

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            future = self.pending.pop(message.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(message)


@contextlib.asynccontextmanager
async def firefox(width: int = 1000, height: int = 800) -> AsyncIterator[Firefox]:
    """Start headless Firefox with a fresh profile; yield it; kill it."""
    with tempfile.TemporaryDirectory(prefix="vestibule-firefox-") as profile:
        prefs = "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in PREFS.items())
        (Path(profile) / "user.js").write_text(prefs)
        command = [str(FIREFOX), "--headless", "--remote-debugging-port=0", "--profile", profile]
        command += ["--width", str(width), "--height", str(height)]
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        port: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        # Firefox writes a lot to stderr: read all of it (or it blocks), keeping the BiDi port.
        drain = asyncio.create_task(_drain(process, port))
        try:
            async with asyncio.timeout(START_TIMEOUT):
                number = await port
            async with connect(f"ws://127.0.0.1:{number}/session", max_size=2**26) as ws:
                browser = Firefox(ws)
                reader = asyncio.create_task(browser._read())
                try:
                    await browser.command("session.new", capabilities={})
                    tree = await browser.command("browsingContext.getTree")
                    browser.context = tree["contexts"][0]["context"]
                    yield browser
                finally:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            await drain


async def _drain(process: asyncio.subprocess.Process, port: asyncio.Future[str]) -> None:
    assert process.stderr is not None
    async for raw in process.stderr:
        found = re.search(rb"WebDriver BiDi listening on ws://127\.0\.0\.1:(\d+)", raw)
        if found and not port.done():
            port.set_result(found.group(1).decode())
    if not port.done():
        port.set_exception(RuntimeError(f"firefox exited with {process.returncode}"))
