"""Compaction merges a partition's small files into one; what reads return does not change."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from fixtures.points import START, make_points, rows
from perfml.featurestore import FeatureStore
from perfml.featurestore import compaction as compaction_module

HOSTS = ("host-a", "host-b", "host-c")


def appended(store: FeatureStore, writes: int, metrics: tuple[str, ...] = ("cpu_util",)) -> None:
    """``writes`` small writes, each an hour later than the one before, as a recorder makes."""
    for hour in range(writes):
        start = START + timedelta(hours=hour)
        store.write(make_points(metrics, HOSTS, n=12, start=start, seed=hour))


def partition_files(store: FeatureStore, metric: str = "cpu_util") -> list[Any]:
    return [f for f in store.manifest.files if f.metric == metric]


def disjoint(files: list[Any]) -> bool:
    return not any(a.overlaps(b) for i, a in enumerate(files) for b in files[i + 1 :])


def test_small_files_become_one_and_reads_do_not_change(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "store")
    appended(store, 24)
    assert len(partition_files(store)) == 24
    before = rows(store.read())
    report = store.compact(max_files=8)
    assert (report.partitions, report.files_before, report.files_after) == (1, 24, 1)
    assert len(partition_files(store)) == 1
    assert rows(store.read()) == before
    parquet = sorted(p.name for p in (tmp_path / "store").rglob("*.parquet"))
    assert parquet == [Path(partition_files(store)[0].path).name]  # the old files are gone
    version = store.manifest.version
    assert store.compact(max_files=8).partitions == 0  # nothing left to do
    assert store.manifest.version == version


def test_large_files_are_left_alone_and_boxes_stay_disjoint(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "store")
    store.write(make_points(("cpu_util",), HOSTS, n=600, start=START - timedelta(days=3)))
    appended(store, 10)
    big = [f for f in partition_files(store) if f.rows == 1800]
    assert len(big) == 1
    before = rows(store.read())
    store.compact(max_files=4, small_rows=1000)
    files = partition_files(store)
    assert big[0] in files
    assert len(files) == 2
    assert disjoint(files)
    assert rows(store.read()) == before


def test_a_file_the_merged_box_touches_is_merged_too(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "store")
    appended(store, 6)  # 36 rows an hour, from :00 to :55
    # a larger file of another host in the gap between two of them (:55:30 to :59:29): it
    # touches none of them, but their union's box covers it, so it is merged with them, or
    # the partition's boxes would overlap
    gap = START + timedelta(hours=2, minutes=55, seconds=30)
    store.write(
        make_points(("cpu_util",), ["host-b2"], n=240, start=gap, step=timedelta(seconds=1))
    )
    assert len(partition_files(store)) == 7
    before = rows(store.read())
    store.compact(max_files=2, small_rows=50)
    files = partition_files(store)
    assert disjoint(files)
    assert len(files) == 1
    assert rows(store.read()) == before


def test_only_the_metrics_named_are_compacted(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "store")
    appended(store, 6, metrics=("cpu_util", "mem_util"))
    store.compact(["mem_util"], max_files=2)
    assert len(partition_files(store, "cpu_util")) == 6
    assert len(partition_files(store, "mem_util")) == 1


def test_a_failed_compaction_leaves_the_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FeatureStore(tmp_path / "store")
    appended(store, 6, metrics=("cpu_util", "mem_util"))
    before = store.manifest
    files = sorted((tmp_path / "store").rglob("*.parquet"))
    merge = compaction_module._merge
    calls = 0

    def merge_then_fail(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        merged = merge(*args)  # the first partition's merged file is written...
        if calls == 2:
            raise OSError("disk full")  # ...and the second one fails
        return merged

    monkeypatch.setattr(compaction_module, "_merge", merge_then_fail)
    with pytest.raises(OSError, match="disk full"):
        store.compact(max_files=2)
    assert store.manifest == before
    assert sorted((tmp_path / "store").rglob("*.parquet")) == files
