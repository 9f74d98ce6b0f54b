"""Drift measures: KL against Evidently and scipy, and histograms of a whole store at scale.

Claims measured:
- monthly KL of 100 features × 1M values per window (reference and current): perfml's
  default binning (:func:`perfml.drift.compare`, edges from the reference's quantiles) against
  Evidently's per-column ``ValueDrift(method="kl_div")`` on the same data, as a ratio
  (``kl_speedup_vs_evidently``; target ≥ 20). Evidently 0.7.23 runs in its own virtual
  environment (``~/.cache/perfml-bench-evidently``, with ``pandas<3``, created once and
  reused) as a subprocess that reads the same Parquet files and times its ``Report.run`` alone;
  perfml is timed on the same arrays in memory;
- exactness: perfml's ``binning="evidently"`` against Evidently's own values
  (``max_abs_diff_vs_evidently``, target ≤ 1e-9), and perfml's KL against
  ``scipy.stats.entropy`` of the same smoothed shares, counted independently with
  ``np.digitize`` (``max_abs_diff_vs_scipy``);
- scale: per-series histograms and KL of 10,000 series × 12 months of hourly points written
  with ``FeatureStore.write`` (``drift_report(per_entity=True)``: one DuckDB scan for the
  reference edges, one for every window), in a fresh process for its own peak RSS; series/s,
  the extrapolation to 100 million series over N workers (sharded by entity hash), and the
  growth from 6 to 12 months (time should double, peak RSS stay put).

    python benchmarks/drift.py [--quick] [--json FILE] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
EVIDENTLY_VENV = CACHE / "perfml-bench-evidently"
EVIDENTLY_VERSION = "0.7.23"
START_MS = 1_704_067_200_000  # 2024-01-01
HOUR_MS = 3_600_000
TARGET_SERIES = 100_000_000
WORKERS = 100

EVIDENTLY_RUN = """
import json, sys, time
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.metrics import ValueDrift

