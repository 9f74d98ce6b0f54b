"""The landing: acknowledged points are on disk, reach the store once, and survive a crash."""

from __future__ import annotations

import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from perfml.featurestore import FeatureStore
from perfml.sources.landing import Landing
from perfml.sources.remote_write_errors import LandingClosedError, LandingOverloadedError

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def points(
    entity: str, first: int, count: int, value: float = 1.0, metric: str = "cpu"
) -> pa.Table:
    return pa.table(
        {
            "metric": [metric] * count,
            "entity": [entity] * count,
            "ts": [T0 + timedelta(seconds=first + i) for i in range(count)],
            "value": [value + i for i in range(count)],
        }
    )


def rows(table: pa.Table) -> list[tuple[str, str, datetime, float]]:
    data = table.to_pydict()
    return list(zip(data["metric"], data["entity"], data["ts"], data["value"], strict=True))


class Handed:
    """An on_stored that records each call and the thread it came from."""

    def __init__(self) -> None:
        self.calls: list[pa.Table] = []
        self.threads: set[str] = set()

    def __call__(self, table: pa.Table) -> None:
        self.calls.append(table)
        self.threads.add(threading.current_thread().name)

    def rows(self) -> list[tuple[str, str, datetime, float]]:
        return [row for call in self.calls for row in rows(call)]


def landing(tmp_path: Path, **options: object) -> Landing:
    settings: dict[str, object] = {"flush_interval": 3600.0, **options}
    return Landing(FeatureStore(tmp_path / "store"), tmp_path / "landing", **settings)  # type: ignore[arg-type]


def crash_copy(tmp_path: Path, name: str) -> Path:
    """The landing folder as a crash at this instant would leave it."""
    copy = tmp_path / name
    shutil.copytree(tmp_path / "landing", copy / "landing")
    return copy


def test_close_stores_every_accepted_point_and_removes_the_log(tmp_path: Path) -> None:
    with landing(tmp_path) as land:
        land.accept(points("a", 0, 3))
        land.accept(points("b", 0, 2))
        assert land.pending == 5
    stored = FeatureStore(tmp_path / "store").read()
    assert stored.num_rows == 5
    assert land.stored == 5
    assert list((tmp_path / "landing").iterdir()) == []


def test_the_flusher_stores_on_its_interval(tmp_path: Path) -> None:
    handed = Handed()
    arrived = threading.Event()
    with landing(
        tmp_path, flush_interval=0.05, on_stored=lambda t: (handed(t), arrived.set())
    ) as land:
        land.accept(points("a", 0, 4))
        assert arrived.wait(30)
        assert land.pending == 0
        assert FeatureStore(tmp_path / "store").read().num_rows == 4
    assert handed.threads == {"perfml-landing-flusher"}


def test_acknowledged_points_are_on_disk_before_any_flush(tmp_path: Path) -> None:
    with landing(tmp_path) as land:
        land.accept(points("a", 0, 3))
        land.accept(points("b", 10, 2, value=7.0))
        crashed = crash_copy(tmp_path, "crashed")
    handed = Handed()
    with landing(crashed, on_stored=handed) as again:
        assert again.replayed.records == 2
        assert again.replayed.points == 5
        assert again.replayed.torn == 0
        assert again.pending == 0
    assert len(rows(FeatureStore(crashed / "store").read())) == 5
    assert [(e, v) for _, e, _, v in handed.rows()] == [
        ("a", 1.0), ("a", 2.0), ("a", 3.0), ("b", 7.0), ("b", 8.0)
    ]  # fmt: skip


@pytest.mark.parametrize("cut", [1, 5, 13, 40])
def test_a_torn_last_record_is_skipped_and_the_rest_replayed(tmp_path: Path, cut: int) -> None:
    with landing(tmp_path) as land:
        land.accept(points("a", 0, 3))
        land.accept(points("b", 0, 3))
        crashed = crash_copy(tmp_path, "crashed")
    (segment,) = (crashed / "landing").iterdir()
    data = segment.read_bytes()
    segment.write_bytes(data[:-cut])  # the second record was being written
    with landing(crashed) as again:
        assert (again.replayed.records, again.replayed.torn) == (1, 1)
    stored = FeatureStore(crashed / "store").read()
    assert set(stored.column("entity").to_pylist()) == {"a"}
    assert stored.num_rows == 3


