"""Pull series from the Prometheus HTTP API (``/api/v1/query_range``) into perfml's long format.

Prometheus answers a range query with at most 11,000 points per series, so a long range at a fine
step is pulled in windows of at most ``max_points_per_series`` points each. The windows lie on
one grid (``start``, ``start + step``, ...) and do not overlap, so no point is returned twice.
Each window becomes one Arrow table in :data:`~perfml.featurestore.schema.LONG_SCHEMA`:

- ``metric`` is the series' ``__name__``, or the ``metric`` the caller gives (required when the
  query drops the name, as ``rate(...)`` and aggregations do);
- ``entity`` is the value of ``entity_label`` (``instance`` by default), or, for a series
  without that label, its canonical label set ``{a="1",b="2"}`` (sorted, without ``__name__``);
- ``ts`` is the evaluation time and ``value`` the sample, which must be finite unless
  ``drop_nonfinite=True`` drops (and counts) NaN and ±Inf.

Transient failures (connection errors, timeouts, HTTP 429/502/503/504, Prometheus's ``timeout``
and ``unavailable`` errors) are retried with exponential backoff and jitter, honouring
``Retry-After``; a wrong credential (401/403) or a bad query (400/422) fails at once. ::

    with PrometheusClient("http://127.0.0.1:9090", basic_auth=("perfml", "secret")) as client:
        pull = client.query_range(
            "node_load1", "2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z", "15s"
        )
        for table in pull:  # one table per window, in LONG_SCHEMA
            store.write(table)
        pull.labels  # {("node_load1", "10.0.0.7:9100"): {"instance": ..., "job": "node"}}
"""

import email.utils
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

import httpx
import numpy as np
import pyarrow as pa

from perfml.featurestore.schema import LONG_SCHEMA, METRIC_NAME, TIMESTAMP_TYPE, SeriesKey
from perfml.sources.errors import MetricNameError
from perfml.sources.prometheus_errors import (
    MissingMetricNameError,
    NonFiniteValueError,
    PrometheusArgumentError,
    PrometheusAuthError,
    PrometheusQueryError,
    PrometheusResponseError,
    PrometheusUnavailableError,
    SeriesCollisionError,
)
from perfml.timeparse import parse_duration

logger = logging.getLogger(__name__)

PROMETHEUS_MAX_POINTS = 11_000
"""Prometheus refuses a range query that would return more points than this per series."""

TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
TRANSIENT_ERROR_TYPES = frozenset({"timeout", "unavailable"})
AUTH_STATUSES = frozenset({401, 403})
QUERY_STATUSES = frozenset({400, 422})

_MS = timedelta(milliseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_time(value: datetime | str) -> datetime:
    """Read an instant, a timezone-aware ``datetime`` or an RFC 3339 string, as UTC.

    A naive ``datetime`` or a string without an offset is refused rather than guessed.

    >>> parse_time("2024-05-01T02:00:00+02:00")
    datetime.datetime(2024, 5, 1, 0, 0, tzinfo=datetime.timezone.utc)
    """
    if isinstance(value, str):
        try:
            instant = datetime.fromisoformat(value.upper())
        except ValueError:
            raise PrometheusArgumentError(
                "time", value, "expected RFC 3339, e.g. 2024-05-01T00:00:00Z"
            ) from None
    else:
        instant = value
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise PrometheusArgumentError(
            "time", value, "it has no UTC offset; give one (Z, +02:00) or an aware datetime"
        )
    return instant.astimezone(UTC)


def plan_windows(
    start_ms: int, end_ms: int, step_ms: int, max_points: int
) -> list[tuple[int, int]]:
    """Split ``[start_ms, end_ms]`` into windows of at most ``max_points`` evaluation times.

    The windows lie on the grid ``start_ms + k * step_ms`` and a window starts one step after
    the previous one ended, so together they ask for each grid point exactly once.

    >>> plan_windows(0, 25_000, 1_000, 10)
    [(0, 9000), (10000, 19000), (20000, 25000)]
    """
    windows = []
    window_start = start_ms
    while window_start <= end_ms:
        windows.append((window_start, min(window_start + (max_points - 1) * step_ms, end_ms)))
        window_start += max_points * step_ms
    return windows


def canonical_labels(labels: Mapping[str, str]) -> str:
    """Render a label set as Prometheus does, sorted by name and without ``__name__``.

    >>> canonical_labels({"b": "2", "__name__": "up", "a": 'say "hi"'})
    '{a="say \\\\"hi\\\\"",b="2"}'
    """
    pairs = (
        f'{name}="{_escape(value)}"' for name, value in sorted(labels.items()) if name != "__name__"
    )
    return "{" + ",".join(pairs) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _series_name(labels: Mapping[str, str]) -> str:
    return labels.get("__name__", "") + canonical_labels(labels)


def _to_ms(instant: datetime) -> int:
    return (instant - _EPOCH) // _MS


def _from_ms(ms: int) -> datetime:
    return _EPOCH + ms * _MS


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.3f}"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a transient failure.

    ``attempts`` counts every request, the first included. Before retry ``n`` (1, 2, ...) the
    client waits between half and all of ``min(max_delay, base_delay * 2 ** (n - 1))`` (the
    random part keeps many clients from retrying in step), or what ``Retry-After`` asks for,
    cut to ``max_delay`` so that a pull stays bounded in time.

    >>> policy = RetryPolicy(base_delay=1.0, max_delay=3.0)
    >>> [round(policy.delay(n, None, random.Random(0)), 2) for n in (1, 2, 3, 4)]
    [0.92, 1.84, 2.77, 2.77]
    >>> policy.delay(1, retry_after=60.0, rng=random.Random(0))
    3.0
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise PrometheusArgumentError("attempts", self.attempts, "must be at least 1")
        if self.base_delay < 0:
            raise PrometheusArgumentError("base_delay", self.base_delay, "must not be negative")
        if self.max_delay < 0:
            raise PrometheusArgumentError("max_delay", self.max_delay, "must not be negative")

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the second attempt)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


