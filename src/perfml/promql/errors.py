"""What can go wrong when parsing or evaluating PromQL, each failure carrying its values."""

from __future__ import annotations

from perfml.errors import PerfmlError


class PromQLError(PerfmlError):
    """The root of the PromQL engine's failures."""


class PromQLParseError(PromQLError):
    """An expression is not valid PromQL (of the supported subset).

    ``position`` is the 0-based character offset where the problem was found.
    """

    def __init__(self, text: str, position: int, problem: str) -> None:
        self.text = text
        self.position = position
        self.problem = problem
        super().__init__(f"cannot parse PromQL {text!r} at position {position}: {problem}")


class PromQLEvaluationError(PromQLError):
    """A valid expression cannot be evaluated on this data (e.g. many-to-many matching)."""

    def __init__(self, expr: str, problem: str) -> None:
        self.expr = expr
        self.problem = problem
        super().__init__(f"cannot evaluate PromQL {expr!r}: {problem}")


class OutOfOrderSampleError(PromQLError):
    """A sample was appended to a series before the series' latest sample."""

    def __init__(self, series: str, ts_ms: int, latest_ms: int) -> None:
        self.series = series
        self.ts_ms = ts_ms
        self.latest_ms = latest_ms
        super().__init__(
            f"sample at {ts_ms} ms for series {series} is older than its latest sample "
            f"at {latest_ms} ms; samples must be appended in time order"
        )


class BadMatcherError(PromQLError):
    """A label matcher has an unknown operator or a regular expression that does not compile."""

    def __init__(self, name: str, op: str, value: str, problem: str) -> None:
        self.name = name
        self.op = op
        self.value = value
        super().__init__(f"label matcher {name}{op}{value!r} is not valid: {problem}")
