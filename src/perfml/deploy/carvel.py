"""perfml as a Carvel package: installed on any cluster by kapp-controller.

:func:`export_carvel` writes, deterministically (the same settings give byte-identical files)
and atomically, file by file, a package bundle and a package repository bundle::

    package/config/NN-<kind>-<name>.yml   ytt templates of every object of render() (.templating)
    package/config/schema.yaml            the data-values schema: every knob, default, desc
    package/config/helpers.star           number() and seconds() for the templates (.ytt)
    package/.imgpkg/images.yml            the ImagesLock naming the perfml image (kbld)
    repo/packages/perfml.dev/<version>.yml  the Package
    repo/packages/perfml.dev/metadata.yml   the PackageMetadata
    repo/.imgpkg/images.yml               the ImagesLock naming the package bundle
    examples/packagerepository.yml        the PackageRepository that adds the repo bundle
    examples/packageinstall.yml           PackageInstall, its ServiceAccount and RBAC, values

>>> package_object("0.1.0", "ghcr.io/perfml/perfml-package:0.1.0", {})["metadata"]["name"]
'perfml.dev.0.1.0'
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from perfml import __version__
from perfml.alerting.prometheus_config import dump_yaml
from perfml.atomic import atomic_output
from perfml.config import Settings
from perfml.deploy.templating import Knob, knobs, templates
from perfml.deploy.values import DeployValues
from perfml.deploy.ytt import HELPERS_FILE, HELPERS_STAR, SchemaField, schema_text, template_text

PACKAGE_NAME = "perfml.dev"
BUNDLE_REPOSITORY = "ghcr.io/perfml"
INSTALL_NAMESPACE = "perfml-system"
_HEADER = "# Written by `perfml export carvel` from perfml.yaml: change that file instead.\n"
_DESCRIPTIONS = {
    "image": "the perfml image every pod runs",
    "namespace": "the namespace perfml runs in",
    "replicas": "serving replicas",
    "storage_class": "storage class of the workspace claim; null: the cluster's default",
    "storage_size": "size of the workspace claim",
    "serving_engine": "what serves the models: seldon (Seldon Core), kserve or deployment",
    "schedule": "the controller CronJob's schedule",
}


def _description(knob: Knob) -> str:
    if knob.description:
        return knob.description
    if knob.path[0] == "resources":
        component, kind, resource = knob.path[1:]
        return f"{resource} the {component.replace('_', ' ')} container {kind}"
    return _DESCRIPTIONS.get(knob.path[-1], knob.path[-1].replace("_", " "))


def _nullable_example(knob: Knob) -> Any:
    return "" if isinstance(knob.probe, str) else 0.0


def schema_fields(base: DeployValues | None = None) -> list[SchemaField]:
    """The knobs of the data-values schema, as :func:`.templating.knobs` finds them, with
    ``base``'s values (default: the defaults) as their defaults."""
    return [
        SchemaField(
            knob.path,
            knob.default,
            _description(knob),
            _nullable_example(knob),
            knob.choices,
        )
        for knob in knobs(base=base)
    ]


def openapi_schema(base: DeployValues | None = None) -> dict[str, Any]:
    """``valuesSchema.openAPIv3`` of the Package: :class:`DeployValues`' JSON schema in the
    OpenAPI v3 dialect kapp-controller shows (references inlined, ``nullable``, defaults)."""
    source = DeployValues.model_json_schema()
    definitions = source.get("$defs", {})
    defaults = (base or DeployValues()).model_dump(mode="json")

    def convert(node: dict[str, Any], default: Any) -> dict[str, Any]:
        if "$ref" in node:
            rest = {key: value for key, value in node.items() if key != "$ref"}
            node = {**definitions[node["$ref"].split("/")[-1]], **rest}
        node = copy.deepcopy(node)
        nullable = False
        if "anyOf" in node:
            every = node.pop("anyOf")
            options = [option for option in every if option.get("type") != "null"]
            nullable = len(options) < len(every)
            node = {**options[0], **node}
        result: dict[str, Any] = {}
        for key in ("type", "description", "enum", "pattern", "minLength", "maxLength"):
            if key in node:
                result[key] = node[key]
        for source_key, target in (
            ("minimum", "minimum"),
            ("maximum", "maximum"),
            ("exclusiveMinimum", "minimum"),
            ("exclusiveMaximum", "maximum"),
        ):
            if source_key in node:
                result[target] = node[source_key]
                if source_key.startswith("exclusive"):
                    result[source_key] = True
        if "const" in node:
            result["enum"] = [node["const"]]
        if "properties" in node:
            result["type"] = "object"
            result["additionalProperties"] = False
            result["properties"] = {
                name: convert(sub, (default or {}).get(name))
                for name, sub in node["properties"].items()
            }
        elif default is not None or nullable:
            result["default"] = default
        if nullable and default is None:
            result["nullable"] = True
        return result

    return convert(source, defaults)


def images_lock(image: str) -> dict[str, Any]:
    """An imgpkg ``ImagesLock`` naming ``image``, as ``kbld --imgpkg-lock-output`` writes it
    (resolve it to a digest with kbld before pushing a release)."""
    return {
        "apiVersion": "imgpkg.carvel.dev/v1alpha1",
        "kind": "ImagesLock",
        "images": [{"image": image, "annotations": {"kbld.carvel.dev/id": image}}],
    }