@dataclass(frozen=True)
class _Transient:
    """A failure worth retrying, described for the final error message."""

    description: str
    retry_after: float | None = None


class PrometheusClient:
    """A client for the range queries of one Prometheus server (``/api/v1/query_range``).

    ``base_url`` is where Prometheus serves its API, including any path prefix
    (``https://monitoring.example/prometheus``). Give at most one of ``bearer_token`` and
    ``basic_auth``. ``timeout`` bounds each request in seconds. ``sleep`` and ``rng`` are there
    so tests can watch the waiting between retries.

    Use it as a context manager, or call :meth:`close`, to release its connections.
    """

    def __init__(
        self,
        base_url: str,
        *,
        bearer_token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise PrometheusArgumentError(
                "base_url", base_url, "must start with http:// or https://"
            )
        if bearer_token is not None and basic_auth is not None:
            raise PrometheusArgumentError(
                "credentials", "bearer_token and basic_auth", "give one of them, not both"
            )
        if timeout <= 0:
            raise PrometheusArgumentError("timeout", timeout, "must be positive")
        self.url = base_url.rstrip("/") + "/api/v1/query_range"
        self.retry = retry if retry is not None else RetryPolicy()
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        headers = {"Accept": "application/json"}
        if bearer_token is not None:
            headers["Authorization"] = f"Bearer {bearer_token}"
        self._http = httpx.Client(
            headers=headers,
            auth=httpx.BasicAuth(*basic_auth) if basic_auth is not None else None,
            timeout=timeout,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the client's connections."""
        self._http.close()

    def query_range(
        self,
        query: str,
        start: datetime | str,
        end: datetime | str,
        step: timedelta | str,
        *,
        metric: str | None = None,
        entity_label: str = "instance",
        drop_nonfinite: bool = False,
        max_points_per_series: int = 10_000,
    ) -> "RangePull":
        """Plan the pull of ``query`` over ``[start, end]`` every ``step``; iterate to run it.

        ``start`` and ``end`` are aware datetimes or RFC 3339 strings; ``step`` a ``timedelta``
        or a Prometheus duration (``15s``). ``metric`` names every series instead of its
        ``__name__``; ``entity_label`` is the label whose value becomes the entity. A request
        asks for at most ``max_points_per_series`` points per series. Nothing is requested
        until the returned :class:`RangePull` is iterated.
        """
        start_at, end_at = parse_time(start), parse_time(end)
        step_delta = parse_duration(step, "step", allow_zero=True)
        if end_at < start_at:
            raise PrometheusArgumentError(
                "range", f"{start_at.isoformat()} .. {end_at.isoformat()}", "end is before start"
            )
        if step_delta < _MS or step_delta % _MS:
            raise PrometheusArgumentError(
                "step", step, "must be a positive whole number of milliseconds"
            )
        if not 1 <= max_points_per_series <= PROMETHEUS_MAX_POINTS:
            raise PrometheusArgumentError(
                "max_points_per_series",
                max_points_per_series,
                f"must be between 1 and {PROMETHEUS_MAX_POINTS} (Prometheus's limit)",
            )
        if metric is not None and not METRIC_NAME.fullmatch(metric):
            raise MetricNameError(metric, f"given as metric= for the query {query!r}")
        windows = plan_windows(
            _to_ms(start_at), _to_ms(end_at), step_delta // _MS, max_points_per_series
        )
        return RangePull(
            self, query, step_delta // _MS, windows, metric, entity_label, drop_nonfinite
        )

    def fetch_matrix(self, query: str, start_ms: int, end_ms: int, step_ms: int) -> list[Any]:
        """One range query (with retries): the ``result`` list of Prometheus's matrix answer."""
        params = {
            "query": query,
            "start": _seconds(start_ms),
            "end": _seconds(end_ms),
            "step": _seconds(step_ms),
        }
        failure = _Transient("no attempt made")
        for attempt in range(1, self.retry.attempts + 1):
            if attempt > 1:
                self._sleep(self.retry.delay(attempt - 1, failure.retry_after, self._rng))
            try:
                response = self._http.get(self.url, params=params)
            except httpx.TransportError as error:
                failure = _Transient(f"{type(error).__name__}: {error}")
                continue
            outcome = self._read(query, response)
            if not isinstance(outcome, _Transient):
                return outcome
            failure = outcome
        raise PrometheusUnavailableError(self.url, self.retry.attempts, failure.description)

    def _read(self, query: str, response: httpx.Response) -> list[Any] | _Transient:
        """Sort one answer into data, a transient failure, or a final error (raised)."""
        status = response.status_code
        if status in AUTH_STATUSES:
            raise PrometheusAuthError(self.url, status)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
        error_type = body.get("errorType")
        error = body.get("error") or response.text[:200].strip() or "(empty body)"
        if status in TRANSIENT_STATUSES or error_type in TRANSIENT_ERROR_TYPES:
            kind = f" {error_type}" if error_type else ""
            return _Transient(
                f"HTTP {status}{kind}: {error}", _retry_after(response.headers.get("Retry-After"))
            )
        if status in QUERY_STATUSES:
            raise PrometheusQueryError(self.url, query, status, error_type, error)
        if status != 200 or body.get("status") != "success":
            raise PrometheusResponseError(self.url, status, error)
        for warning in body.get("warnings") or ():
            logger.warning("Prometheus at %s warns about %r: %s", self.url, query, warning)
        data = body.get("data")
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            raise PrometheusResponseError(self.url, status, "expected data.resultType 'matrix'")
        result = data.get("result")
        if not isinstance(result, list):
            raise PrometheusResponseError(self.url, status, "expected data.result to be a list")
        return result


def _retry_after(header: str | None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delay-seconds or an HTTP date)."""
    if header is None:
        return None
    header = header.strip()
    if header.isdigit():
        return float(header)
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class RangePull:
    """The points of one range query, requested window by window as it is iterated.

    Iterating yields one :data:`LONG_SCHEMA` table per window (windows without points yield
    nothing). Alongside, and complete once the iteration ends:

    - :attr:`labels` maps each series ``(metric, entity)`` to its labels, without ``__name__``;
    - :attr:`dropped_nonfinite` counts, per series, the NaN and ±Inf points dropped when
      ``drop_nonfinite`` is set (:attr:`total_dropped` sums them).

    Iterating again pulls again and starts these anew. Made by
    :meth:`PrometheusClient.query_range`.
    """

    def __init__(
        self,
        client: PrometheusClient,
        query: str,
        step_ms: int,
        windows: list[tuple[int, int]],
        metric: str | None,
        entity_label: str,
        drop_nonfinite: bool,
    ) -> None:
        self.query = query
        self.labels: dict[SeriesKey, dict[str, str]] = {}
        self.dropped_nonfinite: dict[SeriesKey, int] = {}
        self._client = client
        self._step_ms = step_ms
        self._windows_ms = windows
        self._metric = metric
        self._entity_label = entity_label
        self._drop_nonfinite = drop_nonfinite
        self._names: dict[SeriesKey, str] = {}

    @property
    def step(self) -> timedelta:
        """The time between two points of a series."""
        return self._step_ms * _MS

    @property
    def windows(self) -> list[tuple[datetime, datetime]]:
        """The ``[start, end]`` of each request, one grid point after the previous one."""
        return [(_from_ms(start), _from_ms(end)) for start, end in self._windows_ms]

    @property
    def total_dropped(self) -> int:
        """How many non-finite points were dropped, over all series."""
        return sum(self.dropped_nonfinite.values())

    def __iter__(self) -> Iterator[pa.Table]:
        # Cleared in place: a caller may hold these dicts (the store reads labels at commit).
        self.labels.clear()
        self.dropped_nonfinite.clear()
        self._names.clear()
        for start_ms, end_ms in self._windows_ms:
            result = self._client.fetch_matrix(self.query, start_ms, end_ms, self._step_ms)
            table = self._to_table(result)
            if table.num_rows:
                yield table

    def read_all(self) -> pa.Table:
        """Pull every window and return the points as one table."""
        return pa.concat_tables([LONG_SCHEMA.empty_table(), *self])

    def _to_table(self, result: list[Any]) -> pa.Table:
        keys: list[SeriesKey] = []
        times: list[np.ndarray[Any, np.dtype[np.int64]]] = []
        values: list[np.ndarray[Any, np.dtype[np.float64]]] = []
        for series in result:
            labels, ts_ms, raw, numbers = self._parse_series(series)
            key = self._identify(labels)
            finite = np.isfinite(numbers)
            if not finite.all():
                if not self._drop_nonfinite:
                    first = int(np.argmin(finite))
                    raise NonFiniteValueError(
                        _series_name(labels), _from_ms(int(ts_ms[first])), raw[first]
                    )
                dropped = int(finite.size - np.count_nonzero(finite))
                self.dropped_nonfinite[key] = self.dropped_nonfinite.get(key, 0) + dropped
                ts_ms, numbers = ts_ms[finite], numbers[finite]
            keys.append(key)
            times.append(ts_ms)
            values.append(numbers)
        if not keys:
            return LONG_SCHEMA.empty_table()
        counts = [len(ts) for ts in times]
        return pa.table(
            {
                "metric": pa.array(np.repeat([key[0] for key in keys], counts), pa.string()),
                "entity": pa.array(np.repeat([key[1] for key in keys], counts), pa.string()),
                "ts": pa.array(np.concatenate(times), TIMESTAMP_TYPE),
                "value": pa.array(np.concatenate(values), pa.float64()),
            },
            schema=LONG_SCHEMA,
        )

    def _parse_series(
        self, series: Any
    ) -> tuple[
        dict[str, str],
        np.ndarray[Any, np.dtype[np.int64]],
        list[str],
        np.ndarray[Any, np.dtype[np.float64]],
    ]:
        """Read one series of the answer: labels, times (ms), raw values and their numbers."""
        try:
            labels = {str(name): str(value) for name, value in series["metric"].items()}
            if "histograms" in series:
                raise ValueError("native histograms are not supported; query a float series")
            pairs = series.get("values", [])
            seconds = np.asarray([pair[0] for pair in pairs], dtype=np.float64)
            raw = [str(pair[1]) for pair in pairs]
            numbers = np.asarray(raw, dtype=np.float64)
        except (AttributeError, KeyError, TypeError, ValueError, IndexError) as error:
            raise PrometheusResponseError(
                self._client.url, 200, f"malformed series in the answer to {self.query!r}: {error}"
            ) from None
        return labels, np.rint(seconds * 1000).astype(np.int64), raw, numbers

    def _identify(self, labels: dict[str, str]) -> SeriesKey:
        """Name a series ``(metric, entity)`` and record its labels, refusing collisions."""
        metric = self._metric
        if metric is None:
            name = labels.get("__name__")
            if name is None:
                raise MissingMetricNameError(self.query, canonical_labels(labels))
            if not METRIC_NAME.fullmatch(name):
                raise MetricNameError(
                    name, f"returned by the query {self.query!r}; pass metric=... to rename it"
                )
            metric = name
        entity = labels.get(self._entity_label)
        key = (metric, entity if entity is not None else canonical_labels(labels))
        name = _series_name(labels)
        seen = self._names.setdefault(key, name)
        if seen != name:
            raise SeriesCollisionError(self.query, key, seen, name)
        self.labels[key] = {k: v for k, v in labels.items() if k != "__name__"}
        return key
