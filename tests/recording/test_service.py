"""The embedded monitoring service scrapes real endpoints, records into the workspace's
feature store and fires the shipped rules, across restarts."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.registry import Collector

from perfml.alerting.alerts import Alert, AlertState
from perfml.config import (
    AlertRuleSettings,
    ConfigError,
    MonitoringSettings,
    ServingSettings,
    Settings,
    TargetSettings,
    load_settings,
)
from perfml.featurestore import FeatureStore
from perfml.pipelines import Pipeline, Task
from perfml.pipelines.metrics_server import MetricsServer
from perfml.promql.series import Matcher, Series
from perfml.recording.recorder import MetricsStore
from perfml.recording.scrape import RegistryTarget, ScrapeTarget
from perfml.recording.service import MonitoringService, ServiceClosedError
from perfml.workspace import Workspace
from pipelines import steps

T0 = 1_800_000_000.0
"""A fixed start for the tests that drive the clock by hand."""
END_MS = 4_000_000_000_000
"""Later than any sample of these tests (2096)."""


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def make_settings(
    workspace: Path, serving_port: int, interval: str = "15s", **monitoring: Any
) -> Settings:
    return Settings(
        workspace=workspace,
        serving=ServingSettings(port=serving_port),
        monitoring=MonitoringSettings(
            scrape_interval=interval, evaluation_interval=interval, **monitoring
        ),
    )


def fail_a_job(settings: Settings, run_id: str = "nightly-r1") -> None:
    """Run, for real, a pipeline whose one task exits with an error, into the workspace's
    run history."""
    with Workspace(settings) as workspace, workspace.runner(environ={}) as runner:
        pipeline = Pipeline("nightly", [Task("train", steps.crash, {"message": "bad token"})])
        run = runner.run(pipeline, run_id=run_id)
    assert run.jobs["train"].state.value == "Failed"


def rules_firing(alerts: Iterable[Alert]) -> dict[str, dict[str, str]]:
    return {a.rule: dict(a.labels) for a in alerts if a.state is AlertState.FIRING}


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}; last: {found!r}")
        time.sleep(0.05)


OpenService = Callable[..., MonitoringService]


@pytest.fixture
def monitoring() -> Iterator[OpenService]:
    """``monitoring(settings, **options)``: the monitoring service of a workspace of its own
    (as a process of its own would build it); the workspaces are closed after the test."""
    workspaces: list[Workspace] = []

    def open_service(settings: Settings, **options: Any) -> MonitoringService:
        workspace = Workspace(settings)
        workspaces.append(workspace)
        return workspace.monitoring(**options)

    yield open_service
    for workspace in workspaces:
        workspace.close()


@pytest.fixture
def serving_endpoint() -> Iterator[MetricsServer]:
    """A stand-in for the inference server's /metrics on loopback: Seldon's histogram."""
    registry = CollectorRegistry()
    latency = Histogram(
        "seldon_api_executor_server_requests_seconds",
        "Time to answer.",
        ["deployment_name", "predictor_name", "predictor_version", "service", "method", "code"],
        buckets=(0.005, 0.1, 1.0),
        registry=registry,
    )
    latency.labels("perfml", "cpu", "1", "predictions", "infer", "200").observe(0.004)
    with MetricsServer(registry) as server:
        yield server


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def guarded_endpoint() -> Iterator[int]:
    """A /metrics that answers only requests carrying ``Bearer s3cret``; yields its port."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("HTTP_AUTHORIZATION") != "Bearer s3cret":
            start_response("401 Unauthorized", [("Content-Type", "text/plain")])
            return [b"no\n"]
        start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4")])
        return [b"# TYPE guarded gauge\nguarded 1\n"]

    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_failing_job_fires_job_failed_through_the_running_service(
    tmp_path: Path, serving_endpoint: MetricsServer, monitoring: OpenService
) -> None:
    settings = make_settings(tmp_path / "ws", serving_endpoint.port, "200ms")
    fail_a_job(settings)
    seen: list[Alert] = []
    with monitoring(settings, on_transition=seen.append) as service:
        firing = wait_for(
            lambda: rules_firing(service.alerts()).get("JobFailed"), 10, "JobFailed to fire"
        )
        assert firing == {
            "alertname": "JobFailed",
            "condition": "true",  # kube-state-metrics: the Failed condition holds
            "instance": "127.0.0.1:9102",  # where the exported prometheus.yml scrapes the jobs
            "job": "perfml-jobs",
            "job_name": "nightly-r1-train",
            "namespace": "perfml",
            "severity": "warning",
            "team": "perfml",
        }
        up = service.metrics.select([Matcher("__name__", "=", "up")], 0, END_MS)
        assert {s.labels["job"]: s.values[-1] for s in up} == {
            "perfml-serving": 1.0,
            "perfml-jobs": 1.0,
        }
    assert [(a.rule, a.state) for a in seen if a.rule == "JobFailed"] == [
        ("JobFailed", AlertState.FIRING)
    ]


