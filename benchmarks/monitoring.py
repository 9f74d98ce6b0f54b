"""Monitoring: one embedded rule-evaluation round, and the cost of scraping the job metrics.

Claims measured:
- one evaluation round of the shipped rules (``perfml.alerting.rules.default_rules``) by the
  native PromQL evaluator over ~10,000 series shaped like perfml's own (pods'
  ``kube_pod_status_phase`` and times, resource requests and CPU counters, Seldon latency
  histograms per model and code, drift and quality gauges, ``up``), with 30 days of history in
  the feature store (one point per series every 15 minutes) and the last 30 minutes recorded
  in memory at the 15 s scrape interval, as a running recorder has them. Target: under 1 s.
  Floor: reading the same samples from the :class:`~perfml.recording.recorder.MetricsStore`
  without evaluating (every metric a rule names, over the 15 minutes the rules look back;
  ratio eval / floor). The same round right after a restart (memory empty: everything read
  from the feature store) is reported beside it;
- the scrape of perfml's job metrics ``/metrics`` (``JobMetricsCollector`` served by
  ``MetricsServer``) with 1,000 jobs in the run history (100 runs of 10 tasks, all in the
  exported window): ms per scrape (HTTP GET, median) and bytes; and perfml's own scrape of it
  (GET, parse, label). Floor: prometheus_client rendering the same number of plain gauge
  samples, served by the same server (ratio perfml / floor).

A real Prometheus evaluating the same rules on backfilled blocks is not measured here.

    python benchmarks/monitoring.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from perfml.featurestore import FeatureStore
from perfml.promql.series import Matcher
from perfml.recording.recorder import MetricsStore, entity_of
from perfml.recording.scrape import ScrapedSample, Scraper, ScrapeTarget

MINUTE = 60_000
DAY = 24 * 60 * MINUTE
SCRAPE_MS = 15_000
HISTORY_STEP_MS = 15 * MINUTE
MEMORY_MS = 30 * MINUTE
LOOKBACK_MS = 15 * MINUTE  # the longest range a shipped rule reads (10m) and the 5m lookback
SELDON_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Family:
    """Series of one metric: labels, and value = base + slope * seconds since the start."""

    name: str
    labels: list[dict[str, str]]
    base: np.ndarray
    slope: np.ndarray


def fleet(pods: int, models: int, features: int) -> list[Family]:
    """Series shaped like what perfml's recorder scrapes, about 10 per pod."""
    jobs = {"job": "perfml-jobs", "instance": "127.0.0.1:9464"}
    serving = {"job": "perfml-serving", "instance": "127.0.0.1:8080"}
    own = {"job": "perfml", "instance": "127.0.0.1:9465"}
    rng = np.random.default_rng(7)
    names = [f"train-{i // 10:04d}-step{i % 10}-0" for i in range(pods)]
    fate = rng.choice(["Succeeded", "Running", "Pending", "Failed"], pods, p=[0.8, 0.1, 0.05, 0.05])
    phases = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
    out = []

    def add(name: str, labels: list[dict[str, str]], base: Any, slope: Any = 0.0) -> None:
        n = len(labels)
        out.append(
            Family(
                name,
                labels,
                np.broadcast_to(base, n).astype(float),
                np.broadcast_to(slope, n).astype(float),
            )
        )

    pod = [{**jobs, "namespace": "perfml", "pod": p} for p in names]
    phase_labels = [{**p, "phase": ph} for p in pod for ph in phases]
    add(
        "kube_pod_status_phase",
        phase_labels,
        np.array([float(f == ph) for f in fate for ph in phases]),
    )
    add("kube_pod_start_time", pod, 1.7e9 + rng.uniform(0, 86_400, pods))
    requests = [
        {**p, "container": "step", "node": "runner", "resource": r, "unit": u}
        for p in pod
        for r, u in (("cpu", "core"), ("memory", "byte"))
    ]
    add("kube_pod_container_resource_requests", requests, np.tile([0.5, 2**30], pods))
    add("container_cpu_usage_seconds_total", [{**p, "container": "step"} for p in pod], 0.0, 0.2)
    failed = [n for n, f in zip(names, fate, strict=True) if f == "Failed"]
    add(
        "kube_job_failed",
        [
            {**jobs, "namespace": "perfml", "job_name": f[:-2], "condition": c}
            for f in failed
            for c in ("true", "false", "unknown")
        ],
        np.tile([1.0, 0.0, 0.0], len(failed)),
    )
    add(
        "kube_node_status_allocatable",
        [
            {**jobs, "node": "runner", "resource": r, "unit": u}
            for r, u in (("cpu", "core"), ("memory", "byte"))
        ],
        np.array([64.0, 2.0**38]),
    )
    predictor = [
        {
            **serving,
            "deployment_name": "perfml",
            "predictor_name": f"model-{m}",
            "predictor_version": "1",
            "service": "predictions",
            "method": "infer",
            "code": code,
        }
        for m in range(models)
        for code in ("200", "500")
    ]
    rate = np.array([20.0 if p["code"] == "200" else 0.2 for p in predictor])
    cdf = 1 - np.exp(-np.array([*SELDON_BUCKETS, np.inf]) / 0.05)
    add(
        "seldon_api_executor_server_requests_seconds_bucket",
        [{**p, "le": le} for p in predictor for le in [*map(str, SELDON_BUCKETS), "+Inf"]],
        0.0,
        np.outer(rate, cdf).ravel(),
    )
    add("seldon_api_executor_server_requests_seconds_count", predictor, 0.0, rate)
    add("seldon_api_executor_server_requests_seconds_sum", predictor, 0.0, rate * 0.05)
    versions = [{**serving, "model": f"model-{m}", "version": "1"} for m in range(models)]
    add("perfml_model_load_failures_total", versions, 0.0)
    add(
        "perfml_feature_drift",
        [
            {**own, "feature": f"f{f}", "method": m}
            for f in range(features)
            for m in ("kl", "psi", "js", "wasserstein")
        ],
        rng.uniform(0, 0.05, features * 4),
    )
    add(
        "perfml_model_quality",
        [
            {**own, "model": f"model-{m}", "version": "1", "metric": q}
            for m in range(models)
            for q in ("f1", "precision", "recall", "nab")
        ],
        rng.uniform(0.6, 0.9, models * 4),
    )
    add("up", [jobs, serving, own], 1.0)
    return out


