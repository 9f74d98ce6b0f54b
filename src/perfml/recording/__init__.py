"""Recording: perfml's own metrics, scraped and kept as series — its own Prometheus.

- :mod:`.scrape` — scrape targets (HTTP endpoints, registries of this process) and the
  exposition format, labelled as Prometheus labels them (``job``, ``instance``, ``up``);
- :mod:`.recorder` — the recent samples in memory, flushed to the feature store, queried as a
  PromQL series source;
- :mod:`.rounds` — the fixed cadence scrapes and evaluations run on;
- :mod:`.service` — the embedded monitoring service: scrape, record and evaluate the alert
  rules (:mod:`perfml.alerting`) in one object.
"""

from perfml.recording.errors import RecordingError
from perfml.recording.recorder import FlushReport, MetricsStore, Recorder, entity_of
from perfml.recording.rounds import every
from perfml.recording.scrape import RegistryTarget, Scraper, ScrapeResult, ScrapeTarget
from perfml.recording.service import MonitoringService

__all__ = [
    "FlushReport",
    "MetricsStore",
    "MonitoringService",
    "Recorder",
    "RecordingError",
    "RegistryTarget",
    "ScrapeResult",
    "ScrapeTarget",
    "Scraper",
    "entity_of",
    "every",
]
