"""Each panel's data, computed from real sources: PromQL over a MemorySeries, a run history
and a registry in SQLite, an alert store."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dashboard import seeding
from perfml.dashboard.data import (
    READERS,
    DashboardSources,
    PanelReaders,
    TimeRange,
    page_data,
    panel_data,
)
from perfml.dashboard.errors import BadRangeError
from perfml.dashboard.panels import ChartKind, Page, Panel, Query, Source, default_dashboard
from perfml.promql.series import MemorySeries

NOW_MS = 1_790_000_000_000  # 2026-09-21, on a whole minute
Json = dict[str, Any]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardSources]:
    seeded = seeding.seeded_sources(tmp_path_factory.mktemp("dashboard"), NOW_MS)
    yield seeded
    seeding.close(seeded)


def page(slug: str, sources: DashboardSources, span: str | None = None) -> dict[str, Json]:
    chosen = default_dashboard().page(slug)
    window = TimeRange.last(span or chosen.default_range, NOW_MS)
    answer = page_data(chosen, sources, window)
    json.dumps(answer, allow_nan=False)  # strict JSON: no NaN or infinity anywhere
    return {panel["id"]: panel for panel in answer["panels"]}


def latest(panel: Json, name: str) -> float:
    found = [s for s in panel["series"] if s["name"] == name]
    assert len(found) == 1, [s["name"] for s in panel["series"]]
    return float(found[0]["value"])


# -- the time range ----------------------------------------------------------------------


def test_range_from_query_text() -> None:
    window = TimeRange.parse("2026-01-01T00:00:00Z", "1767229200", "30s")
    assert (window.start_ms, window.end_ms, window.step_ms) == (
        1_767_225_600_000,
        1_767_229_200_000,
        30_000,
    )
    defaulted = TimeRange.parse(None, None, None, "6h", now_ms=NOW_MS)
    assert defaulted.end_ms == NOW_MS
    assert defaulted.start_ms == NOW_MS - 6 * 3_600_000
    assert 200 <= defaulted.points <= 241


@pytest.mark.parametrize(
    ("start", "end", "step", "problem"),
    [
        ("100", "50", "1", "end 50000: is before the start 100000"),
        ("0", "100", "0.5", "step 500: is under 1000 ms"),
        ("0", "100000", "1", "step 1000: gives 100001 points"),
        ("yesterday", None, None, "start 'yesterday': is not Unix seconds"),
        ("0", "100", "-3", "step '-3': is not a positive number"),
        ("0", "100", "fast", "step 'fast': is not a duration"),
    ],
)
def test_bad_ranges_name_the_value(
    start: str, end: str | None, step: str | None, problem: str
) -> None:
    with pytest.raises(BadRangeError) as caught:
        TimeRange.parse(start, end, step, now_ms=NOW_MS)
    assert problem in str(caught.value)
    assert caught.value.status_code == 400


# -- PromQL panels -----------------------------------------------------------------------


def test_inference_panels(sources: DashboardSources) -> None:
    panels = page("inference", sources)
    latency = panels["latency"]
    p50, p95, p99 = (latest(latency, q) for q in ("p50", "p95", "p99"))
    assert 0.01 < p50 < p95 < p99 < 0.25  # lognormal around 20 ms
    assert latest(panels["request-rate"], "cpu-anomaly") == pytest.approx(303 / 15, rel=1e-6)
    assert latest(panels["error-rate"], "errors") == pytest.approx(3 / 303, rel=1e-6)
    assert latest(panels["loaded-version"], "cpu-anomaly") == 2.0
    up = panels["up"]["series"][0]
    assert up["name"] == "127.0.0.1:8080"
    assert 0.0 in up["v"]
    assert up["value"] == 1.0
    assert 0.9 < latest(panels["uptime"], "127.0.0.1:8080") < 1.0
    assert panels["latency"]["format"] == {"tickformat": ".3s", "suffix": "s"}
    assert all(not p["empty"] and p["error"] is None for p in panels.values())


def test_jobs_resource_panels(sources: DashboardSources) -> None:
    panels = page("jobs", sources)
    cpu = {s["name"]: s["value"] for s in panels["cpu"]["series"]}
    assert cpu == pytest.approx(
        {"train-r1-preprocess-1": 0.4, "train-r1-train-1": 0.7, "train-r2-train-1": 1.0}
    )
    disk = [s["name"] for s in panels["disk"]["series"]]
    assert "train-r2-train-1 read" in disk
    assert "train-r2-train-1 write" in disk
    phases = {s["name"]: s["value"] for s in panels["phase-seconds"]["series"]}
    assert phases["train/train Running"] == 240.0
    memory = panels["memory"]["series"][0]
    assert memory["t"][0] >= NOW_MS - 3_600_000
    assert memory["t"][-1] <= NOW_MS


def test_drift_draws_every_feature_against_the_threshold(sources: DashboardSources) -> None:
    drift = page("drift", sources)["feature-drift"]
    assert sorted(s["name"] for s in drift["series"]) == sorted(seeding.FEATURES)
    assert drift["threshold"] == {"value": 0.1, "label": "threshold 0.1"}
    for series in drift["series"]:
        filled = [v for v in series["v"] if v is not None]
        assert len(filled) > 0.9 * len(series["v"])  # monthly values held for the month
    assert max(latest(drift, f) for f in seeding.FEATURES) > 0.1


def test_missing_values_are_null_not_nan() -> None:
    store = MemorySeries()
    store.extend("perfml_model_loaded_version", {"model": "m"}, [NOW_MS - 60_000], [math.nan])
    store.extend("perfml_model_loaded_version", {"model": "n"}, [NOW_MS - 60_000], [3.0])
    panel = default_dashboard().page("inference").panel("loaded-version")
    answer = panel_data(panel, DashboardSources(series=store), TimeRange.last("5m", NOW_MS))
    values = {s["name"]: s["value"] for s in answer["series"]}
    assert values == {"m": None, "n": 3.0}
    json.dumps(answer, allow_nan=False)


def test_a_promql_table_has_a_row_per_series() -> None:
    store = MemorySeries()
    for job, value in (("a", 1.0), ("b", 0.0)):
        store.extend("up", {"job": job, "instance": f"{job}:80"}, [NOW_MS - 10_000], [value])
    panel = Panel("targets", "Targets", ChartKind.TABLE, (Query("up"),))
    answer = panel_data(panel, DashboardSources(series=store), TimeRange.last("1m", NOW_MS))
    assert answer["columns"] == ["instance", "job", "value"]
    assert answer["rows"] == [["a:80", "a", 1.0], ["b:80", "b", 0.0]]


def test_one_bad_query_does_not_blank_the_page(sources: DashboardSources) -> None:
    bad = Panel("bad", "Bad", ChartKind.TIMESERIES, (Query("rate(up)"),))
    good = Panel("good", "Good", ChartKind.TIMESERIES, (Query('up{job="perfml-serving"}'),))
    answer = page_data(Page("p", "P", (bad, good)), sources, TimeRange.last("1h", NOW_MS))
    first, second = answer["panels"]
    assert first["empty"]
    assert "rate(up)" in first["error"]
    assert not second["empty"]
    assert second["error"] is None


# -- no data yet --------------------------------------------------------------------------


def test_empty_sources_give_messages_not_errors(tmp_path: Path) -> None:
    database = seeding.MetadataDatabase(f"sqlite:///{tmp_path}/empty.db")
    empty = DashboardSources(
        series=MemorySeries(),
        history=seeding.RunHistory(database),
        registry=seeding.ModelRegistry(database, seeding.FilesystemArtifactStore(tmp_path / "a")),
        alerts=seeding.AlertStore(database),
    )
    try:
        for slug in default_dashboard().slugs:
            for panel in page(slug, empty).values():
                assert panel["empty"], panel
                assert panel["error"] is None, panel
                assert panel["message"], panel
    finally:
        seeding.close(empty)
    jobs = page("jobs", empty)
    assert jobs["job-states"]["message"] == "No pipeline job ran in this time range yet."
    assert jobs["cpu"]["message"] == "No data yet for this time range."


def test_unconnected_sources_say_so() -> None:
    messages = {
        panel["id"]: panel["message"]
        for slug in default_dashboard().slugs
        for panel in page(slug, DashboardSources()).values()
    }
    assert messages["job-states"] == "The run history is not connected."
    assert messages["cpu"] == "The metrics store is not connected."
    assert messages["versions"] == "The model registry is not connected."
    assert messages["active-alerts"] == "The alert store is not connected."


def test_a_source_without_a_reader_is_a_panel_error(sources: DashboardSources) -> None:
    readers = PanelReaders()
    panel = default_dashboard().page("models").panel("versions")
    answer = panel_data(panel, sources, TimeRange.last("1h", NOW_MS), readers)
    assert answer["error"] == "no reader for the source 'model_versions'"
    assert READERS.reader(Source.MODEL_VERSIONS) is not None


# -- the run history ----------------------------------------------------------------------


def test_job_timeline_from_the_run_history(sources: DashboardSources) -> None:
    states = page("jobs", sources)["job-states"]
    lanes = {lane["name"]: lane for lane in states["lanes"]}
    assert list(lanes) == [
        "train-r1-preprocess",
        "train-r1-train",
        "train-r1-evaluate",
        "train-r2-preprocess",
        "train-r2-train",
    ]
    failed = lanes["train-r2-train"]
    assert failed["state"] == "Failed"
    assert failed["run"] == "train-r2"
    assert [s["state"] for s in failed["segments"]] == ["Pending", "Running", "Failed"]
    start = NOW_MS - 20 * 60_000
    pending, running, end = failed["segments"]
    assert (pending["start"], pending["end"]) == (start + 200_000, start + 260_000)
    assert running["end"] == start + 500_000 == end["start"]
    assert end["end"] == NOW_MS
    assert end["reason"] == "Error"
    assert states["states"] == ["Pending", "Running", "Succeeded", "Failed", "Cancelled"]
    assert states["colors"]["Failed"] == "#c4162a"


def test_timeline_clips_to_the_window(sources: DashboardSources) -> None:
    # The last 10 minutes: every job had ended before they began.
    window = TimeRange.last("10m", NOW_MS)
    panel = default_dashboard().page("jobs").panel("job-states")
    assert panel_data(panel, sources, window)["lanes"] == []
    window = TimeRange.last("15m", NOW_MS)
    lanes = panel_data(panel, sources, window)["lanes"]
    assert [lane["name"] for lane in lanes] == ["train-r2-train"]
    assert lanes[0]["segments"] == [  # Running since before the window, then Failed for good
        {"state": "Running", "reason": None, "start": NOW_MS - 900_000, "end": NOW_MS - 700_000},
        {"state": "Failed", "reason": "Error", "start": NOW_MS - 700_000, "end": NOW_MS},
    ]


# -- the registry ------------------------------------------------------------------------


def test_registry_tables(sources: DashboardSources) -> None:
    panels = page("models", sources)
    versions = panels["versions"]
    assert versions["columns"][:4] == ["model", "version", "aliases", "detector"]
    assert [row[:4] for row in versions["rows"]] == [
        ["cpu-anomaly", 2, "production, staging", "iforest"],
        ["cpu-anomaly", 1, "", "iforest"],
    ]
    assert versions["rows"][0][5] == "f1=0.83"
    assert panels["aliases"]["rows"] == [
        ["cpu-anomaly", "production", 2, 2],
        ["cpu-anomaly", "staging", 2, 2],
    ]
    audit = panels["audit-log"]
    assert [row[2:6] for row in audit["rows"]] == [
        ["staging", "set", None, 2],
        ["production", "promote", 1, 2],
        ["production", "promote", None, 1],
    ]
    assert audit["rows"][1][6:8] == ["tester", "better f1"]
    loaded = panels["loaded-versions"]["series"][0]
    assert {v for v in loaded["v"] if v is not None} == {1.0, 2.0}


# -- alerts ----------------------------------------------------------------------------


def test_alerts(sources: DashboardSources) -> None:
    panels = page("alerts", sources)
    active = panels["active-alerts"]
    assert [row[1:3] for row in active["rows"]] == [["HighInferenceLatency", "firing"]]
    assert active["rows"][0][3] == "predictor_name=cpu-anomaly, severity=warning"
    assert active["rows"][0][4:] == [0.42, "p99 is slow"]
    history = panels["alert-history"]
    assert [row[1:4] for row in history["rows"]] == [
        ["JobFailed", "firing", "resolved"],
        ["HighInferenceLatency", "pending", "firing"],
        ["HighInferenceLatency", "", "pending"],
        ["JobFailed", "", "firing"],
    ]
    recent = page("alerts", sources, span="6m")["alert-history"]
    assert [row[1:4] for row in recent["rows"]] == [["JobFailed", "firing", "resolved"]]
