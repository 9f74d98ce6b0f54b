"""Parsing PromQL text into a checked syntax tree (:mod:`perfml.promql.ast`).

Precedence, associativity and type rules follow Prometheus: ``^`` is right-associative and
binds tighter than a leading minus; comparisons between scalars need ``bool``; set operators
and vector matching need two instant vectors.

>>> str(parse("-x ^ 2 * 3 - on(a) group_left(b) y offset 5m"))
'-x ^ 2 * 3 - on (a) group_left (b) y offset 5m'
>>> parse("1 > 2")
Traceback (most recent call last):
...
perfml.promql.errors.PromQLParseError: cannot parse PromQL '1 > 2' at position 2: \
comparisons between scalars must use the bool modifier
"""

from __future__ import annotations

from perfml.promql.ast import (
    BINARY_PRECEDENCE,
    COMPARISON_OPERATORS,
    SET_OPERATORS,
    Aggregation,
    Binary,
    Call,
    Cardinality,
    Expr,
    MatrixSelector,
    NumberLiteral,
    Paren,
    StringLiteral,
    Unary,
    VectorMatching,
    VectorSelector,
)
from perfml.promql.catalog import AGGREGATIONS, FUNCTIONS, ValueType
from perfml.promql.errors import BadMatcherError, PromQLParseError
from perfml.promql.lexer import Token, duration_ms, tokenize
from perfml.promql.series import MATCH_OPS, METRIC_NAME, Matcher, MatchOp

_TYPE_NAMES: dict[ValueType, str] = {
    "scalar": "scalar",
    "vector": "instant vector",
    "matrix": "range vector",
    "string": "string",
}
_WORD_OPERATORS = frozenset({"and", "or", "unless"})


