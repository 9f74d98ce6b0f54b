"""The inference metrics: Seldon's histogram as Seldon writes it, perfml's counters and gauges,
and the sum over several worker processes sharing one directory."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client import values as prometheus_values
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from perfml.serving.telemetry import (
    MULTIPROC_ENV,
    SELDON_HISTOGRAM,
    MultiprocessNotPreparedError,
    NonNumericVersionError,
    ServingMetrics,
)

SELDON_LABELS = {
    "deployment_name",
    "predictor_name",
    "predictor_version",
    "service",
    "method",
    "code",
}
GO_DEFAULT_BUCKETS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5"]
GO_DEFAULT_BUCKETS += ["1.0", "2.5", "5.0", "10.0", "+Inf"]
WORKERS, REQUESTS_PER_WORKER = 3, 40


def samples(metrics: ServingMetrics, name: str) -> list[Sample]:
    body, _ = metrics.render()
    return [
        sample
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == name
    ]


def value(metrics: ServingMetrics, name: str, **labels: str) -> float | None:
    found = [s.value for s in samples(metrics, name) if s.labels == labels]
    assert len(found) <= 1, found
    return found[0] if found else None


def test_a_request_is_observed_in_seldons_histogram_and_counted() -> None:
    metrics = ServingMetrics(deployment="fraud", registry=CollectorRegistry())
    for seconds in (0.003, 0.02, 0.02, 7.0):
        metrics.observe_request("detector", 3, "infer", 200, seconds)
    seldon = {
        "deployment_name": "fraud",
        "predictor_name": "detector",
        "predictor_version": "3",
        "service": "predictions",
        "method": "infer",
        "code": "200",
    }
    buckets = samples(metrics, f"{SELDON_HISTOGRAM}_bucket")
    assert [s.labels["le"] for s in buckets] == GO_DEFAULT_BUCKETS
    assert {frozenset(s.labels) - {"le"} for s in buckets} == {frozenset(SELDON_LABELS)}
    cumulative = {s.labels["le"]: s.value for s in buckets}
    assert (cumulative["0.005"], cumulative["0.025"], cumulative["5.0"]) == (1, 3, 3)
    assert cumulative["10.0"] == cumulative["+Inf"] == 4
    assert value(metrics, f"{SELDON_HISTOGRAM}_count", **seldon) == 4
    assert value(metrics, f"{SELDON_HISTOGRAM}_sum", **seldon) == pytest.approx(7.043)
    assert value(metrics, "perfml_inference_requests_total", **per_model("200")) == 4
    assert samples(metrics, "perfml_inference_errors_total") == []


def per_model(code: str, model: str = "detector", version: str = "3") -> dict[str, str]:
    return {"model": model, "version": version, "code": code}


def test_errors_are_counted_by_status_and_the_endpoint_kind_is_the_service() -> None:
    metrics = ServingMetrics()
    metrics.observe_request("detector", "3", "infer", 422, 0.001)
    metrics.observe_request("detector", "3", "infer", 503, 0.001)
    metrics.observe_request("detector", "3", "feedback", 200, 0.001, service="feedback")
    assert value(metrics, "perfml_inference_errors_total", **per_model("422")) == 1
    assert value(metrics, "perfml_inference_errors_total", **per_model("503")) == 1
    assert value(metrics, "perfml_inference_errors_total", **per_model("200")) is None
    assert value(metrics, "perfml_inference_requests_total", **per_model("200")) == 1
    feedback = [
        s for s in samples(metrics, f"{SELDON_HISTOGRAM}_count") if s.labels["code"] == "200"
    ]
    assert [(s.labels["service"], s.labels["method"]) for s in feedback] == [
        ("feedback", "feedback")
    ]


def test_model_loads_and_load_failures() -> None:
    metrics = ServingMetrics()
    metrics.model_loaded("detector", 3, 1.25)
    metrics.model_load_failed("detector", 4)
    metrics.model_load_failed("detector", 4)
    assert value(metrics, "perfml_model_load_seconds", model="detector", version="3") == 1.25
    assert value(metrics, "perfml_model_loaded_version", model="detector") == 3
    failures = "perfml_model_load_failures_total"
    assert value(metrics, failures, model="detector", version="4") == 2
    metrics.model_loaded("detector", "5", 0.5)
    assert value(metrics, "perfml_model_loaded_version", model="detector") == 5


def test_a_version_that_is_no_number_cannot_be_the_loaded_version() -> None:
    with pytest.raises(NonNumericVersionError, match="'v2' is not a whole number"):
        ServingMetrics().model_loaded("detector", "v2", 1.0)


def test_render_is_the_text_format() -> None:
    body, content_type = ServingMetrics().render()
    assert content_type == CONTENT_TYPE_PLAIN_0_0_4
    assert b"# TYPE seldon_api_executor_server_requests_seconds histogram" in body


def test_a_directory_the_environment_does_not_name_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with pytest.raises(MultiprocessNotPreparedError, match="prepare_multiprocess"):
        ServingMetrics(multiprocess_dir=tmp_path)


def _worker(worker: int, requests: int) -> None:
    """One uvicorn worker's life, in a process of its own (spawned: a fresh interpreter)."""
    metrics = ServingMetrics.from_environment(deployment="fraud")
    assert metrics.multiprocess_dir is not None
    for i in range(requests):
        metrics.observe_request("detector", 3, "infer", 500 if i % 4 == 0 else 200, 0.02)
    metrics.model_loaded("detector", 3, 1.0 + worker)
    metrics.model_load_failed("detector", 4)


