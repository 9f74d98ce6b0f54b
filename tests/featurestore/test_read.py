"""Reads: selection, as-of, resampling, alignment, window features, streaming."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fixtures.points import START, make_points, rows
from perfml.featurestore import FeatureStore
from perfml.featurestore.errors import BadQueryError
from perfml.featurestore.schema import READ_SCHEMA

DAYS = 3
N = DAYS * 288  # 5-minute points


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[FeatureStore, pa.Table]:
    store = FeatureStore(Path(tmp_path_factory.mktemp("store")), memory_limit="512MB")
    points = make_points(["cpu_util", "mem_util"], ["h1", "h2", "h3"], n=N, seed=4)
    # a second month for partition pruning
    points = pa.concat_tables(
        [points, make_points(["cpu_util"], ["h1"], n=10, start=datetime(2024, 3, 5, tzinfo=UTC))]
    )
    store.write(points)
    return store, points


def frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas()


def test_read_filters_by_metric_entity_and_half_open_time_range(filled):
    store, points = filled
    start, end = START + timedelta(hours=5), START + timedelta(hours=7)
    got = store.read(metrics=["mem_util"], entities=["h2", "h3"], start=start, end=end)
    df = frame(points)
    want = df[
        (df.metric == "mem_util")
        & df.entity.isin(["h2", "h3"])
        & (df.ts >= pd.Timestamp(start))
        & (df.ts < pd.Timestamp(end))
    ]
    assert got.schema == READ_SCHEMA
    assert rows(got) == rows(pa.Table.from_pandas(want, preserve_index=False))
    assert got.num_rows == 2 * 24


def test_read_as_of_never_returns_a_later_point(filled):
    store, _ = filled
    as_of = START + timedelta(days=1, minutes=7)
    got = store.read(as_of=as_of)
    assert got.num_rows > 0
    assert max(got.column("ts").to_pylist()) <= as_of
    assert max(got.column("ts").to_pylist()) == START + timedelta(days=1, minutes=5)


def test_partition_pruning_skips_months_outside_the_range(filled):
    from perfml.featurestore.query import Selection

    store, _ = filled
    selection = Selection.of(start="2024-03-01")
    assert {f.month for f in selection.files(store.manifest)} == {"2024-03"}
    assert store.read(start="2024-03-01").num_rows == 10


def test_empty_selection_returns_an_empty_table_of_the_right_shape(filled):
    store, _ = filled
    assert store.read(metrics=["nothing"]).schema == READ_SCHEMA
    assert store.read(metrics=["nothing"]).num_rows == 0
    features = store.window_features("5m", metrics=["nothing"])
    assert features.num_rows == 0
    assert "mean_1h" in features.column_names


@pytest.mark.parametrize("agg", ["mean", "min", "max", "sum", "count", "first", "last", "p95"])
def test_resample_matches_pandas(filled, agg):
    store, points = filled
    got = frame(store.resample("1h", agg, metrics="cpu_util", end=START + timedelta(days=DAYS)))
    df = frame(points)
    df = df[(df.metric == "cpu_util") & (df.ts < pd.Timestamp(START + timedelta(days=DAYS)))]
    how = {"p95": lambda s: s.quantile(0.95)}.get(agg, agg)
    want = (
        df.set_index("ts")
        .groupby("entity")["value"]
        .resample("1h")
        .agg(how)
        .reset_index()
        .sort_values(["entity", "ts"])
    )
    np.testing.assert_allclose(got["value"].to_numpy(), want["value"].to_numpy(), rtol=1e-12)
    assert got["ts"].tolist() == want["ts"].tolist()


def test_unknown_aggregation_is_named(filled):
    store, _ = filled
    with pytest.raises(BadQueryError, match="aggregation 'avg'"):
        store.resample("1h", "avg")


def test_align_gives_one_column_per_metric(filled):
    store, points = filled
    got = frame(store.align(["cpu_util", "mem_util"], "5m", end=START + timedelta(days=1)))
    df = frame(points)
    df = df[df.ts < pd.Timestamp(START + timedelta(days=1))]
    want = df.pivot_table(index=["entity", "ts"], columns="metric", values="value").reset_index()
    assert list(got.columns) == ["entity", "ts", "cpu_util", "mem_util"]
    np.testing.assert_allclose(got[["cpu_util", "mem_util"]], want[["cpu_util", "mem_util"]])


def test_window_features_match_pandas_trailing_windows(filled):
    store, points = filled
    got = frame(
        store.window_features(
            "5m",
            windows=["1h"],
            stats=["mean", "std", "min", "max", "p50"],
            metrics="mem_util",
            entities="h2",
        )
    )
    series = frame(points).query("metric == 'mem_util' and entity == 'h2'").set_index("ts")
    rolling = series["value"].rolling("1h")
    np.testing.assert_allclose(got["mean_1h"], rolling.mean(), rtol=1e-9)
    np.testing.assert_allclose(got["std_1h"][1:], rolling.std()[1:], rtol=1e-9)
    np.testing.assert_allclose(got["min_1h"], rolling.min())
    np.testing.assert_allclose(got["max_1h"], rolling.max())
    np.testing.assert_allclose(got["p50_1h"], rolling.median(), rtol=1e-9)
    np.testing.assert_allclose(got["diff"][1:], series["value"].diff()[1:], rtol=1e-9)
    ts = got["ts"]
    hours = ts.dt.hour + ts.dt.minute / 60
    np.testing.assert_allclose(got["tod_sin"], np.sin(2 * np.pi * hours / 24), atol=1e-9)
    weekday = ts.dt.day_of_week + hours / 24  # 2024-01-01 is a Monday
    np.testing.assert_allclose(got["dow_cos"], np.cos(2 * np.pi * weekday / 7), atol=1e-9)


def test_window_features_are_causal(filled):
    """A feature at t is the same whether or not the store holds data after t."""
    store, _ = filled
    cut = START + timedelta(days=1, hours=3)
    full = frame(store.window_features("5m", windows=["1h", "6h"], entities="h1"))
    as_of = frame(store.window_features("5m", windows=["1h", "6h"], entities="h1", as_of=cut))
    assert as_of["ts"].max() == pd.Timestamp(cut)
    upto = full[full.ts <= pd.Timestamp(cut)].reset_index(drop=True)
    pd.testing.assert_frame_equal(as_of, upto)


def test_window_shorter_than_step_is_refused(filled):
    store, _ = filled
    with pytest.raises(BadQueryError, match="window '1m'"):
        store.window_features("5m", windows=["1m"])


def test_stream_yields_bounded_batches_equal_to_read(filled):
    store, _ = filled
    batches = list(store.stream(metrics="cpu_util", batch_rows=500))
    assert len(batches) > 3
    assert all(b.num_rows <= 500 for b in batches)
    assert all(b.schema == READ_SCHEMA for b in batches)
    assert pa.Table.from_batches(batches).to_pydict() == store.read(metrics="cpu_util").to_pydict()
