"""How far a detector's NAB score carries over: by category, cross-validated, category held out.

A score on the files a detector was tuned on flatters it. Beside NAB's one-threshold score of
a whole corpus, three figures say what to expect on data not seen:

- :func:`by_category` — the corpus score split by category, each category's files at the
  corpus threshold (a detector good on one kind of series and poor on another shows it);
- :func:`cross_validated` — over many random halves of the files, the setting and threshold
  that score best on one half, scored on the other: the figure to trust;
- :func:`held_out_categories` — each category scored at the setting and threshold chosen on
  the other categories, as production meets a new kind of series with a threshold fixed before.

Each takes the scored series of one or more settings (a setting's name → key → series), so
choosing a parameter is part of what is validated, never done on the files that judge it.

>>> from perfml.evaluation.runner import ScoredSeries
>>> import numpy as np
>>> def series(key, spike):
...     scores = np.zeros(400)
...     scores[spike] = 0.9
...     return ScoredSeries(key, scores, ((300, 320),), np.arange(400, dtype=np.int64))
>>> files = {f"{c}/{n}.csv": series(f"{c}/{n}.csv", 310) for c in "ab" for n in range(3)}
>>> round(by_category(files, PROFILES["standard"])["a"], 1)  # caught mid-window: not 100
93.8
>>> round(cross_validated({"default": files}, PROFILES["standard"], splits=20).mean, 1)
93.8
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from perfml.detectors.frames import Floats
from perfml.evaluation.nab import PROFILES, CostProfile, WindowRows, normalised, score_corpus
from perfml.evaluation.runner import ScoredSeries

Scored = Mapping[str, ScoredSeries]
"""One setting's scored series, by key (``category/file.csv``)."""

__all__ = [
    "PROFILES",
    "CrossValidation",
    "by_category",
    "category_of",
    "cross_validated",
    "held_out_categories",
]


def category_of(key: str) -> str:
    """``realTraffic`` of ``realTraffic/speed_6005.csv``."""
    return key.split("/", 1)[0]


def _inputs(series: Scored, keys: Sequence[str]) -> dict[str, tuple[Floats, Sequence[WindowRows]]]:
    return {key: (series[key].scores, series[key].windows) for key in keys}


def by_category(
    series: Scored, cost: CostProfile, threshold: float | None = None
) -> dict[str, float]:
    """Each category's normalised score, its files at the corpus' threshold (swept on all of
    ``series`` unless given); a category with no window is left out."""
    corpus = score_corpus(_inputs(series, list(series)), cost, threshold)
    groups: dict[str, list[str]] = {}
    for key in corpus.files:
        groups.setdefault(category_of(key), []).append(key)
    found = {}
    for category, keys in sorted(groups.items()):
        score = normalised((corpus.files[k] for k in keys), cost)
        if score is not None:
            found[category] = score
    return found


def _best(
    settings: Mapping[str, Scored], keys: Sequence[str], cost: CostProfile
) -> tuple[str, float, float]:
    """The setting and threshold scoring best on ``keys``: (setting, threshold, score)."""
    best: tuple[str, float, float] | None = None
    for name, series in settings.items():
        corpus = score_corpus(_inputs(series, keys), cost)
        if best is None or corpus.score > best[2]:
            best = (name, corpus.threshold, corpus.score)
    assert best is not None
    return best


def _score_at(
    series: Scored, keys: Sequence[str], cost: CostProfile, threshold: float
) -> float | None:
    corpus = score_corpus(_inputs(series, keys), cost, threshold)
    return None if corpus.perfect == corpus.null else corpus.score


@dataclass(frozen=True)
class CrossValidation:
    """The held-out halves' scores over the splits, and which setting each split chose."""

    scores: tuple[float, ...]
    chosen: tuple[str, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores)

    @property
    def stdev(self) -> float:
        return statistics.stdev(self.scores) if len(self.scores) > 1 else 0.0

    def quantile(self, q: float) -> float:
        return float(np.quantile(self.scores, q))


def cross_validated(
    settings: Mapping[str, Scored], cost: CostProfile, splits: int = 200, seed: int = 0
) -> CrossValidation:
    """Over ``splits`` random halves of the files (each category split in two, so both halves
    hold every kind of series), the best setting and threshold on one half scored on the
    other. Every setting must have scored the same files."""
    keys = sorted(next(iter(settings.values())))
    by_kind: dict[str, list[str]] = {}
    for key in keys:
        by_kind.setdefault(category_of(key), []).append(key)
    rng = np.random.default_rng(seed)
    scores: list[float] = []
    chosen: list[str] = []
    for _ in range(splits):
        tune: list[str] = []
        judge: list[str] = []
        for members in by_kind.values():
            order = rng.permutation(len(members))
            half = len(members) // 2 + int(rng.integers(0, 2)) * (len(members) % 2)
            tune += [members[i] for i in order[:half]]
            judge += [members[i] for i in order[half:]]
        name, threshold, _ = _best(settings, tune, cost)
        score = _score_at(settings[name], judge, cost, threshold)
        if score is not None:
            scores.append(score)
            chosen.append(name)
    return CrossValidation(tuple(scores), tuple(chosen))


def held_out_categories(
    settings: Mapping[str, Scored], cost: CostProfile
) -> dict[str, tuple[float, str]]:
    """Each category's score at the setting and threshold chosen on all the other categories:
    category → (score, setting chosen)."""
    keys = sorted(next(iter(settings.values())))
    found = {}
    for category in sorted({category_of(k) for k in keys}):
        held = [k for k in keys if category_of(k) == category]
        rest = [k for k in keys if category_of(k) != category]
        name, threshold, _ = _best(settings, rest, cost)
        score = _score_at(settings[name], held, cost, threshold)
        if score is not None:
            found[category] = (score, name)
    return found
