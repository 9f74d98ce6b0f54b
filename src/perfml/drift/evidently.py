"""Evidently's numeric KL divergence, reproduced exactly, to compare figures with it.

Evidently (0.7's ``ValueDrift(method="kl_div")``, in
``evidently/legacy/calculations/stattests/kl_div.py`` and ``utils.get_binned_data``) bins a
numerical column with more than 20 distinct reference values into equal-width bins with
Sturges' rule over **both windows together**
(``np.histogram_bin_edges(concat(reference, current), bins="sturges")``); a column with fewer
distinct values is counted per value. Empty bins of each side are then filled with a share of
``min(non-zero share) / 10**6`` when that minimum is at most ``1e-4``, else ``1e-4`` — without
renormalising; ``scipy.stats.entropy`` normalises them — and it reports
**KL(reference ‖ current)**, the opposite direction of perfml's ``kl``.

Its edges depend on the current window, so its figures of different windows are not measured
on a common scale and cannot come from histograms made once per partition; perfml's default
binning (:mod:`perfml.drift.histograms`) avoids both. This module exists so that figures can
be checked against Evidently's to the last digit.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> round(kl_div(rng.normal(0, 1, 1000), rng.normal(0.5, 1, 1000)), 4)
0.1375
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats

from perfml.drift.histograms import Floats

DISCRETE_UP_TO = 20
"""Evidently counts a column per value when its reference has at most this many values."""


def binned_shares(reference: npt.ArrayLike, current: npt.ArrayLike) -> tuple[Floats, Floats]:
    """Evidently's ``get_binned_data`` for a numerical column: both sides' filled shares."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if np.unique(ref[~np.isnan(ref)]).size > DISCRETE_UP_TO:
        bins = np.histogram_bin_edges(np.concatenate((ref, cur)), bins="sturges")
        ref_shares = np.histogram(ref, bins)[0] / len(ref)
        cur_shares = np.histogram(cur, bins)[0] / len(cur)
    else:
        keys = np.union1d(ref[~np.isnan(ref)], cur[~np.isnan(cur)])
        ref_shares = _value_counts(ref, keys) / len(ref)
        cur_shares = _value_counts(cur, keys) / len(cur)
    return _fill_zeroes(ref_shares), _fill_zeroes(cur_shares)


def kl_div(reference: npt.ArrayLike, current: npt.ArrayLike) -> float:
    """Evidently's ``kl_div`` value: KL(reference ‖ current) of :func:`binned_shares`."""
    ref_shares, cur_shares = binned_shares(reference, current)
    return float(stats.entropy(ref_shares, cur_shares))


def _value_counts(values: Floats, keys: Floats) -> Floats:
    found, counts = np.unique(values[~np.isnan(values)], return_counts=True)
    out = np.zeros(keys.size)
    out[np.searchsorted(keys, found)] = counts
    return out


def _fill_zeroes(shares: Floats) -> Floats:
    filled = np.array(shares, dtype=np.float64)
    smallest = float(np.min(filled[filled != 0]))
    filled[filled == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return filled
