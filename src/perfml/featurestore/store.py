"""The feature store: every series of the fleet, as Hive-partitioned Parquet read by DuckDB.

>>> import tempfile, pyarrow as pa
>>> from datetime import datetime, UTC
>>> store = FeatureStore(tempfile.mkdtemp())
>>> points = pa.table({
...     "metric": ["cpu_util"] * 3, "entity": ["web-1"] * 3,
...     "ts": [datetime(2024, 1, 1, 0, m, tzinfo=UTC) for m in (0, 5, 10)],
...     "value": [12.0, 14.0, 13.0]})
>>> store.write(points).points_added
3
>>> store.write(points).points_added  # idempotent: the key is (metric, entity, ts)
0
>>> store.read(metrics=["cpu_util"]).column("value").to_pylist()
[12.0, 14.0, 13.0]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeAlias

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from perfml.featurestore import manifest as mf
from perfml.featurestore import query, scan
from perfml.featurestore.compaction import (
    DEFAULT_MAX_FILES,
    DEFAULT_SMALL_ROWS,
    CompactionReport,
    compact,
)
from perfml.featurestore.manifest import LabelWindow, Manifest
from perfml.featurestore.query import Selection
from perfml.featurestore.schema import LONG_SCHEMA, READ_SCHEMA, SeriesKey
from perfml.featurestore.write_path import IngestReport, write_points

Points: TypeAlias = pa.Table | pa.RecordBatch | pd.DataFrame
_READ_ATTEMPTS = 3


@dataclass(frozen=True)
class StoreSummary:
    """What the store holds, from its manifest alone."""

    series: int
    points: int
    metrics: tuple[str, ...]
    entities: int
    months: tuple[str, ...]
    windows: int
    files: int
    bytes_on_disk: int
    first: datetime | None
    last: datetime | None


class FeatureStore:
    """Write points idempotently and atomically; read them back as Arrow.

    ``memory_limit`` and ``threads`` bound DuckDB (large sorts spill to ``<root>/.tmp``).
    """

    def __init__(
        self, root: str | os.PathLike[str], memory_limit: str = "2GB", threads: int | None = None
    ) -> None:
        self.root = Path(root).absolute()
        self.memory_limit = memory_limit
        self.threads = threads
        self._con: duckdb.DuckDBPyConnection | None = None

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            con = duckdb.connect(config={"memory_limit": self.memory_limit})
            con.execute("SET TimeZone = 'UTC'")
            con.execute(f"SET temp_directory = {query._quote(str(self.root / '.tmp'))}")
            if self.threads:
                con.execute(f"SET threads = {int(self.threads)}")
            self._con = con
        return self._con.cursor()

    @property
    def manifest(self) -> Manifest:
        return mf.load(self.root)

    # -- writing -------------------------------------------------------------------------

    def write(
        self,
        data: Points | Iterable[Points | tuple[Points, str]],
        *,
        labels: Mapping[SeriesKey, Mapping[str, str]] | None = None,
        windows: Iterable[LabelWindow] = (),
        drop_nonfinite: bool = False,
        where: str = "points",
    ) -> IngestReport:
        """Add points in the long format (``metric, entity, ts, value``), all or nothing.

        ``data`` is one table or a stream of them (each optionally with a name used in error
        messages, e.g. its file). ``labels`` set the label set of series; ``windows`` add
        labelled anomaly windows. A point whose key is stored already replaces its value.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        return write_points(
            self.root,
            _named_batches(data, where),
            self._connection(),
            labels=labels,
            windows=windows,
            drop_nonfinite=drop_nonfinite,
        )

    def compact(
        self,
        metrics: Sequence[str] | None = None,
        *,
        max_files: int = DEFAULT_MAX_FILES,
        small_rows: int = DEFAULT_SMALL_ROWS,
    ) -> CompactionReport:
        """Merge the small files of each partition of ``metrics`` (all by default) holding more
        than ``max_files`` files into one (:mod:`perfml.featurestore.compaction`)."""
        if not (self.root / mf.MANIFEST_NAME).exists():
            return CompactionReport()
        return compact(
            self.root, self._connection(), metrics=metrics, max_files=max_files,
            small_rows=small_rows,
        )  # fmt: skip

    # -- reading -------------------------------------------------------------------------

    def read(
        self,
        metrics: Sequence[str] | str | None = None,
        entities: Sequence[str] | str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        as_of: datetime | str | None = None,
    ) -> pa.Table:
        """Points in READ_SCHEMA (the long format, names dictionary-encoded), sorted by
        metric, entity and ts."""
        selection = Selection.of(metrics, entities, start, end, as_of)
        for attempt in range(_READ_ATTEMPTS):
            try:
                return scan.read_sorted(self.root, selection.files(self.manifest), selection)
            except FileNotFoundError:
                # A writer replaced a file between our manifest read and the scan: read the
                # new manifest and try again.
                if attempt == _READ_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def stream(
        self,
        metrics: Sequence[str] | str | None = None,
        entities: Sequence[str] | str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        as_of: datetime | str | None = None,
        batch_rows: int = 65_536,
    ) -> Iterator[pa.RecordBatch]:
        """The same points as :meth:`read`, as record batches of at most ``batch_rows`` rows.

        Memory stays bounded by about a million points, whatever the size of the selection:
        entities are read a group at a time (see ``scan.stream_sorted``).
        """
        selection = Selection.of(metrics, entities, start, end, as_of)
        manifest = self.manifest
        known = {metric: list(ents) for metric, ents in manifest.series.items()}
        yield from scan.stream_sorted(
            self.root, selection.files(manifest), selection, known, batch_rows
        )

    def resample(
        self,
        step: str | timedelta,
        agg: str = "mean",
        metrics: Sequence[str] | str | None = None,
        entities: Sequence[str] | str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        as_of: datetime | str | None = None,
    ) -> pa.Table:
        """Points aggregated onto a ``step`` grid (``agg``: see ``query.AGGREGATIONS``)."""
        selection = Selection.of(metrics, entities, start, end, as_of)
        return self._table(
            lambda src: query.resample_sql(src, selection, step, agg), selection, READ_SCHEMA
        )

    def align(
        self,
        metrics: Sequence[str],
        step: str | timedelta,
        agg: str = "mean",
        entities: Sequence[str] | str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        as_of: datetime | str | None = None,
    ) -> pa.Table:
        """One wide frame: ``entity, ts`` and a column per metric, on a ``step`` grid."""
        selection = Selection.of(metrics, entities, start, end, as_of)
        schema = pa.schema(
            [READ_SCHEMA.field("entity"), READ_SCHEMA.field("ts")]
            + [pa.field(m, pa.float64()) for m in metrics]
        )
        return self._table(
            lambda src: query.align_sql(src, selection, metrics, step, agg), selection, schema
        )

    def window_features(
        self,
        step: str | timedelta,
        windows: Sequence[str | timedelta] = ("1h", "1d"),
        stats: Sequence[str] = ("mean", "std", "min", "max", "p50", "p95"),
        metrics: Sequence[str] | str | None = None,
        entities: Sequence[str] | str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        as_of: datetime | str | None = None,
    ) -> pa.Table:
        """Causal rolling features per series on a ``step`` grid (see ``query``)."""
        selection = Selection.of(metrics, entities, start, end, as_of)
        return self._table(
            lambda src: query.window_features_sql(src, selection, step, windows, stats),
            selection,
            None,
        )

    def _table(self, build: Any, selection: Selection, schema: pa.Schema | None) -> pa.Table:
        for attempt in range(_READ_ATTEMPTS):
            files = selection.files(self.manifest)
            if not files:
                return _empty(build, schema, self._connection())
            sql, params = build(query.source(str(self.root), files))
            try:
                table = self._connection().sql(sql, params=params).to_arrow_table()
            except duckdb.IOException:
                # A writer replaced a file between our manifest read and the scan; read the
                # new manifest and try again.
                if attempt == _READ_ATTEMPTS - 1:
                    raise
                continue
            return _cast_table(table, schema)
        raise AssertionError("unreachable")

    # -- what the store holds --------------------------------------------------------------

    def series(self) -> list[tuple[str, str, dict[str, str]]]:
        """Every ``(metric, entity, labels)`` the store holds, sorted."""
        return [
            (metric, entity, dict(labels))
            for metric, entities in sorted(self.manifest.series.items())
            for entity, labels in sorted(entities.items())
        ]

    def windows(
        self, metrics: Sequence[str] | None = None, entities: Sequence[str] | None = None
    ) -> list[LabelWindow]:
        """Labelled anomaly windows, sorted by series and start."""
        return sorted(
            (
                w
                for w in self.manifest.windows
                if (metrics is None or w.metric in metrics)
                and (entities is None or w.entity in entities)
            ),
            key=lambda w: (w.metric, w.entity, w.start),
        )

    def summary(self) -> StoreSummary:
        m = self.manifest
        sizes = 0
        for f in m.files:
            try:
                sizes += (self.root / f.path).stat().st_size
            except FileNotFoundError:
                continue
        return StoreSummary(
            series=sum(len(e) for e in m.series.values()),
            points=sum(f.rows for f in m.files),
            metrics=tuple(sorted(m.series)),
            entities=len({e for ents in m.series.values() for e in ents}),
            months=tuple(sorted({f.month for f in m.files})),
            windows=len(m.windows),
            files=len(m.files),
            bytes_on_disk=sizes,
            first=_instant(min((f.min_ts for f in m.files), default=None)),
            last=_instant(max((f.max_ts for f in m.files), default=None)),
        )


