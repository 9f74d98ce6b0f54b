from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from fixtures.metadata import opened
from perfml.metadata import MetadataDatabase
from perfml.pipelines import JobState, Pipeline, Reason, Task
from perfml.pipelines.errors import RunNotFoundError
from perfml.pipelines.history import RunHistory
from perfml.pipelines.runner import LocalRunner
from pipelines import steps

RUNNER_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from perfml.pipelines import Pipeline, Task
    from perfml.metadata import MetadataDatabase
    from perfml.pipelines.history import RunHistory
    from perfml.pipelines.runner import LocalRunner
    from pipelines import steps
    runner = LocalRunner(RunHistory(MetadataDatabase({url!r})), Path({workspace!r}))
    runner.run(Pipeline("doomed", [Task("nap", steps.nap, {{"seconds": 30}})]), run_id="doomed")
    """
)


def test_history_keeps_runs_jobs_and_transitions(history_url: str, tmp_path: Path) -> None:
    with opened(RunHistory, history_url) as history:
        runner = LocalRunner(history, tmp_path / "ws")
        run = runner.run(Pipeline("quick", [Task("nap", steps.nap, {"seconds": 0.01})]))

    with opened(RunHistory, history_url) as reopened:
        [stored] = reopened.list_runs()
        assert stored.run_id == run.run_id
        assert stored.state is JobState.SUCCEEDED
        job = stored.jobs["nap"]
        assert job.transitions == run.jobs["nap"].transitions
        assert job.usage == run.jobs["nap"].usage
        assert set(job.seconds_in_state()) == {"Pending", "Running", "Succeeded"}
        with pytest.raises(RunNotFoundError, match="'nope'"):
            reopened.get_run("nope")


def test_a_killed_runner_leaves_jobs_a_new_runner_marks_orphaned(
    history_url: str, tmp_path: Path
) -> None:
    tests_dir = str(Path(steps.__file__).resolve().parents[1])
    script = RUNNER_SCRIPT.format(tests=tests_dir, url=history_url, workspace=str(tmp_path / "ws"))
    dead = subprocess.Popen([sys.executable, "-c", script])
    database = MetadataDatabase(history_url)
    history = RunHistory(database)
    try:
        deadline = time.monotonic() + 15
        while True:
            runs = history.list_runs()
            if runs and runs[0].jobs["nap"].state is JobState.RUNNING:
                break
            assert time.monotonic() < deadline, "the runner never started its job"
            time.sleep(0.05)
        worker_pid = runs[0].jobs["nap"].pid
        assert worker_pid is not None
        os.kill(dead.pid, signal.SIGKILL)
        dead.wait()
        assert psutil.pid_exists(worker_pid)  # the worker outlived its runner

        runner = LocalRunner(history, tmp_path / "ws")
        [orphan] = runner.orphaned
        assert (orphan.state, orphan.reason) == (JobState.FAILED, Reason.ORPHANED)
        stored = history.get_run("doomed")
        assert (stored.state, stored.reason) == (JobState.FAILED, Reason.ORPHANED)
        assert stored.jobs["nap"].state is JobState.FAILED
        assert f"runner pid {dead.pid} died" in stored.jobs["nap"].message
        assert not psutil.pid_exists(worker_pid) or (
            psutil.Process(worker_pid).status() == psutil.STATUS_ZOMBIE
        )
        assert LocalRunner(history, tmp_path / "ws").orphaned == []  # recovered once
    finally:
        if dead.poll() is None:
            dead.kill()
            dead.wait()
        database.close()
