"""Binary operators between scalars and instant vectors, with Prometheus's matching rules.

Arithmetic drops the metric name; comparisons filter (or give 0/1 with ``bool``, dropping
the name); ``and``/``or``/``unless`` keep the left-hand labels. Vector–vector operations pair
series by their labels (all but the name, or ``on(...)``/``ignoring(...)``), one-to-one unless
``group_left``/``group_right`` make the other side the "one" side.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from perfml.promql.ast import COMPARISON_OPERATORS, VectorMatching
from perfml.promql.series import METRIC_NAME, FloatArray
from perfml.promql.vectors import (
    BoolArray,
    InstantVector,
    LabelKey,
    describe,
    drop_name,
)

Fail = Callable[[str], Exception]


def apply_operator(op: str, lhs: FloatArray, rhs: FloatArray) -> tuple[FloatArray, BoolArray]:
    """``lhs op rhs`` elementwise, and whether a comparison holds (always True otherwise)."""
    if op in COMPARISON_OPERATORS:
        holds = {
            "==": np.equal,
            "!=": np.not_equal,
            ">": np.greater,
            "<": np.less,
            ">=": np.greater_equal,
            "<=": np.less_equal,
        }[op](lhs, rhs)
        return np.asarray(lhs, np.float64), np.asarray(holds, bool)
    value = {
        "+": np.add,
        "-": np.subtract,
        "*": np.multiply,
        "/": np.divide,
        "%": np.fmod,
        "^": np.power,
    }[op](lhs, rhs)
    return np.asarray(value, np.float64), np.ones(np.shape(value), dtype=bool)


def scalar_scalar(op: str, lhs: FloatArray, rhs: FloatArray, return_bool: bool) -> FloatArray:
    value, holds = apply_operator(op, lhs, rhs)
    if op in COMPARISON_OPERATORS:
        # The parser only lets scalar comparisons through with ``bool``.
        return holds.astype(np.float64)
    return value


def vector_scalar(
    op: str, vector: InstantVector, scalar: FloatArray, scalar_on_left: bool, return_bool: bool
) -> InstantVector:
    """A vector against a scalar; the vector's value stays the value of a comparison."""
    lhs, rhs = (scalar[None, :], vector.values) if scalar_on_left else (vector.values, scalar)
    value, holds = apply_operator(op, np.broadcast_to(lhs, vector.values.shape), rhs)
    comparison = op in COMPARISON_OPERATORS
    present = vector.present
    if comparison:
        value = vector.values
        if return_bool:
            value = holds.astype(np.float64)
        else:
            present = present & holds
    keys = vector.keys
    if not comparison or return_bool:
        keys = [drop_name(key) for key in keys]
    return InstantVector(keys, np.array(value, np.float64), present)


def signature(key: LabelKey, matching: VectorMatching) -> LabelKey:
    """The labels two series must share to match (``on``) or all others but the name."""
    if matching.on:
        wanted = set(matching.labels)
        return tuple(pair for pair in key if pair[0] in wanted)
    ignored = {*matching.labels, METRIC_NAME}
    return tuple(pair for pair in key if pair[0] not in ignored)


def _presence_by_signature(
    vector: InstantVector, matching: VectorMatching
) -> dict[LabelKey, BoolArray]:
    presence: dict[LabelKey, BoolArray] = {}
    for key, present in zip(vector.keys, vector.present, strict=True):
        sig = signature(key, matching)
        presence[sig] = presence[sig] | present if sig in presence else present.copy()
    return presence


def set_operation(
    op: str, lhs: InstantVector, rhs: InstantVector, matching: VectorMatching
) -> InstantVector:
    """``and``, ``or``, ``unless``: which series survive, step by step; labels unchanged."""
    steps = lhs.steps
    nothing = np.zeros(steps, dtype=bool)
    if op == "or":
        on_left = _presence_by_signature(lhs, matching)
        rhs_present = np.array(
            [
                present & ~on_left.get(signature(key, matching), nothing)
                for key, present in zip(rhs.keys, rhs.present, strict=True)
            ],
            dtype=bool,
        ).reshape(len(rhs), steps)
        return InstantVector(
            lhs.keys + rhs.keys,
            np.concatenate([lhs.values, rhs.values]),
            np.concatenate([lhs.present, rhs_present]),
        )
    on_right = _presence_by_signature(rhs, matching)
    matched = np.array(
        [on_right.get(signature(key, matching), nothing) for key in lhs.keys], dtype=bool
    ).reshape(len(lhs), steps)
    present = lhs.present & (matched if op == "and" else ~matched)
    return InstantVector(lhs.keys, lhs.values, present)


