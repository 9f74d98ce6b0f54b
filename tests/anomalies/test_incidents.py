"""Incidents: an entity's anomalous points grouped across its metrics; a fleet-wide event is
one fleet incident whose members are the hosts' incidents."""

from __future__ import annotations

import pyarrow as pa
import pytest

from perfml.anomalies.incidents import fleet_events, group

MIN = 60_000
GAP = 30 * MIN


def scores(rows: list[tuple[str, str, int, float]], threshold: float = 0.5) -> pa.Table:
    """(entity, metric, minute, score) rows of model ``cpu``."""
    return pa.table({
        "model": ["cpu"] * len(rows),
        "metric": [m for _, m, _, _ in rows],
        "entity": [e for e, _, _, _ in rows],
        "ts": [t * MIN for _, _, t, _ in rows],
        "score": [s for _, _, _, s in rows],
        "threshold": [threshold] * len(rows),
    })  # fmt: skip


def test_an_entitys_metrics_in_one_incident_ranked_by_score_with_start_peak_and_end() -> None:
    points = scores([
        ("web-1", "cpu_util", 0, 0.6), ("web-1", "latency", 5, 0.9), ("web-1", "cpu_util", 10, 0.7),
        ("web-1", "cpu_util", 15, 0.2),  # under the threshold: not part of it
        ("web-1", "latency", 100, 0.8),  # 90 minutes later: another incident
        ("web-2", "cpu_util", 5, 0.55),
    ])  # fmt: skip
    first, other, second = group(points, GAP)
    assert (first.entity, first.start_ms, first.peak_ms, first.end_ms) == (
        "web-1",
        0,
        5 * MIN,
        10 * MIN,
    )
    assert [(p.metric, p.peak_score, p.points) for p in first.metrics] == [
        ("latency", 0.9, 1), ("cpu_util", 0.7, 2),
    ]  # fmt: skip
    assert (other.entity, other.peak_score) == ("web-2", 0.55)
    assert (second.entity, second.start_ms) == ("web-1", 100 * MIN)
    assert len({first.id, other.id, second.id}) == 3
    assert group(points, GAP)[0].id == first.id  # stable


def test_half_the_fleet_at_once_is_one_fleet_incident_and_two_hosts_are_not() -> None:
    storm = [(f"web-{i}", "cpu_util", 60 + i, 0.9) for i in range(5)]  # 5 of 10 within minutes
    lone = [("web-7", "latency", 300, 0.8), ("web-8", "latency", 305, 0.8)]  # 2 of 10
    points = scores(storm + lone)
    incidents, fleets = fleet_events(group(points, GAP), points, GAP, 10, 0.2, 3)
    (fleet,) = fleets
    assert (fleet.entities, fleet.fleet_size, fleet.fraction) == (5, 10, 0.5)
    assert fleet.start_ms <= 60 * MIN
    assert fleet.end_ms >= 64 * MIN
    members = {i.entity for i in incidents if i.fleet == fleet.id}
    assert members == {f"web-{i}" for i in range(5)}
    assert set(fleet.members) == {i.id for i in incidents if i.fleet == fleet.id}
    assert all(i.fleet is None for i in incidents if i.entity in ("web-7", "web-8"))


def test_a_fleet_needs_the_fraction_and_the_minimum() -> None:
    points = scores([(f"h-{i}", "cpu_util", 10, 0.9) for i in range(3)])
    assert fleet_events(group(points, GAP), points, GAP, 100, 0.2, 3)[1] == []  # 3% of 100
    assert len(fleet_events(group(points, GAP), points, GAP, 10, 0.2, 3)[1]) == 1
    assert fleet_events(group(points, GAP), points, GAP, 10, 0.2, 4)[1] == []


def test_a_gap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="incident gap must be positive, not 0 ms"):
        group(scores([]), 0)
