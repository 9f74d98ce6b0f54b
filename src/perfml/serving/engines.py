"""Deploy a registry version on an existing engine: Seldon Core or KServe, running MLServer.

:func:`export_model` pins ``NAME@ALIAS`` to the exact version and digest it resolves to now and
writes an MLServer model repository for it — ``models/NAME/model-settings.json`` (implementation
:class:`perfml.serving.mlserver.PerfmlRuntime`) beside the artifact ``models/NAME/model.zip`` —
and the custom resource that runs it:

- ``seldon``: a ``SeldonDeployment`` (``machinelearning.seldon.io/v1``, protocol v2) whose one
  MODEL node runs the perfml MLServer image as a custom server;
- ``kserve``: an ``InferenceService`` (``serving.kserve.io/v1beta1``) whose predictor is the
  ``kserve-mlserver`` runtime (model format ``perfml``) reading ``storageUri``, or, with an
  image, a custom container speaking protocol v2.

Where the model folder goes: with ``storage_uri``, upload ``models/NAME/`` there and the engine's
storage initializer puts it in ``/mnt/models``; without one (Seldon or a KServe custom image),
bake it into the image (``mlserver build models/ -t IMAGE``). Building the custom resources is
plain data (:func:`seldon_deployment`, :func:`inference_service`, :func:`model_settings`, and
for any container :func:`seldon_resource` and :func:`kserve_resource`);
:func:`export_model` only resolves and writes.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from perfml import __version__
from perfml.errors import UsageError
from perfml.registry.names import Ref, parse_ref
from perfml.registry.records import ModelVersion
from perfml.registry.registry import ModelRegistry

Target = Literal["seldon", "kserve"]
TARGETS: tuple[Target, ...] = ("seldon", "kserve")
RUNTIME = "perfml.serving.mlserver.PerfmlRuntime"
KSERVE_RUNTIME = "kserve-mlserver"
MODEL_FORMAT = "perfml"
DEFAULT_IMAGE = f"perfml-mlserver:{__version__}"
"""The image a custom server runs unless told: MLServer with ``perfml[mlserver]`` installed."""
ARTIFACT = "model.zip"
SETTINGS_FILE = "model-settings.json"
MOUNT = "/mnt/models"
HTTP_PORT = 8080


class ExportError(UsageError):
    """The export cannot be made as asked."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)


@dataclass(frozen=True)
class Export:
    """What :func:`export_model` wrote, and the version it pinned."""

    version: ModelVersion
    target: Target
    manifest: Path
    model_settings: Path
    artifact: Path


def parse_target(text: str) -> Target:
    """``text`` as a :data:`Target`, or :class:`ExportError` naming the choices."""
    for target in TARGETS:
        if text == target:
            return target
    raise ExportError(f"unknown target {text!r}; one of {', '.join(TARGETS)}")


def resource_name(model: str) -> str:
    """A Kubernetes (DNS-1123 label) name for ``model``.

    >>> resource_name("CPU_util.v2")
    'cpu-util-v2'
    """
    name = re.sub(r"[^a-z0-9-]+", "-", model.lower()).strip("-")[:63].rstrip("-")
    if not name:
        raise ExportError(f"model name {model!r} gives no Kubernetes resource name")
    return name


def model_settings(version: ModelVersion, name: str | None = None) -> dict[str, Any]:
    """MLServer's ``model-settings.json`` for ``version``, served as ``name`` (the model's)."""
    return {
        "name": name or version.model,
        "implementation": RUNTIME,
        "platform": f"perfml/{version.detector}",
        "versions": [f"perfml/{version.perfml_version}"],
        "parameters": {
            "uri": f"./{ARTIFACT}",
            "version": str(version.version),
            "extra": {"sha256": version.digest, "record": version.to_json()},
        },
    }


def _metadata(version: ModelVersion, namespace: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": resource_name(version.model),
        "labels": {
            "app.kubernetes.io/name": resource_name(version.model),
            "app.kubernetes.io/managed-by": "perfml",
            "perfml.io/model-version": str(version.version),
        },
        "annotations": {
            "perfml.io/model": version.model,
            "perfml.io/version": str(version.version),
            "perfml.io/digest": f"sha256:{version.digest}",
        },
    }
    if namespace:
        metadata["namespace"] = namespace
    return metadata


