"""Point-wise, event-wise and point-adjusted metrics, checked against figures worked by hand."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfml.evaluation.nab import ScoreShapeError
from perfml.evaluation.scores import (
    Counts,
    DetectionMetrics,
    EventCounts,
    detection_metrics,
    merge_windows,
)

# 25 rows; windows rows 2..5 (4 rows) and 10..19 (10 rows); flagged rows 3, 7, 10 and 11.
ROWS = 25
WINDOWS = [(2, 5), (10, 19)]
FLAGGED = [3, 7, 10, 11]


def scores_with(flagged: list[int], rows: int = ROWS) -> np.ndarray:
    scores = np.full(rows, 0.1)
    scores[flagged] = 0.9
    return scores


def f1(tp: int, fp: int, fn: int) -> float:
    precision, recall = Fraction(tp, tp + fp), Fraction(tp, tp + fn)
    return float(2 * precision * recall / (precision + recall))


@pytest.fixture
def worked() -> DetectionMetrics:
    return detection_metrics(scores_with(FLAGGED), 0.5, WINDOWS)


def test_point_wise_counts_every_row(worked):
    # in windows: rows 3, 10, 11 flagged (tp 3) and 3 + 8 not (fn 11); outside: row 7 (fp 1),
    # and 25 - 14 - 1 = 10 quiet rows (tn).
    assert worked.point == Counts(tp=3, fp=1, fn=11, tn=10)
    assert worked.point.precision == 0.75
    assert worked.point.recall == pytest.approx(3 / 14)
    assert worked.point.f1 == pytest.approx(1 / 3)


def test_event_wise_counts_windows_and_runs_of_detections(worked):
    # runs [3], [7], [10, 11]: two overlap a window; both windows are detected
    assert worked.event == EventCounts(windows=2, detected=2, runs=3, true_runs=2)
    assert worked.event.precision == pytest.approx(2 / 3)
    assert worked.event.recall == 1.0
    assert worked.event.f1 == pytest.approx(0.8)


def test_a_run_counts_once_however_long_and_wherever_it_overlaps():
    # one run 4..12 covers the end of the first window and the start of the second
    found = detection_metrics(scores_with(list(range(4, 13))), 0.5, WINDOWS)
    assert found.event == EventCounts(windows=2, detected=2, runs=1, true_runs=1)
    # a run that only touches a window's last row is true
    assert detection_metrics(scores_with([5, 6, 7]), 0.5, WINDOWS).event.true_runs == 1
    # rows at the very start and end make runs too
    edges = detection_metrics(scores_with([0, 24]), 0.5, WINDOWS).event
    assert edges == EventCounts(windows=2, detected=0, runs=2, true_runs=0)


def test_point_adjustment_credits_whole_detected_windows(worked):
    assert worked.point_adjusted() == Counts(tp=14, fp=1, fn=0, tn=10)
    assert worked.point_adjusted().f1 == pytest.approx(28 / 29)


def test_pa_k_adjusts_only_windows_with_k_percent_detected(worked):
    # shares: first window 1/4 = 25%, second 2/10 = 20%
    assert worked.pa_k(0) == worked.point_adjusted()
    assert worked.pa_k(20) == worked.point_adjusted()  # "at least": 20% of the second counts
    assert worked.pa_k(25) == Counts(tp=4 + 2, fp=1, fn=8, tn=10)
    assert worked.pa_k(25).f1 == pytest.approx(4 / 7)
    assert worked.pa_k(30) == worked.point
    assert worked.pa_k(100) == worked.point
    assert worked.pa_k().f1 == worked.pa_k(20).f1  # the default K is 20


def test_pa_k_area_is_exact_and_matches_a_fine_integration(worked):
    # F1 is 28/29 for K in (0, 20], 4/7 in (20, 25], 1/3 in (25, 100]
    expected = 0.20 * 28 / 29 + 0.05 * 4 / 7 + 0.75 / 3
    assert worked.pa_k_auc() == pytest.approx(expected, abs=1e-12)
    grid = (np.arange(20_000) + 0.5) / 200  # midpoints of 20,000 steps over [0, 100]
    numeric = float(np.mean([worked.pa_k(float(k)).f1 for k in grid]))
    assert numeric == pytest.approx(expected, abs=1e-4)


def test_time_to_detect_runs_from_a_window_start_to_its_first_detection():
    ts = np.arange(ROWS, dtype=np.int64) * 60_000
    ts[3:] += 120_000  # a gap after row 2: row 3 comes 3 minutes after row 2
    found = detection_metrics(scores_with(FLAGGED), 0.5, WINDOWS, timestamps_ms=ts)
    assert [w.delay_rows for w in found.windows] == [1, 0]
    assert [w.delay_ms for w in found.windows] == [180_000, 0]
    assert found.mean_delay_rows == 0.5
    assert found.mean_delay_seconds == 90.0
    missed = detection_metrics(scores_with([7]), 0.5, WINDOWS, timestamps_ms=ts)
    assert missed.mean_delay_rows is None
    assert missed.mean_delay_seconds is None
    assert detection_metrics(scores_with(FLAGGED), 0.5, WINDOWS).mean_delay_seconds is None


def test_rows_before_start_are_not_judged():
    # start = 4: row 3's detection is ignored, the first window shrinks to rows 4..5
    found = detection_metrics(scores_with(FLAGGED), 0.5, WINDOWS, start=4)
    assert found.point == Counts(tp=2, fp=1, fn=2 + 8, tn=21 - 12 - 1)
    assert found.event == EventCounts(windows=2, detected=1, runs=2, true_runs=1)
    assert [w.width for w in found.windows] == [2, 10]
    # a window wholly before start is not a window
    late = detection_metrics(scores_with(FLAGGED), 0.5, WINDOWS, start=8)
    assert late.event.windows == 1


def test_a_series_without_detections_or_windows_scores_zero_not_nan():
    quiet = detection_metrics(np.zeros(10), 0.5, [(2, 4)])
    assert quiet.point == Counts(tp=0, fp=0, fn=3, tn=7)
    assert (quiet.point.precision, quiet.point.f1, quiet.event.precision) == (0.0, 0.0, 0.0)
    assert quiet.pa_k_auc() == 0.0
    unlabelled = detection_metrics(np.ones(10), 0.5, [])
    assert unlabelled.event == EventCounts(windows=0, detected=0, runs=1, true_runs=0)
    assert unlabelled.event.recall == 0.0


def test_threshold_is_inclusive_as_in_nab():
    assert detection_metrics([0.5, 0.49], 0.5, [(0, 0)]).point == Counts(1, 0, 0, 1)


def test_combining_series_adds_their_counts_and_pools_their_windows(worked):
    other = detection_metrics(scores_with([0, 1]), 0.5, [(0, 9)])
    both = DetectionMetrics.combine([worked, other])
    assert both.point == worked.point + other.point
    assert both.event == worked.event + other.event
    assert both.windows == worked.windows + other.windows
    # the other series' window is 20% detected: adjusted at K = 20, not at 25
    assert both.pa_k(20).tp == 14 + 10
    assert both.pa_k(25).tp == 6 + 2


def test_merge_windows_makes_a_union():
    assert merge_windows([(5, 8), (0, 2), (2, 3), (7, 9), (12, 12)]) == [(0, 3), (5, 9), (12, 12)]
    assert merge_windows([]) == []


@pytest.mark.parametrize(
    ("scores", "windows", "kwargs", "problem"),
    [
        (np.zeros((3, 2)), [], {}, "one score per row"),
        (np.zeros(5), [(3, 5)], {}, "rows 3..5 outside 0..4"),
        (np.zeros(5), [(3, 2)], {}, "rows 3..2 outside"),
        (np.zeros(9), [(0, 4), (4, 6)], {}, "overlap"),
        (np.zeros(5), [], {"timestamps_ms": [1, 2]}, "2 timestamps for 5 scores"),
    ],
)
def test_malformed_input_is_refused_with_the_values(scores, windows, kwargs, problem):
    with pytest.raises(ScoreShapeError, match=problem):
        detection_metrics(scores, 0.5, windows, **kwargs)


def test_k_must_be_a_percentage(worked):
    with pytest.raises(ScoreShapeError, match="K = 120"):
        worked.pa_k(120)


@st.composite
def labelled_series(draw: st.DrawFn) -> tuple[np.ndarray, list[tuple[int, int]]]:
    rows = draw(st.integers(1, 60))
    flags = draw(st.lists(st.booleans(), min_size=rows, max_size=rows))
    cuts = sorted(draw(st.lists(st.integers(0, rows - 1), max_size=8)))
    windows = list(zip(cuts[::2], cuts[1::2], strict=False))  # touching ones get merged
    return np.array(flags, dtype=float), merge_windows(windows)


@settings(max_examples=200, deadline=None)
@given(labelled_series(), st.floats(0, 100))
def test_adjustment_only_ever_helps_and_k_interpolates(series, k):
    scores, windows = series
    found = detection_metrics(scores, 0.5, windows)
    point, adjusted, partial = found.point, found.point_adjusted(), found.pa_k(k)
    assert point.f1 <= partial.f1 + 1e-12
    assert partial.f1 <= adjusted.f1 + 1e-12
    assert found.pa_k(100) == point
    assert sum(w.hits for w in found.windows) == point.tp
    assert point.tp + point.fp + point.fn + point.tn == len(scores)
    assert point.f1 - 1e-12 <= found.pa_k_auc() <= adjusted.f1 + 1e-12
    assert found.event.detected == sum(1 for w in found.windows if w.hits)
    assert found.event.true_runs <= found.event.runs
