"""A real headless Chromium for browser tests, driven with Playwright over the system's
browser (no browser download), and what went wrong in a page while it was open.

::

    with chromium(profile_dir) as browser:
        page = browser.new_page()
        problems = Problems()
        problems.watch(page)
        page.goto(url)
        ...
    assert problems.console == [] and problems.failed == []
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.services.common import require_binary
from tests.integration.services.postgres import require_module

REPO_ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = REPO_ROOT / "build" / "screenshots"
"""Where browser tests save their screenshots."""
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

RENDERED = """() => Array.from(document.querySelectorAll('.panel .body')).map(el => {
  const traces = (el.data || []).map(t => ({
    type: t.type || 'scatter',
    name: t.name || null,
    points: t.type === 'indicator'
      ? (t.value === null || t.value === undefined ? 0 : 1)
      : (t.y || []).filter((y, i) => y !== null && (t.x || [])[i] !== undefined).length,
  }));
  return {
    id: el.id.slice(5),
    mode: el.dataset.mode,
    drawn: el.classList.contains('js-plotly-plot') && !!el.querySelector('.main-svg'),
    traces,
    rows: el.querySelectorAll('tbody tr').length,
    message: (el.querySelector('.message') || {}).textContent || null,
  };
})"""
"""JavaScript giving what each panel's body holds once drawn: the Plotly traces with their
points, or the table rows, or the message shown instead."""


@dataclass
class Problems:
    """What went wrong in the browser while a page was open, and every request it made."""

    console: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> None:
        page.on("console", lambda m: self.console.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.console.append(f"uncaught: {e}"))
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("requestfailed", lambda r: self.failed.append(f"{r.url}: {r.failure}"))
        page.on(
            "response",
            lambda r: self.failed.append(f"{r.url}: HTTP {r.status}") if r.status >= 400 else None,
        )


@contextlib.contextmanager
def chromium(profile: Path, width: int = 1400, height: int = 900) -> Iterator[Any]:
    """A browser context of the system's Chromium, headless, with its profile in ``profile``;
    skips the test (fails it in CI) when Chromium or Playwright is missing."""
    executable = require_binary("chromium")
    playwright_api = require_module("playwright.sync_api", "dev")
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=executable,
            args=CHROMIUM_FLAGS,
            headless=True,
            viewport={"width": width, "height": height},
        )
        try:
            yield context
        finally:
            context.close()
