"""Real sources with data for every dashboard panel: a run history in SQLite (runs, one of
them failed), a registry with two versions and a promotion, a MemorySeries with a series for
every PromQL panel, alerts, the controller's decisions and a score log with incidents (see
:mod:`dashboard.anomaly_seeding`). Shared by the dashboard's unit tests and its browser
test."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dashboard import anomaly_seeding
from perfml.alerting.alerts import AlertTracker
from perfml.alerting.store import AlertStore
from perfml.dashboard.data import DashboardSources
from perfml.metadata import MetadataDatabase
from perfml.pipelines.history import RunHistory
from perfml.pipelines.states import JobRecord, JobState, Reason, RunRecord
from perfml.promql.series import MemorySeries, Sample
from perfml.registry import FilesystemArtifactStore, ModelRegistry

SCRAPE_MS = 15_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
NAMESPACE = "perfml"
SERVING_JOB = "perfml-serving"
FEATURES = ("cpu", "memory", "disk_io", "latency")
BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf")


@dataclass(frozen=True)
class Rule:
    """An alerting rule's identity, as the alert tracker reads it."""

    name: str
    for_: float = 0.0
    keep_firing_for: float = 0.0
    labels: dict[str, str] = field(default_factory=lambda: {"severity": "warning"})
    annotations: dict[str, str] = field(default_factory=dict)


def _job(run_id: str, task: str, at: float, states: Sequence[tuple[JobState, float]]) -> JobRecord:
    job = JobRecord.new(run_id, task, task, at=at)
    for state, moment in states:
        reason = Reason.ERROR if state is JobState.FAILED else None
        job = job.with_state(state, reason, at=moment)
    return job


def seed_history(database: MetadataDatabase, now_s: float) -> RunHistory:
    """Two runs of the training pipeline in the last hour: the first succeeded, the second
    failed at its train step."""
    history = RunHistory(database)
    t0 = now_s - 50 * 60
    ok = RunRecord("train-r1", "train", JobState.SUCCEEDED, created_at=t0, finished_at=t0 + 900)
    for job in (
        _job(
            "train-r1",
            "preprocess",
            t0,
            [(JobState.RUNNING, t0 + 30), (JobState.SUCCEEDED, t0 + 300)],
        ),
        _job(
            "train-r1",
            "train",
            t0 + 300,
            [(JobState.RUNNING, t0 + 320), (JobState.SUCCEEDED, t0 + 800)],
        ),
        _job(
            "train-r1",
            "evaluate",
            t0 + 800,
            [(JobState.RUNNING, t0 + 810), (JobState.SUCCEEDED, t0 + 900)],
        ),
    ):
        ok = ok.with_job(job)
    t1 = now_s - 20 * 60
    bad = RunRecord("train-r2", "train", JobState.FAILED, created_at=t1, finished_at=t1 + 500)
    for job in (
        _job(
            "train-r2",
            "preprocess",
            t1,
            [(JobState.RUNNING, t1 + 20), (JobState.SUCCEEDED, t1 + 200)],
        ),
        _job(
            "train-r2",
            "train",
            t1 + 200,
            [(JobState.RUNNING, t1 + 260), (JobState.FAILED, t1 + 500)],
        ),
    ):
        bad = bad.with_job(job)
    history.start_run(ok, runner_pid=os.getpid())
    history.start_run(bad, runner_pid=os.getpid())
    return history


def seed_registry(database: MetadataDatabase, root: Path) -> ModelRegistry:
    """Model ``cpu-anomaly`` with versions 1 and 2; production moved from 1 to 2."""
    registry = ModelRegistry(
        database,
        FilesystemArtifactStore(root / "artifacts"),
        actor="tester",
        cache_dir=root / "cache",
        deliver_in_background=False,
    )
    for number, f1 in ((1, 0.71), (2, 0.83)):
        artifact = root / f"model-{number}.bin"
        artifact.write_bytes(f"model {number}".encode())
        registry.register("cpu-anomaly", artifact, detector="iforest", metrics={"f1": f1})
    registry.promote("cpu-anomaly", 1, reason="first model")
    registry.promote("cpu-anomaly", 2, reason="better f1")
    registry.set_alias("cpu-anomaly", "staging", 2)
    return registry


def _grid(start_ms: int, end_ms: int, step_ms: int) -> np.ndarray:
    return np.arange(start_ms - (start_ms % step_ms) + step_ms, end_ms + 1, step_ms, dtype=np.int64)


