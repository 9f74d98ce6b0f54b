"""The inference metrics pass the real promtool's lint, from one process and from several."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from prometheus_client import values as prometheus_values
from tests.integration.services import require_binary

from perfml.serving.telemetry import MULTIPROC_ENV, ServingMetrics

pytestmark = pytest.mark.integration


def observe_everything(metrics: ServingMetrics) -> None:
    metrics.observe_request("detector", 3, "infer", 200, 0.004)
    metrics.observe_request("detector", 3, "infer", 422, 0.001)
    metrics.observe_request("detector", 3, "POST", 503, 12.0)
    metrics.observe_request("detector", 3, "feedback", 200, 0.02, service="feedback")
    metrics.observe_request("detector", 3, "metadata", 200, 0.001, service="metadata")
    metrics.model_loaded("detector", 3, 1.5)
    metrics.model_load_failed("detector", 4)


def promtool_check(text: bytes) -> None:
    promtool = require_binary("promtool")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=30, check=False
    )
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, b"", b"")


def test_promtool_finds_no_problem_in_one_process() -> None:
    metrics = ServingMetrics(deployment="fraud")
    observe_everything(metrics)
    body, _ = metrics.render()
    assert b"perfml_model_load_failures_total" in body
    promtool_check(body)


def test_promtool_finds_no_problem_in_the_multiprocess_sum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Set (not deleted) first, so that teardown removes what prepare_multiprocess sets.
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / "placeholder"))
    monkeypatch.setattr(prometheus_values, "ValueClass", prometheus_values.ValueClass)
    directory = ServingMetrics.prepare_multiprocess(tmp_path / "metrics")
    metrics = ServingMetrics(deployment="fraud", multiprocess_dir=directory)
    observe_everything(metrics)
    body, _ = metrics.render()
    assert b"perfml_model_loaded_version" in body
    promtool_check(body)
