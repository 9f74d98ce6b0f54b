"""The write path: split points by partition, stage them, merge where keys may collide, commit.

Points arrive as a stream of batches. Each batch is cut into its ``(metric, month)``
partitions; each partition gets one new Parquet file per write, fed row group by row group so
memory stays bounded by the buffer, not by the size of the write. When the new file's points
are unique and its key box ``entity × ts`` overlaps no existing file of the partition, the file
is simply added — the common case of new data. Otherwise the partition is merged with DuckDB:
old and new points are combined, the newest value of each key ``(entity, ts)`` wins, and one
sorted file replaces the partition's files. Re-ingesting the same points therefore adds none.

Nothing is visible until the manifest that lists the new files replaces the old one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from perfml.featurestore import manifest as mf
from perfml.featurestore.manifest import DataFile, LabelWindow, Manifest
from perfml.featurestore.points import normalize
from perfml.featurestore.schema import SeriesKey

FILE_SCHEMA = pa.schema(
    [
        pa.field("entity", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("ts", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
    ]
)
ROW_GROUP_ROWS = 1 << 20
BUFFER_ROWS = 1 << 22


@dataclass
class IngestReport:
    """What one write did to the store."""

    points_received: int = 0
    points_added: int = 0
    dropped_nonfinite: int = 0
    partitions_appended: int = 0
    partitions_merged: int = 0
    series: int = 0
    windows_added: int = 0
    manifest_version: int = 0

    @property
    def points_replaced_or_repeated(self) -> int:
        """Points whose key was already stored (or repeated within the write)."""
        return self.points_received - self.dropped_nonfinite - self.points_added


@dataclass
class _Partition:
    """One partition's share of a write: a staged file and what is known of its keys."""

    metric: str
    month: str
    path: Path
    relpath: str
    writer: pq.ParquetWriter | None = None
    buffered: list[pa.Table] = field(default_factory=list)
    buffered_rows: int = 0
    rows: int = 0
    min_ts: int = 2**63 - 1
    max_ts: int = -(2**63)
    entity_max_ts: dict[str, int] = field(default_factory=dict)
    unique: bool = True

    def add(self, slice_: pa.Table, runs: list[tuple[str, int, int]] | None) -> None:
        """Stage ``slice_`` (entity, ts, value); ``runs`` as :func:`_entity_runs` gives them.

        ``runs`` is None when the slice's ts do not increase within each entity run: such a
        slice is sorted and deduplicated first.
        """
        if runs is None:
            slice_ = _sort_dedupe(slice_)
            runs = _entity_runs(slice_)
        for name, first, last in runs:
            previous = self.entity_max_ts.get(name)
            if previous is None:
                self.entity_max_ts[name] = last
            else:
                if first <= previous:
                    self.unique = False
                self.entity_max_ts[name] = max(last, previous)
            self.min_ts = min(self.min_ts, first)
            self.max_ts = max(self.max_ts, last)
        self.buffered.append(slice_)
        self.buffered_rows += slice_.num_rows
        self.rows += slice_.num_rows

    def flush(self) -> None:
        if not self.buffered:
            return
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.path, FILE_SCHEMA)
        table = pa.concat_tables(self.buffered).cast(FILE_SCHEMA)
        self.writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        self.buffered = []
        self.buffered_rows = 0

    def close(self) -> DataFile:
        self.flush()
        if self.writer is not None:
            self.writer.close()
        return DataFile(
            path=self.relpath,
            metric=self.metric,
            month=self.month,
            rows=self.rows,
            min_ts=self.min_ts,
            max_ts=self.max_ts,
            min_entity=min(self.entity_max_ts),
            max_entity=max(self.entity_max_ts),
        )

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.path.unlink(missing_ok=True)


def _entity_runs(table: pa.Table) -> list[tuple[str, int, int]]:
    """``(entity, first ts, last ts)`` of each run of one entity, for a slice known sorted."""
    entity = table.column("entity").combine_chunks()
    codes = entity.indices.to_numpy()
    ts = table.column("ts").combine_chunks().cast(pa.int64()).to_numpy()
    starts = np.flatnonzero(np.concatenate(([True], codes[1:] != codes[:-1])))
    ends = np.concatenate((starts[1:], [len(codes)])) - 1
    names = entity.dictionary.to_pylist()
    return list(
        zip([names[c] for c in codes[starts]], ts[starts].tolist(), ts[ends].tolist(), strict=True)
    )


def _sort_dedupe(table: pa.Table) -> pa.Table:
    """Sort by ``(entity, ts)`` and keep the last of points sharing a key."""
    table = table.combine_chunks()
    entity = table.column("entity").chunk(0).indices.to_numpy()
    ts = table.column("ts").chunk(0).cast(pa.int64()).to_numpy()
    order = np.lexsort((ts, entity))  # stable: of equal keys, the input's last stays last
    entity, ts = entity[order], ts[order]
    keep_last = np.concatenate(((entity[1:] != entity[:-1]) | (ts[1:] != ts[:-1]), [True]))
    return table.take(pa.array(order[keep_last]))


