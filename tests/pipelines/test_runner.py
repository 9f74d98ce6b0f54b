from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil

from perfml.pipelines import JobRecord, JobState, Param, Pipeline, Reason, Ref, Resources, Task
from perfml.pipelines.history import RunHistory
from perfml.pipelines.runner import LocalRunner
from pipelines import steps


def two_steps(log_to: str = "") -> Pipeline:
    return Pipeline(
        "demo",
        [
            Task("extract", steps.extract, {"rows": Param("rows")}),
            Task(
                "total",
                steps.total,
                {"table": Ref("extract", "table"), "scale": Ref("extract"), "log_to": log_to},
            ),
        ],
    )


def one(task: Task) -> Pipeline:
    return Pipeline("single", [task])


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_two_steps_pass_a_file_and_a_value(runner: LocalRunner, history: RunHistory) -> None:
    run = runner.run(two_steps(), {"rows": 4})
    assert run.state is JobState.SUCCEEDED, run.message
    table = Path(run.workspace) / "extract" / "outputs" / "table"
    assert table.read_text().split() == ["0", "1", "2", "3"]
    stored = history.get_run(run.run_id)
    assert stored.state is JobState.SUCCEEDED
    total = stored.jobs["total"]
    assert (total.state, total.reason, total.exit_code) == (JobState.SUCCEEDED, Reason.COMPLETED, 0)
    assert [t.state for t in total.transitions] == [
        JobState.PENDING,
        JobState.RUNNING,
        JobState.SUCCEEDED,
    ]
    assert total.usage.cpu_seconds > 0
    assert total.usage.peak_memory_bytes > 1_000_000
    assert total.seconds_in_state()["Running"] > 0


def test_cache_reuses_and_reruns_when_inputs_change(runner: LocalRunner, tmp_path: Path) -> None:
    counter = tmp_path / "executions"
    first = runner.run(two_steps(str(counter)), {"rows": 3})
    second = runner.run(two_steps(str(counter)), {"rows": 3})
    assert second.jobs["total"].reason is Reason.CACHED
    assert second.jobs["extract"].reason is Reason.COMPLETED  # not cached: cache=False
    changed = runner.run(two_steps(str(counter)), {"rows": 5})
    assert changed.jobs["total"].reason is Reason.COMPLETED
    assert counter.read_text().count("ran") == 2
    assert first.jobs["total"].cache_key == second.jobs["total"].cache_key


def test_a_crash_fails_with_the_exit_code_and_the_last_log_lines(runner: LocalRunner) -> None:
    run = runner.run(one(Task("crash", steps.crash, {"message": "bad token"})))
    job = run.jobs["crash"]
    assert (run.state, job.state, job.reason, job.exit_code) == (
        JobState.FAILED,
        JobState.FAILED,
        Reason.ERROR,
        3,
    )
    assert "exit code 3" in job.message
    assert "fatal: bad token" in job.message
    assert "loading the data" in Path(job.log_path).read_text()


def test_a_hang_past_its_timeout_kills_the_whole_tree(runner: LocalRunner, tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    started = time.monotonic()
    run = runner.run(one(Task("hang", steps.hang, {"pid_file": str(pid_file)})))
    job = run.jobs["hang"]
    assert (job.state, job.reason) == (JobState.FAILED, Reason.DEADLINE_EXCEEDED)
    assert time.monotonic() - started < 5
    assert gone(int(pid_file.read_text()))
    assert job.pid is not None
    assert gone(job.pid)


def test_retries_back_off_then_hit_the_limit(runner: LocalRunner, tmp_path: Path) -> None:
    attempts_file = tmp_path / "attempts"
    run = runner.run(one(Task("flaky", steps.flaky, {"attempts_file": str(attempts_file)})))
    job = run.jobs["flaky"]
    assert (job.state, job.reason, job.attempt) == (
        JobState.FAILED,
        Reason.BACKOFF_LIMIT_EXCEEDED,
        3,
    )
    assert "the API said no" in job.message
    times = [float(x) for x in attempts_file.read_text().split()]
    assert times[1] - times[0] >= 0.2
    assert times[2] - times[1] >= 0.4
    assert [t.reason for t in job.transitions].count(Reason.BACKOFF_WAIT) == 2


def test_a_missing_precondition_keeps_the_job_pending_until_it_appears(
    history: RunHistory, tmp_path: Path
) -> None:
    steps.VOLUME.unlink(missing_ok=True)
    environ: dict[str, str] = {}
    runner = LocalRunner(history, tmp_path / "ws", Resources(cpu=1, memory="1Gi"), environ=environ)
    seen: list[JobRecord] = []

    def provide() -> None:
        time.sleep(0.4)
        run_id = history.list_runs(1)[0].run_id
        seen.append(history.get_run(run_id).jobs["needs_volume"])
        steps.VOLUME.write_text("mounted ")
        environ["PERFML_TEST_TOKEN"] = "secret"

    helper = threading.Thread(target=provide)
    helper.start()
    try:
        run = runner.run(one(Task("needs_volume", steps.needs_volume)))
    finally:
        helper.join()
        steps.VOLUME.unlink(missing_ok=True)
    [waiting] = seen
    assert waiting.state is JobState.PENDING
    assert waiting.reason is Reason.PRECONDITION_MISSING
    assert f"path {steps.VOLUME}" in waiting.message
    assert "env PERFML_TEST_TOKEN" in waiting.message
    assert run.state is JobState.SUCCEEDED


def test_a_full_runner_queues_jobs_as_unschedulable(history: RunHistory, tmp_path: Path) -> None:
    runner = LocalRunner(history, tmp_path / "ws", Resources(cpu=1, memory="1Gi"))
    pipe = Pipeline(
        "full",
        [Task("a", steps.nap, {"seconds": 0.3}), Task("b", steps.nap, {"seconds": 0.3})],
    )
    run = runner.run(pipe)
    assert run.state is JobState.SUCCEEDED
    b, a = run.jobs["b"], run.jobs["a"]
    assert Reason.UNSCHEDULABLE in [t.reason for t in b.transitions]
    a_end = a.transitions[-1].at
    b_start = next(t.at for t in b.transitions if t.state is JobState.RUNNING)
    assert b_start >= a_end


def test_cancel_kills_running_and_cancels_pending(history: RunHistory, tmp_path: Path) -> None:
    runner = LocalRunner(history, tmp_path / "ws", Resources(cpu=1, memory="1Gi"))
    pipe = Pipeline(
        "cancel", [Task("a", steps.nap, {"seconds": 30}), Task("b", steps.nap, {"seconds": 30})]
    )
    timer = threading.Timer(0.5, runner.cancel, args=("run-to-cancel",))
    timer.start()
    started = time.monotonic()
    run = runner.run(pipe, run_id="run-to-cancel")
    timer.join()
    assert time.monotonic() - started < 5
    assert run.state is JobState.CANCELLED
    assert {j.state for j in run.jobs.values()} == {JobState.CANCELLED}
    assert run.jobs["a"].pid is not None
    assert gone(run.jobs["a"].pid)
    assert history.get_run(run.run_id).state is JobState.CANCELLED


def test_over_its_memory_limit_a_job_is_killed(runner: LocalRunner) -> None:
    run = runner.run(one(Task("hog", steps.hog, {"megabytes": 300})))
    job = run.jobs["hog"]
    assert (job.state, job.reason) == (JobState.FAILED, Reason.OOM_KILLED)
    assert "over the limit 128Mi" in job.message
    assert job.usage.peak_memory_bytes > 128 * 2**20
