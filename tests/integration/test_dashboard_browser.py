"""The dashboard in a real headless Chromium: every page loads without a console error or a
failed request, every chart is drawn with data, and an empty workspace shows messages.

The dashboard runs on uvicorn on a free loopback port over real sources (a run history and a
registry in SQLite, an alert store, a MemorySeries with a series for every panel); Chromium
is driven with Playwright over the system's browser (no browser download, see
:mod:`tests.integration.services.browser`). A screenshot of each page is saved to
``build/screenshots/<page>.png`` under the repository root.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from tests.integration.services import free_port, wait_for_http
from tests.integration.services.browser import RENDERED, SCREENSHOTS, Problems, chromium

from dashboard import seeding
from perfml.dashboard.app import create_app
from perfml.dashboard.data import DashboardSources
from perfml.dashboard.panels import default_dashboard
from perfml.promql.series import MemorySeries

pytestmark = pytest.mark.integration

PAGES = default_dashboard().slugs


class DashboardServer:
    """The dashboard app on uvicorn in a thread, on a free loopback port."""

    def __init__(self, sources: DashboardSources, refresh_seconds: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(sources, refresh_seconds=refresh_seconds),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="dashboard", daemon=True)

    def __enter__(self) -> DashboardServer:
        self.thread.start()
        wait_for_http(f"{self.url}/healthz", 10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    sources = seeding.seeded_sources(tmp_path_factory.mktemp("seeded"), int(time.time() * 1000))
    try:
        with DashboardServer(sources, refresh_seconds=2) as server:
            yield server
    finally:
        seeding.close(sources)


def open_page(browser: Any, url: str) -> tuple[Any, Problems]:
    page = browser.new_page()
    problems = Problems()
    problems.watch(page)
    page.goto(url, wait_until="load")
    # Every request (the page, its scripts, the panels' JSON) is done once the first draw is.
    page.wait_for_function("() => Number(document.body.dataset.loads || 0) >= 1", timeout=15_000)
    return page, problems


@pytest.mark.parametrize("slug", PAGES)
def test_every_page_draws_every_panel_with_data(
    browser: Any, seeded: DashboardServer, slug: str
) -> None:
    page, problems = open_page(browser, f"{seeded.url}/{slug}")
    try:
        panels = page.evaluate(RENDERED)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{slug}.png"), full_page=True)
    finally:
        page.close()
    assert problems.console == []
    assert problems.failed == []
    expected = [p.id for p in default_dashboard().page(slug).panels]
    assert [p["id"] for p in panels] == expected
    for panel in panels:
        assert panel["message"] is None, panel
        if panel["mode"] == "table":
            assert panel["rows"] > 0, panel
            continue
        assert panel["mode"] == "plot", panel
        assert panel["drawn"], panel
        assert panel["traces"], panel
        assert all(trace["points"] > 0 for trace in panel["traces"]), panel


def test_job_timeline_shows_the_failed_job(browser: Any, seeded: DashboardServer) -> None:
    page, problems = open_page(browser, f"{seeded.url}/jobs")
    try:
        traces = page.evaluate(
            "() => document.getElementById('body-job-states').data"
            ".map(t => ({name: t.name, lanes: t.y}))"
        )
    finally:
        page.close()
    by_state = {t["name"]: t["lanes"] for t in traces}
    assert by_state["Failed"] == ["train-r2-train"]
    assert set(by_state["Succeeded"]) == {
        "train-r1-preprocess",
        "train-r1-train",
        "train-r1-evaluate",
        "train-r2-preprocess",
    }
    assert problems.console == []


def test_pages_refresh_live(browser: Any, seeded: DashboardServer) -> None:
    page, problems = open_page(browser, f"{seeded.url}/inference")
    try:
        page.wait_for_function("() => Number(document.body.dataset.loads) >= 2", timeout=10_000)
        page.select_option("#range", "6h")
        page.wait_for_function("() => Number(document.body.dataset.loads) >= 3", timeout=10_000)
        status = page.text_content("#status")
    finally:
        page.close()
    assert status is not None
    assert status.startswith("updated ")
    assert problems.console == []
    assert problems.failed == []


def test_no_data_yet_shows_messages_without_errors(browser: Any) -> None:
    with DashboardServer(DashboardSources(series=MemorySeries()), refresh_seconds=0) as server:
        for slug in PAGES:
            page, problems = open_page(browser, f"{server.url}/{slug}")
            try:
                panels = page.evaluate(RENDERED)
            finally:
                page.close()
            assert problems.console == [], slug
            assert problems.failed == [], slug
            for panel in panels:
                assert panel["mode"] == "message", panel
                assert panel["message"], panel
                assert not panel["message"].startswith("This panel could not be read"), panel
