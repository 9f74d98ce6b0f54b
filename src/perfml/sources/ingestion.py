"""From a source into the feature store: each function is one all-or-nothing write.

The CLI's ``perfml ingest`` commands and the demo call these; a ``tick`` callback, when given,
is called once per file or series read, for progress bars.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa

from perfml.featurestore import FeatureStore, IngestReport, LabelWindow
from perfml.sources import files, nab
from perfml.sources.prometheus import PrometheusClient, RetryPolicy
from perfml.timeparse import parse_instant, to_epoch_ms

Tick = Callable[[], None]


def _no_tick() -> None:
    return None


def ingest_files(
    store: FeatureStore, paths: Sequence[Path], drop_nonfinite: bool = False, tick: Tick = _no_tick
) -> IngestReport:
    """Long-format CSV or Parquet files (``metric, entity, ts, value``)."""

    def batches() -> Iterator[tuple[pa.Table, str]]:
        for path in paths:
            yield from files.read_points(path, drop_nonfinite)
            tick()

    return store.write(batches(), drop_nonfinite=drop_nonfinite)


def ingest_corpus(
    store: FeatureStore, corpus: Path, metric: str | None = None, tick: Tick = _no_tick
) -> IngestReport:
    """A NAB corpus, or a fleet written in NAB's layout, with its windows as labels.

    Each ``data/<category>/<name>.csv`` becomes the series ``(category, name)`` — or
    ``(metric, name)`` when ``metric`` is given. For a generated fleet, the kind of anomaly
    behind each window is read from its ``fleet.json``.
    """
    series = list(nab.iter_corpus(corpus))
    kinds = _anomaly_kinds(corpus)
    windows = []
    for one in series:
        for start, end in one.windows:
            first, last = to_epoch_ms(start), to_epoch_ms(end)
            kind = next(
                (k for at, k in kinds.get((one.category, one.name), []) if first <= at <= last), ""
            )
            windows.append(LabelWindow(metric or one.category, one.name, first, last, kind))

    def batches() -> Iterator[tuple[pa.Table, str]]:
        for one in series:
            yield nab.corpus_to_long([one], metric), str(one.path)
            tick()

    return store.write(batches(), windows=windows)


def _anomaly_kinds(corpus: Path) -> dict[tuple[str, str], list[tuple[int, str]]]:
    plan = corpus / "fleet.json"
    if not plan.is_file():
        return {}
    kinds: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for anomaly in json.loads(plan.read_text(encoding="utf-8")).get("anomalies", []):
        at = to_epoch_ms(parse_instant(anomaly["start"]))
        kinds.setdefault((anomaly["metric"], anomaly["host"]), []).append((at, anomaly["kind"]))
    return kinds


@dataclass(frozen=True)
class PrometheusPull:
    """What to pull from a Prometheus server, and how to reach it."""

    url: str
    query: str
    start: datetime
    end: datetime
    step: timedelta
    metric: str | None = None
    entity_label: str = "instance"
    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None
    timeout: timedelta = timedelta(seconds=30)
    attempts: int = 5
    max_points_per_series: int = 10_000


def ingest_prometheus(
    store: FeatureStore, pull: PrometheusPull, drop_nonfinite: bool = False, tick: Tick = _no_tick
) -> IngestReport:
    """A ``query_range`` pulled in chunks; each series keeps its Prometheus labels."""
    with PrometheusClient(
        pull.url,
        bearer_token=pull.bearer_token,
        basic_auth=pull.basic_auth,
        timeout=pull.timeout.total_seconds(),
        retry=RetryPolicy(attempts=pull.attempts),
    ) as client:
        ranged = client.query_range(
            pull.query,
            pull.start,
            pull.end,
            pull.step,
            metric=pull.metric,
            entity_label=pull.entity_label,
            drop_nonfinite=drop_nonfinite,
            max_points_per_series=pull.max_points_per_series,
        )

        def batches() -> Iterator[tuple[pa.Table, str]]:
            for table in ranged:
                yield table, f"{pull.url} query {pull.query!r}"
                tick()

        report = store.write(batches(), labels=ranged.labels)
        report.dropped_nonfinite += ranged.total_dropped
        report.points_received += ranged.total_dropped
        return report
