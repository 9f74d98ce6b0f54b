"""Series, label matchers, instant samples and an in-memory series store.

A :class:`Series` is a label set (with ``__name__``) and two aligned NumPy arrays, timestamps
in milliseconds and float values. A :class:`SeriesSource` answers selections by label
matchers over a time span; :class:`MemorySeries` is the embedded one, indexed by metric name:

>>> store = MemorySeries()
>>> store.extend("up", {"job": "api"}, [1_000, 2_000], [1.0, 0.0])
>>> [s.values.tolist() for s in store.select([Matcher("__name__", "=", "up")], 0, 2_000)]
[[1.0, 0.0]]
>>> Matcher("job", "=~", "api|web").matches({"job": "api"})
True
>>> Matcher("job", "=~", "ap").matches({"job": "api"})
False
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from perfml.promql.errors import BadMatcherError, OutOfOrderSampleError

METRIC_NAME = "__name__"
MatchOp = Literal["=", "!=", "=~", "!~"]
MATCH_OPS: tuple[MatchOp, ...] = ("=", "!=", "=~", "!~")

STALE_NAN_BITS = 0x7FF0000000000002
"""The bit pattern of Prometheus's staleness marker: a NaN that ends a series."""
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]
"""The staleness marker as a float; store it as a sample value to end a series."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def stale_mask(values: FloatArray) -> npt.NDArray[np.bool_]:
    """Which of ``values`` are staleness markers (not ordinary NaNs)."""
    return np.asarray(values.view(np.uint64) == np.uint64(STALE_NAN_BITS), dtype=bool)


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern[str]:
    # Prometheus anchors every matcher regex at both ends.
    return re.compile(f"(?:{pattern})")


@dataclass(frozen=True)
class Matcher:
    """A label matcher as in ``{job=~"api|web"}``; a missing label matches as ``""``."""

    name: str
    op: MatchOp
    value: str

    def __post_init__(self) -> None:
        if self.op not in MATCH_OPS:
            raise BadMatcherError(self.name, self.op, self.value, "unknown operator")
        if self.op in ("=~", "!~"):
            try:
                _compile(self.value)
            except re.error as error:
                raise BadMatcherError(self.name, self.op, self.value, str(error)) from None

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the label set ``labels`` satisfies this matcher."""
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = _compile(self.value).fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def matches_empty(self) -> bool:
        """Whether this matcher matches a series that lacks the label."""
        return self.matches({})

    def render(self) -> str:
        """The matcher in PromQL syntax, e.g. ``job="api"``."""
        return f"{self.name}{self.op}{quote(self.value)}"


def quote(text: str) -> str:
    """``text`` as a double-quoted PromQL string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def format_labels(labels: Mapping[str, str]) -> str:
    """A label set as Prometheus prints it: ``name{a="b"}``, or ``{a="b"}`` without a name."""
    name = labels.get(METRIC_NAME, "")
    inner = ", ".join(f"{k}={quote(v)}" for k, v in sorted(labels.items()) if k != METRIC_NAME)
    if name and not inner:
        return name
    return f"{name}{{{inner}}}"


@dataclass(frozen=True)
class Series:
    """One time series: its labels (with ``__name__``) and samples in ascending time."""

    labels: Mapping[str, str]
    ts: IntArray
    values: FloatArray

    def __post_init__(self) -> None:
        if len(self.ts) != len(self.values):
            raise ValueError(
                f"series {format_labels(self.labels)} has {len(self.ts)} timestamps "
                f"but {len(self.values)} values"
            )


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector: a label set and its value at the evaluation time."""

    labels: dict[str, str]
    value: float


class SeriesSource(Protocol):
    """Where the evaluator reads samples from.

    ``select`` yields every series whose labels satisfy all ``matchers``, with its samples
    in ``start_ms < ts <= end_ms`` (a series without samples there may be left out).
    """

    def select(
        self, matchers: Sequence[Matcher], start_ms: int, end_ms: int
    ) -> Iterable[Series]: ...


@dataclass
class _Column:
    """The samples of one stored series: sealed arrays plus a small append buffer."""

    labels: dict[str, str]
    ts: IntArray = field(default_factory=lambda: np.empty(0, np.int64))
    values: FloatArray = field(default_factory=lambda: np.empty(0, np.float64))
    pending_ts: list[int] = field(default_factory=list)
    pending_values: list[float] = field(default_factory=list)

    def latest(self) -> int | None:
        if self.pending_ts:
            return self.pending_ts[-1]
        return int(self.ts[-1]) if len(self.ts) else None

    def seal(self) -> None:
        if self.pending_ts:
            self.ts = np.concatenate([self.ts, np.asarray(self.pending_ts, np.int64)])
            self.values = np.concatenate([self.values, np.asarray(self.pending_values, np.float64)])
            self.pending_ts.clear()
            self.pending_values.clear()


