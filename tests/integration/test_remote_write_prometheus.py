"""The remote-write receiver end to end: a real Prometheus writes into it, a full landing makes
Prometheus retry, and ``perfml receive`` killed with SIGKILL loses no acknowledged sample."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge
from tests.integration.services import (
    MetricsEndpoint,
    PrometheusServer,
    ServiceProcess,
    StartMetricsEndpoint,
    StartPrometheus,
    free_port,
    wait_until,
)

from perfml.featurestore import FeatureStore
from perfml.serving.server import AppServer
from perfml.sources.landing import Landing
from perfml.sources.receiver import Receiver
from perfml.sources.remote_write import SeriesFilter, SeriesRouter, encode_write

pytestmark = pytest.mark.integration

HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
Key = tuple[str, str, int]


def _targets(start: StartMetricsEndpoint, values: dict[str, tuple[float, float]]) -> list[str]:
    """One scrape target per name in ``values``, exposing fleet_cpu and fleet_mem."""
    addresses = []
    for cpu, mem in values.values():
        registry = CollectorRegistry()
        Gauge("fleet_cpu", "CPU busy share.", registry=registry).set(cpu)
        Gauge("fleet_mem", "Memory used, MiB.", registry=registry).set(mem)
        target: MetricsEndpoint = start(registry)
        addresses.append(target.address)
    return addresses


def _writing_prometheus(
    start_prometheus: StartPrometheus, tmp_path: Path, targets: list[str], url: str,
    queue: dict[str, Any],
) -> PrometheusServer:  # fmt: skip
    config = tmp_path / "prometheus-config" / "prometheus.yml"
    config.parent.mkdir()
    config.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": "fleet", "scrape_interval": "1s", "scrape_timeout": "1s",
            "static_configs": [{"targets": targets}],
        }],
        "remote_write": [{
            "url": url,
            "metadata_config": {"send": False},
            "queue_config": {"batch_send_deadline": "200ms", "min_backoff": "50ms",
                             "max_backoff": "500ms", **queue},
        }],
    }))  # fmt: skip
    return start_prometheus(config_file=config)


def _prometheus_samples(prom: PrometheusServer, metric: str) -> set[tuple[str, int, float]]:
    """What Prometheus itself holds of ``metric``: (instance, ts ms, value)."""
    found = set()
    for series in prom.query(f"{metric}[10m]"):
        for stamp, value in series["values"]:
            found.add((series["metric"]["instance"], round(float(stamp) * 1000), float(value)))
    return found


def _stored(store: FeatureStore, metric: str) -> set[tuple[str, int, float]]:
    table = store.read(metrics=[metric]).to_pydict()
    return {
        (entity, round(ts.timestamp() * 1000), value)
        for entity, ts, value in zip(table["entity"], table["ts"], table["value"], strict=True)
    }


def _per_entity(samples: set[tuple[str, int, float]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entity, _, _ in samples:
        counts[entity] = counts.get(entity, 0) + 1
    return counts


def _assert_same_up_to_the_last_stored(
    prom: PrometheusServer, store: FeatureStore, metric: str
) -> None:
    stored = _stored(store, metric)
    scraped = _prometheus_samples(prom, metric)
    assert stored <= scraped  # every stored sample is one Prometheus scraped, exactly
    for entity in {e for e, _, _ in scraped}:
        last = max(ts for e, ts, _ in stored if e == entity)
        expected = {s for s in scraped if s[0] == entity and s[1] <= last}
        assert {s for s in stored if s[0] == entity} == expected  # and none is missing


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return FeatureStore(tmp_path / "store")


def test_prometheus_remote_write_lands_every_sample_in_the_store(
    start_metrics_endpoint: StartMetricsEndpoint,
    start_prometheus: StartPrometheus,
    store: FeatureStore,
    tmp_path: Path,
) -> None:
    targets = _targets(start_metrics_endpoint, {"web": (0.25, 512.0), "db": (0.75, 2048.0)})
    handed: list[int] = []
    landing = Landing(store, tmp_path / "landing", flush_interval=0.2,
                      on_stored=lambda points: handed.append(points.num_rows))  # fmt: skip
    router = SeriesRouter(SeriesFilter.parse(["fleet_cpu", '{__name__="fleet_mem"}']))
    receiver = Receiver(landing, router, port=0, server=AppServer, registry=CollectorRegistry())
    with receiver:
        prom = _writing_prometheus(start_prometheus, tmp_path, targets, receiver.url, {})

        def three_each() -> bool:
            counts = _per_entity(_stored(store, "fleet_mem"))
            return len(counts) == 2 and min(counts.values()) >= 3

        wait_until(three_each, 25, "three samples of each target in the store", interval=0.2)
        _assert_same_up_to_the_last_stored(prom, store, "fleet_cpu")
        _assert_same_up_to_the_last_stored(prom, store, "fleet_mem")
        assert {e for e, _, v in _stored(store, "fleet_cpu") if v == 0.25} == {targets[0]}
        assert {e for e, _, v in _stored(store, "fleet_mem") if v == 2048.0} == {targets[1]}
        assert set(store.manifest.series) == {"fleet_cpu", "fleet_mem"}  # up, scrape_*: not kept
        totals = receiver.totals()
        assert totals.dropped > 0
        assert totals.refused == 0
        prom.stop()  # before the receiver, so that its last writes are answered
    assert sum(handed) == receiver.totals().stored == store.read().num_rows


def test_a_full_landing_makes_prometheus_retry_until_the_samples_land(
    start_metrics_endpoint: StartMetricsEndpoint,
    start_prometheus: StartPrometheus,
    store: FeatureStore,
    tmp_path: Path,
) -> None:
    targets = _targets(start_metrics_endpoint, {"web": (0.5, 1.0), "db": (0.6, 2.0)})
    # No flusher runs on its own: the landing fills after one batch and stays full.
    landing = Landing(store, tmp_path / "landing", flush_interval=3600, max_pending=6)
    router = SeriesRouter(SeriesFilter.parse(["fleet_cpu", "fleet_mem"]))
    receiver = Receiver(landing, router, port=0, server=AppServer, registry=CollectorRegistry())
    with receiver:
        prom = _writing_prometheus(
            start_prometheus, tmp_path, targets, receiver.url, {"max_samples_per_send": 4}
        )
        wait_until(lambda: receiver.totals().refused > 0, 25, "a write refused with 503")
        refused_at = receiver.totals()
        assert refused_at.pending > 0
        assert store.manifest.series == {}  # nothing stored while the flusher is held

        def flushed_three_each() -> bool:
            landing.flush()
            counts = _per_entity(_stored(store, "fleet_cpu"))
            return len(counts) == 2 and min(counts.values()) >= refused_at.acknowledged + 3

        wait_until(flushed_three_each, 25, "the refused samples retried and stored", 0.3)
        _assert_same_up_to_the_last_stored(prom, store, "fleet_cpu")
        _assert_same_up_to_the_last_stored(prom, store, "fleet_mem")
        answered = httpx.get(receiver.url.removesuffix("/api/v1/write") + "/metrics").text
        assert 'perfml_remote_write_requests_total{code="503"}' in answered
        with _flushing(landing):  # Prometheus sends what it holds as it stops
            prom.stop()


@contextmanager
def _flushing(landing: Landing) -> Iterator[None]:
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(0.1):
            landing.flush()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# -- kill -9 -----------------------------------------------------------------------------


class Sender:
    """Threads posting remote-write requests with unique keys, recording the acknowledged."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url = url
        self.acked: dict[Key, float] = {}
        self.attempted = 0
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _request(self) -> tuple[bytes, dict[Key, float]]:
        with self._lock:
            number = self._next
            self._next += 1
        samples: dict[Key, float] = {}
        series = []
        for host in range(10):
            for metric in ("load", "mem"):
                points = []
                for k in range(5):
                    ts = 1_700_000_000_000 + (number * 5 + k) * 1000
                    value = number * 1000.0 + host * 10 + k + (0.5 if metric == "mem" else 0)
                    points.append((ts, value))
                    samples[(metric, f"host-{host}", ts)] = value
                series.append(({"__name__": metric, "instance": f"host-{host}"}, points))
        return encode_write(series), samples

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                body, samples = self._request()
                try:
                    answer = client.post(self.url, content=body, headers=HEADERS)
                except httpx.TransportError:
                    continue
                finally:
                    with self._lock:
                        self.attempted += 1
                if answer.status_code == 204:
                    with self._lock:
                        self.acked.update(samples)

    def __enter__(self) -> Sender:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


