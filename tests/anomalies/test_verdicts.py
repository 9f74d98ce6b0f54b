"""Operators' verdicts: stored with who and when, written through to labelled windows (a true
anomaly), to nothing (a false alarm) or to a silence (an expected change); the review queue and
the label coverage read them; the gate's evaluator judges models on them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pytest

from perfml.anomalies import (
    VerdictKind,
    VerdictLog,
    VerdictTakenError,
    incident_at,
    label_coverage,
    review_queue,
)
from perfml.anomalies.incidents import Incident, MetricPart
from perfml.anomalies.verdicts import OPERATOR_KIND, BadSilenceError, UnknownVerdictError
from perfml.config import Settings
from perfml.detectors import Detector, DetectorParams
from perfml.evaluation.labelled_window import LabelledWindowEvaluator
from perfml.featurestore import FeatureStore, LabelWindow
from perfml.metadata import MetadataDatabase
from perfml.workspace import Workspace

MIN = 60_000


def incident(
    entity: str, start: int, end: int, *metrics: str, peak: float = 0.9, threshold: float = 0.5
) -> Incident:
    parts = tuple(MetricPart(m, "model", peak, start, 2, threshold) for m in metrics)
    return Incident(entity, start, end, start, peak, parts)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[VerdictLog]:
    with MetadataDatabase(f"sqlite:///{tmp_path / 'metadata.db'}") as database:
        yield VerdictLog(database, FeatureStore(tmp_path / "store"))


def test_a_true_anomaly_is_kept_with_who_and_when_and_labels_each_metric_over_the_span(
    log: VerdictLog,
) -> None:
    seen = incident("web-1", 10 * MIN, 20 * MIN, "cpu", "latency")
    made = log.record(seen, "true", by="ana", note="disk full", at_ms=99)
    assert log.get(seen.id) == made
    assert (made.kind, made.by, made.at_ms, made.note) == (
        VerdictKind.TRUE_ANOMALY, "ana", 99, "disk full",
    )  # fmt: skip
    assert made.metrics == ("cpu", "latency")
    assert log.store.windows() == [
        LabelWindow("cpu", "web-1", 10 * MIN, 20 * MIN, OPERATOR_KIND),
        LabelWindow("latency", "web-1", 10 * MIN, 20 * MIN, OPERATOR_KIND),
    ]


def test_a_false_alarm_and_an_expected_change_write_no_anomaly_window(log: VerdictLog) -> None:
    log.record(incident("web-1", 0, MIN, "cpu"), "false", by="ana")
    log.record(incident("web-2", 0, MIN, "cpu"), "expected-change", by="bo")
    assert log.store.windows() == []
    assert {(v.entity, v.kind) for v in log.history()} == {
        ("web-1", VerdictKind.FALSE_ALARM), ("web-2", VerdictKind.EXPECTED_CHANGE),
    }  # fmt: skip


def test_an_incident_takes_one_verdict_and_an_unknown_one_is_refused(log: VerdictLog) -> None:
    seen = incident("web-1", 0, MIN, "cpu")
    log.record(seen, VerdictKind.FALSE_ALARM, by="ana")
    with pytest.raises(VerdictTakenError, match="false_alarm by ana"):
        log.record(seen, "true", by="bo")
    assert log.store.windows() == []
    with pytest.raises(UnknownVerdictError, match="'maybe'"):
        log.record(incident("web-2", 0, MIN, "cpu"), "maybe", by="bo")
    assert log.get(incident("web-2", 0, MIN, "cpu").id) is None


def test_an_expected_change_silences_the_entitys_metrics_in_the_alert_store(
    tmp_path: Path,
) -> None:
    with Workspace(Settings(workspace=tmp_path)) as workspace:
        seen = incident("web-1", 0, MIN, "cpu", "latency")
        made = workspace.verdicts().record(
            seen, "expected", by="ana", note="deploy", at_ms=1_000, silence_for="2h"
        )
        silences = workspace.alerts().silences(at_ms=1_000 + 3_600_000)
        assert sorted(s.id for s in silences) == sorted(made.silences)
        assert len(silences) == 2
        alert = {"alertname": "AnomalyDetected", "entity": "web-1", "metric": "cpu"}
        other = {**alert, "entity": "web-2"}
        assert any(all(m.matches(alert) for m in s.matchers) for s in silences)
        assert not any(all(m.matches(other) for m in s.matchers) for s in silences)
        assert all(s.created_by == "ana" and "deploy" in s.comment for s in silences)
        assert workspace.alerts().silences(at_ms=1_000 + 3 * 3_600_000) == []
        with pytest.raises(BadSilenceError):
            workspace.verdicts().record(
                incident("web-3", 0, MIN, "cpu"), "expected", by="ana", silence_for="soon"
            )


def test_the_review_queue_puts_unlabelled_incidents_nearest_their_threshold_first(
    log: VerdictLog,
) -> None:
    sure = incident("a", 0, MIN, "cpu", peak=0.95)
    unsure = incident("b", 0, MIN, "cpu", peak=0.52)
    middling = incident("c", 0, MIN, "cpu", peak=0.7)
    judged = incident("d", 0, MIN, "cpu", peak=0.51)
    windowed = incident("e", 0, MIN, "cpu", peak=0.5)
    log.record(judged, "false", by="ana")
    windows = [LabelWindow("cpu", "e", 30_000, 90_000, "feedback")]
    queue = review_queue([sure, unsure, middling, judged, windowed], log.by_incident(), windows)
    assert [item.incident.entity for item in queue] == ["b", "c", "a"]
    assert queue[0].margin == pytest.approx(0.04)
    assert len(review_queue([sure, unsure], {}, [], limit=1)) == 1


def test_coverage_counts_labels_per_metric_and_host_group_and_flags_too_few(
    log: VerdictLog,
) -> None:
    points = pa.table({
        "metric": ["cpu"] * 3,
        "entity": ["db-1", "web-1", "web-2"],
        "ts": pa.array([0] * 3, pa.timestamp("ms", tz="UTC")),
        "value": [1.0] * 3,
    })  # fmt: skip
    labels = {("cpu", "db-1"): {"group": "db"}, ("cpu", "web-1"): {"group": "web"},
              ("cpu", "web-2"): {"group": "web"}}  # fmt: skip
    log.store.write(points, labels=labels)
    log.record(incident("web-1", 0, MIN, "cpu"), "true", by="ana")
    log.record(incident("web-2", 0, MIN, "cpu"), "false", by="ana")
    log.record(incident("web-2", 5 * MIN, 6 * MIN, "cpu"), "true", by="ana")
    rows = label_coverage(log.store, log.history(), min_labels=3)
    found = {(r.metric, r.group): r for r in rows}
    assert set(found) == {("cpu", "db"), ("cpu", "web")}
    web, db = found[("cpu", "web")], found[("cpu", "db")]
    assert (web.series, web.labelled_series, web.anomaly_windows, web.false_alarms) == (2, 2, 2, 1)
    assert web.enough
    assert not db.enough
    assert (db.labels, db.labelled_series) == (0, 0)
    ungrouped = label_coverage(log.store, log.history(), group_label="rack")
    assert [(r.group, r.series) for r in ungrouped] == [("all", 3)]


def test_an_alert_finds_the_incident_of_its_entity_and_metric_it_started_in() -> None:
    early = incident("web-1", 0, 10 * MIN, "cpu")
    late = incident("web-1", 60 * MIN, 70 * MIN, "cpu")
    other = incident("web-1", 5 * MIN, 8 * MIN, "latency")
    found = [early, late, other]
    assert incident_at(found, "web-1", "cpu", 5 * MIN) == early
    assert incident_at(found, "web-1", "cpu", 71 * MIN) == late  # the alert came after its end
    assert incident_at(found, "web-1", "latency", 6 * MIN) == other
    assert incident_at(found, "web-2", "cpu", 5 * MIN) is None


# -- the gate's evaluator judges models on the verdicts ---------------------------------------

START = datetime(2024, 4, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)
ROWS = 200  # the validation slice holds rows 0..99, the test slice rows 100..199


class Echo(Detector):
    """Scores a point by its value clipped to [0, 1]."""

    name = "test_verdict_echo"

    class Params(DetectorParams):
        pass

    params: Params

    def reset(self) -> None:
        self.seen = 0

    def update(self, ts: int, value: float | npt.NDArray[np.float64]) -> float:
        return min(1.0, max(0.0, float(np.asarray(value).reshape(-1)[0])))

    def get_state(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        return {}, {}

    def set_state(self, meta: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> None:
        pass


def at(row: int) -> int:
    return int((START + row * STEP).timestamp() * 1000)


def fleet_store(root: Path) -> FeatureStore:
    """One series at 0.1 but for spikes at rows 61 (labelled 60..65 already), 120 and 151."""
    values = np.full(ROWS, 0.1)
    values[61], values[120], values[151] = 0.7, 0.9, 0.8
    store = FeatureStore(root)
    store.write(
        pa.table({
            "metric": ["latency"] * ROWS,
            "entity": ["host-a"] * ROWS,
            "ts": pa.array([at(r) for r in range(ROWS)], pa.timestamp("ms", tz="UTC")),
            "value": values,
        }),
        windows=[LabelWindow("latency", "host-a", at(60), at(65))],
    )  # fmt: skip
    return store


def test_a_true_anomaly_gives_the_gate_a_window_to_judge_a_false_alarm_counts_against_it(
    tmp_path: Path,
) -> None:
    store = fleet_store(tmp_path / "store")

    def measured() -> dict[str, float]:
        gate = LabelledWindowEvaluator(None, store, START, START + ROWS * STEP)
        return gate.measure(Echo(), ["latency"]).figures

    before = measured()
    assert before["test_windows"] == 0  # nothing to judge a model on in the test slice
    assert "event_f1" not in before
    with MetadataDatabase(f"sqlite:///{tmp_path / 'metadata.db'}") as database:
        log = VerdictLog(database, store)
        log.record(incident("host-a", at(151), at(151), "latency"), "true", by="ana")
        after_true = measured()
        assert after_true["test_windows"] == 1
        # Row 120's flag is outside every window: a false positive beside the found anomaly.
        assert after_true["event_f1"] < 1.0
        log.record(incident("host-a", at(120), at(120), "latency"), "false", by="ana")
        after_false = measured()
        assert after_false["test_windows"] == 1  # a false alarm is no anomaly window
        assert after_false["event_f1"] == after_true["event_f1"]  # its flag stays false
