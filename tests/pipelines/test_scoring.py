"""The batch-scoring pipeline against a real server: scores delivered, a missing volume keeps
the job Pending, a wrong token fails it at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from perfml.config import RegistrySettings, Settings
from perfml.detectors import create
from perfml.pipelines.scoring import build_scoring_pipeline
from perfml.pipelines.states import JobState, Reason
from perfml.registry.detector_versions import load_detector, register_detector
from perfml.serving.server import AppServer
from perfml.serving.telemetry import ServingMetrics
from perfml.workspace import Workspace

TOKEN_ENV = "PERFML_TEST_SCORING_TOKEN"
START = 1_704_067_200_000  # 2024-01-01
STEP = 300_000


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Workspace, str]]:
    """A store with two hosts' cpu, a model fitted on the first day, served with a token."""
    settings = Settings(workspace=tmp_path, registry=RegistrySettings())
    settings = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"token_env": TOKEN_ENV})}
    )
    n = 2 * 288
    ts = START + np.arange(n, dtype=np.int64) * STEP
    values = 50 + 10 * np.sin(np.arange(n) * 2 * np.pi / 288)
    rows = {
        "metric": ["cpu"] * (2 * n),
        "entity": ["a"] * n + ["b"] * n,
        "ts": pa.array(np.concatenate([ts, ts]), pa.timestamp("ms", tz="UTC")),
        "value": np.concatenate([values, values + 5]),
    }
    with Workspace(settings) as workspace:
        workspace.store().write(pa.table(rows))
        first_day = pa.table(
            {"ts": pa.array(ts[:288], pa.timestamp("ms", tz="UTC")), "value": values[:288]}
        )
        registry = workspace.registry(background_delivery=False)
        version = register_detector(
            registry, "cpu", create("streaming").fit(first_day), features=["cpu"]
        )
        registry.promote("cpu", version.version, "production", force=True)
        monkeypatch.setenv(TOKEN_ENV, "right")
        app = workspace.serving_app(["cpu@production"], metrics=ServingMetrics())
        with AppServer(app, name="inference server") as server:
            yield workspace, server.url


def params(url: str) -> dict[str, object]:
    """The run's parameters; the job is handed the workspace's store as a part."""
    return {
        "url": url, "model": "cpu", "metric": "cpu", "start": "2024-01-02", "end": "2024-01-03",
        "run_id": "r1", "batch_rows": 50,
    }  # fmt: skip


def test_scores_reach_the_volume_as_the_server_answers_them(
    served: tuple[Workspace, str], tmp_path: Path
) -> None:
    workspace, url = served
    volume = tmp_path / "volume"
    volume.mkdir()
    pipeline = build_scoring_pipeline(volume, TOKEN_ENV)
    with workspace.runner({TOKEN_ENV: "right"}) as local:
        run = local.run(pipeline, params(url))
    assert run.state is JobState.SUCCEEDED, run.jobs["score"].message
    scores = pq.read_table(volume / "scores-cpu-r1.parquet")
    assert scores.num_rows == 2 * 288
    assert sorted(set(scores.column("entity").to_pylist())) == ["a", "b"]
    # each row is scored against its own entity's state in the served version
    _, model = load_detector(workspace.registry(background_delivery=False), "cpu@production")
    first = scores.slice(0, 50)
    expected = model.score(
        model.rows(first.column("entity").to_pylist()),
        first.column("ts").cast(pa.int64()).to_numpy(),
        first.column("value").to_numpy(),
    )
    np.testing.assert_allclose(first.column("anomaly_score").to_numpy(), expected, rtol=1e-12)
    values = scores.column("anomaly_score").to_numpy()
    assert np.all((values >= 0) & (values <= 1))


def test_a_missing_volume_keeps_the_job_pending_until_it_is_mounted(
    served: tuple[Workspace, str], tmp_path: Path
) -> None:
    workspace, url = served
    volume = tmp_path / "late-volume"
    history = workspace.history()
    seen = []

    def mount() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            runs = history.list_runs(1)
            if runs and runs[0].jobs["score"].reason is Reason.PRECONDITION_MISSING:
                seen.append(runs[0].jobs["score"])
                break
            time.sleep(0.05)
        volume.mkdir()

    helper = threading.Thread(target=mount)
    helper.start()
    try:
        with workspace.runner({TOKEN_ENV: "right"}) as local:
            run = local.run(build_scoring_pipeline(volume, TOKEN_ENV), params(url))
    finally:
        helper.join()
    [waiting] = seen
    assert waiting.state is JobState.PENDING
    assert f"path {volume}" in waiting.message
    assert run.state is JobState.SUCCEEDED


def test_a_wrong_token_fails_the_job_at_once(served: tuple[Workspace, str], tmp_path: Path) -> None:
    workspace, url = served
    volume = tmp_path / "volume"
    volume.mkdir()
    with workspace.runner({TOKEN_ENV: "wrong"}) as local:
        run = local.run(build_scoring_pipeline(volume, TOKEN_ENV), params(url))
    job = run.jobs["score"]
    assert run.state is JobState.FAILED
    assert job.reason is Reason.PERMANENT_ERROR
    assert job.attempt == 1
    assert "refused the request with 403" in job.message
    assert list(volume.iterdir()) == []
