"""Reading points straight from the Parquet files, in order, without a sort engine.

Every data file keeps each entity's points in increasing ``ts`` (the write path guarantees
it), and two files of one metric that share an entity never overlap in time (their key boxes
are disjoint, and months are disjoint). So the points of one metric, read file by file in the
order of their first instant, are already in ``ts`` order per entity; a stable sort on the
entity alone — a radix sort of integer codes — puts them in ``(entity, ts)`` order. That is
several times cheaper than a general sort of the rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from perfml.featurestore.manifest import DataFile
from perfml.featurestore.query import Selection
from perfml.featurestore.schema import READ_SCHEMA, TIMESTAMP_TYPE
from perfml.featurestore.write_path import ROW_GROUP_ROWS
from perfml.timeparse import to_epoch_ms


def read_sorted(root: Path, files: Sequence[DataFile], selection: Selection) -> pa.Table:
    """The selected points of ``files`` in READ_SCHEMA, sorted by metric, entity and ts."""
    metrics = sorted({f.metric for f in files})
    parts = []
    for code, metric in enumerate(metrics):
        mine = sorted((f for f in files if f.metric == metric), key=lambda f: f.min_ts)
        tables = [_read_file(root / f.path, selection) for f in mine]
        body = _by_entity(pa.concat_tables(tables))
        if body.num_rows:
            metric_column = pa.DictionaryArray.from_arrays(
                pa.array(np.full(body.num_rows, code, dtype=np.int32)), pa.array(metrics)
            )
            parts.append(body.add_column(0, READ_SCHEMA.field("metric"), metric_column))
    if not parts:
        return READ_SCHEMA.empty_table()
    return pa.concat_tables(parts).combine_chunks()


def _read_file(path: Path, selection: Selection) -> pa.Table:
    filters = []
    if selection.start is not None:
        filters.append(("ts", ">=", pa.scalar(to_epoch_ms(selection.start), TIMESTAMP_TYPE)))
    upper = selection.upper_ms
    if upper is not None:
        filters.append(("ts", "<=", pa.scalar(upper, TIMESTAMP_TYPE)))
    if selection.entities is not None:
        filters.append(("entity", "in", list(selection.entities)))
    table = pq.read_table(
        path,
        columns=["entity", "ts", "value"],
        filters=filters or None,
        read_dictionary=["entity"],
        partitioning=None,
    )
    return table.cast(
        pa.schema(
            [READ_SCHEMA.field("entity"), READ_SCHEMA.field("ts"), READ_SCHEMA.field("value")]
        )
    )


def _by_entity(table: pa.Table) -> pa.Table:
    """Stable-sort rows by entity name, re-encoding entities against a sorted dictionary."""
    if table.num_rows == 0:
        return table.combine_chunks()
    entity = table.column("entity").unify_dictionaries()
    dictionary = entity.chunk(0).dictionary
    order = pc.sort_indices(dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    codes = np.concatenate([rank[c.indices.to_numpy(zero_copy_only=False)] for c in entity.chunks])
    sorted_names = dictionary.take(pa.array(order))
    rest = table.select(["ts", "value"]).combine_chunks()
    if len(codes) > 1 and not np.all(codes[1:] >= codes[:-1]):
        permutation = np.argsort(codes, kind="stable")
        codes = codes[permutation]
        rest = rest.take(pa.array(permutation))
    column = pa.DictionaryArray.from_arrays(pa.array(codes), sorted_names)
    return rest.add_column(0, READ_SCHEMA.field("entity"), column)


GROUP_ROWS_CAP = 4 << 20
"""Points one stream group may hold at most, whatever the files' row groups."""


def stream_sorted(
    root: Path,
    files: Sequence[DataFile],
    selection: Selection,
    entities: dict[str, list[str]],
    batch_rows: int,
    chunk_rows: int = 1 << 20,
) -> Iterator[pa.RecordBatch]:
    """The points of :func:`read_sorted`, as batches, reading a group of entities at a time.

    Entities are taken in groups; each group is read (Parquet statistics skip the row groups
    of other entities), ordered and cut into batches. A group holds about ``chunk_rows``
    points, but at least the entities of one row group of each file: a smaller group would
    decode the same row group again for each of its neighbours — and at most
    ``GROUP_ROWS_CAP`` points. Memory is bounded by a group, whatever the number of entities
    or points.
    """
    for metric in sorted({f.metric for f in files}):
        mine = [f for f in files if f.metric == metric]
        names = sorted(entities.get(metric, ()))
        if selection.entities is not None:
            names = sorted(set(names) & set(selection.entities))
        if not names:
            continue
        known = max(1, len(entities.get(metric, ())))
        per_entity = max(1, sum(f.rows for f in mine) // known)
        per_row_group = max(known * min(f.rows, ROW_GROUP_ROWS) // max(f.rows, 1) for f in mine)
        ceiling = max(1, GROUP_ROWS_CAP // per_entity)
        group = max(1, chunk_rows // per_entity, min(per_row_group, ceiling))
        for first in range(0, len(names), group):
            chunk = replace(selection, entities=tuple(names[first : first + group]))
            yield from read_sorted(root, mine, chunk).to_batches(max_chunksize=batch_rows)
            pa.default_memory_pool().release_unused()  # give the group's buffers back
