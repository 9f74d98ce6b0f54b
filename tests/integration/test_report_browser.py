"""The HTML report in a real headless Chromium, opened from ``file://``: no console error, no
request but the file itself (any other is recorded and refused), and every chart drawn with
points. Over real sources (:mod:`dashboard.seeding`) and real drift records; a screenshot is
saved to ``build/screenshots/report.png`` under the repository root.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.services.browser import RENDERED, SCREENSHOTS, Problems, chromium

from dashboard import report_seeding, seeding
from perfml.dashboard.data import DashboardSources, TimeRange
from perfml.dashboard.report import write_report
from perfml.promql.series import MemorySeries

pytestmark = pytest.mark.integration

DRIFT_LAYOUT = """() => {
  const el = document.getElementById('body-drift-chart');
  return {
    axis: el.layout.xaxis.type,
    dashed: (el.layout.shapes || []).filter(s => s.line && s.line.dash === 'dash')
      .map(s => s.y0),
    flagged: Array.from(document.querySelectorAll('#body-drift-table td.flagged'))
      .map(td => td.textContent),
  };
}"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("report")
    now_ms = int(time.time() * 1000)
    sources = seeding.seeded_sources(root, now_ms)
    records = report_seeding.drift_records()
    try:
        yield write_report(
            root / "report.html",
            sources,
            # The registry's moves are stamped when seeded: end the range a minute later.
            TimeRange.last("3h", now_ms + 60_000, points=180),
            drift=records,
            decisions=report_seeding.decisions(records),
            title="perfml report",
        )
    finally:
        seeding.close(sources)


def open_offline(browser: Any, path: Path) -> tuple[Any, Problems, list[str]]:
    """Open ``path`` from disk; every request for anything but the file is refused."""
    url = path.resolve().as_uri()
    page = browser.new_page()
    problems = Problems()
    problems.watch(page)
    refused: list[str] = []

    def only_the_file(route: Any) -> None:
        if route.request.url == url:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_file)
    page.goto(url, wait_until="load")
    page.wait_for_function("() => document.body.dataset.loads === '1'", timeout=15_000)
    return page, problems, refused


def test_the_report_draws_every_chart_offline(browser: Any, report_file: Path) -> None:
    page, problems, refused = open_offline(browser, report_file)
    try:
        panels = page.evaluate(RENDERED)
        drift = page.evaluate(DRIFT_LAYOUT)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "report.png"), full_page=True)
    finally:
        page.close()
    assert problems.console == []
    assert problems.failed == []
    assert refused == []
    assert problems.requests == [report_file.resolve().as_uri()]
    assert len(panels) == 16
    for panel in panels:
        assert panel["message"] is None, panel
        if panel["mode"] == "table":
            assert panel["rows"] > 0, panel
            continue
        assert panel["mode"] == "plot", panel
        assert panel["drawn"], panel
        assert panel["traces"], panel
        assert all(trace["points"] > 0 for trace in panel["traces"]), panel
    by_id = {p["id"]: p for p in panels}
    assert [t["name"] for t in by_id["drift-chart"]["traces"]] == list(report_seeding.FEATURES)
    assert [t["name"] for t in by_id["inference-latency"]["traces"]] == ["p50", "p95", "p99"]
    assert {t["name"] for t in by_id["alerts-timeline"]["traces"]} == {
        "pending",
        "firing",
        "resolved",
    }
    assert drift["axis"] == "category"
    assert drift["dashed"] == [0.1]  # the threshold line
    assert len(drift["flagged"]) == 3
    assert all(text.endswith(" !") for text in drift["flagged"])


def test_a_report_of_nothing_yet_shows_messages(browser: Any, tmp_path: Path) -> None:
    path = write_report(
        tmp_path / "empty.html",
        DashboardSources(series=MemorySeries()),
        TimeRange.last("1h", 1_790_000_000_000),
    )
    page, problems, refused = open_offline(browser, path)
    try:
        panels = page.evaluate(RENDERED)
    finally:
        page.close()
    assert problems.console == []
    assert refused == []
    for panel in panels:
        if panel["id"] == "summary-facts":
            assert panel["rows"] > 0
            continue
        assert panel["mode"] == "message", panel
        assert panel["message"], panel
        assert not panel["message"].startswith("This panel could not be read"), panel
