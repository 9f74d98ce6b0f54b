"""Drift reports over a store: generated workload changes are flagged in their month."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from perfml.drift import (
    DEFAULT_THRESHOLDS,
    between,
    compare,
    drift_report,
    entity_drift,
    window_of,
)
from perfml.drift.errors import EmptyReferenceError, UnknownMeasureError
from perfml.featurestore import FeatureStore
from perfml.sources.fleet import METRICS

REFERENCE = between("2024-01-01", "2024-03-01")  # the fleet's first two months
THRESHOLD = DEFAULT_THRESHOLDS["kl"]


def test_the_shipped_kl_threshold_is_the_alert_rules() -> None:
    assert THRESHOLD == 0.1
    assert DEFAULT_THRESHOLDS == {"kl": 0.1, "psi": 0.2, "js": 0.025, "wasserstein": None}


def test_a_workload_change_is_flagged_in_its_month_and_stable_months_are_not(
    drifted_fleet,
) -> None:
    fleet, store = drifted_fleet
    (event,) = fleet.drift_events
    report = drift_report(store, REFERENCE, methods=["kl", "psi", "js"])
    assert [w.label for w in report.windows] == ["2024-03", "2024-04", "2024-05"]
    changed = f"{event.start:%Y-%m}"
    assert changed == "2024-04"
    # Fleet-wide, the month of the change is flagged (FeatureDriftHigh's max over features) ...
    worst = max(report.value(m, changed) for m in METRICS)
    assert worst > THRESHOLD, event.description
    # ... and the stable month before it is far under the threshold for every metric.
    for metric in METRICS:
        assert report.value(metric, "2024-03") < THRESHOLD / 5, metric
        assert report.value(metric, "2024-03", "psi") < DEFAULT_THRESHOLDS["psi"]  # type: ignore[operator]
        assert report.value(metric, "2024-03", "js") < DEFAULT_THRESHOLDS["js"]  # type: ignore[operator]
    flagged = {r.feature for r in report.drifted() if r.method == "kl" and r.window == changed}
    assert flagged
    assert not {r for r in report.drifted() if r.window == "2024-03"}


def test_every_metric_of_every_changed_host_is_flagged_per_entity(drifted_fleet) -> None:
    fleet, store = drifted_fleet
    (event,) = fleet.drift_events
    report = drift_report(store, REFERENCE, methods=["kl"], per_entity=True)
    for host in event.hosts:
        for metric in METRICS:
            assert report.value(metric, "2024-04", entity=host) > THRESHOLD, (host, metric)


def test_report_tables_and_latest_values(drifted_fleet) -> None:
    _, store = drifted_fleet
    report = drift_report(store, REFERENCE, methods=["kl", "wasserstein"], metrics=["cpu_util"])
    table = report.to_arrow()
    assert table.num_rows == 3 * 2
    assert table.schema.field("start").type == pa.timestamp("ms", tz="UTC")
    frame = report.to_pandas()
    assert set(frame["method"]) == {"kl", "wasserstein"}
    assert frame["threshold"].isna().sum() == 3  # wasserstein has no universal threshold
    latest = report.latest("kl")
    assert list(latest) == ["cpu_util"]
    assert latest["cpu_util"] == report.value("cpu_util", "2024-05")
    document = report.to_json()
    assert document["reference"]["label"] == "2024-01-01..2024-03-01"
    assert len(document["records"]) == 6


def test_windows_without_points_are_nan_and_missing_references_fail(tmp_path) -> None:
    store = FeatureStore(tmp_path / "store")
    ts = np.array([0, 1, 2], dtype=np.int64) * 86_400_000 + 1_704_067_200_000  # 1-3 Jan 2024
    store.write(
        pa.table(
            {
                "metric": ["m"] * 3 + ["late"] * 3,
                "entity": ["e"] * 6,
                "ts": pa.array(np.concatenate([ts, ts + 60 * 86_400_000])).cast(
                    pa.timestamp("ms", tz="UTC")
                ),
                "value": [1.0, 2.0, 3.0, 1.0, 2.0, 3.0],
            }
        )
    )
    # by default the windows end with the last point of the features measured ("m")
    assert drift_report(store, between("2024-01-01", "2024-01-04"), every="weekly").windows == ()
    report = drift_report(
        store,
        between("2024-01-01", "2024-01-04"),
        every="weekly",
        end=datetime(2024, 3, 10, tzinfo=UTC),
    )
    assert math.isnan(report.value("m", "2024-W10"))
    assert {r.feature for r in report.records} == {"m"}  # "late" has no reference: left out
    with pytest.raises(EmptyReferenceError, match="late"):
        drift_report(store, between("2024-01-01", "2024-01-04"), metrics=["late"])
    with pytest.raises(UnknownMeasureError):
        drift_report(store, between("2024-01-01", "2024-01-04"), methods=["hellinger"])


def test_compare_in_memory_agrees_with_the_store(drifted_fleet) -> None:
    _, store = drifted_fleet
    before = store.read("cpu_util", start="2024-01-01", end="2024-03-01").column("value")
    after = store.read("cpu_util", start="2024-04-01", end="2024-05-01").column("value")
    report = drift_report(store, REFERENCE, metrics=["cpu_util"])
    found = compare(before.to_numpy(), after.to_numpy())
    for method, value in found.items():
        assert abs(value - report.value("cpu_util", "2024-04", method)) < 1e-9, method


def test_other_metrics_recorded_later_do_not_stretch_the_windows(tmp_path: Path) -> None:
    """perfml's own metrics, recorded in the same store today, leave a 2024 report alone."""
    store = FeatureStore(tmp_path / "store")
    ts = np.arange(0, 90 * 24) * 3_600_000 + 1_704_067_200_000  # 90 days of hours from 2024
    store.write(
        pa.table({"metric": ["cpu"] * len(ts), "entity": ["a"] * len(ts),
                  "ts": pa.array(ts, pa.timestamp("ms", tz="UTC")),
                  "value": np.sin(np.arange(len(ts)))})
    )  # fmt: skip
    store.write(
        pa.table({"metric": ["up"], "entity": ["job=perfml-serving"],
                  "ts": pa.array([1_795_000_000_000], pa.timestamp("ms", tz="UTC")),
                  "value": [1.0]})
    )  # fmt: skip
    report = drift_report(store, between("2024-01-01", "2024-02-01"), metrics=["cpu"])
    assert [w.label for w in report.windows] == ["2024-02", "2024-03"]


def test_the_drift_per_entity_of_one_window_is_the_reports(drifted_fleet) -> None:
    fleet, store = drifted_fleet
    (event,) = fleet.drift_events
    report = drift_report(store, REFERENCE, methods=["kl"], metrics=["cpu_util"], per_entity=True)
    changed = window_of(event.start, "monthly")
    found = entity_drift(store, REFERENCE, changed, ["cpu_util"], min_points=100)
    assert {f.entity for f in found.figures} == set(fleet.host_names)
    for figure in found.figures:
        assert figure.value == report.value("cpu_util", changed.label, entity=figure.entity)
    assert found.judged == sorted(fleet.host_names)
    assert set(event.hosts) <= set(found.drifted)
    assert found.share == len(found.drifted) / len(fleet.host_names)
    # an hourly month has about 720 points: at 1000 no host is judged, and none drifted
    strict = entity_drift(store, REFERENCE, changed, ["cpu_util"], min_points=1000)
    assert (strict.judged, strict.drifted, strict.share) == ([], [], 0.0)
    assert strict.short == sorted(fleet.host_names)