def _container(
    name: str, image: str, storage_uri: str | None, extra_env: dict[str, str]
) -> dict[str, Any]:
    env = {**extra_env, **({"MLSERVER_MODELS_DIR": MOUNT} if storage_uri else {})}
    return {
        "name": name,
        "image": image,
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "ports": [{"containerPort": HTTP_PORT, "protocol": "TCP"}],
    }


def seldon_resource(
    metadata: dict[str, Any],
    graph_name: str,
    pod_spec: dict[str, Any],
    *,
    replicas: int = 1,
    storage_uri: str | None = None,
    pod_metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A protocol-v2 ``SeldonDeployment`` of one MODEL node ``graph_name``, run by the
    container of that name in ``pod_spec`` (``pod_metadata``: labels of its pods)."""
    graph: dict[str, Any] = {"name": graph_name, "type": "MODEL", "children": []}
    if storage_uri:
        graph["modelUri"] = storage_uri
    component: dict[str, Any] = {"spec": pod_spec}
    if pod_metadata:
        component = {"metadata": pod_metadata, **component}
    return {
        "apiVersion": "machinelearning.seldon.io/v1",
        "kind": "SeldonDeployment",
        "metadata": metadata,
        "spec": {
            "protocol": "v2",
            "predictors": [
                {
                    "name": "default",
                    "replicas": replicas,
                    "graph": graph,
                    "componentSpecs": [component],
                }
            ],
        },
    }


def seldon_deployment(
    version: ModelVersion,
    *,
    image: str = DEFAULT_IMAGE,
    namespace: str | None = None,
    storage_uri: str | None = None,
) -> dict[str, Any]:
    """A ``SeldonDeployment`` running the perfml MLServer image as a protocol-v2 custom server."""
    name = resource_name(version.model)
    return seldon_resource(
        _metadata(version, namespace),
        name,
        {"containers": [_container(name, image, storage_uri, {})]},
        storage_uri=storage_uri,
    )


def inference_service(
    version: ModelVersion,
    *,
    image: str | None = None,
    namespace: str | None = None,
    storage_uri: str | None = None,
) -> dict[str, Any]:
    """An ``InferenceService``: the ``kserve-mlserver`` runtime, or a custom ``image``."""
    predictor: dict[str, Any]
    if image is None:
        if not storage_uri:
            raise ExportError(
                f"KServe's {KSERVE_RUNTIME} runtime reads the model from a storage URI: "
                "pass --storage-uri, or --image for a custom container with the model built in"
            )
        predictor = {
            "model": {
                "modelFormat": {"name": MODEL_FORMAT},
                "runtime": KSERVE_RUNTIME,
                "protocolVersion": "v2",
                "storageUri": storage_uri,
            }
        }
    else:
        env = {"PROTOCOL": "v2", **({"STORAGE_URI": storage_uri} if storage_uri else {})}
        predictor = {"containers": [_container("kserve-container", image, storage_uri, env)]}
    return kserve_resource(_metadata(version, namespace), predictor)


def kserve_resource(metadata: dict[str, Any], predictor: dict[str, Any]) -> dict[str, Any]:
    """An ``InferenceService`` of ``predictor`` (a runtime's ``model``, or a pod spec)."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": {"predictor": predictor},
    }


def export_model(
    registry: ModelRegistry,
    ref: str | Ref,
    target: Target,
    out_dir: Path,
    *,
    image: str | None = None,
    namespace: str | None = None,
    storage_uri: str | None = None,
) -> Export:
    """Resolve ``ref`` now and write the model repository and the custom resource to ``out_dir``."""
    target = parse_target(target)
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    version = registry.resolve(ref)  # raises for an unknown model or alias
    if target == "seldon":
        manifest = seldon_deployment(
            version, image=image or DEFAULT_IMAGE, namespace=namespace, storage_uri=storage_uri
        )
    else:
        manifest = inference_service(
            version, image=image, namespace=namespace, storage_uri=storage_uri
        )
    model_dir = out_dir / "models" / version.model
    model_dir.mkdir(parents=True, exist_ok=True)
    artifact = model_dir / ARTIFACT
    shutil.copyfile(registry.fetch(Ref(version.model, version=version.version)), artifact)
    settings_path = model_dir / SETTINGS_FILE
    settings_path.write_text(json.dumps(model_settings(version), indent=2) + "\n")
    manifest_path = out_dir / f"{manifest['kind'].lower()}.yaml"
    manifest_path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return Export(version, target, manifest_path, settings_path, artifact)
