"""perfml's embedded monitoring fires exactly the alerts a real Prometheus fires.

A scenario runs for real on loopback:

1. a stuck job: a task whose volume and secret do not exist stays ``Pending``
   (``PreconditionMissing``);
2. a failing job: a task that fails on every attempt its retries allow;
3. a slowed model: a perfml inference server (on uvicorn) whose detector sleeps 80 ms per
   point, under a small steady load, so that its p99 is far over 50 ms.

The shipped rules, with thresholds and ``for`` shortened to seconds through the settings, are
exported with ``export_prometheus`` and loaded by a real Prometheus that scrapes the job
metrics endpoint and the server's ``/metrics`` every second; perfml's
:class:`~perfml.recording.service.MonitoringService` scrapes the same endpoints (its default
targets, from the same settings) and evaluates the same rules every second. Once both have
settled, the firing alerts — alert name and every label — are the same set in both, and it
holds the three expected alerts.

No label is excluded from the comparison: ``/api/v1/alerts`` shows an alert's own labels (the
sample's, the rule's and ``alertname``); Prometheus's external labels are added only to alerts
it sends to an Alertmanager, and this configuration has none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pytest
import uvicorn
from pydantic import Field
from tests.integration.services import (
    PrometheusServer,
    ServiceStartError,
    free_port,
    require_binary,
)

from fixtures.detectors import StaticZScore
from fixtures.metadata import opened
from perfml.alerting.alerts import Alert
from perfml.alerting.prometheus_config import export_prometheus
from perfml.config import Settings
from perfml.detectors import register
from perfml.featurestore import FeatureStore
from perfml.metadata import MetadataDatabase, sqlite_url
from perfml.pipelines import Pipeline, Task
from perfml.pipelines.dsl import Resources
from perfml.pipelines.history import RunHistory
from perfml.pipelines.metrics_server import MetricsServer, serve_metrics
from perfml.pipelines.runner import LocalRunner
from perfml.recording.service import MonitoringService
from perfml.registry import FilesystemArtifactStore, ModelRegistry
from perfml.registry.detector_versions import register_detector
from perfml.serving import DataPlane, ModelRepository, build_app
from perfml.serving.telemetry import ServingMetrics
from perfml.workspace import Workspace
from pipelines import steps

pytestmark = pytest.mark.integration

CAPACITY = Resources(cpu=2, memory="2Gi")
STUCK = Pipeline("ingest", [Task("load", steps.needs_volume, {})])
FAILING = Pipeline("nightly", [Task("train", steps.flaky, {"attempts_file": "unused"})])
DELAY_S = 0.08
"""How long the slowed model takes per point: well over the 50 ms threshold."""
SETTLE_TIMEOUT_S = 45.0

AlertKey = frozenset[tuple[str, str]]


@register
class SlowZScore(StaticZScore):
    """The toy static z-score, slowed down: it sleeps ``delay`` seconds per point."""

    name = "toy_slow_zscore"

    class Params(StaticZScore.Params):
        delay: float = Field(DELAY_S, ge=0.0)

    params: Params

    def update(self, ts: int, value: float | npt.NDArray[np.float64]) -> float:
        time.sleep(self.params.delay)
        return super().update(ts, value)


def scenario_settings(workspace: Path, serving_port: int, jobs_address: str) -> Settings:
    """The shipped rules with their waits cut to seconds; 1 s scrapes and evaluations."""
    return Settings.model_validate(
        {
            "workspace": workspace,
            "serving": {"host": "127.0.0.1", "port": serving_port},
            "monitoring": {
                "scrape_interval": "1s",
                "evaluation_interval": "1s",
                "scrape_timeout": "1s",
                "jobs_metrics": jobs_address,
                "alertmanager": f"127.0.0.1:{free_port()}",  # none: Prometheus keeps its alerts
                "rules": [
                    {"name": "JobPendingTooLong", "params": {"threshold": "3s"}},
                    {"name": "JobFailed", "for": "2s"},
                    {"name": "InferenceLatencyHigh", "params": {"threshold": 0.05}, "for": "3s"},
                ],
            },
        }
    )


class SlowServer:
    """A perfml inference server on uvicorn in a thread, serving ``cpu@production`` (the
    slowed detector) with its real ``/metrics``, and a thread sending it one request at a
    time until stopped."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.database = MetadataDatabase(f"sqlite:///{workdir / 'registry.db'}")
        self.registry = ModelRegistry(
            self.database,
            FilesystemArtifactStore(workdir / "artifacts"),
            actor="tester",
            cache_dir=workdir / "cache",
            deliver_in_background=False,
        )
        values = np.array([-1.0, 1.0] * 20)
        frame = pa.table({"ts": np.arange(len(values), dtype=np.int64) * 60_000, "value": values})
        register_detector(self.registry, "cpu", SlowZScore().fit(frame), features=["cpu_util"])
        self.registry.set_alias("cpu", "production", 1)
        self.models = ModelRepository(self.registry, ["cpu@production"], poll_interval=None)
        app = build_app(
            DataPlane(self.models, FeatureStore(workdir / "store")),
            metrics=ServingMetrics(deployment="perfml"),
        )
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self._serving = threading.Thread(target=self.server.run, daemon=True)
        self._loading = threading.Thread(target=self._load, daemon=True)
        self._stop = threading.Event()
        self.answered = 0

    def start(self) -> None:
        self._serving.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self._serving.is_alive():
                raise ServiceStartError("perfml serve", "uvicorn did not start", "")
            time.sleep(0.02)
        self._loading.start()

    def _load(self) -> None:
        body = {
            "inputs": [
                {"name": "ts", "shape": [1], "datatype": "INT64", "data": [1_700_000_000_000]},
                {"name": "value", "shape": [1], "datatype": "FP64", "data": [0.5]},
            ]
        }
        url = f"http://127.0.0.1:{self.port}/v2/models/cpu/infer"
        with httpx.Client(timeout=5.0) as client:
            while not self._stop.is_set():
                response = client.post(url, json=body)
                response.raise_for_status()
                self.answered += 1
                self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        if self._loading.is_alive():
            self._loading.join(timeout=10)
        self.server.should_exit = True
        self._serving.join(timeout=10)
        self.database.close()


