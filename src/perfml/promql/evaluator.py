"""Evaluating a PromQL expression over a :class:`SeriesSource`, at one time or over a range.

Both entry points evaluate every node at all steps at once (see
:mod:`perfml.promql.vectors`); an instant query is the one-step case, so
:func:`evaluate` and :func:`evaluate_range` agree by construction.

>>> from perfml.promql.series import MemorySeries
>>> store = MemorySeries()
>>> store.extend("requests_total", {"code": "500"}, range(0, 600_001, 60_000), range(0, 110, 10))
>>> evaluate('rate(requests_total[5m])', 600_000, store)
[Sample(labels={'code': '500'}, value=0.16666666666666669)]
>>> evaluate("time() + 1", 600_000, store)
601.0
"""

from __future__ import annotations

import numpy as np

from perfml.promql import functions
from perfml.promql.aggregation import aggregate
from perfml.promql.ast import (
    SET_OPERATORS,
    Aggregation,
    Binary,
    Call,
    Expr,
    MatrixSelector,
    NumberLiteral,
    Paren,
    StringLiteral,
    Unary,
    VectorSelector,
    unwrap_parens,
)
from perfml.promql.binary import (
    scalar_scalar,
    set_operation,
    vector_scalar,
    vector_vector,
)
from perfml.promql.errors import PromQLError, PromQLEvaluationError
from perfml.promql.parser import parse
from perfml.promql.range_functions import RANGE_FUNCTION_IMPLEMENTATIONS
from perfml.promql.selection import latest_samples, load, window_bounds
from perfml.promql.series import FloatArray, IntArray, Sample, Series, SeriesSource
from perfml.promql.vectors import (
    InstantVector,
    LabelKey,
    describe,
    drop_name,
    merge_same_labels,
)

DEFAULT_LOOKBACK_MS = 300_000
"""How far back an instant selector looks for a series' latest sample (Prometheus: 5 m)."""

Value = InstantVector | FloatArray | str


