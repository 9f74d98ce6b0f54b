"""The dashboard in a real headless Chromium: every page loads without a console error or a
failed request, every chart is drawn with data, and an empty workspace shows messages. The
Anomalies page over a generated fleet's backfilled score log: the heatmap, the incidents naming
their hosts, a host's own view with its labelled windows, a hostile host name shown as text;
the Drift page with the controller's recorded decisions.

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
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from tests.integration.services import free_port, wait_for_http
from tests.integration.services.browser import RENDERED, SCREENSHOTS, Problems, chromium

from dashboard import anomaly_seeding, seeding
from perfml.anomalies import ScoreLog
from perfml.dashboard.anomalies import NO_SCORES
from perfml.dashboard.app import create_app
from perfml.dashboard.data import DashboardSources
from perfml.dashboard.panels import default_dashboard
from perfml.metadata import MetadataDatabase
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


# -- the Anomalies page over a generated fleet, and the Drift page's decisions ----------------

HOSTILE = '<img src=x onerror="window.pwned=1">'
ANOMALIES = """() => {
  const heat = document.getElementById('body-heatmap');
  const host = document.getElementById('body-host');
  const rows = Array.from(document.querySelectorAll('#body-incidents tbody tr'));
  return {
    heatmap: {
      drawn: !!heat.querySelector('.main-svg'),
      type: heat.data ? heat.data[0].type : null,
      rows: heat.data ? heat.data[0].y.length : 0,
      ticks: Array.from(heat.querySelectorAll('.ytick text')).map(t => t.textContent),
    },
    incidents: rows.map(tr => Array.from(tr.cells).map(td => td.textContent)),
    links: Array.from(document.querySelectorAll('#body-incidents tbody a'))
      .map(a => ({text: a.textContent, href: a.getAttribute('href')})),
    message: (document.querySelector('#body-incidents .message') || {}).textContent || null,
    host: {
      title: host.parentElement.querySelector('h3').textContent,
      drawn: !!host.querySelector('.main-svg'),
      traces: (host.data || []).map(t => t.name),
      shapes: ((host.layout || {}).shapes || []).map(s => s.fillcolor),
    },
    injected: document.querySelectorAll('main img, main script').length,
    pwned: window.pwned === 1,
  };
}"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    """A generated fleet of five hosts, a model per host trained on 35 days, the rest
    backfilled; one more host, of a hostile name, anomalous a day before the latest score;
    two controller decisions."""
    root = tmp_path_factory.mktemp("fleet")
    log, store, _ = anomaly_seeding.fleet_log(root)
    latest = int(log.read().column("ts").to_numpy().max())
    ts = np.arange(latest - 86_400_000 - 3_600_000, latest - 86_400_000 + 1, 300_000)
    score = np.full(len(ts), 0.1)
    score[len(ts) // 2] = 0.99
    log.append_batch("cpu", anomaly_seeding.score_table(HOSTILE, "cpu_util", ts, score))
    with MetadataDatabase(f"sqlite:///{root}/metadata.db") as database:
        sources = DashboardSources(
            scores=log,
            labels=store,
            decisions=anomaly_seeding.decision_log(database, int(time.time() * 1000)),
        )
        with DashboardServer(sources, refresh_seconds=0) as server:
            yield server


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_the_anomalies_page_shows_the_fleets_hosts_and_incidents(
    browser: Any, fleet: DashboardServer
) -> None:
    page, problems = open_page(browser, f"{fleet.url}/anomalies")
    try:
        week = page.evaluate(ANOMALIES)  # the last 7 days of scores
        page.select_option("#range", "30d")
        page.wait_for_function("() => Number(document.body.dataset.loads) >= 2", timeout=15_000)
        month = page.evaluate(ANOMALIES)
        screenshot(page, "anomalies")
    finally:
        page.close()
    assert problems.console == []
    assert problems.failed == []
    assert week["heatmap"]["drawn"]
    assert week["heatmap"]["type"] == "heatmap"
    assert week["heatmap"]["rows"] == 6  # five hosts and the hostile one
    assert HOSTILE in week["heatmap"]["ticks"]  # shown as text
    assert [row[0] for row in week["incidents"]] == [HOSTILE]
    # The hosts' own incidents are older than a week: a month shows them, newest first.
    hosts = [row[0] for row in month["incidents"]]
    assert hosts == [HOSTILE, "host-0000", "host-0002", "host-0003", "host-0000", "host-0001"]
    assert all(row[1].startswith("cpu_util ") for row in month["incidents"])
    assert [link["text"] for link in month["links"]] == hosts
    assert month["host"]["drawn"]
    assert month["host"]["title"] == f"Host {HOSTILE}"  # the highest incident's host
    assert month["injected"] == 0
    assert not month["pwned"]


def test_a_host_link_opens_its_metrics_with_scores_labels_and_incidents(
    browser: Any, fleet: DashboardServer
) -> None:
    page, problems = open_page(browser, f"{fleet.url}/anomalies")
    try:
        page.select_option("#range", "30d")
        page.wait_for_function("() => Number(document.body.dataset.loads) >= 2", timeout=15_000)
        page.click("#body-incidents tbody tr:nth-child(4) a")  # host-0003
        page.wait_for_url("**entity=host-0003**")
        page.wait_for_function("() => Number(document.body.dataset.loads || 0) >= 1")
        found = page.evaluate(ANOMALIES)
        focus = page.text_content("#focus")
        screenshot(page, "anomalies-host")
    finally:
        page.close()
    assert problems.console == []
    assert found["host"]["title"] == "Host host-0003"
    assert found["host"]["traces"] == ["cpu_util value", "cpu_util score", "cpu_util threshold"]
    shades = set(found["host"]["shapes"])
    assert len(shades) == 2  # a labelled window and the incident it found, side by side
    assert focus is not None
    assert focus.startswith("entity host-0003")


def test_the_hostile_host_has_a_view_of_its_own(browser: Any, fleet: DashboardServer) -> None:
    page, problems = open_page(browser, f"{fleet.url}/anomalies")
    try:
        page.click("#body-incidents tbody a")
        page.wait_for_url("**entity=**")
        page.wait_for_function("() => Number(document.body.dataset.loads || 0) >= 1")
        found = page.evaluate(ANOMALIES)
    finally:
        page.close()
    assert problems.console == []
    assert found["host"]["title"] == f"Host {HOSTILE}"
    assert found["host"]["drawn"]
    assert found["injected"] == 0
    assert not found["pwned"]


def test_an_empty_score_log_says_how_scores_arrive(browser: Any, tmp_path: Path) -> None:
    sources = DashboardSources(scores=ScoreLog(tmp_path / "scores"))
    with DashboardServer(sources, refresh_seconds=0) as server:
        page, problems = open_page(browser, f"{server.url}/anomalies")
        try:
            panels = page.evaluate(RENDERED)
        finally:
            page.close()
    assert problems.console == []
    from_the_log = [p for p in panels if p["id"] in ("heatmap", "incidents", "host")]
    assert [(p["mode"], p["message"]) for p in from_the_log] == [("message", NO_SCORES)] * 3


def test_the_drift_page_lists_the_controllers_decisions(
    browser: Any, fleet: DashboardServer
) -> None:
    page, problems = open_page(browser, f"{fleet.url}/drift")
    try:
        rows = page.evaluate(
            "() => Array.from(document.querySelectorAll('#body-controller-decisions tbody tr'))"
            ".map(tr => Array.from(tr.cells).map(td => td.textContent))"
        )
        screenshot(page, "drift-decisions")
    finally:
        page.close()
    assert problems.console == []
    assert [row[3] for row in rows] == ["kept", "promoted"]  # newest first
    assert rows[0][4:8] == [
        "kl, threshold 0.1",
        "0.31 (memory_util)",
        "cpu:3",
        "refused: f1 0.71 < 0.80",
    ]
    assert rows[1][6:8] == ["cpu:2", "passed"]


def test_a_verdict_button_labels_the_incident(browser: Any, tmp_path: Path) -> None:
    from perfml.anomalies import VerdictLog
    from perfml.featurestore import FeatureStore

    now_ms = int(time.time() * 1000)
    log, labels = anomaly_seeding.small_log(tmp_path / "scores", now_ms)
    with MetadataDatabase(f"sqlite:///{tmp_path / 'metadata.db'}") as database:
        verdicts = VerdictLog(database, FeatureStore(tmp_path / "store"))
        sources = DashboardSources(scores=log, labels=labels, verdicts=verdicts)
        with DashboardServer(sources, refresh_seconds=0) as server:
            page, problems = open_page(browser, f"{server.url}/anomalies")
            try:
                row = page.locator("#body-incidents tr", has_text="host-0001")
                row.locator("button[data-verdict=true_anomaly]").click()
                page.wait_for_function(
                    "() => Number(document.body.dataset.loads) >= 2", timeout=15_000
                )
                shown = page.locator("#body-incidents tr", has_text="host-0001")
                cell = shown.locator("td.verdict").inner_text()
            finally:
                page.close()
        assert problems.console == []
        assert problems.failed == []
        assert cell == "true anomaly"
        (given,) = verdicts.history()
        assert (given.entity, given.kind.value, given.by) == ("host-0001", "true_anomaly",
                                                              "dashboard")  # fmt: skip
        assert {w.metric for w in verdicts.store.windows(entities=["host-0001"])} == {
            "cpu_util", "memory_util",
        }  # fmt: skip
