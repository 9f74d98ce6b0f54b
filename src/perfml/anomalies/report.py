"""What the score log says happened: incidents in a window, and how they match labels.

:func:`find_incidents` reads the anomalous scores of a window and groups them
(:mod:`.incidents`); :func:`against_labels` judges the incidents against labelled windows
per entity and metric: a labelled window is *found* when an incident of its entity has an
anomalous point of its metric within it (time to detect: from the window's start to that
point), and an incident is *true* when one of its points falls in a labelled window of its
entity — precision over incidents, recall over windows, as an operator counts pages.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pyarrow as pa

from perfml.anomalies.incidents import FleetIncident, Incident, fleet_events, group
from perfml.anomalies.scores import ScoreLog


@dataclass(frozen=True)
class Findings:
    """The incidents of a window, the fleet incidents, and the anomalous points behind them."""

    incidents: list[Incident]
    fleets: list[FleetIncident]
    fleet_size: int
    points: pa.Table = field(repr=False)

    def entity(self, entity: str) -> list[Incident]:
        return [i for i in self.incidents if i.entity == entity]

    def get(self, incident_id: str) -> Incident | FleetIncident | None:
        every: list[Incident | FleetIncident] = [*self.incidents, *self.fleets]
        return next((found for found in every if found.id == incident_id), None)


def find_incidents(
    log: ScoreLog,
    *,
    start: datetime | str | int | None = None,
    end: datetime | str | int | None = None,
    models: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    entities: Sequence[str] | None = None,
    gap_ms: int = 30 * 60_000,
    fleet_fraction: float = 0.2,
    fleet_min_entities: int = 3,
) -> Findings:
    """The incidents of ``[start, end)`` (see :mod:`.incidents`); the fleet's size is the
    number of entities scored in the window."""
    points = log.read(models=models, metrics=metrics, entities=entities, start=start, end=end,
                      anomalous=True)  # fmt: skip
    incidents = group(points, gap_ms)
    size = log.entities(start, end, models) if entities is None else len(entities)
    incidents, fleets = fleet_events(
        incidents, points, gap_ms, size, fleet_fraction, fleet_min_entities
    )
    return Findings(incidents, fleets, size, points)


@dataclass(frozen=True)
class Detection:
    """Incidents against labelled windows (see the module)."""

    incidents: int
    true_incidents: int
    windows: int
    found: int
    delays_ms: tuple[int, ...]

    @property
    def precision(self) -> float:
        return self.true_incidents / self.incidents if self.incidents else 1.0

    @property
    def recall(self) -> float:
        return self.found / self.windows if self.windows else 1.0

    @property
    def median_delay_minutes(self) -> float | None:
        return float(np.median(self.delays_ms)) / 60_000 if self.delays_ms else None


def against_labels(
    findings: Findings,
    windows: Sequence[tuple[str, str, int, int]],
    onsets: Sequence[int] | None = None,
) -> Detection:
    """Judge ``findings`` against labelled ``(metric, entity, start_ms, end_ms)`` windows,
    both ends included; the time to detect counts from each window's start, or from its
    ``onsets`` (when the anomaly itself began, where a window is padded before it)."""
    by_entity: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for metric, entity, lo, hi in windows:
        by_entity[entity].append((metric, lo, hi))
    starts = [lo for _, _, lo, _ in windows] if onsets is None else list(onsets)
    points = findings.points
    ent = points.column("entity").to_pylist()
    met = points.column("metric").to_pylist()
    ts = points.column("ts").to_pylist()
    anomalous: dict[tuple[str, str], list[int]] = defaultdict(list)
    for e, m, t in zip(ent, met, ts, strict=True):
        anomalous[(e, m)].append(t)
    found, delays = 0, []
    for (metric, entity, lo, hi), onset in zip(windows, starts, strict=True):
        inside = [t for t in anomalous.get((entity, metric), []) if lo <= t <= hi]
        if inside:
            found += 1
            delays.append(max(0, min(inside) - onset))
    true = 0
    for incident in findings.incidents:
        spans = by_entity.get(incident.entity, [])
        if any(lo <= incident.end_ms and incident.start_ms <= hi for _, lo, hi in spans):
            true += 1
    return Detection(len(findings.incidents), true, len(windows), found, tuple(delays))
