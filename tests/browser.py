"""A real browser for tests: headless Chromium (Debian's `chromium`), driven over the Chrome DevTools
Protocol with aiohttp's websocket client, to look at pages the way a user's browser renders them (scripts
run, images decoded) and to take screenshots. Only 127.0.0.1 is reached."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from typing import Any

import aiohttp

BINARIES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    return next((found for found in map(shutil.which, BINARIES) if found), None)


class BrowserError(Exception):
    pass


class Browser:
    def __init__(self, binary: str, width: int = 1800, height: int = 1000):
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self.process = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--disable-extensions", "--disable-background-networking", "--disable-sync",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.loop = asyncio.new_event_loop()
        self.ids = itertools.count(1)
        self.session = self.socket = None
        self.loop.run_until_complete(self._connect(self._port()))

    def _port(self, timeout: float = 60) -> int:
        marker = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise BrowserError(f"chromium exited with {self.process.returncode}")
            if os.path.exists(marker):
                text = open(marker).read().split()
                if text:
                    return int(text[0])
            time.sleep(0.1)
        raise BrowserError("chromium did not open its DevTools port")

    async def _connect(self, port: int) -> None:
        self.session = aiohttp.ClientSession()
        async with self.session.get(f"http://127.0.0.1:{port}/json/list") as answer:
            pages = [p for p in await answer.json(content_type=None) if p.get("type") == "page"]
        self.socket = await self.session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)

    async def _call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        number = next(self.ids)
        message = {"id": number, "method": method, "params": params or {}, **({"sessionId": session} if session else {})}
        await self.socket.send_str(json.dumps(message))
        while True:
            message = json.loads((await self.socket.receive(timeout=120)).data)
            if message.get("id") == number:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message["result"]

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        return self.loop.run_until_complete(self._call(method, params, session))

    def evaluate(self, expression: str, session: str | None = None) -> Any:
        """The value of a JavaScript expression in the page, or in the frame of an attached `session` (a
        promise is awaited)."""
        found = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                          session)
        if "exceptionDetails" in found:
            raise BrowserError(f"{expression!r}: {found['exceptionDetails'].get('text')}")
        return found["result"].get("value")

    def open(self, url: str, until: str, timeout: float = 90) -> None:
        """Go to `url` and wait until the JavaScript expression `until` is true (the page has rendered)."""
        self.call("Page.navigate", {"url": url})
        self.wait_until(until, timeout, what=url)

    def wait_until(self, expression: str, timeout: float = 30, session: str | None = None, what: str = "the page"):
        """The first true value of the JavaScript `expression` (in the page, or in the frame of `session`),
        looked at four times a second; `BrowserError` when it is not true within `timeout` seconds."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                found = self.evaluate(expression, session)
                if found:
                    return found
            except BrowserError:  # the page still loading: its objects not there yet
                pass
            time.sleep(0.25)
        raise BrowserError(f"{what}: not rendered within {timeout:.0f} s ({expression})")

    def frame(self, url_prefix: str, timeout: float = 30) -> str:
        """A session in the page's (out-of-process) iframe whose URL starts with `url_prefix`: an artifact
        MLflow shows in a sandboxed frame, say."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for target in self.call("Target.getTargets")["targetInfos"]:
                if target["type"] == "iframe" and target["url"].startswith(url_prefix):
                    attached = self.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
                    return attached["sessionId"]
            time.sleep(0.25)
        raise BrowserError(f"no frame at {url_prefix}... within {timeout:.0f} s")

    def text(self) -> str:
        return self.evaluate("document.body.innerText")

    def screenshot(self, path: str) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        with open(path, "wb") as file:
            file.write(base64.b64decode(data))

    def close(self) -> None:
        async def shut():
            if self.socket is not None:
                await self.socket.close()
            if self.session is not None:
                await self.session.close()

        self.loop.run_until_complete(shut())
        self.loop.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)
