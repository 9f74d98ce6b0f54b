"""The workspace builds each part once from the settings, refuses once closed, and on closing
announces what it changed in the registry, and only that."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures.registry import make_artifact, registry_at
from perfml.config import Settings
from perfml.errors import UsageError
from perfml.workspace import UnknownPartError, Workspace, open_job_workspace
from registry.test_events import Receiver

__all__ = ["make_artifact"]


def test_each_part_is_built_once_and_shared(tmp_path: Path) -> None:
    with Workspace(Settings(workspace=tmp_path / "ws")) as workspace:
        assert workspace.path.is_absolute()
        assert workspace.store() is workspace.store()
        assert workspace.part("store") is workspace.store()
        registry = workspace.registry()
        assert workspace.registry() is registry
        assert workspace.registry("controller") is not registry  # its own audit actor
        assert workspace.registry("controller").actor == "controller"
        # every table lives in the one metadata database
        assert workspace.history().database is workspace.metadata()
        assert workspace.alerts().database is registry.database
        with pytest.raises(UnknownPartError, match="'stores'.*store, registry"):
            workspace.part("stores")
    with pytest.raises(UsageError, match="closed"):
        workspace.store()


def test_a_relative_workspace_is_made_absolute_for_the_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with Workspace(Settings(workspace=Path("ws"))) as workspace:
        source = workspace.parts_source()
    settings = source.config["settings"]
    assert settings["workspace"] == str(tmp_path / "ws")
    assert settings["featurestore"]["path"] == str(tmp_path / "ws" / "store")
    monkeypatch.chdir("/")  # a job runs in a folder of its own
    with open_job_workspace(json.loads(json.dumps(source.config))) as opened:
        assert opened.settings.store_path == tmp_path / "ws" / "store"
        assert opened.registry().actor == "pipeline:runner"


def test_closing_announces_only_what_this_workspace_changed(tmp_path: Path, make_artifact) -> None:
    receiver = Receiver()
    settings = Settings(workspace=tmp_path / "ws")
    try:
        with Workspace(settings) as workspace:
            workspace.registry().add_webhook(receiver.url, "k", ["version_created"])
        # another process registers a version and ends before delivering its event
        with registry_at(settings.registry_url, settings.artifacts_path) as other:
            other.register("cpu", make_artifact(b"v1"), detector="streaming")
        with Workspace(settings) as workspace:  # a read-only command, as the CLI opens it
            registry = workspace.registry(background_delivery=False)
            assert [m.name for m in registry.models()] == ["cpu"]
        assert receiver.received == []  # it delivered nothing: it changed nothing
        with Workspace(settings) as workspace:
            registry = workspace.registry(background_delivery=False)
            registry.register("cpu", make_artifact(b"v2"), detector="streaming")
            assert receiver.received == []  # delivered when the command ends
        versions = sorted(json.loads(body)["version"] for _, body in receiver.received)
        assert versions == [1, 2]  # its own, and the one left waiting by the other process
    finally:
        receiver.close()


def test_a_training_run_announces_its_version_when_its_job_ends(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from perfml.pipelines.local import TrainingRequest
    from perfml.sources.fleet import generate_fleet, write_fleet
    from perfml.sources.ingestion import ingest_corpus

    receiver = Receiver()
    write_fleet(generate_fleet(hosts=1, months=2, seed=4), tmp_path / "fleet")
    try:
        with Workspace(Settings(workspace=tmp_path / "ws")) as workspace:
            ingest_corpus(workspace.store(), tmp_path / "fleet")
            workspace.registry().add_webhook(receiver.url, "k", ["version_created"])
            request = TrainingRequest(
                detector="streaming", metrics=["request_latency_ms"],
                start=datetime(2024, 1, 1, tzinfo=UTC), end=datetime(2024, 3, 1, tzinfo=UTC),
                model="latency",
            )  # fmt: skip
            done = workspace.train(request)
            # sent by the register step's process, before the run ended
            (body,) = [json.loads(body) for _, body in receiver.received]
            assert (body["model"], body["version"]) == ("latency", done.outcome.version)
    finally:
        receiver.close()


def test_the_gate_reads_its_thresholds_and_validation_share_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime, timedelta

    import pyarrow as pa

    from perfml.config import RegistrySettings, ThresholdSettings
    from perfml.pipelines.local import TrainingRequest

    gate = (ThresholdSettings(metric="event_f1", min_value=0.7, max_drop=0.02),)
    settings = Settings(
        workspace=tmp_path / "ws",
        registry=RegistrySettings(gate=gate, gate_window="10d", gate_validation=0.3),
    )
    last = datetime(2024, 3, 1, tzinfo=UTC)
    with Workspace(settings) as workspace:
        point = {"metric": ["latency"], "entity": ["host-a"], "value": [1.0]}
        stamp = pa.array([last], pa.timestamp("ms", tz="UTC"))
        workspace.store().write(pa.table({**point, "ts": stamp}))
        evaluator = workspace.gate_evaluator()
        assert evaluator.validation == 0.3
        assert evaluator.split == (evaluator.end - timedelta(days=7)).replace(microsecond=0)

        asked: list[TrainingRequest] = []
        monkeypatch.setattr(
            "perfml.workspace.run_training",
            lambda runner, request, pipelines: asked.append(request),
        )
        first = last - timedelta(days=9)
        workspace.train(TrainingRequest("streaming", ["latency"], first, last))
        workspace.train(TrainingRequest("streaming", ["latency"], first, last, validation=0.6))
    assert [request.validation for request in asked] == [0.3, 0.6]
    assert [threshold.max_drop for threshold in asked[0].gate or ()] == [0.02]
    assert asked[0].run_params("r")["validation"] == 0.3