class MemorySeries:
    """An in-memory :class:`SeriesSource`, indexed by metric name.

    Samples of a series must be appended in time order; one at a time with :meth:`add`
    (buffered, cheap) or many at once with :meth:`extend` and :meth:`add_series`.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, dict[tuple[tuple[str, str], ...], _Column]] = {}

    def _column(self, name: str, labels: Mapping[str, str]) -> _Column:
        full = {k: v for k, v in labels.items() if k != METRIC_NAME and v != ""}
        full[METRIC_NAME] = name
        key = tuple(sorted(full.items()))
        columns = self._by_name.setdefault(name, {})
        column = columns.get(key)
        if column is None:
            column = columns[key] = _Column(full)
        return column

    def add(self, name: str, labels: Mapping[str, str], ts_ms: int, value: float) -> None:
        """Append one sample to the series ``name{labels}``."""
        column = self._column(name, labels)
        latest = column.latest()
        if latest is not None and ts_ms <= latest:
            if ts_ms == latest:
                return self._replace_latest(column, value)
            raise OutOfOrderSampleError(format_labels(column.labels), ts_ms, latest)
        column.pending_ts.append(int(ts_ms))
        column.pending_values.append(float(value))
        return None

    @staticmethod
    def _replace_latest(column: _Column, value: float) -> None:
        # A repeated timestamp overwrites, as a scrape of the same instant would.
        if column.pending_values:
            column.pending_values[-1] = float(value)
        else:
            column.values = column.values.copy()
            column.values[-1] = value

    def extend(
        self,
        name: str,
        labels: Mapping[str, str],
        ts_ms: Sequence[int] | IntArray,
        values: Sequence[float] | FloatArray,
    ) -> None:
        """Append many samples (ascending ``ts_ms``) to the series ``name{labels}``."""
        ts = np.asarray(ts_ms, dtype=np.int64)
        vals = np.asarray(values, dtype=np.float64)
        column = self._column(name, labels)
        if len(ts) != len(vals):
            raise ValueError(
                f"series {format_labels(column.labels)}: {len(ts)} timestamps "
                f"but {len(vals)} values"
            )
        if len(ts) == 0:
            return
        steps = np.diff(ts)
        if len(steps) and steps.min() <= 0:
            bad = int(np.argmin(steps)) + 1
            raise OutOfOrderSampleError(
                format_labels(column.labels), int(ts[bad]), int(ts[bad - 1])
            )
        latest = column.latest()
        if latest is not None and ts[0] <= latest:
            raise OutOfOrderSampleError(format_labels(column.labels), int(ts[0]), latest)
        column.seal()
        column.ts = np.concatenate([column.ts, ts])
        column.values = np.concatenate([column.values, vals])

    def add_series(self, series: Series) -> None:
        """Append a whole :class:`Series` (its labels must carry ``__name__``)."""
        name = series.labels.get(METRIC_NAME, "")
        if not name:
            raise ValueError(f"series {format_labels(series.labels)} has no __name__ label")
        self.extend(name, series.labels, series.ts, series.values)

    def names(self) -> set[str]:
        """The metric names stored."""
        return set(self._by_name)

    def __len__(self) -> int:
        return sum(len(columns) for columns in self._by_name.values())

    def _candidates(self, matchers: Sequence[Matcher]) -> Iterator[_Column]:
        for matcher in matchers:
            if matcher.name == METRIC_NAME and matcher.op == "=":
                yield from self._by_name.get(matcher.value, {}).values()
                return
        name_matchers = [m for m in matchers if m.name == METRIC_NAME]
        for name, columns in self._by_name.items():
            if all(m.matches({METRIC_NAME: name}) for m in name_matchers):
                yield from columns.values()

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> Iterator[Series]:
        """The series matching all ``matchers``, with their samples in ``(start_ms, end_ms]``."""
        others = [m for m in matchers if m.name != METRIC_NAME]
        for column in self._candidates(matchers):
            if not all(m.matches(column.labels) for m in others):
                continue
            column.seal()
            lo = int(np.searchsorted(column.ts, start_ms, side="right"))
            hi = int(np.searchsorted(column.ts, end_ms, side="right"))
            if hi > lo:
                yield Series(dict(column.labels), column.ts[lo:hi], column.values[lo:hi])
