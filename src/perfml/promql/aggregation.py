"""Aggregation operators (``sum``, ``avg``, ``quantile`` ...) with ``by``/``without`` grouping.

Series are grouped by their labels kept (``by``) or left (``without``, which also drops the
name); within a group the values are combined in the order Prometheus combines them (the
input's label order), so sums and means are bit-identical.
"""

from __future__ import annotations

import math

import numpy as np

from perfml.promql.series import METRIC_NAME, FloatArray
from perfml.promql.vectors import BoolArray, InstantVector, LabelKey


def group_key(key: LabelKey, grouping: tuple[str, ...], without: bool) -> LabelKey:
    """The labels of the group a series falls in."""
    if without:
        dropped = {*grouping, METRIC_NAME}
        return tuple(pair for pair in key if pair[0] not in dropped)
    kept = set(grouping)
    return tuple(pair for pair in key if pair[0] in kept)


def quantile_of(q: float, values: list[float]) -> float:
    """The φ-quantile of ``values`` as Prometheus's ``quantile`` computes it."""
    if not values:
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(values, key=lambda v: (not math.isnan(v), v if not math.isnan(v) else 0.0))
    n = float(len(ordered))
    rank = q * (n - 1)
    lower = max(0.0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[int(lower)] * (1 - weight) + ordered[int(upper)] * weight


def _mean(values: FloatArray, present: BoolArray) -> FloatArray:
    steps = values.shape[1]
    mean = np.zeros(steps)
    count = np.zeros(steps)
    for value, here in zip(values, present, strict=True):
        first = here & (count == 0)
        later = here & (count > 0)
        count = np.where(here, count + 1, count)
        value_inf = np.isinf(value)
        keep_inf = np.isinf(mean) & (
            (value_inf & ((mean > 0) == (value > 0))) | (~value_inf & ~np.isnan(value))
        )
        update = later & ~keep_inf
        mean = np.where(first, value, np.where(update, mean + (value / count - mean / count), mean))
    return mean


def _combine(op: str, values: FloatArray, present: BoolArray, param: FloatArray) -> FloatArray:
    if op == "sum":
        return np.asarray(np.add.accumulate(np.where(present, values, 0.0), axis=0)[-1])
    if op == "count":
        return np.asarray(present.sum(axis=0), dtype=np.float64)
    if op == "group":
        return np.ones(values.shape[1])
    if op == "max":
        return np.asarray(np.fmax.reduce(np.where(present, values, np.nan), axis=0))
    if op == "min":
        return np.asarray(np.fmin.reduce(np.where(present, values, np.nan), axis=0))
    if op == "avg":
        return _mean(values, present)
    if op == "quantile":
        out = np.full(values.shape[1], np.nan)
        for step in np.flatnonzero(present.any(axis=0)):
            column = values[present[:, step], step].tolist()
            out[step] = quantile_of(float(param[step]), column)
        return out
    raise ValueError(f"not a combining aggregation: {op}")


def aggregate(
    op: str,
    vector: InstantVector,
    param: FloatArray | str | None,
    grouping: tuple[str, ...],
    without: bool,
) -> InstantVector:
    """The aggregation ``op`` of ``vector`` per group, at every step."""
    steps = vector.steps
    groups: dict[LabelKey, list[int]] = {}
    for row, key in enumerate(vector.keys):
        groups.setdefault(group_key(key, grouping, without), []).append(row)
    if op in ("topk", "bottomk"):
        return _select_k(op, vector, groups, np.asarray(param, np.float64))
    if op == "count_values":
        return _count_values(vector, groups, str(param))
    numeric = np.zeros(steps) if param is None or isinstance(param, str) else param
    keys: list[LabelKey] = []
    values = np.empty((len(groups), steps))
    present = np.zeros((len(groups), steps), dtype=bool)
    for i, (key, rows) in enumerate(groups.items()):
        keys.append(key)
        if len(rows) == 1 and op in ("sum", "max", "min", "avg"):
            values[i] = vector.values[rows[0]]
            present[i] = vector.present[rows[0]]
            continue
        group_values, group_present = vector.values[rows], vector.present[rows]
        values[i] = _combine(op, group_values, group_present, numeric)
        present[i] = group_present.any(axis=0)
    return InstantVector(keys, values, present)


def _select_k(
    op: str, vector: InstantVector, groups: dict[LabelKey, list[int]], k: FloatArray
) -> InstantVector:
    keep = np.zeros_like(vector.present)
    for rows in groups.values():
        index = np.asarray(rows)
        for step in range(vector.steps):
            if not math.isfinite(k[step]) or k[step] < 1:
                continue
            here = index[vector.present[index, step]]
            column = vector.values[here, step]
            # NaN ranks last either way, as in Prometheus.
            rank_value = np.where(np.isnan(column), -np.inf if op == "topk" else np.inf, column)
            order = np.argsort(-rank_value if op == "topk" else rank_value, kind="stable")
            keep[here[order[: int(k[step])]], step] = True
    return InstantVector(vector.keys, vector.values, keep).compact()


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return np.format_float_positional(value, trim="-")


def _count_values(
    vector: InstantVector, groups: dict[LabelKey, list[int]], label: str
) -> InstantVector:
    counts: dict[LabelKey, FloatArray] = {}
    for key, rows in groups.items():
        for row in rows:
            for step in np.flatnonzero(vector.present[row]):
                text = _format_value(float(vector.values[row, step]))
                labels = dict(key)
                labels[label] = text
                out_key = tuple(sorted(labels.items()))
                counts.setdefault(out_key, np.zeros(vector.steps))[step] += 1
    keys = list(counts)
    values = np.array([counts[k] for k in keys]).reshape(len(keys), vector.steps)
    return InstantVector(keys, values, values > 0)
