"""Headless Chromium over the DevTools protocol, for the web UI's tests.

Chromium (Debian's ``chromium``) starts with ``--remote-debugging-port=0``; its one tab is
driven over a websocket with aiohttp's client: load a page, wait until a condition holds
inside the page (polled there, bounded), click, type, read the DOM through JavaScript, and
save full-page screenshots under ``test-artifacts/`` (git-ignored; ``$COLLECTOR_TEST_ARTIFACTS``
moves it). Uncaught script errors are collected; `browser_page` fails the test on any.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson

__all__ = ["ARTIFACTS", "Page", "PageError", "browser_page", "js_string"]

ARTIFACTS = Path(
    os.environ.get("COLLECTOR_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts")
)


def js_string(text: str) -> str:
    """``text`` as a JavaScript string literal."""
    return orjson.dumps(text).decode()


class PageError(AssertionError):
    """The page threw, or a condition did not hold in time."""


class Page:
    """One browser tab: evaluate JavaScript, wait for conditions, click, type, screenshot."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.errors: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._ws:
            data = orjson.loads(message.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            elif data.get("method") == "Runtime.exceptionThrown":
                details = data["params"]["exceptionDetails"]
                self.errors.append(details.get("exception", {}).get("description", str(details)))

    async def send(self, method: str, **params: object) -> dict[str, Any]:
        """One DevTools command; its ``result``."""
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        await self._ws.send_str(
            orjson.dumps({"id": ident, "method": method, "params": params}).decode()
        )
        reply = await asyncio.wait_for(future, timeout=30)
        if "error" in reply:
            raise PageError(f"{method}: {reply['error']}")
        return dict(reply["result"])

    async def js(self, expression: str) -> Any:
        """The value of ``expression`` (awaited when it is a promise)."""
        result = await self.send(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise PageError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait(self, condition: str, *, timeout: float = 15.0) -> Any:  # noqa: ASYNC109 (a bound inside the page)
        """Poll ``condition`` in the page until it is truthy; its value."""
        script = f"""new Promise((resolve, reject) => {{
            const end = performance.now() + {timeout * 1000};
            (function poll() {{
                let value;
                try {{ value = ({condition}); }} catch (e) {{ value = undefined; }}
                if (value) return resolve(value);
                if (performance.now() > end) return reject(new Error("timed out"));
                setTimeout(poll, 25);
            }})();
        }})"""
        try:
            return await self.js(script)
        except PageError:
            raise PageError(f"not true within {timeout}s: {condition}") from None

    async def goto(self, url: str, *, page: str) -> None:
        """Open ``url`` and wait until ``page`` has drawn its data once."""
        await self.send("Page.navigate", url=url)
        await self.wait(f"document.body && document.body.dataset.loaded === {js_string(page)}")

    async def click(self, selector: str) -> None:
        """Wait for ``selector``, then click it."""
        await self.wait(f"document.querySelector({js_string(selector)})")
        await self.js(f"document.querySelector({js_string(selector)}).click()")

    async def type(self, selector: str, text: str) -> None:
        """Set an input's value and fire ``input``, as typing does."""
        element = f"document.querySelector({js_string(selector)})"
        await self.js(
            f"(() => {{ const e = {element}; e.value = {js_string(text)}; "
            "e.dispatchEvent(new Event('input', {bubbles: true})); })()"
        )

    async def texts(self, selector: str) -> list[str]:
        """The trimmed text of every element ``selector`` matches, in document order."""
        found = f"document.querySelectorAll({js_string(selector)})"
        return list(await self.js(f"[...{found}].map(e => e.textContent.trim())"))

    async def screenshot(self, name: str) -> Path:
        """A full-page PNG under the artifacts directory."""
        size = await self.js(
            "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
        )
        shot = await self.send(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1},
        )
        path = ARTIFACTS / "ui" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()


@contextlib.asynccontextmanager
async def browser_page(profile: Path) -> AsyncIterator[Page]:
    """Headless Chromium with one 1366-wide tab; closed (and the process ended) on exit."""
    chromium = shutil.which("chromium")
    assert chromium is not None, "chromium is not installed; `make test` installs it"
    process = await asyncio.create_subprocess_exec(
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        endpoint = ""
        async with asyncio.timeout(30):
            while not endpoint:
                line = (await process.stderr.readline()).decode()
                assert line, "chromium exited before it opened the DevTools port"
                found = re.search(r"DevTools listening on (ws://\S+)", line)
                endpoint = found.group(1) if found else ""
        drain = asyncio.create_task(process.stderr.read())  # keep the pipe from filling up
        base = endpoint.split("/devtools/")[0].replace("ws://", "http://")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/json/list") as response:
                tabs = [t for t in await response.json() if t["type"] == "page"]
            ws = await session.ws_connect(tabs[0]["webSocketDebuggerUrl"], max_msg_size=0)
            page = Page(ws)
            try:
                await page.send("Runtime.enable")
                await page.send("Page.enable")
                await page.send(
                    "Emulation.setDeviceMetricsOverride",
                    width=1366,
                    height=900,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                yield page
                assert not page.errors, f"script errors in the page: {page.errors}"
            finally:
                await page.close()
        drain.cancel()
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
