"""`perfml train` and `perfml runs list | show | logs | cancel` on one small workspace."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from perfml.cli.app import main
from perfml.config import Settings
from perfml.featurestore import FeatureStore
from perfml.metadata import sqlite_url
from perfml.pipelines.history import RunHistory
from perfml.pipelines.states import JobRecord, JobState, RunRecord
from perfml.sources.fleet import generate_fleet, write_fleet
from perfml.sources.ingestion import ingest_corpus
from perfml.workspace import Workspace

WINDOW = "2024-01-01:2024-03-01"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ws")
    write_fleet(generate_fleet(hosts=2, months=2, seed=7), folder / "fleet")
    ingest_corpus(FeatureStore(folder / "store"), folder / "fleet")
    return folder


@pytest.fixture(scope="module")
def trained(workspace: Path) -> dict[str, Any]:
    """One successful `perfml train --json`, shared by the module (a run takes seconds)."""
    printed = io.StringIO()
    # held out from Feb 12: the gate's validation and test slices meet on Feb 20 at 12:00,
    # with a labelled latency anomaly on each side
    with contextlib.redirect_stdout(printed):
        code = main(
            ["-w", str(workspace), "train", "--data", "request_latency_ms", "--window", WINDOW,
             "--model", "latency", "--holdout", "0.3", "--promote", "--json"]
        )  # fmt: skip
    assert code == 0, printed.getvalue()
    document: dict[str, Any] = json.loads(printed.getvalue())
    return document


def test_train_runs_the_pipeline_and_registers_a_promoted_version(trained, workspace, capsys):
    run_doc = trained["run"]
    assert run_doc["state"] == "Succeeded"
    assert [j["step"] for j in run_doc["jobs"]] == [
        "query", "preprocess", "train", "evaluate", "register",
    ]  # fmt: skip
    assert all(j["state"] == "Succeeded" and j["cpu_seconds"] > 0 for j in run_doc["jobs"])
    assert trained["registered"]["ref"] == "latency:1"
    assert trained["registered"]["promoted"] == "production"
    gate = trained["registered"]["gate"]  # a first version, held to the default floors
    assert gate["candidate"]["nab_standard"] >= 50.0
    assert gate["candidate"]["event_f1"] >= 0.5
    assert (workspace / "runs" / run_doc["run_id"] / "register" / "job.log").is_file()
    code, out, err = run(capsys, "-w", str(workspace), "models", "show", "latency@production")
    assert code == 0, err
    assert run_doc["run_id"] in out
    assert "2: host-0000, host-0001" in out  # the entities it learnt


def test_train_of_an_unknown_metric_fails_at_once_in_one_line_naming_the_step(
    workspace, capsys, open_part
):
    code, _out, err = run(
        capsys, "-w", str(workspace), "train", "--data", "no_such_metric", "--window", WINDOW
    )
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert "step 'query'" in err
    assert "no metric 'no_such_metric' in the store" in err
    assert "request_latency_ms" in err  # the metrics it has
    history = open_part(RunHistory, sqlite_url(workspace / "metadata.db"))
    (query,) = [
        r.jobs["query"] for r in history.list_runs() if "no_such_metric" in _query_message(r)
    ]
    assert query.attempt == 1  # a usage error is not retried
    assert "not retried" in query.message


def test_train_of_a_window_without_points_fails_naming_the_step(workspace, capsys):
    code, _out, err = run(
        capsys, "-w", str(workspace), "train", "--data", "cpu_util", "--window",
        "2030-01-01:2030-02-01",
    )  # fmt: skip
    assert code == 1
    assert "step 'query'" in err
    assert "no points of 'cpu_util'" in err


def test_train_refuses_a_bad_window_or_parameter_before_running(workspace, capsys):
    ws = ("-w", str(workspace))
    code, _, err = run(capsys, *ws, "train", "--data", "cpu_util", "--window", "yesterday")
    assert code == 2
    assert "--window" in err
    code, _, err = run(
        capsys, *ws, "train", "--data", "cpu_util", "--window", WINDOW, "--param", "nope=1"
    )
    assert code == 2
    assert "nope" in err


def test_runs_list_and_show(trained, workspace, capsys):
    run_id = trained["run"]["run_id"]
    code, out, err = run(capsys, "-w", str(workspace), "runs", "list")
    assert code == 0, err
    assert run_id in out
    assert "Succeeded" in out
    code, out, _ = run(capsys, "-w", str(workspace), "runs", "list", "--json")
    listed = {r["run_id"]: r for r in json.loads(out)}
    assert listed[run_id]["state"] == "Succeeded"
    code, out, _ = run(capsys, "-w", str(workspace), "runs", "show", run_id)
    assert code == 0
    for word in ("preprocess", "Completed", "peak memory", "CPU s", "duration"):
        assert word in out
    code, out, _ = run(capsys, "-w", str(workspace), "runs", "show", run_id, "--json")
    shown = json.loads(out)
    assert [j["reason"] for j in shown["jobs"]] == ["Completed"] * 5
    code, _, err = run(capsys, "-w", str(workspace), "runs", "show", "nope")
    assert code == 1
    assert "not found" in err


def test_runs_logs_prints_the_jobs_log(trained, workspace, capsys):
    run_id = trained["run"]["run_id"]
    code, out, _ = run(capsys, "-w", str(workspace), "runs", "logs", run_id, "train")
    assert code == 0
    assert "--- attempt 1" in out
    assert "streaming learnt" in out
    code, out, _ = run(capsys, "-w", str(workspace), "runs", "logs", run_id, "train", "--tail", "1")
    assert out.strip().splitlines() == [out.strip()]
    assert "streaming learnt" in out
    code, _, err = run(capsys, "-w", str(workspace), "runs", "logs", run_id, "nope")
    assert code == 2
    assert "no step 'nope'" in err


def test_runs_cancel_asks_the_runner_and_refuses_finished_runs(
    trained, workspace, capsys, open_part
):
    history = open_part(RunHistory, sqlite_url(workspace / "metadata.db"))
    now = time.time()
    job = JobRecord.new("live-run", "train", "train", at=now)
    history.start_run(
        RunRecord("live-run", "training", JobState.RUNNING, created_at=now, jobs={"train": job}),
        os.getpid(),  # a live runner: this process
    )
    code, out, err = run(capsys, "-w", str(workspace), "runs", "cancel", "live-run")
    assert code == 0, err
    assert "cancel requested" in out
    assert history.heartbeat("live-run") is True  # what the runner sees on its next beat
    done = trained["run"]["run_id"]
    code, _, err = run(capsys, "-w", str(workspace), "runs", "cancel", done)
    assert code == 2
    assert "Succeeded already" in err


def test_serve_metrics_exposes_the_jobs_for_prometheus(tmp_path: Path) -> None:
    """`perfml runs serve-metrics` answers /metrics with the Kubernetes names until stopped."""
    import signal
    import subprocess
    import sys
    import time as clock

    import httpx

    config = tmp_path / "perfml.yaml"
    config.write_text("workspace: ws\n")
    (tmp_path / "ws").mkdir()
    port = 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [Path(sys.executable).parent / "perfml", "-c", str(config), "runs", "serve-metrics",
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = clock.monotonic() + 60
        while True:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                break
            except httpx.TransportError:
                assert server.poll() is None, server.communicate()
                assert clock.monotonic() < deadline
                clock.sleep(0.2)
        assert "# TYPE kube_node_status_allocatable gauge" in text
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)


def _query_message(run: RunRecord) -> str:
    return run.jobs["query"].message if "query" in run.jobs else ""


def _exported(workspace: Path, run_id: str, clock: float) -> bool:
    """Whether the job metrics (what the job alerts are evaluated on) still show the run."""
    with Workspace(Settings(workspace=workspace)) as parts:
        families = parts.job_metrics(clock=lambda: clock).collect()
        return any(
            run_id in sample.labels.get("job_name", "")
            for family in families
            for sample in family.samples
        )


def test_a_failed_run_leaves_the_job_metrics_once_deleted_or_aged_out(workspace, capsys, open_part):
    code, _, _ = run(
        capsys, "-w", str(workspace), "train", "--data", "gone_metric", "--window", WINDOW
    )
    assert code == 1
    history = open_part(RunHistory, sqlite_url(workspace / "metadata.db"))
    (failed,) = [r for r in history.list_runs() if "gone_metric" in _query_message(r)]
    run_id = failed.run_id
    assert (workspace / "runs" / run_id).is_dir()
    assert Settings().monitoring.finished_jobs_ttl == "24h"
    assert _exported(workspace, run_id, clock=time.time())
    assert not _exported(workspace, run_id, clock=time.time() + 2 * 86_400)  # aged out
    code, out, err = run(capsys, "-w", str(workspace), "runs", "delete", run_id)
    assert code == 0, err
    assert f"deleted run {run_id}" in out
    assert not (workspace / "runs" / run_id).exists()
    assert not _exported(workspace, run_id, clock=time.time())
    code, _, err = run(capsys, "-w", str(workspace), "runs", "show", run_id)
    assert code == 1
    assert "not found" in err


def test_runs_delete_refuses_a_running_run(workspace, capsys, open_part):
    history = open_part(RunHistory, sqlite_url(workspace / "metadata.db"))
    now = time.time()
    job = JobRecord.new("busy-run", "train", "train", at=now)
    history.start_run(
        RunRecord("busy-run", "training", JobState.RUNNING, created_at=now, jobs={"train": job}),
        os.getpid(),
    )
    code, _, err = run(capsys, "-w", str(workspace), "runs", "delete", "busy-run")
    assert code == 2
    assert err.strip().splitlines() == [
        "perfml: error: pipeline run 'busy-run' is Running: cancel it (perfml runs cancel) first"
    ]
    assert history.get_run("busy-run").state is JobState.RUNNING
