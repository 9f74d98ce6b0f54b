"""The built-in training pipeline, end to end on a small generated fleet."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from perfml.config import Settings
from perfml.detectors.series import load_series
from perfml.detectors.streaming import LAST_TS
from perfml.evaluation.labelled_window import LabelledWindowEvaluator, ThresholdRule
from perfml.featurestore import FeatureStore
from perfml.pipelines.local import TrainingRequest
from perfml.pipelines.states import JobState, RunRecord
from perfml.pipelines.training import (
    LONG_BATCH,
    build_training_pipeline,
    split_instant,
    train,
)
from perfml.registry.detector_versions import load_detector
from perfml.sources.fleet import generate_fleet, write_fleet
from perfml.sources.ingestion import ingest_corpus
from perfml.timeparse import parse_instant
from perfml.workspace import Workspace

START, END = "2024-01-01T00:00:00+00:00", "2024-03-01T00:00:00+00:00"
METRIC = "request_latency_ms"
VALIDATION = 0.25
"""The held-out window's first quarter chooses the threshold: the two hosts' held-out latency
anomalies fall one on each side of it."""


@dataclass
class Trained:
    run: RunRecord
    params: dict[str, object]
    workspace: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    workspace = tmp_path_factory.mktemp("training")
    write_fleet(generate_fleet(hosts=2, months=2, seed=7), workspace / "fleet")
    params: dict[str, object] = {
        "metrics": [METRIC],
        "start": START,
        "end": END,
        "detector": "streaming",
        "model": "latency",
        "batch_rows": 4096,
        "promote": True,
        "gate": [{"metric": "nab_standard", "min_absolute_change": 0.0}],
        "validation": VALIDATION,
        "run_id": "training-1",
    }
    with Workspace(Settings(workspace=workspace)) as opened:
        ingest_corpus(opened.store(), workspace / "fleet")
        with opened.runner(environ={}) as runner:  # the steps are handed the store, the registry
            run = runner.run(build_training_pipeline(), params, run_id="training-1")
    return Trained(run, params, workspace)


def workspace_of(trained: Trained) -> Workspace:
    return Workspace(Settings(workspace=trained.workspace))


def test_every_job_succeeds_and_the_version_carries_its_lineage(trained: Trained) -> None:
    run = trained.run
    assert run.state is JobState.SUCCEEDED, run.message
    assert list(run.jobs) == ["query", "preprocess", "train", "evaluate", "register"]
    assert all(j.state is JobState.SUCCEEDED for j in run.jobs.values())
    assert all(j.usage.cpu_seconds > 0 and j.usage.peak_memory_bytes > 0 for j in run.jobs.values())
    figures = json.loads((Path(run.workspace) / "evaluate" / "outputs" / "figures").read_text())
    assert {"nab_standard", "event_f1", "point_f1", "threshold"} <= set(figures["figures"])
    assert figures["figures"]["test_windows"] >= 1
    with workspace_of(trained) as opened:
        version, detector = load_detector(opened.registry(), "latency@production")
    assert version.version == 1
    assert version.pipeline_run == run.run_id
    assert version.features == [METRIC]
    assert version.entities == ("host-0000", "host-0001")  # the series it learnt
    assert version.data_start is not None
    assert version.data_start.isoformat() == START
    # judged on the held-out rows, then taught them: the version knows the whole window
    assert version.data_end == parse_instant(END, "end")
    assert version.metrics == pytest.approx(figures["figures"])
    judged = load_series(Path(run.workspace) / "train" / "outputs" / "model_file")
    split = split_instant(START, END, 0.2).timestamp() * 1000
    assert isinstance(judged.bank, dict)
    assert isinstance(detector.bank, dict)
    assert np.all(judged.bank["memory"][:, LAST_TS] < split)  # the last point each learnt
    assert np.all(detector.bank["memory"][:, LAST_TS] > split)
    assert version.tags["pipeline"] == "training"
    points = FeatureStore(trained.workspace / "store").read(METRIC, "host-0000", start="2024-02-20")
    # one state per series it learnt, each its own, and a prior for a host never seen
    assert detector.entities == ["host-0000", "host-0001"]
    own = detector.series("host-0000").score(points.select(["ts", "value"]))
    other = detector.series("host-0001").score(points.select(["ts", "value"]))
    assert len(own) == points.num_rows
    assert np.all((own >= 0) & (own <= 1))
    assert not np.array_equal(own, other)


def test_preprocess_streams_the_training_rows_as_arrow_batches(trained: Trained) -> None:
    folder = Path(trained.run.workspace) / "preprocess"
    summary = json.loads((folder / "result.json").read_text())["value"]
    sizes = []
    with pa.OSFile(str(folder / "outputs" / "batches"), "rb") as f, pa.ipc.open_stream(f) as r:
        assert r.schema == LONG_BATCH
        for batch in r:  # one batch at a time, as training reads it
            sizes.append(batch.num_rows)
            assert batch.column("ts").to_pylist()[-1] < split_instant(START, END, 0.2)
    assert len(sizes) > 1
    assert max(sizes) <= 4096
    assert sum(sizes) == summary["rows"]


def test_train_learns_the_fleet_stream_into_one_loadable_detector(
    trained: Trained, tmp_path: Path
) -> None:
    batches = Path(trained.run.workspace) / "preprocess" / "outputs" / "batches"
    out = tmp_path / "model.zip"
    first = train(batches, "streaming", {}, 1, 2_000_000, out)
    again = train(batches, "streaming", {}, 1, 2_000_000, tmp_path / "again.zip")
    assert first["sha256"] == again["sha256"]  # deterministic
    assert (
        first["rows"]
        == json.loads((batches.parents[1] / "result.json").read_text())["value"]["rows"]
    )


def test_chunks_learnt_in_parallel_processes_give_the_same_states(
    trained: Trained, tmp_path: Path
) -> None:
    """Each host's rows are a chunk of their own here, learnt by two processes: the same
    states, prior and bytes as one process learning the stream at once."""
    batches = Path(trained.run.workspace) / "preprocess" / "outputs" / "batches"
    whole = train(batches, "streaming", {}, 1, 2_000_000, tmp_path / "whole.zip")
    apart = train(batches, "streaming", {}, 2, 1, tmp_path / "apart.zip")
    assert apart == whole | {"sha256": apart["sha256"]}
    assert apart["sha256"] == whole["sha256"]
    assert load_series(tmp_path / "apart.zip").entities == ["host-0000", "host-0001"]


def test_a_univariate_detector_refuses_two_metrics(trained: Trained) -> None:
    params = {
        **trained.params, "metrics": [METRIC, "cpu_util"], "promote": False, "run_id": "two",
    }  # fmt: skip
    with workspace_of(trained) as opened, opened.runner(environ={}) as runner:
        run = runner.run(build_training_pipeline(retries=0), params, run_id="two")
    failed = run.jobs["preprocess"]
    assert run.state is JobState.FAILED
    assert failed.state is JobState.FAILED
    assert "models one metric" in failed.message
    assert run.jobs["register"].state is JobState.CANCELLED


def test_overrides_reach_every_step() -> None:
    pipeline = build_training_pipeline(timeout=30, retries=0)
    assert {t.step.timeout for t in pipeline.tasks.values()} == {30}
    assert {t.step.retries for t in pipeline.tasks.values()} == {0}
    assert all(t.step.resources.memory_bytes > 0 for t in build_training_pipeline().tasks.values())


def test_the_threshold_recorded_is_chosen_on_the_validation_slice(trained: Trained) -> None:
    document = json.loads(
        (Path(trained.run.workspace) / "evaluate" / "outputs" / "figures").read_text()
    )
    split = split_instant(START, END, 0.2)
    cut = split + (parse_instant(END, "end") - split) * VALIDATION
    assert document["validation"] == [split.isoformat(), cut.isoformat()]
    assert document["test"] == [cut.isoformat(), END]
    assert "swept on the validation slice" in document["note"]
    judged = load_series(Path(trained.run.workspace) / "train" / "outputs" / "model_file")
    with workspace_of(trained) as opened:
        version = opened.registry().get("latency:1")
        gate = LabelledWindowEvaluator(
            None, opened.store(), split, parse_instant(END, "end"), validation=VALIDATION
        )
        measured = gate.measure(judged, [METRIC])  # as it was before it learnt the window
    assert measured.rule is ThresholdRule.VALIDATION
    assert version.threshold == measured.figures["threshold"]
    assert version.metrics == pytest.approx(measured.figures)


def test_the_default_gate_refuses_a_clearly_worse_candidate_and_names_the_figures(
    trained: Trained,
) -> None:
    # A candidate that never scores (its series never finish warming up) against v1, with
    # the gate of an untouched perfml.yaml.
    request = TrainingRequest(
        detector="streaming", metrics=[METRIC], start=datetime.fromisoformat(START),
        end=datetime.fromisoformat(END), model="latency", params={"warmup": 1_000_000},
        holdout=0.2, promote=True, validation=VALIDATION,
    )  # fmt: skip
    with workspace_of(trained) as opened:
        outcome = opened.train(request).outcome
        holder = opened.registry().get("latency@production")
    assert outcome.version == 2
    assert outcome.promoted is None
    assert holder.version == 1  # production untouched
    gate = outcome.gate
    assert gate is not None
    assert not gate.passed
    assert gate.baseline is not None
    candidate, current = gate.candidate, gate.baseline
    assert candidate["event_f1"] == 0.0
    assert current["event_f1"] >= 0.5
    assert candidate["threshold"] != current["threshold"]  # each chose its own on validation
    assert {t["metric"]: t["max_drop"] for t in gate.thresholds} == {
        "nab_standard": 5.0,
        "event_f1": 0.05,
    }
    refusal = gate.reason
    assert (
        f"event_f1: candidate 0 is below the current {current['event_f1']:.4g} by "
        f"{current['event_f1']:.4g}, more than the margin 0.05" in refusal
    )
    assert "event_f1: candidate 0 misses the minimum 0.5" in refusal
    assert f"nab_standard: candidate {candidate['nab_standard']:.4g} is below the current" in (
        refusal
    )
    assert set(gate.notes) == {"latency:1", "latency:2"}
