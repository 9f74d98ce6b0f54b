"""Decayed histograms on a grid that grows, for many series at once: the compact memory of
:mod:`perfml.detectors.streaming`.

Each series (a row of a 2-D array) keeps counts in ``B`` equal bins over its own grid
``[lo, hi]``. Counts are read as the mass of an interval (a bin's mass spread evenly over it),
and when a new value falls outside the grid the grid widens and the counts are re-binned onto
it, mass preserved. Every function works on the rows it is given, vectorised across them.

>>> import numpy as np
>>> counts = np.zeros((1, 4), np.float32)
>>> counts[0, 1] = 2.0                                    # 2 points in [1, 2) on a grid [0, 4)
>>> columns, weights = window(np.array([1.5]), np.array([2.5]), 3, 4)
>>> float(window_mass(counts, np.array([0]), columns, weights)[0])
1.0
>>> rebinned = rebin(counts, np.array([0.0]), np.array([4.0]), np.array([0.0]), np.array([8.0]))
>>> rebinned.tolist()                                     # [0, 8): the 2 points now in [0, 2)
[[2.0, 0.0, 0.0, 0.0]]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Rows = npt.NDArray[np.intp]


def window(
    low: Floats, high: Floats, reach: int, bins: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]:
    """The bins that ``[low, high]`` (in bin units: bin ``j`` is ``[j, j + 1)``) covers, and
    how much of each: ``reach`` columns per interval, from the bin holding ``low``, for
    intervals at most ``reach - 1`` bins wide (bins outside ``[0, bins)`` weigh 0)."""
    low32, high32 = low.astype(np.float32)[:, None], high.astype(np.float32)[:, None]
    starts = np.floor(low32) + np.arange(reach, dtype=np.float32)
    weights = np.minimum(high32, starts + np.float32(1.0))
    weights -= np.maximum(low32, starts)
    np.clip(weights, 0.0, 1.0, out=weights)
    weights[(starts < 0) | (starts >= bins)] = 0.0
    columns = np.clip(starts, 0, bins - 1).astype(np.intp)
    return columns, weights


def window_mass(
    counts: npt.NDArray[np.floating],
    rows: Rows,
    columns: npt.NDArray[np.intp],
    weights: npt.NDArray[np.float32],
) -> Floats:
    """The mass of ``counts[rows]`` (rows of the last axis, flattened) in the
    :func:`window` given by ``columns`` and ``weights``."""
    bins = counts.shape[-1]
    found = np.take(counts.reshape(-1), rows[:, None] * bins + columns)
    mass: Floats = row_sums(found.astype(np.float64) * weights)
    return mass


def row_sums(terms: Floats) -> Floats:
    """Each row's sum. A reduction along the contiguous last axis adds each row in the same
    order whatever the number of rows, so a series scores the same bits alone or among many
    (``einsum`` does not promise that)."""
    sums: Floats = np.ascontiguousarray(terms).sum(axis=1)
    return sums


def rebin(
    counts: npt.NDArray[np.floating], lo: Floats, hi: Floats, new_lo: Floats, new_hi: Floats
) -> npt.NDArray[np.floating]:
    """``counts`` (rows × … × bins over ``[lo, hi]`` per row) on the wider grids
    ``[new_lo, new_hi]`` ⊇ ``[lo, hi]``, each old bin's mass spread evenly over it."""
    bins = counts.shape[-1]
    shape = counts.shape
    flat = counts.reshape(shape[0], -1, bins).astype(np.float64)
    cumulative = np.concatenate([np.zeros((*flat.shape[:2], 1)), np.cumsum(flat, axis=2)], 2)
    old_width = (hi - lo) / bins
    edges = new_lo[:, None] + (new_hi - new_lo)[:, None] / bins * np.arange(bins + 1)
    position = np.clip((edges - lo[:, None]) / np.where(old_width > 0, old_width, 1.0)[:, None],
                       0.0, float(bins))  # fmt: skip
    # A grid of no width holds its mass at lo: all of it lies past every edge beyond lo.
    position = np.where(old_width[:, None] > 0, position, np.where(edges > lo[:, None], bins, 0))
    whole = np.minimum(np.floor(position), bins - 1).astype(np.intp)
    part = position - whole
    taken = np.take_along_axis(cumulative, whole[:, None, :], 2)
    inside = np.take_along_axis(flat, whole[:, None, :], 2)
    below = taken + part[:, None, :] * inside
    moved = np.diff(below, axis=2)
    widened: npt.NDArray[np.floating] = moved.reshape(shape).astype(counts.dtype)
    return widened
