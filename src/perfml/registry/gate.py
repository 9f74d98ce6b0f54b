"""The promotion gate: a candidate reaches an alias only if its figures clear every threshold.

A threshold names a metric and what the candidate must show on it, all measured on the same
data as the alias's current holder:

- ``max_drop`` — a margin: the candidate is refused when it falls below the holder by more
  than this (``candidate >= current - max_drop``). It is perfml's default form: a retrained
  model need not be better on a small labelled window, where one missed anomaly moves the
  figures, but it must not be clearly worse;
- ``min_value`` — a floor every candidate must reach, and the only bar of a first version
  (no holder to compare with);
- ``min_absolute_change``, ``min_relative_change`` — a required improvement over the holder,
  as MLflow's ``MetricThreshold`` has them.

A metric where lower is better (a false-positive rate, a time to detect) flips every
comparison. A refusal names the metric, both figures and the margin or bar it missed.

>>> gate = [MetricThreshold("event_f1", min_value=0.5, max_drop=0.05)]
>>> check(gate, {"event_f1": 0.80}, {"event_f1": 0.83}).passed  # within the margin
True
>>> check(gate, {"event_f1": 0.70}, {"event_f1": 0.83}).failures[0]
'event_f1: candidate 0.7 is below the current 0.83 by 0.13, more than the margin 0.05'
>>> check(gate, {"event_f1": 0.40}, None).failures[0]  # a first version
'event_f1: candidate 0.4 misses the minimum 0.5'
>>> strict = [MetricThreshold("f1", min_value=0.5, min_relative_change=0.05)]
>>> check(strict, {"f1": 0.62}, {"f1": 0.61}).failures[0]
'f1: relative improvement 1.64% is below the required 5.00% (candidate 0.62, current 0.61)'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class MetricThreshold:
    """What one metric must show for a promotion to pass."""

    metric: str
    min_value: float | None = None
    min_absolute_change: float | None = None
    min_relative_change: float | None = None
    greater_is_better: bool = True
    max_drop: float | None = None

    @classmethod
    def all_of(cls, rules: Iterable[Mapping[str, Any] | BaseModel]) -> list[MetricThreshold]:
        """The thresholds of ``perfml.yaml``'s ``registry.gate`` (its settings, or their JSON)."""
        return [cls(**(r.model_dump() if isinstance(r, BaseModel) else r)) for r in rules]


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict with the figures behind it, as the audit log keeps it."""

    passed: bool
    candidate: dict[str, float]
    baseline: dict[str, float] | None
    failures: list[str] = field(default_factory=list)
    thresholds: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "candidate": self.candidate,
            "baseline": self.baseline,
            "failures": self.failures,
            "thresholds": self.thresholds,
        }


def check(
    thresholds: Sequence[MetricThreshold],
    candidate: Mapping[str, float],
    baseline: Mapping[str, float] | None,
) -> GateResult:
    """Compare ``candidate`` with ``baseline`` (None: no current holder) on every threshold."""
    failures: list[str] = []
    for rule in thresholds:
        value = candidate.get(rule.metric)
        if value is None or not math.isfinite(value):
            failures.append(f"{rule.metric}: the candidate has no finite value ({value!r})")
            continue
        sign = 1.0 if rule.greater_is_better else -1.0
        if rule.min_value is not None and sign * (value - rule.min_value) < 0:
            word = "minimum" if rule.greater_is_better else "maximum"
            failures.append(
                f"{rule.metric}: candidate {_fmt(value)} misses the {word} {_fmt(rule.min_value)}"
            )
        if baseline is None:
            continue
        current = baseline.get(rule.metric)
        if current is None or not math.isfinite(current):
            continue  # nothing to improve on
        gain = sign * (value - current)
        both = f"(candidate {_fmt(value)}, current {_fmt(current)})"
        if rule.max_drop is not None and gain + rule.max_drop < -_TOLERANCE:
            failures.append(
                f"{rule.metric}: candidate {_fmt(value)} is "
                f"{'below' if rule.greater_is_better else 'above'} the current {_fmt(current)} "
                f"by {_fmt(-gain)}, more than the margin {_fmt(rule.max_drop)}"
            )
        if rule.min_absolute_change is not None and gain < rule.min_absolute_change:
            failures.append(
                f"{rule.metric}: improvement {_fmt(gain)} is below the required "
                f"{_fmt(rule.min_absolute_change)} {both}"
            )
        if rule.min_relative_change is not None:
            relative = gain / abs(current) if current != 0 else math.inf if gain > 0 else 0.0
            if relative < rule.min_relative_change:
                failures.append(
                    f"{rule.metric}: relative improvement {relative:.2%} is below the required "
                    f"{rule.min_relative_change:.2%} {both}"
                )
    return GateResult(
        passed=not failures,
        candidate=dict(candidate),
        baseline=None if baseline is None else dict(baseline),
        failures=failures,
        thresholds=[rule.__dict__.copy() for rule in thresholds],
    )


_TOLERANCE = 1e-9
"""A candidate exactly at the margin passes, whatever the rounding of its subtraction."""


def _fmt(value: float) -> str:
    return f"{value:.4g}"
