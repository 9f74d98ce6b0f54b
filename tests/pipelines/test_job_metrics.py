"""The job metrics: kube-state-metrics and cAdvisor names over a real run history."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from perfml.pipelines import JobRecord, JobState, Param, Pipeline, Reason, RunRecord, Task
from perfml.pipelines.errors import RunNotFoundError
from perfml.pipelines.history import RunHistory
from perfml.pipelines.job_metrics import (
    JobMetricsCollector,
    Window,
    dns1123_label,
    job_name,
    phase_seconds,
    pods_of,
    requests_from,
)
from perfml.pipelines.metrics_server import serve_metrics
from perfml.pipelines.runner import LocalRunner
from pipelines import steps

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def mixed() -> Pipeline:
    """One task that succeeds, one that crashes, one pending on a missing volume."""
    return Pipeline(
        "Mixed_Demo",
        [
            Task("extract", steps.extract, {"rows": Param("rows")}),
            Task("crash", steps.crash, {"message": "bad token"}),
            Task("needs_volume", steps.needs_volume),
        ],
    )


@dataclass
class Scraped:
    run: RunRecord
    text: str
    samples: Samples

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, frozenset(labels.items()))]

    def series(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for n, labels in self.samples if n == name]


def parse(text: str) -> Samples:
    """Samples by name and labels; an empty label is no label, as Prometheus reads it."""
    return {
        (s.name, frozenset((k, v) for k, v in s.labels.items() if v)): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(collector: JobMetricsCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


@pytest.fixture
def scraped(runner: LocalRunner, history: RunHistory) -> Iterator[Scraped]:
    """Scraped while the run is live: extract Succeeded, crash Failed, needs_volume Pending."""
    steps.VOLUME.unlink(missing_ok=True)
    pipeline = mixed()
    thread = threading.Thread(target=runner.run, args=(pipeline, {"rows": 3}, "Mixed_Demo-r1"))
    thread.start()
    try:
        for _ in range(500):
            threading.Event().wait(0.02)
            try:
                jobs = history.get_run("Mixed_Demo-r1").jobs
            except RunNotFoundError:
                continue
            if jobs["extract"].state.is_terminal and jobs["crash"].state.is_terminal:
                break
        collector = JobMetricsCollector(
            history, runner.capacity, requests=requests_from([pipeline]), node="Box_1"
        )
        text = scrape(collector)
        yield Scraped(history.get_run("Mixed_Demo-r1"), text, parse(text))
    finally:
        runner.cancel("Mixed_Demo-r1")
        thread.join(10)


def test_names_follow_dns_1123() -> None:
    run = RunRecord("Mixed_Demo-ABC", "Mixed_Demo", JobState.RUNNING)
    assert job_name(run, "needs_volume") == "mixed-demo-abc-needs-volume"
    other = RunRecord("r1", "demo", JobState.RUNNING)
    assert job_name(other, "x") == "demo-r1-x"
    long = job_name(other, "t" * 100)
    assert len(long) == 56
    assert long != job_name(other, "t" * 101)
    assert dns1123_label("--") == "x"


def test_pod_phases_and_job_counts(scraped: Scraped) -> None:
    ns = "perfml"
    ok, bad, waiting = "mixed-demo-r1-extract", "mixed-demo-r1-crash", "mixed-demo-r1-needs-volume"
    for pod, phase in (
        (f"{ok}-1", "Succeeded"),
        (f"{bad}-1", "Failed"),
        (f"{waiting}-1", "Pending"),
    ):
        for each in ("Pending", "Running", "Succeeded", "Failed", "Unknown"):
            got = scraped.value("kube_pod_status_phase", namespace=ns, pod=pod, phase=each)
            assert got == float(each == phase), (pod, each)
    jobs = scraped.run.jobs
    assert scraped.value("kube_pod_start_time", namespace=ns, pod=f"{ok}-1") == next(
        t.at for t in jobs["extract"].transitions if t.state is JobState.RUNNING
    )
    assert scraped.value("kube_pod_completion_time", namespace=ns, pod=f"{ok}-1") == (
        jobs["extract"].transitions[-1].at
    )
    assert {"namespace": ns, "pod": f"{waiting}-1"} not in scraped.series("kube_pod_start_time")
    counts = {
        name: [
            scraped.value(f"kube_job_status_{s}", namespace=ns, job_name=name)
            for s in ("active", "succeeded")
        ]
        for name in (ok, bad, waiting)
    }
    assert counts == {ok: [0, 1], bad: [0, 0], waiting: [1, 0]}
    # a failed job says why, as Kubernetes names its Failed condition (no retries: limit 0)
    failed = {name: scraped.value("kube_job_status_failed", namespace=ns, job_name=name)
              for name in (ok, waiting)}  # fmt: skip
    assert failed == {ok: 0, waiting: 0}
    why = {"namespace": ns, "job_name": bad, "reason": "BackoffLimitExceeded"}
    assert scraped.value("kube_job_status_failed", **why) == 1
    assert scraped.value("kube_job_failed", namespace=ns, job_name=bad, condition="true") == 1
    assert scraped.value("kube_job_failed", namespace=ns, job_name=bad, condition="false") == 0
    assert {s["job_name"] for s in scraped.series("kube_job_failed")} == {bad}
    assert {s["job_name"] for s in scraped.series("kube_job_status_completion_time")} == {ok}


def test_requests_allocatable_and_usage(scraped: Scraped, runner: LocalRunner) -> None:
    pod = {"namespace": "perfml", "pod": "mixed-demo-r1-extract-1", "container": "extract"}
    on_node = {**pod, "node": "box-1"}
    requests = "kube_pod_container_resource_requests"
    assert scraped.value(requests, **on_node, resource="cpu", unit="core") == 1.0
    assert scraped.value(requests, **on_node, resource="memory", unit="byte") == 256 * 2**20
    unscheduled = {"pod": "mixed-demo-r1-needs-volume-1", "resource": "cpu"}  # no node yet
    assert any(unscheduled.items() <= s.items() for s in scraped.series(requests))
    allocatable = "kube_node_status_allocatable"
    assert scraped.value(allocatable, node="box-1", resource="cpu", unit="core") == 2.0
    assert scraped.value(allocatable, node="box-1", resource="memory", unit="byte") == 2 * 2**30
    usage = scraped.run.jobs["extract"].usage
    assert scraped.value("container_cpu_usage_seconds_total", **pod) == usage.cpu_seconds > 0
    assert scraped.value("container_memory_working_set_bytes", **pod) == usage.peak_memory_bytes
    assert scraped.value("container_fs_writes_bytes_total", **pod) == usage.io_write_bytes
    assert not scraped.series("container_network_receive_bytes_total")  # not measurable: omitted


def test_phase_seconds_sum_to_the_transitions(scraped: Scraped) -> None:
    for task, job in scraped.run.jobs.items():
        labels = {"pipeline": "Mixed_Demo", "step": task}
        pending = scraped.value("perfml_job_phase_seconds", **labels, phase="Pending")
        running = scraped.value("perfml_job_phase_seconds", **labels, phase="Running")
        if job.state.is_terminal:
            total = job.transitions[-1].at - job.transitions[0].at
            assert pending + running == pytest.approx(total, abs=1e-6)
            assert running > 0
        else:  # still Pending: its clock ran until the scrape
            assert running == 0
            assert pending >= job.transitions[-1].at - job.transitions[0].at


def test_retries_and_cancels_make_pods_as_kubernetes_would() -> None:
    job = JobRecord.new("r", "t", "t", at=0.0)
    job = job.with_state(JobState.PENDING, Reason.UNSCHEDULABLE, at=1.0)
    job = replace_attempt(job, 1).with_state(JobState.RUNNING, at=2.0)
    job = job.with_state(JobState.PENDING, Reason.BACKOFF_WAIT, at=3.0)
    job = job.with_state(JobState.PENDING, Reason.PRECONDITION_MISSING, at=4.0)
    job = job.with_state(JobState.CANCELLED, Reason.CANCELLED, at=6.0)
    pods = [(p.attempt, p.phase, p.created, p.started, p.finished) for p in pods_of(job)]
    assert pods == [(1, "Failed", 1.0, 2.0, 3.0), (2, "Failed", 4.0, None, 6.0)]
    assert phase_seconds(job, now=100.0) == {JobState.PENDING: 5.0, JobState.RUNNING: 1.0}
    assert pods_of(JobRecord.new("r", "t", "t", at=0.0)) == []  # waiting for inputs: no pod


def replace_attempt(job: JobRecord, attempt: int) -> JobRecord:
    from dataclasses import replace

    return replace(job, attempt=attempt)


def test_the_window_bounds_the_runs(runner: LocalRunner, history: RunHistory) -> None:
    pipeline = Pipeline("tiny", [Task("extract", steps.extract, {"rows": Param("rows")})])
    for i in range(3):
        runner.run(pipeline, {"rows": 1}, f"tiny-{i}")
    text = scrape(JobMetricsCollector(history, runner.capacity, window=Window(max_runs=2)))
    got = {dict(k[1])["job_name"] for k in parse(text) if k[0] == "kube_job_status_succeeded"}
    assert got == {"tiny-1-extract", "tiny-2-extract"}
    aged = JobMetricsCollector(
        history, runner.capacity, window=Window(max_age=0.0), clock=lambda: 1e12
    )
    assert "kube_job_status_succeeded{" not in scrape(aged)


def test_serve_metrics_answers_and_shuts_down(history: RunHistory, runner: LocalRunner) -> None:
    registry = CollectorRegistry()
    with serve_metrics(history, runner.capacity, registry=registry) as server:
        response = httpx.get(server.url, timeout=5)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "kube_node_status_allocatable{" in response.text
        assert httpx.get(f"http://{server.address}/", timeout=5).status_code == 404
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url, timeout=1)


def test_a_running_job_is_sampled_live(runner: LocalRunner, history: RunHistory) -> None:
    pipeline = Pipeline("live", [Task("nap", steps.nap, {"seconds": 3.0})])
    thread = threading.Thread(target=runner.run, args=(pipeline, {}, "live-r1"))
    thread.start()
    try:
        for _ in range(250):
            threading.Event().wait(0.02)
            try:
                if history.get_run("live-r1").jobs["nap"].state is JobState.RUNNING:
                    break
            except RunNotFoundError:
                continue
        threading.Event().wait(0.3)  # the worker has imported Python
        pod = {"namespace": "perfml", "pod": "live-r1-nap-1", "container": "nap"}
        live = parse(scrape(JobMetricsCollector(history, runner.capacity)))
        before = history.get_run("live-r1").jobs["nap"].usage.peak_memory_bytes
        still = parse(scrape(JobMetricsCollector(history, runner.capacity, live=False)))
        after = history.get_run("live-r1").jobs["nap"].usage.peak_memory_bytes
    finally:
        runner.cancel("live-r1")
        thread.join(10)
    labels = {"namespace": "perfml", "pod": "live-r1-nap-1", "phase": "Running"}
    phase = ("kube_pod_status_phase", frozenset(labels.items()))
    memory = ("container_memory_working_set_bytes", frozenset(pod.items()))
    assert live[phase] == 1.0
    assert live[memory] > 1_000_000  # a Python interpreter's RSS
    # Without live sampling the collector reports what the runner's heartbeat last saved.
    assert still[memory] in (before, after)
