"""The Prometheus client against a real Prometheus scraping a fake fleet every second.

Each fake host is an in-process ``/metrics`` endpoint (prometheus_client) with a gauge the test
sets: first to ``FIRST[host]``, then, once Prometheus has scraped that everywhere, to
``SECOND[host]``. Over the range between the two moments every host's series must read
``FIRST`` then ``SECOND`` and nothing else, under the host's own ``instance`` label.
"""

import math
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow.compute as pc
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge
from tests.integration.services import (
    MetricsEndpoint,
    PrometheusServer,
    StartPrometheus,
    wait_until,
)

from perfml.sources.prometheus import PrometheusClient, RetryPolicy
from perfml.sources.prometheus_errors import (
    MissingMetricNameError,
    NonFiniteValueError,
    PrometheusAuthError,
)

pytestmark = pytest.mark.integration

HOSTS = ("web-1", "web-2", "db-1")
FIRST = {"web-1": 0.25, "web-2": 0.5, "db-1": 0.75}
SECOND = {"web-1": 10.25, "web-2": 10.5, "db-1": 10.75}
STEP = "250ms"
SCRAPE_WAIT = 15.0


@dataclass(frozen=True)
class Fleet:
    """A scraped fleet: ``instances`` maps host → ``instance`` label; ``start`` and ``end``
    bound the range in which the load gauge went from ``FIRST`` to ``SECOND`` on every host."""

    prometheus: PrometheusServer
    instances: dict[str, str]
    start: datetime
    end: datetime


def loads_are(prometheus: PrometheusServer, expected: dict[str, float]) -> bool:
    samples = prometheus.query("perfml_test_load")
    seen = {sample["metric"]["host"]: float(sample["value"][1]) for sample in samples}
    return seen == expected


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    loads: dict[str, Gauge] = {}
    instances: dict[str, str] = {}
    with ExitStack() as stack:
        for host in HOSTS:
            registry = CollectorRegistry()
            loads[host] = Gauge("perfml_test_load", "Load of a fake host.", registry=registry)
            loads[host].set(FIRST[host])
            ratio = Gauge("perfml_test_ratio", "NaN on db-1.", registry=registry)
            ratio.set(math.nan if host == "db-1" else 1.0)
            Counter("perfml_test_requests", "Requests served.", registry=registry).inc(5)
            instances[host] = stack.enter_context(MetricsEndpoint(registry)).address
        targets = {instances[host]: {"host": host} for host in HOSTS}
        workdir = tmp_path_factory.mktemp("prometheus")
        prom = stack.enter_context(PrometheusServer(workdir, targets, job="fleet"))

        wait_until(lambda: loads_are(prom, FIRST), SCRAPE_WAIT, "the first loads scraped")
        start = datetime.now(UTC)
        for host in HOSTS:
            loads[host].set(SECOND[host])
        wait_until(lambda: loads_are(prom, SECOND), SCRAPE_WAIT, "the second loads scraped")
        # Enough range for several windows of a few points even when the scrapes were quick.
        wait_until(lambda: datetime.now(UTC) >= start + timedelta(seconds=2), 3, "2 s to pass")
        wait_until(
            lambda: len(prom.query("rate(perfml_test_requests_total[10s])")) == len(HOSTS),
            SCRAPE_WAIT,
            "two scrapes of every counter",
        )
        yield Fleet(prom, instances, start, datetime.now(UTC))


@pytest.fixture
def client(fleet: Fleet) -> Iterator[PrometheusClient]:
    with PrometheusClient(fleet.prometheus.url, timeout=10.0) as client:
        yield client


def test_values_and_labels_are_what_the_hosts_exposed(
    fleet: Fleet, client: PrometheusClient
) -> None:
    pull = client.query_range("perfml_test_load", fleet.start, fleet.end, STEP)
    table = pull.read_all()

    host_of = {instance: host for host, instance in fleet.instances.items()}
    assert set(table["entity"].to_pylist()) == set(host_of)
    assert set(table["metric"].to_pylist()) == {"perfml_test_load"}
    for instance, host in host_of.items():
        rows = table.filter(pc.equal(table["entity"], instance)).to_pylist()
        values = [row["value"] for row in rows]
        switch = values.index(SECOND[host])
        assert values == [FIRST[host]] * switch + [SECOND[host]] * (len(values) - switch)
        assert switch >= 1
        times = [row["ts"] for row in rows]
        assert times == sorted(set(times))
        assert pull.labels[("perfml_test_load", instance)] == {
            "instance": instance,
            "job": "fleet",
            "host": host,
        }


