"""The Prometheus client against a scripted stand-in for ``/api/v1/query_range``.

:class:`FakePrometheus` is a real HTTP server on 127.0.0.1 (no mocking library): by default it
answers range queries as Prometheus does (points at ``start + k * step`` up to ``end``, a 400
beyond 11,000 points per series); a test can queue :class:`Reply` objects to answer the next
requests with failures first. It records every request, so the tests count them.
"""

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.integration.services import free_port

from perfml.featurestore.schema import LONG_SCHEMA
from perfml.sources.errors import MetricNameError
from perfml.sources.prometheus import (
    PrometheusClient,
    RetryPolicy,
    parse_time,
    plan_windows,
)
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
from perfml.timeparse import BadDurationError, parse_duration

T0 = datetime(2024, 5, 1, tzinfo=UTC)
T0_MS = int(T0.timestamp()) * 1000
CPU_WEB1 = {"__name__": "cpu_util", "instance": "web-1:9100", "job": "node"}
CPU_WEB2 = {"__name__": "cpu_util", "instance": "web-2:9100", "job": "node"}
ValueAt = Callable[[int], str]


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``body=None`` with status 200 means: the real matrix."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Request:
    """What the client asked for."""

    path: str
    params: dict[str, str]
    headers: dict[str, str]

    def _ms(self, name: str) -> int:
        return round(float(self.params[name]) * 1000)

    @property
    def start_ms(self) -> int:
        return self._ms("start")

    @property
    def end_ms(self) -> int:
        return self._ms("end")

    @property
    def points(self) -> int:
        """How many points per series this request asks for."""
        return (self.end_ms - self.start_ms) // self._ms("step") + 1


def error_body(error_type: str, error: str) -> dict[str, str]:
    return {"status": "error", "errorType": error_type, "error": error}


class FakePrometheus:
    """A stand-in for Prometheus's range-query endpoint on a free loopback port."""

    def __init__(self) -> None:
        self.series: list[tuple[dict[str, str], ValueAt]] = [
            (CPU_WEB1, lambda ms: str((ms - T0_MS) / 1000)),
            (CPU_WEB2, lambda ms: str((ms - T0_MS) / 500 + 0.25)),
        ]
        self.script: list[Reply] = []
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self.query_range_url = f"{self.url}/api/v1/query_range"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> "FakePrometheus":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        request = Request(
            parts.path,
            dict(parse_qsl(parts.query)),
            {name.lower(): value for name, value in handler.headers.items()},
        )
        with self._lock:
            self.requests.append(request)
            reply = self.script.pop(0) if self.script else Reply()
        if parts.path != "/api/v1/query_range":
            reply = Reply(404, "404 page not found")
        elif reply.status == 200 and reply.body is None:
            reply = Reply(delay=reply.delay, **self._matrix(request))
        time.sleep(reply.delay)
        body = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
        try:
            handler.send_response(reply.status)
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body.encode())))
            handler.end_headers()
            handler.wfile.write(body.encode())
        except ConnectionError:  # the client gave up waiting (a timeout test)
            pass

    def _matrix(self, request: Request) -> dict[str, Any]:
        """What Prometheus answers: the points at ``start + k * step`` up to ``end``."""
        if request.points > 11_000:
            message = (
                "exceeded maximum resolution of 11,000 points per timeseries. "
                "Try decreasing the query resolution (?step=XX)"
            )
            return {"status": 400, "body": error_body("bad_data", message)}
        step_ms = round(float(request.params["step"]) * 1000)
        times = range(request.start_ms, request.end_ms + 1, step_ms)
        result = [
            {"metric": labels, "values": [[ms / 1000, value_at(ms)] for ms in times]}
            for labels, value_at in self.series
        ]
        return {"body": {"status": "success", "data": {"resultType": "matrix", "result": result}}}


@pytest.fixture
def fake() -> Iterator[FakePrometheus]:
    with FakePrometheus() as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    """The waits the client asked for, recorded instead of slept."""
    return []


