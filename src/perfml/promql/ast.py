"""The syntax tree of a PromQL expression: frozen dataclasses that render back to PromQL.

``str(expr)`` (or ``expr.render()``) gives canonical PromQL that parses back to the same
tree; :func:`metric_names` lists the metrics an expression reads.

>>> from perfml.promql.parser import parse
>>> expr = parse('sum by(job)(rate(http_requests_total{code=~"5.."}[5m]))>0')
>>> str(expr)
'sum by (job) (rate(http_requests_total{code=~"5.."}[5m])) > 0'
>>> sorted(metric_names(expr))
['http_requests_total']
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from perfml.promql.catalog import FUNCTIONS, ValueType
from perfml.promql.lexer import format_duration
from perfml.promql.series import METRIC_NAME, Matcher, quote

Cardinality = Literal["one-to-one", "many-to-one", "one-to-many", "many-to-many"]

BINARY_PRECEDENCE: dict[str, int] = {
    "or": 1,
    "and": 2,
    "unless": 2,
    "==": 3,
    "!=": 3,
    "<=": 3,
    "<": 3,
    ">=": 3,
    ">": 3,
    "+": 4,
    "-": 4,
    "*": 5,
    "/": 5,
    "%": 5,
    "^": 6,
}
"""Binary operators by precedence, loosest first; all are left-associative except ``^``."""
COMPARISON_OPERATORS = frozenset({"==", "!=", "<=", "<", ">=", ">"})
SET_OPERATORS = frozenset({"and", "or", "unless"})
ARITHMETIC_OPERATORS = frozenset({"+", "-", "*", "/", "%", "^"})
_ATOM = 10


def format_number(value: float) -> str:
    """A float as PromQL writes it: ``172800``, ``0.5``, ``1e-05``, ``+Inf``, ``NaN``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


class Expr:
    """The root of every node; ``str(expr)`` is its canonical PromQL."""

    precedence: int = _ATOM

    @property
    def value_type(self) -> ValueType:
        raise NotImplementedError

    def render(self) -> str:
        raise NotImplementedError

    def children(self) -> tuple[Expr, ...]:
        return ()

    def walk(self) -> Iterator[Expr]:
        """This node and all nodes below it, depth first."""
        yield self
        for child in self.children():
            yield from child.walk()

    def __str__(self) -> str:
        return self.render()


@dataclass(frozen=True)
class NumberLiteral(Expr):
    value: float

    @property
    def value_type(self) -> ValueType:
        return "scalar"

    def render(self) -> str:
        return format_number(self.value)


@dataclass(frozen=True)
class StringLiteral(Expr):
    value: str

    @property
    def value_type(self) -> ValueType:
        return "string"

    def render(self) -> str:
        return quote(self.value)


@dataclass(frozen=True)
class VectorSelector(Expr):
    """``name{matchers} offset d``; ``matchers`` include the one on ``__name__`` if named."""

    name: str | None
    matchers: tuple[Matcher, ...]
    offset_ms: int = 0

    @property
    def value_type(self) -> ValueType:
        return "vector"

    def render_selector(self) -> str:
        shown = [m for m in self.matchers if not (m.name == METRIC_NAME and self.name is not None)]
        inner = "{" + ", ".join(m.render() for m in shown) + "}" if shown else ""
        return f"{self.name or ''}{inner}"

    def render_offset(self) -> str:
        return f" offset {format_duration(self.offset_ms)}" if self.offset_ms else ""

    def render(self) -> str:
        return self.render_selector() + self.render_offset()


@dataclass(frozen=True)
class MatrixSelector(Expr):
    """``selector[range]``: the samples of each series in a window ending at the step."""

    selector: VectorSelector
    range_ms: int

    @property
    def value_type(self) -> ValueType:
        return "matrix"

    def children(self) -> tuple[Expr, ...]:
        return (self.selector,)

    def render(self) -> str:
        return (
            f"{self.selector.render_selector()}[{format_duration(self.range_ms)}]"
            f"{self.selector.render_offset()}"
        )


@dataclass(frozen=True)
class Call(Expr):
    name: str
    args: tuple[Expr, ...]

    @property
    def value_type(self) -> ValueType:
        return FUNCTIONS[self.name].return_type

    def children(self) -> tuple[Expr, ...]:
        return self.args

    def render(self) -> str:
        return f"{self.name}({', '.join(arg.render() for arg in self.args)})"


