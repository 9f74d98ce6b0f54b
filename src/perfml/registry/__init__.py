"""The model registry: versions with lineage, aliases moved through a gate, and events."""

from perfml.registry.aliases import ConcurrentChangeError, Promotion, PromotionRefusedError
from perfml.registry.artifacts import ArtifactStore, FilesystemArtifactStore
from perfml.registry.gate import GateResult, MetricThreshold
from perfml.registry.records import AliasMove, Model, ModelVersion
from perfml.registry.registry import ModelRegistry

__all__ = [
    "AliasMove",
    "ArtifactStore",
    "ConcurrentChangeError",
    "FilesystemArtifactStore",
    "GateResult",
    "MetricThreshold",
    "Model",
    "ModelRegistry",
    "ModelVersion",
    "Promotion",
    "PromotionRefusedError",
]
