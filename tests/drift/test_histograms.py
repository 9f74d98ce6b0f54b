"""Histograms: fixed reference edges, open bins, and DuckDB's per-partition scan against NumPy."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from perfml.drift import (
    BinEdges,
    Histogram,
    between,
    calendar_windows,
    partition_histograms,
    reference_edges,
    window_histograms,
)
from perfml.drift.errors import BadDriftRequestError, EdgesMismatchError, EmptyReferenceError
from perfml.drift.histograms import merge_all
from perfml.drift.scan import merge_partitions
from perfml.featurestore import FeatureStore

START_MS = round(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
STEP_MS = 3_600_000


def test_edges_are_reference_quantiles_and_collapse_for_discrete_data() -> None:
    values = np.arange(1.0, 1001.0)
    edges = BinEdges.from_reference(values)
    assert edges.bins == 23  # 20 quantile bins, the maximum's, and the two open ones
    assert edges.values[:3] == (1.0, 50.0, 100.0)
    discrete = BinEdges.from_reference([3.0, 1.0, 2.0, 2.0, 1.0] * 100)
    assert discrete.values[:3] == (1.0, 2.0, 3.0)
    assert len(discrete.values) == 4
    counts = discrete.histogram([1.0, 2.0, 2.0, 3.0]).counts.tolist()
    assert counts == [0, 1, 2, 1, 0]  # one bin per value, nothing in the open bins
    constant = BinEdges.from_reference([7.0] * 10)
    assert constant.histogram([7.0, 7.0, 6.0, 8.0]).counts.tolist() == [1, 2, 1]  # <7, 7, >7


def test_open_bins_catch_values_outside_the_reference_range() -> None:
    edges = BinEdges.from_reference(np.linspace(0.0, 10.0, 101), bins=5)
    found = edges.histogram([-1e9, -0.001, 0.0, 10.0, 10.0000001, np.inf, np.nan])
    assert found.counts[0] == 2
    assert found.counts[-1] == 1
    assert found.counts[1] == 1
    assert found.counts[-2] == 1
    assert found.total == 5


def test_histograms_merge_by_adding_and_refuse_other_edges() -> None:
    rng = np.random.default_rng(3)
    values = rng.lognormal(size=9_000)
    edges = BinEdges.from_reference(values[:3_000])
    parts = [edges.histogram(chunk) for chunk in np.array_split(values, 7)]
    assert merge_all(parts, edges) == edges.histogram(values)
    with pytest.raises(EdgesMismatchError):
        parts[0].merge(BinEdges.from_reference([0.0, 1.0]).histogram([0.5]))
    with pytest.raises(BadDriftRequestError):
        Histogram(edges, np.zeros(3, dtype=np.int64))
    with pytest.raises(BadDriftRequestError):
        BinEdges((1.0, 1.0))
    with pytest.raises(EmptyReferenceError):
        BinEdges.from_reference([np.nan])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[FeatureStore, pa.Table]:
    """Three months of hourly points, two metrics, five hosts (one discrete metric)."""
    rng = np.random.default_rng(8)
    hours = 24 * (31 + 29 + 31)
    ts = START_MS + STEP_MS * np.arange(hours, dtype=np.int64)
    tables = []
    for entity in range(5):
        drift = np.where(ts >= START_MS + 60 * 86_400_000, 15.0, 0.0)
        for metric, values in (
            ("cpu_util", np.round(rng.normal(40 + entity, 5, hours) + drift, 2)),
            ("restarts", rng.poisson(1.0 + entity / 5, hours).astype(float)),
        ):
            tables.append(
                pa.table(
                    {
                        "metric": [metric] * hours,
                        "entity": [f"host-{entity}"] * hours,
                        "ts": pa.array(ts).cast(pa.timestamp("ms", tz="UTC")),
                        "value": values,
                    }
                )
            )
    points = pa.concat_tables(tables)
    fs = FeatureStore(tmp_path_factory.mktemp("store"))
    fs.write(points)
    return fs, points


def _values(
    points: pa.Table, metric: str, lo: int, hi: int, entity: str | None = None
) -> np.ndarray:
    ts = points.column("ts").cast(pa.int64()).to_numpy()
    keep = (np.asarray(points.column("metric").to_pylist()) == metric) & (ts >= lo) & (ts < hi)
    if entity is not None:
        keep &= np.asarray(points.column("entity").to_pylist()) == entity
    return points.column("value").to_numpy()[keep]


def test_duckdb_histograms_equal_numpy_histograms_of_the_same_values(store) -> None:
    fs, points = store
    reference = between("2024-01-01", "2024-02-01")
    edges = reference_edges(fs, reference)
    assert sorted(edges) == [("cpu_util", None), ("restarts", None)]
    windows = calendar_windows("2024-01-01", "2024-04-01", "weekly")  # weeks span months
    found = window_histograms(fs, edges, windows)
    for metric in ("cpu_util", "restarts"):
        ref_values = _values(points, metric, reference.start, reference.end)
        assert edges[(metric, None)] == BinEdges.from_reference(ref_values)
        for window in windows:
            expected = edges[(metric, None)].histogram(
                _values(points, metric, window.start, window.end)
            )
            assert found[((metric, None), window.label)] == expected, (metric, window.label)


def test_per_entity_edges_and_histograms(store) -> None:
    fs, points = store
    reference = between("2024-01-01", "2024-02-01")
    edges = reference_edges(fs, reference, ["cpu_util"], per_entity=True, bins=10)
    assert sorted(edges) == [("cpu_util", f"host-{i}") for i in range(5)]
    march = calendar_windows("2024-03-01", "2024-04-01")
    found = window_histograms(fs, edges, march)
    for (metric, entity), edge in edges.items():
        values = _values(points, metric, march[0].start, march[0].end, entity)
        assert found[((metric, entity), "2024-03")] == edge.histogram(values)


def test_partition_histograms_merge_into_the_whole_and_shards_too(store) -> None:
    fs, points = store
    edges = reference_edges(fs, between("2024-01-01", "2024-03-01"))
    whole = between("2024-01-15", "2024-03-20", label="span")
    parts = partition_histograms(fs, edges, [whole])
    assert sorted({month for (_, _, month) in parts}) == ["2024-01", "2024-02", "2024-03"]
    merged = merge_partitions(parts)
    expected = edges[("cpu_util", None)].histogram(
        _values(points, "cpu_util", whole.start, whole.end)
    )
    assert merged[(("cpu_util", None), "span")] == expected
    shards = [partition_histograms(fs, edges, [whole], shard=(i, 3)) for i in range(3)]
    assert sum(len(s) for s in shards) > len(parts)  # each shard has its own partials
    combined = merge_partitions(item for shard in shards for item in shard.items())
    assert combined == merged


def test_an_empty_selection_gives_no_histogram(store) -> None:
    fs, _ = store
    nothing = between("2030-01-01", "2030-02-01")
    assert reference_edges(fs, nothing) == {}
    edges = {("cpu_util", None): BinEdges((0.0, 1.0))}
    assert window_histograms(fs, edges, [nothing]) == {}
    assert (
        window_histograms(FeatureStore(Path("/nonexistent-perfml-store")), edges, [nothing]) == {}
    )


def test_overlapping_windows_give_each_point_to_the_earlier_one() -> None:
    from perfml.drift.scan import _segments
    from perfml.drift.windows import Window

    windows = [
        Window(0, 10, "a"),
        Window(2, 5, "inside a"),
        Window(5, 20, "b"),
        Window(30, 40, "c"),
    ]
    segments = _segments(sorted(windows)).to_pylist()
    assert segments == [
        {"start": 0, "stop": 10, "number": 0},
        {"start": 10, "stop": 20, "number": 2},
        {"start": 30, "stop": 40, "number": 3},
    ]
