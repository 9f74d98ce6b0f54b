"""A registry built from ``perfml.yaml``'s settings: the database and the artifact store."""

from __future__ import annotations

import os

from perfml.config import Settings
from perfml.registry.artifacts import ArtifactStore, FilesystemArtifactStore
from perfml.registry.registry import ModelRegistry


def artifact_store(settings: Settings) -> ArtifactStore:
    """The filesystem store by default, or an OCI registry for ``oci://HOST[:PORT]/PREFIX``."""
    where = settings.registry.artifacts
    if where is None:
        return FilesystemArtifactStore(settings.artifacts_path)
    if where.startswith("oci://"):
        from perfml.registry.oci import OciArtifactStore

        host, _, prefix = where.removeprefix("oci://").partition("/")
        return OciArtifactStore(
            host,
            repository_prefix=prefix or "perfml",
            username=os.environ.get(settings.registry.oci_username_env) or None,
            password=os.environ.get(settings.registry.oci_password_env) or None,
            insecure=settings.registry.oci_insecure,
        )
    return FilesystemArtifactStore(where)


def open_registry(
    settings: Settings, actor: str | None = None, background_delivery: bool = True
) -> ModelRegistry:
    """The workspace's registry (SQLite by default, PostgreSQL by URL)."""
    return ModelRegistry(
        settings.registry_url,
        artifact_store(settings),
        actor=actor,
        cache_dir=settings.workspace / "cache" / "artifacts",
        deliver_in_background=background_delivery,
    )
