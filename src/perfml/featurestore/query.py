"""SQL for the store's reads, built from a :class:`Selection` over the manifest's files.

The manifest prunes partitions (metric and month) before DuckDB sees a file; DuckDB then
filters rows and does the arithmetic: resampling to a grid, aligning metrics into one wide
frame, and causal window features. Every window looks only backwards, so the feature at ``t``
uses data up to ``t`` and nothing later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from perfml.featurestore.errors import BadQueryError
from perfml.featurestore.manifest import DataFile, Manifest
from perfml.timeparse import format_duration, parse_duration, parse_instant, to_epoch_ms

AGGREGATIONS = {
    "mean": "avg(value)",
    "min": "min(value)",
    "max": "max(value)",
    "sum": "sum(value)",
    "count": "count(value)::DOUBLE",
    "first": "arg_min(value, ts)",
    "last": "arg_max(value, ts)",
    "median": "quantile_cont(value, 0.5)",
    "p90": "quantile_cont(value, 0.9)",
    "p95": "quantile_cont(value, 0.95)",
    "p99": "quantile_cont(value, 0.99)",
}
"""How :meth:`FeatureStore.resample` may aggregate the points of one step."""

WINDOW_STATS = {
    "mean": "avg(value) OVER {w}",
    "std": "stddev_samp(value) OVER {w}",
    "min": "min(value) OVER {w}",
    "max": "max(value) OVER {w}",
    "p05": "quantile_cont(value, 0.05) OVER {w}",
    "p50": "quantile_cont(value, 0.5) OVER {w}",
    "p95": "quantile_cont(value, 0.95) OVER {w}",
}
"""Rolling statistics over a trailing window; ``{w}`` is the window's name."""


@dataclass(frozen=True)
class Selection:
    """Which points a read asks for. ``end`` is exclusive; ``as_of`` includes its instant.

    ``as_of`` is the point-in-time bound of a feature store: a read as of ``t`` returns only
    points at or before ``t``, so features built for a training example at ``t`` cannot see
    its future.
    """

    metrics: tuple[str, ...] | None = None
    entities: tuple[str, ...] | None = None
    start: datetime | None = None
    end: datetime | None = None
    as_of: datetime | None = None

    @classmethod
    def of(
        cls,
        metrics: Sequence[str] | str | None = None,
        entities: Sequence[str] | str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        as_of: datetime | str | None = None,
    ) -> Selection:
        return cls(
            metrics=_names(metrics),
            entities=_names(entities),
            start=None if start is None else parse_instant(start, "start"),
            end=None if end is None else parse_instant(end, "end"),
            as_of=None if as_of is None else parse_instant(as_of, "as_of"),
        )

    @property
    def upper_ms(self) -> int | None:
        """The last millisecond a read may return, or None for no bound."""
        bounds = []
        if self.end is not None:
            bounds.append(to_epoch_ms(self.end) - 1)
        if self.as_of is not None:
            bounds.append(to_epoch_ms(self.as_of))
        return min(bounds) if bounds else None

    def files(self, manifest: Manifest) -> list[DataFile]:
        """The files that can hold selected points (partition pruning on the manifest)."""
        lower = None if self.start is None else to_epoch_ms(self.start)
        upper = self.upper_ms
        chosen = []
        for f in manifest.files:
            if self.metrics is not None and f.metric not in self.metrics:
                continue
            if lower is not None and f.max_ts < lower:
                continue
            if upper is not None and f.min_ts > upper:
                continue
            chosen.append(f)
        return chosen

    def where(self) -> tuple[str, list[Any]]:
        """A SQL condition over ``metric, entity, ts`` and its parameters."""
        clauses: list[str] = ["TRUE"]
        params: list[Any] = []
        if self.metrics is not None:
            clauses.append("list_contains(?::VARCHAR[], metric)")
            params.append(list(self.metrics))
        if self.entities is not None:
            clauses.append("list_contains(?::VARCHAR[], entity)")
            params.append(list(self.entities))
        if self.start is not None:
            clauses.append("epoch_ms(ts) >= ?")
            params.append(to_epoch_ms(self.start))
        upper = self.upper_ms
        if upper is not None:
            clauses.append("epoch_ms(ts) <= ?")
            params.append(upper)
        return " AND ".join(clauses), params


def _names(value: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)


def source(root: str, files: Sequence[DataFile]) -> str:
    """A DuckDB table expression over ``files`` with their partition columns."""
    paths = ", ".join(_quote(f"{root}/{f.path}") for f in files)
    return (
        f"read_parquet([{paths}], hive_partitioning = true, "
        "hive_types = {'metric': VARCHAR, 'month': VARCHAR})"
    )


