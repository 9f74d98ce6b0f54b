"""The reference window: what the production model was trained on, read from the registry.

The training pipeline registers each version with its lineage: ``data_start`` and
``data_end`` are the training part of its window (``[start, split)``; the held-out part is not
learnt from) and ``features`` the store metrics it scores. Drift is measured against that
window by default, so "has the data moved" means "has it moved away from what *this* model
learnt"; when the production alias moves to a version trained on recent data, the reference
moves with it.

>>> from datetime import datetime, UTC
>>> from types import SimpleNamespace
>>> version = SimpleNamespace(ref="cpu:3", data_start=datetime(2024, 1, 1, tzinfo=UTC),
...                           data_end=datetime(2024, 4, 1, tzinfo=UTC))
>>> training_window(version).label
'2024-01-01..2024-04-01'
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from perfml.drift.errors import NoReferenceError
from perfml.drift.windows import Window, between
from perfml.registry.records import ModelVersion
from perfml.registry.registry import ModelRegistry

DEFAULT_ALIAS = "production"


class HasLineage(Protocol):
    """What :func:`training_window` reads of a :class:`ModelVersion`."""

    @property
    def ref(self) -> str: ...
    @property
    def data_start(self) -> datetime | None: ...
    @property
    def data_end(self) -> datetime | None: ...


def training_window(version: HasLineage) -> Window:
    """The window ``[data_start, data_end)`` the version was trained on."""
    if version.data_start is None:
        raise NoReferenceError(version.ref, "data_start")
    if version.data_end is None:
        raise NoReferenceError(version.ref, "data_end")
    return between(version.data_start, version.data_end)


def model_reference(
    registry: ModelRegistry, ref: str, alias: str = DEFAULT_ALIAS
) -> tuple[ModelVersion, Window]:
    """The version ``ref`` resolves to (``name`` alone means ``name@<alias>``) and its
    training window."""
    version = registry.resolve(resolve_name(ref, alias))
    return version, training_window(version)


def resolve_name(ref: str, alias: str = DEFAULT_ALIAS) -> str:
    """``ref`` as a full reference: a bare model name means ``name@alias``.

    >>> resolve_name("cpu"), resolve_name("cpu:3"), resolve_name("cpu@staging")
    ('cpu@production', 'cpu:3', 'cpu@staging')
    """
    return ref if ("@" in ref or ":" in ref) else f"{ref}@{alias}"