def parse(text: str) -> Expr:
    """The syntax tree of the PromQL expression ``text``.

    Raises :class:`~perfml.promql.errors.PromQLParseError` naming the expression,
    the position and what was expected.
    """
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    # -- token helpers -------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.peek()
        self.index += 1
        return token

    def at(self, kind: str, text: str | None = None, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind == kind and (text is None or token.text == text)

    def at_word(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "IDENT" and token.text.lower() in words

    def fail(self, problem: str, token: Token | None = None) -> PromQLParseError:
        where = (token or self.peek()).pos
        return PromQLParseError(self.text, where, problem)

    def describe(self, token: Token) -> str:
        return "end of input" if token.kind == "EOF" else f"{token.text!r}"

    def expect(self, kind: str, text: str, what: str) -> Token:
        if not self.at(kind, text):
            raise self.fail(f"expected {what}, found {self.describe(self.peek())}")
        return self.advance()

    # -- grammar -------------------------------------------------------------------------
    def parse(self) -> Expr:
        if self.at("EOF"):
            raise self.fail("expected an expression, found end of input")
        expr = self.binary(0)
        if not self.at("EOF"):
            raise self.fail(
                f"unexpected {self.describe(self.peek())}, expected an operator or end of input"
            )
        return expr

    def binary_operator(self) -> str | None:
        token = self.peek()
        if token.kind == "OP" and token.text in BINARY_PRECEDENCE:
            return token.text
        if token.kind == "IDENT" and token.text.lower() in _WORD_OPERATORS:
            return token.text.lower()
        return None

    def binary(self, min_precedence: int) -> Expr:
        lhs = self.unary()
        while True:
            op = self.binary_operator()
            if op is None or BINARY_PRECEDENCE[op] < min_precedence:
                return lhs
            op_token = self.advance()
            return_bool = False
            if self.at_word("bool"):
                self.advance()
                return_bool = True
            matching = self.matching_modifiers()
            precedence = BINARY_PRECEDENCE[op]
            rhs = self.binary(precedence if op == "^" else precedence + 1)
            lhs = self.checked_binary(op_token, op, lhs, rhs, return_bool, matching)

    def matching_modifiers(self) -> tuple[bool, tuple[str, ...], str | None, tuple[str, ...]]:
        on, group = False, None
        labels: tuple[str, ...] = ()
        include: tuple[str, ...] = ()
        has_matching = False
        if self.at_word("on", "ignoring"):
            on = self.advance().text.lower() == "on"
            labels = self.label_list()
            has_matching = True
        if self.at_word("group_left", "group_right"):
            group = self.advance().text.lower()
            if self.at("OP", "("):
                include = self.label_list()
            if not has_matching:
                labels = ()
        return on, labels, group, include

    def checked_binary(
        self,
        token: Token,
        op: str,
        lhs: Expr,
        rhs: Expr,
        return_bool: bool,
        modifiers: tuple[bool, tuple[str, ...], str | None, tuple[str, ...]],
    ) -> Binary:
        on, labels, group, include = modifiers
        for side in (lhs, rhs):
            if side.value_type not in ("scalar", "vector"):
                raise self.fail(
                    "binary expression must contain only scalar and instant vector types, "
                    f"found {_TYPE_NAMES[side.value_type]}",
                    token,
                )
        both_vectors = lhs.value_type == "vector" and rhs.value_type == "vector"
        if return_bool and op not in COMPARISON_OPERATORS:
            raise self.fail("bool modifier can only be used on comparison operators", token)
        if (
            op in COMPARISON_OPERATORS
            and not return_bool
            and not (lhs.value_type == "vector" or rhs.value_type == "vector")
        ):
            raise self.fail("comparisons between scalars must use the bool modifier", token)
        if op in SET_OPERATORS and not both_vectors:
            raise self.fail(f'set operator "{op}" not allowed in binary scalar expression', token)
        has_modifiers = on or bool(labels) or group is not None
        if has_modifiers and not both_vectors:
            raise self.fail("vector matching only allowed between instant vectors", token)
        if not both_vectors:
            return Binary(op, lhs, rhs, return_bool, None)
        if op in SET_OPERATORS:
            if group is not None:
                raise self.fail(f'no grouping allowed for "{op}" operation', token)
            card: Cardinality = "many-to-many"
        elif group == "group_left":
            card = "many-to-one"
        elif group == "group_right":
            card = "one-to-many"
        else:
            card = "one-to-one"
        if on:
            for label in include:
                if label in labels:
                    raise self.fail(
                        f'label "{label}" must not occur in ON and GROUP clause at once', token
                    )
        return Binary(op, lhs, rhs, return_bool, VectorMatching(card, on, labels, include))

    def unary(self) -> Expr:
        if self.at("OP", "-") or self.at("OP", "+"):
            token = self.advance()
            operand = self.binary(BINARY_PRECEDENCE["^"])
            if operand.value_type not in ("scalar", "vector"):
                raise self.fail(
                    "unary expression only allowed on expressions of type scalar or "
                    f"instant vector, found {_TYPE_NAMES[operand.value_type]}",
                    token,
                )
            if isinstance(operand, NumberLiteral):
                return NumberLiteral(-operand.value if token.text == "-" else operand.value)
            return Unary("-" if token.text == "-" else "+", operand)
        return self.postfix(self.primary())

    def primary(self) -> Expr:
        token = self.peek()
        if token.kind == "NUMBER":
            self.advance()
            text = token.text
            return NumberLiteral(float(int(text, 16)) if text[:2].lower() == "0x" else float(text))
        if token.kind == "STRING":
            self.advance()
            return StringLiteral(token.text)
        if token.kind == "DURATION":
            raise self.fail(f"unexpected duration {token.text!r}, expected an expression")
        if token.kind == "OP" and token.text == "(":
            self.advance()
            inner = self.binary(0)
            self.expect("OP", ")", "')'")
            return Paren(inner)
        if token.kind == "OP" and token.text == "{":
            return self.selector(None)
        if token.kind == "IDENT":
            word = token.text
            if word.lower() in ("inf", "nan") and not self.at("OP", "{", 1):
                self.advance()
                return NumberLiteral(float(word))
            if word in AGGREGATIONS and (
                self.at("OP", "(", 1)
                or (self.peek(1).kind == "IDENT" and self.peek(1).text in ("by", "without"))
            ):
                return self.aggregation()
            if self.at("OP", "(", 1):
                return self.call()
            self.advance()
            return self.selector(word, token)
        raise self.fail(f"unexpected {self.describe(token)}, expected an expression")

    def postfix(self, expr: Expr) -> Expr:
        if self.at("OP", "["):
            open_token = self.advance()
            if not isinstance(expr, VectorSelector) or expr.offset_ms:
                raise self.fail(
                    "ranges only allowed for vector selectors (and before offset)", open_token
                )
            range_ms = self.duration("range")
            if self.peek().text.startswith(":"):
                raise self.fail("subqueries are not supported")
            self.expect("OP", "]", "']' after the range")
            expr = MatrixSelector(expr, range_ms)
        if self.at_word("offset"):
            offset_token = self.advance()
            offset = self.duration("offset")
            if isinstance(expr, VectorSelector) and not expr.offset_ms:
                expr = VectorSelector(expr.name, expr.matchers, offset)
            elif isinstance(expr, MatrixSelector) and not expr.selector.offset_ms:
                selector = expr.selector
                expr = MatrixSelector(
                    VectorSelector(selector.name, selector.matchers, offset), expr.range_ms
                )
            else:
                raise self.fail("offset modifier must be preceded by a selector", offset_token)
        if self.at("OP", "@"):
            raise self.fail("the @ modifier is not supported")
        return expr

    def duration(self, what: str) -> int:
        token = self.peek()
        if token.kind == "NUMBER" and token.text.isdigit():
            # A bare integer is a number of seconds, as in Prometheus.
            self.advance()
            return int(token.text) * 1000
        if token.kind != "DURATION":
            raise self.fail(
                f"expected a duration for the {what} (e.g. 5m), found {self.describe(token)}"
            )
        self.advance()
        ms = duration_ms(token.text)
        if ms is None:
            raise self.fail(
                f"invalid duration {token.text!r}: units must go from the largest down", token
            )
        if ms == 0 and what == "range":
            raise self.fail("a range must be longer than zero", token)
        return ms

    def label_list(self) -> tuple[str, ...]:
        self.expect("OP", "(", "'(' before a label list")
        labels: list[str] = []
        while not self.at("OP", ")"):
            token = self.peek()
            if token.kind != "IDENT":
                raise self.fail(f"expected a label name, found {self.describe(token)}")
            labels.append(self.advance().text)
            if not self.at("OP", ","):
                break
            self.advance()
        self.expect("OP", ")", "',' or ')' in the label list")
        return tuple(labels)

    def selector(self, name: str | None, name_token: Token | None = None) -> VectorSelector:
        start = name_token or self.peek()
        matchers: list[Matcher] = []
        if name is not None:
            matchers.append(Matcher(METRIC_NAME, "=", name))
        if self.at("OP", "{"):
            self.advance()
            while not self.at("OP", "}"):
                matchers.append(self.matcher(name is not None))
                if not self.at("OP", ","):
                    break
                self.advance()
            self.expect("OP", "}", "',' or '}' in the label matchers")
        if all(m.matches_empty() for m in matchers):
            raise self.fail("vector selector must contain at least one non-empty matcher", start)
        return VectorSelector(name, tuple(matchers))

    def matcher(self, named: bool) -> Matcher:
        label = self.peek()
        if label.kind != "IDENT":
            raise self.fail(f"expected a label name, found {self.describe(label)}")
        self.advance()
        op_token = self.peek()
        if op_token.kind != "OP" or op_token.text not in MATCH_OPS:
            raise self.fail(
                f"expected one of =, !=, =~, !~ after label {label.text!r}, "
                f"found {self.describe(op_token)}"
            )
        self.advance()
        op: MatchOp = {o: o for o in MATCH_OPS}[op_token.text]
        value = self.peek()
        if value.kind != "STRING":
            raise self.fail(f"expected a string for label {label.text!r}")
        self.advance()
        if named and label.text == METRIC_NAME:
            raise self.fail("metric name must not be set twice", label)
        try:
            return Matcher(label.text, op, value.text)
        except BadMatcherError as error:
            raise self.fail(str(error), value) from None

    def aggregation(self) -> Aggregation:
        op_token = self.advance()
        op = op_token.text
        grouping: tuple[str, ...] = ()
        without = False
        clause_seen = False
        if self.at_word("by", "without"):
            without = self.advance().text.lower() == "without"
            grouping = self.label_list()
            clause_seen = True
        self.expect("OP", "(", f"'(' after {op}")
        param: Expr | None = None
        param_type = AGGREGATIONS[op]
        if param_type is not None:
            param = self.binary(0)
            if param.value_type != param_type:
                raise self.fail(
                    f"expected type {_TYPE_NAMES[param_type]} in aggregation parameter of "
                    f"{op}, got {_TYPE_NAMES[param.value_type]}",
                    op_token,
                )
            self.expect("OP", ",", f"',' after the parameter of {op}")
        inner = self.binary(0)
        self.expect("OP", ")", f"')' closing {op}")
        if inner.value_type != "vector":
            raise self.fail(
                f"expected type instant vector in aggregation expression, "
                f"got {_TYPE_NAMES[inner.value_type]}",
                op_token,
            )
        if self.at_word("by", "without"):
            if clause_seen:
                raise self.fail("only one by/without clause is allowed")
            without = self.advance().text.lower() == "without"
            grouping = self.label_list()
        return Aggregation(op, inner, param, grouping, without)

    def call(self) -> Call:
        name_token = self.advance()
        name = name_token.text
        signature = FUNCTIONS.get(name)
        if signature is None:
            raise self.fail(f"unknown function {name!r}", name_token)
        self.advance()  # the '('
        args: list[Expr] = []
        while not self.at("OP", ")"):
            args.append(self.binary(0))
            if not self.at("OP", ","):
                break
            self.advance()
        self.expect("OP", ")", f"',' or ')' in the call of {name}")
        expected = signature.arg_types
        if not len(expected) - signature.optional <= len(args) <= len(expected):
            raise self.fail(
                f"expected {len(expected)} argument(s) in call to {name!r}, got {len(args)}",
                name_token,
            )
        for arg, want in zip(args, expected, strict=False):
            if arg.value_type != want:
                raise self.fail(
                    f"expected type {_TYPE_NAMES[want]} in call to function {name!r}, "
                    f"got {_TYPE_NAMES[arg.value_type]}",
                    name_token,
                )
        return Call(name, tuple(args))
