"""``perfml serve export``: the custom resources and MLServer settings, pinned to one version.

No PyPI package ships the SeldonDeployment or InferenceService CRD schemas (the ``kserve`` SDK
has generated classes, not the OpenAPI schema, and pulls a whole server), so the custom
resources are checked against the fields their CRDs require and document (Seldon Core v1
``SeldonDeploymentSpec``: ``predictors[].name``, ``graph.name``, ``componentSpecs[].spec`` a
PodSpec; KServe ``InferenceService``: ``spec.predictor`` with either ``model.modelFormat.name``
or ``containers``), and their embedded pod specs against Kubernetes' own schema
(kubernetes-validate), which rejects unknown or mistyped container fields.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from fixtures.workspace import workspace_registry
from perfml.cli.app import main
from perfml.config import Settings
from perfml.registry import ModelRegistry
from perfml.registry.artifacts import sha256_of
from perfml.registry.detector_versions import register_detector
from perfml.registry.errors import RegistryError
from perfml.serving.engines import (
    RUNTIME,
    ExportError,
    export_model,
    inference_service,
    resource_name,
)
from serving.support import static_model

K8S_VERSION = kubernetes_validate.latest_version()
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def check_pod_spec(spec: dict[str, Any]) -> None:
    """``spec`` is a valid Kubernetes PodSpec (strict: no unknown fields)."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"}, "spec": spec}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def check_metadata(resource: dict[str, Any], namespace: str | None) -> None:
    metadata = resource["metadata"]
    assert len(metadata["name"]) <= 63
    assert re.match(DNS_LABEL, metadata["name"])
    assert metadata.get("namespace") == namespace


def check_seldon_deployment(resource: dict[str, Any]) -> None:
    assert resource["apiVersion"] == "machinelearning.seldon.io/v1"
    assert resource["kind"] == "SeldonDeployment"
    spec = resource["spec"]
    assert spec["protocol"] == "v2"
    assert spec["predictors"], "a SeldonDeployment needs at least one predictor"
    for predictor in spec["predictors"]:
        assert predictor["name"]
        graph = predictor["graph"]
        assert graph["type"] == "MODEL"
        containers = [c for cs in predictor["componentSpecs"] for c in cs["spec"]["containers"]]
        # Seldon binds a graph node to the container of the same name
        assert graph["name"] in {c["name"] for c in containers}
        for component in predictor["componentSpecs"]:
            check_pod_spec(component["spec"])


def check_inference_service(resource: dict[str, Any]) -> None:
    assert resource["apiVersion"] == "serving.kserve.io/v1beta1"
    assert resource["kind"] == "InferenceService"
    predictor = resource["spec"]["predictor"]
    if "model" in predictor:
        model = predictor["model"]
        assert model["modelFormat"]["name"]
        assert model["protocolVersion"] == "v2"
        assert model["storageUri"]
    else:
        check_pod_spec({"containers": predictor["containers"]})
        env = {e["name"]: e["value"] for e in predictor["containers"][0]["env"]}
        assert env["PROTOCOL"] == "v2"


@pytest.fixture
def pinned(models: ModelRegistry) -> ModelRegistry:
    """``models`` with ``cpu@production`` moved to version 2 (no threshold)."""
    models.set_alias("cpu", "production", 2)
    return models


