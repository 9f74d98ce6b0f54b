"""The functions and aggregation operators of the supported PromQL subset, with their types.

The parser checks calls against :data:`FUNCTIONS` and aggregations against
:data:`AGGREGATIONS`; the evaluator implements exactly these.

>>> FUNCTIONS["histogram_quantile"].arg_types
('scalar', 'vector')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ValueType = Literal["scalar", "vector", "matrix", "string"]


@dataclass(frozen=True)
class FunctionSignature:
    """A function's argument types and result type; ``optional`` trailing args may be left out."""

    name: str
    arg_types: tuple[ValueType, ...]
    return_type: ValueType
    optional: int = 0


def _signature(
    name: str, args: tuple[ValueType, ...], returns: ValueType, optional: int = 0
) -> tuple[str, FunctionSignature]:
    return name, FunctionSignature(name, args, returns, optional)


RANGE_FUNCTIONS = frozenset(
    {
        "rate",
        "increase",
        "irate",
        "delta",
        "idelta",
        "max_over_time",
        "min_over_time",
        "avg_over_time",
        "sum_over_time",
        "count_over_time",
        "last_over_time",
        "present_over_time",
        "absent_over_time",
    }
)
"""Functions of a range vector, evaluated over each series' samples in the window."""

ELEMENTWISE_FUNCTIONS = frozenset({"abs", "ceil", "floor", "sqrt"})
"""Functions of an instant vector applied to each value (dropping the metric name)."""

FUNCTIONS: dict[str, FunctionSignature] = dict(
    [
        *(_signature(name, ("matrix",), "vector") for name in sorted(RANGE_FUNCTIONS)),
        *(_signature(name, ("vector",), "vector") for name in sorted(ELEMENTWISE_FUNCTIONS)),
        _signature("time", (), "scalar"),
        _signature("vector", ("scalar",), "vector"),
        _signature("scalar", ("vector",), "scalar"),
        _signature("absent", ("vector",), "vector"),
        _signature("timestamp", ("vector",), "vector"),
        _signature("histogram_quantile", ("scalar", "vector"), "vector"),
        _signature("clamp", ("vector", "scalar", "scalar"), "vector"),
        _signature("clamp_min", ("vector", "scalar"), "vector"),
        _signature("clamp_max", ("vector", "scalar"), "vector"),
    ]
)
"""Every supported function by name."""

AGGREGATIONS: dict[str, ValueType | None] = {
    "sum": None,
    "min": None,
    "max": None,
    "avg": None,
    "count": None,
    "group": None,
    "quantile": "scalar",
    "topk": "scalar",
    "bottomk": "scalar",
    "count_values": "string",
}
"""Every supported aggregation operator, with the type of its parameter (None: no parameter)."""
