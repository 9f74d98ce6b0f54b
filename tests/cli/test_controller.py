"""`perfml controller run-once | history` on a workspace whose workload changes in February."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfml.cli.app import main
from perfml.featurestore import FeatureStore
from perfml.sources.fleet import generate_fleet, write_fleet
from perfml.sources.ingestion import ingest_corpus


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("controller-ws")
    write_fleet(generate_fleet(hosts=4, months=2, seed=11, drift_months=[1]), folder / "fleet")
    ingest_corpus(FeatureStore(folder / "store"), folder / "fleet")
    (folder / "perfml.yaml").write_text(
        f"workspace: {folder}\n"
        "controller:\n  models: [latency]\n  holdout: 0.5\n  threshold: 0.05\n  quality: false\n"
    )
    code = main(
        ["-c", str(folder / "perfml.yaml"), "train", "--data", "request_latency_ms",
         "--window", "2024-01-01:2024-02-01", "--model", "latency"]
    )  # fmt: skip
    assert code == 0
    code = main(["-c", str(folder / "perfml.yaml"), "models", "promote", "latency:1", "--force"])
    assert code == 0
    return folder


def test_run_once_decides_the_latest_window_once(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(workspace / "perfml.yaml")
    code, printed, err = run(
        capsys, "-c", config, "controller", "run-once", "--at", "2024-03-01", "--json"
    )
    assert code == 0, err
    (decision,) = json.loads(printed)
    assert decision["model"] == "latency"
    assert decision["window"] == "2024-02"
    assert decision["action"] in ("promoted", "kept"), decision["reasons"]
    assert decision["figures"]["drift"]["request_latency_ms"] > 0.05
    assert decision["run_id"].startswith("training-")

    code, printed, _ = run(
        capsys, "-c", config, "controller", "run-once", "--at", "2024-03-09", "--json"
    )
    assert code == 0
    assert json.loads(printed) == [decision]  # the same window: nothing done again

    code, printed, _ = run(capsys, "-c", config, "controller", "history")
    assert code == 0
    assert "2024-02" in printed
    assert decision["action"] in printed


def test_without_models_it_says_what_to_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "-w", str(tmp_path), "controller", "run-once")
    assert code == 2
    assert "controller.models or serving.models" in err
