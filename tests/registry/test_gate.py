"""The gate's thresholds: a margin below the holder, a floor for a first version, MLflow's
required improvements, and the default gate of an untouched perfml.yaml."""

from __future__ import annotations

import pytest

from perfml.config import Settings
from perfml.registry import MetricThreshold, ModelRegistry, PromotionRefusedError
from perfml.registry.gate import check


def test_a_candidate_within_the_margin_passes_and_one_below_it_is_refused() -> None:
    gate = [MetricThreshold("event_f1", max_drop=0.05)]
    assert check(gate, {"event_f1": 0.70}, {"event_f1": 0.74}).passed
    assert check(gate, {"event_f1": 0.70}, {"event_f1": 0.75}).passed  # exactly at the margin
    assert check(gate, {"event_f1": 0.90}, {"event_f1": 0.75}).passed
    refused = check(gate, {"event_f1": 0.69}, {"event_f1": 0.75})
    assert not refused.passed
    assert refused.failures == [
        "event_f1: candidate 0.69 is below the current 0.75 by 0.06, more than the margin 0.05"
    ]
    assert refused.thresholds[0]["max_drop"] == 0.05


def test_the_margin_flips_when_lower_is_better() -> None:
    gate = [MetricThreshold("delay_s", max_drop=60.0, greater_is_better=False)]
    assert check(gate, {"delay_s": 350.0}, {"delay_s": 300.0}).passed
    refused = check(gate, {"delay_s": 400.0}, {"delay_s": 300.0})
    assert refused.failures == [
        "delay_s: candidate 400 is above the current 300 by 100, more than the margin 60"
    ]


def test_a_first_version_is_held_to_the_minimum_only() -> None:
    gate = [MetricThreshold("nab_standard", min_value=50.0, max_drop=5.0)]
    assert check(gate, {"nab_standard": 51.0}, None).passed
    refused = check(gate, {"nab_standard": 12.0}, None)
    assert refused.failures == ["nab_standard: candidate 12 misses the minimum 50"]


def default_gate() -> list[MetricThreshold]:
    return MetricThreshold.all_of(Settings().registry.gate)


def test_the_default_gate_refuses_a_clearly_worse_candidate() -> None:
    current = {"nab_standard": 72.0, "event_f1": 0.80}
    worse = check(default_gate(), {"nab_standard": 55.0, "event_f1": 0.60}, current)
    assert not worse.passed
    assert worse.failures == [
        "nab_standard: candidate 55 is below the current 72 by 17, more than the margin 5",
        "event_f1: candidate 0.6 is below the current 0.8 by 0.2, more than the margin 0.05",
    ]


def test_the_default_gate_refuses_a_first_version_below_the_minimum() -> None:
    poor = check(default_gate(), {"nab_standard": 30.0, "event_f1": 0.35}, None)
    assert poor.failures == [
        "nab_standard: candidate 30 misses the minimum 50",
        "event_f1: candidate 0.35 misses the minimum 0.5",
    ]
    assert check(default_gate(), {"nab_standard": 65.0, "event_f1": 0.80}, None).passed


def test_the_default_gate_passes_a_comparable_candidate() -> None:
    current = {"nab_standard": 72.0, "event_f1": 0.80}
    assert check(default_gate(), {"nab_standard": 69.5, "event_f1": 0.77}, current).passed
    assert check(default_gate(), {"nab_standard": 80.0, "event_f1": 0.85}, current).passed


def test_the_registry_refusal_names_the_metric_both_figures_and_the_margin(
    registry: ModelRegistry, make_artifact
) -> None:
    registry.register("cpu", make_artifact(b"one"), detector="seasonal")
    registry.register("cpu", make_artifact(b"two"), detector="seasonal")
    figures = {
        1: {"nab_standard": 70.0, "event_f1": 0.8},
        2: {"nab_standard": 71.0, "event_f1": 0.6},
    }
    registry.promote("cpu", 1, thresholds=default_gate(), evaluator=lambda v: figures[v.version])
    with pytest.raises(PromotionRefusedError) as refused:
        registry.promote(
            "cpu", 2, thresholds=default_gate(), evaluator=lambda v: figures[v.version]
        )
    assert str(refused.value) == (
        "promotion of version 2 to cpu@production refused: event_f1: candidate 0.6 is below "
        "the current 0.8 by 0.2, more than the margin 0.05"
    )
    assert registry.get("cpu@production").version == 1
