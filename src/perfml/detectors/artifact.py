"""The saved form of a detector: a zip of ``detector.json`` and ``.npy`` arrays, no pickle.

``detector.json`` names the format and its version, the detector's kind, parameters and state
version, JSON metadata, and every array with its dtype, shape and SHA-256. Loading reads
nothing but that JSON and plain numeric arrays (``allow_pickle=False``), checks every digest,
and refuses a file that is not a zip, lacks a member, was truncated or altered, comes from
another program or from a newer state version — with a message that says which.

The archive is deterministic (fixed member order and timestamps), so the same model always
saves to the same bytes and its SHA-256 can identify it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from perfml import __version__
from perfml.atomic import atomic_output
from perfml.detectors.errors import ArtifactError

FORMAT = "perfml-detector"
FORMAT_VERSION = 1
MANIFEST = "detector.json"
MAX_BYTES = 64 << 30
STORED_FROM = 1 << 20
"""Arrays this large are stored uncompressed, so that they can be memory-mapped."""
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Saved:
    """A detector's contents as stored: what :func:`read` returns."""

    kind: str
    state_version: int
    params: dict[str, Any]
    meta: dict[str, Any]
    arrays: dict[str, npt.NDArray[Any]]
    perfml_version: str


def write(
    path: str | os.PathLike[str],
    kind: str,
    state_version: int,
    params: dict[str, Any],
    meta: dict[str, Any],
    arrays: dict[str, npt.NDArray[Any]],
) -> str:
    """Write atomically; returns the file's SHA-256.

    Arrays are streamed into the archive (hashed in one pass, written in another), so
    writing takes no memory beyond the arrays themselves, whatever their size."""
    path = Path(path)
    index = {}
    for name, array in sorted(arrays.items()):
        if array.dtype.kind not in "biuf":
            raise ArtifactError(path, f"array {name!r} has dtype {array.dtype}, not numeric")
        digest = _Hashing()
        np.lib.format.write_array(digest, np.ascontiguousarray(array), allow_pickle=False)
        index[name] = {
            "dtype": array.dtype.str,
            "shape": list(array.shape),
            "sha256": digest.hexdigest(),
        }
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "state_version": state_version,
        "perfml_version": __version__,
        "params": params,
        "meta": meta,
        "arrays": index,
    }
    text = json.dumps(manifest, sort_keys=True, indent=1, allow_nan=False).encode()
    with atomic_output(path, durable=True) as temporary:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(_info(MANIFEST, zipfile.ZIP_DEFLATED), text)
            for name in sorted(arrays):
                array = np.ascontiguousarray(arrays[name])
                large = array.nbytes >= STORED_FROM
                info = _info(
                    f"arrays/{name}.npy", zipfile.ZIP_STORED if large else zipfile.ZIP_DEFLATED
                )
                with archive.open(info, "w", force_zip64=large) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)
        # Returning inside the block still completes it: the file is in place when we return.
        return _file_digest(temporary)


class _Hashing:
    """A write-only file that keeps only the SHA-256 of what is written to it."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        return len(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _info(member: str, compression: int) -> zipfile.ZipInfo:
    """A member's entry, with fixed timestamps so that the same content is the same bytes."""
    info = zipfile.ZipInfo(member, date_time=_EPOCH)
    info.compress_type = compression
    info.external_attr = 0o644 << 16
    return info


def _file_digest(path: Path) -> str:
    hashed = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(16 << 20):
            hashed.update(chunk)
    return hashed.hexdigest()


