"""Where series come from: readers of public corpora and generators of realistic fleets.

- :mod:`.nab` — the Numenta Anomaly Benchmark's files and labelled windows;
- :mod:`.fleet` — a generated fleet of hosts with labelled anomalies and workload drift;
- :mod:`.files` — long-format CSV and Parquet points;
- :mod:`.prometheus` — range queries of a Prometheus-compatible server, in bounded windows;
- :mod:`.ingestion` — any of them into the feature store.

Importing the package is light: each name is imported from its module when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perfml.lazy import exports
from perfml.sources.errors import FleetConfigError, MetricNameError, NabFormatError, SourceError

if TYPE_CHECKING:
    from perfml.sources.files import FileFormatError, read_points
    from perfml.sources.fleet import (
        METRICS,
        Anomaly,
        DriftEvent,
        Fleet,
        generate_fleet,
        write_fleet,
    )
    from perfml.sources.ingestion import (
        PrometheusPull,
        ingest_corpus,
        ingest_files,
        ingest_prometheus,
    )
    from perfml.sources.nab import (
        NabSeries,
        corpus_to_long,
        iter_corpus,
        read_series,
        read_windows,
        write_series,
        write_windows,
    )
    from perfml.sources.prometheus import PrometheusClient, RangePull, RetryPolicy
    from perfml.sources.prometheus_errors import PrometheusError

_LAZY = {
    "NabSeries": "perfml.sources.nab",
    "corpus_to_long": "perfml.sources.nab",
    "iter_corpus": "perfml.sources.nab",
    "read_series": "perfml.sources.nab",
    "read_windows": "perfml.sources.nab",
    "write_series": "perfml.sources.nab",
    "write_windows": "perfml.sources.nab",
    "Anomaly": "perfml.sources.fleet",
    "DriftEvent": "perfml.sources.fleet",
    "Fleet": "perfml.sources.fleet",
    "METRICS": "perfml.sources.fleet",
    "generate_fleet": "perfml.sources.fleet",
    "write_fleet": "perfml.sources.fleet",
    "FileFormatError": "perfml.sources.files",
    "read_points": "perfml.sources.files",
    "PrometheusClient": "perfml.sources.prometheus",
    "RangePull": "perfml.sources.prometheus",
    "RetryPolicy": "perfml.sources.prometheus",
    "PrometheusError": "perfml.sources.prometheus_errors",
    "PrometheusPull": "perfml.sources.ingestion",
    "ingest_corpus": "perfml.sources.ingestion",
    "ingest_files": "perfml.sources.ingestion",
    "ingest_prometheus": "perfml.sources.ingestion",
}
__getattr__ = exports(__name__, _LAZY)

__all__ = [
    "METRICS",
    "Anomaly",
    "DriftEvent",
    "FileFormatError",
    "Fleet",
    "FleetConfigError",
    "MetricNameError",
    "NabFormatError",
    "NabSeries",
    "PrometheusClient",
    "PrometheusError",
    "PrometheusPull",
    "RangePull",
    "RetryPolicy",
    "SourceError",
    "corpus_to_long",
    "generate_fleet",
    "ingest_corpus",
    "ingest_files",
    "ingest_prometheus",
    "iter_corpus",
    "read_points",
    "read_series",
    "read_windows",
    "write_fleet",
    "write_series",
    "write_windows",
]