@pytest.fixture
def client(fake: FakePrometheus, sleeps: list[float]) -> Iterator[PrometheusClient]:
    retry = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.05)
    with PrometheusClient(fake.url, retry=retry, sleep=sleeps.append, timeout=2.0) as client:
        yield client


def sorted_rows(table: pa.Table) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = table.sort_by(
        [("metric", "ascending"), ("entity", "ascending"), ("ts", "ascending")]
    ).to_pylist()
    return rows


# --- chunking ---------------------------------------------------------------------------------


def test_chunked_pull_asks_for_at_most_max_points_and_equals_one_request(
    fake: FakePrometheus, client: PrometheusClient
) -> None:
    end = T0 + timedelta(seconds=25)  # 26 points per series

    chunks = list(client.query_range("cpu_util", T0, end, "1s", max_points_per_series=10))

    assert [request.points for request in fake.requests] == [10, 10, 6]
    for before, after in zip(fake.requests, fake.requests[1:], strict=False):
        assert after.start_ms == before.end_ms + 1000  # next grid point: no boundary twice
    assert all(chunk.schema == LONG_SCHEMA for chunk in chunks)
    chunked = pa.concat_tables(chunks)
    keys = pc.binary_join_element_wise(
        chunked["metric"], chunked["entity"], pc.cast(chunked["ts"], pa.string()), "|"
    )
    assert len(pc.unique(keys)) == chunked.num_rows == 2 * 26

    whole = client.query_range("cpu_util", T0, end, "1s").read_all()

    assert fake.requests[-1].points == 26
    assert sorted_rows(chunked) == sorted_rows(whole)


def test_default_limit_splits_25000_points_into_requests_of_at_most_10000(
    fake: FakePrometheus, client: PrometheusClient
) -> None:
    fake.series = fake.series[:1]

    table = client.query_range("cpu_util", T0, T0 + timedelta(seconds=24_999), "1s").read_all()

    assert [request.points for request in fake.requests] == [10_000, 10_000, 5_000]
    assert table.num_rows == 25_000
    assert table["ts"][-1].as_py() == T0 + timedelta(seconds=24_999)


def test_times_and_step_are_sent_as_unix_seconds(
    fake: FakePrometheus, client: PrometheusClient
) -> None:
    client.query_range("cpu_util", "2024-05-01T02:00:00+02:00", T0 + timedelta(minutes=1), "15s")
    client.query_range("cpu_util", T0, T0, timedelta(milliseconds=250)).read_all()

    # Nothing is requested until the pull is iterated.
    assert [request.params for request in fake.requests] == [
        {"query": "cpu_util", "start": "1714521600.000", "end": "1714521600.000", "step": "0.250"}
    ]


@pytest.mark.parametrize("max_points", [0, 11_001])
def test_max_points_outside_prometheus_limits_is_refused(
    client: PrometheusClient, max_points: int
) -> None:
    with pytest.raises(PrometheusArgumentError, match="between 1 and 11000"):
        client.query_range("up", T0, T0, "1s", max_points_per_series=max_points)


@pytest.mark.parametrize(
    ("start", "end", "step", "problem"),
    [
        (T0, T0 - timedelta(seconds=1), "1s", "end is before start"),
        (T0, T0, "0s", "positive whole number of milliseconds"),
        (T0, T0, timedelta(microseconds=1500), "positive whole number of milliseconds"),
    ],
)
def test_impossible_ranges_are_refused(
    client: PrometheusClient, start: datetime, end: datetime, step: Any, problem: str
) -> None:
    with pytest.raises(PrometheusArgumentError, match=problem):
        client.query_range("up", start, end, step)


