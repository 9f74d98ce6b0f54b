"""The time-series feature store: ``(metric, entity, ts, value)`` points in Parquet, via DuckDB."""

from perfml.featurestore.manifest import LabelWindow
from perfml.featurestore.schema import LONG_SCHEMA
from perfml.featurestore.store import FeatureStore, StoreSummary
from perfml.featurestore.write_path import IngestReport

__all__ = ["LONG_SCHEMA", "FeatureStore", "IngestReport", "LabelWindow", "StoreSummary"]
