"""Scheduled pulls from a real Prometheus: each round stores the points after the last one
stored and hands exactly those to the live loop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from prometheus_client import CollectorRegistry, Gauge
from tests.integration.services import StartMetricsEndpoint, StartPrometheus
from tests.integration.services.common import wait_until

from perfml.config import PrometheusSettings, PullSettings
from perfml.featurestore import FeatureStore
from perfml.sources.pulls import ScheduledPulls

pytestmark = pytest.mark.integration


def test_each_pull_resumes_after_the_last_point_stored(
    tmp_path: Path,
    start_metrics_endpoint: StartMetricsEndpoint,
    start_prometheus: StartPrometheus,
) -> None:
    metrics = CollectorRegistry()
    load = Gauge("node_load1", "Load.", registry=metrics)
    load.set(1.5)
    web1, web2 = start_metrics_endpoint(metrics), start_metrics_endpoint(metrics)
    prometheus = start_prometheus(targets={web1.address: {}, web2.address: {}})
    wait_until(lambda: len(prometheus.query("node_load1")) == 2, 30, "two targets scraped")
    store = FeatureStore(tmp_path / "store")
    handed: list[pa.Table] = []
    pulls = ScheduledPulls(
        store,
        PrometheusSettings(url=prometheus.url, step="1s"),
        [PullSettings(metric="load", query="node_load1")],
        interval=3600,
        on_stored=handed.append,
        first_lookback=timedelta(seconds=20),
    )
    first = pulls.pull_all()
    assert first > 0
    wait_until(lambda: datetime.now(UTC) > pulls.resume_from("load") + timedelta(seconds=3), 30,
               "three seconds more")  # fmt: skip
    second = pulls.pull_all()
    assert second > 0
    stored = store.read("load")
    assert stored.num_rows == first + second  # the second pull did not ask again for the first's
    assert sum(t.num_rows for t in handed) == stored.num_rows
    entities = set(stored.column("entity").cast(pa.string()).to_pylist())
    assert entities == {web1.address, web2.address}
    assert set(stored.column("value").to_pylist()) == {1.5}
    first_ts = handed[0].column("ts").cast(pa.int64()).to_numpy()
    second_ts = handed[1].column("ts").cast(pa.int64()).to_numpy()
    assert second_ts.min() > first_ts.max()


def test_a_pull_that_fails_is_counted_and_the_next_asks_from_the_same_point(
    tmp_path: Path,
) -> None:
    store = FeatureStore(tmp_path / "store")
    from tests.integration.services.common import free_port

    pulls = ScheduledPulls(
        store,
        PrometheusSettings(url=f"http://127.0.0.1:{free_port()}", attempts=1, timeout="2s"),
        [PullSettings(metric="load", query="node_load1")],
        interval=3600,
    )
    before = pulls.resume_from("load")
    assert pulls.pull_all() == 0
    assert pulls.queries[0].failures == 1
    assert "127.0.0.1" in (pulls.queries[0].last_error or "")
    assert pulls.resume_from("load") >= before  # nothing skipped: still the lookback
