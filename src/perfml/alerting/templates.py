"""Alert annotation templates: the subset of Prometheus's Go templates perfml expands.

Rules carry annotations such as ``"{{ $labels.pod }} pending for {{ $value | humanizeDuration }}"``.
Prometheus expands them with Go's ``text/template``; perfml expands the same subset natively,
character for character, so an alert reads the same whichever of the two raised it:

- ``{{ $labels.NAME }}`` (also ``.Labels.NAME``): a label of the alert's sample; a missing label
  is empty (Prometheus uses ``missingkey=zero``).
- ``{{ $value }}`` (also ``.Value``): the sample value, printed as Go prints a float64
  (``strconv.FormatFloat(v, 'g', -1, 64)``: shortest digits, exponent from 1e+06 up).
- a pipeline into one of ``humanize``, ``humanize1024``, ``humanizeDuration``,
  ``humanizePercentage`` — ``{{ $value | humanize }}`` or ``{{ humanize $value }}`` — formatted
  as Prometheus's ``template.go`` does (``%.4g`` with SI or binary prefixes).
- ``{{-`` and ``-}}`` trim the white space beside the action, as in Go.

>>> expand("{{ $labels.pod }} at {{ $value }}", {"pod": "train-1"}, 1234567.0)
'train-1 at 1.234567e+06'
>>> expand("{{ $value | humanize }}B, {{ humanizeDuration $value }}", {}, 1234567.0)
'1.235MB, 14d 6h 56m 7s'
>>> expand("{{ $value | humanizePercentage }}", {}, 0.1234567)
'12.35%'
>>> expand("{{ $value | printf }}", {}, 1.0)
Traceback (most recent call last):
...
perfml.alerting.templates.TemplateError: template '{{ $value | printf }}': unknown function ...
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from perfml.alerting.errors import AlertingError
from perfml.errors import UsageError


class TemplateError(AlertingError, UsageError):
    """A template is outside the supported subset, or a value cannot be formatted."""

    def __init__(self, text: str, problem: str) -> None:
        self.text = text
        self.problem = problem
        super().__init__(f"template {text!r}: {problem}")


# -- Go's number formatting ------------------------------------------------------------------


def go_float(value: float) -> str:
    """``value`` as Go prints a float64 with ``%v``: ``strconv.FormatFloat(v, 'g', -1, 64)``.

    >>> [go_float(v) for v in (0.0, 1.0, 0.5, 100000.0, 1e6, 1e-5, 0.0001, float("inf"))]
    ['0', '1', '0.5', '100000', '1e+06', '1e-05', '0.0001', '+Inf']
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0"
    # repr gives the shortest digits that round-trip, as Go's shortest formatting does.
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    point = len(digit_tuple) + int(exponent)  # the decimal point's place after the first digit
    exp = point - 1
    if exp < -4 or exp >= 6:  # Go uses %e past these, deciding with precision 6
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def go_g4(value: float) -> str:
    """``value`` as Go's ``fmt.Sprintf("%.4g", v)``.

    >>> [go_g4(v) for v in (1234.5678, 0.5, 12345.0, float("nan"), float("-inf"))]
    ['1235', '0.5', '1.234e+04', 'NaN', '-Inf']
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    # C's %.4g (Python's) rounds half to even on the exact binary value and trims zeros, as Go.
    return f"{value:.4g}"


# -- Prometheus's formatting functions -------------------------------------------------------


def humanize(value: float) -> str:
    """SI prefixes, four significant digits (``1234567`` → ``1.235M``, ``0.12`` → ``120m``)."""
    if value == 0 or math.isnan(value) or math.isinf(value):
        return go_g4(value)
    prefix = ""
    if abs(value) >= 1:
        for candidate in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(value) < 1000:
                break
            prefix = candidate
            value /= 1000
        return go_g4(value) + prefix
    for candidate in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix = candidate
        value *= 1000
    return go_g4(value) + prefix


def humanize1024(value: float) -> str:
    """Binary prefixes (``1048576`` → ``1Mi``)."""
    if abs(value) <= 1 or math.isnan(value) or math.isinf(value):
        return go_g4(value)
    prefix = ""
    for candidate in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(value) < 1024:
            break
        prefix = candidate
        value /= 1024
    return go_g4(value) + prefix


def humanize_duration(value: float) -> str:
    """Seconds as days, hours, minutes and seconds (``899.99`` → ``14m 59s``)."""
    if math.isnan(value) or math.isinf(value):
        return go_g4(value)
    if value == 0:
        return go_g4(value) + "s"
    if abs(value) >= 1:
        sign = "-" if value < 0 else ""
        value = abs(value)
        whole = int(value)
        seconds, minutes = whole % 60, (whole // 60) % 60
        hours, days = (whole // 3600) % 24, whole // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{go_g4(value)}s"
    prefix = ""
    for candidate in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix = candidate
        value *= 1000
    return f"{go_g4(value)}{prefix}s"


def humanize_percentage(value: float) -> str:
    """A ratio as a percentage (``0.1234567`` → ``12.35%``)."""
    return go_g4(value * 100) + "%"


FUNCTIONS: dict[str, Callable[[float], str]] = {
    "humanize": humanize,
    "humanize1024": humanize1024,
    "humanizeDuration": humanize_duration,
    "humanizePercentage": humanize_percentage,
}
"""The template functions of the subset, by their Prometheus names."""


# -- parsing and expansion -------------------------------------------------------------------

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_LABEL = re.compile(r"(?:\$labels|\.Labels)\.([A-Za-z_][A-Za-z0-9_]*)")
_VALUE = re.compile(r"\$value|\.Value")
_GO_FLOAT = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[iI]nf(?:inity)?|NaN|nan)")


@dataclass(frozen=True)
class _Action:
    operand: str
    """``"$value"`` or the name of a label."""
    functions: tuple[str, ...]


def _parse_action(text: str, body: str) -> _Action:
    stages = [stage.strip() for stage in body.split("|")]
    first = stages[0].split()
    if len(first) == 2 and first[0] in FUNCTIONS:  # "humanize $value" is "$value | humanize"
        first, functions = [first[1]], [first[0]]
    else:
        functions = []
    if len(first) != 1:
        raise TemplateError(text, f"unsupported action {{{{{body}}}}}")
    for stage in stages[1:]:
        if stage not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS))
            raise TemplateError(text, f"unknown function {stage!r} (known: {known})")
        functions.append(stage)
    label = _LABEL.fullmatch(first[0])
    if label is not None:
        return _Action(label.group(1), tuple(functions))
    if _VALUE.fullmatch(first[0]):
        return _Action("$value", tuple(functions))
    raise TemplateError(
        text, f"unsupported operand {first[0]!r}: use $labels.NAME or $value (or .Labels/.Value)"
    )


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> tuple[str | _Action, ...]:
    """The literal pieces and actions of ``text``; raises :class:`TemplateError` if outside the
    subset. Rules call it when they are defined, so a bad template fails at load time."""
    parts: list[str | _Action] = []
    position = 0
    for match in _ACTION.finditer(text):
        literal = text[position : match.start()]
        if match.group(1):
            literal = literal.rstrip()
        parts.append(literal)
        parts.append(_parse_action(text, match.group(2).strip()))
        position = match.end()
        if match.group(3):
            while position < len(text) and text[position].isspace():
                position += 1
    tail = text[position:]
    if "{{" in tail or "}}" in tail:
        raise TemplateError(text, "unbalanced {{ }}")
    parts.append(tail)
    return tuple(part for part in parts if part != "")


def _to_float(text: str, template: str) -> float:
    """A label value as a number, as Prometheus's ``convertToFloat`` (``strconv.ParseFloat``)."""
    if _GO_FLOAT.fullmatch(text) is None:
        raise TemplateError(template, f'strconv.ParseFloat: parsing "{text}": invalid syntax')
    return float(text)


def expand(text: str, labels: Mapping[str, str], value: float) -> str:
    """``text`` with its actions replaced, for a sample with ``labels`` and ``value``."""
    out: list[str] = []
    for part in parse(text):
        if isinstance(part, str):
            out.append(part)
            continue
        operand: str | float = value if part.operand == "$value" else labels.get(part.operand, "")
        for name in part.functions:
            number = operand if isinstance(operand, float) else _to_float(operand, text)
            operand = FUNCTIONS[name](number)
        out.append(go_float(operand) if isinstance(operand, float) else operand)
    return "".join(out)


def check(text: str) -> None:
    """Raise :class:`TemplateError` if ``text`` is outside the supported subset."""
    parse(text)