def seed_series(now_ms: int) -> MemorySeries:
    """Scrapes every 15 s over the last two hours (jobs, inference), every hour over 30
    days (loaded versions), one sample a month over 400 days (drift, quality)."""
    store = MemorySeries()
    ts = _grid(now_ms - 2 * HOUR_MS, now_ms, SCRAPE_MS)
    seconds = (ts - ts[0]) / 1000.0
    rng = np.random.default_rng(7)
    for index, pod in enumerate(("train-r1-preprocess-1", "train-r1-train-1", "train-r2-train-1")):
        labels = {"namespace": NAMESPACE, "pod": pod, "container": pod.split("-")[2]}
        share = 0.4 + 0.3 * index
        store.extend("container_cpu_usage_seconds_total", labels, ts, seconds * share)
        memory = 2e8 + 5e7 * index + 1e7 * np.sin(seconds / 300)
        store.extend("container_memory_working_set_bytes", labels, ts, memory)
        store.extend("container_fs_reads_bytes_total", labels, ts, seconds * 2e5 * (index + 1))
        store.extend("container_fs_writes_bytes_total", labels, ts, seconds * 1e5 * (index + 1))
        store.extend("container_network_receive_bytes_total", labels, ts, seconds * 3e4)
        store.extend("container_network_transmit_bytes_total", labels, ts, seconds * 1e4)
    for step, (pending, running) in {"preprocess": (20.0, 180.0), "train": (60.0, 240.0)}.items():
        for phase, value in (("Pending", pending), ("Running", running)):
            labels = {"pipeline": "train", "step": step, "phase": phase}
            store.extend("perfml_job_phase_seconds", labels, ts, np.full(len(ts), value))
    up = np.ones(len(ts))
    up[-100:-90] = 0.0  # a short outage, 25 minutes ago
    store.extend("up", {"job": SERVING_JOB, "instance": "127.0.0.1:8080"}, ts, up)
    _seed_latency(store, ts, rng)
    for index, host in enumerate(("host-0001", "host-0002", "host-0003")):  # the live loop's
        labels = {"metric": "cpu_util", "entity": host, "model": "cpu"}
        score = rng.uniform(0.0, 0.2, len(ts))
        if index == 0:
            score[-400:-40] = 0.9  # anomalous for an hour and a half, until ten minutes ago
        store.extend("perfml_anomaly_score", labels, ts, score)
    store.extend("perfml_anomaly_threshold", {"model": "cpu"}, ts, np.full(len(ts), 0.5))
    scored = {"model": "cpu", "outcome": "scored"}
    store.extend("perfml_live_points_total", scored, ts, np.cumsum(np.full(len(ts), 3.0)))
    store.extend("perfml_model_loaded_version", {"model": "cpu-anomaly"}, *_loaded(now_ms))
    months = _grid(now_ms - 400 * DAY_MS, now_ms, 30 * DAY_MS)
    for index, feature in enumerate(FEATURES):
        drift = (
            0.02 + 0.03 * index * np.linspace(0, 1, len(months)) + rng.uniform(0, 0.01, len(months))
        )
        store.extend("perfml_feature_drift", {"feature": feature, "method": "kl"}, months, drift)
    quality = 0.85 - 0.1 * np.linspace(0, 1, len(months))
    labels = {"model": "cpu-anomaly", "version": "2", "metric": "f1"}
    store.extend("perfml_model_quality", labels, months, quality)
    return store


def _loaded(now_ms: int) -> tuple[np.ndarray, np.ndarray]:
    ts = _grid(now_ms - 30 * DAY_MS, now_ms, 60_000)
    return ts, np.where(ts < now_ms - 10 * DAY_MS, 1.0, 2.0)


def _seed_latency(store: MemorySeries, ts: np.ndarray, rng: np.random.Generator) -> None:
    bounds = np.array([float(b) for b in BUCKETS])
    base = {
        "deployment_name": "perfml",
        "predictor_name": "cpu-anomaly",
        "predictor_version": "2",
        "service": "predictions",
        "method": "infer",
    }
    for code, per_scrape in (("200", 300), ("500", 3)):
        latencies = rng.lognormal(np.log(0.02), 0.6, size=(len(ts), per_scrape))
        counts = (latencies[:, :, None] <= bounds[None, None, :]).sum(axis=1).cumsum(axis=0)
        labels = {**base, "code": code}
        for column, le in enumerate(BUCKETS):
            store.extend(
                "seldon_api_executor_server_requests_seconds_bucket",
                {**labels, "le": le},
                ts,
                counts[:, column].astype(float),
            )
        store.extend(
            "seldon_api_executor_server_requests_seconds_count",
            labels,
            ts,
            counts[:, -1].astype(float),
        )
        store.extend(
            "seldon_api_executor_server_requests_seconds_sum",
            labels,
            ts,
            latencies.sum(axis=1).cumsum(),
        )


def seed_alerts(database: MetadataDatabase, now_ms: int) -> AlertStore:
    """A job failure that fired and resolved, and a latency alert pending then firing now."""
    store = AlertStore(database)
    tracker = AlertTracker()
    failed = Rule("JobFailed", annotations={"summary": "job {{ $labels.job_name }} failed"})
    slow = Rule("HighInferenceLatency", for_=120.0, annotations={"summary": "p99 is slow"})
    job = [Sample({"job_name": "train-r2-train"}, 1.0)]
    latency = [Sample({"predictor_name": "cpu-anomaly"}, 0.42)]
    for minutes_ago, rule, samples in (
        (15, failed, job),
        (12, slow, latency),
        (10, slow, latency),
        (5, failed, []),
        (1, slow, latency),
    ):
        changed = tracker.update(rule, samples, now_ms - minutes_ago * 60_000)
        store.save_evaluation(changed, tracker.tracked())
    return store


def seeded_sources(root: Path, now_ms: int) -> DashboardSources:
    """Every source of the dashboard, with data for every panel."""
    database = MetadataDatabase(f"sqlite:///{root}/metadata.db")
    scores, labels = anomaly_seeding.small_log(root / "scores", now_ms)
    return DashboardSources(
        series=seed_series(now_ms),
        history=seed_history(database, now_ms / 1000),
        registry=seed_registry(database, root),
        alerts=seed_alerts(database, now_ms),
        decisions=anomaly_seeding.decision_log(database, now_ms),
        scores=scores,
        labels=labels,
    )


def close(sources: DashboardSources) -> None:
    """Close the metadata database the sources' parts share."""
    for part in (sources.history, sources.registry, sources.alerts, sources.decisions):
        if part is not None:
            part.database.close()
