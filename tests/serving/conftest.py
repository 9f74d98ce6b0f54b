"""Serving fixtures: a registry with fitted toy models, the app over it, a live server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from fixtures.registry import database, make_artifact, registry, registry_url
from perfml.featurestore import FeatureStore
from perfml.registry import ModelRegistry
from perfml.registry.detector_versions import register_detector
from perfml.serving import DataPlane, ModelRepository, build_app
from serving.support import MAX_BODY, TestClient, multi_model, static_model

__all__ = ["database", "make_artifact", "registry", "registry_url"]


@pytest.fixture
def models(registry: ModelRegistry) -> ModelRegistry:
    """``cpu`` (v1 mean 0 with a threshold, v2 mean 3) with production on v1; ``fleet`` v1."""
    register_detector(registry, "cpu", static_model(0.0), features=["cpu_util"])
    registry.set_tag("cpu:1", "threshold", "0.4")
    register_detector(registry, "cpu", static_model(3.0), features=["cpu_util"])
    registry.set_alias("cpu", "production", 1)
    register_detector(registry, "fleet", multi_model(), features=["cpu", "mem"])
    registry.set_alias("fleet", "production", 1)
    return registry


@pytest.fixture
def failures() -> list[tuple[str, int | None, str]]:
    return []


@pytest.fixture
def repository(
    models: ModelRegistry, failures: list[tuple[str, int | None, str]]
) -> Iterator[ModelRepository]:
    repo = ModelRepository(
        models,
        ["cpu@production", "fleet@production"],
        poll_interval=0.2,
        on_load_failed=lambda m, v, e: failures.append((m, v, str(e))),
    )
    yield repo
    repo.stop()


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return FeatureStore(tmp_path / "store")


@pytest.fixture
def make_app(repository: ModelRepository, store: FeatureStore) -> Callable[..., FastAPI]:
    def make(**options: object) -> FastAPI:
        options.setdefault("max_body_bytes", MAX_BODY)
        return build_app(DataPlane(repository, store), **options)  # type: ignore[arg-type]

    return make


@pytest.fixture
def client(make_app: Callable[..., FastAPI]) -> Iterator[TestClient]:
    with TestClient(make_app(), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def live_server(make_app: Callable[..., FastAPI]) -> Iterator[str]:
    """The app on uvicorn in a thread; yields its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(make_app(), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
