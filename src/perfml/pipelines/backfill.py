"""The backfill pipeline: score a window of the store with a registered version, into the
score log (:func:`perfml.anomalies.backfill`), as ``perfml score`` does — one step, handed
the store, the registry and the score log as parts, so that it runs locally or compiled for
Kubeflow alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from perfml.pipelines.catalog import pipeline
from perfml.pipelines.dsl import Param, Part, Pipeline, Resources, StepDefinition, Task, step

if TYPE_CHECKING:
    from perfml.anomalies import ScoreLog
    from perfml.featurestore import FeatureStore
    from perfml.registry import ModelRegistry

PIPELINE = "backfill"

backfill_step: Callable[..., Callable[[Callable[..., Any]], StepDefinition]] = step
"""``step``, typed for the decorator form."""


@backfill_step(retries=1, backoff=5.0, timeout=3600, resources=Resources(cpu=1, memory="2Gi"))
def score_window(
    store: FeatureStore,
    registry: ModelRegistry,
    scores: ScoreLog,
    model: str,
    start: str = "",
    end: str = "",
) -> dict[str, Any]:
    """Score ``model``'s metric in ``[start, end)`` (empty: from the end of the version's
    training data; to the last point) into the score log."""
    from perfml.anomalies import backfill

    result = backfill(registry, store, scores, model, start=start or None, end=end or None)
    print(f"scored {result.points} points of {result.metric} with {result.model}:"
          f"{result.version}: {result.anomalous} anomalous")  # fmt: skip
    return asdict(result)


@pipeline(PIPELINE)
def build_backfill_pipeline() -> Pipeline:
    """One task, ``score``: the store, the registry and the score log as parts."""
    parts = {"store", "registry", "scores"}
    inputs = {name: Part(name) if name in parts else Param(name) for name in score_window.inputs}
    return Pipeline(
        PIPELINE, [Task("score", score_window, inputs)], params={"start": "", "end": ""}
    )