def _month_ids(ts: np.ndarray) -> np.ndarray:
    """Months since January 1970 of epoch-millisecond instants.

    A search among the few month boundaries the batch spans is several times faster than
    NumPy's calendar conversion of every instant.
    """
    lo, hi = ts.min(), ts.max()
    first, last = (
        np.array([lo, hi]).astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)
    )
    ids = np.arange(first, last + 2, dtype=np.int64)
    bounds = ids.astype("datetime64[M]").astype("datetime64[ms]").astype(np.int64)
    ids_of_ts: np.ndarray = first + np.searchsorted(bounds, ts, side="right") - 1
    return ids_of_ts


def _month_name(month_id: int) -> str:
    """``YYYY-MM`` of a count of months since January 1970."""
    return f"{1970 + month_id // 12:04d}-{month_id % 12 + 1:02d}"


class Ingest:
    """One write transaction; use :func:`write_points`, which drives it."""

    def __init__(self, root: Path, drop_nonfinite: bool) -> None:
        self.root = root
        self.drop_nonfinite = drop_nonfinite
        self.txid = f"{uuid.uuid4().hex[:16]}"
        self.partitions: dict[tuple[str, str], _Partition] = {}
        self.report = IngestReport()

    def feed(self, data: pa.Table | pa.RecordBatch, where: str) -> None:
        normalized = normalize(data, where, self.report.points_received, self.drop_nonfinite)
        self.report.points_received += data.num_rows
        self.report.dropped_nonfinite += normalized.dropped_nonfinite
        table = normalized.table
        if table.num_rows == 0:
            return
        metric = table.column("metric").chunk(0)
        entity = table.column("entity").chunk(0)
        ts = table.column("ts").chunk(0).cast(pa.int64()).to_numpy()
        months = _month_ids(ts)
        partition = (metric.indices.to_numpy().astype(np.int64) << 24) | (months + (1 << 23))
        codes = entity.indices.to_numpy()
        new_partition = partition[1:] != partition[:-1]
        new_run = new_partition | (codes[1:] != codes[:-1])
        p_starts = np.flatnonzero(np.concatenate(([True], new_partition)))
        p_ends = np.concatenate((p_starts[1:], [len(ts)]))
        r_starts = np.flatnonzero(np.concatenate(([True], new_run)))
        r_ends = np.concatenate((r_starts[1:], [len(ts)])) - 1
        # A slice whose ts fail to increase inside an entity run takes the slow path.
        disorder = np.flatnonzero(~(new_run | (np.diff(ts) > 0)))
        disordered = set(np.searchsorted(p_starts, disorder + 1, side="right") - 1)
        run_owner = np.searchsorted(p_starts, r_starts, side="right") - 1
        run_bounds = np.searchsorted(run_owner, np.arange(len(p_starts) + 1))
        metric_names = metric.dictionary.to_pylist()
        entity_names = entity.dictionary.to_pylist()
        run_names = codes[r_starts].tolist()
        first_ts, last_ts = ts[r_starts].tolist(), ts[r_ends].tolist()
        body = table.select(["entity", "ts", "value"])
        for i, (start, end) in enumerate(zip(p_starts.tolist(), p_ends.tolist(), strict=True)):
            lo, hi = int(run_bounds[i]), int(run_bounds[i + 1])
            runs = None
            if i not in disordered and (hi - lo) * 8 <= end - start + 8:
                runs = [
                    (entity_names[run_names[r]], first_ts[r], last_ts[r]) for r in range(lo, hi)
                ]
            month_id = int(partition[start] & ((1 << 24) - 1)) - (1 << 23)
            name = metric_names[int(partition[start] >> 24)]
            self._partition(name, _month_name(month_id)).add(body.slice(start, end - start), runs)
        self._bound_buffers()

    def _partition(self, metric: str, month: str) -> _Partition:
        part = self.partitions.get((metric, month))
        if part is None:
            relpath = f"metric={metric}/month={month}/part-{self.txid}.parquet"
            part = _Partition(metric, month, self.root / relpath, relpath)
            self.partitions[(metric, month)] = part
        return part

    def _bound_buffers(self) -> None:
        for part in self.partitions.values():
            if part.buffered_rows >= ROW_GROUP_ROWS:
                part.flush()
        total = sum(p.buffered_rows for p in self.partitions.values())
        for part in sorted(self.partitions.values(), key=lambda p: -p.buffered_rows):
            if total < BUFFER_ROWS:
                break
            total -= part.buffered_rows
            part.flush()

    def abort(self) -> None:
        for part in self.partitions.values():
            part.abort()

    def commit(
        self,
        current: Manifest,
        labels: Mapping[SeriesKey, Mapping[str, str]],
        windows: Iterable[LabelWindow],
        con: duckdb.DuckDBPyConnection,
    ) -> tuple[Manifest, list[str]]:
        """The manifest after this write, and the files it no longer lists."""
        files = list(current.files)
        replaced: list[str] = []
        series = {m: dict(ents) for m, ents in current.series.items()}
        for part in self.partitions.values():
            new = part.close()
            existing = current.partition_files(part.metric, part.month)
            overlapping = _overlapping(new, existing)
            if part.unique and not overlapping:
                files.append(new)
                self.report.points_added += new.rows
                self.report.partitions_appended += 1
            else:
                merged = _merge(self.root, overlapping, new, con, self.txid)
                files = [f for f in files if f not in overlapping]
                files.append(merged)
                replaced.extend(f.path for f in overlapping)
                replaced.append(new.path)
                self.report.points_added += merged.rows - sum(f.rows for f in overlapping)
                self.report.partitions_merged += 1
            metric_series = series.setdefault(part.metric, {})
            for entity in part.entity_max_ts:
                metric_series.setdefault(entity, {})
        for (metric, entity), lbl in labels.items():
            series.setdefault(metric, {})[entity] = dict(lbl)
        known = set(current.windows)
        added = [w for w in dict.fromkeys(windows) if w not in known]
        self.report.windows_added = len(added)
        self.report.series = len(
            {(p.metric, e) for p in self.partitions.values() for e in p.entity_max_ts}
        )
        nxt = current.next(tuple(files), series, current.windows + tuple(added))
        self.report.manifest_version = nxt.version
        return nxt, replaced


