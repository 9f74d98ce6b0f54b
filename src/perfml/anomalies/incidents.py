"""Incidents: the anomalous points of one entity, across its metrics, grouped in time.

An entity's anomalous points (score at or over the version's threshold) closer than ``gap``
to the previous one belong to one :class:`Incident`, with its start, end and peak, and its
metrics ranked by their highest score. When many entities are anomalous at once — at least
``fleet_min_entities`` and ``fleet_fraction`` of the entities scored, within one ``gap`` — the
buckets of ``gap`` in a row where that holds make one :class:`FleetIncident`, and the entity
incidents within it are its members: a fleet-wide event is one incident, not one per host.

>>> import pyarrow as pa
>>> points = pa.table({"model": ["cpu"] * 3, "metric": ["cpu_util", "mem_util", "cpu_util"],
...     "entity": ["web-1"] * 3, "ts": [0, 300_000, 7_200_000],
...     "score": [0.9, 0.7, 0.8], "threshold": [0.5] * 3})
>>> [(i.entity, i.start_ms, i.end_ms, i.metrics[0].metric) for i in group(points, 1_800_000)]
[('web-1', 0, 300000, 'cpu_util'), ('web-1', 7200000, 7200000, 'cpu_util')]
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa


@dataclass(frozen=True)
class MetricPart:
    """One metric of an incident: its highest score, when, and how many anomalous points."""

    metric: str
    model: str
    peak_score: float
    peak_ms: int
    points: int
    threshold: float


@dataclass(frozen=True)
class Incident:
    """An entity's anomalous points within ``gap`` of each other (see the module)."""

    entity: str
    start_ms: int
    end_ms: int
    peak_ms: int
    peak_score: float
    metrics: tuple[MetricPart, ...]
    """Ranked by highest score."""
    fleet: str | None = None
    """The id of the fleet incident this one is part of, if any."""

    @property
    def id(self) -> str:
        """Stable while its start stands: the entity and the start."""
        return _id("i", self.entity, self.start_ms)

    @property
    def points(self) -> int:
        return sum(part.points for part in self.metrics)

    @property
    def start(self) -> datetime:
        return _at(self.start_ms)

    @property
    def end(self) -> datetime:
        return _at(self.end_ms)

    @property
    def peak(self) -> datetime:
        return _at(self.peak_ms)


@dataclass(frozen=True)
class FleetIncident:
    """Many entities anomalous at once (see the module)."""

    start_ms: int
    end_ms: int
    entities: int
    """Distinct entities anomalous within it."""
    fleet_size: int
    members: tuple[str, ...] = field(default=())
    """The ids of the entity incidents within it."""
    peak_score: float = 0.0
    metrics: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return _id("f", "fleet", self.start_ms)

    @property
    def fraction(self) -> float:
        return self.entities / self.fleet_size if self.fleet_size else 1.0

    @property
    def start(self) -> datetime:
        return _at(self.start_ms)

    @property
    def end(self) -> datetime:
        return _at(self.end_ms)


def group(points: pa.Table, gap_ms: int) -> list[Incident]:
    """The incidents of anomalous ``points`` (columns model, metric, entity, ts, score,
    threshold; rows under the threshold are left out), ordered by start."""
    if gap_ms <= 0:
        raise ValueError(f"incident gap must be positive, not {gap_ms} ms")
    score = points.column("score").to_numpy()
    threshold = points.column("threshold").to_numpy()
    keep = np.flatnonzero(score >= threshold)
    if not len(keep):
        return []
    entity = np.asarray(points.column("entity").to_pylist(), dtype=object)[keep]
    metric = np.asarray(points.column("metric").to_pylist(), dtype=object)[keep]
    model = np.asarray(points.column("model").to_pylist(), dtype=object)[keep]
    ts = points.column("ts").to_numpy()[keep]
    score, threshold = score[keep], threshold[keep]
    order = np.lexsort((ts, entity.astype(str)))
    incidents: list[Incident] = []
    begin = 0
    for at in range(1, len(order) + 1):
        ends = at == len(order)
        if not ends:
            here, before = order[at], order[at - 1]
            ends = entity[here] != entity[before] or ts[here] - ts[before] > gap_ms
        if ends:
            rows = order[begin:at]
            incidents.append(_incident(rows, entity, metric, model, ts, score, threshold))
            begin = at
    incidents.sort(key=lambda i: (i.start_ms, i.entity))
    return incidents


