"""Compaction: the many small files of a partition merged into one, as reads prefer.

Writes that never collide with stored keys — new time, as perfml's own metrics flushed every few
minutes are — append one file per partition per write, cheaply; but a partition of hundreds of
small files reads slowly and makes the manifest large. :func:`compact` merges, in each partition
holding more than ``max_files`` files, its small ones (under ``small_rows`` rows) — together with
any file their combined key box touches, so that the partition's boxes stay disjoint, as a
write's merge does — into one sorted file, and commits the new manifest under the writer's lock,
atomically, as a write does. Values are unchanged: files of a partition share no key. Large
files are left alone, so each point is rewritten only a few times over its life.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from perfml.featurestore import manifest as mf
from perfml.featurestore.write_path import _merge, _overlapping

DEFAULT_MAX_FILES = 16
"""A partition with more files than this is compacted."""
DEFAULT_SMALL_ROWS = 1_000_000
"""Files with fewer rows than this are merged; larger ones are left as they are."""


@dataclass(frozen=True)
class CompactionReport:
    """What one compaction did."""

    partitions: int = 0
    files_before: int = 0
    files_after: int = 0
    manifest_version: int = 0


def compact(
    root: Path,
    con: duckdb.DuckDBPyConnection,
    *,
    metrics: Sequence[str] | None = None,
    max_files: int = DEFAULT_MAX_FILES,
    small_rows: int = DEFAULT_SMALL_ROWS,
) -> CompactionReport:
    """Compact the partitions of ``metrics`` (all by default) that hold over ``max_files`` files."""
    if max_files < 1:
        raise ValueError(f"max_files must be at least 1, not {max_files}")
    wanted = None if metrics is None else set(metrics)
    with mf.write_lock(root):
        current = mf.load(root)
        mf.remove_unlisted(root, current)
        files = list(current.files)
        replaced: list[str] = []
        partitions = before = after = 0
        txid = f"{uuid.uuid4().hex[:16]}"
        try:
            for metric, month in sorted({(f.metric, f.month) for f in current.files}):
                if wanted is not None and metric not in wanted:
                    continue
                partition = current.partition_files(metric, month)
                small = [f for f in partition if f.rows < small_rows]
                if len(partition) <= max_files or len(small) < 2:
                    continue
                box = small[0]
                for found in small[1:]:
                    box = box.union(found)
                chosen = _overlapping(box, partition)
                merged = _merge(root, chosen[:-1], chosen[-1], con, f"{txid}-compact")
                files = [f for f in files if f not in chosen]
                files.append(merged)
                replaced.extend(f.path for f in chosen)
                partitions += 1
                before += len(partition)
                after += len(partition) - len(chosen) + 1
            if not replaced:
                return CompactionReport(manifest_version=current.version)
            nxt = current.next(tuple(files), current.series, current.windows)
            mf.commit(root, nxt)
        except BaseException:
            mf.remove_unlisted(root, current)  # the merged files written so far, if any
            raise
        for path in replaced:
            (root / path).unlink(missing_ok=True)
        return CompactionReport(partitions, before, after, nxt.version)