def test_entity_from_a_target_label(fleet: Fleet, client: PrometheusClient) -> None:
    pull = client.query_range("perfml_test_load", fleet.start, fleet.end, STEP, entity_label="host")
    table = pull.read_all()

    assert set(table["entity"].to_pylist()) == set(HOSTS)
    last = table.filter(pc.equal(table["ts"], pc.max(table["ts"])))
    assert dict(zip(last["entity"].to_pylist(), last["value"].to_pylist(), strict=True)) == SECOND


def test_chunked_pull_equals_one_request(fleet: Fleet, client: PrometheusClient) -> None:
    chunked = client.query_range(
        "perfml_test_load", fleet.start, fleet.end, STEP, max_points_per_series=3
    )
    chunked_rows = chunked.read_all().sort_by([("entity", "ascending"), ("ts", "ascending")])
    whole = client.query_range("perfml_test_load", fleet.start, fleet.end, STEP).read_all()

    assert len(chunked.windows) >= 3
    assert all(end - start <= 2 * chunked.step for start, end in chunked.windows)
    assert chunked_rows.to_pylist() == (
        whole.sort_by([("entity", "ascending"), ("ts", "ascending")]).to_pylist()
    )


def test_nan_is_refused_or_dropped_and_counted(fleet: Fleet, client: PrometheusClient) -> None:
    db = fleet.instances["db-1"]

    with pytest.raises(NonFiniteValueError, match=r'perfml_test_ratio\{host="db-1".*NaN at'):
        client.query_range("perfml_test_ratio", fleet.start, fleet.end, STEP).read_all()
    pull = client.query_range(
        "perfml_test_ratio", fleet.start, fleet.end, STEP, drop_nonfinite=True
    )
    table = pull.read_all()

    assert set(table["entity"].to_pylist()) == {fleet.instances["web-1"], fleet.instances["web-2"]}
    assert set(table["value"].to_pylist()) == {1.0}
    assert pull.dropped_nonfinite[("perfml_test_ratio", db)] == table.num_rows // 2
    assert ("perfml_test_ratio", db) in pull.labels


def test_rate_needs_a_metric_name(fleet: Fleet, client: PrometheusClient) -> None:
    query = "rate(perfml_test_requests_total[10s])"
    end = fleet.end

    with pytest.raises(MissingMetricNameError, match=r"rate\(perfml_test_requests_total"):
        client.query_range(query, end - timedelta(seconds=1), end, "1s").read_all()
    table = client.query_range(
        query, end - timedelta(seconds=1), end, "1s", metric="perfml_test_request_rate"
    ).read_all()

    assert set(table["entity"].to_pylist()) == set(fleet.instances.values())
    assert set(table["metric"].to_pylist()) == {"perfml_test_request_rate"}


def test_basic_auth_refuses_wrong_credentials_at_once_and_accepts_right_ones(
    start_prometheus: StartPrometheus,
) -> None:
    prom = start_prometheus(basic_auth=("perfml", "right-password"))
    now = datetime.now(UTC)
    retry = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.01)

    for credentials in [("perfml", "wrong-password"), None]:
        sleeps: list[float] = []
        with (
            PrometheusClient(
                prom.url, basic_auth=credentials, retry=retry, sleep=sleeps.append
            ) as client,
            pytest.raises(PrometheusAuthError, match="HTTP 401 Unauthorized") as caught,
        ):
            client.query_range("vector(1)", now, now, "1s", metric="one").read_all()
        assert sleeps == []  # one attempt: no wait before a retry
        assert f"{prom.url}/api/v1/query_range" in str(caught.value)
        assert "check the credentials" in str(caught.value)

    with PrometheusClient(prom.url, basic_auth=("perfml", "right-password")) as client:
        table = client.query_range("vector(1)", now, now, "1s", metric="one").read_all()

    now_ms = now.replace(microsecond=now.microsecond // 1000 * 1000)
    assert table.to_pylist() == [{"metric": "one", "entity": "{}", "ts": now_ms, "value": 1.0}]