@given(
    points=st.integers(min_value=1, max_value=200),
    step_ms=st.integers(min_value=1, max_value=60_000),
    extra_ms=st.integers(min_value=0, max_value=59_999),
    max_points=st.integers(min_value=1, max_value=50),
)
def test_windows_cover_the_grid_once_within_the_limit(
    points: int, step_ms: int, extra_ms: int, max_points: int
) -> None:
    start = 1_714_521_600_000
    end = start + (points - 1) * step_ms + extra_ms % step_ms  # end may fall between grid points

    windows = plan_windows(start, end, step_ms, max_points)

    asked = [t for lo, hi in windows for t in range(lo, hi + 1, step_ms)]
    assert asked == list(range(start, end + 1, step_ms))
    assert all((hi - lo) // step_ms + 1 <= max_points for lo, hi in windows)


# --- retries ----------------------------------------------------------------------------------


def test_503_twice_then_data_is_retried_with_growing_bounded_backoff(
    fake: FakePrometheus, client: PrometheusClient, sleeps: list[float]
) -> None:
    unavailable = Reply(503, error_body("unavailable", "TSDB not ready"))
    fake.script = [unavailable, unavailable]

    table = client.query_range("cpu_util", T0, T0 + timedelta(seconds=9), "1s").read_all()

    assert len(fake.requests) == 3
    assert table.num_rows == 2 * 10
    assert len(sleeps) == 2
    assert 0.005 <= sleeps[0] <= 0.01  # between half and all of base_delay
    assert 0.01 <= sleeps[1] <= 0.02  # then of twice base_delay


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_transient_statuses_are_retried(
    fake: FakePrometheus, client: PrometheusClient, status: int
) -> None:
    fake.script = [Reply(status, "<html>Bad Gateway</html>")]

    table = client.query_range("cpu_util", T0, T0, "1s").read_all()

    assert len(fake.requests) == 2
    assert table.num_rows == 2


@pytest.mark.parametrize("error_type", ["timeout", "unavailable"])
def test_prometheus_transient_error_types_are_retried_whatever_the_status(
    fake: FakePrometheus, client: PrometheusClient, error_type: str
) -> None:
    fake.script = [Reply(500, error_body(error_type, "query timed out in expression evaluation"))]

    client.query_range("cpu_util", T0, T0, "1s").read_all()

    assert len(fake.requests) == 2


def test_exhausted_attempts_name_url_attempts_and_last_failure(
    fake: FakePrometheus, client: PrometheusClient, sleeps: list[float]
) -> None:
    fake.script = [Reply(503, error_body("unavailable", "TSDB not ready"))] * 10

    with pytest.raises(PrometheusUnavailableError) as caught:
        client.query_range("cpu_util", T0, T0, "1s").read_all()

    assert len(fake.requests) == 5
    assert len(sleeps) == 4
    assert all(delay <= 0.05 for delay in sleeps)
    assert caught.value.attempts == 5
    message = str(caught.value)
    assert fake.query_range_url in message
    assert "5 attempts" in message
    assert "HTTP 503 unavailable: TSDB not ready" in message


def test_backoff_really_waits_and_stays_bounded(fake: FakePrometheus) -> None:
    fake.script = [Reply(503)] * 10
    retry = RetryPolicy(attempts=4, base_delay=0.02, max_delay=0.04)

    began = time.monotonic()
    with (
        PrometheusClient(fake.url, retry=retry) as client,
        pytest.raises(PrometheusUnavailableError),
    ):
        client.query_range("cpu_util", T0, T0, "1s").read_all()
    elapsed = time.monotonic() - began

    assert len(fake.requests) == 4
    assert elapsed >= 0.01 + 0.02 + 0.02  # at least half of each of the three backoffs


def test_retry_after_is_honoured_up_to_max_delay(fake: FakePrometheus) -> None:
    in_five_seconds = format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True)
    fake.script = [
        Reply(429, "slow down", {"Retry-After": "3"}),
        Reply(503, "maintenance", {"Retry-After": "120"}),
        Reply(503, "maintenance", {"Retry-After": in_five_seconds}),
    ]
    sleeps: list[float] = []
    retry = RetryPolicy(attempts=4, base_delay=0.01, max_delay=10.0)

    with PrometheusClient(fake.url, retry=retry, sleep=sleeps.append) as client:
        client.query_range("cpu_util", T0, T0, "1s").read_all()

    assert len(fake.requests) == 4
    assert sleeps[:2] == [3.0, 10.0]
    assert 3.0 < sleeps[2] <= 5.0


