"""The job metrics pass the real promtool's lint and a real Prometheus scrapes them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from tests.integration.services import StartPrometheus, require_binary, wait_until

from fixtures.metadata import opened
from perfml.metadata import sqlite_url
from perfml.pipelines import Param, Pipeline, Task
from perfml.pipelines.dsl import Resources
from perfml.pipelines.history import RunHistory
from perfml.pipelines.job_metrics import JobMetricsCollector, requests_from
from perfml.pipelines.metrics_server import serve_metrics
from perfml.pipelines.runner import LocalRunner
from pipelines import steps

pytestmark = pytest.mark.integration

PIPELINE = Pipeline(
    "lint",
    [
        Task("extract", steps.extract, {"rows": Param("rows")}),
        Task("crash", steps.crash, {"message": "bad token"}),
    ],
)


@pytest.fixture
def history(tmp_path: Path) -> Iterator[RunHistory]:
    with opened(RunHistory, sqlite_url(tmp_path / "metadata.db")) as found:
        runner = LocalRunner(found, tmp_path / "workspace", Resources(cpu=2, memory="2Gi"))
        runner.run(PIPELINE, {"rows": 3}, "lint-r1")
        yield found


def test_promtool_finds_no_problem(history: RunHistory) -> None:
    promtool = require_binary("promtool")
    registry = CollectorRegistry()
    capacity = Resources(cpu=2, memory="2Gi")
    registry.register(JobMetricsCollector(history, capacity, requests=requests_from([PIPELINE])))
    text = generate_latest(registry)
    failed = b'job_name="lint-r1-crash",namespace="perfml",reason="BackoffLimitExceeded"} 1.0'
    assert b"kube_job_status_failed{" + failed in text
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=30, check=False
    )
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, b"", b"")


def test_prometheus_scrapes_the_endpoint(
    history: RunHistory, start_prometheus: StartPrometheus
) -> None:
    capacity = Resources(cpu=2, memory="2Gi")
    with serve_metrics(history, capacity, pipelines=[PIPELINE]) as server:
        prom = start_prometheus(targets=[server.address])
        failed = wait_until(
            lambda: prom.query('kube_job_status_failed{job_name="lint-r1-crash"}'),
            15,
            "Prometheus to scrape kube_job_status_failed",
        )
        assert failed[0]["metric"]["namespace"] == "perfml"
        assert failed[0]["value"][1] == "1"
        ok = prom.query('kube_pod_status_phase{pod="lint-r1-extract-1",phase="Succeeded"}')
        assert ok[0]["value"][1] == "1"
        assert prom.query('up{job="test"}')[0]["value"][1] == "1"
