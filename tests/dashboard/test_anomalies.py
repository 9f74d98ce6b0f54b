"""The Anomalies page's data from a score log (the heatmap's buckets, the incidents, one host's
view, an empty log), its window and focus over HTTP, a hostile host name kept as text, the
report's section and the Drift page's decisions. Over :mod:`dashboard.anomaly_seeding`."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dashboard import anomaly_seeding
from dashboard.anomaly_seeding import HOSTS, STEP_MS
from perfml.anomalies import ScoreLog
from perfml.dashboard.anomalies import NO_SCORES, NOT_CONNECTED, bucket_ms, heatmap
from perfml.dashboard.app import create_app
from perfml.dashboard.data import DashboardSources, Focus, TimeRange, page_data
from perfml.dashboard.panels import default_dashboard
from perfml.dashboard.report import report_data, write_report
from perfml.metadata import MetadataDatabase

with warnings.catch_warnings():
    # starlette 0.46's testclient names anyio.abc.BlockingPortal, deprecated by anyio 4.16
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

Json = dict[str, Any]
NOW_MS = 1_790_000_000_000
END_MS = NOW_MS - NOW_MS % STEP_MS
HOSTILE = "<script>alert('pwned')</script>"
PAGE = default_dashboard().page("anomalies")


@pytest.fixture
def sources(tmp_path: Path) -> DashboardSources:
    log, labels = anomaly_seeding.small_log(tmp_path / "scores", NOW_MS)
    return DashboardSources(scores=log, labels=labels)


def window(hours: int = 3) -> TimeRange:
    return TimeRange.parse(None, None, None, f"{hours}h", now_ms=NOW_MS)


def panels(sources: DashboardSources, focus: Focus | None = None) -> dict[str, Json]:
    data = page_data(PAGE, sources, window(), focus=focus)
    return {p["id"]: p for p in data["panels"]}


def test_buckets_are_the_narrowest_width_giving_at_most_200_columns() -> None:
    assert bucket_ms(3 * 3_600_000) == 60_000
    assert bucket_ms(7 * 86_400_000) == 3_600_000
    assert bucket_ms(30 * 86_400_000) == 6 * 3_600_000


def test_the_heatmap_holds_each_hosts_highest_score_over_its_threshold_per_bucket(
    sources: DashboardSources,
) -> None:
    assert sources.scores is not None
    found = heatmap(sources.scores, window(), top=30)
    assert found.bucket_ms == 60_000
    assert found.entities[:1] == ["host-0001"]  # the highest peak first
    assert sorted(found.entities) == sorted(HOSTS)
    assert found.hidden == 0
    row = found.entities.index("host-0001")
    column = found.starts.index(END_MS - 85 * 60_000)
    assert found.ratios[row][column] == pytest.approx(0.95 / 0.5)
    assert found.metrics[row][column] == "cpu_util"
    # Buckets without a score are empty, not zero.
    assert found.ratios[row][found.starts.index(END_MS - 84 * 60_000)] is None


def test_the_heatmap_shows_the_top_hosts_and_counts_the_rest(sources: DashboardSources) -> None:
    sources.max_hosts = 2
    heat = panels(sources)["heatmap"]
    assert heat["heatmap"]["y"] == ["host-0001", "host-0004"]
    assert heat["hidden"] == 3
    assert len(heat["heatmap"]["z"]) == 2


def test_a_metric_narrows_the_heatmap(sources: DashboardSources) -> None:
    heat = panels(sources, Focus(metric="memory_util"))["heatmap"]
    assert heat["heatmap"]["y"][0] == "host-0001"  # its 0.6 is memory's only excess
    assert {m for row in heat["heatmap"]["metrics"] for m in row if m} == {"memory_util"}


def test_incidents_newest_first_with_a_fleet_wide_event_as_one_row(
    sources: DashboardSources,
) -> None:
    table = panels(sources)["incidents"]
    assert table["columns"] == ["host", "metrics", "start", "peak", "end", "peak score", "fleet"]
    assert table["message"] is None
    fleet, single = table["rows"]
    assert fleet[0] == "fleet: 3 of 5 hosts"
    assert fleet[1] == "cpu_util"
    assert fleet[6] == "fleet incident (3 hosts)"
    assert table["marked"] == [0]
    assert single == [
        "host-0001",
        "cpu_util 0.95, memory_util 0.6",  # ranked by peak
        "2026-09-21 12:40:00Z",
        "2026-09-21 12:45:00Z",
        "2026-09-21 12:50:00Z",
        "0.95",
        "",
    ]
    (link,) = table["links"]
    assert link[:2] == [1, 0]
    assert link[2].startswith("?entity=host-0001&start=")


def test_the_host_view_has_each_metric_with_scores_threshold_labels_and_incidents(
    sources: DashboardSources,
) -> None:
    host = panels(sources, Focus(entity="host-0001"))["host"]
    assert host["title"] == "Host host-0001"
    assert host["scored"] is True
    cpu, memory = host["series"]
    assert (cpu["name"], memory["name"]) == ("cpu_util", "memory_util")
    assert len(cpu["t"]) == len(cpu["v"]) == len(cpu["score"]) == len(cpu["threshold"]) == 25
    assert set(cpu["threshold"]) == {0.5}
    assert max(cpu["score"]) == pytest.approx(0.95)
    assert cpu["labelled"] == [[END_MS - 95 * 60_000, END_MS - 75 * 60_000]]
    assert cpu["incidents"] == [[END_MS - 90 * 60_000, END_MS - 80 * 60_000]]
    assert memory["labelled"] == []
    assert memory["incidents"] == cpu["incidents"]  # one incident across both metrics


def test_without_a_host_the_view_shows_the_host_of_the_highest_incident(
    sources: DashboardSources,
) -> None:
    assert panels(sources)["host"]["entity"] == "host-0001"
    unknown = panels(sources, Focus(entity="host-9999"))["host"]
    assert unknown["empty"]
    assert unknown["error"] is None
    assert unknown["message"] == "No score of host 'host-9999' in this time range."


def test_an_empty_score_log_says_how_scores_arrive(tmp_path: Path) -> None:
    empty = panels(DashboardSources(scores=ScoreLog(tmp_path / "none")))
    from_the_log = {"heatmap", "incidents", "host"}  # the live panels read the metrics
    for name in from_the_log:
        assert empty[name]["error"] is None
        assert empty[name]["empty"]
        assert empty[name]["message"] == NO_SCORES
    assert "perfml score backfills a window" in NO_SCORES
    for name in from_the_log:
        assert panels(DashboardSources())[name]["message"] == NOT_CONNECTED


def test_the_page_ends_at_the_latest_score_unless_told(sources: DashboardSources) -> None:
    client = TestClient(create_app(sources))
    data = client.get("/api/panels/anomalies", params={"range": "2h"}).json()
    assert data["range"]["end"] == END_MS + 1
    assert data["range"]["start"] == END_MS + 1 - 2 * 3_600_000
    pinned = client.get(
        "/api/panels/anomalies",
        params={"start": str((END_MS - 3_600_000) / 1000), "end": str(END_MS / 1000)},
    ).json()
    assert pinned["range"]["end"] == END_MS
    host = client.get("/api/panels/anomalies", params={"entity": "host-0003"}).json()
    (view,) = [p for p in host["panels"] if p["id"] == "host"]
    assert view["entity"] == "host-0003"
    assert client.get("/api/panels/anomalies", params={"range": "soon"}).status_code == 400


def test_a_hostile_host_name_stays_text(tmp_path: Path) -> None:
    log, labels = anomaly_seeding.small_log(tmp_path / "scores", NOW_MS, extra=[HOSTILE])
    sources = DashboardSources(scores=log, labels=labels)
    client = TestClient(create_app(sources))
    page = client.get("/anomalies", params={"entity": HOSTILE})
    assert page.status_code == 200
    assert HOSTILE not in page.text
    assert "alert(" not in page.text
    data = client.get("/api/panels/anomalies", params={"range": "3h"}).json()
    by_id = {p["id"]: p for p in data["panels"]}
    assert HOSTILE in by_id["heatmap"]["heatmap"]["y"]
    row = next(i for i, r in enumerate(by_id["incidents"]["rows"]) if r[0] == HOSTILE)
    link = next(href for r, _, href in by_id["incidents"]["links"] if r == row)
    assert link.startswith("?entity=%3Cscript%3Ealert%28%27pwned%27%29%3C%2Fscript%3E&")
    report = write_report(tmp_path / "report.html", sources, window())
    text = report.read_text(encoding="utf-8")
    assert HOSTILE not in text
    assert "\\u003cscript\\u003ealert('pwned')\\u003c/script\\u003e" in text


def test_the_report_has_the_heatmap_the_incidents_and_the_months(
    sources: DashboardSources,
) -> None:
    data = report_data(sources, window())
    section = next(s for s in data["sections"] if s["id"] == "anomalies")
    heat, incidents, months = section["panels"]
    assert heat["id"] == "anomalies-heatmap"
    assert not heat["empty"]
    assert incidents["id"] == "anomalies-incidents"
    assert "links" not in incidents
    assert len(incidents["rows"]) == 2
    assert months["columns"] == [
        "month",
        "incidents",
        "fleet incidents",
        "hosts",
        "labelled windows found",
    ]
    assert months["rows"] == [["2026-09", 1, 1, 4, "1 of 1"]]


def test_an_empty_report_section_says_so(tmp_path: Path) -> None:
    data = report_data(DashboardSources(scores=ScoreLog(tmp_path / "none")), window())
    section = next(s for s in data["sections"] if s["id"] == "anomalies")
    assert [p["message"] for p in section["panels"]] == [NO_SCORES] * 3


@pytest.fixture
def decisions_sources(tmp_path: Path) -> Iterator[DashboardSources]:
    with MetadataDatabase(f"sqlite:///{tmp_path}/metadata.db") as database:
        yield DashboardSources(decisions=anomaly_seeding.decision_log(database, NOW_MS))


def test_the_drift_page_lists_the_controllers_decisions_newest_first(
    decisions_sources: DashboardSources,
) -> None:
    page = default_dashboard().page("drift")
    data = page_data(page, decisions_sources, TimeRange.last("400d", NOW_MS))
    table = next(p for p in data["panels"] if p["id"] == "controller-decisions")
    assert table["columns"] == [
        "decided",
        "model",
        "window",
        "decision",
        "drift measure",
        "drift",
        "version trained",
        "gate",
        "why",
    ]
    kept, promoted = table["rows"]
    assert kept[:8] == [
        "2026-09-20 14:13:20Z",
        "cpu",
        "2026-06",
        "kept",
        "kl, threshold 0.1",
        "0.31 (memory_util)",
        "cpu:3",
        "refused: f1 0.71 < 0.80",
    ]
    assert promoted[3] == "promoted"
    assert promoted[7] == "passed"
    unconnected = page_data(page, DashboardSources(), TimeRange.last("400d", NOW_MS))
    empty = next(p for p in unconnected["panels"] if p["id"] == "controller-decisions")
    assert empty["message"] == "The decision log is not connected."
