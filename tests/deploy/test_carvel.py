"""The Carvel package: custom resources valid against their CRDs, the templates equal to
``render``, the values schema, and the golden package.

The golden test compares ``export_carvel(Settings(), tmp)`` file by file with the reviewed
snapshot in ``tests/deploy/golden/carvel/``. After a deliberate change, rewrite the snapshot
with ``PERFML_UPDATE_GOLDEN=1 .venv/bin/pytest tests/deploy/test_carvel.py``, review the diff
and commit it.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from deploy import crd_validation
from perfml.config import Settings
from perfml.deploy import DeployValues, render
from perfml.deploy.carvel import export_carvel, openapi_schema
from perfml.deploy.values import SERVING_ENGINES, Thresholds
from perfml.deploy.ytt import merge_values, render_templates, schema_defaults

GOLDEN = Path(__file__).parent / "golden" / "carvel"


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("carvel")
    export_carvel(Settings(), out)
    return out


def _config(package: Path) -> tuple[list[str], dict[str, Any]]:
    config = package / "package" / "config"
    texts = [path.read_text() for path in sorted(config.glob("[0-9]*.yml"))]
    return texts, schema_defaults((config / "schema.yaml").read_text())


def _load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@pytest.mark.parametrize("engine", SERVING_ENGINES)
def test_every_custom_resource_of_render_is_valid(engine: str) -> None:
    objects = render(Settings(), DeployValues(serving_engine=engine))
    checked = crd_validation.validate_all(objects)
    kinds = {o["kind"] for o in objects if crd_validation.has_schema(o)}
    assert checked == len([o for o in objects if crd_validation.has_schema(o)])
    assert {"PrometheusRule", "PodMonitor"} <= kinds
    expected = {"seldon": "SeldonDeployment", "kserve": "InferenceService"}.get(engine)
    if expected:
        assert expected in kinds


def test_broken_custom_resources_fail() -> None:
    objects = render(Settings(), DeployValues(serving_engine="seldon"))
    sdep = copy.deepcopy(next(o for o in objects if o["kind"] == "SeldonDeployment"))
    sdep["spec"]["predictors"][0]["replicas"] = "two"
    with pytest.raises(crd_validation.CustomResourceInvalidError, match="replicas"):
        crd_validation.validate(sdep)
    rule = copy.deepcopy(next(o for o in objects if o["kind"] == "PrometheusRule"))
    rule["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    with pytest.raises(crd_validation.CustomResourceInvalidError, match="for"):
        crd_validation.validate(rule)
    monitor = copy.deepcopy(next(o for o in objects if o["kind"] == "PodMonitor"))
    monitor["spec"]["podMetricsEndpoints"][0]["intervall"] = "30s"
    with pytest.raises(crd_validation.CustomResourceInvalidError, match="intervall"):
        crd_validation.validate(monitor)


def test_every_carvel_object_is_valid_and_broken_ones_fail(package: Path) -> None:
    files = [
        package / "repo" / "packages" / "perfml.dev" / "0.1.0.yml",
        package / "repo" / "packages" / "perfml.dev" / "metadata.yml",
        package / "examples" / "packagerepository.yml",
        package / "examples" / "packageinstall.yml",
    ]
    objects = [obj for path in files for obj in _load(path)]
    assert crd_validation.validate_all(objects) == 4
    pkg = copy.deepcopy(objects[0])
    pkg["spec"]["template"]["spec"]["fetch"][0]["imgpkgBundle"]["imag"] = "x"
    with pytest.raises(crd_validation.CustomResourceInvalidError, match="imag"):
        crd_validation.validate(pkg)
    repo = copy.deepcopy(objects[2])
    del repo["spec"]["fetch"]
    with pytest.raises(crd_validation.CustomResourceInvalidError, match="fetch"):
        crd_validation.validate(repo)


def test_values_schema_accepts_the_defaults_and_rejects_a_bad_value() -> None:
    schema = crd_validation.to_json_schema(openapi_schema())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(DeployValues().model_dump(mode="json"))
    validator.validate(DeployValues(thresholds=Thresholds(drift=0.3)).model_dump(mode="json"))
    for bad in ({"serving_engine": "triton"}, {"replicas": 0}, {"unknown": 1}):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate({**DeployValues().model_dump(mode="json"), **bad})


def test_templates_with_the_schema_defaults_give_render(package: Path) -> None:
    texts, defaults = _config(package)
    # kapp versions the config map in the package (the objects carry no digest of it)
    assert render_templates(texts, defaults) == render(
        Settings(), DeployValues(), versioned_config=True
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"serving_engine": "kserve", "replicas": 4, "namespace": "team-a", "image": "r.io/p:1"},
        {"serving_engine": "deployment", "scheduler": "deployment", "storage_class": "fast"},
        {"resources": {"serving": {"limits": {"cpu": "3", "memory": "3Gi"}}}, "schedule": "@daily"},
        {"thresholds": {"drift": 0.25, "latency_p99": "1s", "error_rate": 0.2}},
    ],
)
def test_templates_with_other_values_give_render(package: Path, overrides: dict[str, Any]) -> None:
    texts, defaults = _config(package)
    values = merge_values(defaults, overrides)
    expected = render(Settings(), DeployValues.model_validate(values), versioned_config=True)
    key = sorted(map(repr, expected))
    assert sorted(map(repr, render_templates(texts, values))) == key


def test_images_lock_names_the_image_of_the_templates(package: Path) -> None:
    (lock,) = _load(package / "package" / ".imgpkg" / "images.yml")
    texts, defaults = _config(package)
    images = {
        container["image"]
        for obj in render_templates(texts, defaults)
        for container in _containers(obj)
    }
    assert [entry["image"] for entry in lock["images"]] == [DeployValues().image]
    assert images == {DeployValues().image}
    (repo_lock,) = _load(package / "repo" / ".imgpkg" / "images.yml")
    (pkg,) = _load(package / "repo" / "packages" / "perfml.dev" / "0.1.0.yml")
    bundle = pkg["spec"]["template"]["spec"]["fetch"][0]["imgpkgBundle"]["image"]
    assert repo_lock["images"][0]["image"] == bundle


def _containers(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"containers", "initContainers"} and isinstance(value, list):
                found.extend(value)
            else:
                found.extend(_containers(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_containers(item))
    return found


def test_the_default_package_matches_the_golden_snapshot(package: Path) -> None:
    written = sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file())
    if os.environ.get("PERFML_UPDATE_GOLDEN") == "1":
        shutil.rmtree(GOLDEN, ignore_errors=True)
        shutil.copytree(package, GOLDEN)
    golden = sorted(str(p.relative_to(GOLDEN)) for p in GOLDEN.rglob("*") if p.is_file())
    assert written == golden
    for name in written:
        assert (package / name).read_text() == (GOLDEN / name).read_text(), name


def test_the_export_is_deterministic(package: Path, tmp_path: Path) -> None:
    export_carvel(Settings(), tmp_path)
    for path in package.rglob("*"):
        if path.is_file():
            assert (tmp_path / path.relative_to(package)).read_bytes() == path.read_bytes()
