from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import kfp.local
import psutil
import pytest
import yaml

from perfml.cli.app import main as cli
from perfml.pipelines import Param, Pipeline, Ref, Task
from perfml.pipelines.kubeflow import PARTS_PARAM, build_kfp_pipeline, compile_kubeflow
from pipelines import steps

# kfp's SubprocessRunner warns about any image without "python" in its name
LOCAL_IMAGE_WARNING = "ignore:You may be attemping to run a task:RuntimeWarning"


def two_steps() -> Pipeline:
    return Pipeline(
        "two-steps",
        [
            Task("extract", steps.extract, {"rows": Param("rows")}),
            Task("total", steps.total, {"table": Ref("extract", "table"), "scale": Ref("extract")}),
        ],
        params={"rows": 4},
    )


def compiled(pipeline: Pipeline, tmp_path: Path) -> dict[str, Any]:
    path = compile_kubeflow(pipeline, tmp_path / f"{pipeline.name}.yaml", "registry.example/p:1")
    spec: dict[str, Any] = yaml.safe_load(path.read_text())
    return spec


def test_two_steps_compile_to_components_on_the_image(tmp_path: Path) -> None:
    spec = compiled(two_steps(), tmp_path)
    assert set(spec["components"]) == {"comp-step-extract", "comp-step-total"}
    extract = spec["components"]["comp-step-extract"]
    assert extract["inputDefinitions"]["parameters"]["rows"]["parameterType"] == "NUMBER_INTEGER"
    assert extract["outputDefinitions"]["artifacts"]["table"]["artifactType"]["schemaTitle"] == (
        "system.Artifact"
    )
    total = spec["components"]["comp-step-total"]
    assert "table" in total["inputDefinitions"]["artifacts"]
    assert total["outputDefinitions"]["parameters"]["Output"]["parameterType"] == "NUMBER_INTEGER"

    executors = spec["deploymentSpec"]["executors"]
    assert set(executors) == {"exec-step-extract", "exec-step-total"}
    container = executors["exec-step-total"]["container"]
    assert container["image"] == "registry.example/p:1"
    assert "kfp.dsl.executor_main" in " ".join(container["command"])
    assert "pip install" not in " ".join(container["command"])  # kfp is in the perfml image
    assert "from perfml.pipelines.kubeflow import run_step" in container["command"][-1]
    assert container["resources"]["resourceCpuRequest"] == "1000m"
    assert container["resources"]["resourceMemoryRequest"] == "256Mi"
    assert container["resources"]["resourceMemoryLimit"] == "256Mi"

    dag = spec["root"]["dag"]["tasks"]
    assert dag["step-total"]["dependentTasks"] == ["step-extract"]
    assert dag["step-total"]["inputs"]["artifacts"]["table"]["taskOutputArtifact"] == {
        "outputArtifactKey": "table",
        "producerTask": "step-extract",
    }
    assert dag["step-total"]["cachingOptions"] == {"enableCache": True}  # total is cache=True
    assert dag["step-extract"]["cachingOptions"] == {}
    rows = spec["root"]["inputDefinitions"]["parameters"]["rows"]
    assert rows["parameterType"] == "NUMBER_INTEGER"
    assert rows["defaultValue"] == 4


def test_retries_and_timeouts_reach_the_spec(tmp_path: Path) -> None:
    pipeline = Pipeline(
        "guarded",
        [
            Task("flaky", steps.flaky, {"attempts_file": "/tmp/a"}),
            Task("hang", steps.hang, {"pid_file": "/tmp/p"}),
        ],
    )
    spec = compiled(pipeline, tmp_path)
    retry = spec["root"]["dag"]["tasks"]["step-flaky"]["retryPolicy"]
    assert retry == {
        "maxRetryCount": 2,
        "backoffDuration": "1s",  # 0.2 s, rounded up to kfp's whole seconds
        "backoffFactor": 2.0,
        "backoffMaxDuration": "3600s",
    }
    assert "retryPolicy" not in spec["root"]["dag"]["tasks"]["step-hang"]
    # no per-task timeout in kfp: the component's entry enforces it
    source = spec["deploymentSpec"]["executors"]["exec-step-hang"]["container"]["command"][-1]
    assert "'timeout': 0.5" in source


def test_values_kfp_has_no_type_for_travel_as_json(tmp_path: Path) -> None:
    pipeline = Pipeline("json", [Task("needs", steps.needs_volume)])
    spec = compiled(pipeline, tmp_path)
    outputs = spec["components"]["comp-step-needs"]["outputDefinitions"]["parameters"]
    assert outputs["Output"]["parameterType"] == "STRING"


def test_the_training_pipeline_compiles(tmp_path: Path) -> None:
    training = pytest.importorskip(
        "perfml.pipelines.training", reason="build_training_pipeline is not written yet"
    )
    pipeline = training.build_training_pipeline()
    out = tmp_path / "training.yaml"
    code = cli(["pipeline", "compile", "training", "--target", "kubeflow", "-o", str(out)])
    assert code == 0
    spec = yaml.safe_load(out.read_text())
    names = [name.replace("_", "-") for name in pipeline.order]
    assert sorted(spec["components"]) == sorted(f"comp-step-{n}" for n in names)
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) == {PARTS_PARAM} | {
        b.name for t in pipeline.tasks.values() for b in t.inputs.values() if isinstance(b, Param)
    }
    # the steps open their parts from the workspace of the perfml.yaml their pod reads
    source = json.loads(parameters[PARTS_PARAM]["defaultValue"])
    assert source["factory"] == "perfml.workspace:open_job_workspace"
    assert "settings" not in source["config"]
    query = spec["components"]["comp-step-query"]["inputDefinitions"]["parameters"]
    assert PARTS_PARAM in query
    assert "store" not in query
    for executor in spec["deploymentSpec"]["executors"].values():
        assert executor["container"]["image"].startswith("ghcr.io/perfml/perfml:")
        assert "resourceMemoryLimit" in executor["container"]["resources"]


