"""A fresh registry per test, on SQLite (and on PostgreSQL in tests/integration)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from perfml.registry import FilesystemArtifactStore, ModelRegistry


@pytest.fixture
def make_artifact(tmp_path: Path) -> Callable[[bytes], Path]:
    counter = iter(range(10_000))

    def make(content: bytes) -> Path:
        path = tmp_path / f"artifact-{next(counter)}.bin"
        path.write_bytes(content)
        return path

    return make


@pytest.fixture
def registry_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/registry.db"


@pytest.fixture
def registry(registry_url: str, tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(
        registry_url,
        FilesystemArtifactStore(tmp_path / "artifacts"),
        actor="tester",
        cache_dir=tmp_path / "cache",
        deliver_in_background=False,
    )
