"""Histograms of the feature store's windows in one DuckDB scan, per partition, then merged.

The reference edges come from one query over the reference window (the values at the
quantile ranks of :func:`~perfml.drift.histograms.quantile_positions`, per feature). Then one
query reads every Parquet partition (``metric=…/month=…``) that overlaps the windows, places
each point in its window, joins each feature's edges (a hash join on the feature, the edges a
list) and buckets the value as the count of edges not above it — ``searchsorted(edges, value,
side="right")`` — then groups by ``(metric, entity, month, window, bin)``: one partial
histogram per partition and window. They
are merged in Python (:meth:`Histogram.merge`), so a window that spans two monthly partitions
is whole, and the same merge combines shards of entities: with ``shard=(i, n)`` a scan reads
only the entities with ``hash(entity) % n == i``, and the histograms of the ``n`` shards — run
anywhere — merge into those of the whole store.

A *feature* is a metric fleet-wide (``(metric, None)``) or one entity's series of it
(``(metric, entity)``, with ``per_entity=True``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from perfml.drift.histograms import DEFAULT_BINS, BinEdges, Histogram
from perfml.drift.windows import Window
from perfml.featurestore import FeatureStore
from perfml.featurestore.query import Selection, source

FeatureKey = tuple[str, str | None]
"""``(metric, entity)``; ``entity`` is None for the metric over the whole fleet."""
Shard = tuple[int, int]
"""``(index, count)``: the entities whose ``hash(entity) % count == index``."""
_ATTEMPTS = 3
_EDGES_SCHEMA = pa.schema(
    [("metric", pa.string()), ("entity", pa.string()), ("edges", pa.list_(pa.float64()))]
)


def feature_name(key: FeatureKey) -> str:
    """``metric`` or ``metric/entity``.

    >>> feature_name(("cpu_util", None)), feature_name(("cpu_util", "web-1"))
    ('cpu_util', 'cpu_util/web-1')
    """
    return key[0] if key[1] is None else f"{key[0]}/{key[1]}"


def reference_edges(
    store: FeatureStore,
    window: Window,
    metrics: Sequence[str] | None = None,
    *,
    per_entity: bool = False,
    bins: int = DEFAULT_BINS,
    shard: Shard | None = None,
) -> dict[FeatureKey, BinEdges]:
    """The bin edges of every feature with points in ``window`` (one query)."""
    from perfml.drift.histograms import quantile_positions

    quantile_positions(2, bins)  # validates bins
    q = np.linspace(0.0, 1.0, bins + 1).tolist()
    where, params = _where(metrics, [window], shard)
    sql = f"""
        WITH p AS (
            SELECT metric, {_entity(per_entity)} AS entity, value FROM {{src}} WHERE {where}
        ), v AS (
            SELECT metric, entity, value,
                row_number() OVER (PARTITION BY metric, entity ORDER BY value) - 1 AS rank,
                count(*) OVER (PARTITION BY metric, entity) AS n
            FROM p
        )
        SELECT metric, entity, list(value ORDER BY rank) AS picks FROM v
        WHERE list_contains(list_transform(?::DOUBLE[], lambda q: floor(q * (n - 1))::BIGINT), rank)
        GROUP BY metric, entity ORDER BY metric, entity
    """
    table = _run(store, sql, [*params, q], metrics, [window], {})
    if table is None:
        return {}
    found: dict[FeatureKey, BinEdges] = {}
    for metric, entity, picks in zip(
        table.column("metric").to_pylist(),
        table.column("entity").to_pylist(),
        table.column("picks").to_pylist(),
        strict=True,
    ):
        found[(metric, entity or None)] = BinEdges.from_sorted_picks(picks)
    return found


def partition_histograms(
    store: FeatureStore,
    edges: Mapping[FeatureKey, BinEdges],
    windows: Sequence[Window],
    *,
    shard: Shard | None = None,
) -> dict[tuple[FeatureKey, str, str], Histogram]:
    """Histograms per ``(feature, window label, month partition)``, from one scan.

    Features are those of ``edges``; fleet-wide and per-entity features are not mixed.
    """
    if not edges or not windows:
        return {}
    per_entity = any(entity is not None for _, entity in edges)
    metrics = sorted({metric for metric, _ in edges})
    edge_rows: dict[str, list[Any]] = {
        "metric": [metric for metric, _ in edges],
        "entity": [entity or "" for _, entity in edges],
        "edges": [list(found.values) for found in edges.values()],
    }
    ordered = sorted(windows)
    where, params = _where(metrics, ordered, shard)
    # Each point finds its window by a binary search over the windows' disjoint segments,
    # written as nested CASEs: ~log2(windows) comparisons a point, not one per window.
    which = _search(_segments(ordered).to_pylist())
    sql = f"""
        WITH p AS (
            SELECT metric, {_entity(per_entity)} AS entity, month, epoch_ms(ts) AS t, value
            FROM {{src}} WHERE {where}
        ), placed AS (
            SELECT metric, entity, month, {which} AS window, value FROM p
        )
        SELECT p.metric, p.entity, p.month, p.window,
            len(list_filter(e.edges, lambda edge: edge <= p.value)) AS bin,
            count(*) AS count, sum(p.value) AS total
        FROM placed p JOIN _drift_edges e ON p.metric = e.metric AND p.entity = e.entity
        WHERE p.window IS NOT NULL
        GROUP BY ALL
    """
    tables = {"_drift_edges": pa.table(edge_rows, schema=_EDGES_SCHEMA)}
    table = _run(store, sql, params, metrics, ordered, tables)
    if table is None:
        return {}
    cells: dict[tuple[FeatureKey, str, str], tuple[np.ndarray, np.ndarray]] = {}
    columns = [table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names]
    for metric, entity, month, window, bin_, count, total in zip(*columns, strict=True):
        key: FeatureKey = (str(metric), str(entity) or None)
        if key not in edges:
            continue
        cell = (key, ordered[int(window)].label, str(month))
        if cell not in cells:
            size = edges[key].bins
            cells[cell] = (np.zeros(size, dtype=np.int64), np.zeros(size))
        cells[cell][0][int(bin_)] += int(count)
        cells[cell][1][int(bin_)] += float(total)
    return {cell: Histogram(edges[cell[0]], counts, sums) for cell, (counts, sums) in cells.items()}


def _segments(ordered: Sequence[Window]) -> pa.Table:
    """Disjoint ``[start, stop)`` spans, each with the number of the first window in
    ``ordered`` that holds it: where windows overlap, a point goes to the earlier one."""
    starts: list[int] = []
    stops: list[int] = []
    numbers: list[int] = []
    covered = None
    for number, window in enumerate(ordered):
        start = window.start if covered is None else max(window.start, covered)
        if start < window.end:
            starts.append(start)
            stops.append(window.end)
            numbers.append(number)
        covered = window.end if covered is None else max(covered, window.end)
    return pa.table(
        {
            "start": pa.array(starts, pa.int64()),
            "stop": pa.array(stops, pa.int64()),
            "number": pa.array(numbers, pa.int64()),
        }
    )


def _search(segments: Sequence[dict[str, int]]) -> str:
    """A SQL expression of ``t``: the number of the segment holding it, else NULL.

    >>> two = [{"start": 0, "stop": 10, "number": 0}, {"start": 10, "stop": 20, "number": 1}]
    >>> for line in _search(two).split(" ELSE "):
    ...     print(line)
    CASE WHEN t < 10 THEN (CASE WHEN t >= 0 AND t < 10 THEN 0 END)
    (CASE WHEN t >= 10 AND t < 20 THEN 1 END) END
    """
    if not segments:
        return "NULL"
    if len(segments) == 1:
        one = segments[0]
        return f"CASE WHEN t >= {one['start']} AND t < {one['stop']} THEN {one['number']} END"
    middle = len(segments) // 2
    left, right = _search(segments[:middle]), _search(segments[middle:])
    return f"CASE WHEN t < {segments[middle]['start']} THEN ({left}) ELSE ({right}) END"


def window_histograms(
    store: FeatureStore,
    edges: Mapping[FeatureKey, BinEdges],
    windows: Sequence[Window],
    *,
    shard: Shard | None = None,
) -> dict[tuple[FeatureKey, str], Histogram]:
    """Histograms per ``(feature, window label)``: :func:`partition_histograms` merged."""
    return merge_partitions(partition_histograms(store, edges, windows, shard=shard))


def merge_partitions(
    parts: Mapping[tuple[FeatureKey, str, str], Histogram]
    | Iterable[tuple[tuple[FeatureKey, str, str], Histogram]],
) -> dict[tuple[FeatureKey, str], Histogram]:
    """Partial histograms (of partitions or shards) added up per ``(feature, window)``."""
    items = parts.items() if isinstance(parts, Mapping) else parts
    merged: dict[tuple[FeatureKey, str], Histogram] = {}
    for (key, label, _), histogram in items:
        cell = (key, label)
        merged[cell] = histogram if cell not in merged else merged[cell].merge(histogram)
    return merged


def _entity(per_entity: bool) -> str:
    return "entity" if per_entity else "''"


def _where(
    metrics: Sequence[str] | None, windows: Sequence[Window], shard: Shard | None
) -> tuple[str, list[Any]]:
    clauses = ["epoch_ms(ts) >= ?", "epoch_ms(ts) < ?"]
    params: list[Any] = [min(w.start for w in windows), max(w.end for w in windows)]
    if metrics is not None:
        clauses.append("list_contains(?::VARCHAR[], metric)")
        params.append(list(metrics))
    if shard is not None:
        index, count = shard
        clauses.append("hash(entity) % ? = ?")
        params.extend([count, index])
    return " AND ".join(clauses), params


def _run(
    store: FeatureStore,
    sql: str,
    params: list[Any],
    metrics: Sequence[str] | None,
    windows: Sequence[Window],
    tables: Mapping[str, pa.Table],
) -> pa.Table | None:
    """The result of ``sql`` over the files that may hold the windows (None: no file)."""
    selection = Selection(
        metrics=None if metrics is None else tuple(metrics),
        start=min(w.start_time for w in windows),
        end=max(w.end_time for w in windows),
    )
    for attempt in range(_ATTEMPTS):
        files = selection.files(store.manifest)
        if not files:
            return None
        con = duckdb.connect(config={"memory_limit": store.memory_limit})
        try:
            con.execute("SET TimeZone = 'UTC'")
            if store.threads:
                con.execute(f"SET threads = {int(store.threads)}")
            for name, table in tables.items():
                con.register(name, table)
            query = sql.replace("{src}", source(str(store.root), files))
            return con.sql(query, params=params).to_arrow_table()
        except duckdb.IOException:
            # A writer replaced a file between our manifest read and the scan: read the new
            # manifest and try again.
            if attempt == _ATTEMPTS - 1:
                raise
        finally:
            con.close()
    raise AssertionError("unreachable")