class _Evaluation:
    def __init__(self, expr: Expr, steps: IntArray, source: SeriesSource, lookback_ms: int) -> None:
        self.expr = expr
        self.steps = steps
        self.source = source
        self.lookback_ms = lookback_ms

    def fail(self, problem: str) -> PromQLEvaluationError:
        return PromQLEvaluationError(self.expr.render(), problem)

    def unique(self, vector: InstantVector) -> InstantVector:
        merged, clash = merge_same_labels(vector)
        if clash is not None:
            raise self.fail(
                f"vector cannot contain metrics with the same labelset {describe(clash)}"
            )
        return merged

    def eval(self, node: Expr) -> Value:
        if isinstance(node, NumberLiteral):
            return np.full(len(self.steps), node.value)
        if isinstance(node, StringLiteral):
            return node.value
        if isinstance(node, Paren):
            return self.eval(node.expr)
        if isinstance(node, VectorSelector):
            return self.instant_selector(node)[0]
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, Aggregation):
            return self.aggregation(node)
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, Unary):
            return self.unary(node)
        if isinstance(node, MatrixSelector):
            raise self.fail(
                f"a range vector ({node.render()}) can only be an argument of a function"
            )
        raise self.fail(f"unsupported expression {node!r}")

    def vector(self, node: Expr) -> InstantVector:
        value = self.eval(node)
        if not isinstance(value, InstantVector):
            raise self.fail(f"{node.render()} is not an instant vector")
        return value

    def scalar(self, node: Expr) -> FloatArray:
        value = self.eval(node)
        if isinstance(value, InstantVector | str):
            raise self.fail(f"{node.render()} is not a scalar")
        return value

    # -- selectors -----------------------------------------------------------------------
    def instant_selector(self, node: VectorSelector) -> tuple[InstantVector, IntArray]:
        refs = self.steps - node.offset_ms
        block = load(self.source, node, int(refs.min()) - self.lookback_ms, int(refs.max()))
        values, present, sample_ts = latest_samples(block, refs, self.lookback_ms)
        return InstantVector(list(block.keys), values, present), sample_ts

    def range_function(self, name: str, node: MatrixSelector) -> InstantVector:
        selector = node.selector
        refs = self.steps - selector.offset_ms
        block = load(
            self.source, selector, int(refs.min()) - node.range_ms, int(refs.max())
        ).without_stale()
        windows = window_bounds(block, refs, node.range_ms)
        if name == "absent_over_time":
            anything = np.asarray((windows[1] > windows[0]).any(axis=0), dtype=bool)
            key = functions.absent_labels(selector)
            return InstantVector([key], np.ones((1, len(self.steps))), ~anything[None, :])
        values, present = RANGE_FUNCTION_IMPLEMENTATIONS[name](block, windows, refs, node.range_ms)
        keys = block.keys if name == "last_over_time" else [drop_name(k) for k in block.keys]
        return self.unique(InstantVector(list(keys), values, present).compact())

    # -- calls ---------------------------------------------------------------------------
    def call(self, node: Call) -> Value:
        name, args = node.name, node.args
        if name == "time":
            return self.steps.astype(np.float64) / 1000
        if name in RANGE_FUNCTION_IMPLEMENTATIONS or name == "absent_over_time":
            matrix = unwrap_parens(args[0])
            if not isinstance(matrix, MatrixSelector):
                raise self.fail(f"{name} needs a range selector, got {args[0].render()}")
            return self.range_function(name, matrix)
        if name == "vector":
            return InstantVector(
                [()], self.scalar(args[0])[None, :].copy(), np.ones((1, len(self.steps)), bool)
            )
        if name == "scalar":
            return functions.scalar_of(self.vector(args[0]))
        if name == "absent":
            inner = self.vector(args[0])
            selector = unwrap_parens(args[0])
            key = functions.absent_labels(
                selector if isinstance(selector, VectorSelector) else None
            )
            anything = np.asarray(inner.present.any(axis=0), dtype=bool)
            return InstantVector([key], np.ones((1, len(self.steps))), ~anything[None, :])
        if name == "timestamp":
            return self.timestamp(args[0])
        if name == "histogram_quantile":
            return self.unique(
                functions.histogram_quantile(self.scalar(args[0]), self.vector(args[1]))
            )
        if name in functions.ELEMENTWISE:
            return self.unique(functions.elementwise(name, self.vector(args[0])))
        if name == "clamp":
            return self.unique(
                functions.clamp(self.vector(args[0]), self.scalar(args[1]), self.scalar(args[2]))
            )
        if name == "clamp_min":
            return self.unique(functions.clamp_min(self.vector(args[0]), self.scalar(args[1])))
        if name == "clamp_max":
            return self.unique(functions.clamp_max(self.vector(args[0]), self.scalar(args[1])))
        raise self.fail(f"function {name!r} is not implemented")

    def timestamp(self, arg: Expr) -> InstantVector:
        inner = unwrap_parens(arg)
        if isinstance(inner, VectorSelector):
            # Of a selector: the time of the sample it picked, not the evaluation time.
            vector, sample_ts = self.instant_selector(inner)
            values = sample_ts.astype(np.float64) / 1000
        else:
            vector = self.vector(arg)
            values = np.broadcast_to(self.steps.astype(np.float64) / 1000, vector.values.shape)
        keys = [drop_name(k) for k in vector.keys]
        return self.unique(InstantVector(keys, np.array(values), vector.present))

    # -- operators -----------------------------------------------------------------------
    def aggregation(self, node: Aggregation) -> InstantVector:
        param: FloatArray | str | None = None
        if node.param is not None:
            value = self.eval(node.param)
            if isinstance(value, InstantVector):
                raise self.fail(f"the parameter of {node.op} must be a scalar or a string")
            param = value
        inner = self.vector(node.expr)
        return aggregate(node.op, inner, param, node.grouping, node.without).compact()

    def binary(self, node: Binary) -> Value:
        lhs, rhs = self.eval(node.lhs), self.eval(node.rhs)
        if isinstance(lhs, str) or isinstance(rhs, str):
            raise self.fail("strings cannot be operands of a binary operator")
        if not isinstance(lhs, InstantVector) and not isinstance(rhs, InstantVector):
            return scalar_scalar(node.op, lhs, rhs, node.return_bool)
        if isinstance(lhs, InstantVector) and isinstance(rhs, InstantVector):
            matching = node.matching
            if matching is None:
                raise self.fail("a vector operation lacks its matching")
            if node.op in SET_OPERATORS:
                return self.unique(set_operation(node.op, lhs, rhs, matching).compact())
            result = vector_vector(node.op, lhs, rhs, matching, node.return_bool, self.fail)
            return self.unique(result.compact())
        if isinstance(lhs, InstantVector) and not isinstance(rhs, InstantVector):
            result = vector_scalar(node.op, lhs, rhs, False, node.return_bool)
        elif isinstance(rhs, InstantVector) and not isinstance(lhs, InstantVector):
            result = vector_scalar(node.op, rhs, lhs, True, node.return_bool)
        else:
            raise self.fail(f"unsupported operands for {node.op}")
        return self.unique(result.compact())

    def unary(self, node: Unary) -> Value:
        value = self.eval(node.expr)
        if node.op == "+":
            return value
        if isinstance(value, InstantVector):
            negated = InstantVector(
                [drop_name(k) for k in value.keys], -value.values, value.present
            )
            return self.unique(negated)
        if isinstance(value, str):
            raise self.fail("a string cannot be negated")
        return -value


