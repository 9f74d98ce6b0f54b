"""The drift of a feature store: every feature, every window after the reference, every measure.

:func:`drift_report` fixes each feature's bin edges on the reference window, bins every later
window of the store with them in one scan (:mod:`perfml.drift.scan`) and measures each window
against the reference with each measure asked for. A feature is a metric over the whole fleet
or, with ``per_entity=True``, each entity's series of it. The result is plain records
(:class:`DriftRecord`) and the same as an Arrow table or a pandas frame.

:func:`compare` measures two arrays of values the same way, in memory.

>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> same = compare(rng.normal(0, 1, 10_000), rng.normal(0, 1, 10_000))
>>> bool(same["kl"] < 0.01)
True
>>> moved = compare(rng.normal(0, 1, 10_000), rng.normal(1, 1, 10_000))
>>> bool(moved["kl"] > DEFAULT_THRESHOLDS["kl"])
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from perfml.drift import evidently
from perfml.drift.errors import BadDriftRequestError, EmptyReferenceError
from perfml.drift.histograms import DEFAULT_BINS, BinEdges, Histogram
from perfml.drift.measures import MEASURES, MeasureRegistry, ShareMeasure, thresholds
from perfml.drift.scan import FeatureKey, Shard, feature_name, reference_edges, window_histograms
from perfml.drift.windows import DEFAULT_EVERY, Window, calendar_windows
from perfml.featurestore import FeatureStore

DEFAULT_METHODS = ("kl", "psi", "js", "wasserstein")
DEFAULT_THRESHOLDS: dict[str, float | None] = thresholds(MEASURES)
"""Over these a feature has drifted: ``kl`` 0.1 (the ``FeatureDriftHigh`` rule), ``psi`` 0.2,
``js`` 0.025; ``wasserstein`` has none (its scale is the feature's unit)."""
BINNINGS = ("quantile", "evidently")

RECORD_SCHEMA = pa.schema(
    [
        ("feature", pa.string()),
        ("entity", pa.string()),
        ("window", pa.string()),
        ("start", pa.timestamp("ms", tz="UTC")),
        ("end", pa.timestamp("ms", tz="UTC")),
        ("method", pa.string()),
        ("value", pa.float64()),
        ("threshold", pa.float64()),
        ("drifted", pa.bool_()),
        ("points", pa.int64()),
        ("reference_points", pa.int64()),
    ]
)


@dataclass(frozen=True)
class DriftRecord:
    """One measure of one feature in one window against the reference."""

    feature: str
    entity: str | None
    window: str
    start: datetime
    end: datetime
    method: str
    value: float
    threshold: float | None
    points: int
    reference_points: int

    @property
    def drifted(self) -> bool:
        return self.threshold is not None and self.value > self.threshold

    def to_json(self) -> dict[str, Any]:
        found = asdict(self)
        found.update(
            start=self.start.isoformat(),
            end=self.end.isoformat(),
            value=None if math.isnan(self.value) else self.value,
            drifted=self.drifted,
        )
        return found


@dataclass(frozen=True)
class DriftReport:
    """The drift of every feature in every window after ``reference``."""

    reference: Window
    windows: tuple[Window, ...]
    methods: tuple[str, ...]
    records: tuple[DriftRecord, ...]
    model: str | None = None
    """The model version whose training window is the reference (``name:version``), if so."""

    @property
    def latest_window(self) -> Window | None:
        return self.windows[-1] if self.windows else None

    def latest(self, method: str = "kl") -> dict[str, float]:
        """Each fleet-wide feature's ``method`` value in the latest window."""
        last = self.latest_window
        return {
            r.feature: r.value
            for r in self.records
            if last is not None and r.window == last.label and r.method == method
            if r.entity is None
        }

    def drifted(self) -> list[DriftRecord]:
        """The records over their threshold."""
        return [r for r in self.records if r.drifted]

    def value(
        self, feature: str, window: str, method: str = "kl", entity: str | None = None
    ) -> float:
        """One figure; NaN when the feature has no point in the window."""
        for r in self.records:
            if (r.feature, r.entity, r.window, r.method) == (feature, entity, window, method):
                return r.value
        return math.nan

    def to_arrow(self) -> pa.Table:
        rows = [asdict(r) | {"drifted": r.drifted} for r in self.records]
        return pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)

    def to_pandas(self) -> pd.DataFrame:
        frame: pd.DataFrame = self.to_arrow().to_pandas()
        return frame

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": {
                "label": self.reference.label,
                "start": self.reference.start_time.isoformat(),
                "end": self.reference.end_time.isoformat(),
            },
            "model": self.model,
            "windows": [w.label for w in self.windows],
            "methods": list(self.methods),
            "records": [r.to_json() for r in self.records],
        }