def package_object(version: str, bundle: str, values_schema: dict[str, Any]) -> dict[str, Any]:
    """The ``Package`` of ``version`` whose templates are in the imgpkg ``bundle``."""
    return {
        "apiVersion": "data.packaging.carvel.dev/v1alpha1",
        "kind": "Package",
        "metadata": {"name": f"{PACKAGE_NAME}.{version}"},
        "spec": {
            "refName": PACKAGE_NAME,
            "version": version,
            "releaseNotes": f"perfml {version}",
            "licenses": ["Apache-2.0"],
            "valuesSchema": {"openAPIv3": values_schema},
            "template": {
                "spec": {
                    "fetch": [{"imgpkgBundle": {"image": bundle}}],
                    "template": [
                        {"ytt": {"paths": ["config/"]}},
                        {"kbld": {"paths": ["-", ".imgpkg/images.yml"]}},
                    ],
                    "deploy": [{"kapp": {}}],
                }
            },
        },
    }


def package_metadata() -> dict[str, Any]:
    """The ``PackageMetadata`` of ``perfml.dev``."""
    return {
        "apiVersion": "data.packaging.carvel.dev/v1alpha1",
        "kind": "PackageMetadata",
        "metadata": {"name": PACKAGE_NAME},
        "spec": {
            "displayName": "perfml",
            "shortDescription": "Anomaly detection for performance metrics, kept healthy",
            "longDescription": (
                "perfml trains, serves, monitors and retrains anomaly detectors for the "
                "performance metrics of a fleet: Kubeflow pipelines, Seldon Core or KServe "
                "serving, Prometheus rules and Grafana dashboards."
            ),
            "providerName": "perfml",
            "maintainers": [{"name": "perfml"}],
            "categories": ["machine-learning", "monitoring"],
        },
    }


def package_repository(repo_bundle: str) -> dict[str, Any]:
    """A ``PackageRepository`` that adds the repository bundle to a cluster."""
    return {
        "apiVersion": "packaging.carvel.dev/v1alpha1",
        "kind": "PackageRepository",
        "metadata": {"name": "perfml", "namespace": INSTALL_NAMESPACE},
        "spec": {"fetch": {"imgpkgBundle": {"image": repo_bundle}}},
    }


def install_objects(version: str) -> list[dict[str, Any]]:
    """``PackageInstall`` of ``version``, the ServiceAccount kapp-controller deploys with, its
    RBAC, and a values Secret."""
    account = "perfml-installer"
    meta = {"namespace": INSTALL_NAMESPACE}
    values = (
        "# Any subset of the knobs in package/config/schema.yaml\n"
        "replicas: 3\nserving_engine: seldon\n"
    )
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": INSTALL_NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, **meta}},
        {
            # perfml creates its namespace, RBAC and custom resources of several operators:
            # the installer needs to manage any kind of object.
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": account},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": account},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": account,
            },
            "subjects": [{"kind": "ServiceAccount", "name": account, **meta}],
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "perfml-values", **meta},
            "stringData": {"values.yml": values},
        },
        {
            "apiVersion": "packaging.carvel.dev/v1alpha1",
            "kind": "PackageInstall",
            "metadata": {"name": "perfml", **meta},
            "spec": {
                "serviceAccountName": account,
                "packageRef": {
                    "refName": PACKAGE_NAME,
                    "versionSelection": {"constraints": version},
                },
                "values": [{"secretRef": {"name": "perfml-values"}}],
            },
        },
    ]


def _write(path: Path, text: str, written: list[Path]) -> None:
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    written.append(path)


def _documents(objects: list[dict[str, Any]]) -> str:
    return _HEADER + "".join(dump_yaml(obj, header="---\n") for obj in objects)


def export_carvel(
    settings: Settings,
    out_dir: Path,
    values: DeployValues | None = None,
    *,
    version: str = __version__,
    bundle_repository: str = BUNDLE_REPOSITORY,
    render: Callable[[Settings, DeployValues], list[dict[str, Any]]] | None = None,
) -> list[Path]:
    """Write the Carvel package of ``settings`` into ``out_dir`` (see the module) and return
    the files written. ``values`` (default: :meth:`DeployValues.for_settings`) are the data
    values' defaults and name the image the bundle's ImagesLock holds; every knob stays a data
    value of the package. ``render`` defaults to :func:`perfml.deploy.k8s.render`."""
    if render is None:
        from perfml.deploy.k8s import render as render_k8s

        def render(settings: Settings, values: DeployValues) -> list[dict[str, Any]]:
            return render_k8s(settings, values, versioned_config=True)

    chosen = values or DeployValues.for_settings(settings)
    renderer = render
    documents = templates(lambda deploy_values: renderer(settings, deploy_values), chosen)
    out = Path(out_dir)
    written: list[Path] = []
    config = out / "package" / "config"
    for index, (name, docs) in enumerate(documents.items(), start=1):
        _write(config / f"{index:02d}-{name}", template_text(docs, _HEADER), written)
    _write(config / "schema.yaml", schema_text(schema_fields(chosen), _HEADER), written)
    _write(config / HELPERS_FILE, HELPERS_STAR, written)
    _write(
        out / "package" / ".imgpkg" / "images.yml",
        dump_yaml(images_lock(chosen.image), _HEADER),
        written,
    )
    bundle = f"{bundle_repository}/perfml-package:{version}"
    repo_bundle = f"{bundle_repository}/perfml-repo:{version}"
    packages = out / "repo" / "packages" / PACKAGE_NAME
    package = package_object(version, bundle, openapi_schema(chosen))
    _write(packages / f"{version}.yml", dump_yaml(package, _HEADER), written)
    _write(packages / "metadata.yml", dump_yaml(package_metadata(), _HEADER), written)
    _write(
        out / "repo" / ".imgpkg" / "images.yml", dump_yaml(images_lock(bundle), _HEADER), written
    )
    examples = out / "examples"
    _write(
        examples / "packagerepository.yml",
        dump_yaml(package_repository(repo_bundle), _HEADER),
        written,
    )
    _write(examples / "packageinstall.yml", _documents(install_objects(version)), written)
    return written