def read(path: str | os.PathLike[str], mmap: bool = False, verified: bool = False) -> Saved:
    """Read and verify a saved detector (see the module's description of what is refused).

    With ``mmap``, a large array stored uncompressed is memory-mapped rather than read (its
    digest is still checked, reading it once in chunks), copy-on-write: what the process
    writes into it stays in the process, the file never changes. With ``verified`` (the
    caller has just checked the whole file against a digest it trusts, as the registry does)
    the arrays' own digests are not computed again."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ArtifactError(path, "no such file") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArtifactError(path, f"not a saved perfml detector ({exc})") from None
    with archive:
        names = set(archive.namelist())
        if MANIFEST not in names:
            raise ArtifactError(path, f"not a saved perfml detector (no {MANIFEST})")
        if sum(info.file_size for info in archive.infolist()) > MAX_BYTES:
            raise ArtifactError(path, f"larger than {MAX_BYTES} bytes unpacked; refused")
        manifest = _manifest(path, _member(archive, path, MANIFEST))
        arrays = {}
        for name, spec in manifest["arrays"].items():
            member = f"arrays/{name}.npy"
            if member not in names:
                raise ArtifactError(path, f"array {name!r} is missing (truncated file?)")
            info = archive.getinfo(member)
            if mmap and info.compress_type == zipfile.ZIP_STORED and info.file_size >= STORED_FROM:
                array = _mapped(archive, path, info, name, None if verified else spec["sha256"])
            else:
                blob = _member(archive, path, member)
                if not verified and hashlib.sha256(blob).hexdigest() != spec["sha256"]:
                    raise ArtifactError(
                        path, f"array {name!r} does not match its SHA-256 (altered?)"
                    )
                try:
                    array = np.load(io.BytesIO(blob), allow_pickle=False)
                except ValueError as exc:
                    raise ArtifactError(
                        path, f"array {name!r} is not a plain array ({exc})"
                    ) from None
            if array.dtype.str != spec["dtype"] or list(array.shape) != spec["shape"]:
                raise ArtifactError(path, f"array {name!r} has another dtype or shape than listed")
            arrays[name] = array
    return Saved(
        kind=manifest["kind"],
        state_version=manifest["state_version"],
        params=manifest["params"],
        meta=manifest["meta"],
        arrays=arrays,
        perfml_version=manifest["perfml_version"],
    )


def _mapped(
    archive: zipfile.ZipFile, path: Path, info: zipfile.ZipInfo, name: str, digest: str | None
) -> npt.NDArray[Any]:
    """A stored member's array, memory-mapped copy-on-write, once its ``digest`` is checked
    (None: the file's was)."""
    if digest is not None:
        hashed = hashlib.sha256()
        with archive.open(info) as member:
            while chunk := member.read(16 << 20):
                hashed.update(chunk)
        if hashed.hexdigest() != digest:
            raise ArtifactError(path, f"array {name!r} does not match its SHA-256 (altered?)")
    with path.open("rb") as raw:
        raw.seek(info.header_offset)
        header = raw.read(30)
        if header[:4] != b"PK\x03\x04":
            raise ArtifactError(path, f"array {name!r} has no local header (damaged?)")
        start = info.header_offset + 30 + int.from_bytes(header[26:28], "little")
        raw.seek(start + int.from_bytes(header[28:30], "little"))
        try:
            version = np.lib.format.read_magic(raw)
            reader = {(1, 0): np.lib.format.read_array_header_1_0,
                      (2, 0): np.lib.format.read_array_header_2_0}.get(version)  # fmt: skip
            if reader is None:
                raise ValueError(f"npy format version {version}")
            shape, fortran, dtype = reader(raw)
        except ValueError as exc:
            raise ArtifactError(path, f"array {name!r} is not a plain array ({exc})") from None
        offset = raw.tell()
    if dtype.hasobject or fortran:
        raise ArtifactError(path, f"array {name!r} is not a plain C-ordered numeric array")
    return np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=shape)


def _member(archive: zipfile.ZipFile, path: Path, member: str) -> bytes:
    try:
        return archive.read(member)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise ArtifactError(path, f"member {member} is unreadable ({exc}; truncated?)") from None


def _manifest(path: Path, blob: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(blob)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(path, f"{MANIFEST} is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(path, f"not a saved perfml detector (format is not {FORMAT!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            path,
            f"format version {manifest.get('format_version')!r}; this perfml reads "
            f"{FORMAT_VERSION}",
        )
    expected = {"kind": str, "state_version": int, "params": dict, "meta": dict, "arrays": dict}
    for key, kind in expected.items():
        if not isinstance(manifest.get(key), kind):
            raise ArtifactError(path, f"{MANIFEST} has no valid {key!r}")
    for name, spec in manifest["arrays"].items():
        if not (
            isinstance(name, str)
            and name.replace("_", "").isalnum()
            and isinstance(spec, dict)
            and isinstance(spec.get("sha256"), str)
            and isinstance(spec.get("dtype"), str)
            and isinstance(spec.get("shape"), list)
        ):
            raise ArtifactError(path, f"{MANIFEST} lists array {name!r} malformed")
    return manifest
