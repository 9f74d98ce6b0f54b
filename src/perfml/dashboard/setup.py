"""The dashboard's sources in a workspace, opened from ``perfml.yaml``."""

from __future__ import annotations

from perfml.alerting.store import AlertStore
from perfml.config import Settings
from perfml.dashboard.data import DashboardSources
from perfml.featurestore import FeatureStore
from perfml.pipelines.history import RunHistory
from perfml.recording.recorder import MetricsStore
from perfml.registry.setup import open_registry


def open_sources(settings: Settings) -> DashboardSources:
    """The workspace's sources (close them with :func:`close_sources`): perfml's recorded
    metrics as flushed to the feature store, and the run history, the registry and the
    alerts from the metadata database."""
    fs = settings.featurestore
    store = FeatureStore(settings.store_path, fs.memory_limit, fs.threads)
    return DashboardSources(
        series=MetricsStore(store),
        history=RunHistory(settings.registry_url),
        registry=open_registry(settings, background_delivery=False),
        alerts=AlertStore(settings.registry_url),
    )


def close_sources(sources: DashboardSources) -> None:
    """Close the database connections of ``sources``."""
    for source in (sources.history, sources.registry, sources.alerts):
        if source is not None:
            source.close()
