"""Why a pull from the Prometheus HTTP API failed, with the values that tell you what to fix.

Every error derives from :class:`PrometheusError`, itself a
:class:`~perfml.sources.errors.SourceError`. Each constructor takes the offending values, keeps
them as attributes and builds a one-line message, so the CLI can print ``str(error)`` and a
caller can branch on the attributes::

    >>> error = PrometheusAuthError("http://127.0.0.1:9090/api/v1/query_range", 401)
    >>> error.status
    401
    >>> print(error)  # doctest: +NORMALIZE_WHITESPACE
    Prometheus at http://127.0.0.1:9090/api/v1/query_range refused the request with HTTP 401
    Unauthorized: check the credentials (bearer token or basic auth)
"""

from datetime import datetime
from http import HTTPStatus

from perfml.sources.errors import SourceError


def _status_text(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


class PrometheusError(SourceError):
    """A pull from the Prometheus HTTP API failed."""


class PrometheusArgumentError(PrometheusError, ValueError):
    """An argument given to the client cannot be used (a bad duration, time, range or option)."""

    exit_code = 2

    def __init__(self, name: str, value: object, reason: str) -> None:
        self.name = name
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {name} {value!r}: {reason}")


class PrometheusAuthError(PrometheusError):
    """Prometheus answered 401 or 403: the credentials are missing or wrong. Never retried."""

    permanent = True

    def __init__(self, url: str, status: int) -> None:
        self.url = url
        self.status = status
        super().__init__(
            f"Prometheus at {url} refused the request with {_status_text(status)}: "
            "check the credentials (bearer token or basic auth)"
        )


class PrometheusQueryError(PrometheusError):
    """Prometheus refused the query itself (HTTP 400 or 422): retrying cannot help."""

    def __init__(
        self, url: str, query: str, status: int, error_type: str | None, message: str
    ) -> None:
        self.url = url
        self.query = query
        self.status = status
        self.error_type = error_type
        self.message = message
        kind = f", {error_type}" if error_type else ""
        super().__init__(
            f"Prometheus at {url} rejected the query {query!r} ({_status_text(status)}{kind}): "
            f"{message}"
        )


class PrometheusResponseError(PrometheusError):
    """Prometheus answered something the client cannot use (a 404, a 500, a body that is not
    the JSON of a range query). Not retried: the URL or the server needs fixing."""

    def __init__(self, url: str, status: int, detail: str) -> None:
        self.url = url
        self.status = status
        self.detail = detail
        super().__init__(
            f"unusable answer from Prometheus at {url} ({_status_text(status)}): {detail}"
        )


class PrometheusUnavailableError(PrometheusError):
    """Every attempt failed with a transient failure (connection, timeout, 429, 502-504)."""

    def __init__(self, url: str, attempts: int, last_failure: str) -> None:
        self.url = url
        self.attempts = attempts
        self.last_failure = last_failure
        super().__init__(
            f"Prometheus at {url} could not be reached after {attempts} attempt"
            f"{'' if attempts == 1 else 's'}; last failure: {last_failure}"
        )


class NonFiniteValueError(PrometheusError):
    """A series holds NaN or ±Inf, which the feature store does not take.

    Pass ``drop_nonfinite=True`` to drop such points and count them instead.
    """

    def __init__(self, series: str, ts: datetime, value: str) -> None:
        self.series = series
        self.ts = ts
        self.value = value
        super().__init__(
            f"series {series} has the non-finite value {value} at {ts.isoformat()}; "
            "pass drop_nonfinite=True to drop and count such points"
        )


class MissingMetricNameError(PrometheusError):
    """The query returns series without ``__name__`` (``rate(...)``, ``sum by (...)``) and the
    caller gave no ``metric`` to name them."""

    def __init__(self, query: str, labels: str) -> None:
        self.query = query
        self.labels = labels
        super().__init__(
            f"the query {query!r} returns series without a metric name (e.g. {labels}); "
            "pass metric=... to name them"
        )


class SeriesCollisionError(PrometheusError):
    """Two series of one answer map to the same ``(metric, entity)``: their points would mix.

    Choose an ``entity_label`` whose value differs between them.
    """

    def __init__(self, query: str, key: tuple[str, str], first: str, second: str) -> None:
        self.query = query
        self.key = key
        self.first = first
        self.second = second
        super().__init__(
            f"the query {query!r} returns two series for metric {key[0]!r}, entity {key[1]!r}: "
            f"{first} and {second}; choose an entity_label whose value tells them apart"
        )
