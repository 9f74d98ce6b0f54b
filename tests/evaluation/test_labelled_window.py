"""The gate's evaluator: a threshold chosen on the validation slice, figures on the test slice.

The series here are scored by :class:`Echo`, a detector whose score is the point's value once
it has learnt ``warmup`` points of its series, so every figure can be worked out by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pytest
from pydantic import Field

from perfml.detectors import DETECTORS, Detector, DetectorParams
from perfml.evaluation.labelled_window import (
    DEFAULT_ALARM_SHARE,
    BadValidationShareError,
    GateDataError,
    LabelledWindowEvaluator,
    ThresholdRule,
)
from perfml.evaluation.nab import PROFILES, scaled_sigmoid, score_corpus
from perfml.featurestore import FeatureStore
from perfml.featurestore.manifest import LabelWindow
from perfml.registry import ModelRegistry
from perfml.registry.detector_versions import register_detector

START = datetime(2024, 4, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)
ROWS = 200  # the validation slice holds rows 0..99, the test slice rows 100..199
METRIC = "latency"
ENTITY = "host-a"


class Echo(Detector):
    """Scores a point by its value (clipped to [0, 1]) once it has learnt ``warmup`` points
    of its series, 0 before: a state that only the rows before a point can build."""

    name = "test_echo"

    class Params(DetectorParams):
        warmup: int = Field(0, ge=0)

    params: Params

    def reset(self) -> None:
        self.seen = 0

    def update(self, ts: int, value: float | npt.NDArray[np.float64]) -> float:
        point = float(np.asarray(value).reshape(-1)[0])
        score = min(1.0, max(0.0, point)) if self.seen >= self.params.warmup else 0.0
        self.seen += 1
        return score

    def get_state(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        return {"seen": self.seen}, {}

    def set_state(self, meta: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.seen = int(meta["seen"])


def at(row: int) -> int:
    return int((START + row * STEP).timestamp() * 1000)


def make_store(
    root: Path, values: dict[int, float], windows: list[tuple[int, int]]
) -> FeatureStore:
    """One series of ``ROWS`` points at 0.1 but for ``values`` (by row), with labelled
    ``windows`` (first and last row)."""
    series = np.full(ROWS, 0.1)
    for row, value in values.items():
        series[row] = value
    store = FeatureStore(root)
    store.write(
        pa.table(
            {
                "metric": [METRIC] * ROWS,
                "entity": [ENTITY] * ROWS,
                "ts": pa.array([at(r) for r in range(ROWS)], pa.timestamp("ms", tz="UTC")),
                "value": series,
            }
        ),
        windows=[LabelWindow(METRIC, ENTITY, at(first), at(last)) for first, last in windows],
    )
    return store


def evaluator(store: FeatureStore, **changes: Any) -> LabelledWindowEvaluator:
    return LabelledWindowEvaluator(None, store, START, START + ROWS * STEP, **changes)


SCENE = {
    61: 0.7,  # the validation slice's anomaly (window rows 60..65)
    80: 0.9,  # a false alarm in the validation slice
    120: 0.8,  # a false alarm in the test slice
    151: 0.6,  # the test slice's anomaly (window rows 150..155), weaker than the first
}
WINDOWS = [(60, 65), (150, 155)]


def test_the_threshold_is_chosen_on_the_validation_slice_and_judged_on_the_test_slice(
    tmp_path: Path,
) -> None:
    gate = evaluator(make_store(tmp_path, SCENE, WINDOWS))
    assert gate.split == START + 100 * STEP

    measured = gate.measure(Echo(warmup=30), [METRIC])

    # The validation slice's sweep: 0.7 catches its anomaly; the test slice's own sweep
    # would have taken 0.6 and caught the weaker one, which 0.7 misses.
    assert measured.rule is ThresholdRule.VALIDATION
    figures = measured.figures
    assert figures["threshold"] == pytest.approx(0.7)
    test_scores = np.full(100, 0.1)
    test_scores[20], test_scores[51] = 0.8, 0.6
    swept_on_test = score_corpus({ENTITY: (test_scores, [(50, 55)])}, PROFILES["standard"])
    assert swept_on_test.threshold == pytest.approx(0.6)
    # Judged on the test rows only: the anomaly missed (-1) and the false alarm at row 120,
    # before any window of the slice (-0.11); normalised, 100 * (-1.11 + 1) / 2.
    assert figures["nab_standard"] == pytest.approx(-5.5)
    assert figures["event_f1"] == 0.0  # one alarm, a false one; the anomaly missed
    assert figures["point_f1"] == 0.0
    assert (figures["validation_windows"], figures["test_windows"]) == (1.0, 1.0)
    assert "swept on the validation slice 2024-04-01 00:00–2024-04-01 08:20" in measured.note
    assert "figures on the test slice 2024-04-01 08:20–2024-04-01 16:40" in measured.note


def test_the_validation_rows_are_replayed_before_the_test_slice(tmp_path: Path) -> None:
    gate = evaluator(make_store(tmp_path, SCENE, [(150, 155)]))
    # Echo scores nothing before its 110th point: the false alarm at row 120 (the test
    # slice's 21st) is raised only because the validation rows were learnt first.
    late = gate.measure(Echo(warmup=110), [METRIC], recorded_threshold=0.75)
    assert late.figures["nab_standard"] == pytest.approx(-5.5)
    assert late.figures["event_f1"] == 0.0  # the anomaly (0.6) is under 0.75: missed


def test_a_version_judged_at_its_validation_threshold_can_score_well(tmp_path: Path) -> None:
    # The same test slice, but the validation anomaly is as weak as the test one: the sweep
    # on validation takes 0.6, which catches the test slice's anomaly and its false alarm.
    scene = {**SCENE, 61: 0.6, 80: 0.1}
    figures = evaluator(make_store(tmp_path, scene, WINDOWS)).figures(Echo(), [METRIC])
    assert figures["threshold"] == pytest.approx(0.6)
    assert figures["event_f1"] == pytest.approx(2 / 3)  # recall 1, precision 1/2
    assert figures["nab_standard"] > 40.0


def test_without_a_labelled_window_to_sweep_on_the_recorded_threshold_is_used(
    tmp_path: Path,
) -> None:
    gate = evaluator(make_store(tmp_path, SCENE, [(150, 155)]))
    measured = gate.measure(Echo(), [METRIC], recorded_threshold=0.55)
    assert measured.rule is ThresholdRule.RECORDED
    assert measured.figures["threshold"] == 0.55
    assert measured.figures["validation_windows"] == 0.0
    assert measured.figures["event_f1"] == pytest.approx(2 / 3)  # 0.55 catches 0.6
    assert "has no labelled window: threshold 0.55 recorded on the version, not swept" in (
        measured.note
    )


def test_without_a_window_or_a_recorded_threshold_the_top_validation_scores_set_it(
    tmp_path: Path,
) -> None:
    gate = evaluator(make_store(tmp_path, SCENE, [(150, 155)]))
    measured = gate.measure(Echo(), [METRIC])
    validation = np.full(100, 0.1)
    validation[61], validation[80] = 0.7, 0.9
    assert measured.rule is ThresholdRule.QUANTILE
    assert measured.figures["threshold"] == pytest.approx(
        np.quantile(validation, 1 - DEFAULT_ALARM_SHARE)
    )
    assert measured.figures["threshold"] != pytest.approx(0.6)  # never the test slice's sweep
    assert "reached by the top 1% of its scores, not swept" in measured.note


def test_without_a_window_or_a_recorded_threshold_the_detectors_default_is_used(
    tmp_path: Path,
) -> None:
    """A detector whose scores are on one scale for every series states the threshold to
    alarm at before labels choose one; the gate takes it rather than a share of the rows."""

    class Calibrated(Echo):
        name = "test_calibrated_echo"
        default_threshold = 0.65

    gate = evaluator(make_store(tmp_path, SCENE, [(150, 155)]))
    measured = gate.measure(Calibrated(), [METRIC])
    assert measured.rule is ThresholdRule.DEFAULT
    assert measured.figures["threshold"] == 0.65
    assert measured.figures["event_f1"] == 0.0  # 0.65 misses the anomaly's 0.6
    assert "threshold 0.65 the detector's calibrated default, not swept" in measured.note


def test_a_registered_version_falls_back_to_its_recorded_threshold(
    tmp_path: Path, registry: ModelRegistry
) -> None:
    gate = LabelledWindowEvaluator(
        registry,
        make_store(tmp_path / "store", SCENE, [(150, 155)]),
        START,
        START + ROWS * STEP,
    )
    version = register_detector(
        registry, "latency", Echo(), features=[METRIC], metrics={"threshold": 0.85}
    )
    with DETECTORS.added([Echo]):  # loaded from the registry by its kind
        figures = gate(version)
    assert figures["threshold"] == 0.85
    assert figures["event_f1"] == 0.0  # 0.85 catches neither the anomaly nor row 120's 0.8
    assert "threshold 0.85 recorded on the version" in gate.notes[version.ref]


def test_a_window_across_the_split_counts_in_each_slice(tmp_path: Path) -> None:
    gate = evaluator(make_store(tmp_path, {98: 0.7, 101: 0.7}, [(95, 105)]))
    figures = gate.figures(Echo(), [METRIC])
    assert (figures["validation_windows"], figures["test_windows"]) == (1.0, 1.0)
    assert figures["threshold"] == pytest.approx(0.7)
    assert figures["event_f1"] == 1.0


def test_the_first_rows_of_the_test_slice_are_judged(tmp_path: Path) -> None:
    # No probationary period: the series reach the test slice from learnt states, so an
    # anomaly in its first rows (NAB's probation would skip its first 15) counts.
    scene = {61: 0.7, 103: 0.7}
    figures = evaluator(make_store(tmp_path, scene, [(60, 65), (101, 105)])).figures(
        Echo(), [METRIC]
    )
    assert figures["event_f1"] == 1.0
    # detected at its third of five rows: NAB's reward for that row, normalised
    reward = float(scaled_sigmoid(-3 / 5) / scaled_sigmoid(-1.0))
    assert figures["nab_standard"] == pytest.approx(100 * (reward + 1) / 2)


def test_a_test_slice_without_a_labelled_window_chooses_a_threshold_but_cannot_judge(
    tmp_path: Path,
) -> None:
    gate = evaluator(make_store(tmp_path, SCENE, [(60, 65)]))
    measured = gate.measure(Echo(), [METRIC])
    assert not measured.judged
    assert measured.figures == {
        "threshold": pytest.approx(0.7),
        "validation_windows": 1.0,
        "test_windows": 0.0,
    }
    assert "the test slice 2024-04-01 08:20–2024-04-01 16:40 has no labelled window" in (
        measured.note
    )
    with pytest.raises(GateDataError, match="labelled anomaly windows in the test slice"):
        gate.figures(Echo(), [METRIC])


def test_a_window_without_any_labelled_window_is_refused(tmp_path: Path) -> None:
    gate = evaluator(make_store(tmp_path, SCENE, []))
    with pytest.raises(GateDataError, match="no labelled anomaly windows in the feature store"):
        gate.measure(Echo(), [METRIC])


def test_the_validation_share_moves_the_split(tmp_path: Path) -> None:
    store = make_store(tmp_path, SCENE, WINDOWS)
    assert evaluator(store, validation=0.25).split == START + 50 * STEP
    with pytest.raises(BadValidationShareError, match="strictly between 0 and 1"):
        evaluator(store, validation=1.0)
    with pytest.raises(BadValidationShareError):
        evaluator(store, validation=0.0)


def test_the_recent_window_never_reaches_into_the_candidates_training_data(
    tmp_path: Path,
) -> None:
    store = make_store(tmp_path, SCENE, WINDOWS)
    end = START + (ROWS - 1) * STEP + timedelta(milliseconds=1)  # just past the last point
    whole = LabelledWindowEvaluator.recent(None, store, "1d")
    assert (whole.start, whole.end) == (end - timedelta(days=1), end)
    trained_until = START + 120 * STEP
    after = LabelledWindowEvaluator.recent(None, store, "1d", after=trained_until)
    assert (after.start, after.end) == (trained_until, end)
    with pytest.raises(GateDataError, match="data after the candidate's training window"):
        LabelledWindowEvaluator.recent(None, store, "1d", after=end)