def write_history(store: FeatureStore, families: list[Family], start_ms: int, end_ms: int) -> int:
    """One point per series every HISTORY_STEP_MS in ``[start_ms, end_ms)``, one write per day."""
    points = 0
    for day in range(start_ms, end_ms, DAY):
        ts = np.arange(day, min(day + DAY, end_ms), HISTORY_STEP_MS, dtype=np.int64)
        tables, labels = [], {}
        for family in families:
            entities = [entity_of(tuple(sorted(lbl.items()))) for lbl in family.labels]
            for entity, lbl in zip(entities, family.labels, strict=True):
                labels[(family.name, entity)] = lbl
            values = (
                family.base[:, None] + family.slope[:, None] * ((ts - start_ms) / 1000)[None, :]
            )
            n = len(entities)
            tables.append(
                pa.table(
                    {
                        "metric": pa.DictionaryArray.from_arrays(
                            pa.array(np.zeros(n * len(ts), np.int32)), pa.array([family.name])
                        ),
                        "entity": pa.DictionaryArray.from_arrays(
                            pa.array(np.repeat(np.arange(n, dtype=np.int32), len(ts))),
                            pa.array(entities),
                        ),
                        "ts": pa.array(np.tile(ts, n)).cast(pa.timestamp("ms", tz="UTC")),
                        "value": pa.array(values.ravel()),
                    }
                )
            )
        points += store.write(tables, labels=labels).points_added
    return points


def record_recent(
    metrics: MetricsStore, families: list[Family], start_ms: int, first_ms: int, end_ms: int
) -> int:
    """Record the scrapes of ``(first_ms, end_ms]`` as the recorder does, one append per scrape."""
    keyed = [(family, [tuple(sorted(lbl.items())) for lbl in family.labels]) for family in families]
    rounds = 0
    for at in range(first_ms + SCRAPE_MS, end_ms + 1, SCRAPE_MS):
        seconds = (at - start_ms) / 1000
        samples = [
            ScrapedSample(family.name, labels, value)
            for family, keys in keyed
            for labels, value in zip(
                keys, (family.base + family.slope * seconds).tolist(), strict=True
            )
        ]
        metrics.append(samples, at)
        rounds += 1
    return rounds


