"""The fault matrix: each way a job goes wrong ends in the right state with the right reason,
and leaves nothing Running, neither in the history nor as a process."""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from perfml.pipelines import JobState, Pipeline, Reason, Resources, Task, step
from perfml.pipelines.history import RunHistory
from perfml.pipelines.runner import LocalRunner
from perfml.pipelines.states import RunRecord
from pipelines import steps
from pipelines.test_runner import gone, one


@step(retries=3, backoff=0.5, timeout=20)
def pull_load(base_url: str) -> int:
    """A real pull from Prometheus, with a token the server refuses."""
    from perfml.sources.prometheus import PrometheusClient

    with PrometheusClient(base_url, bearer_token="wrong-token", timeout=5) as client:
        pull = client.query_range(
            "node_load1", "2024-05-01T00:00:00Z", "2024-05-01T01:00:00Z", "15s"
        )
        return int(pull.read_all().num_rows)


class _Refusing(BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.requests.append(f"{self.path} {self.headers.get('Authorization')}")
        body = b'{"status":"error","errorType":"unauthorized","error":"bad token"}'
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Bearer realm="prometheus"')
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def refusing_prometheus() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server answering every request 401; yields its URL and the requests."""
    seen: list[str] = []
    handler = type("Handler", (_Refusing,), {"requests": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def settled(history: RunHistory, run: RunRecord) -> RunRecord:
    """The run as stored, after checking that it ended and left no job or process running."""
    stored = history.get_run(run.run_id)
    assert stored.state.is_terminal
    assert stored.finished_at is not None
    for job in stored.jobs.values():
        assert job.state.is_terminal, f"{job.task} is still {job.state.value}"
        pids = {int(p) for t in job.transitions for p in re.findall(r"pid (\d+)", t.message)}
        assert all(gone(pid) for pid in pids), f"{job.task}: a worker of {pids} is alive"
    return stored


def test_a_crash_fails_with_its_exit_code(runner: LocalRunner, history: RunHistory) -> None:
    run = runner.run(one(Task("crash", steps.crash, {"message": "disk full"})))
    job = settled(history, run).jobs["crash"]
    assert (job.state, job.reason, job.exit_code) == (JobState.FAILED, Reason.ERROR, 3)
    assert "exit code 3" in job.message
    assert "fatal: disk full" in job.message


def test_a_hang_is_killed_at_its_timeout(
    runner: LocalRunner, history: RunHistory, tmp_path: Path
) -> None:
    pid_file = tmp_path / "grandchild.pid"
    started = time.monotonic()
    run = runner.run(one(Task("hang", steps.hang, {"pid_file": str(pid_file)})))
    job = settled(history, run).jobs["hang"]
    assert (job.state, job.reason) == (JobState.FAILED, Reason.DEADLINE_EXCEEDED)
    assert "timeout of 0.5 s" in job.message
    assert time.monotonic() - started < 5
    assert gone(int(pid_file.read_text()))


def test_far_over_its_memory_limit_a_job_is_killed(
    runner: LocalRunner, history: RunHistory
) -> None:
    run = runner.run(one(Task("hog", steps.hog, {"megabytes": 768})))  # limit 128Mi
    job = settled(history, run).jobs["hog"]
    assert (job.state, job.reason) == (JobState.FAILED, Reason.OOM_KILLED)
    assert "over the limit 128Mi" in job.message
    assert job.usage.peak_memory_bytes > 128 * 2**20


def test_a_wrong_api_token_fails_at_once_without_retrying(
    history: RunHistory, tmp_path: Path, refusing_prometheus: tuple[str, list[str]]
) -> None:
    url, requests = refusing_prometheus
    tests_dir = str(Path(steps.__file__).resolve().parents[1])  # so the worker finds this module
    runner = LocalRunner(history, tmp_path / "ws", environ={"PYTHONPATH": tests_dir})
    run = runner.run(one(Task("pull", pull_load, {"base_url": url})))
    stored = settled(history, run)
    job = stored.jobs["pull"]
    assert (job.state, job.reason, job.attempt) == (JobState.FAILED, Reason.PERMANENT_ERROR, 1)
    assert job.message.startswith("PrometheusAuthError: Prometheus at ")
    assert "HTTP 401 Unauthorized" in job.message
    assert "not retried" in job.message
    assert len(requests) == 1
    assert "Bearer wrong-token" in requests[0]
    assert Reason.BACKOFF_WAIT not in [t.reason for t in job.transitions]
    assert (stored.state, stored.reason) == (JobState.FAILED, Reason.PERMANENT_ERROR)


def test_a_missing_volume_keeps_the_job_pending_until_cancelled(
    runner: LocalRunner, history: RunHistory
) -> None:
    steps.VOLUME.unlink(missing_ok=True)
    waiting: list[RunRecord] = []

    def cancel_once_pending() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            runs = history.list_runs(1)
            if runs and runs[0].jobs["needs_volume"].reason is Reason.PRECONDITION_MISSING:
                time.sleep(0.3)  # it stays so: the runner re-checks every tick
                waiting.append(history.get_run(runs[0].run_id))
                runner.cancel(runs[0].run_id)
                return
            time.sleep(0.02)

    helper = threading.Thread(target=cancel_once_pending)
    helper.start()
    run = runner.run(one(Task("needs_volume", steps.needs_volume)))
    helper.join()
    [seen] = waiting
    pending = seen.jobs["needs_volume"]
    assert (pending.state, pending.reason) == (JobState.PENDING, Reason.PRECONDITION_MISSING)
    assert f"path {steps.VOLUME}" in pending.message
    assert pending.pid is None  # never started
    job = settled(history, run).jobs["needs_volume"]
    assert (run.state, job.state, job.reason) == (
        JobState.CANCELLED,
        JobState.CANCELLED,
        Reason.CANCELLED,
    )


def test_a_full_runner_queues_jobs_and_runs_them_all(history: RunHistory, tmp_path: Path) -> None:
    runner = LocalRunner(history, tmp_path / "ws", Resources(cpu=1, memory="1Gi"), environ={})
    pipe = Pipeline("full", [Task(n, steps.nap, {"seconds": 0.2}) for n in ("a", "b", "c")])
    run = runner.run(pipe)
    stored = settled(history, run)
    assert stored.state is JobState.SUCCEEDED
    assert {j.reason for j in stored.jobs.values()} == {Reason.COMPLETED}
    queued = [
        n
        for n, j in stored.jobs.items()
        if Reason.UNSCHEDULABLE in [t.reason for t in j.transitions]
    ]
    assert queued == ["b", "c"]
    spans = sorted(
        (
            next(t.at for t in j.transitions if t.state is JobState.RUNNING),
            j.transitions[-1].at,
        )
        for j in stored.jobs.values()
    )
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end  # one at a time: capacity 1 CPU


def test_a_running_job_s_usage_is_recorded_on_the_heartbeat(
    history: RunHistory, tmp_path: Path
) -> None:
    runner = LocalRunner(
        history, tmp_path / "ws", Resources(cpu=1, memory="1Gi"), heartbeat_interval=0.1
    )
    live: list[RunRecord] = []

    def watch() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            runs = history.list_runs(1)
            job = runs[0].jobs["nap"] if runs else None
            if job is not None and job.state is JobState.RUNNING and job.usage.peak_memory_bytes:
                live.append(runs[0])
                return
            time.sleep(0.05)

    helper = threading.Thread(target=watch)
    helper.start()
    run = runner.run(one(Task("nap", steps.nap, {"seconds": 1.0})))
    helper.join()
    assert run.state is JobState.SUCCEEDED
    [seen] = live
    assert seen.jobs["nap"].usage.peak_memory_bytes > 1_000_000