def test_seldon_export_pins_the_version_and_digest_the_alias_resolves_to(
    pinned: ModelRegistry, tmp_path: Path
) -> None:
    done = export_model(
        pinned, "cpu@production", "seldon", tmp_path / "out", image="reg/perfml:1", namespace="ml"
    )
    version = pinned.get("cpu:2")
    assert done.version.version == 2
    assert done.manifest == tmp_path / "out" / "seldondeployment.yaml"
    resource = yaml.safe_load(done.manifest.read_text())
    check_seldon_deployment(resource)
    check_metadata(resource, "ml")
    assert resource["metadata"]["annotations"]["perfml.io/digest"] == f"sha256:{version.digest}"
    container = resource["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]
    assert container["image"] == "reg/perfml:1"

    settings = json.loads(done.model_settings.read_text())
    assert done.model_settings == tmp_path / "out" / "models" / "cpu" / "model-settings.json"
    assert settings["name"] == "cpu"
    assert settings["implementation"] == RUNTIME
    params = settings["parameters"]
    assert params["uri"] == "./model.zip"
    assert params["version"] == "2"
    assert params["extra"]["sha256"] == version.digest
    assert params["extra"]["record"]["version"] == 2
    assert sha256_of(done.artifact) == version.digest
    assert done.artifact.parent == done.model_settings.parent

    # the alias moving later does not change what was exported
    pinned.set_alias("cpu", "production", 1)
    assert json.loads(done.model_settings.read_text())["parameters"]["version"] == "2"


def test_kserve_export_uses_the_mlserver_runtime_with_a_storage_uri(
    pinned: ModelRegistry, tmp_path: Path
) -> None:
    done = export_model(
        pinned, "cpu@production", "kserve", tmp_path, storage_uri="s3://models/cpu/2"
    )
    resource = yaml.safe_load(done.manifest.read_text())
    assert done.manifest.name == "inferenceservice.yaml"
    check_inference_service(resource)
    check_metadata(resource, None)
    model = resource["spec"]["predictor"]["model"]
    assert model == {
        "modelFormat": {"name": "perfml"},
        "runtime": "kserve-mlserver",
        "protocolVersion": "v2",
        "storageUri": "s3://models/cpu/2",
    }


def test_kserve_export_with_an_image_is_a_custom_container(
    pinned: ModelRegistry, tmp_path: Path
) -> None:
    done = export_model(
        pinned, "cpu@production", "kserve", tmp_path, image="reg/perfml:1", storage_uri="gs://b/m"
    )
    resource = yaml.safe_load(done.manifest.read_text())
    check_inference_service(resource)
    container = resource["spec"]["predictor"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "PROTOCOL": "v2",
        "STORAGE_URI": "gs://b/m",
        "MLSERVER_MODELS_DIR": "/mnt/models",
    }


def test_kserve_runtime_without_a_storage_uri_is_refused(pinned: ModelRegistry) -> None:
    with pytest.raises(ExportError, match="--storage-uri"):
        inference_service(pinned.get("cpu:2"))


def test_a_structural_check_catches_a_broken_resource(
    pinned: ModelRegistry, tmp_path: Path
) -> None:
    resource = yaml.safe_load(
        export_model(pinned, "cpu@production", "seldon", tmp_path).manifest.read_text()
    )
    resource["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]["port"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        check_seldon_deployment(resource)


def test_an_unknown_alias_is_an_error_and_writes_nothing(
    pinned: ModelRegistry, tmp_path: Path
) -> None:
    with pytest.raises(RegistryError, match="nightly"):
        export_model(pinned, "cpu@nightly", "seldon", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_unknown_target_is_refused(pinned: ModelRegistry, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="one of seldon, kserve"):
        export_model(pinned, "cpu@production", "sagemaker", tmp_path)  # type: ignore[arg-type]


def test_resource_names_are_dns_labels() -> None:
    assert resource_name("CPU_util.v2") == "cpu-util-v2"
    assert len(resource_name("x" * 128)) == 63
    with pytest.raises(ExportError):
        resource_name("___")


def test_the_command_writes_the_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workspace = tmp_path / "ws"
    with workspace_registry(Settings(workspace=workspace)) as registry:
        register_detector(registry, "cpu", static_model(0.0), features=["cpu_util"])
        registry.set_alias("cpu", "production", 1)
    out = tmp_path / "out"
    argv = ["--workspace", str(workspace), "serve", "export", "--model", "cpu@production"]
    assert main([*argv, "--target", "kserve", "--image", "reg/p:1", "-o", str(out)]) == 0
    assert "cpu:1" in capsys.readouterr().out
    check_inference_service(yaml.safe_load((out / "inferenceservice.yaml").read_text()))
    assert (out / "models" / "cpu" / "model-settings.json").is_file()

    assert main([*argv[:-1], "cpu@staging", "--target", "seldon", "-o", str(out)]) != 0
    assert "staging" in capsys.readouterr().err
    assert main([*argv, "--target", "triton", "-o", str(out)]) == 2
    assert "unknown target" in capsys.readouterr().err