def _run(
    expr: Expr | str, steps: IntArray, source: SeriesSource, lookback_ms: int
) -> tuple[Expr, Value]:
    tree = parse(expr) if isinstance(expr, str) else expr
    if lookback_ms <= 0:
        raise PromQLError(f"lookback_ms must be positive, got {lookback_ms}")
    with np.errstate(all="ignore"):
        value = _Evaluation(tree, steps, source, lookback_ms).eval(tree)
    if isinstance(value, str):
        raise PromQLEvaluationError(tree.render(), "a string is not a query result")
    return tree, value


def evaluate(
    expr: Expr | str,
    at_ms: int,
    source: SeriesSource,
    *,
    lookback_ms: int = DEFAULT_LOOKBACK_MS,
) -> list[Sample] | float:
    """The value of ``expr`` at ``at_ms``: an instant vector, or a float for a scalar."""
    _, value = _run(expr, np.array([at_ms], dtype=np.int64), source, lookback_ms)
    if not isinstance(value, InstantVector):
        return float(value[0])
    return [
        Sample(dict(key), float(values[0]))
        for key, values, present in zip(value.keys, value.values, value.present, strict=True)
        if present[0]
    ]


def evaluate_range(
    expr: Expr | str,
    start_ms: int,
    end_ms: int,
    step_ms: int,
    source: SeriesSource,
    *,
    lookback_ms: int = DEFAULT_LOOKBACK_MS,
) -> list[Series]:
    """``expr`` at ``start_ms, start_ms + step_ms, ... <= end_ms``: a matrix sorted by labels.

    As Prometheus's ``/api/v1/query_range``: one series per label set with the steps where
    it has a value; a scalar gives one series without labels.
    """
    if step_ms <= 0:
        raise PromQLError(f"step_ms must be positive, got {step_ms}")
    if end_ms < start_ms:
        raise PromQLError(f"end_ms {end_ms} is before start_ms {start_ms}")
    steps = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
    _, value = _run(expr, steps, source, lookback_ms)
    if not isinstance(value, InstantVector):
        return [Series({}, steps, np.asarray(value, np.float64))]
    order = sorted(range(len(value)), key=lambda i: value.keys[i])
    out: list[Series] = []
    for i in order:
        mask = value.present[i]
        if mask.any():
            out.append(Series(dict(value.keys[i]), steps[mask], value.values[i][mask]))
    return out


__all__ = ["DEFAULT_LOOKBACK_MS", "LabelKey", "evaluate", "evaluate_range"]
