"""Reading the samples a selector needs and finding, per series and step, what it sees.

The selected series are flattened into one sorted array of composite keys (series number,
then time), so that a single ``searchsorted`` finds the latest sample (instant selectors)
or the window bounds (range selectors) of every series at every step.

Windows follow the installed Prometheus (2.x): a range ``[d]`` at step ``t`` holds the
samples with ``t - d <= ts <= t``, and an instant selector sees the latest sample with
``t - lookback <= ts <= t`` unless that sample is a staleness marker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from perfml.promql.ast import VectorSelector
from perfml.promql.series import FloatArray, IntArray, SeriesSource, stale_mask
from perfml.promql.vectors import BoolArray, LabelKey, label_key

RANGE_START_INCLUSIVE = True
"""Prometheus 2.x keeps a sample exactly at ``t - d`` in a range (3.x does not)."""
_KEY_LIMIT = 2**62


@dataclass
class SampleBlock:
    """The samples of the selected series, concatenated in label order."""

    keys: list[LabelKey]
    ts: IntArray
    values: FloatArray
    offsets: IntArray
    _composite: tuple[IntArray, int, int] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.keys)

    def without_stale(self) -> SampleBlock:
        """The same series with staleness markers removed (ranges never contain them)."""
        stale = stale_mask(self.values)
        if not stale.any():
            return self
        keep = ~stale
        series_of = np.repeat(np.arange(len(self.keys)), np.diff(self.offsets))
        counts = np.bincount(series_of[keep], minlength=len(self.keys))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return SampleBlock(self.keys, self.ts[keep], self.values[keep], offsets)

    def search(self, targets: IntArray, side: str) -> npt.NDArray[np.intp]:
        """For each series (row) and target time (column): the flat index at which ``target``
        would be inserted into that series' timestamps (``side`` as in ``searchsorted``)."""
        m, n = len(self.keys), len(targets)
        if m == 0 or len(self.ts) == 0:
            return np.broadcast_to(self.offsets[:-1, None], (m, n)).astype(np.intp)
        base = int(min(int(self.ts.min()), int(targets.min()))) - 1
        span = int(max(int(self.ts.max()), int(targets.max()))) - base + 2
        if m * span >= _KEY_LIMIT:
            return self._search_each(targets, side)
        if self._composite is None or self._composite[1:] != (base, span):
            series_of = np.repeat(np.arange(m, dtype=np.int64), np.diff(self.offsets))
            self._composite = (series_of * span + (self.ts - base), base, span)
        composite = self._composite[0]
        queries = np.arange(m, dtype=np.int64)[:, None] * span + (targets - base)[None, :]
        found = np.searchsorted(composite, queries.ravel(), side=side)  # type: ignore[call-overload]
        return np.asarray(found, dtype=np.intp).reshape(m, n)

    def _search_each(self, targets: IntArray, side: str) -> npt.NDArray[np.intp]:
        out = np.empty((len(self.keys), len(targets)), dtype=np.intp)
        for i in range(len(self.keys)):
            lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
            out[i] = lo + np.searchsorted(self.ts[lo:hi], targets, side=side)  # type: ignore[call-overload]
        return out


def load(source: SeriesSource, selector: VectorSelector, start_ms: int, end_ms: int) -> SampleBlock:
    """The samples of the series ``selector`` matches with ``start_ms <= ts <= end_ms``."""
    found: dict[LabelKey, tuple[IntArray, FloatArray]] = {}
    for series in source.select(selector.matchers, start_ms - 1, end_ms):
        if len(series.ts) == 0:
            continue
        key = label_key(dict(series.labels))
        if key in found:  # a source may split one series; join the parts in time order
            ts = np.concatenate([found[key][0], series.ts])
            values = np.concatenate([found[key][1], series.values])
            order = np.argsort(ts, kind="stable")
            found[key] = (ts[order], values[order])
        else:
            found[key] = (np.asarray(series.ts, np.int64), np.asarray(series.values, np.float64))
    keys = sorted(found)
    if not keys:
        return SampleBlock([], np.empty(0, np.int64), np.empty(0), np.zeros(1, np.int64))
    sizes = [len(found[key][0]) for key in keys]
    return SampleBlock(
        keys,
        np.concatenate([found[key][0] for key in keys]),
        np.concatenate([found[key][1] for key in keys]),
        np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
    )


def latest_samples(
    block: SampleBlock, refs: IntArray, lookback_ms: int
) -> tuple[FloatArray, BoolArray, IntArray]:
    """Values, presence and sample timestamps an instant selector sees at each ``refs`` time."""
    m, n = len(block), len(refs)
    if m == 0:
        return np.empty((0, n)), np.zeros((0, n), bool), np.zeros((0, n), np.int64)
    index = block.search(refs, "right") - 1
    starts = block.offsets[:-1, None]
    found = index >= starts
    safe = np.where(found, index, 0)
    sample_ts = block.ts[safe]
    values = block.values[safe]
    present = found & (sample_ts >= refs[None, :] - lookback_ms) & ~stale_mask(values)
    return values, present, sample_ts


def window_bounds(
    block: SampleBlock, refs: IntArray, range_ms: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Flat index bounds ``[lo, hi)`` of each series' window ending at each ``refs`` time."""
    lo = block.search(refs - range_ms, "left" if RANGE_START_INCLUSIVE else "right")
    hi = block.search(refs, "right")
    return lo, hi
