"""Debian's Chromium under Playwright, for the dashboard's browser tests and scripts.

Playwright never downloads a browser here (`playwright install` is not used): it drives the
system's /usr/bin/chromium (scripts/bootstrap installs the package), headless and sandbox-less.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_missing() -> str | None:
    """Why the browser cannot run here, or None."""
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        return f"no Chromium at {CHROMIUM}: sudo apt-get install -y chromium (scripts/bootstrap)"
    return None


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Console:
    """What a page wrote to its console at level error, and the errors it threw."""

    errors: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.errors.append(f"{message.text} ({message.location})")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))


async def enter_key(page: Page, key: str, *, accepted: bool = True) -> None:
    """Type `key` into the dashboard's key prompt once it shows; with `accepted`, wait for
    the prompt to go away."""
    await page.locator("#key-dialog[open]").wait_for()
    await page.fill("#api-key", key)
    await page.click("#key-save")
    if accepted:
        await page.locator("#key-dialog[open]").wait_for(state="detached")
