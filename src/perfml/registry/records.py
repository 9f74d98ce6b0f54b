"""The registry's records, as immutable values."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def instant(epoch_seconds: float | None) -> datetime | None:
    return None if epoch_seconds is None else datetime.fromtimestamp(epoch_seconds, tz=UTC)


@dataclass(frozen=True)
class ModelVersion:
    """One immutable version of a model: its artifact and where it came from."""

    model: str
    version: int
    digest: str
    artifact_uri: str
    size_bytes: int
    detector: str
    params: dict[str, Any]
    data_start: datetime | None
    data_end: datetime | None
    features: list[str]
    pipeline_run: str | None
    metrics: dict[str, float]
    perfml_version: str
    tags: dict[str, str]
    description: str
    created_at: datetime
    aliases: tuple[str, ...] = ()
    entities: tuple[str, ...] | None = None
    """The series (entities) the version learnt; None where it was not recorded."""

    @property
    def ref(self) -> str:
        return f"{self.model}:{self.version}"

    @property
    def threshold(self) -> float | None:
        """The anomaly threshold recorded with the version (a ``threshold`` tag, else the
        metric the training pipeline records), if it is a finite number."""
        raw = self.tags.get("threshold", self.metrics.get("threshold"))
        try:
            found = None if raw is None else float(raw)
        except ValueError:
            return None
        return found if found is not None and math.isfinite(found) else None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "digest": self.digest,
            "artifact_uri": self.artifact_uri,
            "size_bytes": self.size_bytes,
            "detector": self.detector,
            "params": self.params,
            "data_start": _iso(self.data_start),
            "data_end": _iso(self.data_end),
            "features": self.features,
            "pipeline_run": self.pipeline_run,
            "metrics": self.metrics,
            "perfml_version": self.perfml_version,
            "tags": self.tags,
            "description": self.description,
            "created_at": _iso(self.created_at),
            "aliases": list(self.aliases),
            "entities": None if self.entities is None else list(self.entities),
        }


@dataclass(frozen=True)
class Model:
    """A named model: its versions share a purpose (a metric, a fleet, a service)."""

    name: str
    description: str
    tags: dict[str, str]
    created_at: datetime
    latest_version: int | None
    aliases: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "tags": self.tags,
            "created_at": _iso(self.created_at),
            "latest_version": self.latest_version,
            "aliases": self.aliases,
        }


@dataclass(frozen=True)
class AliasMove:
    """One entry of the audit log: an alias moved (or was set, or removed)."""

    model: str
    alias: str
    action: str
    from_version: int | None
    to_version: int | None
    actor: str
    at: datetime
    reason: str
    forced: bool
    gate: dict[str, Any] | None
    revision: int

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "alias": self.alias,
            "action": self.action,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "actor": self.actor,
            "at": _iso(self.at),
            "reason": self.reason,
            "forced": self.forced,
            "gate": self.gate,
            "revision": self.revision,
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
