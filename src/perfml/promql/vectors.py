"""Instant vectors over a grid of evaluation steps, the evaluator's working representation.

Every expression is evaluated at all steps at once: an instant vector is a list of label
sets and two ``(series, steps)`` arrays, the values and whether each series has a sample at
each step. A single evaluation (an instant query) is the one-step case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from perfml.promql.series import METRIC_NAME, FloatArray, format_labels

LabelKey = tuple[tuple[str, str], ...]
"""A label set as a sorted tuple of (name, value) pairs: hashable, ordered as Prometheus."""
BoolArray = npt.NDArray[np.bool_]


def label_key(labels: dict[str, str] | LabelKey) -> LabelKey:
    """The sorted, hashable form of a label set (empty values dropped, as Prometheus does)."""
    items = labels.items() if isinstance(labels, dict) else labels
    return tuple(sorted((k, v) for k, v in items if v != ""))


def drop_name(key: LabelKey) -> LabelKey:
    """``key`` without ``__name__``."""
    return tuple(pair for pair in key if pair[0] != METRIC_NAME)


def describe(key: LabelKey) -> str:
    """A label set as Prometheus prints it."""
    return format_labels(dict(key))


@dataclass
class InstantVector:
    """Series (label sets) with a value or nothing at each evaluation step."""

    keys: list[LabelKey]
    values: FloatArray
    present: BoolArray

    @classmethod
    def empty(cls, steps: int) -> InstantVector:
        return cls([], np.empty((0, steps)), np.zeros((0, steps), dtype=bool))

    @property
    def steps(self) -> int:
        return int(self.values.shape[1])

    def __len__(self) -> int:
        return len(self.keys)

    def rows(self, index: Sequence[int] | npt.NDArray[np.intp]) -> InstantVector:
        """The series at positions ``index``, in that order."""
        idx = np.asarray(index, dtype=np.intp)
        return InstantVector([self.keys[i] for i in idx], self.values[idx], self.present[idx])

    def with_keys(self, keys: list[LabelKey]) -> InstantVector:
        return InstantVector(keys, self.values, self.present)

    def compact(self) -> InstantVector:
        """Without the series that have no value at any step."""
        keep = np.flatnonzero(self.present.any(axis=1))
        return self if len(keep) == len(self.keys) else self.rows(keep)


def merge_same_labels(vector: InstantVector) -> tuple[InstantVector, LabelKey | None]:
    """Combine the series that carry the same labels into one.

    Series that share labels must not both have a value at the same step; if two do, the
    result is ``(vector, key)`` with the clashing ``key`` for the caller to report;
    otherwise ``(merged, None)``.
    """
    positions: dict[LabelKey, list[int]] = {}
    for i, key in enumerate(vector.keys):
        positions.setdefault(key, []).append(i)
    if len(positions) == len(vector.keys):
        return vector, None
    keys, values, present = [], [], []
    for key, rows in positions.items():
        if len(rows) == 1:
            keys.append(key)
            values.append(vector.values[rows[0]])
            present.append(vector.present[rows[0]])
            continue
        counts = vector.present[rows].sum(axis=0)
        if counts.max() > 1:
            return vector, key
        merged_values = np.zeros(vector.steps)
        for row in rows:
            mask = vector.present[row]
            merged_values[mask] = vector.values[row][mask]
        keys.append(key)
        values.append(merged_values)
        present.append(counts > 0)
    return (
        InstantVector(
            keys,
            np.array(values).reshape(len(keys), -1),
            np.array(present, bool).reshape(len(keys), -1),
        ),
        None,
    )
