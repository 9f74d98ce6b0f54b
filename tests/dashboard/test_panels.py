"""The panels as data: the default pages, the metric vocabulary, and definitions refused."""

from __future__ import annotations

import re

import pytest

from perfml.dashboard.errors import PanelDefinitionError, UnknownPageError
from perfml.dashboard.panels import (
    POD_PHASES,
    UNITS,
    ChartKind,
    Dashboard,
    Page,
    Panel,
    Query,
    Source,
    Threshold,
    default_dashboard,
    phase_code_query,
)
from perfml.promql.ast import VectorSelector
from perfml.promql.parser import parse

VOCABULARY = {
    "kube_pod_status_phase",
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
    "container_fs_reads_bytes_total",
    "container_fs_writes_bytes_total",
    "container_network_receive_bytes_total",
    "container_network_transmit_bytes_total",
    "seldon_api_executor_server_requests_seconds_bucket",
    "seldon_api_executor_server_requests_seconds_count",
    "up",
    "perfml_feature_drift",
    "perfml_model_quality",
    "perfml_job_phase_seconds",
    "perfml_model_loaded_version",
    "ALERTS",
    "perfml_anomaly_score",
    "perfml_anomaly_threshold",
    "perfml_live_points_total",
}
"""The metric names of DESIGN.md's "One vocabulary for both worlds" (and Prometheus's ALERTS),
which the exporters of perfml and of a cluster both emit — with the live loop's, which
``perfml up`` and a cluster's ``perfml live`` both export."""


def test_default_pages_in_navigation_order() -> None:
    dashboard = default_dashboard()
    assert dashboard.slugs == ("jobs", "inference", "anomalies", "drift", "models", "alerts")
    assert [p.title for p in dashboard.pages] == [
        "Training jobs",
        "Inference",
        "Anomalies",
        "Drift",
        "Models",
        "Alerts",
    ]


def test_every_query_parses_and_uses_the_shared_vocabulary() -> None:
    used = set()
    for page in default_dashboard().pages:
        for panel in page.panels:
            for query in panel.queries:
                tree = parse(query.expr)
                used |= {e.name for e in tree.walk() if isinstance(e, VectorSelector)}
    assert used <= VOCABULARY, used - VOCABULARY
    assert "perfml_job_phase_seconds" in used
    assert "perfml_feature_drift" in used


def test_jobs_page_shows_what_the_runner_exports_and_says_what_it_does_not() -> None:
    jobs = default_dashboard(namespace="ml").page("jobs")
    assert [p.id for p in jobs.panels] == [
        "job-states",
        "phase-seconds",
        "cpu",
        "memory",
        "disk",
        "network",
    ]
    assert jobs.panel("job-states").source is Source.RUN_HISTORY
    assert jobs.panel("cpu").queries[0].expr == (
        'rate(container_cpu_usage_seconds_total{namespace="ml"}[5m])'
    )
    assert "does not export network bytes" in jobs.panel("network").note
    assert [q.legend for q in jobs.panel("disk").queries] == ["{{pod}} read", "{{pod}} write"]


def test_inference_latency_quantiles_over_the_seldon_histogram() -> None:
    inference = default_dashboard(serving_job="api").page("inference")
    latency = inference.panel("latency")
    assert latency.unit == "s"
    for query, q in zip(latency.queries, ("0.5", "0.95", "0.99"), strict=True):
        assert query.expr.startswith(f"histogram_quantile({q}, sum by (le) (rate(")
        assert "seldon_api_executor_server_requests_seconds_bucket" in query.expr
    assert inference.panel("up").queries[0].expr == 'up{job="api"}'
    assert inference.panel("error-rate").unit == "percentunit"


def test_drift_has_the_threshold_line() -> None:
    drift = default_dashboard(drift_threshold=0.25).page("drift").panel("feature-drift")
    assert drift.threshold == Threshold(0.25, "threshold 0.25")
    assert 'perfml_feature_drift{method="kl"}' in drift.queries[0].expr


def test_phase_codes_follow_the_pod_phases() -> None:
    expr = phase_code_query("perfml")
    assert expr.count("kube_pod_status_phase") == len(POD_PHASES) - 1
    assert '4 * sum by (pod) (kube_pod_status_phase{namespace="perfml",phase="Unknown"})' in expr


@pytest.mark.parametrize(
    ("legend", "expected"),
    [
        ("{{model}} v{{ version }}", "cpu v3"),
        ("{{missing}}!", "!"),
        ("", '{model="cpu", version="3"}'),
    ],
)
def test_legend_format(legend: str, expected: str) -> None:
    labels = {"__name__": "x", "model": "cpu", "version": "3"}
    assert Query("x", legend).legend_for(labels) == expected


def test_unknown_page_names_the_pages() -> None:
    with pytest.raises(UnknownPageError) as caught:
        default_dashboard().page("jbos")
    assert caught.value.status_code == 404
    assert "'jbos'" in str(caught.value)
    assert "jobs, inference, anomalies, drift, models, alerts" in str(caught.value)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: Panel("x", "X", ChartKind.TIMESERIES), "needs at least one query"),
        (lambda: Panel("Bad Id", "X", ChartKind.TABLE, source=Source.AUDIT_LOG), "an id is"),
        (lambda: Panel("x", "X", ChartKind.STAT, (Query("up"),), unit="furlongs"), "'furlongs'"),
        (
            lambda: Panel("x", "X", ChartKind.STAT, (Query("up"),), threshold=Threshold(1)),
            "only a time series",
        ),
        (lambda: Panel("x", "X", ChartKind.TIMELINE, (Query("up"),)), "value_names"),
        (lambda: Panel("x", "X", ChartKind.STAT, (Query("up"),), width=25), "width 25"),
        (lambda: Panel("x", "X", ChartKind.STAT, (Query("  "),)), "empty expression"),
    ],
)
def test_bad_panels_are_refused_when_defined(make: object, problem: str) -> None:
    with pytest.raises(PanelDefinitionError, match=re.escape(problem)):
        make()  # type: ignore[operator]


def test_bad_pages_are_refused_when_defined() -> None:
    panel = Panel("x", "X", ChartKind.STAT, (Query("up"),))
    with pytest.raises(PanelDefinitionError, match="defined twice on page 'p'"):
        Page("p", "P", (panel, panel))
    with pytest.raises(PanelDefinitionError, match="at least one panel"):
        Page("p", "P", ())
    with pytest.raises(PanelDefinitionError, match="share a slug"):
        Dashboard([Page("p", "P", (panel,)), Page("p", "Q", (panel,))])
    with pytest.raises(PanelDefinitionError, match="no such panel on page 'p'"):
        Page("p", "P", (panel,)).panel("y")


def test_every_unit_is_formatted() -> None:
    for page in default_dashboard().pages:
        for panel in page.panels:
            assert panel.unit in UNITS
