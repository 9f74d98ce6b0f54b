"""Functions of instant vectors and scalars: ``abs``, ``clamp_*``, ``histogram_quantile`` ...

Range-vector functions live in :mod:`perfml.promql.range_functions`; here are the
rest, each taking already evaluated arguments for all steps at once.
"""

from __future__ import annotations

import math

import numpy as np

from perfml.promql.ast import VectorSelector
from perfml.promql.series import METRIC_NAME, FloatArray
from perfml.promql.vectors import BoolArray, InstantVector, LabelKey, drop_name

BUCKET_LABEL = "le"

ELEMENTWISE = {
    "abs": np.abs,
    "ceil": np.ceil,
    "floor": np.floor,
    "sqrt": np.sqrt,
}


def elementwise(name: str, vector: InstantVector) -> InstantVector:
    """``abs(v)`` and friends: the function of each value, the metric name dropped."""
    values = np.asarray(ELEMENTWISE[name](vector.values), np.float64)
    return InstantVector([drop_name(k) for k in vector.keys], values, vector.present)


def clamp(vector: InstantVector, low: FloatArray, high: FloatArray) -> InstantVector:
    """``clamp(v, min, max)``: no result at the steps where ``max < min``."""
    values = np.maximum(low[None, :], np.minimum(high[None, :], vector.values))
    present = vector.present & ~(high < low)[None, :]
    return InstantVector([drop_name(k) for k in vector.keys], values, present)


def clamp_min(vector: InstantVector, low: FloatArray) -> InstantVector:
    values = np.maximum(low[None, :], vector.values)
    return InstantVector([drop_name(k) for k in vector.keys], values, vector.present)


def clamp_max(vector: InstantVector, high: FloatArray) -> InstantVector:
    values = np.minimum(high[None, :], vector.values)
    return InstantVector([drop_name(k) for k in vector.keys], values, vector.present)


def scalar_of(vector: InstantVector) -> FloatArray:
    """``scalar(v)``: the single value of ``v`` at each step, NaN unless exactly one."""
    counts = vector.present.sum(axis=0)
    if len(vector) == 0:
        return np.full(vector.steps, np.nan)
    single = np.where(vector.present, vector.values, 0.0).sum(axis=0)
    return np.where(counts == 1, single, np.nan)


def absent_labels(selector: VectorSelector | None) -> LabelKey:
    """The labels ``absent()`` reports: the selector's equality matchers, if unambiguous."""
    if selector is None:
        return ()
    labels: dict[str, str] = {}
    ambiguous: set[str] = set()
    for matcher in selector.matchers:
        if matcher.name == METRIC_NAME or matcher.op != "=":
            continue
        if matcher.name in labels:
            ambiguous.add(matcher.name)
        labels[matcher.name] = matcher.value
    return tuple(sorted((k, v) for k, v in labels.items() if k not in ambiguous and v != ""))


def _parse_bound(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """The φ-quantile from classic buckets ``(upper bound, cumulative count)``, as Prometheus.

    Needs a ``+Inf`` bucket; equal bounds are merged, counts are made monotonic (scrapes of
    buckets are not atomic), and the result interpolates linearly inside the bucket.
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    buckets = sorted(buckets, key=lambda b: b[0])
    if not math.isinf(buckets[-1][0]) or buckets[-1][0] < 0:
        return math.nan
    merged: list[list[float]] = []
    for bound, count in buckets:
        if merged and merged[-1][0] == bound:
            merged[-1][1] += count
        else:
            merged.append([bound, count])
    highest = -math.inf
    for bucket in merged:
        if bucket[1] > highest:
            highest = bucket[1]
        elif bucket[1] < highest:
            bucket[1] = highest
    if len(merged) < 2:
        return math.nan
    observations = merged[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = next((i for i in range(len(merged) - 1) if merged[i][1] >= rank), len(merged) - 1)
    if b == len(merged) - 1:
        return merged[-2][0]
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start, end, count = 0.0, merged[b][0], merged[b][1]
    if b > 0:
        start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    return start + (end - start) * (rank / count)


def histogram_quantile(q: FloatArray, vector: InstantVector) -> InstantVector:
    """``histogram_quantile(φ, buckets)`` over classic ``le`` buckets, per label set."""
    groups: dict[LabelKey, tuple[LabelKey, list[tuple[int, float]]]] = {}
    for row, key in enumerate(vector.keys):
        labels = dict(key)
        bound = _parse_bound(labels.get(BUCKET_LABEL, ""))
        if bound is None:
            continue
        group = tuple(pair for pair in key if pair[0] != BUCKET_LABEL)
        out = tuple(pair for pair in group if pair[0] != METRIC_NAME)
        groups.setdefault(group, (out, []))[1].append((row, bound))
    merged: dict[LabelKey, tuple[FloatArray, BoolArray]] = {}
    for out_key, members in groups.values():
        rows = [row for row, _ in members]
        present: BoolArray = np.asarray(vector.present[rows].any(axis=0), dtype=bool)
        values = np.full(vector.steps, np.nan)
        for step in np.flatnonzero(present):
            buckets = [
                (bound, float(vector.values[row, step]))
                for row, bound in members
                if vector.present[row, step]
            ]
            values[step] = bucket_quantile(float(q[step]), buckets)
        if out_key in merged:
            old_values, old_present = merged[out_key]
            values = np.where(present, values, old_values)
            present = np.asarray(present | old_present, dtype=bool)
        merged[out_key] = (values, present)
    keys = list(merged)
    return InstantVector(
        keys,
        np.array([merged[k][0] for k in keys], np.float64).reshape(len(keys), vector.steps),
        np.array([merged[k][1] for k in keys], bool).reshape(len(keys), vector.steps),
    )
