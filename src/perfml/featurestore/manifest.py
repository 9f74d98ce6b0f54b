"""The manifest: the one file that says which Parquet files make up the store right now.

Data files are written under their Hive partition (``metric=…/month=…/part-….parquet``) but
only become visible when a new manifest that lists them replaces the old one with an atomic
``os.replace``. A write that dies half-way therefore leaves the store exactly as it was: its
files are listed nowhere and the next writer removes them. Writers serialise on an exclusive
``flock``; readers take no lock and read one consistent manifest.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from perfml.atomic import atomic_output
from perfml.featurestore.errors import CorruptStoreError

MANIFEST_NAME = "_manifest.json"
LOCK_NAME = ".write.lock"
FORMAT = "perfml-featurestore"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class DataFile:
    """One Parquet file of one partition, with the bounds of the keys it holds.

    Files of one partition never share a key ``(entity, ts)``; the bounds let a write tell
    cheaply whether new points could collide with a file (and so need a merge) or not.
    """

    path: str
    metric: str
    month: str
    rows: int
    min_ts: int
    max_ts: int
    min_entity: str
    max_entity: str

    def overlaps(self, other: DataFile) -> bool:
        """Whether the two files' key boxes ``entity × ts`` intersect."""
        return not (
            self.max_ts < other.min_ts
            or other.max_ts < self.min_ts
            or self.max_entity < other.min_entity
            or other.max_entity < self.min_entity
        )

    def union(self, other: DataFile) -> DataFile:
        """A file-shaped box covering both (its path and rows are ``self``'s)."""
        return replace(
            self,
            min_ts=min(self.min_ts, other.min_ts),
            max_ts=max(self.max_ts, other.max_ts),
            min_entity=min(self.min_entity, other.min_entity),
            max_entity=max(self.max_entity, other.max_entity),
        )


@dataclass(frozen=True)
class LabelWindow:
    """A labelled anomaly window of one series, both ends included (epoch milliseconds)."""

    metric: str
    entity: str
    start: int
    end: int
    kind: str = ""


@dataclass(frozen=True)
class Manifest:
    """One consistent state of the store."""

    version: int = 0
    files: tuple[DataFile, ...] = ()
    series: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    windows: tuple[LabelWindow, ...] = ()

    def partition_files(self, metric: str, month: str) -> list[DataFile]:
        return [f for f in self.files if f.metric == metric and f.month == month]

    def next(
        self,
        files: tuple[DataFile, ...],
        series: dict[str, dict[str, dict[str, str]]],
        windows: tuple[LabelWindow, ...],
    ) -> Manifest:
        return replace(self, version=self.version + 1, files=files, series=series, windows=windows)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": self.version,
            "files": [asdict(f) for f in self.files],
            "series": self.series,
            "windows": [asdict(w) for w in self.windows],
        }

    @classmethod
    def from_json(cls, data: Any, path: str) -> Manifest:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CorruptStoreError(path, f"not a {FORMAT} manifest")
        if data.get("format_version") != FORMAT_VERSION:
            raise CorruptStoreError(
                path,
                f"format version {data.get('format_version')!r}, this perfml reads "
                f"{FORMAT_VERSION}",
            )
        try:
            return cls(
                version=int(data["version"]),
                files=tuple(DataFile(**f) for f in data["files"]),
                series={
                    str(m): {str(e): dict(lbl) for e, lbl in ents.items()}
                    for m, ents in data["series"].items()
                },
                windows=tuple(LabelWindow(**w) for w in data["windows"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptStoreError(path, f"malformed entry ({exc})") from exc


def load(root: Path) -> Manifest:
    """The store's current manifest; an empty one for a store never written."""
    path = root / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Manifest()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptStoreError(str(path), f"invalid JSON ({exc})") from exc
    return Manifest.from_json(data, str(path))


def commit(root: Path, manifest: Manifest) -> None:
    """Make ``manifest`` the store's state in one atomic step (write, fsync, rename)."""
    with atomic_output(root / MANIFEST_NAME, durable=True) as temporary:
        temporary.write_text(json.dumps(manifest.to_json(), separators=(",", ":")), "utf-8")


@contextlib.contextmanager
def write_lock(root: Path) -> Iterator[None]:
    """Hold the store's single-writer lock; released when the process dies, too."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_NAME, "a+") as lock_file:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


def remove_unlisted(root: Path, manifest: Manifest) -> int:
    """Delete data files no manifest lists: leftovers of writes that died. Caller holds the lock."""
    listed = {f.path for f in manifest.files}
    removed = 0
    for path in root.glob("metric=*/month=*/*.parquet"):
        if path.relative_to(root).as_posix() not in listed:
            path.unlink(missing_ok=True)
            removed += 1
    for tmp in root.glob(f".{MANIFEST_NAME}.*.tmp"):
        tmp.unlink(missing_ok=True)
    return removed