def test_without_kfp_the_cli_says_to_install_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("perfml.pipelines.training", reason="the training pipeline is not written")
    monkeypatch.setitem(sys.modules, "kfp", None)  # import kfp now raises ImportError
    out = tmp_path / "x.yaml"
    code = cli(["pipeline", "compile", "training", "--target", "kubeflow", "-o", str(out)])
    assert code != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "perfml[kubeflow]" in err
    assert not out.exists()


@pytest.fixture
def kfp_local(tmp_path: Path) -> Path:
    root = tmp_path / "kfp-root"
    kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    return root


def executor_output(root: Path, task: str) -> dict[str, Any]:
    (found,) = root.glob(f"*/{task}/executor_output.json")
    output: dict[str, Any] = json.loads(found.read_text())
    return output


@pytest.mark.slow
@pytest.mark.filterwarnings(LOCAL_IMAGE_WARNING)
def test_two_steps_run_end_to_end_in_kfp_local(kfp_local: Path) -> None:
    build_kfp_pipeline(two_steps())(rows=5)
    (table,) = kfp_local.glob("*/step-extract/table")
    assert table.read_text().split() == ["0", "1", "2", "3", "4"]
    assert executor_output(kfp_local, "step-extract")["parameterValues"] == {"Output": 5}
    assert executor_output(kfp_local, "step-total")["parameterValues"] == {"Output": 50}


@pytest.mark.slow
@pytest.mark.filterwarnings(LOCAL_IMAGE_WARNING)
def test_a_step_past_its_timeout_is_killed_in_kfp_local(kfp_local: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    hang = Pipeline("hang", [Task("hang", steps.hang, {"pid_file": str(pid_file)})])
    with pytest.raises(RuntimeError, match="hang"):
        build_kfp_pipeline(hang)()
    child = int(pid_file.read_text())
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


@pytest.mark.slow
@pytest.mark.filterwarnings(LOCAL_IMAGE_WARNING)
def test_the_training_pipeline_runs_end_to_end_in_kfp_local(
    kfp_local: Path, tmp_path: Path
) -> None:
    from perfml.config import Settings
    from perfml.pipelines.training import build_training_pipeline
    from perfml.sources.fleet import generate_fleet, write_fleet
    from perfml.sources.ingestion import ingest_corpus
    from perfml.workspace import Workspace

    write_fleet(generate_fleet(hosts=2, months=2, seed=7), tmp_path / "fleet")
    with Workspace(Settings(workspace=tmp_path / "ws")) as workspace:
        ingest_corpus(workspace.store(), tmp_path / "fleet")
        parts = workspace.parts_source()  # the steps open this workspace's store and registry
    build_kfp_pipeline(build_training_pipeline(), parts=parts)(
        metrics=json.dumps(["request_latency_ms"]),  # kfp has no list type: JSON
        start="2024-01-01T00:00:00+00:00",
        end="2024-03-01T00:00:00+00:00",
        detector="streaming",
        model="latency",
        validation=0.25,  # the small fleet's held-out latency anomalies fall in its first half
        run_id="kfp-local-1",
    )
    with Workspace(Settings(workspace=tmp_path / "ws")) as workspace:
        (version,) = workspace.registry().versions("latency")
    assert version.detector == "streaming"
    assert version.features == ["request_latency_ms"]
    assert version.pipeline_run == "kfp-local-1"
    assert "nab_standard" in version.metrics
    assert version.metrics["test_windows"] >= 1


@pytest.mark.slow
@pytest.mark.filterwarnings(LOCAL_IMAGE_WARNING)
def test_the_backfill_pipeline_compiles_and_scores_a_window_in_kfp_local(
    kfp_local: Path, tmp_path: Path
) -> None:
    from anomalies.test_live import TICKS, TRAIN_END, points_of, train
    from perfml.config import Settings
    from perfml.pipelines.backfill import build_backfill_pipeline
    from perfml.workspace import Workspace

    out = tmp_path / "backfill.yaml"
    assert cli(["pipeline", "compile", "backfill", "--target", "kubeflow", "-o", str(out)]) == 0
    spec = yaml.safe_load(out.read_text())
    assert sorted(spec["components"]) == ["comp-step-score"]
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {PARTS_PARAM, "model", "start",
                                                                    "end"}  # fmt: skip
    with Workspace(Settings(workspace=tmp_path / "ws")) as workspace:
        workspace.store().write(points_of(int(TICKS[0]), int(TICKS[-1]) + 1))
        train(workspace.registry(background_delivery=False), TRAIN_END)
        parts = workspace.parts_source()
    build_kfp_pipeline(build_backfill_pipeline(), parts=parts)(model="cpu@production")
    with Workspace(Settings(workspace=tmp_path / "ws")) as workspace:
        scored = workspace.scores().read()
        findings = workspace.find_incidents()
    assert scored.num_rows == 5 * (len(TICKS) - 35 * 288)  # every point after the version's data
    assert set(scored.column("version").to_pylist()) == {1}
    assert findings.incidents
