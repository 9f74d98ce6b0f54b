"""What the report charts besides the dashboard's sources: a drift report's records (months 3
to 6 of a fleet measured against months 1–2, the latency's workload changing in month 4) and
the controller's decisions on them (no drift, then a retrain that was promoted)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from perfml.controller.decisions import Action, Decision
from perfml.drift.report import DriftRecord, compare

THRESHOLD = 0.1
MONTHS = ("2026-03", "2026-04", "2026-05", "2026-06")
FEATURES = ("cpu_usage", "memory_usage", "request_latency_ms")
CHANGED = ("request_latency_ms", "2026-04")
"""The feature whose workload changed, and the first month it did."""


def _month(label: str) -> tuple[datetime, datetime]:
    year, month = (int(part) for part in label.split("-"))
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def drift_records(points: int = 4_000, seed: int = 7) -> list[DriftRecord]:
    """The KL divergence of each feature in each month, from samples drawn for each."""
    rng = np.random.default_rng(seed)
    records = []
    for feature in FEATURES:
        reference = rng.normal(50.0, 10.0, points)
        for label in MONTHS:
            changed = feature == CHANGED[0] and label >= CHANGED[1]
            current = rng.normal(58.0 if changed else 50.0, 10.0, points)
            value = compare(reference, current, ["kl"])["kl"]
            start, end = _month(label)
            records.append(
                DriftRecord(
                    feature, None, label, start, end, "kl", value, THRESHOLD, points, points
                )
            )
    return records


def decisions(records: list[DriftRecord], model: str = "request-latency") -> list[Decision]:
    """The controller's decision in each month: no drift, then promoted, then no drift against
    the retrained model (whose drift, measured against its own training data, is as low as in
    the first month)."""
    found = []
    for label in MONTHS:
        measured = MONTHS[0] if label > CHANGED[1] else label
        drift = {r.feature: r.value for r in records if r.window == measured}
        _, end = _month(label)
        at_ms = int(end.timestamp() * 1000)
        figures = {"method": "kl", "threshold": THRESHOLD, "drift": drift}
        if label == CHANGED[1]:
            found.append(
                Decision.new(
                    model,
                    label,
                    Action.PROMOTED,
                    at_ms=at_ms,
                    production=f"{model}:1",
                    candidate=f"{model}:2",
                    run_id="train-r2",
                    figures=figures,
                    reasons=[
                        f"drift high in {label}: {CHANGED[0]} kl > {THRESHOLD}",
                        f"{model}:2 passed the gate: promoted",
                    ],
                )
            )
        else:
            found.append(
                Decision.new(
                    model,
                    label,
                    Action.NO_DRIFT,
                    at_ms=at_ms,
                    production=f"{model}:1",
                    figures=figures,
                    reasons=[f"kl at most {max(drift.values()):.4g}"],
                )
            )
    return found