def test_connection_refused_is_retried_then_reported(sleeps: list[float]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    retry = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.01)

    with (
        PrometheusClient(url, retry=retry, sleep=sleeps.append) as client,
        pytest.raises(
            PrometheusUnavailableError, match=r"after 3 attempts; last failure: ConnectError"
        ) as caught,
    ):
        client.query_range("up", T0, T0, "1s").read_all()

    assert f"{url}/api/v1/query_range" in str(caught.value)
    assert len(sleeps) == 2


def test_read_timeout_is_retried(fake: FakePrometheus, sleeps: list[float]) -> None:
    fake.script = [Reply(delay=0.6)]
    retry = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01)

    with PrometheusClient(fake.url, retry=retry, sleep=sleeps.append, timeout=0.2) as client:
        table = client.query_range("cpu_util", T0, T0, "1s").read_all()

    assert len(fake.requests) == 2
    assert table.num_rows == 2


# --- final errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_is_immediate_and_says_to_check_credentials(
    fake: FakePrometheus, client: PrometheusClient, sleeps: list[float], status: int
) -> None:
    fake.script = [Reply(status, "Unauthorized")] * 5

    with pytest.raises(PrometheusAuthError) as caught:
        client.query_range("cpu_util", T0, T0, "1s").read_all()

    assert len(fake.requests) == 1
    assert sleeps == []
    assert caught.value.status == status
    message = str(caught.value)
    assert fake.query_range_url in message
    assert f"HTTP {status}" in message
    assert "check the credentials (bearer token or basic auth)" in message


@pytest.mark.parametrize(("status", "error_type"), [(400, "bad_data"), (422, "execution")])
def test_bad_query_reports_prometheus_message_and_the_query(
    fake: FakePrometheus, client: PrometheusClient, status: int, error_type: str
) -> None:
    fake.script = [Reply(status, error_body(error_type, '1:9: parse error: unexpected ")"'))]

    with pytest.raises(PrometheusQueryError) as caught:
        client.query_range("sum(cpu))", T0, T0, "1s").read_all()

    assert len(fake.requests) == 1
    assert caught.value.error_type == error_type
    message = str(caught.value)
    assert "'sum(cpu))'" in message
    assert '1:9: parse error: unexpected ")"' in message
    assert f"HTTP {status}" in message


@pytest.mark.parametrize(
    ("reply", "detail"),
    [
        (Reply(500, error_body("internal", "out of memory")), "out of memory"),
        (Reply(200, "<html>login page</html>"), "<html>login page</html>"),
        (Reply(200, {"status": "success", "data": {"resultType": "vector"}}), "matrix"),
        (
            Reply(200, {"status": "success", "data": {"resultType": "matrix", "result": [{}]}}),
            "malformed series",
        ),
    ],
)
def test_unusable_answers_are_not_retried(
    fake: FakePrometheus, client: PrometheusClient, reply: Reply, detail: str
) -> None:
    fake.script = [reply]

    with pytest.raises(PrometheusResponseError, match=detail):
        client.query_range("cpu_util", T0, T0, "1s").read_all()

    assert len(fake.requests) == 1


def test_wrong_path_prefix_is_a_404_naming_the_url(fake: FakePrometheus) -> None:
    with (
        PrometheusClient(f"{fake.url}/prometheus") as client,
        pytest.raises(
            PrometheusResponseError, match=r"prometheus/api/v1/query_range \(HTTP 404 Not Found\)"
        ),
    ):
        client.query_range("up", T0, T0, "1s").read_all()


# --- credentials ------------------------------------------------------------------------------


def test_bearer_token_is_sent(fake: FakePrometheus) -> None:
    with PrometheusClient(fake.url, bearer_token="s3cret") as client:
        client.query_range("cpu_util", T0, T0, "1s").read_all()

    assert fake.requests[0].headers["authorization"] == "Bearer s3cret"


def test_basic_auth_is_sent(fake: FakePrometheus) -> None:
    with PrometheusClient(fake.url, basic_auth=("perfml", "s3cret")) as client:
        client.query_range("cpu_util", T0, T0, "1s").read_all()

    assert fake.requests[0].headers["authorization"] == "Basic cGVyZm1sOnMzY3JldA=="


