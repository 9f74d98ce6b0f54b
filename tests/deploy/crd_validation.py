"""Validate Kubernetes custom resources against their CRDs' schemas, as the API server would.

A CRD describes its objects with ``openAPIV3Schema``, a dialect of OpenAPI v3 with Kubernetes
extensions. :func:`to_json_schema` turns one into a JSON Schema (draft 2020-12) that
``jsonschema`` checks:

- ``nullable: true`` adds ``null`` to the allowed types; the boolean ``exclusiveMinimum`` and
  ``exclusiveMaximum`` of OpenAPI 3.0 become JSON Schema's numbers;
- ``x-kubernetes-int-or-string: true`` allows an integer or a string;
- an object with ``properties`` rejects any other field unless it says
  ``x-kubernetes-preserve-unknown-fields: true`` — the API server's strict field validation
  (``kubectl apply --validate=strict``), which turns a misspelt field into an error instead of
  silently pruning it;
- ``x-kubernetes-list-type: set`` requires unique items, ``x-kubernetes-embedded-resource``
  requires ``apiVersion`` and ``kind``;
- ``x-kubernetes-validations`` (CEL rules) are not evaluated;
- ``x-perfml-inline: [definition, ...]`` (used by the fixtures only) merges the properties of
  Kubernetes definitions into the object, as a Go type embedding them with ``json:",inline"``.

``$ref`` to ``https://kubernetes.io/api/_definitions.json#/$defs/<name>`` reaches Kubernetes'
own definitions (PodSpec, Container, ObjectMeta...), taken from the strict schemas that
``kubernetes-validate`` ships; every object's ``metadata`` is checked against ``ObjectMeta``.

The schemas live in ``crds/`` next to this file, one YAML file per kind with ``apiVersion``,
``kind`` and ``openAPIV3Schema`` (their sources are in ``crds/README.md``).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource

CRD_DIR = Path(__file__).parent / "crds"
DEFINITIONS_URI = "https://kubernetes.io/api/_definitions.json"
_OBJECT_META = f"{DEFINITIONS_URI}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


class SchemaNotFoundError(LookupError):
    """No CRD schema in ``crds/`` for this apiVersion and kind."""

    def __init__(self, api_version: str, kind: str) -> None:
        super().__init__(f"no CRD schema for {api_version} {kind} in {CRD_DIR}")
        self.api_version = api_version
        self.kind = kind


class CustomResourceInvalidError(ValueError):
    """An object breaks its CRD's schema; ``problems`` lists each failure with its path."""

    def __init__(self, name: str, problems: list[str]) -> None:
        super().__init__(f"{name} is invalid:\n  " + "\n  ".join(problems))
        self.problems = problems


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name.split("-")[0]))


@functools.cache
def kubernetes_definitions() -> dict[str, Any]:
    """Kubernetes' own definitions, strict, of the newest version ``kubernetes-validate`` has."""
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    strict = [path for path in root.iterdir() if path.name.endswith("-local-strict")]
    newest = max(strict, key=lambda path: _version_key(path.name.lstrip("v")))
    definitions: dict[str, Any] = json.loads((newest / "_definitions.json").read_text())
    return definitions


def _absolute_refs(node: Any) -> Any:
    """``node`` with its ``#/$defs/...`` references pointing into Kubernetes' definitions."""
    if isinstance(node, list):
        return [_absolute_refs(item) for item in node]
    if isinstance(node, Mapping):
        return {
            key: DEFINITIONS_URI + value
            if key == "$ref" and isinstance(value, str) and value.startswith("#")
            else _absolute_refs(value)
            for key, value in node.items()
        }
    return node


