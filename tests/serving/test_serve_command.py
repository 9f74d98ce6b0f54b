"""``perfml serve``: the app it assembles from the settings, and its refusals."""

from __future__ import annotations

import socket
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


def listening() -> socket.socket:
    """A socket listening on a free port of 127.0.0.1, as another program would hold it."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


def test_serve_of_an_unknown_model_fails_at_start_naming_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(workspace=tmp_path / "ws")
    with workspace_registry(settings) as registry:
        register_detector(registry, "cpu", static_model(0.0), features=["cpu_util"])
    code = main(["--workspace", str(settings.workspace), "serve", "--model", "mem@production"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.strip() == (
        "perfml: error: no model 'mem' in the registry to serve (its models: cpu)"
    )
    assert captured.out == ""


def test_serve_on_a_port_in_use_says_so_in_one_line_before_claiming_to_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(workspace=tmp_path / "ws")
    with workspace_registry(settings) as registry:
        register_detector(registry, "cpu", static_model(0.0), features=["cpu_util"])
    with listening() as holder:
        port = holder.getsockname()[1]
        code = main(
            ["--workspace", str(settings.workspace), "serve", "--model", "cpu@production",
             "--host", "127.0.0.1", "--port", str(port)]
        )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1
    (line,) = captured.err.strip().splitlines()
    assert f"127.0.0.1:{port}" in line
    assert "in use" in line
    assert "--port" in line
    assert "serving cpu" not in captured.out + captured.err