def test_bearer_token_and_basic_auth_together_are_refused() -> None:
    with pytest.raises(PrometheusArgumentError, match="not both"):
        PrometheusClient("http://127.0.0.1:9090", bearer_token="t", basic_auth=("u", "p"))


# --- values -----------------------------------------------------------------------------------


def nonfinite_at(bad: dict[int, str]) -> ValueAt:
    """Values 1.0 but for the given seconds after T0."""
    return lambda ms: bad.get((ms - T0_MS) // 1000, "1")


def test_nonfinite_value_is_refused_naming_series_time_and_value(
    fake: FakePrometheus, client: PrometheusClient
) -> None:
    fake.series = [({"__name__": "cpu_util", "instance": "web-1"}, nonfinite_at({3: "NaN"}))]

    with pytest.raises(NonFiniteValueError) as caught:
        client.query_range("cpu_util", T0, T0 + timedelta(seconds=9), "1s").read_all()

    assert str(caught.value).startswith(
        'series cpu_util{instance="web-1"} has the non-finite value NaN '
        "at 2024-05-01T00:00:03+00:00"
    )


def test_nonfinite_values_are_dropped_and_counted_across_windows(
    fake: FakePrometheus, client: PrometheusClient
) -> None:
    bad = {1: "NaN", 5: "+Inf", 8: "-Inf"}
    fake.series = [
        ({"__name__": "cpu_util", "instance": "web-1"}, nonfinite_at(bad)),
        ({"__name__": "cpu_util", "instance": "web-2"}, nonfinite_at({})),
    ]

    pull = client.query_range(
        "cpu_util",
        T0,
        T0 + timedelta(seconds=9),
        "1s",
        drop_nonfinite=True,
        max_points_per_series=4,
    )
    table = pull.read_all()

    assert len(fake.requests) == 3
    assert pull.dropped_nonfinite == {("cpu_util", "web-1"): 3}
    assert pull.total_dropped == 3
    assert table.num_rows == 10 + 7
    assert pc.all(pc.is_finite(table["value"])).as_py()

    pull.read_all()  # pulling again counts anew

    assert pull.total_dropped == 3


def test_no_series_yields_no_tables(fake: FakePrometheus, client: PrometheusClient) -> None:
    fake.series = []
    pull = client.query_range("absent_metric", T0, T0 + timedelta(seconds=9), "1s")

    assert list(pull) == []
    assert pull.read_all().equals(LONG_SCHEMA.empty_table())


# --- naming series ----------------------------------------------------------------------------


def test_entity_is_the_instance_and_labels_are_kept_without_the_name(
    client: PrometheusClient,
) -> None:
    pull = client.query_range("cpu_util", T0, T0 + timedelta(seconds=1), "1s")
    table = pull.read_all()

    assert sorted_rows(table)[:2] == [
        {"metric": "cpu_util", "entity": "web-1:9100", "ts": T0, "value": 0.0},
        {
            "metric": "cpu_util",
            "entity": "web-1:9100",
            "ts": T0 + timedelta(seconds=1),
            "value": 1.0,
        },
    ]
    assert pull.labels == {
        ("cpu_util", "web-1:9100"): {"instance": "web-1:9100", "job": "node"},
        ("cpu_util", "web-2:9100"): {"instance": "web-2:9100", "job": "node"},
    }


def test_entity_from_a_chosen_label(fake: FakePrometheus, client: PrometheusClient) -> None:
    fake.series = [({**CPU_WEB1, "host": "web-1"}, lambda ms: "1")]

    table = client.query_range("cpu_util", T0, T0, "1s", entity_label="host").read_all()

    assert table["entity"].to_pylist() == ["web-1"]


def test_entity_without_the_label_is_the_canonical_label_set(
    fake: FakePrometheus, client: PrometheusClient
) -> None:
    labels = {"__name__": "queue_depth", "zone": "eu-1", "job": "broker", "note": 'a "b"\\c'}
    fake.series = [(labels, lambda ms: "4")]

    pull = client.query_range("queue_depth", T0, T0, "1s")
    table = pull.read_all()

    entity = '{job="broker",note="a \\"b\\"\\\\c",zone="eu-1"}'
    assert table["entity"].to_pylist() == [entity]
    assert pull.labels == {
        ("queue_depth", entity): {"zone": "eu-1", "job": "broker", "note": 'a "b"\\c'}
    }


def test_series_without_a_name_need_a_metric(
    fake: FakePrometheus, client: PrometheusClient
) -> None:
    fake.series = [({"instance": "web-1:9100", "job": "node"}, lambda ms: "0.5")]
    query = "rate(http_requests_total[5m])"

    with pytest.raises(MissingMetricNameError, match=r"rate\(http_requests_total\[5m\]\)"):
        client.query_range(query, T0, T0, "1s").read_all()
    table = client.query_range(query, T0, T0, "1s", metric="http_request_rate").read_all()

    assert table.to_pylist() == [
        {"metric": "http_request_rate", "entity": "web-1:9100", "ts": T0, "value": 0.5}
    ]


def test_recording_rule_names_must_be_renamed(
    fake: FakePrometheus, client: PrometheusClient
) -> None:
    fake.series = [({"__name__": "instance:cpu:avg", "instance": "web-1"}, lambda ms: "1")]

    with pytest.raises(MetricNameError, match=r"'instance:cpu:avg'.*metric="):
        client.query_range("instance:cpu:avg", T0, T0, "1s").read_all()
    table = client.query_range("instance:cpu:avg", T0, T0, "1s", metric="cpu_avg").read_all()

    assert table["metric"].to_pylist() == ["cpu_avg"]


def test_an_invalid_metric_override_is_refused_before_any_request(
    fake: FakePrometheus, client: PrometheusClient
) -> None:
    with pytest.raises(MetricNameError, match="'cpu-util'"):
        client.query_range("cpu_util", T0, T0, "1s", metric="cpu-util")

    assert fake.requests == []


def test_two_series_for_one_entity_are_refused(
    fake: FakePrometheus, client: PrometheusClient
) -> None:
    fake.series = [
        ({"__name__": "up", "instance": "web-1", "job": "node"}, lambda ms: "1"),
        ({"__name__": "up", "instance": "web-1", "job": "app"}, lambda ms: "1"),
    ]

    with pytest.raises(SeriesCollisionError, match=r"entity 'web-1'.*entity_label"):
        client.query_range("up", T0, T0, "1s").read_all()


# --- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15s", timedelta(seconds=15)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(minutes=90)),
        ("250ms", timedelta(milliseconds=250)),
        ("1m30s500ms", timedelta(seconds=90.5)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("1y", timedelta(days=365)),
        ("0", timedelta(0)),
    ],
)
def test_parse_duration_reads_prometheus_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text, allow_zero=True) == expected