def test_stop_flushes_what_was_recorded_to_the_telemetry_store(
    tmp_path: Path, serving_endpoint: MetricsServer, monitoring: OpenService
) -> None:
    settings = make_settings(tmp_path / "ws", serving_endpoint.port, flush_interval="5m")
    clock = Clock()
    service = monitoring(settings, clock=clock)
    service.scrape_now()
    clock.now += 15
    service.scrape_now()
    stored = MetricsStore(FeatureStore(settings.telemetry_path))
    latency = [Matcher("__name__", "=", "seldon_api_executor_server_requests_seconds_count")]
    assert stored.select(latency, 0, END_MS) == []  # the flush is not due yet
    service.stop()
    service.stop()  # stopping again does nothing
    (series,) = stored.select(latency, 0, END_MS)
    assert series.labels["instance"] == serving_endpoint.address
    assert series.ts.tolist() == [T0 * 1000, (T0 + 15) * 1000]
    assert series.values.tolist() == [1.0, 1.0]
    with pytest.raises(ServiceClosedError):
        service.start()


def test_a_restart_keeps_the_alerts_and_their_for_clocks(
    tmp_path: Path, monitoring: OpenService
) -> None:
    nothing_listens = free_port()
    # the clock is T0, weeks after the job really failed: keep it in the job metrics that long
    settings = make_settings(tmp_path / "ws", nothing_listens, finished_jobs_ttl="400d")
    fail_a_job(settings)
    clock = Clock()
    first = monitoring(settings, clock=clock)
    first.scrape_now()
    first.evaluate_now()
    before = {a.rule: a for a in first.alerts()}
    assert before["JobFailed"].state is AlertState.FIRING
    assert before["InferenceServiceDown"].state is AlertState.PENDING  # for: 1m
    first.stop()

    clock.now += 61
    second = monitoring(settings, clock=clock)
    try:
        assert {a.rule: a for a in second.alerts()} == before  # restored, before evaluating
        second.scrape_now()
        changed = second.evaluate_now()
    finally:
        second.stop()
    # the down server's `for` counted from the first service's evaluation: it fires now;
    # JobFailed was firing already, so it is not a transition (nor notified again)
    assert [(a.rule, a.state, a.active_at_ms) for a in changed] == [
        ("InferenceServiceDown", AlertState.FIRING, T0 * 1000)
    ]


def test_one_failing_target_does_not_stop_the_others_nor_the_loops(
    tmp_path: Path, serving_endpoint: MetricsServer, monitoring: OpenService
) -> None:
    class Broken(Collector):
        def collect(self) -> Iterator[Any]:
            raise RuntimeError("the database is locked")

    settings = make_settings(tmp_path / "ws", serving_endpoint.port, "100ms")
    with monitoring(settings, extra_registries=[Broken()]) as service:

        def rounds() -> dict[str, Series] | None:
            up = service.metrics.select([Matcher("__name__", "=", "up")], 0, END_MS)
            by_job = {s.labels["job"]: s for s in up}
            return by_job if "perfml" in by_job and len(by_job["perfml"].ts) >= 3 else None

        by_job = wait_for(rounds, 10, "three scrape rounds")
        results = service.scrape_now()
    assert by_job["perfml"].values.tolist()[:3] == [0.0, 0.0, 0.0]
    assert by_job["perfml-serving"].values.tolist()[:3] == [1.0, 1.0, 1.0]
    (broken,) = [r for r in results if r.job == "perfml"]
    assert "the database is locked" in (broken.error or "")
    assert service.last_error is None  # no evaluation round failed as a whole


