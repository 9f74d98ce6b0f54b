"""A real MLServer serves an exported perfml model through ``PerfmlRuntime``, answering exactly
as perfml's own server does for the same request."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
from tests.integration.services import ServiceProcess, free_port, require_module

from fixtures.workspace import workspace_registry
from perfml import detectors
from perfml.config import load_settings
from perfml.metadata import MetadataDatabase
from perfml.registry import FilesystemArtifactStore, ModelRegistry
from perfml.registry.detector_versions import register_detector
from perfml.registry.errors import ArtifactIntegrityError
from perfml.serving import DataPlane, ModelRepository, build_app
from perfml.serving.engines import export_model

with warnings.catch_warnings():
    # starlette 0.46's testclient names anyio.abc.BlockingPortal, deprecated by anyio 4.16
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000
MINUTE = 60_000
THRESHOLD = 0.4  # the spike (one seen before, in training) scores 0.49


@dataclass(frozen=True)
class Servers:
    mlserver: str
    """MLServer's base URL."""
    perfml: TestClient
    """perfml's own app over the same registry version."""
    model_dir: Path
    """The exported model folder MLServer serves (model-settings.json and model.zip)."""


def series(n: int, seed: int) -> tuple[list[int], list[float]]:
    rng = np.random.default_rng(seed)
    values = 50 + 10 * np.sin(np.arange(n) / 12) + rng.normal(0, 1, n)
    values[n // 2] += 40  # one spike, so both answers say is_anomaly somewhere
    return [T0 + i * MINUTE for i in range(n)], values.tolist()


def request_body(ts: list[Any], values: list[float], **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "ts", "shape": [len(ts)], "datatype": "INT64", "data": ts},
            {"name": "value", "shape": [len(values)], "datatype": "FP64", "data": values},
        ],
        **extra,
    }


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """MLServer (a subprocess on free loopback ports) and perfml's app, serving ``cpu@production``:
    perfml's default detector, fitted, with a threshold."""
    require_module("mlserver", "mlserver")
    root = tmp_path_factory.mktemp("mlserver")
    database = MetadataDatabase(f"sqlite:///{root}/registry.db")
    registry = ModelRegistry(
        database,
        FilesystemArtifactStore(root / "artifacts"),
        cache_dir=root / "cache",
        deliver_in_background=False,
    )
    ts, values = series(600, seed=1)
    detector = detectors.create(detectors.DEFAULT_DETECTOR)
    detector.fit(pa.table({"ts": pa.array(ts, pa.int64()), "value": values}))
    register_detector(registry, "cpu", detector, features=["cpu_util"])
    registry.set_tag("cpu:1", "threshold", str(THRESHOLD))
    registry.set_alias("cpu", "production", 1)

    models_dir = export_model(
        registry, "cpu@production", "kserve", root / "out", image="perfml-mlserver:test"
    ).model_settings.parent.parent
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    (models_dir / "settings.json").write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "http_port": http_port,
                "grpc_port": grpc_port,
                "metrics_port": metrics_port,
                # the default parallel_workers: 1 crashes with uvloop 0.23: score in-process
                "parallel_workers": 0,
                "debug": False,
            }
        )
    )
    mlserver = ServiceProcess(
        "mlserver",
        [str(Path(sys.executable).parent / "mlserver"), "start", str(models_dir)],
        root / "mlserver.log",
    )
    mlserver.start()
    repository = ModelRepository(registry, ["cpu@production"], poll_interval=None)
    try:
        base = f"http://127.0.0.1:{http_port}"
        mlserver.wait_ready(f"{base}/v2/models/cpu/ready", timeout=90)
        with TestClient(build_app(DataPlane(repository))) as perfml:
            yield Servers(base, perfml, models_dir / "cpu")
        assert mlserver.process is not None
        mlserver.process.send_signal(signal.SIGINT)  # MLServer's own graceful shutdown
        assert mlserver.process.wait(30) == 0, mlserver.log()
    finally:
        mlserver.stop()
        repository.stop()
        database.close()


def both(servers: Servers, body: dict[str, Any]) -> tuple[httpx.Response, httpx.Response]:
    with httpx.Client(timeout=30) as client:
        theirs = client.post(f"{servers.mlserver}/v2/models/cpu/infer", json=body)
    ours = servers.perfml.post("/v2/models/cpu/infer", json=body)
    return theirs, ours


