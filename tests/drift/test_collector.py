"""The drift collector: the latest window's drift and the model's quality as gauges."""

from __future__ import annotations

import math
import subprocess
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tests.integration.services import require_binary

from perfml.drift import DriftCollector, DriftRecord, DriftReport, QualityRecord, QualityReport
from perfml.drift.windows import between

REFERENCE = between("2024-01-01", "2024-03-01")
MARCH, APRIL = (
    between("2024-03-01", "2024-04-01", "2024-03"),
    between("2024-04-01", "2024-05-01", "2024-04"),
)


def _record(feature: str, window, method: str, value: float, entity: str | None = None):
    return DriftRecord(
        feature, entity, window.label, window.start_time, window.end_time, method, value,
        0.1 if method == "kl" else None, 100, 200,
    )  # fmt: skip


def drift() -> DriftReport:
    records = [
        _record("cpu_util", MARCH, "kl", 0.02),
        _record("cpu_util", APRIL, "kl", 0.31),
        _record("cpu_util", APRIL, "wasserstein", 4.5),
        _record("mem_util", APRIL, "kl", math.nan),  # no point in April: not exported
        _record("cpu_util", APRIL, "kl", 9.0, entity="web-1"),  # per entity: not exported
    ]
    return DriftReport(REFERENCE, (MARCH, APRIL), ("kl", "wasserstein"), tuple(records))


def quality() -> QualityReport:
    at = datetime(2024, 4, 1, tzinfo=UTC)
    record = QualityRecord("cpu", 3, "2024-04", at, at, 0.8, math.nan, 0.4, 10, 1, 0)
    return QualityReport("cpu", 3, "cpu_util", 0.5, REFERENCE, (record,))


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_collector_exports_the_latest_window_and_the_latest_quality() -> None:
    registry = CollectorRegistry()
    collector = DriftCollector()
    registry.register(collector)
    assert samples(registry) == {}
    collector.update(drift=drift())
    collector.update(quality=quality())
    assert samples(registry) == {
        ("perfml_feature_drift", (("feature", "cpu_util"), ("method", "kl"))): 0.31,
        ("perfml_feature_drift", (("feature", "cpu_util"), ("method", "wasserstein"))): 4.5,
        (
            "perfml_model_quality",
            (("metric", "precision"), ("model", "cpu"), ("version", "3")),
        ): 0.8,
        ("perfml_model_quality", (("metric", "f1"), ("model", "cpu"), ("version", "3"))): 0.4,
    }


@pytest.mark.integration
def test_promtool_finds_no_problem_in_the_exposition() -> None:
    promtool = require_binary("promtool")
    registry = CollectorRegistry()
    registry.register(DriftCollector(drift(), quality()))
    body = generate_latest(registry)
    assert b"perfml_feature_drift{" in body
    assert b"perfml_model_quality{" in body
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, b"", b"")
