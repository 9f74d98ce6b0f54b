"""`perfml monitor [--once]` over a workspace with a failed job and no inference server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fixtures.metadata import opened
from perfml.cli import monitor
from perfml.cli.state import CliState
from perfml.config import load_settings
from perfml.featurestore import FeatureStore
from perfml.pipelines import Pipeline, Task
from perfml.pipelines.dsl import Resources
from perfml.pipelines.history import RunHistory
from perfml.pipelines.runner import LocalRunner
from perfml.promql.series import Matcher
from perfml.recording.recorder import MetricsStore
from pipelines import steps

root = typer.Typer()
root.command("monitor")(monitor.monitor)


@root.callback()
def _root(ctx: typer.Context, config: Path = typer.Option(..., "-c")) -> None:  # noqa: B008
    ctx.obj = CliState(config=config)


RUN_MONITOR = """
import typer
from perfml.cli.monitor import monitor
app = typer.Typer()
app.command()(monitor)
app()
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """perfml.yaml of a workspace whose run history holds one failed job; the inference
    server's port is one nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "perfml.yaml"
    path.write_text(
        f"workspace: ws\nserving:\n  port: {port}\n"
        "monitoring:\n  scrape_interval: 200ms\n  evaluation_interval: 200ms\n"
    )
    settings = load_settings(path)
    settings.workspace.mkdir()
    with (
        opened(RunHistory, settings.registry_url) as history,
        LocalRunner(history, tmp_path / "runs", Resources(cpu=2, memory="2Gi")) as runner,
    ):
        pipeline = Pipeline("nightly", [Task("train", steps.crash, {"message": "bad"})])
        runner.run(pipeline, run_id="nightly-r1")
    return path


def test_once_scrapes_evaluates_and_prints_the_alerts(config: Path) -> None:
    result = CliRunner().invoke(root, ["-c", str(config), "monitor", "--once"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("perfml-serving" in line and "is down" in line for line in lines)
    (failed,) = [line for line in lines if "JobFailed" in line]
    assert "firing" in failed
    assert 'job_name="nightly-r1-train"' in failed
    (down,) = [line for line in lines if "InferenceServiceDown" in line]
    assert "pending" in down  # for: 1m


@pytest.mark.parametrize("stop_with", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_it_prints_transitions_until_a_signal_then_flushes(
    config: Path, stop_with: signal.Signals
) -> None:
    env = {**os.environ, "PERFML_CONFIG": str(config), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", RUN_MONITOR],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        printed = []
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            printed.append(line)
            if "JobFailed firing" in line:
                break
        assert any("JobFailed firing" in line for line in printed), printed
        process.send_signal(stop_with)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "monitoring stopped; recorded metrics flushed" in err
    settings = load_settings(config)
    stored = MetricsStore(FeatureStore(settings.telemetry_path))
    up = stored.select([Matcher("__name__", "=", "up")], 0, round(time.time() * 1000))
    assert {s.labels["job"] for s in up} == {"perfml-serving", "perfml-jobs"}
