"""The drift measures against scipy and by hand, on the same smoothed distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from perfml.drift import MEASURES, BinEdges, Histogram, Measure, measure_registry
from perfml.drift.errors import EdgesMismatchError, UnknownMeasureError
from perfml.drift.measures import SMOOTHING, register, smoothed_shares, wasserstein_1d
from perfml.drift.report import compare


@pytest.fixture
def pair() -> tuple[Histogram, Histogram]:
    rng = np.random.default_rng(11)
    values = rng.gamma(2.0, 3.0, 5_000)
    edges = BinEdges.from_reference(values)
    reference = edges.histogram(values)
    current = edges.histogram(rng.gamma(3.5, 3.0, 4_000))  # moved right, some past the edge
    assert current.counts[-1] > 0
    assert reference.counts[0] == 0
    return reference, current


def test_smoothing_adds_epsilon_to_every_share_and_renormalises() -> None:
    shares = smoothed_shares(np.array([0, 3, 1]))
    expected = (np.array([0.0, 0.75, 0.25]) + SMOOTHING) / (1.0 + 3 * SMOOTHING)
    np.testing.assert_allclose(shares, expected, rtol=0, atol=1e-15)
    assert math.isclose(shares.sum(), 1.0, rel_tol=1e-15)


def test_kl_is_kl_of_current_against_reference_as_scipy_computes_it(pair) -> None:
    reference, current = pair
    p, q = smoothed_shares(reference.counts), smoothed_shares(current.counts)
    kl = MEASURES.get("kl").between(reference, current)
    assert abs(kl - stats.entropy(q, p)) < 1e-12
    assert abs(kl - stats.entropy(p, q)) > 1e-3  # the direction matters, and it is this one


def test_js_is_the_mean_kl_to_the_midpoint_in_nats(pair) -> None:
    reference, current = pair
    p, q = smoothed_shares(reference.counts), smoothed_shares(current.counts)
    m = (p + q) / 2
    expected = 0.5 * stats.entropy(p, m) + 0.5 * stats.entropy(q, m)
    js = MEASURES.get("js").between(reference, current)
    assert abs(js - expected) < 1e-12
    from scipy.spatial.distance import jensenshannon

    assert abs(js - jensenshannon(p, q) ** 2) < 1e-12  # scipy's distance is its square root
    assert 0 < js < math.log(2)


def test_psi_by_hand() -> None:
    edges = BinEdges((0.0, 1.0, 2.0))  # bins: <0, [0,1), [1,2), >=2
    reference = Histogram(edges, np.array([0, 50, 50, 0]))
    current = Histogram(edges, np.array([0, 20, 70, 10]))
    p, q = smoothed_shares(reference.counts), smoothed_shares(current.counts)
    by_hand = sum((q[i] - p[i]) * math.log(q[i] / p[i]) for i in range(4))
    assert abs(MEASURES.get("psi").between(reference, current) - by_hand) < 1e-12
    # roughly (0.2-0.5)·ln(0.4) + (0.7-0.5)·ln(1.4) + 0.1·ln(0.1/1e-6):
    assert abs(by_hand - (-0.3 * math.log(0.4) + 0.2 * math.log(1.4) + 0.1 * math.log(1e5))) < 1e-3


def test_identical_histograms_measure_zero(pair) -> None:
    reference, _ = pair
    for measure in MEASURES:
        assert measure.between(reference, reference) == pytest.approx(0.0, abs=1e-15)


def test_wasserstein_equals_scipy_on_the_bin_means(pair) -> None:
    reference, current = pair
    expected = stats.wasserstein_distance(
        reference.means(), current.means(), reference.counts, current.counts
    )
    assert abs(MEASURES.get("wasserstein").between(reference, current) - expected) < 1e-12


def test_wasserstein_of_binned_values_is_close_to_the_exact_distance() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(10, 2, 20_000), rng.normal(11, 2.5, 20_000)
    exact = stats.wasserstein_distance(a, b)
    binned = compare(a, b, ["wasserstein"], bins=50)["wasserstein"]
    assert abs(binned - exact) < 0.05 * exact  # bins of ~0.1 sd: within a few percent


def test_wasserstein_1d_matches_scipy_on_arbitrary_weighted_points() -> None:
    rng = np.random.default_rng(2)
    u, v = rng.normal(size=30), rng.normal(1, 2, size=17)
    uw, vw = rng.integers(0, 9, 30), rng.integers(1, 9, 17)
    assert abs(wasserstein_1d(u, uw, v, vw) - stats.wasserstein_distance(u, v, uw, vw)) < 1e-12


def test_measuring_histograms_of_different_edges_is_refused() -> None:
    one = BinEdges.from_reference([1.0, 2.0, 3.0]).histogram([1.0])
    other = BinEdges.from_reference([1.0, 5.0]).histogram([1.0])
    with pytest.raises(EdgesMismatchError):
        MEASURES.get("kl").between(one, other)


def test_an_unknown_measure_names_the_known_ones() -> None:
    with pytest.raises(UnknownMeasureError, match="'hellinger'.*js, kl, psi, wasserstein"):
        MEASURES.get("hellinger")


def test_a_fresh_registry_takes_a_plugin_measure() -> None:
    registry = measure_registry()

    class TotalVariation(Measure):
        name = "tv"
        description = "total variation distance"
        threshold = 0.2

        def compute(self, reference: Histogram, current: Histogram) -> float:
            p = reference.counts / reference.total
            q = current.counts / current.total
            return float(np.abs(p - q).sum() / 2)

    register(TotalVariation, registry)
    assert registry.names() == ["tv"]
    assert "kl" not in registry
    result = compare([1.0, 2.0, 3.0, 4.0], [4.0, 4.0, 4.0, 4.0], ["tv"], measures=registry)
    assert result == {"tv": 0.75}  # each value has its bin now