@pytest.fixture
def shared_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A prepared multiprocess directory; the environment and prometheus_client's value class
    in this process are put back after the test."""
    # Set (not deleted) first, so that teardown removes what prepare_multiprocess sets.
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / "placeholder"))
    monkeypatch.setattr(prometheus_values, "ValueClass", prometheus_values.ValueClass)
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_999999.db").write_bytes(b"stale")  # a previous server's file
    return ServingMetrics.prepare_multiprocess(directory)


def test_workers_sharing_a_directory_add_up(
    shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a spawned process imports _worker from this module by its name, tests.serving....
    monkeypatch.syspath_prepend(str(Path(__file__).parents[2]))
    assert not (shared_dir / "counter_999999.db").exists()
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker, args=(i, REQUESTS_PER_WORKER)) for i in range(WORKERS)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=60)
    assert [p.exitcode for p in workers] == [0] * WORKERS
    metrics = ServingMetrics(deployment="fraud", multiprocess_dir=shared_dir)
    total = WORKERS * REQUESTS_PER_WORKER
    errors = WORKERS * len(range(0, REQUESTS_PER_WORKER, 4))
    counted = samples(metrics, "perfml_inference_requests_total")
    assert sum(s.value for s in counted) == total
    assert value(metrics, "perfml_inference_errors_total", **per_model("500")) == errors
    histogram = samples(metrics, f"{SELDON_HISTOGRAM}_count")
    assert sum(s.value for s in histogram) == total
    inf = [s for s in samples(metrics, f"{SELDON_HISTOGRAM}_bucket") if s.labels["le"] == "+Inf"]
    assert sum(s.value for s in inf) == total
    assert {frozenset(s.labels) for s in histogram} == {frozenset(SELDON_LABELS)}
    failures = "perfml_model_load_failures_total"
    assert value(metrics, failures, model="detector", version="4") == WORKERS
    # load time: the slowest worker's; the loaded version: only the live workers'
    load_seconds = value(metrics, "perfml_model_load_seconds", model="detector", version="3")
    assert load_seconds == WORKERS
    assert samples(metrics, "perfml_model_loaded_version") == []


def test_a_worker_that_closes_no_longer_shows_its_model_loaded(shared_dir: Path) -> None:
    metrics = ServingMetrics(multiprocess_dir=shared_dir)
    metrics.model_loaded("detector", 7, 0.5)
    metrics.observe_request("detector", 7, "infer", 200, 0.01)
    assert value(metrics, "perfml_model_loaded_version", model="detector") == 7
    metrics.close()
    assert samples(metrics, "perfml_model_loaded_version") == []
    assert value(metrics, "perfml_inference_requests_total", **per_model("200", version="7")) == 1
