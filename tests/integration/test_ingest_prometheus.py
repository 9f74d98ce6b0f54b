"""`perfml ingest prometheus` end to end: a real Prometheus scraping a target of the test."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge
from tests.integration.services import StartMetricsEndpoint, StartPrometheus, wait_until

from perfml.cli.app import main
from perfml.featurestore import FeatureStore

pytestmark = pytest.mark.integration


def test_ingest_pulls_values_and_labels_idempotently_and_stops_on_bad_credentials(
    start_metrics_endpoint: StartMetricsEndpoint,
    start_prometheus: StartPrometheus,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = CollectorRegistry()
    Gauge("node_load1", "1-minute load.", registry=registry).set(1.5)
    target = start_metrics_endpoint(registry)
    prom = start_prometheus(targets={target.address: {"rack": "r7"}}, basic_auth=("ops", "pw"))
    monkeypatch.setenv("PERFML_PROMETHEUS_PASSWORD", "pw")

    def scraped() -> bool:
        try:
            return len(prom.query("node_load1")) == 1
        except Exception:
            return False

    start = datetime.now(UTC) - timedelta(seconds=1)
    wait_until(scraped, 20, "the target scraped")
    time.sleep(1.5)
    end = datetime.now(UTC)
    ws = str(tmp_path / "ws")
    args = [
        "-w", ws, "ingest", "prometheus", "--url", prom.url, "--query", "node_load1",
        "--start", start.isoformat(), "--end", end.isoformat(), "--step", "100ms",
        "--user", "ops",
    ]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    store = FeatureStore(Path(ws) / "store")
    points = store.read()
    assert points.num_rows >= 5
    assert set(points.column("value").to_pylist()) == {1.5}
    assert store.series() == [
        ("node_load1", target.address, {"instance": target.address, "job": "test", "rack": "r7"})
    ]
    capsys.readouterr()

    assert main(args) == 0
    assert "│ points added                         │ 0 " in capsys.readouterr().out
    assert store.summary().points == points.num_rows

    monkeypatch.setenv("PERFML_PROMETHEUS_PASSWORD", "wrong")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "HTTP 401" in err
    assert "check the credentials" in err