def test_default_targets_follow_the_settings(
    tmp_path: Path, guarded_endpoint: int, monkeypatch: pytest.MonkeyPatch, monitoring: OpenService
) -> None:
    monkeypatch.setenv("PERFML_SERVING_TOKEN", "s3cret")
    settings = Settings(
        workspace=tmp_path / "ws",
        serving=ServingSettings(host="0.0.0.0", port=guarded_endpoint),
        monitoring=MonitoringSettings(
            jobs_metrics="127.0.0.1:9999",
            targets=(
                TargetSettings(
                    job="node", url="http://127.0.0.1:9100/metrics", labels={"team": "perf"}
                ),
            ),
        ),
    )
    with Workspace(settings) as workspace:
        serving, jobs, node = workspace.monitoring_targets()
    assert isinstance(serving, ScrapeTarget)
    assert isinstance(jobs, ScrapeTarget)  # jobs_metrics is set: scraped over HTTP
    assert isinstance(node, ScrapeTarget)
    assert (serving.job, serving.url, serving.bearer_token) == (
        "perfml-serving", f"http://127.0.0.1:{guarded_endpoint}/metrics", "s3cret",
    )  # fmt: skip
    assert (jobs.job, jobs.url) == ("perfml-jobs", "http://127.0.0.1:9999/metrics")
    assert (node.job, dict(node.labels)) == ("node", {"team": "perf"})

    service = monitoring(settings, targets=[serving])
    try:
        (result,) = service.scrape_now()  # the token is sent: the guarded endpoint answers
    finally:
        service.stop()
    assert (result.up, result.error) == (True, None)
    monkeypatch.delenv("PERFML_SERVING_TOKEN")
    with Workspace(settings) as workspace:
        (unauthorized, *_) = workspace.monitoring_targets()
    service = monitoring(settings, targets=[unauthorized])
    try:
        (result,) = service.scrape_now()
    finally:
        service.stop()
    assert (result.up, "401" in (result.error or "")) == (False, True)


def test_extra_registries_are_read_in_process_as_job_perfml(
    tmp_path: Path, monitoring: OpenService
) -> None:
    registry = CollectorRegistry()
    Gauge("perfml_feature_drift", "Drift.", ["feature", "method"], registry=registry).labels(
        "cpu", "kl"
    ).set(0.4)
    settings = Settings(
        workspace=tmp_path / "ws",
        monitoring=MonitoringSettings(
            rules=(AlertRuleSettings(name="InferenceServiceDown", enabled=False),)
        ),
    )
    service = monitoring(settings, targets=[], extra_registries=[registry])
    try:
        assert [type(t) for t in service.targets] == [RegistryTarget]
        service.scrape_now()
        (alert,) = service.evaluate_now()
    finally:
        service.stop()
    assert (alert.rule, alert.state) == ("FeatureDriftHigh", AlertState.FIRING)
    assert dict(alert.labels)["feature"] == "cpu"


def test_the_monitoring_settings_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "perfml.yaml"
    path.write_text("monitoring:\n  retention: 1m\n  flush_interval: 5m\n")
    with pytest.raises(ConfigError, match="flush_interval '5m' is longer than retention '1m'"):
        load_settings(path)
    path.write_text("monitoring:\n  targets:\n    - {job: node, url: 'node:9100'}\n")
    with pytest.raises(ConfigError, match=r"monitoring\.targets\.0\.url = 'node:9100'"):
        load_settings(path)
    path.write_text("monitoring:\n  scrape_timeout: soon\n")
    with pytest.raises(ConfigError, match="monitoring.scrape_timeout = 'soon': not a duration"):
        load_settings(path)