reference = pd.read_parquet(sys.argv[1])
current = pd.read_parquet(sys.argv[2])
columns = list(reference.columns)
definition = DataDefinition(numerical_columns=columns)
report = Report([ValueDrift(column=c, method="kl_div") for c in columns])
ref = Dataset.from_pandas(reference, data_definition=definition)
cur = Dataset.from_pandas(current, data_definition=definition)
begin = time.perf_counter()
snapshot = report.run(cur, ref)
seconds = time.perf_counter() - begin
values = [float(m["value"]) for m in snapshot.dict()["metrics"]]
print(json.dumps({"seconds": seconds, "values": dict(zip(columns, values))}))
"""


def evidently_python() -> tuple[Path, bool]:
    """The Python of the Evidently environment, and whether it had to be created now."""
    python = EVIDENTLY_VENV / "bin" / "python"
    check = [
        str(python),
        "-c",
        f"import evidently; assert evidently.__version__ == {EVIDENTLY_VERSION!r}",
    ]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python, False
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(EVIDENTLY_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, f"evidently=={EVIDENTLY_VERSION}", "pandas<3", "pyarrow"], check=True)
    return python, True


def features(count: int, rows: int, seed: int, shifted: bool) -> dict[str, np.ndarray]:
    """Fleet-like feature columns: utilisations, heavy-tailed rates and latencies, counts.

    Every fourth column of the current window moves (a load change); the others are drawn
    again from the reference's distribution.
    """
    rng = np.random.default_rng(seed)
    columns = {}
    for i in range(count):
        load = 1.3 if shifted and i % 4 == 0 else 1.0
        kind = i % 4
        if kind == 0:
            values = np.clip(rng.normal(35 * load, 12, rows), 0, 100).round(3)
        elif kind == 1:
            values = rng.lognormal(np.log(2e6 * load), 0.8, rows).round(0)
        elif kind == 2:
            values = (8 + rng.gamma(2.0, 4.0 * load, rows)).round(2)
        else:
            values = rng.poisson(3.0 * load, rows).astype(np.float64)  # few distinct values
        columns[f"f{i:03d}"] = values
    return columns


def write_window(columns: dict[str, np.ndarray], path: Path) -> None:
    pq.write_table(pa.table(columns), path)


def bench_kl(count: int, rows: int, scratch: Path) -> dict[str, Any]:
    from scipy import stats

    from perfml.drift import compare
    from perfml.drift.histograms import BinEdges
    from perfml.drift.measures import smoothed_shares

    ref_path, cur_path = scratch / "reference.parquet", scratch / "current.parquet"
    write_window(features(count, rows, 1, shifted=False), ref_path)
    write_window(features(count, rows, 2, shifted=True), cur_path)
    python, created = evidently_python()
    done = subprocess.run(
        [str(python), "-c", EVIDENTLY_RUN, str(ref_path), str(cur_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"Evidently failed:\n{done.stderr}")
    evidently = json.loads(done.stdout.strip().splitlines()[-1])
    reference = {k: v.to_numpy() for k, v in zip(*_columns(ref_path), strict=True)}
    current = {k: v.to_numpy() for k, v in zip(*_columns(cur_path), strict=True)}
    begin = time.perf_counter()
    ours = {name: compare(reference[name], current[name], ["kl"])["kl"] for name in reference}
    seconds = time.perf_counter() - begin
    same = {
        name: compare(reference[name], current[name], ["kl"], binning="evidently")["kl"]
        for name in reference
    }
    scipy_diff = 0.0
    for name in reference:
        edges = BinEdges.from_reference(reference[name])
        p = smoothed_shares(
            np.bincount(np.digitize(reference[name], edges.array), minlength=edges.bins)
        )
        q = smoothed_shares(
            np.bincount(np.digitize(current[name], edges.array), minlength=edges.bins)
        )
        scipy_diff = max(scipy_diff, abs(ours[name] - float(stats.entropy(q, p))))
    evidently_diff = max(abs(same[n] - evidently["values"][n]) for n in reference)
    moved = [n for i, n in enumerate(sorted(reference)) if i % 4 == 0]
    return {
        "features": count,
        "rows_per_window": rows,
        "perfml_seconds": seconds,
        "evidently_seconds": evidently["seconds"],
        "kl_speedup_vs_evidently": evidently["seconds"] / seconds,
        "max_abs_diff_vs_evidently": evidently_diff,
        "max_abs_diff_vs_scipy": scipy_diff,
        "flagged_moved_features": sum(ours[n] > 0.1 for n in moved),
        "moved_features": len(moved),
        "flagged_stable_features": sum(ours[n] > 0.1 for n in reference if n not in moved),
        "evidently_env_created": created,
    }


def _columns(path: Path) -> tuple[list[str], list[Any]]:
    table = pq.read_table(path)
    return table.column_names, table.columns


def write_store(target: Path, entities: int, metrics: int, months: int) -> int:
    """Hourly fleet-like points of ``entities × metrics`` series over ``months`` 30-day months,
    written through FeatureStore.write a block of entities at a time."""
    from perfml.featurestore import FeatureStore

    store = FeatureStore(target, memory_limit="2GB")
    hours = months * 30 * 24
    ticks = START_MS + HOUR_MS * np.arange(hours, dtype=np.int64)
    daily = np.sin(2 * np.pi * (ticks % 86_400_000) / 86_400_000)
    rng = np.random.default_rng(0)
    block = max(1, 2_000_000 // (hours * metrics))
    written = 0
    for first in range(0, entities, block):
        names = [f"host-{i:05d}" for i in range(first, min(entities, first + block))]
        tables = []
        for metric in range(metrics):
            level = rng.uniform(10, 60, (len(names), 1))
            values = level * (1 + 0.3 * daily) + rng.normal(0, 3, (len(names), hours))
            tables.append(
                pa.table(
                    {
                        "metric": pa.array(np.full(len(names) * hours, f"metric_{metric:02d}")),
                        "entity": pa.array(np.repeat(names, hours)),
                        "ts": pa.array(np.tile(ticks, len(names))).cast(
                            pa.timestamp("ms", tz="UTC")
                        ),
                        "value": values.round(3).ravel(),
                    }
                )
            )
        written += store.write(pa.concat_tables(tables)).points_added
    return written


def worker(target: Path, months: int) -> dict[str, float]:
    """Per-series KL of every month after the first, of the store at ``target``."""
    from datetime import UTC, datetime, timedelta

    from perfml.drift import between, drift_report
    from perfml.featurestore import FeatureStore

    store = FeatureStore(target, memory_limit="2GB")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    reference = between(start, start + timedelta(days=30))
    end = start + timedelta(days=30 * months)
    begin = time.perf_counter()
    report = drift_report(store, reference, methods=["kl"], per_entity=True, end=end)
    seconds = time.perf_counter() - begin
    series = len({(r.feature, r.entity) for r in report.records})
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "series": series,
        "months": months,
        "windows": len(report.windows),
        "seconds": seconds,
        "peak_rss_mb": peak_kb / 1024,
    }


def measure(target: Path, months: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", "--months", str(months), "--dir", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"drift worker for {months} months failed:\n{done.stderr}")
    return dict(json.loads(done.stdout))


def bench_scale(entities: int, metrics: int, base: Path) -> dict[str, Any]:
    target = base / "store"
    begin = time.perf_counter()
    points = write_store(target, entities, metrics, 12)
    write_seconds = time.perf_counter() - begin
    half = measure(target, 6)
    full = measure(target, 12)
    per_s = full["series"] / full["seconds"]
    return {
        "series": full["series"],
        "points": points,
        "write_seconds": write_seconds,
        "months_12": full,
        "months_6": half,
        "series_per_s": per_s,
        "time_growth_6_to_12_months": full["seconds"] / half["seconds"],
        "rss_growth_6_to_12_months": full["peak_rss_mb"] / half["peak_rss_mb"],
        "extrapolated_hours_100m_series": TARGET_SERIES / (per_s * WORKERS) / 3600,
        "extrapolation_workers": WORKERS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--dir", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--months", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.dir, args.months)))
        return
    count, rows = (20, 100_000) if args.quick else (100, 1_000_000)
    entities, metrics = (100, 10) if args.quick else (1_000, 10)
    base = Path(tempfile.mkdtemp(prefix="perfml-bench-", dir=args.dir))
    try:
        kl = bench_kl(count, rows, base)
        scale = bench_scale(entities, metrics, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    figures = {
        "kl": kl,
        "scale": scale,
        "kl_speedup_vs_evidently": kl["kl_speedup_vs_evidently"],
        "max_abs_diff_vs_scipy": kl["max_abs_diff_vs_scipy"],
        "max_abs_diff_vs_evidently": kl["max_abs_diff_vs_evidently"],
        "series_per_s": scale["series_per_s"],
    }
    print(f"{'monthly KL':<28} {'features':>9} {'rows/window':>12} {'seconds':>9} {'ratio':>7}")
    print(
        f"{'perfml (quantile bins)':<28} {count:>9} {rows:>12,} {kl['perfml_seconds']:>9.2f} "
        f"{kl['kl_speedup_vs_evidently']:>7.1f}"
    )
    name = "Evidently ValueDrift kl_div"
    print(f"{name:<28} {count:>9} {rows:>12,} {kl['evidently_seconds']:>9.2f}")
    print(
        "\nmax |perfml - Evidently| (binning='evidently'): "
        f"{kl['max_abs_diff_vs_evidently']:.2e}; "
        f"max |perfml - scipy.stats.entropy|: {kl['max_abs_diff_vs_scipy']:.2e}; "
        f"moved features flagged {kl['flagged_moved_features']}/{kl['moved_features']}, "
        f"stable flagged {kl['flagged_stable_features']}"
    )
    print(
        f"\n{'store scale':<12} {'series':>8} {'months':>7} {'seconds':>9} {'series/s':>10} "
        f"{'peak RSS MB':>12}"
    )
    for run in (scale["months_6"], scale["months_12"]):
        print(
            f"{'':<12} {int(run['series']):>8,} {int(run['months']):>7} {run['seconds']:>9.2f} "
            f"{run['series'] / run['seconds']:>10,.0f} {run['peak_rss_mb']:>12,.0f}"
        )
    print(
        f"\n6 → 12 months: time ×{scale['time_growth_6_to_12_months']:.2f}, peak RSS "
        f"×{scale['rss_growth_6_to_12_months']:.2f}; {scale['points']:,} points written in "
        f"{scale['write_seconds']:.1f} s. Extrapolation: 100 million series × 12 months at "
        f"{scale['series_per_s']:,.0f} series/s per worker over {WORKERS} workers (shards by "
        f"entity hash) ≈ {scale['extrapolated_hours_100m_series']:.1f} h."
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
