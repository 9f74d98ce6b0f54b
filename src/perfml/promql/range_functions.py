"""Functions of a range vector (``rate``, ``increase``, ``*_over_time`` ...), vectorised.

Each function sees, for every series and step, the window ``[lo, hi)`` of flat sample
indices (see :mod:`perfml.promql.selection`). Float results are bit-identical to
Prometheus's: where Prometheus accumulates in sample order (counter resets, Kahan sums,
running means) the loop here runs over the position in the window, vectorised across all
windows, so that each window adds its samples in the same order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from perfml.promql.selection import SampleBlock
from perfml.promql.series import FloatArray, IntArray
from perfml.promql.vectors import BoolArray

Windows = tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]
RangeFunction = Callable[[SampleBlock, Windows, IntArray, int], tuple[FloatArray, BoolArray]]


def duration_seconds(ms: int) -> float:
    """A duration in seconds computed as Go's ``time.Duration.Seconds`` does."""
    seconds, rest_ms = divmod(ms, 1000)
    return float(seconds) + float(rest_ms * 1_000_000) / 1e9


def kahan_add(
    increment: FloatArray, total: FloatArray, compensation: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """One step of Neumaier-compensated summation (Prometheus's ``kahanSumInc``)."""
    new_total = total + increment
    big_total = np.abs(total) >= np.abs(increment)
    compensation = np.where(
        big_total,
        compensation + ((total - new_total) + increment),
        compensation + ((increment - new_total) + total),
    )
    return new_total, compensation


def _positions(windows: Windows) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], int]:
    lo, hi = windows
    counts = hi - lo
    return lo, counts, int(counts.max()) if counts.size else 0


def count_over_time(
    block: SampleBlock, windows: Windows, refs: IntArray, range_ms: int
) -> tuple[FloatArray, BoolArray]:
    lo, hi = windows
    counts = hi - lo
    return counts.astype(np.float64), counts > 0


def present_over_time(
    block: SampleBlock, windows: Windows, refs: IntArray, range_ms: int
) -> tuple[FloatArray, BoolArray]:
    lo, hi = windows
    return np.ones(lo.shape), hi > lo


def last_over_time(
    block: SampleBlock, windows: Windows, refs: IntArray, range_ms: int
) -> tuple[FloatArray, BoolArray]:
    lo, hi = windows
    present = hi > lo
    return block.values[np.where(present, hi - 1, 0)], present


def _extreme(pick: Callable[[FloatArray, FloatArray], BoolArray]) -> RangeFunction:
    def over_time(
        block: SampleBlock, windows: Windows, refs: IntArray, range_ms: int
    ) -> tuple[FloatArray, BoolArray]:
        lo, counts, longest = _positions(windows)
        present = counts > 0
        current = (
            block.values[np.where(present, lo, 0)] if len(block.values) else np.zeros(lo.shape)
        )
        for k in range(1, longest):
            active = k < counts
            value = block.values[np.where(active, lo + k, 0)]
            replace = active & (pick(value, current) | np.isnan(current))
            current = np.where(replace, value, current)
        return current, present

    return over_time


max_over_time = _extreme(np.greater)
min_over_time = _extreme(np.less)


def sum_over_time(
    block: SampleBlock, windows: Windows, refs: IntArray, range_ms: int
) -> tuple[FloatArray, BoolArray]:
    lo, counts, longest = _positions(windows)
    total = np.zeros(lo.shape)
    compensation = np.zeros(lo.shape)
    for k in range(longest):
        active = k < counts
        value = block.values[np.where(active, lo + k, 0)]
        new_total, new_compensation = kahan_add(value, total, compensation)
        total = np.where(active, new_total, total)
        compensation = np.where(active, new_compensation, compensation)
    return np.where(np.isinf(total), total, total + compensation), counts > 0


def avg_over_time(
    block: SampleBlock, windows: Windows, refs: IntArray, range_ms: int
) -> tuple[FloatArray, BoolArray]:
    lo, counts, longest = _positions(windows)
    mean = np.zeros(lo.shape)
    compensation = np.zeros(lo.shape)
    seen = np.zeros(lo.shape)
    for k in range(longest):
        active = k < counts
        value = block.values[np.where(active, lo + k, 0)]
        seen = np.where(active, seen + 1, seen)
        # An infinite mean stays as it is unless a NaN or an opposite infinity arrives.
        value_inf = np.isinf(value)
        keep_inf = np.isinf(mean) & (
            (value_inf & ((mean > 0) == (value > 0))) | (~value_inf & ~np.isnan(value))
        )
        update = active & ~keep_inf
        new_mean, new_compensation = kahan_add(value / seen - mean / seen, mean, compensation)
        mean = np.where(update, new_mean, mean)
        compensation = np.where(update, new_compensation, compensation)
    return np.where(np.isinf(mean), mean, mean + compensation), counts > 0


