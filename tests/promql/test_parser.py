"""The PromQL parser: canonical rendering round trips, precedence, types and error messages."""

from __future__ import annotations

import pytest

from perfml.promql import PromQLParseError, metric_names, parse
from perfml.promql.ast import (
    Binary,
    MatrixSelector,
    NumberLiteral,
    Unary,
    VectorSelector,
)

ROUND_TRIPS = [
    "up",
    'up{job="api", instance!="a"}',
    '{__name__=~"kube_.*", pod!~"p[0-9]+"}',
    "rate(http_requests_total[5m] offset 1h30m)",
    "sum by (job) (rate(x[5m]))",
    "sum without (instance) (x)",
    "quantile by (le) (0.9, x)",
    'count_values("v", x)',
    "topk(3, x)",
    "a + on (job) group_left (team) b",
    "a * ignoring (code) group_right () b",
    "a > bool 1",
    "a and on () b or c unless d",
    "-a ^ 2",
    "(-a) ^ 2",
    "2 ^ 3 ^ 2",
    "(1 + 2) * 3",
    "histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))",
    "absent_over_time(x[2d])",
    "time() - timestamp(x)",
    "vector(1) or scalar(x) * x",
]


@pytest.mark.parametrize("text", ROUND_TRIPS)
def test_rendering_parses_back_to_the_same_tree(text: str) -> None:
    tree = parse(text)
    assert parse(str(tree)) == tree
    assert parse(tree.render()) == tree


def test_canonical_form_normalises_spacing_and_clause_position() -> None:
    assert str(parse("sum(rate(x[5m]))by(job)>0")) == "sum by (job) (rate(x[5m])) > 0"


def test_power_is_right_associative_and_binds_tighter_than_unary_minus() -> None:
    tree = parse("2 ^ 3 ^ 2")
    assert isinstance(tree, Binary)
    assert isinstance(tree.rhs, Binary)
    assert tree.lhs == NumberLiteral(2.0)
    negated = parse("-a ^ 2")
    assert isinstance(negated, Unary)
    assert isinstance(negated.expr, Binary)


def test_multiplication_binds_tighter_than_addition_and_comparison_looser() -> None:
    tree = parse("a + b * c > d")
    assert isinstance(tree, Binary)
    assert tree.op == ">"
    assert isinstance(tree.lhs, Binary)
    assert tree.lhs.op == "+"
    assert isinstance(tree.lhs.rhs, Binary)
    assert tree.lhs.rhs.op == "*"


def test_and_binds_tighter_than_or() -> None:
    tree = parse("a or b and c")
    assert isinstance(tree, Binary)
    assert tree.op == "or"
    assert isinstance(tree.rhs, Binary)
    assert tree.rhs.op == "and"


def test_durations_ranges_and_offsets() -> None:
    tree = parse("x[1h30m] offset 2d")
    assert isinstance(tree, MatrixSelector)
    assert tree.range_ms == 5_400_000
    assert tree.selector.offset_ms == 2 * 86_400_000


def test_selector_by_name_matcher_reads_that_metric() -> None:
    tree = parse('{__name__="up", job="x"}')
    assert isinstance(tree, VectorSelector)
    assert metric_names(tree) == {"up"}
    assert metric_names("sum(rate(a[5m])) / on() group_left b + c offset 1m") == {"a", "b", "c"}
    assert metric_names('{__name__=~"a|b"}') == set()


def test_string_escapes() -> None:
    tree = parse('x{a="line\\n\\"quoted\\"", b=\'it\\\'s\', c=`raw\\n`}')
    assert isinstance(tree, VectorSelector)
    values = {m.name: m.value for m in tree.matchers}
    assert values == {"__name__": "x", "a": 'line\n"quoted"', "b": "it's", "c": "raw\\n"}
    assert parse(str(tree)) == tree


@pytest.mark.parametrize(
    ("text", "position", "problem"),
    [
        ("sum(x", 5, "expected ')' closing sum, found end of input"),
        ("1 > 2", 2, "comparisons between scalars must use the bool modifier"),
        ("x and 1", 2, 'set operator "and" not allowed in binary scalar expression'),
        ("rate(x)", 0, "expected type range vector in call to function 'rate'"),
        ("foo(x)", 0, "unknown function 'foo'"),
        ('{a=""}', 0, "at least one non-empty matcher"),
        ("x[5m:1m]", 4, "subqueries are not supported"),
        ('x{a=~"("}', 5, "is not valid"),
        ("x + on(a) group_left(a) y", 2, 'label "a" must not occur in ON and GROUP clause'),
        ("x $ y", 2, "unexpected character '$'"),
        ("x[abc]", 2, "expected a duration for the range"),
        ("1 + bool 2", 2, "bool modifier can only be used on comparison operators"),
        ("x y", 2, "unexpected 'y', expected an operator or end of input"),
        ("-x[5m]", 0, "unary expression only allowed on expressions of type scalar or instant"),
    ],
)
def test_errors_name_the_expression_position_and_problem(
    text: str, position: int, problem: str
) -> None:
    with pytest.raises(PromQLParseError) as caught:
        parse(text)
    assert caught.value.text == text
    assert caught.value.position == position
    assert problem in caught.value.problem
    assert repr(text) in str(caught.value)
