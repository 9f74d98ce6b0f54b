"""The drift of each entity's series in one window: which hosts moved, and what share of them.

Fleet-wide drift hides a fleet that moves in parts: the series of a third of the hosts can
leave their training range while the fleet's distribution, a mixture of hosts at their own
levels, barely changes. :func:`entity_drift` measures every entity's series of each feature
in one window against the same series in the reference window, as ``perfml drift report
--per-entity`` does (the same edges, the same histograms, the same measure): one query for
the reference edges of every entity and one scan of the store for the histograms of the
reference and the window, per entity and partition, grouped in DuckDB.

An entity is *judged* when each of its series has at least ``min_points`` points in the
reference and in the window; it has *drifted* when one of its series is over the threshold.
The share is of the entities judged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from perfml.drift.histograms import DEFAULT_BINS
from perfml.drift.measures import MEASURES, MeasureRegistry
from perfml.drift.scan import reference_edges, window_histograms
from perfml.drift.windows import Window
from perfml.featurestore import FeatureStore


@dataclass(frozen=True)
class EntityFigure:
    """One entity's series of one feature in the window against the reference."""

    feature: str
    entity: str
    value: float
    points: int
    reference_points: int


@dataclass(frozen=True)
class EntityDrift:
    """The drift of every entity's series in ``window`` (see the module's docstring)."""

    window: Window
    method: str
    threshold: float
    min_points: int
    figures: tuple[EntityFigure, ...]

    @property
    def judged(self) -> list[str]:
        """The entities with enough points in both windows for every feature, sorted."""
        entities = {f.entity for f in self.figures}
        short = {f.entity for f in self.figures if not self._enough(f)}
        return sorted(entities - short)

    @property
    def short(self) -> list[str]:
        """The entities left out: too few points of a feature in one of the windows."""
        return sorted({f.entity for f in self.figures if not self._enough(f)})

    @property
    def drifted(self) -> list[str]:
        """The judged entities with a series over the threshold, sorted."""
        judged = set(self.judged)
        return sorted(
            {f.entity for f in self.figures if f.entity in judged and f.value > self.threshold}
        )

    @property
    def share(self) -> float:
        """The drifted entities' share of those judged (0 when none is)."""
        judged = len(self.judged)
        return len(self.drifted) / judged if judged else 0.0

    def worst(self) -> dict[str, float]:
        """Each judged entity's largest value over its features."""
        judged = set(self.judged)
        found: dict[str, float] = {}
        for f in self.figures:
            if f.entity in judged and not math.isnan(f.value):
                found[f.entity] = max(found.get(f.entity, f.value), f.value)
        return found

    def _enough(self, figure: EntityFigure) -> bool:
        return min(figure.points, figure.reference_points) >= self.min_points


def entity_drift(
    store: FeatureStore,
    reference: Window,
    window: Window,
    metrics: Sequence[str],
    *,
    method: str = "kl",
    threshold: float = 0.1,
    min_points: int = 1,
    bins: int = DEFAULT_BINS,
    measures: MeasureRegistry = MEASURES,
) -> EntityDrift:
    """Every entity's series of ``metrics`` measured with ``method`` in ``window`` against
    ``reference``; an entity with no point in the reference is not measured (nothing was
    learnt of it)."""
    measure = measures.get(method)
    edges = reference_edges(store, reference, metrics, per_entity=True, bins=bins)
    histograms = window_histograms(store, edges, [reference, window])
    figures = []
    for key in sorted(edges, key=lambda k: (k[1] or "", k[0])):
        metric, entity = key
        if entity is None:
            continue
        base = histograms.get((key, reference.label))
        current = histograms.get((key, window.label))
        value = math.nan if base is None or current is None else measure.between(base, current)
        figures.append(
            EntityFigure(
                feature=metric,
                entity=entity,
                value=value,
                points=0 if current is None else current.total,
                reference_points=0 if base is None else base.total,
            )
        )
    return EntityDrift(window, method, threshold, min_points, tuple(figures))


__all__ = ["EntityDrift", "EntityFigure", "entity_drift"]