def points_sql(src: str, selection: Selection, order: bool = True) -> tuple[str, list[Any]]:
    where, params = selection.where()
    sql = f"SELECT metric, entity, ts, value FROM {src} WHERE {where}"
    if order:
        sql += " ORDER BY metric, entity, ts"
    return sql, params


def step_ms(step: str | timedelta) -> int:
    ms = round(parse_duration(step, "step").total_seconds() * 1000)
    if ms <= 0:
        raise BadQueryError("step", step, "a duration of at least 1ms")
    return ms


def resample_sql(
    src: str, selection: Selection, step: str | timedelta, agg: str, order: bool = True
) -> tuple[str, list[Any]]:
    """Points aggregated per step; a bucket is labelled by its start."""
    if agg not in AGGREGATIONS:
        raise BadQueryError("aggregation", agg, "one of " + ", ".join(AGGREGATIONS))
    size = step_ms(step)
    where, params = selection.where()
    sql = (
        f"SELECT metric, entity, make_timestamp(t * 1000)::TIMESTAMPTZ AS ts, value FROM ("
        f"SELECT metric, entity, epoch_ms(ts) // {size} * {size} AS t, "
        f"{AGGREGATIONS[agg]} AS value "
        f"FROM {src} WHERE {where} GROUP BY ALL)"
    )
    return sql + (" ORDER BY metric, entity, ts" if order else ""), params


def align_sql(
    src: str, selection: Selection, metrics: Sequence[str], step: str | timedelta, agg: str
) -> tuple[str, list[Any]]:
    """One row per entity and step, one column per metric (null where a metric has no point)."""
    inner, params = resample_sql(src, selection, step, agg, order=False)
    columns = ", ".join(
        f"any_value(value) FILTER (WHERE metric = {_quote(m)}) AS {_ident(m)}" for m in metrics
    )
    sql = f"SELECT entity, ts, {columns} FROM ({inner}) GROUP BY entity, ts ORDER BY entity, ts"
    return sql, params


def window_features_sql(
    src: str,
    selection: Selection,
    step: str | timedelta,
    windows: Sequence[str | timedelta],
    stats: Sequence[str],
    agg: str = "mean",
) -> tuple[str, list[Any]]:
    """Causal window features on the ``step`` grid of each series.

    For each window ``W`` and statistic, a column ``<stat>_<W>`` over the points in
    ``(t - W, t]``; ``diff`` is the change since the previous step; ``tod_*`` and ``dow_*``
    encode the time of day and the day of the week on the unit circle (Monday is day 0).
    """
    for stat in stats:
        if stat not in WINDOW_STATS:
            raise BadQueryError("window statistic", stat, "one of " + ", ".join(WINDOW_STATS))
    size = step_ms(step)
    inner, params = resample_sql(src, selection, step, agg, order=False)
    named, selected = [], []
    for window in windows:
        width = parse_duration(window, "window")
        width_ms = round(width.total_seconds() * 1000)
        if width_ms < size:
            raise BadQueryError("window", window, f"a duration of at least the step ({size} ms)")
        label = format_duration(width)
        name = f"w_{label}"
        named.append(
            f"{name} AS (PARTITION BY metric, entity ORDER BY t "
            f"RANGE BETWEEN {width_ms - size} PRECEDING AND CURRENT ROW)"
        )
        selected += [f"{WINDOW_STATS[s].format(w=name)} AS {_ident(f'{s}_{label}')}" for s in stats]
    day, week = 86_400_000, 7 * 86_400_000
    sql = (
        f"SELECT metric, entity, ts, value, {', '.join(selected)}, "
        f"value - lag(value) OVER (PARTITION BY metric, entity ORDER BY t) AS diff, "
        f"sin(2 * pi() * (t % {day}) / {day}) AS tod_sin, "
        f"cos(2 * pi() * (t % {day}) / {day}) AS tod_cos, "
        f"sin(2 * pi() * ((t + 3 * {day}) % {week}) / {week}) AS dow_sin, "
        f"cos(2 * pi() * ((t + 3 * {day}) % {week}) / {week}) AS dow_cos "
        f"FROM (SELECT *, epoch_ms(ts) AS t FROM ({inner})) "
        f"WINDOW {', '.join(named)} ORDER BY metric, entity, ts"
    )
    return sql, params


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'
