"""``perfml serve``: the app it assembles from the settings, and its refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.workspace import workspace_registry
from perfml.cli.app import main
from perfml.config import Settings
from perfml.registry.detector_versions import register_detector
from perfml.serving.telemetry import MULTIPROC_ENV
from perfml.workspace import Workspace
from serving.support import TOKEN, TestClient, infer_body, static_model


def test_create_app_serves_the_workspace_registry_with_metrics_and_auth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)  # one process: its own registry
    settings = Settings(workspace=tmp_path / "ws")
    with workspace_registry(settings) as registry:
        register_detector(registry, "cpu", static_model(0.0), features=["cpu_util"])
        registry.set_alias("cpu", "production", 1)
    monkeypatch.setenv(settings.serving.token_env, TOKEN)
    workspace = Workspace(settings)
    with TestClient(workspace.serving_app(["cpu@production"])) as client:
        assert client.post("/v2/models/cpu/infer", json=infer_body([3.0])).status_code == 401
        answer = client.post(
            "/v2/models/cpu/infer",
            json=infer_body([3.0]),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert answer.json()["outputs"][0]["data"] == [0.5]
        metrics = client.get("/metrics").text
    assert 'perfml_model_loaded_version{model="cpu"} 1.0' in metrics
    assert 'perfml_inference_requests_total{code="401",model="cpu",version="1"} 1.0' in metrics
    workspace.close()


def test_serve_without_models_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--workspace", str(tmp_path), "serve"]) == 2
    assert "nothing to serve" in capsys.readouterr().err


def test_serve_refuses_a_bad_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--workspace", str(tmp_path), "serve", "--model", "../../etc@passwd"]) == 2
    assert "not valid" in capsys.readouterr().err
