"""Where model artifacts live: content-addressed by the SHA-256 of their bytes.

An :class:`ArtifactStore` keeps files under their digest, so storing the same bytes twice is
one copy, and a version's record (digest + URI) is enough to fetch and verify it. Two stores
ship: :class:`FilesystemArtifactStore`, the embedded default (``<workspace>/artifacts``), and
the OCI registry store of :mod:`perfml.registry.oci` for teams at scale (Harbor and friends).
Every ``fetch`` re-hashes what it got and refuses bytes that do not match.

The URI a store returns, and the registry records, is relative to the store (``sha256/ab/ab…``
in a folder, ``cpu-anomaly@sha256:…`` under an OCI prefix): a workspace copied or mounted at
another path, or an artifact folder moved, still finds every model. A store also accepts the
absolute URIs older versions recorded. :meth:`ArtifactStore.where` gives the absolute location,
for people.
"""

from __future__ import annotations

import hashlib
import os
import re
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
        """Store the file whose SHA-256 is ``digest``; returns its URI relative to the store.
        Idempotent.

        ``name`` (the model's) may be used to organise the store, never to address content.
        """
        ...

    def fetch(self, uri: str, digest: str, dest: Path) -> Path:
        """Copy the artifact at ``uri`` to ``dest`` and verify its digest; returns ``dest``."""
        ...

    def delete(self, uri: str) -> None:
        """Remove the artifact (no error if it is gone already)."""
        ...

    def where(self, uri: str) -> str:
        """The absolute location of the artifact at ``uri`` (for messages and listings)."""
        ...


_RELATIVE = re.compile(r"sha256/([0-9a-f]{2})/([0-9a-f]{64})")


class FilesystemArtifactStore:
    """Artifacts as files ``<root>/sha256/<first two hex>/<digest>``, written atomically; their
    URI is that path relative to ``root``."""

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
        return target.relative_to(self.root).as_posix()

    def _own(self, uri: str) -> Path:
        """The file of ``uri``: relative (``sha256/ab/<digest>``) or, as older versions
        recorded it, absolute (``file:///…/sha256/ab/<digest>``, wherever the store was then:
        the digest names the content)."""
        relative = uri
        if uri.startswith(f"{self.scheme}://"):
            _, found, tail = uri.rpartition("/sha256/")
            relative = f"sha256/{tail}" if found else uri
        match = _RELATIVE.fullmatch(relative)
        if match is None or match.group(1) != match.group(2)[:2]:
            raise ArtifactStoreError(
                str(self.root), f"URI {uri!r} is not one of this store's (sha256/<2 hex>/<digest>)"
            )
        return self.root / relative

    def fetch(self, uri: str, digest: str, dest: Path) -> Path:
        source = self._own(uri)
        if source != self._path(digest):
            raise ArtifactStoreError(
                str(self.root), f"URI {uri!r} does not hold the artifact sha256:{digest}"
            )
        if not source.is_file():
            raise NotFoundError("artifact", uri, "deleted from the artifact store?")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not (dest.exists() and os.path.samefile(source, dest)):
            _link_or_copy(source, dest)
        verify(dest, digest, uri)
        return dest

    def delete(self, uri: str) -> None:
        self._own(uri).unlink(missing_ok=True)

    def where(self, uri: str) -> str:
        return f"{self.scheme}://{self._own(uri)}"


def _link_or_copy(source: Path, dest: Path) -> None:
    """``dest`` becomes the artifact ``source``: a hard link where both are on one file system
    (an artifact is never changed in place, so sharing its bytes is safe and a model of a
    million series is not copied), else a copy; replaced atomically either way."""
    with atomic_output(dest) as temporary:
        temporary.unlink(missing_ok=True)
        try:
            os.link(source, temporary)
        except OSError:
            shutil.copyfile(source, temporary)
