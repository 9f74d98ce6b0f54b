"""Backfill: score a window of the store with a registered version, as the live loop would have.

Each series starts from its state in the version (the fleet prior for an entity the version
never saw) and scores, then learns, its points of ``[start, end)`` in time order; the
version in the registry is left as it is. The scores go to the score log as one batch file,
replacing (on reading) any earlier scores of the same points by the same model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from perfml.anomalies.live import LiveModel, scorable, score_points
from perfml.anomalies.scores import ScoreLog
from perfml.registry.detector_versions import load_detector

if TYPE_CHECKING:
    from perfml.featurestore import FeatureStore
    from perfml.registry import ModelRegistry


@dataclass(frozen=True)
class BackfillResult:
    model: str
    version: int
    metric: str
    points: int
    anomalous: int
    entities: int
    threshold: float
    file: str | None


def backfill(
    registry: ModelRegistry,
    store: FeatureStore,
    log: ScoreLog,
    ref: str,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    entities: list[str] | None = None,
) -> BackfillResult:
    """Score the points of ``ref``'s metric in ``[start, end)`` (see the module); ``start``
    defaults to the end of the version's training data (what it has not learnt)."""
    version, states = load_detector(registry, ref)
    metric, threshold = scorable(ref, version)
    if start is None and version.data_end is not None:
        start = version.data_end  # the version learnt [data_start, data_end)
    points = store.read(metric, entities=entities, start=start, end=end)
    live = LiveModel(
        ref, version, metric, threshold, states,
        last_ts=np.full(len(states), np.iinfo(np.int64).min, np.int64),
        latest=np.full(len(states), np.nan),
    )  # fmt: skip
    scored = score_points(live, points, write=True)
    if not scored:
        return BackfillResult(version.model, version.version, metric, 0, 0, 0, threshold, None)
    table = pa.concat_tables(live.pending)
    path = log.append_batch(version.model, table)
    score = table.column("score").to_numpy()
    return BackfillResult(
        model=version.model,
        version=version.version,
        metric=metric,
        points=table.num_rows,
        anomalous=int((score >= threshold).sum()),
        entities=len(set(table.column("entity").to_pylist())),
        threshold=threshold,
        file=str(path),
    )
