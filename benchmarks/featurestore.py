"""Feature store throughput and memory, each against a floor measured in the same run.

Claims measured:
- ingest (points/s) and peak RSS at 1M, 10M and 100M points, against the floor of writing the
  same Arrow batches with ``pyarrow.parquet`` directly (ratio perfml / floor), and how the cost
  per point grows with size;
- a one-month read of 1,000 series, against reading the same Parquet files with ``pyarrow``;
- window features per second, against pandas' rolling windows over the same series;
- the peak memory of streaming the largest store, against reading it at once.

Each ingest runs in a fresh process so that its peak RSS is its own.

    python benchmarks/featurestore.py [--quick] [--json FILE] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ENTITIES = 1_000
START_MS = 1_704_067_200_000  # 2024-01-01
STEP_MS = 300_000
BATCH_ROWS = 1 << 20


def batches(points: int) -> Iterator[pa.Table]:
    """``points`` points of ENTITIES hosts, host by host, in batches of about 1M rows.

    The arrays are built once and reused, so producing the stream costs next to nothing and
    both the store and the floor are timed on writing alone.
    """
    per_entity = points // ENTITIES
    hosts_per_batch = max(1, BATCH_ROWS // per_entity)
    rows = hosts_per_batch * per_entity
    ticks = START_MS + STEP_MS * np.arange(per_entity, dtype=np.int64)
    ts = pa.array(np.tile(ticks, hosts_per_batch)).cast(pa.timestamp("ms", tz="UTC"))
    values = pa.array(np.random.default_rng(0).normal(50, 10, rows))
    codes = pa.array(np.repeat(np.arange(hosts_per_batch, dtype=np.int32), per_entity))
    metric = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)), ["cpu_util"])
    for first in range(0, ENTITIES, hosts_per_batch):
        count = min(hosts_per_batch, ENTITIES - first)
        names = pa.array([f"host-{first + i:05d}" for i in range(hosts_per_batch)])
        entity = pa.DictionaryArray.from_arrays(codes, names)
        table = pa.table({"metric": metric, "entity": entity, "ts": ts, "value": values})
        yield table.slice(0, count * per_entity)


def worker(kind: str, points: int, target: Path) -> dict[str, float]:
    """One measurement in this process: ``store`` or ``floor`` ingest of ``points`` points, or
    a ``stream`` or ``read`` of every point of the store at ``target``."""
    from perfml.featurestore import FeatureStore  # imported before the clock starts

    begin = time.perf_counter()
    if kind in ("stream", "read"):
        store = FeatureStore(target, memory_limit="256MB")
        if kind == "stream":
            written = sum(batch.num_rows for batch in store.stream(batch_rows=65_536))
        else:
            written = store.read().num_rows
    elif kind == "store":
        report = FeatureStore(target, memory_limit="1GB").write(batches(points))
        written = report.points_added
    else:
        target.mkdir(parents=True, exist_ok=True)
        schema = next(batches(points)).schema
        written = 0
        with pq.ParquetWriter(target / "floor.parquet", schema) as writer:
            for table in batches(points):
                writer.write_table(table, row_group_size=BATCH_ROWS)
                written += table.num_rows
    seconds = time.perf_counter() - begin
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"points": written, "seconds": seconds, "peak_rss_mb": peak_kb / 1024}


def measure(kind: str, points: int, target: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--points", str(points), "--dir", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{kind} worker for {points:,} points failed:\n{done.stderr}")
    return dict(json.loads(done.stdout))


def bench_ingest(sizes: list[int], base: Path) -> list[dict[str, float]]:
    results = []
    for points in sizes:
        store = measure("store", points, base / f"store-{points}")
        floor = measure("floor", points, base / f"floor-{points}")
        shutil.rmtree(base / f"floor-{points}")
        results.append(
            {
                "points": points,
                "store_points_per_s": store["points"] / store["seconds"],
                "floor_points_per_s": floor["points"] / floor["seconds"],
                "ratio_vs_floor": floor["seconds"] / store["seconds"],
                "store_peak_rss_mb": store["peak_rss_mb"],
                "floor_peak_rss_mb": floor["peak_rss_mb"],
                "ns_per_point": store["seconds"] / points * 1e9,
            }
        )
    return results


def bench_stream(store_dir: Path) -> dict[str, float]:
    """Peak memory of streaming every point of a store, against reading it all at once."""
    stream = measure("stream", 0, store_dir)
    read = measure("read", 0, store_dir)
    return {
        "points": stream["points"],
        "stream_points_per_s": stream["points"] / stream["seconds"],
        "stream_peak_rss_mb": stream["peak_rss_mb"],
        "read_all_peak_rss_mb": read["peak_rss_mb"],
    }


def bench_read(store_dir: Path) -> dict[str, float]:
    """A one-month read of every series (1,000) from the store, against pyarrow on the files."""
    from perfml.featurestore import FeatureStore

    store = FeatureStore(store_dir, memory_limit="2GB")
    store.read(metrics="cpu_util", start="2024-01-01", end="2024-01-02")  # warm the page cache
    begin = time.perf_counter()
    table = store.read(metrics="cpu_util", start="2024-01-01", end="2024-02-01")
    seconds = time.perf_counter() - begin
    files = [store_dir / f.path for f in store.manifest.files if f.month == "2024-01"]
    begin = time.perf_counter()
    floor = pq.ParquetDataset(files).read()
    floor_seconds = time.perf_counter() - begin
    series = len(set(table.column("entity").to_pylist()))
    return {
        "series": series,
        "points": table.num_rows,
        "seconds": seconds,
        "floor_seconds": floor_seconds,
        "floor_points": floor.num_rows,
        "ratio_vs_floor": floor_seconds / seconds,
    }


def bench_window_features(store_dir: Path, entities: int) -> dict[str, float]:
    """Causal rolling features (1h and 1d windows) against pandas on the same series."""
    from perfml.featurestore import FeatureStore

    store = FeatureStore(store_dir, memory_limit="2GB")
    names = [f"host-{i:05d}" for i in range(entities)]
    stats = ("mean", "std", "min", "max", "p50", "p95")
    begin = time.perf_counter()
    features = store.window_features("5m", ["1h", "1d"], stats, metrics="cpu_util", entities=names)
    seconds = time.perf_counter() - begin
    frame = store.read(metrics="cpu_util", entities=names).to_pandas().set_index("ts")
    begin = time.perf_counter()
    grouped = frame.groupby("entity")["value"]
    for window in ("1h", "24h"):
        rolling = grouped.rolling(window)
        for name in ("mean", "std", "min", "max"):
            getattr(rolling, name)()
        rolling.quantile(0.5)
        rolling.quantile(0.95)
    floor_seconds = time.perf_counter() - begin
    return {
        "rows": features.num_rows,
        "features": len(features.column_names) - 4,
        "rows_per_s": features.num_rows / seconds,
        "pandas_rows_per_s": features.num_rows / floor_seconds,
        "ratio_vs_pandas": floor_seconds / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--dir", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument(
        "--worker", choices=["store", "floor", "stream", "read"], help=argparse.SUPPRESS
    )
    parser.add_argument("--points", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.points, args.dir)))
        return
    sizes = [1_000_000, 10_000_000] if args.quick else [1_000_000, 10_000_000, 100_000_000]
    base = Path(tempfile.mkdtemp(prefix="perfml-bench-", dir=args.dir))
    try:
        ingest = bench_ingest(sizes, base)
        read = bench_read(base / "store-10000000")
        streamed = bench_stream(base / f"store-{sizes[-1]}")
        windows = bench_window_features(base / "store-10000000", 20 if args.quick else 100)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    largest = ingest[-1]
    by_size = {int(r["points"]): r for r in ingest}
    figures = {
        "ingest": ingest,
        "ingest_points_per_s": largest["store_points_per_s"],
        "ingest_vs_parquet_floor": largest["ratio_vs_floor"],
        "ingest_points_largest": largest["points"],
        "peak_rss_mb_100m": by_size[100_000_000]["store_peak_rss_mb"]
        if 100_000_000 in by_size
        else None,
        "cost_growth_per_point_largest_vs_1m": largest["ns_per_point"]
        / by_size[1_000_000]["ns_per_point"],
        "read_one_month_1000_series": read,
        "window_features": windows,
        "stream": streamed,
    }
    print(
        f"{'points':>12} {'perfml pts/s':>14} {'floor pts/s':>14} {'ratio':>7} "
        f"{'peak RSS MB':>12} {'floor RSS MB':>13} {'ns/point':>9}"
    )
    for r in ingest:
        print(
            f"{int(r['points']):>12,} {r['store_points_per_s']:>14,.0f} "
            f"{r['floor_points_per_s']:>14,.0f} {r['ratio_vs_floor']:>7.2f} "
            f"{r['store_peak_rss_mb']:>12,.0f} {r['floor_peak_rss_mb']:>13,.0f} "
            f"{r['ns_per_point']:>9.1f}"
        )
    print(
        f"\none-month read: {read['series']:,} series, {read['points']:,} points in "
        f"{read['seconds']:.3f} s (pyarrow floor {read['floor_seconds']:.3f} s, "
        f"ratio {read['ratio_vs_floor']:.2f})"
    )
    print(
        f"window features: {windows['rows']:,} rows × {windows['features']} features at "
        f"{windows['rows_per_s']:,.0f} rows/s (pandas {windows['pandas_rows_per_s']:,.0f} rows/s, "
        f"ratio {windows['ratio_vs_pandas']:.2f})"
    )
    print(
        f"stream: {int(streamed['points']):,} points at {streamed['stream_points_per_s']:,.0f} "
        f"points/s, peak RSS {streamed['stream_peak_rss_mb']:,.0f} MB "
        f"(reading them all at once: {streamed['read_all_peak_rss_mb']:,.0f} MB)"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
