"""The NAB scorer reproduces NAB's published per-file results exactly."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from perfml.evaluation.nab import (
    PROFILES,
    ScoreShapeError,
    scaled_sigmoid,
    score_corpus,
    score_file,
    window_rows,
)
from perfml.sources.nab import read_windows
from perfml.timeparse import to_epoch_ms

NAB = Path(__file__).resolve().parents[3] / "shared" / "data" / "nab"


def reference() -> dict[tuple[str, str, str], dict[str, str]]:
    with open(NAB / "results" / "reference_scores.csv") as handle:
        return {(r["Detector"], r["Profile"], r["File"]): r for r in csv.DictReader(handle)}


def results_of(detector: str) -> dict[str, tuple[np.ndarray, list[tuple[int, int]]]]:
    windows = read_windows(NAB)
    series = {}
    for path in sorted((NAB / "results" / detector / "realAWSCloudwatch").glob("*.csv")):
        name = "realAWSCloudwatch/" + path.name.removeprefix(f"{detector}_")
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={"timestamp": pa.timestamp("ms"), "anomaly_score": pa.float64()}
            ),
        )
        ts = table.column("timestamp").cast(pa.int64()).to_numpy()
        spans = [(to_epoch_ms(a), to_epoch_ms(b)) for a, b in windows[name]]
        series[name] = (table.column("anomaly_score").to_numpy(), window_rows(ts, spans))
    return series


@pytest.mark.parametrize("detector", ["numenta", "null"])
@pytest.mark.parametrize("profile_name", list(PROFILES))
def test_reproduces_every_published_file_score(detector, profile_name):
    expected = {k[2]: v for k, v in reference().items() if k[:2] == (detector, profile_name)}
    series = results_of(detector)
    assert set(series) == set(expected)
    for name, (scores, windows) in series.items():
        row = expected[name]
        got = score_file(scores, windows, PROFILES[profile_name], float(row["Threshold"]))
        assert got.score == pytest.approx(float(row["Score"]), abs=1e-6), name
        assert (got.tp, got.tn, got.fp, got.fn) == (
            int(row["TP"]),
            int(row["TN"]),
            int(row["FP"]),
            int(row["FN"]),
        ), name
        assert got.total == int(row["Total_Count"])


def test_published_numenta_score_on_this_corpus_is_73_4():
    corpus = score_corpus(results_of("numenta"), PROFILES["standard"], 0.5421876907348634)
    assert round(corpus.score, 1) == 73.4


def test_the_sweep_finds_a_threshold_at_least_as_good_as_the_published_one():
    series = results_of("numenta")
    for cost in PROFILES.values():
        swept = score_corpus(series, cost)
        published = score_corpus(series, cost, 0.5421876907348634)
        assert swept.raw >= published.raw - 1e-9
        at_swept = score_corpus(series, cost, swept.threshold)
        assert at_swept.raw == pytest.approx(swept.raw)
        for nudge in (np.nextafter(swept.threshold, 2.0), swept.threshold - 1e-3):
            assert score_corpus(series, cost, float(nudge)).raw <= swept.raw + 1e-9


def test_null_and_perfect_detectors_score_0_and_100():
    series = results_of("numenta")
    never = {k: (np.zeros_like(v), w) for k, (v, w) in series.items()}
    assert score_corpus(never, PROFILES["standard"], 0.5).score == pytest.approx(0.0)
    perfect = {}
    for name, (values, windows) in series.items():
        fire = np.zeros_like(values)
        for first, _ in windows:
            fire[first] = 1.0
        perfect[name] = (fire, windows)
    assert score_corpus(perfect, PROFILES["standard"], 0.5).score == pytest.approx(100.0)


def test_scaled_sigmoid_matches_nab():
    assert float(scaled_sigmoid(0.0)) == 0.0
    assert float(scaled_sigmoid(-1.0)) == pytest.approx(0.98661429815)
    assert float(scaled_sigmoid(3.5)) == -1.0


def test_series_scored_from_learnt_states_can_drop_the_probationary_period():
    # A window in the first rows: NAB's probation (15 of 100 rows) leaves it unscored; with
    # none, a detection there earns its reward.
    scores = np.zeros(100)
    scores[4] = 1.0
    series = {"warm": (scores, [(3, 8)]), "later": (np.zeros(100), [(60, 65)])}
    standard = PROFILES["standard"]
    with_probation = score_corpus(series, standard, 0.5)
    without = score_corpus(series, standard, 0.5, probation=0)
    assert with_probation.files["warm"].windows == 0
    assert without.files["warm"].windows == 1
    assert without.files["warm"].score > 0.9
    # raw: the early window's reward and the later window missed (-1), between -2 and 2
    raw = without.files["warm"].score - 1.0
    assert without.score == pytest.approx(100 * (raw + 2) / 4)


def test_a_prior_picks_among_thresholds_the_labels_cannot_tell_apart() -> None:
    """One window, caught at 0.8 and at 0.5; one false alarm at 0.4 and one at 0.2 outside.
    Every threshold in (0.4, 0.8] scores the same; NAB's sweep takes the top of that plateau,
    a prior inside it is kept, one outside it moves to the plateau's nearest end, and one
    false alarm's worth of tolerance lets a prior below 0.4 reach it."""
    scores = np.zeros(100)
    scores[50], scores[52], scores[20], scores[80] = 0.8, 0.5, 0.4, 0.2
    series = {"a": (scores, [(45, 55)])}
    cost = PROFILES["standard"]
    assert score_corpus(series, cost, probation=0).threshold == 0.8
    assert score_corpus(series, cost, probation=0, prior=0.6).threshold == 0.6
    assert score_corpus(series, cost, probation=0, prior=0.9).threshold == 0.8
    # 0.4 adds a false alarm (-0.11): within the tolerance, so the prior's 0.35 is kept
    assert score_corpus(series, cost, probation=0, prior=0.35).threshold == 0.35
    # 0.2 adds another: two false alarms below the best, so the nearest is 0.4's plateau
    assert score_corpus(series, cost, probation=0, prior=0.1).threshold == 0.4


def test_scores_that_are_not_finite_are_refused_naming_the_series() -> None:
    scores = np.zeros(100)
    scores[30] = np.nan
    with pytest.raises(
        ScoreShapeError, match=r"series 'host-7': 1 anomaly scores are not finite \(row 30: nan\)"
    ):
        score_corpus({"host-7": (scores, [(45, 55)])}, PROFILES["standard"])