def test_a_record_whose_checksum_fails_ends_the_replay_of_its_segment(tmp_path: Path) -> None:
    with landing(tmp_path) as land:
        land.accept(points("a", 0, 3))
        land.accept(points("b", 0, 3))
        crashed = crash_copy(tmp_path, "crashed")
    (segment,) = (crashed / "landing").iterdir()
    data = bytearray(segment.read_bytes())
    data[-20] ^= 0xFF
    segment.write_bytes(bytes(data))
    with landing(crashed) as again:
        assert again.replayed.points == 3
    assert FeatureStore(crashed / "store").read().num_rows == 3


def test_replay_after_a_crash_between_the_store_commit_and_the_removal_is_idempotent(
    tmp_path: Path,
) -> None:
    with landing(tmp_path) as land:
        land.accept(points("a", 0, 3))
        crashed = crash_copy(tmp_path, "crashed")
    shutil.copytree(tmp_path / "store", crashed / "store")  # the commit happened, not removal
    with landing(crashed) as again:
        assert again.replayed.points == 3
    stored = FeatureStore(crashed / "store").read()
    assert rows(stored) == rows(FeatureStore(tmp_path / "store").read())


def test_on_stored_gets_new_points_once_sorted_and_one_per_key(tmp_path: Path) -> None:
    handed = Handed()
    with landing(tmp_path, on_stored=handed) as land:
        land.accept(points("b", 0, 2, value=10.0))
        land.accept(points("a", 5, 2, value=1.0))
        land.accept(points("a", 5, 1, value=99.0))  # a resend of one key: the last wins
        land.flush()
        land.accept(points("a", 0, 9, value=50.0))  # older points, two later ones
        land.flush()
        land.flush()  # nothing new: no call
    first, second = handed.calls
    assert [(e, t.second, v) for _, e, t, v in rows(first)] == [
        ("a", 5, 99.0), ("a", 6, 2.0), ("b", 0, 10.0), ("b", 1, 11.0)
    ]  # fmt: skip
    assert [(e, t.second, v) for _, e, t, v in rows(second)] == [("a", 7, 57.0), ("a", 8, 58.0)]
    # The store kept one point per key, the last accepted.
    stored = {(e, t.second): v for _, e, t, v in rows(FeatureStore(tmp_path / "store").read())}
    assert stored[("a", 5)] == 55.0
    assert stored[("a", 8)] == 58.0
    assert len(stored) == 11


def test_concurrent_accepts_share_syncs_and_lose_nothing(tmp_path: Path) -> None:
    threads, each = 8, 40
    with landing(tmp_path, flush_interval=0.02) as land:

        def send(worker: int) -> None:
            for i in range(each):
                land.accept(points(f"host-{worker}", i * 2, 2, value=float(worker)))

        workers = [threading.Thread(target=send, args=(w,)) for w in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    stored = FeatureStore(tmp_path / "store").read()
    assert stored.num_rows == threads * each * 2
    assert land.stored == threads * each * 2
    assert list((tmp_path / "landing").iterdir()) == []


def test_more_than_max_pending_is_refused_until_a_flush(tmp_path: Path) -> None:
    with landing(tmp_path, max_pending=5) as land:
        land.accept(points("a", 0, 4))
        with pytest.raises(LandingOverloadedError) as refused:
            land.accept(points("b", 0, 2))
        assert (refused.value.pending, refused.value.incoming, refused.value.limit) == (4, 2, 5)
        assert refused.value.status_code == 503
        land.flush()
        land.accept(points("b", 0, 2))
    assert FeatureStore(tmp_path / "store").read().num_rows == 6


def test_a_failing_store_keeps_the_points_pending_until_it_recovers(tmp_path: Path) -> None:
    (tmp_path / "store").write_text("not a folder")  # the store cannot be written
    land = landing(tmp_path).start()
    land.accept(points("a", 0, 3))
    with pytest.raises(OSError, match="store"):
        land.flush()
    land.accept(points("a", 3, 1))
    assert land.pending == 4
    (tmp_path / "store").unlink()
    assert land.close().stored == 4
    assert FeatureStore(tmp_path / "store").read().num_rows == 4
    assert list((tmp_path / "landing").iterdir()) == []


def test_accept_after_close_is_refused(tmp_path: Path) -> None:
    land = landing(tmp_path).start()
    land.close()
    with pytest.raises(LandingClosedError):
        land.accept(points("a", 0, 1))


def test_invalid_points_are_refused_before_they_are_logged(tmp_path: Path) -> None:
    from perfml.featurestore.errors import InvalidPointsError

    with landing(tmp_path) as land:
        with pytest.raises(InvalidPointsError):
            land.accept(points("a/b", 0, 1))
        assert land.pending == 0