@pytest.mark.parametrize("text", ["", "15", "1.5s", "s", "30m1h", "1h1h", "5 m", "-5s", "15S"])
def test_parse_duration_refuses_other_text_naming_it(text: str) -> None:
    with pytest.raises(BadDurationError, match=f"invalid duration {text!r}: expected"):
        parse_duration(text)


@pytest.mark.parametrize(
    "value",
    [
        "2024-05-01T00:00:00Z",
        "2024-05-01t00:00:00z",
        "2024-05-01T02:00:00+02:00",
        "2024-05-01T00:00:00.000Z",
        datetime(2024, 4, 30, 19, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_parse_time_reads_rfc3339_and_aware_datetimes_as_utc(value: str | datetime) -> None:
    parsed = parse_time(value)

    assert parsed == T0
    assert parsed.tzinfo == UTC


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("2024-05-01T00:00:00", "no UTC offset"),
        (datetime(2024, 5, 1), "no UTC offset"),
        ("yesterday", "expected RFC 3339"),
    ],
)
def test_parse_time_refuses_ambiguous_or_unreadable_times(
    value: str | datetime, problem: str
) -> None:
    with pytest.raises(PrometheusArgumentError, match=problem):
        parse_time(value)


def test_retry_policy_needs_at_least_one_attempt() -> None:
    with pytest.raises(PrometheusArgumentError, match="invalid attempts 0"):
        RetryPolicy(attempts=0)
