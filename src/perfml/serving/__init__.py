"""Serving: the Open Inference Protocol v2 over models followed by alias, reloaded when it moves.

- :mod:`.types` — the protocol's wire types;
- :mod:`.errors` — typed failures carrying their HTTP status;
- :mod:`.repository` — the model repository (registry references, atomic hot reload);
- :mod:`.dataplane` — the transport-free core (health, metadata, infer, feedback);
- :mod:`.rest` — the HTTP adapter (FastAPI), which only translates;
- :mod:`.app` — the inference server assembled from its parts (:func:`inference_app`);
- :mod:`.server` — uvicorn in a thread (:class:`AppServer`); :mod:`.telemetry` — its metrics;
- :mod:`.engines` and :mod:`.mlserver` — the export to KServe, Seldon Core and MLServer.
"""

from typing import TYPE_CHECKING

from perfml.lazy import exports
from perfml.serving.dataplane import DataPlane
from perfml.serving.errors import ServingError
from perfml.serving.repository import LoadedModel, ModelRepository
from perfml.serving.rest import NoMetrics, ServingMetrics, build_app

if TYPE_CHECKING:
    from perfml.serving.app import inference_app
    from perfml.serving.server import AppServer

__getattr__ = exports(
    __name__, {"inference_app": "perfml.serving.app", "AppServer": "perfml.serving.server"}
)

__all__ = [
    "AppServer",
    "DataPlane",
    "LoadedModel",
    "ModelRepository",
    "NoMetrics",
    "ServingError",
    "ServingMetrics",
    "build_app",
    "inference_app",
]
