from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from perfml.cli.app import main as cli
from perfml.pipelines import Param, Pipeline, Ref, Task
from perfml.pipelines import kubernetes as k8s
from perfml.pipelines.catalog import build
from pipelines import steps

K8S_VERSION = kubernetes_validate.latest_version()


def two_steps() -> Pipeline:
    return Pipeline(
        "two-steps",
        [
            Task("extract", steps.extract, {"rows": Param("rows")}),
            Task("total", steps.total, {"table": Ref("extract", "table"), "scale": Ref("extract")}),
        ],
        params={"rows": 4},
    )


def guarded() -> Pipeline:
    return Pipeline(
        "guarded",
        [
            Task("needs_volume", steps.needs_volume),
            Task("flaky", steps.flaky, {"attempts_file": "/tmp/attempts"}),
            Task("hang", steps.hang, {"pid_file": "/tmp/pid"}),
        ],
    )


def validate_all(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def jobs_by_task(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["annotations"]["perfml.io/task"]: o for o in objects if o["kind"] == "Job"
    }


def test_two_steps_are_a_config_map_and_jobs_in_order_that_validate() -> None:
    objects = k8s.build_jobs(two_steps(), "registry.example/perfml:1", namespace="ml")
    validate_all(objects)
    config_map, *jobs = objects
    assert config_map["kind"] == "ConfigMap"
    assert config_map["data"] == {"rows": "4"}
    assert [j["metadata"]["name"] for j in jobs] == ["two-steps-extract", "two-steps-total"]
    total = jobs[1]
    assert total["metadata"]["namespace"] == "ml"
    assert total["metadata"]["labels"]["perfml.io/pipeline"] == "two-steps"
    assert total["metadata"]["annotations"]["perfml.io/depends-on"] == "two-steps-extract"
    assert total["metadata"]["annotations"]["perfml.io/order"] == "1"
    container = total["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/perfml:1"
    assert container["command"] == ["python", "-m", "perfml.pipelines.kubernetes"]
    assert container["resources"] == {
        "requests": {"cpu": "1000m", "memory": "256Mi"},
        "limits": {"memory": "256Mi"},
    }
    spec = json.loads(container["args"][0])
    assert spec["paths"] == {"table": "/workspace/runs/default/extract/table"}
    assert spec["results"] == {"scale": "/workspace/runs/default/extract/result.json"}
    extract_env = jobs[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert extract_env == [
        {
            "name": "PERFML_PARAM_rows",
            "valueFrom": {"configMapKeyRef": {"name": "two-steps-params", "key": "rows"}},
        }
    ]


def test_timeouts_retries_secrets_and_volumes_map_to_the_job() -> None:
    objects = k8s.build_jobs(guarded(), "perfml:1")
    validate_all(objects)
    jobs = jobs_by_task(objects)

    hang = jobs["hang"]
    assert hang["spec"]["template"]["spec"]["activeDeadlineSeconds"] == 1  # 0.5 s, per attempt
    assert hang["spec"]["activeDeadlineSeconds"] == 1  # the whole job: one attempt
    assert hang["spec"]["backoffLimit"] == 0

    flaky = jobs["flaky"]
    assert flaky["spec"]["backoffLimit"] == 2
    assert flaky["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert "activeDeadlineSeconds" not in flaky["spec"]  # no timeout declared
    rule = flaky["spec"]["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob"
    assert rule["onExitCodes"]["values"] == [k8s.PERMANENT_EXIT]

    needs = jobs["needs_volume"]
    pod = needs["spec"]["template"]["spec"]
    env = pod["containers"][0]["env"]
    assert env == [
        {
            "name": "PERFML_TEST_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "perfml-secrets", "key": "PERFML_TEST_TOKEN"}},
        }
    ]
    assert "value" not in env[0]  # never the secret itself
    volume = str(steps.VOLUME)
    claim = k8s.dns_name("perfml", volume)
    assert {"name": "needs-0", "mountPath": volume} in pod["containers"][0]["volumeMounts"]
    assert {"name": "needs-0", "persistentVolumeClaim": {"claimName": claim}} in pod["volumes"]
    assert json.loads(needs["metadata"]["annotations"]["perfml.io/volumes"]) == {volume: claim}


def test_job_deadline_covers_every_attempt_and_the_retry_delays() -> None:
    assert k8s.job_deadline(60, 0) == 60
    assert k8s.job_deadline(60, 2) == 3 * 60 + 10 + 20
    assert k8s.job_deadline(0.5, 10) == 11 + 10 + 20 + 40 + 80 + 160 + 320 + 4 * 360


def test_a_broken_job_fails_validation() -> None:
    job = k8s.build_jobs(two_steps(), "perfml:1")[1]
    broken = copy.deepcopy(job)
    broken["spec"]["backoffLimit"] = "x"
    with pytest.raises(kubernetes_validate.ValidationError, match="backoffLimit"):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    unknown = copy.deepcopy(job)
    unknown["spec"]["template"]["spec"]["containers"][0]["secret"] = "hunter2"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, K8S_VERSION, strict=True)


def test_names_become_dns_labels() -> None:
    assert k8s.dns_name("Training", "query_features") == "training-query-features"
    long = k8s.dns_name("p" * 40, "t" * 40)
    assert len(long) == 63
    assert long != k8s.dns_name("p" * 40, "t" * 41)


def test_the_entry_runs_the_tasks_of_the_jobs_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = k8s.build_jobs(two_steps(), "perfml:1", run="r1")
    monkeypatch.setenv("PERFML_PARAM_rows", json.dumps(5))
    for job in objects[1:]:
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        local = args[0].replace(k8s.WORKSPACE, str(tmp_path))
        assert k8s.main([local]) == 0
    assert (tmp_path / "runs/r1/extract/table").read_text().split() == ["0", "1", "2", "3", "4"]
    assert json.loads((tmp_path / "runs/r1/total/result.json").read_text()) == {"value": 50}


def test_the_training_pipeline_compiles_to_valid_jobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = build("training")
    out = tmp_path / "training.yaml"
    options = ["-o", str(out), "-p", "detector=streaming", "--pod-config", "/etc/perfml.yaml"]
    assert cli(["pipeline", "compile", "training", "--target", "k8s", *options]) == 0
    objects = list(yaml.safe_load_all(out.read_text()))
    validate_all(objects)
    assert [o["metadata"]["annotations"]["perfml.io/task"] for o in objects[1:]] == list(
        pipeline.order
    )
    assert json.loads(objects[0]["data"]["detector"]) == "streaming"
    unset = k8s.unset_params(pipeline, {"detector": "streaming"})
    assert "run_id" in unset
    assert ", ".join(unset) in " ".join(capsys.readouterr().err.split())
    specs = {
        o["metadata"]["annotations"]["perfml.io/task"]: json.loads(
            o["spec"]["template"]["spec"]["containers"][0]["args"][0]
        )
        for o in objects[1:]
    }
    # the steps open the store and the registry of the workspace their pod's perfml.yaml names
    assert specs["query"]["parts"]["inputs"] == {"store": "store"}
    assert specs["register"]["parts"]["inputs"] == {"registry": "registry", "store": "store"}
    # train reads the registry only to keep a version's states (keep_from)
    assert specs["train"]["parts"]["inputs"] == {"registry": "registry"}
    source = specs["register"]["parts"]["source"]
    assert source["factory"] == "perfml.workspace:open_job_workspace"
    assert source["config"]["config_file"] == "/etc/perfml.yaml"


def test_the_scoring_pipeline_compiles_with_its_secret_and_volume(tmp_path: Path) -> None:
    out = tmp_path / "scoring.yaml"
    assert cli(["pipeline", "compile", "batch-scoring", "--target", "k8s", "-o", str(out)]) == 0
    objects = list(yaml.safe_load_all(out.read_text()))
    validate_all(objects)
    (job,) = objects[1:]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert any(e["name"] == "PERFML_SERVING_TOKEN" for e in container["env"])


def test_unknown_pipeline_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli(["pipeline", "compile", "nope", "--target", "k8s", "-o", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown pipeline 'nope'" in err
    assert "training" in err
