"""Histograms with bin edges fixed from the reference window, mergeable across partitions.

Drift compares each window's distribution of a feature with the reference's, bin by bin, so
every window of a feature is binned with the *same* edges: those of the reference window. The
edges are its quantiles (20 bins by default) taken as reference values — the value at rank
``floor(q · (n - 1))`` of the sorted reference for ``q = 0, 1/20, …, 1`` — then deduplicated,
so a discrete feature (a handful of distinct values) gets one bin per value rather than twenty
empty ones; a last edge one ulp above the reference maximum closes the last bin (the maximum
value's own). Two open bins hold what the reference never saw: ``(-inf, first edge)`` and
``[last edge, +inf)``. With ``k`` edges there are ``k + 1`` bins; a value ``v`` lands in
bin ``searchsorted(edges, v, side="right")``: bin ``i`` (``1 <= i < k``) is
``[edges[i-1], edges[i])``.

A :class:`Histogram` keeps counts and the sum of the values per bin; both add, so histograms of
the partitions of a window (months of the feature store, shards of entities) merge into the
histogram of the whole. The store's histograms are computed by :mod:`perfml.drift.scan`.

>>> edges = BinEdges.from_reference(np.arange(100.0), bins=4)
>>> edges.values
(0.0, 24.0, 49.0, 74.0, 99.0, 99.00000000000001)
>>> h = edges.histogram(np.array([-5.0, 0.0, 30.0, 98.0, 99.0, 150.0]))
>>> h.counts.tolist()  # below the reference, [0, 24), [24, 49), [49, 74), [74, 99), 99, above
[1, 1, 1, 0, 1, 1, 1]
>>> h.merge(h).counts.tolist()
[2, 2, 2, 0, 2, 2, 2]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt

from perfml.drift.errors import BadDriftRequestError, EdgesMismatchError, EmptyReferenceError

DEFAULT_BINS = 20
"""Quantile bins of the reference window (before deduplication), besides the two open bins."""

Floats = npt.NDArray[np.float64]
Counts = npt.NDArray[np.int64]


def quantile_positions(count: int, bins: int = DEFAULT_BINS) -> npt.NDArray[np.int64]:
    """Ranks (0-based, in the sorted reference) of the values that become edges.

    >>> quantile_positions(101, 4).tolist()
    [0, 25, 50, 75, 100]
    """
    if bins < 1:
        raise BadDriftRequestError("bins", bins, "at least 1")
    q = np.linspace(0.0, 1.0, bins + 1)
    return np.floor(q * (count - 1)).astype(np.int64)


@dataclass(frozen=True)
class BinEdges:
    """The fixed, increasing edges of a feature's bins (see the module's docstring)."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        array = np.asarray(self.values, dtype=np.float64)
        if array.size == 0 or not np.all(np.isfinite(array)) or np.any(np.diff(array) <= 0):
            raise BadDriftRequestError(
                "bin edges", self.values, "finite values in strictly increasing order"
            )

    @classmethod
    def from_reference(cls, values: npt.ArrayLike, bins: int = DEFAULT_BINS) -> BinEdges:
        """Edges from the reference window's values (non-finite values are ignored)."""
        data = np.asarray(values, dtype=np.float64)
        data = np.sort(data[np.isfinite(data)])
        if data.size == 0:
            raise EmptyReferenceError("the feature", "given")
        return cls.from_sorted_picks(data[quantile_positions(data.size, bins)])

    @classmethod
    def from_sorted_picks(cls, picks: npt.ArrayLike) -> BinEdges:
        """Edges from the reference values at :func:`quantile_positions` (sorted)."""
        unique = np.unique(np.asarray(picks, dtype=np.float64))
        edges = np.append(unique, np.nextafter(unique[-1], np.inf))
        return cls(tuple(float(v) for v in edges))

    @cached_property
    def array(self) -> Floats:
        return np.asarray(self.values, dtype=np.float64)

    @property
    def bins(self) -> int:
        """Bins, the two open ones included."""
        return len(self.values) + 1

    def index(self, values: npt.ArrayLike) -> npt.NDArray[np.intp]:
        """The bin of each value."""
        return np.searchsorted(self.array, np.asarray(values, dtype=np.float64), side="right")

    def histogram(self, values: npt.ArrayLike) -> Histogram:
        """The histogram of ``values`` (non-finite values are ignored)."""
        data = np.asarray(values, dtype=np.float64)
        return self.histogram_of_sorted(np.sort(data[np.isfinite(data)]))

    def histogram_of_sorted(self, data: Floats) -> Histogram:
        """:meth:`histogram` of finite values sorted already (no pass over each value)."""
        cuts = np.concatenate(([0], np.searchsorted(data, self.array, side="left"), [data.size]))
        running = np.concatenate(([0.0], np.cumsum(data)))
        return Histogram(self, np.diff(cuts).astype(np.int64), np.diff(running[cuts]))


@dataclass(frozen=True)
class Histogram:
    """Counts and sums of values per bin of ``edges``; histograms of one feature's windows or
    partitions with the same edges :meth:`merge` by adding them."""

    edges: BinEdges
    counts: Counts
    sums: Floats = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        counts = np.asarray(self.counts, dtype=np.int64)
        sums = np.asarray(self.sums, dtype=np.float64)
        if sums.size == 0:
            sums = np.zeros(counts.size)
        if counts.shape != (self.edges.bins,) or sums.shape != counts.shape:
            raise BadDriftRequestError(
                "histogram counts", counts.shape, f"{self.edges.bins} bins for these edges"
            )
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "sums", sums)

    @classmethod
    def empty(cls, edges: BinEdges) -> Histogram:
        return cls(edges, np.zeros(edges.bins, dtype=np.int64), np.zeros(edges.bins))

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def merge(self, other: Histogram) -> Histogram:
        """The histogram of both sets of values."""
        if other.edges != self.edges:
            raise EdgesMismatchError(len(self.edges.values), len(other.edges.values))
        return Histogram(self.edges, self.counts + other.counts, self.sums + other.sums)

    def means(self) -> Floats:
        """The mean value of each bin; an empty bin's middle (its edge for an open bin)."""
        e = self.edges.array
        lower = np.concatenate(([e[0]], e))
        upper = np.concatenate((e, [e[-1]]))
        middle = (lower + upper) / 2.0
        with np.errstate(invalid="ignore", divide="ignore"):
            found = self.sums / self.counts
        return np.where(self.counts > 0, found, middle)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Histogram)
            and other.edges == self.edges
            and np.array_equal(other.counts, self.counts)
            and np.allclose(other.sums, self.sums, rtol=1e-12, atol=1e-9)
        )

    __hash__ = None  # type: ignore[assignment]


def merge_all(parts: Iterable[Histogram], edges: BinEdges) -> Histogram:
    """The sum of ``parts`` (an empty histogram for none)."""
    total = Histogram.empty(edges)
    for part in parts:
        total = total.merge(part)
    return total