def _result_key(
    many: LabelKey, one: LabelKey, op: str, matching: VectorMatching, return_bool: bool
) -> LabelKey:
    labels = dict(many)
    if op not in COMPARISON_OPERATORS or return_bool:
        labels.pop(METRIC_NAME, None)
    if matching.card == "one-to-one":
        if matching.on:
            labels = {k: v for k, v in labels.items() if k in matching.labels}
        else:
            for name in matching.labels:
                labels.pop(name, None)
    one_labels = dict(one)
    for name in matching.include:
        if one_labels.get(name, ""):
            labels[name] = one_labels[name]
        else:
            labels.pop(name, None)
    return tuple(sorted(labels.items()))


def vector_vector(
    op: str,
    lhs: InstantVector,
    rhs: InstantVector,
    matching: VectorMatching,
    return_bool: bool,
    fail: Fail,
) -> InstantVector:
    """An arithmetic or comparison operation between two vectors, matched series by series."""
    swapped = matching.card == "one-to-many"
    many, one = (rhs, lhs) if swapped else (lhs, rhs)
    one_side = "left" if swapped else "right"
    by_sig: dict[LabelKey, list[int]] = {}
    for row, key in enumerate(one.keys):
        by_sig.setdefault(signature(key, matching), []).append(row)
    for sig, rows in by_sig.items():
        if len(rows) > 1 and one.present[rows].sum(axis=0).max() > 1:
            clash = [describe(one.keys[r]) for r in rows[:2]]
            raise fail(
                f"found duplicate series for the match group {describe(sig)} on the "
                f"{one_side} hand-side of the operation: [{', '.join(clash)}]; many-to-many "
                "matching not allowed: matching labels must be unique on one side"
            )
    keys: list[LabelKey] = []
    values: list[FloatArray] = []
    presents: list[BoolArray] = []
    sigs: list[LabelKey] = []
    for row, key in enumerate(many.keys):
        sig = signature(key, matching)
        for partner in by_sig.get(sig, ()):
            both = many.present[row] & one.present[partner]
            if not both.any():
                continue
            left, right = many.values[row], one.values[partner]
            if swapped:
                left, right = right, left
            value, holds = apply_operator(op, left, right)
            if op in COMPARISON_OPERATORS:
                if return_bool:
                    value = holds.astype(np.float64)
                else:
                    both = both & holds
            keys.append(_result_key(key, one.keys[partner], op, matching, return_bool))
            values.append(value)
            presents.append(both)
            sigs.append(sig)
    result = InstantVector(
        keys,
        np.array(values, np.float64).reshape(len(keys), lhs.steps),
        np.array(presents, bool).reshape(len(keys), lhs.steps),
    )
    _check_unique(result, sigs, matching, fail)
    return result


def _check_unique(
    result: InstantVector, sigs: list[LabelKey], matching: VectorMatching, fail: Fail
) -> None:
    groups: dict[LabelKey, list[int]] = {}
    one_to_one = matching.card == "one-to-one"
    for row, (key, sig) in enumerate(zip(result.keys, sigs, strict=True)):
        groups.setdefault(sig if one_to_one else key, []).append(row)
    for group, rows in groups.items():
        if len(rows) > 1 and result.present[rows].sum(axis=0).max() > 1:
            if one_to_one:
                raise fail(
                    f"multiple matches for labels {describe(group)}: many-to-one matching "
                    "must be explicit (group_left/group_right)"
                )
            raise fail(
                f"multiple matches for matching labels, result {describe(group)} is not "
                "unique: grouping labels must ensure unique matches"
            )
