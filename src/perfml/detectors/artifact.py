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
MAX_BYTES = 4 << 30
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
    """Write atomically; returns the file's SHA-256."""
    path = Path(path)
    index = {}
    blobs = {}
    for name, array in sorted(arrays.items()):
        if array.dtype.kind not in "biuf":
            raise ArtifactError(path, f"array {name!r} has dtype {array.dtype}, not numeric")
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        blob = buffer.getvalue()
        blobs[f"arrays/{name}.npy"] = blob
        index[name] = {
            "dtype": array.dtype.str,
            "shape": list(array.shape),
            "sha256": hashlib.sha256(blob).hexdigest(),
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
            for member, blob in [(MANIFEST, text), *sorted(blobs.items())]:
                info = zipfile.ZipInfo(member, date_time=_EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, blob)
        # Returning inside the block still completes it: the file is in place when we return.
        return hashlib.sha256(temporary.read_bytes()).hexdigest()


def read(path: str | os.PathLike[str]) -> Saved:
    """Read and verify a saved detector (see the module's description of what is refused)."""
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
            blob = _member(archive, path, member)
            if hashlib.sha256(blob).hexdigest() != spec["sha256"]:
                raise ArtifactError(path, f"array {name!r} does not match its SHA-256 (altered?)")
            try:
                array = np.load(io.BytesIO(blob), allow_pickle=False)
            except ValueError as exc:
                raise ArtifactError(path, f"array {name!r} is not a plain array ({exc})") from None
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
