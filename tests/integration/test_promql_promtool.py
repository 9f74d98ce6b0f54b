"""perfml's PromQL evaluator gives what Prometheus gives: checked by ``promtool test rules``.

Every expression is evaluated by perfml at several times; the results become the expected
samples of a promtool rules test over the same input series, and promtool must agree
exactly (promtool compares floats for equality, so the arithmetic must match bit for bit).

Prometheus adds up the series of a group in the order its storage holds them (creation
order, which promtool randomises); perfml uses label order. Floating-point sums and means of
three or more inexact values can therefore differ in the last bit between two runs of
promtool itself, so the data keeps such groups order-independent (integers, pairs).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.integration.services.promtool import (
    ExprTest,
    InputSeries,
    failures,
    run_rules_test,
    write_rules_test,
)

from perfml.promql import MemorySeries, Sample, evaluate

pytestmark = pytest.mark.integration

INTERVAL_MS = 15_000
EVAL_TIMES_MS = [0, 75_000, 150_000, 299_000, 300_000, 451_000, 600_000, 700_000, 930_000]


def _s(name: str, values: str, **labels: str) -> InputSeries:
    return InputSeries({"__name__": name, **labels}, values)


def _buckets(deployment: str, increments: dict[str, int]) -> list[InputSeries]:
    cumulative = 0
    out = []
    for le, step in increments.items():
        cumulative += step
        out.append(
            _s(
                "seldon_api_executor_server_requests_seconds_bucket",
                f"0+{cumulative}x40",
                deployment_name=deployment,
                predictor_name="default",
                le=le,
            )
        )
    return out


SERIES: list[InputSeries] = [
    _s("http_requests_total", "0+10x40", job="api", code="200", instance="a"),
    _s("http_requests_total", "0+1x10 0+2x29", job="api", code="500", instance="a"),
    _s("http_requests_total", "5+3x10 _x5 50+3x23", job="api", code="200", instance="b"),
    _s("http_requests_total", "0+7x15 stale 0+7x23", job="web", code="200", instance="c"),
    _s("temperature", "1.5 2.25 -0.5 3 7.75 1e3 0.1 0.2 0.3 4 -2 6 _x3 8 9 10", host="h1"),
    _s("temperature", "3+0.1x25 stale", host="h2"),
    _s("temperature", "-4-0.25x40", host="h3", rack="r1"),
    _s("kube_pod_status_phase", "1x40", namespace="ml", pod="p1", phase="Pending"),
    _s("kube_pod_status_phase", "0x40", namespace="ml", pod="p1", phase="Running"),
    _s("kube_pod_status_phase", "0x40", namespace="ml", pod="p2", phase="Pending"),
    _s("kube_pod_status_phase", "1x40", namespace="ml", pod="p2", phase="Running"),
    _s("kube_pod_status_phase", "1x40", namespace="ml", pod="p3", phase="Running"),
    _s("kube_pod_start_time", "-200000x40", namespace="ml", pod="p2"),
    _s("kube_pod_start_time", "100x40", namespace="ml", pod="p3"),
    _s("kube_job_failed", "0x10 1x30", condition="BackoffLimitExceeded", job_name="train"),
    _s("kube_job_failed", "0x40", condition="DeadlineExceeded", job_name="train"),
    _s("kube_pod_container_resource_requests", "2x40", resource="cpu", pod="p1"),
    _s("kube_pod_container_resource_requests", "3.5x20 0.5x20", resource="cpu", pod="p2"),
    _s("kube_pod_container_resource_requests", "1e9x40", resource="memory", pod="p1"),
    _s("kube_node_status_allocatable", "4x40", resource="cpu", node="n1"),
    _s("kube_node_status_allocatable", "1x40", resource="cpu", node="n2"),
    _s("container_cpu_usage_seconds_total", "0+12.5x40", pod="p1"),
    _s("container_cpu_usage_seconds_total", "0+30x20 0+31.5x19", pod="p2"),
    _s("up", "1x20 0x20", job="perfml-serving", instance="s1"),
    _s("up", "1x40", job="other", instance="o1"),
    *_buckets("d1", {"0.005": 1, "0.05": 3, "0.5": 10, "1": 2, "10": 1, "+Inf": 0}),
    *_buckets("d2", {"0.005": 0, "0.05": 1, "0.5": 1, "1": 5, "10": 9, "+Inf": 2}),
    _s(
        "seldon_api_executor_server_requests_seconds_count",
        "0+20x40",
        deployment_name="d1",
        predictor_name="default",
        code="200",
    ),
    _s(
        "seldon_api_executor_server_requests_seconds_count",
        "0+2x20 40+5x19",
        deployment_name="d1",
        predictor_name="default",
        code="503",
    ),
    _s("perfml_model_load_failures_total", "0x20 1x20", model="m"),
    _s("perfml_feature_drift", "0.05x20 0.2x20", feature="cpu", method="kl"),
    _s("perfml_feature_drift", "0.3x40", feature="cpu", method="psi"),
    _s("perfml_feature_drift", "0.01+0.01x40", feature="mem", method="kl"),
    _s("perfml_model_quality", "0.8x20 0.4x20", model="m", version="1", metric="f1"),
    _s("perfml_model_quality", "0.9x40", model="m", version="1", metric="precision"),
]

RULE_EXPRESSIONS = [
    'kube_pod_status_phase{phase="Pending"} == 1',
    "(time() - kube_pod_start_time) > 172800 and on (namespace, pod) "
    'kube_pod_status_phase{phase="Running"} == 1',
    'kube_job_failed{condition="BackoffLimitExceeded"} > 0',
    'sum(kube_pod_container_resource_requests{resource="cpu"}) > '
    'sum(kube_node_status_allocatable{resource="cpu"})',
    "sum(rate(container_cpu_usage_seconds_total[5m])) / "
    'sum(kube_node_status_allocatable{resource="cpu"}) > 0.9',
    'up{job="perfml-serving"} == 0',
    'absent(up{job="perfml-serving"})',
    "histogram_quantile(0.99, sum by (le, deployment_name, predictor_name) "
    "(rate(seldon_api_executor_server_requests_seconds_bucket[5m]))) > 0.5",
    "sum by (deployment_name, predictor_name) "
    '(rate(seldon_api_executor_server_requests_seconds_count{code=~"5.."}[5m])) / '
    "sum by (deployment_name, predictor_name) "
    "(rate(seldon_api_executor_server_requests_seconds_count[5m])) > 0.05",
    "increase(perfml_model_load_failures_total[10m]) > 0",
    'max by (feature) (perfml_feature_drift{method="kl"}) > 0.1',
    'perfml_model_quality{metric="f1"} < 0.5',
]

CONSTRUCT_EXPRESSIONS = [
    # selectors, matchers, offset, lookback and staleness
    "http_requests_total",
    'http_requests_total{code!="200"}',
    'http_requests_total{instance=~"a|b", code!~"5.."}',
    '{__name__="temperature", host=~"h[12]"}',
    '{__name__=~"temp.*"}',
    "temperature offset 2m",
    "temperature offset 30s",
    # range functions
    "rate(http_requests_total[1m])",
    "rate(http_requests_total[5m])",
    "rate(http_requests_total[2m] offset 1m)",
    "increase(http_requests_total[3m])",
    "irate(http_requests_total[1m])",
    "delta(temperature[2m])",
    "idelta(temperature[1m])",
    "max_over_time(temperature[2m])",
    "min_over_time(temperature[90s])",
    "avg_over_time(temperature[3m])",
    "sum_over_time(temperature[2m])",
    "count_over_time(temperature[1m])",
    "last_over_time(temperature[1m])",
    "present_over_time(temperature[30s])",
    "absent_over_time(temperature[30s])",
    'absent_over_time(nonexistent{job="x"}[1m])',
    "sum_over_time(container_cpu_usage_seconds_total[45s])",
    # scalars and scalar functions
    "time()",
    "1 + 2 * 3 - 4 / 8",
    "2 ^ 3 ^ 2",
    "-2 ^ 2",
    "(1 + 2) * 3 % 5",
    "time() > bool 100",
    'scalar(up{instance="o1"})',
    "scalar(sum(up))",
    "vector(time() / 60)",
    "timestamp(temperature)",
    "timestamp(temperature offset 1m)",
    "timestamp(-temperature)",
    "absent(nonexistent)",
    'absent(nonexistent{job="x", job="y", env="prod"})',
    "absent(sum(nonexistent))",
    "abs(temperature)",
    "clamp_min(temperature, 2)",
    "clamp_max(temperature, 2)",
    "clamp(temperature, -1, 5)",
    "sqrt(abs(temperature))",
    "ceil(temperature)",
    "floor(temperature)",
    # aggregations
    "sum(http_requests_total)",
    "sum by (job) (http_requests_total)",
    "sum(http_requests_total) by (code)",
    "sum without (instance) (http_requests_total)",
    'avg(temperature{host=~"h1|h2"})',
    "avg by (rack) (temperature)",
    "min(temperature)",
    "max without (host) (temperature)",
    "count(temperature)",
    "count by (job) (up)",
    "quantile(0.5, temperature)",
    "quantile by (job) (0.9, http_requests_total)",
    "topk(2, temperature)",
    "bottomk(1, temperature)",
    'count_values("value", kube_pod_status_phase)',
    "group by (namespace) (kube_pod_status_phase)",
    # binary operators
    "http_requests_total + 1",
    "2 * http_requests_total",
    "http_requests_total / http_requests_total",
    "http_requests_total % 7",
    "temperature ^ 2",
    "1 - temperature",
    "-temperature",
    "temperature > 2",
    "2 < temperature",
    "temperature >= bool 3",
    "temperature == bool 3",
    "temperature != 3",
    "temperature <= 3",
    "up == bool on (job, instance) up",
    "kube_pod_status_phase * on (namespace, pod) group_left () kube_pod_start_time",
    "kube_pod_start_time * on (namespace, pod) group_right () kube_pod_status_phase",
    "kube_pod_status_phase > on (pod) group_left (namespace) kube_pod_start_time",
    "http_requests_total / ignoring (code) group_left sum by (job, instance) (http_requests_total)",
    'rate(http_requests_total{code="500"}[5m]) / ignoring (code) '
    'rate(http_requests_total{code="200"}[5m])',
    "http_requests_total and temperature",
    'http_requests_total and on (job) up{job="api"}',
    'http_requests_total{code="200"} or http_requests_total{code="500"}',
    'http_requests_total unless on (instance) http_requests_total{code="500"}',
    "temperature or vector(1)",
    "(temperature + 1) * 2 - temperature / 4",
    "temperature - temperature offset 1m",
]


def _evaluate_all(store: MemorySeries, expressions: list[str]) -> list[ExprTest]:
    tests = []
    for expr in expressions:
        for at in EVAL_TIMES_MS:
            result = evaluate(expr, at, store)
            samples = [Sample({}, result)] if isinstance(result, float) else result
            # promtool cannot expect a NaN (NaN != NaN); those checks are unit tests.
            if not any(math.isnan(s.value) for s in samples):
                tests.append(ExprTest(expr, at, samples))
    return tests


def _store(series: list[InputSeries]) -> MemorySeries:
    store = MemorySeries()
    for one in series:
        one.load_into(store, INTERVAL_MS)
    return store


def _check_with_promtool(
    tmp_path: Path, series: list[InputSeries], expressions: list[str], name: str
) -> None:
    tests = _evaluate_all(_store(series), expressions)
    path = tmp_path / f"{name}.yml"
    write_rules_test(path, series, tests, INTERVAL_MS)
    passed, output = run_rules_test(path)
    if not passed:
        listed = "\n".join(failures(output)[:20]) or output[-3000:]
        pytest.fail(f"promtool disagrees with perfml ({path}):\n{listed}", pytrace=False)


def test_rule_expressions_match_promtool(tmp_path: Path) -> None:
    _check_with_promtool(tmp_path, SERIES, RULE_EXPRESSIONS, "rules")


def test_every_construct_matches_promtool(tmp_path: Path) -> None:
    _check_with_promtool(tmp_path, SERIES, CONSTRUCT_EXPRESSIONS, "constructs")


PROPERTY_EXPRESSIONS = [
    "rate(counter[1m])",
    "rate(counter[2m])",
    "increase(counter[5m])",
    "irate(counter[45s])",
    "delta(gauge[2m])",
    "avg_over_time(gauge[3m])",
    "sum_over_time(gauge[2m])",
    "max_over_time(gauge[1m])",
    "min_over_time(gauge[5m])",
    "count_over_time(gauge[1m])",
    "last_over_time(gauge[1m])",
]


def _notation(values: list[float | None]) -> str:
    return " ".join("_" if v is None else repr(v) for v in values)


@st.composite
def _counter(draw: st.DrawFn) -> list[float | None]:
    increments = draw(st.lists(st.integers(0, 500), min_size=10, max_size=40))
    out: list[float | None] = []
    total = draw(st.integers(0, 1000)) / 10
    for step in increments:
        if draw(st.integers(0, 12)) == 0:
            total = step / 10  # a counter reset
        else:
            total += step / 10
        out.append(None if draw(st.integers(0, 9)) == 0 else total)
    return out


_gauge = st.lists(
    st.one_of(st.none(), st.integers(-10_000, 10_000).map(lambda v: v / 100)),
    min_size=10,
    max_size=40,
)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(counter=_counter(), gauge=_gauge)
def test_random_series_match_promtool(
    tmp_path: Path, counter: list[float | None], gauge: list[float | None]
) -> None:
    series = [
        InputSeries({"__name__": "counter", "instance": "x"}, _notation(counter)),
        InputSeries({"__name__": "gauge", "instance": "x"}, _notation(gauge)),
    ]
    _check_with_promtool(tmp_path, series, PROPERTY_EXPRESSIONS, f"random-{id(counter)}")
