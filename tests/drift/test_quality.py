"""Model-quality drift from labelled feedback: P/R/F1 per window and the scores' drift."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

import fixtures.detectors  # noqa: F401  (registers the toy detectors)
from perfml.detectors import create
from perfml.drift import between, quality_report
from perfml.drift.errors import NoReferenceError, NoThresholdError
from perfml.evaluation.nab import window_rows
from perfml.evaluation.scores import DetectionMetrics, detection_metrics
from perfml.featurestore import FeatureStore, LabelWindow
from perfml.registry.detector_versions import register_detector

START = datetime(2024, 1, 1, tzinfo=UTC)
START_MS = round(START.timestamp() * 1000)
STEP_MS = 3_600_000
HOURS = 24 * (31 + 29 + 31)  # January to March 2024


@pytest.fixture
def store(tmp_path) -> tuple[FeatureStore, dict[str, np.ndarray]]:
    """Two hosts: spikes labelled as feedback; March is noisier (the scores drift)."""
    rng = np.random.default_rng(4)
    ts = START_MS + STEP_MS * np.arange(HOURS, dtype=np.int64)
    fs = FeatureStore(tmp_path / "store")
    values, windows = {}, []
    for host in ("web-1", "web-2"):
        noise = np.where(ts >= START_MS + 60 * 86_400_000, 3.0, 1.0)
        series = 50.0 + noise * rng.normal(size=HOURS)
        for spike in rng.choice(np.arange(100, HOURS - 5), size=12, replace=False):
            series[spike : spike + 2] += 25.0
            windows.append(LabelWindow("cpu_util", host, int(ts[spike]), int(ts[spike + 1]), "x"))
        values[host] = series
        fs.write(
            pa.table(
                {
                    "metric": ["cpu_util"] * HOURS,
                    "entity": [host] * HOURS,
                    "ts": pa.array(ts).cast(pa.timestamp("ms", tz="UTC")),
                    "value": series,
                }
            ),
            windows=[w for w in windows if w.entity == host],
        )
    return fs, values


def _register(registry, store, window=24, **lineage):
    detector = create("toy_rolling_zscore", window=window)
    detector.fit(store.read("cpu_util", "web-1", end="2024-02-01").select(["ts", "value"]))
    version = register_detector(registry, "cpu", detector, features=["cpu_util"], **lineage)
    registry.promote("cpu", version.version, "production")
    return detector, version


def test_quality_per_window_equals_the_detection_metrics_of_the_labelled_series(
    store, registry
) -> None:
    fs, _ = store
    detector, version = _register(
        registry, fs, data_start=START, data_end=datetime(2024, 2, 1, tzinfo=UTC),
        tags={"threshold": "0.5"},
    )  # fmt: skip
    report = quality_report(fs, registry, "cpu")
    assert (report.model, report.version, report.threshold) == ("cpu", version.version, 0.5)
    assert [r.window for r in report.records] == ["2024-02", "2024-03"]
    for record in report.records:
        window = between(record.start, record.end)
        parts = []
        for host in ("web-1", "web-2"):
            frame = fs.read("cpu_util", host, start=record.start, end=record.end)
            scores = detector.score(frame.select(["ts", "value"]))
            ts = frame.column("ts").cast(pa.int64()).to_numpy()
            spans = [
                (w.start, w.end)
                for w in fs.windows(["cpu_util"], [host])
                if window.start <= w.start < window.end
            ]
            parts.append(detection_metrics(scores, 0.5, window_rows(ts, spans)))
        expected = DetectionMetrics.combine(parts).summary()
        assert record.precision == pytest.approx(expected.point_precision, abs=1e-12)
        assert record.recall == pytest.approx(expected.point_recall, abs=1e-12)
        assert record.f1 == pytest.approx(expected.point_f1, abs=1e-12)
        assert record.series == 2
        assert record.points == 2 * 24 * (29 if record.window == "2024-02" else 31)
    february, march = report.records
    assert february.f1 > 0.5  # spikes of 25 sd on quiet data are found
    assert march.score_drift["kl"] > february.score_drift["kl"] > 0  # noisier March
    assert report.latest() is march
    assert report.to_arrow().num_rows == 2
    assert "score_kl" in report.to_arrow().column_names


def test_quality_needs_a_threshold_and_a_training_window(store, registry) -> None:
    fs, _ = store
    _register(registry, fs, data_start=START, data_end=datetime(2024, 2, 1, tzinfo=UTC))
    with pytest.raises(NoThresholdError, match="cpu:1"):
        quality_report(fs, registry, "cpu")
    report = quality_report(fs, registry, "cpu@production", threshold=0.9)
    assert report.threshold == 0.9
    _register(registry, fs, window=12)  # a version that records no training window
    with pytest.raises(NoReferenceError, match="data_start"):
        quality_report(fs, registry, "cpu", threshold=0.5)
    found = quality_report(
        fs, registry, "cpu", threshold=0.5, reference=between("2024-01-01", "2024-03-01")
    )
    assert [r.window for r in found.records] == ["2024-03"]
    assert not math.isnan(found.records[0].f1)
