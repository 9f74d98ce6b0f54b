"""Writes: round trip, idempotency, upserts, atomicity, bad input, concurrency."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from fixtures.points import START, make_points, rows
from perfml.featurestore import FeatureStore, LabelWindow
from perfml.featurestore.errors import (
    CorruptStoreError,
    InvalidPointsError,
    MissingColumnsError,
)
from perfml.featurestore.manifest import MANIFEST_NAME


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return FeatureStore(tmp_path / "store", memory_limit="512MB")


def data_files(store: FeatureStore) -> set[str]:
    return {p.relative_to(store.root).as_posix() for p in store.root.rglob("*.parquet")}


def test_round_trip_keeps_every_point_and_partitions_by_metric_and_month(store):
    points = make_points(["cpu_util", "mem_util"], ["h1", "h2"], n=12 * 24 * 40)  # 40 days
    report = store.write(points)
    assert report.points_added == points.num_rows
    assert report.series == 4
    assert rows(store.read()) == rows(points)
    listed = {f.path.split("/part-")[0] for f in store.manifest.files}
    assert listed == {
        f"metric={m}/month={mo}" for m in ("cpu_util", "mem_util") for mo in ("2024-01", "2024-02")
    }
    assert data_files(store) == {f.path for f in store.manifest.files}


def test_reingesting_the_same_points_adds_none(store):
    points = make_points(["cpu_util"], ["h1", "h2", "h3"], n=500)
    store.write(points)
    again = store.write(points)
    assert again.points_added == 0
    assert again.points_replaced_or_repeated == points.num_rows
    assert store.summary().points == points.num_rows
    assert rows(store.read()) == rows(points)


def test_a_point_written_again_with_a_new_value_replaces_the_old(store):
    store.write(make_points(n=100, seed=1))
    changed = make_points(n=100, seed=2).slice(40, 20)
    report = store.write(changed)
    assert report.points_added == 0
    stored = store.read().to_pandas().set_index("ts")["value"]
    expected = changed.to_pandas().set_index("ts")["value"]
    assert stored.loc[expected.index].tolist() == expected.tolist()
    assert len(stored) == 100


def test_duplicates_within_one_write_keep_the_last(store):
    first = make_points(n=10, seed=1)
    second = make_points(n=10, seed=2)
    report = store.write(pa.concat_tables([first, second]))
    assert report.points_added == 10
    assert store.read().column("value").to_pylist() == second.column("value").to_pylist()


def test_unsorted_input_is_stored_sorted_and_unique(store):
    points = make_points(["cpu_util"], ["h1", "h2"], n=300)
    shuffled = points.take(np.random.default_rng(3).permutation(points.num_rows))
    assert store.write(shuffled).points_added == points.num_rows
    read = store.read()
    assert rows(read) == rows(points)
    keys = list(zip(read.column("entity").to_pylist(), read.column("ts").to_pylist(), strict=True))
    assert keys == sorted(keys)


def test_new_time_range_appends_without_rewriting_old_files(store):
    store.write(make_points(n=100))
    before = {f.path for f in store.manifest.files}
    later = make_points(n=100, start=START + timedelta(minutes=5 * 100))
    report = store.write(later)
    assert (report.partitions_appended, report.partitions_merged) == (1, 0)
    assert before < {f.path for f in store.manifest.files}
    assert store.summary().points == 200


def test_overlapping_write_merges_the_partition_into_one_file(store):
    store.write(make_points(entities=["h1", "h2"], n=100))
    report = store.write(make_points(entities=["h1"], n=150, seed=9))  # overlaps and extends
    assert report.partitions_merged == 1
    assert report.points_added == 50
    assert len(store.manifest.files) == 1
    assert data_files(store) == {f.path for f in store.manifest.files}
    assert store.summary().points == 250


def test_labels_and_windows_are_kept_and_deduplicated(store):
    window = LabelWindow("cpu_util", "host-a", 1_704_067_200_000, 1_704_070_800_000, "spike")
    store.write(make_points(), labels={("cpu_util", "host-a"): {"dc": "fra1"}}, windows=[window])
    report = store.write(make_points(), windows=[window])
    assert report.windows_added == 0
    assert store.windows() == [window]
    assert store.series() == [("cpu_util", "host-a", {"dc": "fra1"})]


def test_missing_columns_are_named_and_nothing_is_written(store):
    points = make_points().drop(["value"])
    with pytest.raises(MissingColumnsError, match="'value'"):
        store.write(points)
    assert store.summary().points == 0
    assert not (store.root / MANIFEST_NAME).exists()


@pytest.mark.parametrize(
    ("column", "bad", "message"),
    [
        ("metric", "cpu util", "metric name 'cpu util' is not valid"),
        ("entity", "", "entity '' is not valid"),
        ("value", float("nan"), "value nan is not finite"),
        ("value", float("inf"), "value inf is not finite"),
        ("value", None, "value is empty"),
        ("ts", None, "ts is empty"),
    ],
)
def test_bad_points_are_refused_with_row_and_value(store, column, bad, message):
    store.write(make_points(n=5))
    before = rows(store.read())
    points = make_points(n=5, start=START + timedelta(days=1)).to_pylist()
    points[3][column] = bad
    table = pa.Table.from_pylist(points, schema=make_points().schema.remove_metadata())
    with pytest.raises(InvalidPointsError, match=f"points row 3: {message}"):
        store.write(table)
    assert rows(store.read()) == before


def test_nonfinite_values_are_dropped_and_counted_when_asked(store):
    points = make_points(n=6).to_pylist()
    points[1]["value"] = float("nan")
    points[4]["value"] = float("-inf")
    report = store.write(pa.Table.from_pylist(points), drop_nonfinite=True)
    assert (report.dropped_nonfinite, report.points_added) == (2, 4)
    assert store.summary().points == 4


def test_a_failure_late_in_a_stream_leaves_the_store_as_it_was(store):
    store.write(make_points(n=50))
    before_manifest = (store.root / MANIFEST_NAME).read_bytes()
    good = make_points(["mem_util"], n=50)
    bad = make_points(["disk_iops"], n=5).to_pylist()
    bad[2]["value"] = float("nan")
    with pytest.raises(InvalidPointsError, match="row 52"):
        store.write([good, pa.Table.from_pylist(bad)])
    assert (store.root / MANIFEST_NAME).read_bytes() == before_manifest
    assert data_files(store) == {f.path for f in store.manifest.files}
    assert store.summary().metrics == ("cpu_util",)


def test_corrupt_manifest_is_a_clear_error(store):
    store.write(make_points())
    (store.root / MANIFEST_NAME).write_text('{"format": "something else"}')
    with pytest.raises(CorruptStoreError, match="not a perfml-featurestore manifest"):
        store.read()
    (store.root / MANIFEST_NAME).write_text("{trunc")
    with pytest.raises(CorruptStoreError, match="invalid JSON"):
        store.summary()


WRITER = textwrap.dedent(
    """
    import sys
    from datetime import timedelta
    from fixtures.points import START, make_points
    from perfml.featurestore import FeatureStore

    store = FeatureStore(sys.argv[1], memory_limit="512MB")
    first, count = int(sys.argv[2]), int(sys.argv[3])
    def batches():
        for i in range(first, first + count):
            yield make_points(["cpu_util", "mem_util"], [f"h{i}"], n=60_000, seed=i)
    report = store.write(batches())
    print(report.points_added)
    """
)


def _run_writer(root: Path, first: int, count: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(first), str(count)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_killing_an_ingest_midway_leaves_the_store_exactly_as_before(store):
    store.write(make_points(["cpu_util"], ["h0"], n=1000))
    before = rows(store.read())
    manifest_bytes = (store.root / MANIFEST_NAME).read_bytes()
    writer = _run_writer(store.root, 1, 400)  # 48M points: far longer than the wait below
    deadline = time.monotonic() + 60
    while not data_files(store) - {f.path for f in store.manifest.files}:
        assert writer.poll() is None, writer.communicate()
        assert time.monotonic() < deadline, "the writer never started staging files"
        time.sleep(0.02)
    writer.send_signal(signal.SIGKILL)
    writer.communicate()
    assert writer.returncode == -signal.SIGKILL
    assert (store.root / MANIFEST_NAME).read_bytes() == manifest_bytes
    assert rows(store.read()) == before
    assert data_files(store) > {f.path for f in store.manifest.files}  # orphans are left...
    store.write(make_points(["cpu_util"], ["h0"], n=1000))
    assert data_files(store) == {f.path for f in store.manifest.files}  # ...until next write
    assert rows(store.read()) == before


def test_concurrent_writers_serialise_and_lose_nothing(store):
    writers = [_run_writer(store.root, first, 3) for first in (0, 3, 6)]
    for writer in writers:
        out, err = writer.communicate(timeout=240)
        assert writer.returncode == 0, err
        assert int(out) == 3 * 2 * 60_000
    summary = store.summary()
    assert summary.points == 9 * 2 * 60_000
    assert summary.series == 18
    manifest = json.loads((store.root / MANIFEST_NAME).read_text())
    assert manifest["version"] == 3


def test_naive_and_other_timezones_are_stored_as_utc(store):
    naive = pa.table(
        {
            "metric": ["cpu_util"] * 2,
            "entity": ["h"] * 2,
            "ts": pa.array([datetime(2024, 5, 1, 12), datetime(2024, 5, 1, 13)], pa.timestamp("s")),
            "value": [1.0, 2.0],
        }
    )
    store.write(naive)
    assert store.read().column("ts").to_pylist() == [
        datetime(2024, 5, 1, 12, tzinfo=UTC),
        datetime(2024, 5, 1, 13, tzinfo=UTC),
    ]


def test_merges_keep_file_boxes_disjoint_so_reads_stay_ordered(store):
    day = timedelta(days=1)
    # f1: entities a-b on days 0-1; f3: entity c on day 0 only.
    store.write(make_points(entities=["a", "b"], n=288 * 2))
    store.write(make_points(entities=["c"], n=10))
    # New points for b-c on days 1-3 touch f1 (b, day 1); the union box then reaches f3 (c, day 0).
    store.write(make_points(entities=["b", "c"], n=288 * 2, start=START + day, seed=5))
    files = store.manifest.files
    for i, one in enumerate(files):
        for other in files[i + 1 :]:
            assert not one.overlaps(other), (one, other)
    read = store.read()
    keys = list(zip(read.column("entity").to_pylist(), read.column("ts").to_pylist(), strict=True))
    assert keys == sorted(keys)
    assert len(keys) == len(set(keys)) == 288 * 2 * 2 + 10 + 288 * 2 * 2 - 288


def test_pandas_frames_are_written_like_arrow_tables(store):
    points = make_points(["cpu_util"], ["h1", "h2"], n=50)
    frame = points.to_pandas()
    assert frame["ts"].dt.tz is not None
    assert store.write(frame).points_added == 100
    assert rows(store.read()) == rows(points)
    naive = frame.assign(ts=frame["ts"].dt.tz_localize(None), value=frame["value"] + 1)
    assert store.write(naive).points_added == 0  # the same instants, naive taken as UTC
    assert store.read().column("value").to_pylist()[0] == frame["value"].iloc[0] + 1
