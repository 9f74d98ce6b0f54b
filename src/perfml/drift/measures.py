"""Drift measures: how far a window's histogram of a feature is from the reference's.

A measure is a :class:`Measure` subclass registered by name in a :class:`MeasureRegistry`
(``MEASURES`` is the default one; pass your own to every function that takes one). The
built-in measures, with ``q`` the current window's shares and ``p`` the reference's, both
smoothed (see :func:`smoothed_shares`), natural logarithms throughout:

- ``kl`` — Kullback–Leibler divergence **KL(current ‖ reference)** = ``Σ q ln(q / p)``: the
  information lost when the current window is described by the reference the model learnt. It
  weighs the bins where the current data *is*, so new behaviour (mass where the reference had
  little) counts fully. Threshold 0.1, the threshold of ``FeatureDriftHigh``.
- ``psi`` — Population Stability Index ``Σ (q - p) ln(q / p)`` = KL(q ‖ p) + KL(p ‖ q),
  symmetric. Threshold 0.2 (the industry's "significant shift" lies between 0.1 and 0.25).
- ``js`` — Jensen–Shannon divergence ``½ KL(p ‖ m) + ½ KL(q ‖ m)``, ``m = (p + q) / 2``, in
  nats (natural log, so it lies in ``[0, ln 2]``; divide by ``ln 2`` for bits). For a small
  shift it is about a quarter of KL, hence its threshold 0.025.
- ``wasserstein`` — the 1-D earth mover's distance in the feature's own unit, computed from the
  **binned** distributions: each bin's mass sits at the mean of that window's values in it (an
  open bin's mass at its values' mean too, so out-of-range values count at their distance).
  It equals ``scipy.stats.wasserstein_distance`` of the bin means weighted by the counts, and
  approaches the exact distance of the values as bins narrow. No threshold: its scale is the
  feature's unit.

Smoothing: an empty bin would make ``ln(q / p)`` infinite, so every share gets ``ε = 1e-6``
added and the shares are renormalised to sum to 1 — the same on both sides, once, for every
log-based measure.

>>> from perfml.drift.histograms import BinEdges
>>> edges = BinEdges.from_reference([1.0, 2.0, 3.0, 4.0], bins=4)
>>> same = edges.histogram([1.0, 2.0, 3.0, 4.0])
>>> MEASURES.get("kl").between(same, same)
0.0
>>> moved = edges.histogram([4.0, 4.0, 4.0, 4.0])  # all in the bin that held a quarter
>>> round(MEASURES.get("kl").between(same, moved), 4)  # ln(1 / 0.25)
1.3862
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, TypeVar

import numpy as np

from perfml.drift.errors import EdgesMismatchError, MeasureTakenError, UnknownMeasureError
from perfml.drift.histograms import Counts, Floats, Histogram
from perfml.plugins import Registry

SMOOTHING = 1e-6
"""The share every bin gets added before renormalising (see the module's docstring)."""


def smoothed_shares(counts: Counts | Floats, epsilon: float = SMOOTHING) -> Floats:
    """Shares of ``counts`` with ``epsilon`` added to each and renormalised to sum to 1.

    >>> smoothed_shares(np.array([0, 1]), epsilon=0.5).tolist()
    [0.25, 0.75]
    """
    total = float(np.sum(counts))
    shares = np.asarray(counts, dtype=np.float64) / total if total else np.zeros(len(counts))
    shares = shares + epsilon
    result: Floats = shares / shares.sum()
    return result


def kl_divergence(q: Floats, p: Floats) -> float:
    """``Σ q ln(q / p)`` of shares (no zero in ``p`` where ``q`` is positive)."""
    mask = q > 0
    return float(np.sum(q[mask] * np.log(q[mask] / p[mask])))


class Measure(ABC):
    """One way of measuring drift between a reference and a current histogram."""

    name: ClassVar[str]
    description: ClassVar[str]
    threshold: ClassVar[float | None]
    """The value over which a feature is said to have drifted (None: no universal scale)."""

    def between(self, reference: Histogram, current: Histogram) -> float:
        """The measure of ``current`` against ``reference`` (binned with the same edges)."""
        if reference.edges != current.edges:
            raise EdgesMismatchError(len(reference.edges.values), len(current.edges.values))
        return self.compute(reference, current)

    @abstractmethod
    def compute(self, reference: Histogram, current: Histogram) -> float:
        """:meth:`between`, once the edges are known to agree."""


class ShareMeasure(Measure):
    """A measure of the smoothed shares of the two histograms."""

    def compute(self, reference: Histogram, current: Histogram) -> float:
        return self.of_shares(smoothed_shares(reference.counts), smoothed_shares(current.counts))

    @abstractmethod
    def of_shares(self, p: Floats, q: Floats) -> float:
        """The measure of current shares ``q`` against reference shares ``p``."""


M = TypeVar("M", bound=type[Measure])


MeasureRegistry = Registry[Measure]
"""Drift measures by name: one instance of each."""


def measure_registry() -> MeasureRegistry:
    """A fresh, empty registry of measures (a test's or a plugin's own)."""
    return Registry("drift measure", unknown=UnknownMeasureError, taken=MeasureTakenError)


MEASURES: MeasureRegistry = measure_registry()
"""The built-in measures, in the order reports show them."""


def register(cls: M, registry: MeasureRegistry | None = None) -> M:
    """Class decorator: add an instance of ``cls`` under ``cls.name`` (to :data:`MEASURES`
    unless told otherwise)."""
    (MEASURES if registry is None else registry).add(cls.name, cls())
    return cls


def thresholds(measures: MeasureRegistry) -> dict[str, float | None]:
    """Each measure's default threshold (None: it has none), by name."""
    return {found.name: found.threshold for found in measures}


@register
class KullbackLeibler(ShareMeasure):
    name = "kl"
    description = "Kullback–Leibler divergence KL(current ‖ reference), nats"
    threshold = 0.1

    def of_shares(self, p: Floats, q: Floats) -> float:
        return kl_divergence(q, p)


@register
class PopulationStability(ShareMeasure):
    name = "psi"
    description = "Population Stability Index Σ (q − p) ln(q / p)"
    threshold = 0.2

    def of_shares(self, p: Floats, q: Floats) -> float:
        return float(np.sum((q - p) * np.log(q / p)))


@register
class JensenShannon(ShareMeasure):
    name = "js"
    description = "Jensen–Shannon divergence, nats (at most ln 2)"
    threshold = 0.025

    def of_shares(self, p: Floats, q: Floats) -> float:
        m = (p + q) / 2.0
        return 0.5 * kl_divergence(p, m) + 0.5 * kl_divergence(q, m)


@register
class Wasserstein(Measure):
    name = "wasserstein"
    description = "1-D earth mover's distance of the binned distributions, feature's unit"
    threshold = None

    def compute(self, reference: Histogram, current: Histogram) -> float:
        return wasserstein_1d(reference.means(), reference.counts, current.means(), current.counts)


def wasserstein_1d(
    u_values: Floats, u_weights: Counts | Floats, v_values: Floats, v_weights: Counts | Floats
) -> float:
    """``∫ |U(x) - V(x)| dx`` of two weighted point sets (``scipy.stats.wasserstein_distance``).

    >>> wasserstein_1d(np.array([0.0]), np.array([1]), np.array([3.0]), np.array([1]))
    3.0
    """
    u_w = np.asarray(u_weights, dtype=np.float64)
    v_w = np.asarray(v_weights, dtype=np.float64)
    if u_w.sum() == 0 or v_w.sum() == 0:
        return float("nan")
    points = np.concatenate((u_values, v_values))
    order = np.argsort(points, kind="stable")
    ordered = points[order]
    mass_u = np.concatenate((u_w / u_w.sum(), np.zeros(v_w.size)))[order]
    mass_v = np.concatenate((np.zeros(u_w.size), v_w / v_w.sum()))[order]
    gaps = np.diff(ordered)
    cdf_gap = np.abs(np.cumsum(mass_u)[:-1] - np.cumsum(mass_v)[:-1])
    return float(np.sum(cdf_gap * gaps))
