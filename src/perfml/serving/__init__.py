"""Serving: the Open Inference Protocol v2 over models followed by alias, reloaded when it moves.

- :mod:`.types` — the protocol's wire types;
- :mod:`.errors` — typed failures carrying their HTTP status;
- :mod:`.models` — the model repository (registry references, atomic hot reload);
- :mod:`.dataplane` — the transport-free core (health, metadata, infer, feedback);
- :mod:`.rest` — the HTTP adapter (FastAPI), which only translates.
"""

from perfml.serving.dataplane import DataPlane
from perfml.serving.errors import ServingError
from perfml.serving.repository import LoadedModel, ModelRepository
from perfml.serving.rest import NoMetrics, ServingMetrics, build_app

__all__ = [
    "DataPlane",
    "LoadedModel",
    "ModelRepository",
    "NoMetrics",
    "ServingError",
    "ServingMetrics",
    "build_app",
]
