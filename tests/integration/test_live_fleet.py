"""The live fleet end to end, through ``perfml up``: remote-written points scored as they
arrive, a ``kill -9`` losing nothing acknowledged and scoring nothing twice, and a real
Prometheus's fleet paging with host, metric and time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from prometheus_client import CollectorRegistry, Gauge
from tests.integration.services import (
    ServiceProcess,
    StartMetricsEndpoint,
    StartPrometheus,
    free_port,
    wait_until,
)

from anomalies.test_live import DAY, FLEET, TICKS, TRAIN_END, expected_scores, points_of, train
from perfml.config import load_settings
from perfml.detectors import create
from perfml.detectors.series import fit_series
from perfml.registry.detector_versions import register_detector
from perfml.sources.remote_write import encode_write
from perfml.workspace import Workspace

pytestmark = pytest.mark.integration

HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def configure(folder: Path, **sections: Any) -> tuple[Path, dict[str, int]]:
    """A perfml.yaml for ``perfml up`` on free loopback ports; returns it and the ports."""
    ports = {name: free_port() for name in ("serving", "receiver", "dashboard")}
    config = {
        "workspace": str(folder / "ws"),
        "serving": {"host": "127.0.0.1", "port": ports["serving"], "models": ["cpu@production"],
                    "poll_interval": "1s"},
        "sources": {"remote_write": {"enabled": True, "port": ports["receiver"],
                                     "flush_interval": "200ms"}},
        "live": {"flush_interval": "500ms", "checkpoint_interval": "2s"},
        "controller": {"models": []},
        **sections,
    }  # fmt: skip
    path = folder / "perfml.yaml"
    path.write_text(json.dumps(config))
    return path, ports


def up(config: Path, ports: dict[str, int], log: Path) -> ServiceProcess:
    argv = [str(Path(sys.executable).parent / "perfml"), "-c", str(config), "up",
            "--dashboard-port", str(ports["dashboard"])]  # fmt: skip
    process = ServiceProcess("perfml up", argv, log)
    process.start()
    process.wait_ready(f"http://127.0.0.1:{ports['receiver']}/-/ready", timeout=120)
    return process


def hour_requests() -> list[tuple[list[tuple[str, int]], bytes]]:
    """The fleet's cpu_util after the version's data, an hour of every host per request."""
    arrived = points_of(TRAIN_END, TRAIN_END + 3 * DAY)
    entity = arrived.column("entity").cast(pa.string()).to_pylist()
    ts = pc.cast(arrived.column("ts"), pa.int64()).to_numpy()
    value = arrived.column("value").to_numpy()
    requests = []
    for lo in range(TRAIN_END, TRAIN_END + 3 * DAY, 3_600_000):
        keys, series = [], []
        for host in FLEET.host_names:
            rows = [
                i for i in np.flatnonzero((ts >= lo) & (ts < lo + 3_600_000)) if entity[i] == host
            ]
            samples = [(int(ts[i]), float(value[i])) for i in rows]
            keys += [(host, t) for t, _ in samples]
            series.append(({"__name__": "cpu_util", "instance": host}, samples))
        requests.append((keys, encode_write(series)))
    return requests


def logged_rows(folder: Path) -> pa.Table:
    """Every row of every score file, none merged away: a point scored twice shows twice."""
    files = sorted((folder / "ws" / "anomalies" / "scores" / "cpu").glob("*.parquet"))
    return pa.concat_tables(pq.read_table(f) for f in files)


def test_a_kill_during_the_stream_loses_no_acknowledged_point_and_scores_none_twice(
    tmp_path: Path,
) -> None:
    config, ports = configure(tmp_path)
    with Workspace(load_settings(config)) as workspace:
        workspace.store().write(points_of(int(TICKS[0]), TRAIN_END))
        train(workspace.registry(background_delivery=False), TRAIN_END)
    requests = hour_requests()
    write = f"http://127.0.0.1:{ports['receiver']}/api/v1/write"
    acknowledged: list[tuple[str, int]] = []
    first = up(config, ports, tmp_path / "first.log")
    with httpx.Client(headers=HEADERS, timeout=10) as client:
        for keys, body in requests[:40]:
            if client.post(write, content=body).status_code == 204:
                acknowledged += keys
        scorer_checkpoints = tmp_path / "ws" / "anomalies" / "checkpoints" / "cpu.json"
        wait_until(scorer_checkpoints.exists, 30, "a checkpoint of the live states")
        for keys, body in requests[40:50]:  # in flight as the process dies
            if client.post(write, content=body).status_code == 204:
                acknowledged += keys
        assert first.process is not None
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
        first.stop()
        second = up(config, ports, tmp_path / "second.log")
        for keys, body in requests[50:]:
            answer = client.post(write, content=body)
            assert answer.status_code == 204, answer.text
            acknowledged += keys
    wait_until(
        lambda: "perfml_live_points_total" in httpx.get(f"http://127.0.0.1:{ports['serving']}/metrics").text,
        30, "the live loop's metrics",
    )  # fmt: skip
    assert second.process is not None
    second.process.send_signal(signal.SIGINT)
    assert second.process.wait(120) == 0, second.log()
    second.stop()
    rows = logged_rows(tmp_path)
    keys = list(zip(rows.column("entity").to_pylist(), rows.column("ts").to_pylist(), strict=True))
    assert len(keys) == len(set(keys)), "a point was scored twice"
    assert set(acknowledged) <= set(keys), "an acknowledged point was never scored"
    with Workspace(load_settings(config)) as workspace:
        registry = workspace.registry(background_delivery=False)
        wanted = expected_scores(registry, TRAIN_END, TRAIN_END + 3 * DAY)
    found = dict(zip(keys, rows.column("score").to_pylist(), strict=True))
    # each series learnt each point once, in order: its scores are its own replay's
    assert np.allclose([found[k] for k in acknowledged], [wanted[k] for k in acknowledged])


def normal_history(hosts: list[str], end_ms: int, step_ms: int = 15_000) -> list[tuple[Any, Any]]:
    rng = np.random.default_rng(11)
    ts = np.arange(end_ms - 2 * DAY, end_ms, step_ms, dtype=np.int64)
    return [(ts, 40 + 2 * rng.standard_normal(len(ts))) for _ in hosts]


def test_a_prometheus_fleet_pages_with_host_metric_and_time(
    tmp_path: Path,
    start_metrics_endpoint: StartMetricsEndpoint,
    start_prometheus: StartPrometheus,
) -> None:
    hosts = [f"web-{i}" for i in range(1, 7)]
    gauges: dict[str, Gauge] = {}
    targets: dict[str, dict[str, str]] = {}
    rng = np.random.default_rng(5)
    for host in hosts:
        metrics = CollectorRegistry()
        gauges[host] = Gauge("node_cpu_busy", "Busy share of the CPUs, %.", registry=metrics)
        gauges[host].set(40 + 2 * rng.standard_normal())
        targets[start_metrics_endpoint(metrics).address] = {"host": host}
    calm = threading.Event()

    def thrash() -> None:
        level = 97.0
        while not calm.wait(0.5):
            gauges["web-4"].set(level)
            level = 2.0 if level > 50 else 97.0

    thrashing = threading.Thread(target=thrash, daemon=True)
    config, ports = configure(
        tmp_path,
        sources={"remote_write": {"enabled": True, "port": free_port(), "flush_interval": "200ms",
                                  "keep": ["node_cpu_busy"], "entity_label": "host"}},
        monitoring={"scrape_interval": "1s", "evaluation_interval": "1s",
                    "notifications": {"group_wait": "1s", "critical_group_wait": "1s"}},
    )  # fmt: skip
    settings = load_settings(config)
    ports["receiver"] = settings.sources.remote_write.port
    now_ms = int(time.time() * 1000)
    with Workspace(settings) as workspace:
        registry = workspace.registry(background_delivery=False)
        states = fit_series(create("streaming"), hosts, normal_history(hosts, now_ms - 60_000))
        version = register_detector(
            registry, "cpu", states, features=["node_cpu_busy"],
            data_start=datetime.fromtimestamp((now_ms - 60_000) / 1000 - 2 * 86_400, UTC),
            data_end=datetime.fromtimestamp((now_ms - 60_000) / 1000, UTC),
        )  # fmt: skip
        registry.set_tag(version.ref, "threshold", "0.35")
        registry.set_alias("cpu", "production", version.version)
    process = up(config, ports, tmp_path / "up.log")
    try:
        write = f"http://127.0.0.1:{ports['receiver']}/api/v1/write"
        prometheus_config = tmp_path / "prometheus" / "prometheus.yml"
        prometheus_config.parent.mkdir()
        prometheus_config.write_text(json.dumps({
            "global": {"scrape_interval": "1s"},
            "scrape_configs": [{"job_name": "node", "scrape_interval": "1s", "scrape_timeout": "1s",
                                "static_configs": [{"targets": [a], "labels": labels}
                                                   for a, labels in targets.items()]}],
            "remote_write": [{"url": write, "queue_config": {"batch_send_deadline": "200ms"}}],
        }))  # fmt: skip
        start_prometheus(config_file=prometheus_config)
        base = f"http://127.0.0.1:{ports['serving']}"

        def scored() -> dict[str, float]:
            text = httpx.get(f"{base}/metrics").text
            found = {}
            for line in text.splitlines():
                if line.startswith("perfml_anomaly_score{"):
                    host = line.split('entity="')[1].split('"')[0]
                    found[host] = float(line.rsplit(" ", 1)[1])
            return found

        wait_until(lambda: set(scored()) == set(hosts), 60, "every host scored live")
        thrashing.start()  # web-4 thrashes: its CPU swings between saturated and idle
        history = [str(Path(sys.executable).parent / "perfml"), "-c", str(config), "alerts",
                   "history", "--json"]  # fmt: skip

        def fired_for(host: str) -> list[dict[str, Any]]:
            run = subprocess.run(history, capture_output=True, text=True, check=True)
            entries: list[dict[str, Any]] = json.loads(run.stdout)
            return [e for e in entries if e["rule"] == "AnomalyDetected"
                    and e["labels"].get("entity") == host and e["to"] == "firing"]  # fmt: skip

        firing = wait_until(lambda: fired_for("web-4"), 120, "AnomalyDetected for web-4", 1.0)
        assert firing[0]["labels"]["metric"] == "node_cpu_busy"
        panels = httpx.get(f"http://127.0.0.1:{ports['dashboard']}/api/panels/anomalies")
        assert panels.status_code == 200
        assert '"web-4"' in panels.text  # the Anomalies page's heatmap and incidents
    finally:
        calm.set()
        assert process.process is not None
        process.process.send_signal(signal.SIGINT)
        process.process.wait(120)
        process.stop()
    with Workspace(load_settings(config)) as workspace:
        findings = workspace.find_incidents()
    (incident,) = [i for i in findings.incidents if i.entity == "web-4"]
    assert incident.metrics[0].metric == "node_cpu_busy"
    assert incident.peak_score >= 0.35
    assert incident.start_ms >= now_ms - 60_000


def test_perfml_live_scores_what_is_written_and_exports_it_beside_the_receiver(
    tmp_path: Path,
) -> None:
    config, ports = configure(tmp_path)
    with Workspace(load_settings(config)) as workspace:
        workspace.store().write(points_of(int(TICKS[0]), TRAIN_END))
        train(workspace.registry(background_delivery=False), TRAIN_END)
    argv = [str(Path(sys.executable).parent / "perfml"), "-c", str(config), "live"]
    process = ServiceProcess("perfml live", argv, tmp_path / "live.log")
    process.start()
    base = f"http://127.0.0.1:{ports['receiver']}"
    process.wait_ready(f"{base}/-/ready", timeout=120)
    try:
        keys, body = hour_requests()[0]
        assert httpx.post(f"{base}/api/v1/write", content=body, headers=HEADERS).status_code == 204

        def exported() -> set[str]:
            text = httpx.get(f"{base}/metrics").text
            return {
                line.split('entity="')[1].split('"')[0]
                for line in text.splitlines()
                if line.startswith("perfml_anomaly_score{")
            }

        assert wait_until(lambda: exported() == set(FLEET.host_names), 30, "every host scored")
        with pytest.raises(httpx.ConnectError):  # perfml live scores; it does not serve
            httpx.get(f"http://127.0.0.1:{ports['serving']}/v2/health/live")
    finally:
        assert process.process is not None
        process.process.send_signal(signal.SIGTERM)
        assert process.process.wait(60) == 0, process.log()
        process.stop()
    log = process.log()
    assert "live loop         scoring cpu@production" in log
    assert f"remote write      {base}/api/v1/write" in log
    rows = logged_rows(tmp_path)
    assert rows.num_rows == len(keys)
