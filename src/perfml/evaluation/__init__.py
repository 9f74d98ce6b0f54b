"""Offline evaluation of anomaly detectors: NAB scoring and the classic detection metrics.

- :mod:`.nab` — NAB's scoring (cost profiles, windows' weights, the corpus-wide threshold);
- :mod:`.scores` — point and event precision, recall and F1 around the labelled windows;
- :mod:`.runner` — a detector over a NAB corpus or a generated fleet, series in parallel;
- :mod:`.labelled_window` — the promotion gate's evaluator: versions scored on the same recent
  labelled window of the feature store.

Importing the package is light: each name is imported from its module when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perfml.lazy import exports

if TYPE_CHECKING:
    from perfml.evaluation.labelled_window import GateDataError, LabelledWindowEvaluator
    from perfml.evaluation.nab import (
        PROFILE_ALIASES,
        PROFILES,
        CorpusScore,
        CostProfile,
        EvaluationError,
        FileScore,
        UnknownProfileError,
        normalised,
        profile,
        score_corpus,
        score_file,
    )
    from perfml.evaluation.runner import (
        Evaluation,
        ScoredSeries,
        SeriesTask,
        evaluate,
        evaluate_fleet,
        evaluate_nab,
        fleet_tasks,
        nab_tasks,
        read_results,
    )
    from perfml.evaluation.scores import DetectionMetrics, MetricsSummary, detection_metrics

_LAZY = {
    "CorpusScore": "perfml.evaluation.nab",
    "CostProfile": "perfml.evaluation.nab",
    "EvaluationError": "perfml.evaluation.nab",
    "FileScore": "perfml.evaluation.nab",
    "PROFILES": "perfml.evaluation.nab",
    "PROFILE_ALIASES": "perfml.evaluation.nab",
    "UnknownProfileError": "perfml.evaluation.nab",
    "normalised": "perfml.evaluation.nab",
    "profile": "perfml.evaluation.nab",
    "score_corpus": "perfml.evaluation.nab",
    "score_file": "perfml.evaluation.nab",
    "DetectionMetrics": "perfml.evaluation.scores",
    "MetricsSummary": "perfml.evaluation.scores",
    "detection_metrics": "perfml.evaluation.scores",
    "Evaluation": "perfml.evaluation.runner",
    "ScoredSeries": "perfml.evaluation.runner",
    "SeriesTask": "perfml.evaluation.runner",
    "evaluate": "perfml.evaluation.runner",
    "evaluate_fleet": "perfml.evaluation.runner",
    "evaluate_nab": "perfml.evaluation.runner",
    "fleet_tasks": "perfml.evaluation.runner",
    "nab_tasks": "perfml.evaluation.runner",
    "read_results": "perfml.evaluation.runner",
    "GateDataError": "perfml.evaluation.labelled_window",
    "LabelledWindowEvaluator": "perfml.evaluation.labelled_window",
}
__getattr__ = exports(__name__, _LAZY)

__all__ = [
    "PROFILES",
    "PROFILE_ALIASES",
    "CorpusScore",
    "CostProfile",
    "DetectionMetrics",
    "Evaluation",
    "EvaluationError",
    "FileScore",
    "GateDataError",
    "LabelledWindowEvaluator",
    "MetricsSummary",
    "ScoredSeries",
    "SeriesTask",
    "UnknownProfileError",
    "detection_metrics",
    "evaluate",
    "evaluate_fleet",
    "evaluate_nab",
    "fleet_tasks",
    "nab_tasks",
    "normalised",
    "profile",
    "read_results",
    "score_corpus",
    "score_file",
]