def _incident(
    rows: np.ndarray,
    entity: np.ndarray,
    metric: np.ndarray,
    model: np.ndarray,
    ts: np.ndarray,
    score: np.ndarray,
    threshold: np.ndarray,
) -> Incident:
    parts: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row in rows.tolist():
        parts[(str(metric[row]), str(model[row]))].append(row)
    metrics = []
    for (name, owner), members in parts.items():
        best = max(members, key=lambda r: (score[r], -ts[r]))
        metrics.append(
            MetricPart(name, owner, float(score[best]), int(ts[best]), len(members),
                       float(threshold[best]))
        )  # fmt: skip
    metrics.sort(key=lambda part: (-part.peak_score, part.metric))
    peak = max(rows.tolist(), key=lambda r: (score[r], -ts[r]))
    return Incident(
        entity=str(entity[rows[0]]),
        start_ms=int(ts[rows].min()),
        end_ms=int(ts[rows].max()),
        peak_ms=int(ts[peak]),
        peak_score=float(score[peak]),
        metrics=tuple(metrics),
    )


def fleet_events(
    incidents: Sequence[Incident],
    points: pa.Table,
    gap_ms: int,
    fleet_size: int,
    fraction: float,
    min_entities: int,
) -> tuple[list[Incident], list[FleetIncident]]:
    """Fleet incidents among ``incidents`` (of the anomalous ``points``), and the incidents
    with their ``fleet`` set: buckets of ``gap_ms`` where at least ``max(min_entities,
    fraction * fleet_size)`` entities are anomalous, consecutive ones joined."""
    needed = max(min_entities, int(np.ceil(fraction * fleet_size)))
    score = points.column("score").to_numpy()
    keep = np.flatnonzero(score >= points.column("threshold").to_numpy())
    if not len(keep) or not incidents:
        return list(incidents), []
    ts = points.column("ts").to_numpy()[keep]
    entity = np.asarray(points.column("entity").to_pylist(), dtype=object)[keep]
    bucket = ts // gap_ms
    crowd: dict[int, set[str]] = defaultdict(set)
    for b, e in zip(bucket.tolist(), entity.tolist(), strict=True):
        crowd[b].add(e)
    stormy = sorted(b for b, members in crowd.items() if len(members) >= needed)
    runs: list[tuple[int, int]] = []
    for b in stormy:
        if runs and b == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], b)
        else:
            runs.append((b, b))
    fleets: list[FleetIncident] = []
    tagged = list(incidents)
    for first, last in runs:
        lo, hi = first * gap_ms, (last + 1) * gap_ms
        inside = [i for i, inc in enumerate(tagged) if inc.start_ms < hi and inc.end_ms >= lo]
        entities = set().union(*(crowd[b] for b in range(first, last + 1)))
        members = [tagged[i] for i in inside]
        fleet = FleetIncident(
            start_ms=min([lo, *(m.start_ms for m in members)]),
            end_ms=max([hi - 1, *(m.end_ms for m in members)]),
            entities=len(entities),
            fleet_size=fleet_size,
            members=tuple(m.id for m in members),
            peak_score=max((m.peak_score for m in members), default=0.0),
            metrics=tuple(sorted({p.metric for m in members for p in m.metrics})),
        )
        fleets.append(fleet)
        for i in inside:
            tagged[i] = _with_fleet(tagged[i], fleet.id)
    return tagged, fleets


def _with_fleet(incident: Incident, fleet: str) -> Incident:
    return replace(incident, fleet=fleet)


def _id(kind: str, name: str, start_ms: int) -> str:
    digest = hashlib.blake2b(f"{name}\0{start_ms}".encode(), digest_size=5).hexdigest()
    return f"{kind}-{digest}"


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