@dataclass(frozen=True)
class Aggregation(Expr):
    """``op by|without (grouping) ([param,] expr)``."""

    op: str
    expr: Expr
    param: Expr | None = None
    grouping: tuple[str, ...] = ()
    without: bool = False

    @property
    def value_type(self) -> ValueType:
        return "vector"

    def children(self) -> tuple[Expr, ...]:
        return (self.expr,) if self.param is None else (self.param, self.expr)

    def render(self) -> str:
        clause = ""
        if self.without or self.grouping:
            keyword = "without" if self.without else "by"
            clause = f" {keyword} ({', '.join(self.grouping)})"
        args = ", ".join(child.render() for child in self.children())
        return f"{self.op}{clause} ({args})"


@dataclass(frozen=True)
class VectorMatching:
    """How a binary operation pairs the series of its two vector operands."""

    card: Cardinality = "one-to-one"
    on: bool = False
    labels: tuple[str, ...] = ()
    include: tuple[str, ...] = ()

    def render(self) -> str:
        parts = []
        if self.on or self.labels:
            parts.append(f"{'on' if self.on else 'ignoring'} ({', '.join(self.labels)})")
        if self.card == "many-to-one":
            parts.append(f"group_left ({', '.join(self.include)})")
        elif self.card == "one-to-many":
            parts.append(f"group_right ({', '.join(self.include)})")
        return " ".join(parts)


@dataclass(frozen=True)
class Binary(Expr):
    op: str
    lhs: Expr
    rhs: Expr
    return_bool: bool = False
    matching: VectorMatching | None = None

    @property
    def precedence(self) -> int:  # type: ignore[override]
        return BINARY_PRECEDENCE[self.op]

    @property
    def value_type(self) -> ValueType:
        if self.lhs.value_type == "scalar" and self.rhs.value_type == "scalar":
            return "scalar"
        return "vector"

    def children(self) -> tuple[Expr, ...]:
        return (self.lhs, self.rhs)

    def render(self) -> str:
        mine = self.precedence
        right_assoc = self.op == "^"
        left_min = mine + 1 if right_assoc else mine
        right_min = mine if right_assoc else mine + 1
        modifiers = " bool" if self.return_bool else ""
        if self.matching is not None and self.matching.render():
            modifiers += " " + self.matching.render()
        return f"{_wrap(self.lhs, left_min)} {self.op}{modifiers} {_wrap(self.rhs, right_min)}"


@dataclass(frozen=True)
class Unary(Expr):
    op: Literal["-", "+"]
    expr: Expr

    @property
    def value_type(self) -> ValueType:
        return self.expr.value_type

    def children(self) -> tuple[Expr, ...]:
        return (self.expr,)

    def render(self) -> str:
        return f"{self.op}{_wrap(self.expr, BINARY_PRECEDENCE['^'])}"


@dataclass(frozen=True)
class Paren(Expr):
    expr: Expr

    @property
    def value_type(self) -> ValueType:
        return self.expr.value_type

    def children(self) -> tuple[Expr, ...]:
        return (self.expr,)

    def render(self) -> str:
        return f"({self.expr.render()})"


def _wrap(expr: Expr, min_precedence: int) -> str:
    # A leading minus binds looser than ``^`` only: ``-a ^ b`` is ``-(a ^ b)``.
    signed = isinstance(expr, Unary) or (isinstance(expr, NumberLiteral) and expr.value < 0)
    if signed:
        needs_parens = min_precedence > BINARY_PRECEDENCE["^"]
    else:
        needs_parens = expr.precedence < min_precedence
    return f"({expr.render()})" if needs_parens else expr.render()


def unwrap_parens(expr: Expr) -> Expr:
    """``expr`` without the parentheses around it."""
    while isinstance(expr, Paren):
        expr = expr.expr
    return expr


def selector_name(selector: VectorSelector) -> str | None:
    """The one metric a selector reads, if it names one (``x`` or ``{__name__="x"}``)."""
    if selector.name is not None:
        return selector.name
    for matcher in selector.matchers:
        if matcher.name == METRIC_NAME and matcher.op == "=":
            return matcher.value
    return None


def metric_names(expr: Expr | str) -> set[str]:
    """The metric names an expression's selectors read.

    A selector without a fixed name (``{__name__=~"a|b"}``) contributes nothing: a caller
    that loads data by name must load every metric for such an expression.
    """
    if isinstance(expr, str):
        from perfml.promql.parser import parse

        expr = parse(expr)
    return {
        name
        for node in expr.walk()
        if isinstance(node, VectorSelector) and (name := selector_name(node)) is not None
    }
