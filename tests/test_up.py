"""`perfml up`: every part answers, the monitoring sees the server, Ctrl-C stops it all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest

from fixtures.workspace import workspace_registry
from perfml.alerting.rules import SERVING_JOB
from perfml.cli.app import main
from perfml.config import Settings
from perfml.detectors import create
from perfml.embedded import EmbeddedSystem, Parts
from perfml.featurestore import FeatureStore
from perfml.promql import evaluate
from perfml.recording.recorder import MetricsStore
from perfml.registry.detector_versions import register_detector
from perfml.workspace import Workspace


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def workspace(root: Path) -> tuple[Path, int, int]:
    serving_port, dashboard_port = free_port(), free_port()
    config = root / "perfml.yaml"
    config.write_text(
        f"workspace: {root}\n"
        f"serving:\n  port: {serving_port}\n  models: [cpu@production]\n  poll_interval: 1s\n"
        "monitoring:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  flush_interval: 2s\n"
        "controller:\n  schedule: 1h\n"
    )
    ts = 1_704_067_200_000 + np.arange(600, dtype=np.int64) * 300_000
    values = 50 + 10 * np.sin(np.arange(600) * 2 * np.pi / 288)
    frame = pa.table({"ts": pa.array(ts, pa.timestamp("ms", tz="UTC")), "value": values})
    settings = Settings(workspace=root)
    FeatureStore(settings.store_path).write(
        pa.table(
            {"metric": ["cpu"] * 600, "entity": ["a"] * 600, "ts": frame["ts"], "value": values}
        )
    )
    with workspace_registry(settings) as registry:
        version = register_detector(
            registry, "cpu", create("streaming").fit(frame), features=["cpu"],
            data_start=None, data_end=None,
        )  # fmt: skip
        registry.promote("cpu", version.version, "production", force=True)
    return config, serving_port, dashboard_port


def test_up_serves_watches_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    config, serving_port, dashboard_port = workspace(tmp_path)
    command = [str(Path(sys.executable).parent / "perfml"), "-c", str(config), "up",
               "--dashboard-port", str(dashboard_port)]  # fmt: skip
    without_token = {k: v for k, v in os.environ.items() if k != "PERFML_SERVING_TOKEN"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**without_token, "COLUMNS": "200"},
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{serving_port}"
        page = f"http://127.0.0.1:{dashboard_port}"
        deadline = time.monotonic() + 120
        for url in (f"{base}/v2/health/ready", f"{page}/healthz"):  # the server starts first
            while True:
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, f"{url} did not answer within 120 s"
                try:
                    if httpx.get(url).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        body = {"inputs": [
            {"name": "ts", "shape": [1], "datatype": "INT64", "data": [1_704_247_200_000]},
            {"name": "value", "shape": [1], "datatype": "FP64", "data": [95.0]},
        ]}  # fmt: skip
        answer = httpx.post(f"{base}/v2/models/cpu/infer", json=body)
        assert answer.status_code == 200, answer.text
        assert httpx.get(f"{page}/api/panels/inference").status_code == 200
        time.sleep(3)  # a few scrapes and evaluations
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "stopped" in output
    # the monitoring flushed what it recorded: the server was up, and answered one infer
    store = MetricsStore(FeatureStore(Settings(workspace=tmp_path).telemetry_path))
    now = int(time.time() * 1000)
    up = evaluate('max_over_time(up{job="perfml-serving"}[1m])', now, store)
    assert isinstance(up, list)
    assert [s.value for s in up] == [1.0]
    served = evaluate("max_over_time(perfml_inference_requests_total[1m])", now, store)
    assert isinstance(served, list)
    assert sum(s.value for s in served) >= 1.0
    # kept apart from the fleet's points: the store's summary, training and drift see the fleet
    fleet = FeatureStore(Settings(workspace=tmp_path).store_path).summary().metrics
    assert "up" not in fleet
    assert "perfml_inference_requests_total" not in fleet


def test_up_without_serving_models_serves_the_production_models(tmp_path: Path) -> None:
    config, serving_port, _ = workspace(tmp_path)
    config.write_text(config.read_text().replace("  models: [cpu@production]\n", ""))
    chosen = Workspace.load(config)
    assert chosen.settings.serving.models == ()
    parts = Parts(controller=False, dashboard=False, intake=False)
    with chosen, EmbeddedSystem(chosen, parts) as system:
        assert system.server is not None
        assert system.served == ["cpu@production"]
        answer = httpx.get(f"http://127.0.0.1:{serving_port}/v2/models/cpu")
        assert answer.status_code == 200
        assert system.monitoring is not None
        assert SERVING_JOB in {result.job for result in system.monitoring.scrape_now()}


def test_up_without_any_production_model_says_how_to_choose_and_watches_no_server(
    tmp_path: Path,
) -> None:
    settings = Settings(workspace=tmp_path / "ws")
    parts = Parts(controller=False, dashboard=False, intake=False)
    with Workspace(settings) as empty, EmbeddedSystem(empty, parts) as system:
        assert system.server is None
        assert system.monitoring is not None
        assert SERVING_JOB not in {result.job for result in system.monitoring.scrape_now()}
    command = [str(Path(sys.executable).parent / "perfml"), "-w", str(tmp_path / "ws"), "up",
               "--no-dashboard", "--no-controller"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("monitoring"):
                break
        process.send_signal(signal.SIGINT)
        rest = process.communicate(timeout=60)[0]
    finally:
        if process.poll() is None:
            process.kill()
    printed = "".join(lines) + rest
    (hint,) = [line for line in printed.splitlines() if "no model to serve" in line]
    assert "serving.models" in hint
    assert "perfml models promote" in hint
    assert "InferenceServiceDown" not in printed
    assert "inference server" not in printed


def test_up_on_a_port_in_use_says_so_in_one_line_before_claiming_to_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = workspace(tmp_path)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code = main(["-c", str(config), "up", "--no-controller", "--dashboard-port", str(port)])
    captured = capsys.readouterr()
    assert code == 1
    (line,) = captured.err.strip().splitlines()
    assert f"127.0.0.1:{port}" in line
    assert "in use" in line
    assert "--dashboard-port" in line
    assert "inference server" not in captured.out