def drift_report(
    store: FeatureStore,
    reference: Window,
    *,
    every: str = DEFAULT_EVERY,
    methods: Sequence[str] = DEFAULT_METHODS,
    metrics: Sequence[str] | None = None,
    per_entity: bool = False,
    bins: int = DEFAULT_BINS,
    end: datetime | None = None,
    thresholds: Mapping[str, float | None] | None = None,
    measures: MeasureRegistry = MEASURES,
    shard: Shard | None = None,
    model: str | None = None,
) -> DriftReport:
    """Measure every feature of ``store`` in each ``every`` window after ``reference``.

    Windows run from the end of the reference to ``end`` (default: just after the store's
    last point). A feature with no point in the reference raises
    :class:`~perfml.drift.errors.EmptyReferenceError` when it was asked for by name, and is
    left out otherwise; a window without a point of a feature gets NaN.
    """
    chosen = [measures.get(name) for name in methods]
    limits = {m.name: m.threshold for m in chosen} | dict(thresholds or {})
    edges = reference_edges(
        store, reference, metrics, per_entity=per_entity, bins=bins, shard=shard
    )
    for metric in metrics or ():
        if not any(key[0] == metric for key in edges):
            raise EmptyReferenceError(metric, reference.label)
    windows = windows_after(store, reference, every, end, {key[0] for key in edges})
    histograms = window_histograms(store, edges, [reference, *windows], shard=shard)
    records = []
    for key in sorted(edges, key=lambda k: (k[0], k[1] or "")):
        base = histograms.get((key, reference.label), Histogram.empty(edges[key]))
        for window in windows:
            current = histograms.get((key, window.label))
            for measure in chosen:
                value = math.nan if current is None else measure.between(base, current)
                records.append(
                    DriftRecord(
                        feature=key[0],
                        entity=key[1],
                        window=window.label,
                        start=window.start_time,
                        end=window.end_time,
                        method=measure.name,
                        value=value,
                        threshold=limits.get(measure.name),
                        points=0 if current is None else current.total,
                        reference_points=base.total,
                    )
                )
    return DriftReport(reference, tuple(windows), tuple(methods), tuple(records), model)


def compare(
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    methods: Sequence[str] = DEFAULT_METHODS,
    *,
    bins: int = DEFAULT_BINS,
    binning: str = "quantile",
    measures: MeasureRegistry = MEASURES,
) -> dict[str, float]:
    """Each measure of ``current`` values against ``reference`` values.

    ``binning="quantile"`` (default) is perfml's: edges from the reference's quantiles.
    ``binning="evidently"`` bins as Evidently does (:mod:`perfml.drift.evidently`) and then
    ``kl`` is Evidently's KL(reference ‖ current), equal to its ``kl_div``; the share measures
    (``psi``, ``js``) use the same shares; ``wasserstein`` needs perfml's binning.
    """
    if binning not in BINNINGS:
        raise BadDriftRequestError("binning", binning, " or ".join(BINNINGS))
    chosen = [measures.get(name) for name in methods]
    if binning == "evidently":
        p, q = evidently.binned_shares(reference, current)
        found = {}
        for measure in chosen:
            if measure.name == "kl":
                found["kl"] = evidently.kl_div(reference, current)
            elif isinstance(measure, ShareMeasure):
                found[measure.name] = measure.of_shares(p / p.sum(), q / q.sum())
            else:
                raise BadDriftRequestError("measure", measure.name, "a share measure here")
        return found
    ref_sorted = _sorted_finite(reference)
    if ref_sorted.size == 0:
        raise EmptyReferenceError("the feature", "given")
    edges = BinEdges.from_sorted_picks(
        ref_sorted[np.floor(np.linspace(0.0, 1.0, bins + 1) * (ref_sorted.size - 1)).astype(int)]
    )
    base = edges.histogram_of_sorted(ref_sorted)
    now = edges.histogram_of_sorted(_sorted_finite(current))
    return {measure.name: measure.between(base, now) for measure in chosen}


def _sorted_finite(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    data = np.asarray(values, dtype=np.float64)
    finite = data if np.all(np.isfinite(data)) else data[np.isfinite(data)]
    return np.sort(finite)


def windows_after(
    store: FeatureStore,
    reference: Window,
    every: str,
    end: datetime | None,
    metrics: Iterable[str] | None = None,
) -> list[Window]:
    """The windows of kind ``every`` after ``reference`` up to ``end`` (default: just after
    the last point of ``metrics`` — of any metric when None: other series, perfml's own
    metrics recorded today say, do not stretch the windows of the features measured)."""
    if end is None:
        chosen = None if metrics is None else set(metrics)
        ends = [f.max_ts for f in store.manifest.files if chosen is None or f.metric in chosen]
        if not ends or max(ends) < reference.end:
            return []
        end = datetime.fromtimestamp(max(ends) / 1000, tz=UTC) + timedelta(milliseconds=1)
    if end <= reference.end_time:
        return []
    found = calendar_windows(reference.end_time, end, every)
    return [w for w in found if w.end > reference.end and w.label != reference.label]


def feature_keys(report: DriftReport) -> list[FeatureKey]:
    """The features of a report, in its order."""
    return list(dict.fromkeys((r.feature, r.entity) for r in report.records))


__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_THRESHOLDS",
    "DriftRecord",
    "DriftReport",
    "compare",
    "drift_report",
    "feature_keys",
    "feature_name",
]
