"""A step bound to a part of the workspace gets the object, opened in its job's own process
from the runner's parts source and closed after; without a source the run is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfml.pipelines import Pipeline, Task
from perfml.pipelines import kubernetes as k8s
from perfml.pipelines.dsl import Param, Part, Resources
from perfml.pipelines.history import RunHistory
from perfml.pipelines.parts import NoPartsSourceError, PartsSource
from perfml.pipelines.runner import LocalRunner
from perfml.pipelines.states import JobState
from pipelines import steps


def noting() -> Pipeline:
    return Pipeline(
        "noting", [Task("note", steps.note, {"ledger": Part("ledger"), "line": Param("line")})]
    )


def ledgers(folder: Path) -> PartsSource:
    return PartsSource(factory="pipelines.steps:ledger_parts", config={"folder": str(folder)})


def runner_with(history: RunHistory, tmp_path: Path, parts: PartsSource | None) -> LocalRunner:
    return LocalRunner(
        history, tmp_path / "ws", Resources(cpu=2, memory="2Gi"), environ={}, parts=parts
    )


def test_the_step_is_handed_the_part_and_the_job_closes_it(
    history: RunHistory, tmp_path: Path
) -> None:
    folder = tmp_path / "ledgers"
    with runner_with(history, tmp_path, ledgers(folder)) as runner:
        run = runner.run(noting(), {"line": "first"})
        assert run.state is JobState.SUCCEEDED, run.jobs["note"].message
        assert runner.task_value(run, "note") == str(folder / "ledger.txt")
    assert (folder / "ledger.txt").read_text() == "first\n"
    assert (folder / "closed").read_text() == "yes"


def test_a_run_that_needs_a_part_is_refused_without_a_source(
    history: RunHistory, tmp_path: Path
) -> None:
    with (
        runner_with(history, tmp_path, None) as runner,
        pytest.raises(NoPartsSourceError, match="task 'note' takes the part 'ledger'"),
    ):
        runner.run(noting(), {"line": "x"})
    assert history.list_runs() == []  # refused before anything ran


def test_a_factory_that_cannot_be_imported_fails_the_job_once_with_its_name(
    history: RunHistory, tmp_path: Path
) -> None:
    broken = PartsSource(factory="pipelines.steps:no_such_factory")
    with runner_with(history, tmp_path, broken) as runner:
        run = runner.run(noting(), {"line": "x"})
    job = run.jobs["note"]
    assert job.state is JobState.FAILED
    assert "pipelines.steps:no_such_factory" in job.message
    assert "cannot be imported" in job.message


def test_the_kubernetes_entry_hands_the_step_its_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "ledgers"
    objects = k8s.build_jobs(noting(), "perfml:1", run="r1", parts=ledgers(folder))
    [job] = objects[1:]
    [argument] = job["spec"]["template"]["spec"]["containers"][0]["args"]
    spec = json.loads(argument)
    assert spec["parts"]["inputs"] == {"ledger": "ledger"}
    assert "ledger" not in spec["values"]
    monkeypatch.setenv("PERFML_PARAM_line", json.dumps("from a pod"))
    assert k8s.main([argument.replace(k8s.WORKSPACE, str(tmp_path))]) == 0
    assert (folder / "ledger.txt").read_text() == "from a pod\n"


def test_jobs_that_need_a_part_are_not_compiled_without_a_source() -> None:
    with pytest.raises(NoPartsSourceError, match="'noting'"):
        k8s.build_jobs(noting(), "perfml:1")