@pytest.fixture
def receive_command(tmp_path: Path) -> tuple[list[str], str, Path]:
    port = free_port()
    workspace = tmp_path / "ws"
    config = tmp_path / "perfml.yaml"
    config.write_text(json.dumps({
        "workspace": str(workspace),
        "sources": {"remote_write": {"port": port, "flush_interval": "1s",
                                     "max_pending_samples": 1_000_000}},
    }))  # fmt: skip
    perfml = str(Path(sys.executable).parent / "perfml")
    return [perfml, "--config", str(config), "receive"], f"http://127.0.0.1:{port}", workspace


def test_perfml_receive_killed_with_sigkill_keeps_every_acknowledged_sample_once(
    receive_command: tuple[list[str], str, Path], tmp_path: Path
) -> None:
    argv, base, workspace = receive_command
    first = ServiceProcess("perfml receive", argv, tmp_path / "first.log")
    first.start()
    first.wait_ready(f"{base}/-/ready", timeout=60)
    with Sender(f"{base}/api/v1/write") as sender:
        wait_until(lambda: len(sender.acked) >= 100 * 100, 60, "a hundred acknowledged requests")
        assert first.process is not None
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
    first.stop()
    acked = dict(sender.acked)
    segments = sorted((workspace / "landing").glob("segment-*.wal"))
    assert segments, "the kill left the log of acknowledged, unstored points"
    with segments[-1].open("ab") as torn:  # a record half written when the power went
        torn.write(b"PMLW\x00\x10\x00\x00\x12\x34\x56\x78partial")

    second = ServiceProcess("perfml receive", argv, tmp_path / "second.log")
    second.start()
    second.wait_ready(f"{base}/-/ready", timeout=60)
    assert second.process is not None
    second.process.send_signal(signal.SIGTERM)
    assert second.process.wait(60) == 0, second.log()
    second.stop()
    log = second.log()
    assert "receiving remote write on " + base + "/api/v1/write" in log
    assert "torn tails skipped" in log
    assert "stopped: 0 requests" in log

    table = FeatureStore(workspace / "store").read().to_pydict()
    stored: dict[Key, float] = {}
    for metric, entity, ts, value in zip(
        table["metric"], table["entity"], table["ts"], table["value"], strict=True
    ):
        key = (metric, entity, round(ts.timestamp() * 1000))
        assert key not in stored  # one point per key
        stored[key] = value
    missing = [key for key, value in acked.items() if stored.get(key) != value]
    assert missing == []
    assert len(stored) >= len(acked)
    assert list((workspace / "landing").glob("segment-*.wal")) == []
