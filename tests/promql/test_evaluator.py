"""The evaluator on hand-computed data: selectors, functions, aggregations, operators, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perfml.promql import (
    STALE_NAN,
    MemorySeries,
    PromQLError,
    PromQLEvaluationError,
    Sample,
    evaluate,
    evaluate_range,
)
from perfml.promql.functions import bucket_quantile

MIN = 60_000


def _values(result: list[Sample] | float) -> dict[tuple[tuple[str, str], ...], float]:
    assert isinstance(result, list)
    return {tuple(sorted(s.labels.items())): s.value for s in result}


def _one(result: list[Sample] | float) -> float:
    assert isinstance(result, list)
    assert len(result) == 1
    return result[0].value


@pytest.fixture
def store() -> MemorySeries:
    data = MemorySeries()
    data.extend("c", {"i": "a"}, [0, MIN, 2 * MIN, 3 * MIN, 4 * MIN], [0, 10, 20, 5, 15])
    data.extend("g", {"i": "a"}, [0, MIN, 2 * MIN], [4.0, -2.0, 1.0])
    data.extend("g", {"i": "b"}, [0, MIN, 2 * MIN], [6.0, 8.0, math.nan])
    return data


def test_lookback_finds_the_latest_sample_within_five_minutes(store: MemorySeries) -> None:
    assert _one(evaluate('g{i="a"}', 2 * MIN + 30_000, store)) == 1.0
    assert _one(evaluate('g{i="a"}', 7 * MIN, store)) == 1.0  # exactly 5 m back: still seen
    assert evaluate('g{i="a"}', 7 * MIN + 1, store) == []
    assert _one(evaluate('g{i="a"}', 3 * MIN, store, lookback_ms=2 * MIN)) == 1.0


def test_a_staleness_marker_ends_a_series_but_a_nan_is_a_value() -> None:
    data = MemorySeries()
    data.extend("s", {}, [0, MIN, 2 * MIN], [1.0, STALE_NAN, math.nan])
    assert evaluate("s", MIN + 1, data) == []
    assert math.isnan(_one(evaluate("s", 2 * MIN, data)))
    assert _one(evaluate("count_over_time(s[5m])", 2 * MIN, data)) == 2.0


def test_offset_shifts_the_evaluation_time(store: MemorySeries) -> None:
    assert _one(evaluate('g{i="a"} offset 1m', 2 * MIN, store)) == -2.0


def test_range_includes_the_sample_at_its_start(store: MemorySeries) -> None:
    assert _one(evaluate("count_over_time(c[2m])", 4 * MIN, store)) == 3.0


def test_rate_corrects_counter_resets_and_extrapolates(store: MemorySeries) -> None:
    # 0,10,20,5,15 over 4 minutes: +20, reset to 5 (counts 20 more), +10 -> 35 in 240 s;
    # the window [0, 4m] is covered exactly, so no extrapolation.
    assert _one(evaluate("increase(c[4m])", 4 * MIN, store)) == pytest.approx(35.0)
    assert _one(evaluate("rate(c[4m])", 4 * MIN, store)) == pytest.approx(35.0 / 240)
    # Window (30 s, 4 m 30 s]: samples at 1..4 m; 30 s to the end is within 1.1 x 60 s, the
    # start gap too: extrapolate 180 s of data to 240 s.
    assert _one(evaluate("increase(c[4m])", 4 * MIN + 30_000, store)) == pytest.approx(
        25.0 * 240 / 180
    )


def test_increase_is_not_extrapolated_below_zero() -> None:
    data = MemorySeries()
    data.extend("z", {}, [MIN, 2 * MIN, 3 * MIN], [1.0, 11.0, 21.0])
    # 20 over 120 s; extrapolating 60 s back would start at -9: clamp at the zero point (6 s).
    assert _one(evaluate("increase(z[3m])", 3 * MIN, data)) == pytest.approx(20 * 126 / 120)


def test_irate_delta_and_over_time_functions(store: MemorySeries) -> None:
    at = 2 * MIN
    assert _one(evaluate("irate(c[5m])", 3 * MIN, store)) == pytest.approx(5 / 60)
    assert _one(evaluate('delta(g{i="a"}[2m])', at, store)) == pytest.approx(-3.0)
    assert _values(evaluate("max_over_time(g[5m])", at, store)) == {
        (("i", "a"),): 4.0,
        (("i", "b"),): 8.0,
    }
    assert _one(evaluate('min_over_time(g{i="a"}[5m])', at, store)) == -2.0
    assert _one(evaluate('avg_over_time(g{i="a"}[5m])', at, store)) == 1.0
    assert _one(evaluate('sum_over_time(g{i="a"}[5m])', at, store)) == 3.0
    assert _one(evaluate('last_over_time(g{i="a"}[5m])', at, store)) == 1.0
    assert evaluate('last_over_time(g{i="a"}[5m])', at, store)[0].labels["__name__"] == "g"  # type: ignore[index]


def test_absent_and_absent_over_time(store: MemorySeries) -> None:
    assert evaluate("absent(g)", MIN, store) == []
    assert evaluate('absent(nope{job="x", env=~"p.*"})', MIN, store) == [Sample({"job": "x"}, 1.0)]
    assert evaluate("absent_over_time(g[1m])", 10 * MIN, store) == [Sample({}, 1.0)]


def test_scalar_functions_and_literals(store: MemorySeries) -> None:
    assert evaluate("time()", 90_000, store) == 90.0
    assert evaluate("2 ^ 3 ^ 2", 0, store) == 512.0
    assert evaluate("-2 ^ 2", 0, store) == -4.0
    assert evaluate("7 % 4 + 1 > bool 3", 0, store) == 1.0
    assert evaluate('scalar(g{i="a"})', 0, store) == 4.0
    assert math.isnan(float(evaluate("scalar(g)", 0, store)))  # type: ignore[arg-type]
    assert evaluate("vector(2)", 0, store) == [Sample({}, 2.0)]
    assert _values(evaluate("timestamp(g)", 90_000, store)) == {
        (("i", "a"),): 60.0,
        (("i", "b"),): 60.0,
    }


def test_instant_functions_drop_the_metric_name(store: MemorySeries) -> None:
    assert _values(evaluate("abs(g)", MIN, store)) == {(("i", "a"),): 2.0, (("i", "b"),): 8.0}
    assert _values(evaluate("clamp_min(g, 0)", MIN, store))[(("i", "a"),)] == 0.0
    assert _values(evaluate("clamp_max(g, 7)", MIN, store))[(("i", "b"),)] == 7.0


def test_histogram_quantile_interpolates_within_the_bucket() -> None:
    # 10 observations: 2 <= 0.1, 8 <= 0.5, 10 <= +Inf; the median lies in (0.1, 0.5].
    assert bucket_quantile(0.5, [(0.1, 2.0), (0.5, 8.0), (math.inf, 10.0)]) == pytest.approx(
        0.1 + 0.4 * (3 / 6)
    )
    assert bucket_quantile(0.99, [(0.1, 2.0), (0.5, 8.0), (math.inf, 10.0)]) == 0.5
    assert math.isnan(bucket_quantile(0.5, [(0.1, 2.0), (0.5, 8.0)]))  # no +Inf bucket
    # Non-monotonic counts (a torn scrape) are made monotonic first.
    assert bucket_quantile(0.5, [(1.0, 6.0), (2.0, 4.0), (math.inf, 6.0)]) == pytest.approx(0.5)


def test_aggregations_group_by_and_without() -> None:
    data = MemorySeries()
    for job, instance, value in [("a", "1", 1.0), ("a", "2", 3.0), ("b", "1", 10.0)]:
        data.add("x", {"job": job, "instance": instance}, 0, value)
    assert _values(evaluate("sum by (job) (x)", 0, data)) == {
        (("job", "a"),): 4.0,
        (("job", "b"),): 10.0,
    }
    assert _values(evaluate("avg without (instance) (x)", 0, data)) == {
        (("job", "a"),): 2.0,
        (("job", "b"),): 10.0,
    }
    assert _one(evaluate("count(x)", 0, data)) == 3.0
    assert _one(evaluate("max(x)", 0, data)) == 10.0
    assert _one(evaluate("min(x)", 0, data)) == 1.0
    assert _one(evaluate("quantile(0.5, x)", 0, data)) == 3.0
    assert [s.value for s in evaluate("topk(1, x)", 0, data)] == [10.0]  # type: ignore[union-attr]


def test_binary_operators_match_and_filter() -> None:
    data = MemorySeries()
    data.add("req", {"job": "a", "code": "500"}, 0, 5.0)
    data.add("req", {"job": "a", "code": "200"}, 0, 15.0)
    data.add("total", {"job": "a"}, 0, 20.0)
    assert _values(evaluate("req / ignoring (code) group_left total", 0, data)) == {
        (("code", "200"), ("job", "a")): 0.75,
        (("code", "500"), ("job", "a")): 0.25,
    }
    assert evaluate("req > 10", 0, data) == [
        Sample({"__name__": "req", "code": "200", "job": "a"}, 15.0)
    ]
    assert _values(evaluate("req > bool 10", 0, data)) == {
        (("code", "200"), ("job", "a")): 1.0,
        (("code", "500"), ("job", "a")): 0.0,
    }
    assert len(evaluate("req and on (job) total", 0, data)) == 2  # type: ignore[arg-type]
    assert evaluate("req unless on (job) total", 0, data) == []
    assert len(evaluate('req{code="200"} or total', 0, data)) == 2  # type: ignore[arg-type]


def test_many_to_many_matching_names_the_labels() -> None:
    data = MemorySeries()
    data.add("req", {"job": "a", "code": "500"}, 0, 5.0)
    data.add("req", {"job": "a", "code": "200"}, 0, 15.0)
    data.add("total", {"job": "a"}, 0, 20.0)
    with pytest.raises(
        PromQLEvaluationError, match=r'duplicate series for the match group \{job="a"\}'
    ):
        evaluate("total / ignoring (code) req", 0, data)
    with pytest.raises(PromQLEvaluationError, match="many-to-one matching must be explicit"):
        evaluate("req / ignoring (code) total", 0, data)


def test_same_labelset_after_dropping_the_name_is_an_error() -> None:
    data = MemorySeries()
    data.add("a", {"x": "1"}, 0, 1.0)
    data.add("b", {"x": "1"}, 0, 2.0)
    with pytest.raises(PromQLEvaluationError, match="same labelset"):
        evaluate('{__name__=~"a|b"} * 2', 0, data)


def test_evaluate_range_agrees_with_evaluate_at_each_step(store: MemorySeries) -> None:
    expr = "sum(rate(c[2m])) + on () group_left max(g) or vector(0)"
    matrix = evaluate_range(expr, 0, 6 * MIN, 30_000, store)
    for series in matrix:
        for ts, value in zip(series.ts.tolist(), series.values.tolist(), strict=True):
            instant = evaluate(expr, ts, store)
            assert isinstance(instant, list)
            assert [s.value for s in instant if s.labels == dict(series.labels)] == [value]
    scalar = evaluate_range("time()", 0, MIN, 30_000, store)
    assert scalar[0].values.tolist() == [0.0, 30.0, 60.0]


def test_bad_arguments_are_refused(store: MemorySeries) -> None:
    with pytest.raises(PromQLError, match="step_ms must be positive"):
        evaluate_range("g", 0, MIN, 0, store)
    with pytest.raises(PromQLError, match="is older than its latest sample"):
        store.add("g", {"i": "a"}, 0, 1.0)


def test_a_round_of_rules_over_ten_thousand_series_is_right() -> None:
    """Every pod's counter grows by one a second. (How fast a round is, is measured by
    benchmarks/monitoring.py, not asserted here.)"""
    data = MemorySeries()
    ts = np.arange(0, 20 * MIN, 15_000)
    for i in range(5_000):
        data.extend("container_cpu_usage_seconds_total", {"pod": f"p{i}"}, ts, ts / 1000.0)
        data.extend(
            "kube_pod_status_phase", {"pod": f"p{i}", "phase": "Running"}, ts, np.ones(len(ts))
        )
    rules = [
        "sum(rate(container_cpu_usage_seconds_total[5m])) > 0.9",
        'kube_pod_status_phase{phase="Pending"} == 1',
        "sum by (pod) (rate(container_cpu_usage_seconds_total[5m])) "
        '/ on (pod) kube_pod_status_phase{phase="Running"} > 2',
        "max(increase(container_cpu_usage_seconds_total[10m])) > 0",
    ]
    fleet, pending, busy, grown = (evaluate(rule, 19 * MIN, data) for rule in rules)
    assert _one(fleet) == pytest.approx(5_000.0)
    assert pending == []
    assert busy == []
    assert _one(grown) == pytest.approx(600.0)
