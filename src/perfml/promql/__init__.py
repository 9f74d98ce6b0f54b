"""A PromQL engine: parse and evaluate the PromQL subset of perfml's rules and dashboards.

perfml's alert rules render to Prometheus rules; in the embedded mode (no Prometheus) the
same expressions are evaluated here, with the semantics of the installed Prometheus: lookback
and staleness, range windows, ``rate``'s extrapolation, vector matching, which operations
drop ``__name__``, and float results computed in Prometheus's order.

>>> store = MemorySeries()
>>> store.add("up", {"job": "perfml-serving"}, 60_000, 0.0)
>>> evaluate('up{job="perfml-serving"} == 0', 90_000, store)
[Sample(labels={'__name__': 'up', 'job': 'perfml-serving'}, value=0.0)]
>>> evaluate('absent(up{job="api"})', 90_000, store)
[Sample(labels={'job': 'api'}, value=1.0)]
>>> sorted(metric_names("sum(rate(a[5m])) / sum(b)"))
['a', 'b']
"""

from perfml.promql.ast import Expr, metric_names
from perfml.promql.errors import (
    PromQLError,
    PromQLEvaluationError,
    PromQLParseError,
)
from perfml.promql.evaluator import DEFAULT_LOOKBACK_MS, evaluate, evaluate_range
from perfml.promql.parser import parse
from perfml.promql.series import (
    STALE_NAN,
    Matcher,
    MemorySeries,
    Sample,
    Series,
    SeriesSource,
)

__all__ = [
    "DEFAULT_LOOKBACK_MS",
    "STALE_NAN",
    "Expr",
    "Matcher",
    "MemorySeries",
    "PromQLError",
    "PromQLEvaluationError",
    "PromQLParseError",
    "Sample",
    "Series",
    "SeriesSource",
    "evaluate",
    "evaluate_range",
    "metric_names",
    "parse",
]