def assert_same_outputs(theirs: dict[str, Any], ours: dict[str, Any]) -> None:
    assert theirs["model_name"] == ours["model_name"] == "cpu"
    assert theirs["model_version"] == ours["model_version"] == "1"
    assert [(o["name"], o["datatype"], o["shape"]) for o in theirs["outputs"]] == [
        (o["name"], o["datatype"], o["shape"]) for o in ours["outputs"]
    ]
    for mine, other in zip(ours["outputs"], theirs["outputs"], strict=True):
        if mine["datatype"] == "FP64":
            np.testing.assert_allclose(other["data"], mine["data"], rtol=0, atol=1e-12)
        else:
            assert other["data"] == mine["data"]
        assert (other.get("parameters") or {}).get("threshold") == (
            mine.get("parameters") or {}
        ).get("threshold")


def test_mlserver_answers_as_perfml_does(servers: Servers) -> None:
    ts, values = series(200, seed=2)
    theirs, ours = both(servers, request_body(ts, values, id="r-1"))
    assert theirs.status_code == ours.status_code == 200, theirs.text
    assert_same_outputs(theirs.json(), ours.json())
    names = [o["name"] for o in ours.json()["outputs"]]
    assert names == ["anomaly_score", "is_anomaly"]
    assert any(ours.json()["outputs"][1]["data"])  # the spike is flagged by both


def test_iso_timestamps_outputs_and_threshold_parameters_match(servers: Servers) -> None:
    _, values = series(50, seed=3)
    iso = [f"2023-11-14T22:{i:02d}:00Z" for i in range(50)]
    body = request_body(
        iso, values, parameters={"threshold": 0.3}, outputs=[{"name": "is_anomaly"}]
    )
    body["inputs"][0]["datatype"] = "BYTES"
    theirs, ours = both(servers, body)
    assert theirs.status_code == ours.status_code == 200, theirs.text
    assert_same_outputs(theirs.json(), ours.json())
    assert ours.json()["outputs"][0]["parameters"] == {"threshold": 0.3}
    assert any(ours.json()["outputs"][0]["data"])


def test_bad_input_is_refused_alike(servers: Servers) -> None:
    ts, values = series(10, seed=4)
    body = request_body(ts, values[:9])
    body["inputs"][1]["shape"] = [9]
    theirs, ours = both(servers, body)
    assert theirs.status_code == ours.status_code == 422
    assert "'value'" in theirs.json()["error"]
    assert theirs.json()["error"] == ours.json()["error"]


def test_the_runtime_refuses_an_artifact_its_settings_do_not_pin(
    servers: Servers, tmp_path: Path
) -> None:
    settings_module = require_module("mlserver.settings", "mlserver")
    from perfml.serving.mlserver import PerfmlRuntime

    model_dir = Path(shutil.copytree(servers.model_dir, tmp_path / "cpu"))
    with (model_dir / "model.zip").open("ab") as artifact:
        artifact.write(b"tampered")
    settings = settings_module.ModelSettings.parse_file(str(model_dir / "model-settings.json"))
    with pytest.raises(ArtifactIntegrityError, match="pinned by the model settings"):
        asyncio.run(PerfmlRuntime(settings).load())


def test_the_runtime_loads_by_registry_coordinates_and_answers_in_process(
    tmp_path: Path,
) -> None:
    settings_module = require_module("mlserver.settings", "mlserver")
    types_module = require_module("mlserver.types", "mlserver")
    from perfml.serving.mlserver import PerfmlRuntime

    config = tmp_path / "perfml.yaml"
    config.write_text("workspace: ws\n")
    with workspace_registry(load_settings(config)) as registry:
        ts, values = series(300, seed=5)
        detector = detectors.create(detectors.DEFAULT_DETECTOR)
        detector.fit(pa.table({"ts": pa.array(ts, pa.int64()), "value": values}))
        version = register_detector(registry, "cpu", detector, features=["cpu_util"])
    settings = settings_module.ModelSettings(
        name="cpu",
        implementation=PerfmlRuntime,
        parameters={
            "uri": "perfml:cpu:1",
            "version": "1",
            "extra": {"config": str(config), "sha256": version.digest},
        },
    )
    runtime = PerfmlRuntime(settings)
    body = request_body(ts[:20], values[:20])

    async def load_and_predict() -> Any:
        await runtime.load()
        return await runtime.predict(types_module.InferenceRequest.model_validate(body))

    answer = asyncio.run(load_and_predict())
    expected = np.asarray(detector.score(pa.table({"ts": ts[:20], "value": values[:20]})))
    assert [o.name for o in answer.outputs] == ["anomaly_score"]  # no threshold recorded
    np.testing.assert_allclose(answer.outputs[0].data.root, expected, rtol=0, atol=1e-12)
