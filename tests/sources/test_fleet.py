"""The fleet generator: realistic behaviour, honest labels, drift, determinism, both outputs."""

import json
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from perfml.featurestore.schema import LONG_SCHEMA
from perfml.sources.errors import FleetConfigError
from perfml.sources.fleet import (
    METRICS,
    WINDOW_PAD_STEPS,
    AnomalyKind,
    Fleet,
    generate_fleet,
    write_fleet,
)
from perfml.sources.nab import iter_corpus, read_series, read_windows

SEED = 2
STEP = timedelta(minutes=5)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return generate_fleet(hosts=3, months=2, seed=SEED)


@pytest.fixture(scope="module")
def frames(fleet: Fleet) -> dict[str, pd.DataFrame]:
    index = pd.to_datetime(fleet.timestamps(), unit="ms", utc=True)
    return {host: pd.DataFrame(fleet.host_values(host), index=index) for host in fleet.host_names}


@pytest.fixture(scope="module")
def written(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folders = {fmt: tmp_path_factory.mktemp(fmt) for fmt in ("nab", "parquet")}
    for fmt, folder in folders.items():
        write_fleet(fleet, folder, fmt=fmt)  # type: ignore[arg-type]
    return folders


def ticks_of(table: pa.Table) -> np.ndarray:
    return table.column("ts").cast(pa.int64()).to_numpy()


def spearman(a: pd.Series, b: pd.Series) -> float:
    return float(np.corrcoef(a.rank(), b.rank())[0, 1])


def test_the_plan_covers_calendar_months_at_five_minute_steps(fleet: Fleet) -> None:
    assert fleet.host_names == ("host-0000", "host-0001", "host-0002")
    assert (fleet.start, fleet.end) == (
        datetime(2024, 1, 1, tzinfo=UTC),
        datetime(2024, 3, 1, tzinfo=UTC),
    )
    assert fleet.steps == (31 + 29) * 288
    ticks = fleet.timestamps()
    assert ticks[0] == 1_704_067_200_000
    assert set(np.diff(ticks)) == {300_000}
    assert fleet.points == 3 * 6 * fleet.steps
    [event] = fleet.drift_events  # the default: one drift, at month 2 // 2 = 1
    assert (event.month, event.start) == (1, datetime(2024, 2, 1, tzinfo=UTC))
    assert generate_fleet(hosts=2, months=1, seed=0).drift_events == ()


def test_months_are_calendar_months_from_any_start() -> None:
    fleet = generate_fleet(hosts=1, months=2, seed=0, start=datetime(2023, 12, 31, 12))
    assert fleet.start == datetime(2023, 12, 31, 12, tzinfo=UTC)
    assert fleet.end == datetime(2024, 2, 29, 12, tzinfo=UTC)  # 31 January has no 31 February
    assert fleet.drift_events[0].start == datetime(2024, 1, 31, 12, tzinfo=UTC)


def test_hosts_stream_as_long_tables_matching_their_values(fleet: Fleet) -> None:
    tables = list(fleet.iter_hosts())
    assert len(tables) == 3
    for host, table in zip(fleet.host_names, tables, strict=True):
        assert table.schema == LONG_SCHEMA
        assert table.num_rows == 6 * fleet.steps
        assert set(table.column("entity").to_pylist()) == {host}
        values = fleet.host_values(host)
        for metric in METRICS:
            rows = table.filter(pc.equal(table.column("metric"), metric))
            np.testing.assert_array_equal(ticks_of(rows), fleet.timestamps())
            np.testing.assert_array_equal(rows.column("value").to_numpy(), values[metric])


def test_values_stay_in_their_physical_ranges(frames: dict[str, pd.DataFrame]) -> None:
    for frame in frames.values():
        assert np.isfinite(frame.to_numpy()).all()
        assert (frame >= 0).all().all()
        for metric in ("cpu_util", "mem_util"):
            assert frame[metric].between(0, 100).all()
        assert frame.request_latency_ms.min() > 0


def test_daily_seasonality_peaks_in_business_hours(
    fleet: Fleet, frames: dict[str, pd.DataFrame]
) -> None:
    for profile in fleet.hosts:
        cpu = frames[profile.name].cpu_util
        local_hour = (cpu.index.hour + profile.utc_offset_hours) % 24
        by_hour = cpu.groupby(local_hour).mean()
        assert by_hour.max() > 1.6 * by_hour.min()
        assert by_hour.idxmax() in range(9, 19)
        assert by_hour.idxmin() in (*range(7), 22, 23)


def test_weekends_are_quieter_than_weekdays(frames: dict[str, pd.DataFrame]) -> None:
    for frame in frames.values():
        weekend = frame.index.day_of_week >= 5
        for metric in ("cpu_util", "net_rx_bytes", "disk_iops"):
            assert frame[metric][~weekend].mean() > 1.15 * frame[metric][weekend].mean()


def test_metrics_move_together_like_a_serving_host(frames: dict[str, pd.DataFrame]) -> None:
    for frame in frames.values():
        assert spearman(frame.cpu_util, frame.request_latency_ms) > 0.5
        assert spearman(frame.net_rx_bytes, frame.net_tx_bytes) > 0.8
        assert spearman(frame.net_rx_bytes, frame.disk_iops) > 0.5
        assert spearman(frame.net_rx_bytes, frame.cpu_util) > 0.7


def test_latency_grows_faster_than_linearly_as_cpu_rises() -> None:
    # Queueing: the latency bought by the next point of CPU grows with the CPU already used.
    fleet = generate_fleet(hosts=6, months=1, seed=0)
    for host in fleet.host_names:
        values = fleet.host_values(host, anomalies=False)
        cpu, latency = values["cpu_util"], values["request_latency_ms"]
        low, middle, high = np.percentile(cpu, [5, 50, 99])
        around = {c: latency[np.abs(cpu - c) < 2].mean() for c in (low, middle, high)}
        lower_slope = (around[middle] - around[low]) / (middle - low)
        upper_slope = (around[high] - around[middle]) / (high - middle)
        assert upper_slope > 1.2 * lower_slope > 0


def test_every_anomaly_kind_is_injected(fleet: Fleet) -> None:
    assert {a.kind for a in fleet.anomalies} == set(AnomalyKind)
    assert {a.metric for a in fleet.anomalies if a.kind is AnomalyKind.MEMORY_LEAK} == {"mem_util"}


@pytest.mark.parametrize("seed", [SEED, 7, 8])
def test_each_anomaly_really_deviates_and_nothing_else_does(seed: int) -> None:
    fleet = generate_fleet(hosts=3, months=2, seed=seed)
    windows = fleet.windows()
    ticks = fleet.timestamps()
    for host in fleet.host_names:
        values, clean = fleet.host_values(host), fleet.host_values(host, anomalies=False)
        for metric in METRICS:
            inside = np.zeros(fleet.steps, dtype=bool)
            for start, end in windows[f"{metric}/{host}.csv"]:
                inside |= (ticks >= start.timestamp() * 1000) & (ticks <= end.timestamp() * 1000)
            np.testing.assert_array_equal(values[metric][~inside], clean[metric][~inside])
        for anomaly in (a for a in fleet.anomalies if a.host == host):
            rows = (ticks >= anomaly.start.timestamp() * 1000) & (
                ticks <= anomaly.end.timestamp() * 1000
            )
            after = int(np.flatnonzero(rows)[-1]) + 1
            series, normal = values[anomaly.metric], clean[anomaly.metric]
            percent = anomaly.metric in ("cpu_util", "mem_util")
            if anomaly.kind is AnomalyKind.SPIKE:
                normal_top = np.percentile(normal, 99)
                if percent:
                    assert series[rows].max() >= normal_top + 0.5 * (100 - normal_top)
                else:
                    assert series[rows].max() > 2 * normal_top
            elif anomaly.kind is AnomalyKind.FLATLINE:
                assert rows.sum() >= 24  # two hours at least
                assert np.ptp(series[rows]) == 0
                assert np.ptp(normal[rows]) > 0
            elif anomaly.kind is AnomalyKind.MEMORY_LEAK:
                peak = series[after - 1]
                assert peak >= 85
                assert peak - series[rows][0] >= 15
                assert series[after] <= peak - 15  # the restart
            elif anomaly.kind is AnomalyKind.LATENCY_STORM and anomaly.metric == "cpu_util":
                assert (series[rows] - normal[rows]).max() >= 15
            elif anomaly.kind is AnomalyKind.LATENCY_STORM:
                assert (series[rows] / normal[rows]).max() >= 3
                assert rows.sum() * STEP <= timedelta(hours=2)
            else:
                shifted, usual = series[rows].mean(), normal[rows].mean()
                if percent and shifted > usual:
                    assert shifted - usual >= 10
                else:
                    assert shifted >= 1.5 * usual or shifted <= 0.6 * usual


def test_windows_are_rows_in_range_disjoint_and_cover_their_anomalies(fleet: Fleet) -> None:
    windows = fleet.windows()
    assert set(windows) == {f"{m}/{h}.csv" for m in METRICS for h in fleet.host_names}
    first, last = fleet.start, fleet.end - STEP
    for key, entries in windows.items():
        for start, end in entries:
            assert first <= start <= end <= last
            assert (start - first) % STEP == timedelta(0)
            assert (end - first) % STEP == timedelta(0)
        for (_, end), (following, _) in pairwise(entries):
            assert end < following
        metric, host = key.removesuffix(".csv").split("/")
        anomalies = [a for a in fleet.anomalies if (a.host, a.metric) == (host, metric)]
        assert len(anomalies) == len(entries)
        for anomaly, (start, end) in zip(anomalies, entries, strict=True):
            assert start == anomaly.start - WINDOW_PAD_STEPS * STEP
            assert end == anomaly.end + WINDOW_PAD_STEPS * STEP


def test_drift_changes_the_affected_hosts_from_its_month_on() -> None:
    fleet = generate_fleet(hosts=4, months=3, seed=3, drift_months=[2])
    [event] = fleet.drift_events
    assert event.start == datetime(2024, 3, 1, tzinfo=UTC)
    assert 0 < len(event.hosts) < 4
    index = pd.to_datetime(fleet.timestamps(), unit="ms", utc=True)
    for host in fleet.host_names:
        cpu = pd.Series(fleet.host_values(host)["cpu_util"], index=index)
        january, february, march = cpu.groupby(cpu.index.month).mean()
        assert abs(february / january - 1) < 0.08  # a month pair without drift
        if host in event.hosts:
            assert abs(march / february - 1) > 0.25
        else:
            assert abs(march / february - 1) < 0.08


def test_drift_is_recorded_not_labelled(fleet: Fleet, written: dict[str, Path]) -> None:
    metadata = json.loads((written["nab"] / "fleet.json").read_text())
    [event] = metadata["drift_events"]
    [drift] = fleet.drift_events
    assert event["month"] == 1
    assert event["start"] == "2024-02-01T00:00:00Z"
    assert event["hosts"] == list(drift.hosts)
    assert "workload change" in event["description"]
    assert {a["kind"] for a in metadata["anomalies"]} == {str(kind) for kind in AnomalyKind}
    assert len(metadata["anomalies"]) == len(fleet.anomalies)
    assert metadata["parameters"] == {
        "hosts": 3,
        "months": 2,
        "seed": SEED,
        "start": "2024-01-01T00:00:00Z",
        "end": "2024-03-01T00:00:00Z",
        "step_seconds": 300.0,
        "drift_months": [1],
        "window_pad_steps": WINDOW_PAD_STEPS,
    }
    assert [h["name"] for h in metadata["hosts"]] == list(fleet.host_names)


def test_the_nab_output_is_a_nab_corpus_with_the_fleet_labels(
    fleet: Fleet, written: dict[str, Path]
) -> None:
    series = list(iter_corpus(written["nab"]))
    assert [s.key for s in series] == sorted(
        f"{m}/{h}.csv" for m in METRICS for h in fleet.host_names
    )
    assert read_windows(written["nab"]) == fleet.windows()
    for one in series:
        table = one.read()
        assert table.num_rows == fleet.steps
        np.testing.assert_array_equal(
            table.column("value").to_numpy(), fleet.host_values(one.name)[one.category]
        )
    text = (written["nab"] / "data" / "cpu_util" / "host-0000.csv").read_text().splitlines()
    assert text[0] == "timestamp,value"
    assert text[1].startswith("2024-01-01 00:00:00,")


def test_the_parquet_output_holds_the_same_values_one_row_group_per_host(
    fleet: Fleet, written: dict[str, Path]
) -> None:
    path = written["parquet"] / "metrics.parquet"
    parquet = pq.ParquetFile(path)
    assert parquet.schema_arrow == LONG_SCHEMA
    assert parquet.metadata.num_row_groups == 3
    assert parquet.metadata.num_rows == fleet.points
    table = pq.read_table(path)
    for metric in METRICS:
        for host in fleet.host_names:
            rows = table.filter(
                pc.and_(pc.equal(table["metric"], metric), pc.equal(table["entity"], host))
            )
            nab = read_series(written["nab"] / "data" / metric / f"{host}.csv")
            assert rows.select(["ts", "value"]).equals(nab)
    for name in ("labels/combined_windows.json", "fleet.json"):
        assert (written["parquet"] / name).read_bytes() == (written["nab"] / name).read_bytes()
    assert not (written["parquet"] / "data").exists()


def files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_seed_gives_byte_identical_files_and_another_seed_others(
    written: dict[str, Path], tmp_path: Path
) -> None:
    for fmt in ("nab", "parquet"):
        again = tmp_path / f"{fmt}-again"
        write_fleet(generate_fleet(hosts=3, months=2, seed=SEED), again, fmt=fmt)  # type: ignore[arg-type]
        assert files(again) == files(written[fmt])
    other = tmp_path / "other"
    write_fleet(generate_fleet(hosts=3, months=2, seed=SEED + 1), other)
    ours, theirs = files(written["nab"]), files(other)
    assert ours.keys() == theirs.keys()
    assert all(ours[name] != theirs[name] for name in ours if name.startswith("data/"))


def test_a_host_is_the_same_whatever_the_size_of_its_fleet() -> None:
    small, large = (
        generate_fleet(hosts=2, months=1, seed=9),
        generate_fleet(hosts=5, months=1, seed=9),
    )
    assert small.hosts[1] == large.hosts[1]
    for metric, values in small.host_values("host-0001").items():
        np.testing.assert_array_equal(values, large.host_values("host-0001")[metric])


def test_a_large_fleet_is_planned_at_once_and_streamed_host_by_host() -> None:
    fleet = generate_fleet(hosts=1000, months=1, seed=0)
    assert fleet.points == 1000 * 6 * 31 * 288  # 53.6 million, none generated yet
    hosts = fleet.iter_hosts()
    first = next(hosts)
    assert set(first.column("entity").unique().to_pylist()) == {fleet.hosts[0].name}
    points = first.num_rows + sum(next(hosts).num_rows for _ in range(19))
    assert points == 20 * 6 * 31 * 288


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"hosts": 0}, "hosts=0 must be at least 1"),
        ({"months": 0}, "months=0 must be at least 1"),
        ({"seed": -1}, "seed=-1 must be"),
        ({"drift_months": [3]}, r"drift_months=\[3\] must lie in 1..2"),
        ({"drift_months": [2, 1]}, "must be increasing"),
        ({"step": timedelta(milliseconds=1500)}, "whole number of seconds"),
    ],
)
def test_impossible_fleets_are_refused(arguments: dict[str, object], message: str) -> None:
    parameters: dict[str, object] = {"hosts": 2, "months": 3, "seed": 0, **arguments}
    with pytest.raises(FleetConfigError, match=message):
        generate_fleet(**parameters)  # type: ignore[arg-type]


def test_an_unknown_output_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FleetConfigError, match="fmt='csv' must be 'nab' or 'parquet'"):
        write_fleet(generate_fleet(hosts=1, months=1, seed=0), tmp_path, fmt="csv")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