def _overlapping(new: DataFile, existing: list[DataFile]) -> list[DataFile]:
    """The files to merge with ``new`` so that the partition's key boxes stay disjoint.

    Merging grows a box to the union of the merged ones, which can reach a file that ``new``
    alone did not; so the set grows until no other file touches the union. Disjoint boxes are
    what lets reads order points without sorting them (see ``scan``).
    """
    chosen: list[DataFile] = []
    box = new
    grown = True
    while grown:
        grown = False
        for candidate in existing:
            if candidate not in chosen and box.overlaps(candidate):
                chosen.append(candidate)
                box = box.union(candidate)
                grown = True
    return chosen


def _merge(
    root: Path, existing: list[DataFile], new: DataFile, con: duckdb.DuckDBPyConnection, txid: str
) -> DataFile:
    """One sorted file holding the union of ``existing`` and ``new``; ``new`` wins on a key."""
    sources = [*existing, new]
    union = " UNION ALL ".join(
        f"SELECT entity, ts, value, {rank}::BIGINT * 4294967296 + file_row_number AS prio "
        f"FROM read_parquet({_quote(str(root / f.path))}, file_row_number = true)"
        for rank, f in enumerate(sources)
    )
    relpath = f"metric={new.metric}/month={new.month}/part-{txid}-merged.parquet"
    out = root / relpath
    con.execute(
        f"COPY (SELECT entity, ts, arg_max(value, prio) AS value FROM ({union}) "
        f"GROUP BY entity, ts ORDER BY entity, ts) TO {_quote(str(out))} "
        "(FORMAT parquet, COMPRESSION snappy)"
    )
    rows, min_ts, max_ts, min_entity, max_entity = con.execute(
        "SELECT count(*), epoch_ms(min(ts)), epoch_ms(max(ts)), min(entity), max(entity) "
        f"FROM read_parquet({_quote(str(out))})"
    ).fetchall()[0]
    return DataFile(relpath, new.metric, new.month, rows, min_ts, max_ts, min_entity, max_entity)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def write_points(
    root: Path,
    batches: Iterable[tuple[pa.Table | pa.RecordBatch, str]],
    con: duckdb.DuckDBPyConnection,
    labels: Mapping[SeriesKey, Mapping[str, str]] | None = None,
    windows: Iterable[LabelWindow] = (),
    drop_nonfinite: bool = False,
) -> IngestReport:
    """Write every batch, all or nothing. Each batch comes with a name for error messages."""
    with mf.write_lock(root):
        current = mf.load(root)
        mf.remove_unlisted(root, current)
        ingest = Ingest(root, drop_nonfinite)
        try:
            for batch, where in batches:
                ingest.feed(batch, where)
            nxt, replaced = ingest.commit(current, labels or {}, windows, con)
        except BaseException:
            ingest.abort()
            mf.remove_unlisted(root, current)
            raise
        if (
            nxt.files != current.files
            or nxt.series != current.series
            or ingest.report.windows_added
        ):
            mf.commit(root, nxt)
        for path in replaced:
            (root / path).unlink(missing_ok=True)
        return ingest.report