def timed(call: Callable[[], object], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        begin = time.perf_counter()
        call()
        samples.append(time.perf_counter() - begin)
    return samples


def evaluation(scratch: Path, pods: int, days: int, repeats: int) -> dict[str, Any] | str:
    """Seconds of one round of the shipped rules, of the floor, and after a restart."""
    try:
        from perfml.alerting.rules import default_rules
        from perfml.promql import evaluate, metric_names, parse
    except ImportError as error:
        return f"the PromQL evaluator is not importable yet ({error})"
    families = fleet(pods, models=max(2, pods // 50), features=max(5, pods // 20))
    series = sum(len(f.labels) for f in families)
    now = (int(time.time() * 1000) // DAY) * DAY
    start, seam = now - days * DAY, now - MEMORY_MS
    store = FeatureStore(scratch / "store")
    begin = time.perf_counter()
    stored = write_history(store, families, start, seam)
    write_s = time.perf_counter() - begin
    metrics = MetricsStore(store)
    rounds = record_recent(metrics, families, start, seam, now)
    exprs = [parse(rule.expr) for rule in default_rules() if rule.enabled]
    names = sorted(set().union(*(metric_names(e) for e in exprs)))

    def round_() -> None:
        for expr in exprs:
            evaluate(expr, now, metrics)

    def floor() -> None:
        for name in names:
            list(metrics.select([Matcher("__name__", "=", name)], now - LOOKBACK_MS, now))

    round_()  # warm-up
    eval_s = statistics.median(timed(round_, repeats))
    floor_s = statistics.median(timed(floor, repeats))
    metrics.flush()  # the recent samples too, then a restart: memory is empty
    restarted = MetricsStore(FeatureStore(scratch / "store"))
    restart_s = statistics.median(
        timed(lambda: [evaluate(e, now, restarted) for e in exprs], max(1, repeats // 2))
    )
    return {
        "series": series,
        "rules": len(exprs),
        "days": days,
        "points_in_store": stored,
        "history_write_s": write_s,
        "recorded_scrapes": rounds,
        "eval_round_s": eval_s,
        "floor_s": floor_s,
        "eval_round_after_restart_s": restart_s,
    }


# -- scraping the job metrics ----------------------------------------------------------------


def job_history(scratch: Path, runs: int, tasks: int) -> Any:
    from perfml.metadata import MetadataDatabase, sqlite_url
    from perfml.pipelines.history import RunHistory
    from perfml.pipelines.states import JobRecord, JobState, Reason, ResourceUsage, RunRecord

    history = RunHistory(MetadataDatabase(sqlite_url(scratch / "runs.db")))
    t0 = time.time() - 86_400
    for r in range(runs):
        run_id = f"train-{r:04d}"
        at = t0 + r * 600
        run = RunRecord(run_id, "train", JobState.RUNNING, created_at=at)
        for t in range(tasks):
            job = JobRecord.new(run_id, f"step{t}", f"step{t}", at=at)
            job = job.with_state(JobState.RUNNING, at=at + 1)
            failed = (r * tasks + t) % 20 == 0
            job = job.with_state(
                JobState.FAILED if failed else JobState.SUCCEEDED,
                Reason.BACKOFF_LIMIT_EXCEEDED if failed else Reason.COMPLETED,
                at=at + 30,
            )
            usage = ResourceUsage(cpu_seconds=12.5, peak_memory_bytes=2**28, io_read_bytes=4096)
            run = run.with_job(replace(job, usage=usage))
        history.start_run(run, os.getpid())
        history.save_run(run.with_state(JobState.SUCCEEDED, at=at + 40))
    return history


class PlainGauges(Collector):
    """``count`` plain gauge samples with two labels: the floor of any exporter."""

    def __init__(self, count: int) -> None:
        self.count = count

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("plain_gauge", "A plain gauge.", labels=["namespace", "pod"])
        for i in range(self.count):
            family.add_metric(["perfml", f"pod-{i}"], float(i))
        yield family


def get_ms(url: str, repeats: int) -> tuple[float, int]:
    with httpx.Client() as client:
        body = client.get(url).content  # warm-up
        samples = timed(lambda: client.get(url).raise_for_status(), repeats)
    return statistics.median(samples) * 1000, len(body)


def scraping(scratch: Path, runs: int, tasks: int, repeats: int) -> dict[str, Any]:
    from perfml.pipelines.dsl import Resources
    from perfml.pipelines.job_metrics import Window
    from perfml.pipelines.metrics_server import MetricsServer, serve_metrics

    history = job_history(scratch, runs, tasks)
    with serve_metrics(
        history, Resources(cpu=8, memory="32Gi"), window=Window(max_runs=runs)
    ) as server:
        ms, size = get_ms(server.url, repeats)
        with Scraper() as scraper:
            target = ScrapeTarget("perfml-jobs", server.url)
            results = []
            own = timed(lambda: results.append(scraper.scrape(target, 0)), repeats)
        samples = results[-1].scraped
    registry = CollectorRegistry()
    registry.register(PlainGauges(samples))
    with MetricsServer(registry) as plain:
        floor_ms, floor_size = get_ms(plain.url, repeats)
    history.database.close()
    return {
        "jobs": runs * tasks,
        "samples": samples,
        "scrape_ms": ms,
        "scrape_bytes": size,
        "perfml_scrape_and_parse_ms": statistics.median(own) * 1000,
        "floor_ms": floor_ms,
        "floor_bytes": floor_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="1,300 series over 3 days: under a minute"
    )
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    pods, days, repeats = (100, 3, 5) if args.quick else (1_000, 30, 9)
    runs, tasks = 100, 10
    with tempfile.TemporaryDirectory(prefix="perfml-bench-") as tmp:
        scratch = Path(tmp)
        evaluated = evaluation(scratch, pods, days, repeats)
        scraped = scraping(scratch, runs, tasks, repeats)

    figures: dict[str, Any] = {}
    rows: list[tuple[str, str]] = []
    if isinstance(evaluated, str):
        figures["eval_round_s"] = None
        rows.append(("evaluation round", f"skipped: {evaluated}"))
    else:
        figures["eval_round_s"] = round(evaluated["eval_round_s"], 4)
        figures["eval_floor_s"] = round(evaluated["floor_s"], 4)
        figures["eval_vs_floor"] = round(evaluated["eval_round_s"] / evaluated["floor_s"], 2)
        figures["eval_round_after_restart_s"] = round(evaluated["eval_round_after_restart_s"], 4)
        figures["eval_series"] = evaluated["series"]
        figures["eval_points_in_store"] = evaluated["points_in_store"]
        shape = f"{evaluated['rules']} rules, {evaluated['series']:,} series, {evaluated['days']} d"
        rows += [
            (
                f"history written ({evaluated['points_in_store']:,} points)",
                f"{evaluated['history_write_s']:.1f} s",
            ),
            (f"eval round, {shape} (target < 1 s)", f"{evaluated['eval_round_s'] * 1000:.0f} ms"),
            ("floor: select the same samples", f"{evaluated['floor_s'] * 1000:.0f} ms"),
            ("ratio eval / floor", f"{figures['eval_vs_floor']}"),
            (
                "eval round after a restart (from the store)",
                f"{evaluated['eval_round_after_restart_s'] * 1000:.0f} ms",
            ),
        ]
    jobs = scraped["jobs"]
    figures[f"scrape_ms_{jobs}_jobs"] = round(scraped["scrape_ms"], 2)
    figures[f"scrape_bytes_{jobs}_jobs"] = scraped["scrape_bytes"]
    figures["scrape_samples"] = scraped["samples"]
    figures["scrape_floor_ms"] = round(scraped["floor_ms"], 2)
    figures["scrape_vs_floor"] = round(scraped["scrape_ms"] / scraped["floor_ms"], 2)
    figures["perfml_scrape_and_parse_ms"] = round(scraped["perfml_scrape_and_parse_ms"], 2)
    rows += [
        (
            f"GET /metrics, {jobs:,} jobs ({scraped['samples']:,} samples)",
            f"{scraped['scrape_ms']:.1f} ms, {scraped['scrape_bytes']:,} B",
        ),
        (
            f"floor: {scraped['samples']:,} plain gauges",
            f"{scraped['floor_ms']:.1f} ms, {scraped['floor_bytes']:,} B",
        ),
        ("ratio perfml / floor", f"{figures['scrape_vs_floor']}"),
        (
            "perfml's scrape of it (GET, parse, label)",
            f"{scraped['perfml_scrape_and_parse_ms']:.1f} ms",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