def to_json_schema(node: Any) -> Any:
    """The JSON Schema equivalent of an ``openAPIV3Schema`` node (see the module's doc)."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, Mapping):
        return node
    if "$ref" in node:
        return dict(node)
    schema: dict[str, Any] = {}
    properties = dict(node.get("properties", {}))
    for name in node.get("x-perfml-inline", []):
        inlined = _absolute_refs(kubernetes_definitions()["$defs"][name]["properties"])
        properties = {**inlined, **properties}
    for key, value in node.items():
        if key.startswith(("x-kubernetes-", "x-perfml-")) or key == "nullable":
            continue
        if key == "properties":
            schema[key] = {name: to_json_schema(sub) for name, sub in properties.items()}
        elif key in {"items", "additionalProperties", "not"} or key in {"anyOf", "allOf", "oneOf"}:
            schema[key] = to_json_schema(value)
        else:
            schema[key] = copy.deepcopy(value)
    if properties and "properties" not in schema:
        schema["properties"] = {name: to_json_schema(sub) for name, sub in properties.items()}
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if schema.get(exclusive) is True:  # OpenAPI 3.0's boolean form
            schema[exclusive] = schema.pop(bound)
        elif schema.get(exclusive) is False:
            del schema[exclusive]
    if node.get("x-kubernetes-int-or-string"):
        schema.pop("type", None)
        schema.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    preserve = node.get("x-kubernetes-preserve-unknown-fields", False)
    if schema.get("type") == "object" and "properties" in schema and not preserve:
        schema.setdefault("additionalProperties", False)
    if node.get("x-kubernetes-list-type") == "set":
        schema["uniqueItems"] = True
    if node.get("x-kubernetes-embedded-resource"):
        schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
    if node.get("nullable"):
        if "type" in schema:
            schema["type"] = [schema["type"], "null"]
        else:
            schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


@functools.cache
def _schemas(directory: Path) -> dict[tuple[str, str], dict[str, Any]]:
    schemas = {}
    for path in sorted(directory.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        schema = to_json_schema(document["openAPIV3Schema"])
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
        schema["properties"]["apiVersion"] = {"const": document["apiVersion"]}
        schema["properties"]["kind"] = {"const": document["kind"]}
        schema["properties"]["metadata"] = {"$ref": _OBJECT_META}
        schemas[document["apiVersion"], document["kind"]] = schema
    return schemas


def schemas(directory: Path = CRD_DIR) -> dict[tuple[str, str], dict[str, Any]]:
    """Every CRD schema in ``directory``, as JSON Schema, by ``(apiVersion, kind)``."""
    return _schemas(directory)


@functools.cache
def _registry() -> Registry:
    definitions = Resource.from_contents(kubernetes_definitions())
    registry: Registry = Registry().with_resource(DEFINITIONS_URI, definitions)
    return registry


def has_schema(obj: Mapping[str, Any], directory: Path = CRD_DIR) -> bool:
    """Whether ``obj`` is of a kind that has a CRD schema in ``directory``."""
    return (obj.get("apiVersion"), obj.get("kind")) in schemas(directory)


def problems(obj: Mapping[str, Any], directory: Path = CRD_DIR) -> list[str]:
    """Each way ``obj`` breaks its CRD's schema, as ``path: message`` (empty when valid)."""
    key = (str(obj.get("apiVersion")), str(obj.get("kind")))
    schema = schemas(directory).get(key)
    if schema is None:
        raise SchemaNotFoundError(*key)
    validator = jsonschema.Draft202012Validator(schema, registry=_registry())
    found = []
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path))):
        path = ".".join(str(part) for part in error.absolute_path) or "<root>"
        found.append(f"{path}: {error.message}")
    return found


def validate(obj: Mapping[str, Any], directory: Path = CRD_DIR) -> None:
    """Raise :class:`CustomResourceInvalidError` unless ``obj`` satisfies its CRD's schema."""
    found = problems(obj, directory)
    if found:
        name = obj.get("metadata", {}).get("name", "?")
        raise CustomResourceInvalidError(f"{obj.get('kind')} {name}", found)


def validate_all(objects: Iterable[Mapping[str, Any]], directory: Path = CRD_DIR) -> int:
    """Validate every object that has a CRD schema; return how many were checked."""
    checked = 0
    for obj in objects:
        if has_schema(obj, directory):
            validate(obj, directory)
            checked += 1
    return checked
