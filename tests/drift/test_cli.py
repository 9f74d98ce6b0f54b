"""`perfml drift report`: features × windows, cells over threshold marked."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from typer.testing import CliRunner

from fixtures.registry import registry_at
from perfml.cli import drift
from perfml.cli.state import CliState
from perfml.featurestore import FeatureStore
from perfml.sources.fleet import generate_fleet

FLEET_STEP = timedelta(hours=1)
root = typer.Typer()
root.add_typer(drift.app, name="drift")


def invoke(workspace: Path, *args: str):
    return CliRunner().invoke(root, ["drift", *args], obj=CliState(workspace=workspace))


def make_workspace(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    fleet = generate_fleet(hosts=8, months=5, seed=2, drift_months=[3], step=FLEET_STEP)
    FeatureStore(workspace / "store").write(fleet.iter_hosts())
    return workspace


def test_report_prints_a_table_per_measure_and_marks_drift(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path)
    done = invoke(
        workspace, "report", "--reference", "2024-01-01..2024-03-01", "--method", "kl,psi"
    )
    assert done.exit_code == 0, done.output
    assert "kl against 2024-01-01..2024-03-01, threshold 0.1" in done.output
    assert "psi against" in done.output
    for label in ("2024-03", "2024-04", "2024-05"):
        assert label in done.output
    cpu = next(line for line in done.output.splitlines() if line.strip("│ ").startswith("cpu_util"))
    assert cpu.count("!") == 2  # April and May, not March
    as_json = invoke(workspace, "report", "--reference", "2024-01-01..2024-03-01", "--json",
                     "--window", "daily", "--metric", "cpu_util", "--method", "kl")  # fmt: skip
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.output)
    assert len(document["windows"]) == 31 + 30 + 31
    assert {r["feature"] for r in document["records"]} == {"cpu_util"}


def test_the_reference_can_be_the_production_models_training_window(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path)
    with registry_at(f"sqlite:///{workspace}/metadata.db", workspace / "artifacts") as registry:
        artifact = tmp_path / "model.bin"
        artifact.write_bytes(b"a model")
        registry.register(
            "cpu", artifact, detector="streaming", features=["cpu_util"],
            data_start=generate_fleet(1, 1, 0).start, data_end=None,
        )  # fmt: skip
        registry.promote("cpu", 1)
        done = invoke(workspace, "report", "--model", "cpu@production")
        assert done.exit_code != 0
        assert "data_end" in str(done.exception)
        artifact.write_bytes(b"a model trained on two months")
        registry.register(
            "cpu", artifact, detector="streaming", features=["cpu_util"],
            data_start=datetime(2024, 1, 1, tzinfo=UTC), data_end=datetime(2024, 3, 1, tzinfo=UTC),
        )  # fmt: skip
        registry.promote("cpu", 2)
    done = invoke(workspace, "report", "--model", "cpu", "--method", "kl", "--json")
    assert done.exit_code == 0, done.output
    document = json.loads(done.output)
    assert document["model"] == "cpu:2"
    assert document["reference"]["label"] == "2024-01-01..2024-03-01"
    assert document["windows"] == ["2024-03", "2024-04", "2024-05"]
    bad = invoke(workspace, "report")
    assert "exactly one of --reference" in str(bad.exception)
    wrong = invoke(workspace, "report", "--reference", "2024-01-01..2024-03-01", "--window", "x")
    assert "'x'" in str(wrong.exception)