def _reset_positions(block: SampleBlock) -> npt.NDArray[np.intp]:
    """Flat indices whose sample is lower than the previous sample of the same series."""
    values = block.values
    if len(values) < 2:
        return np.empty(0, dtype=np.intp)
    drops = values[1:] < values[:-1]
    drops[block.offsets[1:-1][block.offsets[1:-1] < len(values)] - 1] = False
    return np.flatnonzero(drops) + 1


def _extrapolated(is_counter: bool, is_rate: bool) -> RangeFunction:
    def extrapolated_rate(
        block: SampleBlock, windows: Windows, refs: IntArray, range_ms: int
    ) -> tuple[FloatArray, BoolArray]:
        lo, hi = windows
        counts = hi - lo
        present = counts >= 2
        first_i = np.where(present, lo, 0)
        last_i = np.where(present, hi - 1, 0)
        if len(block.values) == 0:
            return np.zeros(lo.shape), present
        first, last = block.values[first_i], block.values[last_i]
        result = last - first
        if is_counter:
            resets = _reset_positions(block)
            if len(resets):
                start = np.searchsorted(resets, lo + 1, side="left")
                stop = np.searchsorted(resets, hi, side="left")
                per_window = np.where(present, stop - start, 0)
                for k in range(int(per_window.max()) if per_window.size else 0):
                    active = k < per_window
                    where = resets[np.where(active, start + k, 0)]
                    result = np.where(active, result + block.values[where - 1], result)
        range_start = (refs - range_ms)[None, :]
        first_ts, last_ts = block.ts[first_i], block.ts[last_i]
        to_start = (first_ts - range_start).astype(np.float64) / 1000
        to_end = (refs[None, :] - last_ts).astype(np.float64) / 1000
        sampled = (last_ts - first_ts).astype(np.float64) / 1000
        average = sampled / np.maximum(counts - 1, 1).astype(np.float64)
        if is_counter:
            # Counters cannot be negative: extrapolate no further back than the zero point.
            to_zero = sampled * (first / result)
            clamp = (result > 0) & (first >= 0) & (to_zero < to_start)
            to_start = np.where(clamp, to_zero, to_start)
        threshold = average * 1.1
        interval = sampled + np.where(to_start < threshold, to_start, average / 2)
        interval = interval + np.where(to_end < threshold, to_end, average / 2)
        factor = interval / sampled
        if is_rate:
            factor = factor / duration_seconds(range_ms)
        return result * factor, present

    return extrapolated_rate


def _instant(is_rate: bool) -> RangeFunction:
    def instant_value(
        block: SampleBlock, windows: Windows, refs: IntArray, range_ms: int
    ) -> tuple[FloatArray, BoolArray]:
        lo, hi = windows
        enough = hi - lo >= 2
        last_i = np.where(enough, hi - 1, 1)
        if len(block.values) < 2:
            return np.zeros(lo.shape), np.zeros(lo.shape, bool)
        last, previous = block.values[last_i], block.values[last_i - 1]
        interval = block.ts[last_i] - block.ts[last_i - 1]
        if is_rate:
            result = np.where(last < previous, last, last - previous)
            result = result / (interval.astype(np.float64) / 1000)
        else:
            result = last - previous
        return result, enough & (interval != 0)

    return instant_value


RANGE_FUNCTION_IMPLEMENTATIONS: dict[str, RangeFunction] = {
    "rate": _extrapolated(is_counter=True, is_rate=True),
    "increase": _extrapolated(is_counter=True, is_rate=False),
    "delta": _extrapolated(is_counter=False, is_rate=False),
    "irate": _instant(is_rate=True),
    "idelta": _instant(is_rate=False),
    "max_over_time": max_over_time,
    "min_over_time": min_over_time,
    "sum_over_time": sum_over_time,
    "avg_over_time": avg_over_time,
    "count_over_time": count_over_time,
    "last_over_time": last_over_time,
    "present_over_time": present_over_time,
}
"""The value of each range function over every window (``absent_over_time`` is separate)."""