@pytest.fixture
def history(tmp_path: Path) -> Iterator[RunHistory]:
    (tmp_path / "workspace").mkdir()
    with opened(RunHistory, sqlite_url(tmp_path / "workspace" / "metadata.db")) as found:
        yield found


def run_failing_job(history: RunHistory, workdir: Path) -> None:
    """A task that fails on all its attempts (2 retries, 0.2 s then 0.4 s apart)."""
    with LocalRunner(history, workdir, CAPACITY, environ={}) as runner:
        pipeline = Pipeline(
            FAILING.name,
            [Task("train", steps.flaky, {"attempts_file": str(workdir / "attempts.txt")})],
        )
        run = runner.run(pipeline, run_id="nightly-r1")
    assert run.jobs["train"].state.value == "Failed"
    assert run.jobs["train"].attempt == 3


def firing_in_prometheus(prometheus: PrometheusServer) -> set[AlertKey]:
    return {
        frozenset(alert["labels"].items())
        for alert in prometheus.alerts()
        if alert["state"] == "firing"
    }


def firing_in_perfml(alerts: list[Alert]) -> set[AlertKey]:
    return {frozenset(alert.labels.items()) for alert in alerts if alert.state.value == "firing"}


def shown(alerts: set[AlertKey]) -> str:
    return "\n".join(sorted(f"  {dict(sorted(a))}" for a in alerts)) or "  (none)"


def names(alerts: set[AlertKey]) -> set[str]:
    return {dict(a)["alertname"] for a in alerts}


def test_perfml_fires_the_alerts_prometheus_fires(tmp_path: Path, history: RunHistory) -> None:
    require_binary("prometheus")
    run_failing_job(history, tmp_path / "runs-failing")
    stuck_runner = LocalRunner(history, tmp_path / "runs-stuck", CAPACITY, environ={})
    stuck = threading.Thread(
        target=stuck_runner.run, args=(STUCK,), kwargs={"run_id": "ingest-r1"}, daemon=True
    )
    stuck.start()
    jobs: MetricsServer = serve_metrics(history, CAPACITY, pipelines=[STUCK, FAILING])
    serving = SlowServer(tmp_path / "serving")
    prometheus: PrometheusServer | None = None
    service: MonitoringService | None = None
    workspace: Workspace | None = None
    try:
        serving.start()
        settings = scenario_settings(tmp_path / "workspace", serving.port, jobs.address)
        exported = tmp_path / "exported"
        exported.mkdir()
        export_prometheus(settings, exported)
        prometheus = PrometheusServer(
            tmp_path / "prometheus", config_file=exported / "prometheus.yml"
        )
        prometheus.start()
        workspace = Workspace(settings)
        service = workspace.monitoring().start()
        assert {t.job: t.instance for t in service.targets} == {
            "perfml-serving": f"127.0.0.1:{serving.port}",
            "perfml-jobs": jobs.address,
        }

        expected = {"JobPendingTooLong", "JobFailed", "InferenceLatencyHigh"}
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        theirs: set[AlertKey] = set()
        ours: set[AlertKey] = set()
        while time.monotonic() < deadline:
            theirs = firing_in_prometheus(prometheus)
            ours = firing_in_perfml(service.alerts())
            if theirs == ours and expected <= names(ours):
                break
            time.sleep(0.25)
        assert theirs == ours, (
            f"Prometheus fires:\n{shown(theirs)}\nperfml fires:\n{shown(ours)}\n"
            f"--- Prometheus log ---\n{prometheus.log()[-3000:]}"
        )
        assert expected <= names(ours), f"firing:\n{shown(ours)}"
        by_name = {dict(a)["alertname"]: dict(a) for a in ours}
        assert by_name["JobPendingTooLong"]["pod"] == "ingest-r1-load-1"
        assert by_name["JobFailed"]["job_name"] == "nightly-r1-train"
        assert by_name["InferenceLatencyHigh"]["predictor_name"] == "cpu"
        assert serving.answered > 0
    finally:
        if service is not None:
            service.stop()
        if workspace is not None:
            workspace.close()
        if prometheus is not None:
            prometheus.stop()
        serving.stop()
        jobs.close()
        stuck_runner.cancel("ingest-r1")
        stuck.join(timeout=15)
        stuck_runner.close()
