"""Where model artifacts live: content-addressed by the SHA-256 of their bytes.

An :class:`ArtifactStore` keeps files under their digest, so storing the same bytes twice is
one copy, and a version's record (digest + URI) is enough to fetch and verify it. Two stores
ship: :class:`FilesystemArtifactStore`, the embedded default (``<workspace>/artifacts``), and
the OCI registry store of :mod:`perfml.registry.oci` for teams at scale (Harbor and friends).
Every ``fetch`` re-hashes what it got and refuses bytes that do not match.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Protocol

from perfml.atomic import atomic_output
from perfml.registry.errors import ArtifactIntegrityError, ArtifactStoreError, NotFoundError

_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, expected: str, where: str) -> None:
    """Raise :class:`ArtifactIntegrityError` unless ``path`` hashes to ``expected``."""
    actual = sha256_of(path)
    if actual != expected:
        raise ArtifactIntegrityError(where, expected, actual)


class ArtifactStore(Protocol):
    """Content-addressed storage of model artifacts."""

    def put(self, path: Path, digest: str, name: str) -> str:
        """Store the file whose SHA-256 is ``digest``; returns its URI. Idempotent.

        ``name`` (the model's) may be used to organise the store, never to address content.
        """
        ...

    def fetch(self, uri: str, digest: str, dest: Path) -> Path:
        """Copy the artifact at ``uri`` to ``dest`` and verify its digest; returns ``dest``."""
        ...

    def delete(self, uri: str) -> None:
        """Remove the artifact (no error if it is gone already)."""
        ...


class FilesystemArtifactStore:
    """Artifacts as files ``<root>/sha256/<first two hex>/<digest>``, written atomically."""

    scheme = "file"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()

    def _path(self, digest: str) -> Path:
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ArtifactStoreError(str(self.root), f"{digest!r} is not a sha256 hex digest")
        return self.root / "sha256" / digest[:2] / digest

    def put(self, path: Path, digest: str, name: str) -> str:
        target = self._path(digest)
        if not target.exists():
            with atomic_output(target, durable=True) as temporary:
                shutil.copyfile(path, temporary)
                verify(temporary, digest, str(path))
        return f"{self.scheme}://{target}"

    def fetch(self, uri: str, digest: str, dest: Path) -> Path:
        source = self._path(digest)
        if uri != f"{self.scheme}://{source}":
            raise ArtifactStoreError(str(self.root), f"URI {uri!r} is not one of this store's")
        if not source.is_file():
            raise NotFoundError("artifact", uri, "deleted from the artifact store?")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        verify(dest, digest, uri)
        return dest

    def delete(self, uri: str) -> None:
        prefix = f"{self.scheme}://"
        path = Path(uri.removeprefix(prefix))
        if not uri.startswith(prefix) or self.root not in path.parents:
            raise ArtifactStoreError(str(self.root), f"URI {uri!r} is not one of this store's")
        path.unlink(missing_ok=True)