def _instant(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def _named_batches(
    data: Points | Iterable[Points | tuple[Points, str]], where: str
) -> Iterator[tuple[pa.Table | pa.RecordBatch, str]]:
    if isinstance(data, pa.Table | pa.RecordBatch | pd.DataFrame):
        data = [data]
    for item in data:
        batch, name = item if isinstance(item, tuple) else (item, where)
        if isinstance(batch, pd.DataFrame):
            batch = pa.Table.from_pandas(batch, preserve_index=False)
        yield batch, name


def _cast_table(table: pa.Table, schema: pa.Schema | None) -> pa.Table:
    schema = _ms_schema(table.schema) if schema is None else schema
    return pa.table(
        [_cast_column(table.column(i), f.type) for i, f in enumerate(schema)], schema=schema
    )


def _cast_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [_cast_column(batch.column(i), f.type) for i, f in enumerate(schema)], schema=schema
    )


def _cast_column(column: Any, target: pa.DataType) -> Any:
    if pa.types.is_dictionary(target) and not pa.types.is_dictionary(column.type):
        return pc.dictionary_encode(column.cast(target.value_type))
    return column.cast(target)


def _ms_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema(
        [
            pa.field(f.name, LONG_SCHEMA.field("ts").type, nullable=f.nullable)
            if pa.types.is_timestamp(f.type)
            else f
            for f in schema
        ]
    )


def _empty(build: Any, schema: pa.Schema | None, con: duckdb.DuckDBPyConnection) -> pa.Table:
    if schema is not None:
        return schema.empty_table()
    # No files: run the query over an empty relation of the stored shape to get its columns.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _none AS SELECT ''::VARCHAR AS metric, "
        "''::VARCHAR AS entity, now()::TIMESTAMPTZ AS ts, 0::DOUBLE AS value, "
        "''::VARCHAR AS month LIMIT 0"
    )
    sql, params = build("_none")
    return _cast_table(con.sql(sql, params=params).to_arrow_table(), None)
