"""From a source into the feature store: each function is one all-or-nothing write.

The CLI's ``perfml ingest`` commands and the demo call these; a ``tick`` callback, when given,
is called once per file or series read, for progress bars.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa

from perfml.featurestore import FeatureStore, IngestReport, LabelWindow
from perfml.sources import files, nab
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
