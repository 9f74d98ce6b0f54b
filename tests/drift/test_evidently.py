"""Evidently's KL, reproduced: Sturges bins over both windows, its zero filling, KL(ref ‖ cur).

The benchmark (benchmarks/drift.py) checks the figures against Evidently itself to 1e-9; here
the rules are checked by hand.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from perfml.drift import compare
from perfml.drift.evidently import binned_shares, kl_div


def test_numeric_columns_use_sturges_edges_over_both_windows() -> None:
    reference = np.arange(100.0)  # 100 distinct values: numeric binning
    current = np.arange(50.0, 150.0)
    ref_shares, cur_shares = binned_shares(reference, current)
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
    assert len(edges) - 1 == math.ceil(math.log2(200)) + 1 == len(ref_shares)
    counted = np.histogram(reference, edges)[0] / 100
    # empty shares get 1e-4 (the smallest share, 1/9 or so, is above 1e-4); no renormalising
    assert np.array_equal(ref_shares, np.where(counted == 0, 1e-4, counted))
    assert abs(kl_div(reference, current) - stats.entropy(ref_shares, cur_shares)) < 1e-15


def test_tiny_shares_make_the_fill_a_millionth_of_the_smallest() -> None:
    rng = np.random.default_rng(0)
    reference = np.concatenate([rng.normal(size=20_000), [40.0]])  # one share of 1/20001
    current = rng.normal(size=20_000)
    ref_shares, _ = binned_shares(reference, current)
    smallest = 1 / 20_001
    assert smallest <= 1e-4
    assert np.min(ref_shares) == smallest / 10**6


def test_few_distinct_values_are_counted_per_value() -> None:
    reference = np.array([1.0, 1.0, 2.0, 3.0])
    current = np.array([1.0, 4.0, 4.0, 4.0])
    ref_shares, cur_shares = binned_shares(reference, current)  # keys 1, 2, 3, 4
    assert ref_shares.tolist() == [0.5, 0.25, 0.25, 1e-4]
    assert cur_shares.tolist() == [0.25, 1e-4, 1e-4, 0.75]


def test_compare_with_evidently_binning_reports_its_direction() -> None:
    rng = np.random.default_rng(1)
    reference, current = rng.normal(size=5_000), rng.normal(0.3, 1.2, size=5_000)
    found = compare(reference, current, ["kl", "js"], binning="evidently")
    assert found["kl"] == kl_div(reference, current)
    p, q = binned_shares(reference, current)
    p, q = p / p.sum(), q / q.sum()
    assert abs(found["kl"] - stats.entropy(p, q)) < 1e-12  # KL(reference ‖ current)
    assert (
        abs(found["js"] - (stats.entropy(p, (p + q) / 2) + stats.entropy(q, (p + q) / 2)) / 2)
        < 1e-12
    )
