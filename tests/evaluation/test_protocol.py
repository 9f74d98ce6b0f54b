"""The figures that say how far a score carries over: by category, cross-validated, and each
category at the threshold chosen on the others."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from perfml.evaluation.nab import PROFILES, score_corpus
from perfml.evaluation.protocol import by_category, cross_validated, held_out_categories
from perfml.evaluation.runner import ScoredSeries, read_results

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
STANDARD = PROFILES["standard"]


def series(key: str, inside: float, outside: float, rows: int = 400) -> ScoredSeries:
    """A series with one window (rows 300–320): ``inside`` at its start, ``outside`` on a few
    rows before it."""
    scores = np.zeros(rows)
    scores[[100, 150, 200]] = outside
    scores[301] = inside
    return ScoredSeries(key, scores, ((300, 320),), np.arange(rows, dtype=np.int64))


def corpus(inside: dict[str, float], outside: dict[str, float]) -> dict[str, ScoredSeries]:
    return {
        f"{c}/{n}.csv": series(f"{c}/{n}.csv", inside[c], outside[c])
        for c in inside
        for n in range(4)
    }


def test_a_category_the_threshold_does_not_fit_shows_in_its_own_figure() -> None:
    # a and b: detections at 0.9, noise at 0.5; c: its detections at 0.4, below a's noise
    files = corpus({"a": 0.9, "b": 0.9, "c": 0.4}, {"a": 0.5, "b": 0.5, "c": 0.1})
    figures = by_category(files, STANDARD)
    # the corpus threshold goes down to catch c, so a's and b's noise fires: only they show it
    assert figures["c"] > 99
    assert figures["a"] == figures["b"] < 90
    held = held_out_categories({"default": files}, STANDARD)
    # chosen on a and b (above their noise), c's detections are all missed: null, 0
    assert held["c"] == (0.0, "default")
    assert held["a"][0] == pytest.approx(figures["a"])  # chosen on b and c: as low as c needs


def test_cross_validation_chooses_the_setting_on_one_half_and_scores_the_other() -> None:
    good = corpus({"a": 0.9, "b": 0.8}, {"a": 0.2, "b": 0.3})
    bad = corpus({"a": 0.1, "b": 0.1}, {"a": 0.9, "b": 0.9})
    result = cross_validated({"good": good, "bad": bad}, STANDARD, splits=30, seed=1)
    assert set(result.chosen) == {"good"}
    assert len(result.scores) == 30
    whole = score_corpus({k: (s.scores, s.windows) for k, s in good.items()}, STANDARD).score
    assert result.mean == pytest.approx(whole)  # every file alike: each half scores the same
    assert result.stdev == pytest.approx(0.0, abs=1e-9)
    again = cross_validated({"good": good, "bad": bad}, STANDARD, splits=30, seed=1)
    assert again.scores == result.scores  # seeded


def test_htm_on_the_51_files_scores_what_the_corpus_readme_publishes() -> None:
    scored: dict[str, ScoredSeries] = {}
    for folder in ("nab", "nab-more"):
        name, found = read_results(DATA / folder, DATA / folder / "results" / "numenta")
        assert name == "numenta"
        scored.update(found)
    assert len(scored) == 51
    published = json.loads((DATA / "nab-more" / "results" / "thresholds.json").read_text())
    threshold = published["numenta"]["standard"]["threshold"]
    inputs = {key: (s.scores, s.windows) for key, s in scored.items()}
    assert score_corpus(inputs, STANDARD, threshold).score == pytest.approx(73.0, abs=0.05)
    figures = by_category(scored, STANDARD, threshold)
    assert figures["realAWSCloudwatch"] == pytest.approx(73.4, abs=0.05)
    assert "artificialNoAnomaly" not in figures  # no window: no normalised score
    assert set(figures) == {
        "artificialWithAnomaly", "realAWSCloudwatch", "realAdExchange", "realTraffic",
        "realTweets",
    }  # fmt: skip
