"""Versions, names, aliases, the gate, rollback, the audit log, deletion and integrity."""

from __future__ import annotations

import hashlib
import itertools
import threading
from datetime import UTC, datetime

import pytest

from fixtures.registry import registry_at
from perfml.registry import (
    ConcurrentChangeError,
    MetricThreshold,
    PromotionRefusedError,
)
from perfml.registry.aliases import NothingToRollBackError
from perfml.registry.errors import ArtifactIntegrityError, InvalidNameError, NotFoundError
from perfml.registry.registry import AliasHeldError


def register(registry, make_artifact, content: bytes, **meta):
    meta.setdefault("detector", "seasonal")
    return registry.register("cpu", make_artifact(content), **meta)


def test_versions_are_numbered_content_addressed_and_carry_their_lineage(registry, make_artifact):
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)
    first = register(
        registry,
        make_artifact,
        b"model one",
        params={"window": 12},
        data_start=start,
        data_end=end,
        features=["cpu_util"],
        pipeline_run="run-7",
        metrics={"f1": 0.7},
        tags={"team": "sre"},
    )
    second = register(registry, make_artifact, b"model two")
    assert (first.version, second.version) == (1, 2)
    assert first.digest == hashlib.sha256(b"model one").hexdigest()
    again = register(registry, make_artifact, b"model one")
    assert again.version == 1  # the same bytes are the same version
    got = registry.get("cpu:1")
    assert (got.params, got.data_start, got.data_end) == ({"window": 12}, start, end)
    assert (got.features, got.pipeline_run, got.metrics) == (["cpu_util"], "run-7", {"f1": 0.7})
    assert got.tags == {"team": "sre"}
    assert got.detector == "seasonal"
    assert registry.get("cpu").version == 2  # latest
    assert registry.fetch("cpu:1").read_bytes() == b"model one"


@pytest.mark.parametrize("bad", ["", "../etc", "a/b", ".hidden", "x" * 129, "a..b", "sp ace"])
def test_bad_model_and_alias_names_are_refused(registry, make_artifact, bad):
    with pytest.raises(InvalidNameError):
        registry.register(bad, make_artifact(b"m"), detector="seasonal")
    register(registry, make_artifact, b"m")
    with pytest.raises(InvalidNameError):
        registry.set_alias("cpu", bad, 1)


def test_unknown_references_are_clear_errors(registry, make_artifact):
    with pytest.raises(NotFoundError, match="model 'nope' not found"):
        registry.get("nope@production")
    register(registry, make_artifact, b"m")
    with pytest.raises(NotFoundError, match="alias 'cpu@production' not found"):
        registry.resolve("cpu@production")
    with pytest.raises(NotFoundError, match="version 'cpu:9' not found"):
        registry.get("cpu:9")


def test_the_gate_refuses_with_the_failed_threshold_and_both_values(registry, make_artifact):
    register(registry, make_artifact, b"one", metrics={"f1": 0.60, "fp_rate": 0.02})
    register(registry, make_artifact, b"two", metrics={"f1": 0.62, "fp_rate": 0.05})
    gate = [
        MetricThreshold("f1", min_value=0.5, min_relative_change=0.05),
        MetricThreshold("fp_rate", min_absolute_change=0.0, greater_is_better=False),
    ]
    registry.promote("cpu", 1, thresholds=gate)  # no holder: only the minimum applies
    with pytest.raises(PromotionRefusedError) as refused:
        registry.promote("cpu", 2, thresholds=gate)
    message = str(refused.value)
    assert "f1: relative improvement 3.33% is below the required 5.00%" in message
    assert "(candidate 0.62, current 0.6)" in message
    assert "fp_rate: improvement -0.03 is below the required 0" in message
    assert registry.resolve("cpu@production").version == 1


def test_the_gate_evaluates_both_versions_with_the_evaluator(registry, make_artifact):
    register(registry, make_artifact, b"one")
    register(registry, make_artifact, b"two")
    registry.promote("cpu", 1)
    seen = []

    def evaluator(version):
        seen.append(version.version)
        return {"nab": {1: 60.0, 2: 72.0}[version.version]}

    promotion = registry.promote(
        "cpu", 2, thresholds=[MetricThreshold("nab", min_absolute_change=5)], evaluator=evaluator
    )
    assert sorted(seen) == [1, 2]
    assert promotion.gate is not None
    assert promotion.gate.candidate == {"nab": 72.0}
    assert promotion.gate.baseline == {"nab": 60.0}
    assert registry.history("cpu", "production")[-1].gate["candidate"] == {"nab": 72.0}


def test_force_promotes_past_the_gate_and_is_recorded(registry, make_artifact):
    register(registry, make_artifact, b"one", metrics={"f1": 0.9})
    register(registry, make_artifact, b"two", metrics={"f1": 0.1})
    registry.promote("cpu", 1)
    gate = [MetricThreshold("f1", min_absolute_change=0.0)]
    promotion = registry.promote("cpu", 2, thresholds=gate, force=True, reason="hotfix")
    assert promotion.move.forced
    assert promotion.gate is not None
    assert not promotion.gate.passed
    entry = registry.history("cpu")[-1]
    assert (entry.forced, entry.reason, entry.actor) == (True, "hotfix", "tester")
    assert entry.gate["failures"]


def test_rollback_walks_back_through_previous_holders(registry, make_artifact):
    for content in (b"1", b"2", b"3"):
        register(registry, make_artifact, content)
    for version in (1, 2, 3):
        registry.promote("cpu", version, reason=f"release {version}")
    assert registry.rollback("cpu", reason="bad release").to_version == 2
    assert registry.rollback("cpu").to_version == 1
    with pytest.raises(NothingToRollBackError):
        registry.rollback("cpu")
    log = registry.history("cpu", "production")
    assert [(e.action, e.from_version, e.to_version) for e in log] == [
        ("promote", None, 1),
        ("promote", 1, 2),
        ("promote", 2, 3),
        ("rollback", 3, 2),
        ("rollback", 2, 1),
    ]
    assert [e.revision for e in log] == [1, 2, 3, 4, 5]
    assert log[0].reason == "release 1"
    assert log[3].reason == "bad release"
    assert all(e.at <= f.at for e, f in itertools.pairwise(log))


def test_a_version_held_by_an_alias_cannot_be_deleted(registry, make_artifact):
    register(registry, make_artifact, b"1")
    register(registry, make_artifact, b"2")
    registry.set_alias("cpu", "staging", 1)
    with pytest.raises(AliasHeldError, match="cpu@staging"):
        registry.delete_version("cpu:1")
    deleted = registry.delete_version("cpu:2")
    with pytest.raises(NotFoundError):
        registry.get("cpu:2")
    with pytest.raises(NotFoundError):
        registry.artifacts.fetch(deleted.artifact_uri, deleted.digest, registry.cache_dir / "x")


def test_tags_on_models_and_versions(registry, make_artifact):
    register(registry, make_artifact, b"1")
    registry.set_tag("cpu", "owner", "sre")
    registry.set_tag("cpu:1", "validated", "yes")
    registry.delete_tag("cpu:1", "validated")
    registry.set_tag("cpu:1", "stage", "canary")
    assert registry.model("cpu").tags == {"owner": "sre"}
    assert registry.get("cpu:1").tags == {"stage": "canary"}


def test_an_artifact_whose_bytes_changed_is_refused(registry, make_artifact):
    version = register(registry, make_artifact, b"good bytes")
    stored = registry.artifacts._path(version.digest)
    stored.write_bytes(b"evil bytes")
    with pytest.raises(ArtifactIntegrityError, match=f"the registry recorded {version.digest}"):
        registry.fetch("cpu:1")


def test_racing_promotions_leave_one_winner_and_a_consistent_log(
    registry_url, tmp_path, make_artifact
):
    store = tmp_path / "artifacts"
    with registry_at(registry_url, store, actor="setup") as setup:
        for content in (b"base", b"a", b"b", b"c", b"d"):
            setup.register("cpu", make_artifact(content), detector="seasonal")
        setup.promote("cpu", 1)
    racers = 4
    barrier = threading.Barrier(racers)
    outcomes: dict[int, str] = {}

    def evaluator(version):
        if version.version != 1:
            barrier.wait(timeout=30)  # every racer has read the alias before any moves it
        return {"score": float(version.version)}

    def race(version: int) -> None:
        with registry_at(registry_url, store, actor=f"racer-{version}") as mine:
            try:
                mine.promote(
                    "cpu", version, thresholds=[MetricThreshold("score")], evaluator=evaluator
                )
                outcomes[version] = "won"
            except ConcurrentChangeError as exc:
                outcomes[version] = str(exc)

    threads = [threading.Thread(target=race, args=(v,)) for v in (2, 3, 4, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = [v for v, outcome in outcomes.items() if outcome == "won"]
    assert len(winners) == 1, outcomes
    assert all("moved from version 1 to" in o for o in outcomes.values() if o != "won")
    with registry_at(registry_url, store, actor="check") as check:
        log = check.history("cpu", "production")
        assert [(e.from_version, e.to_version) for e in log] == [(None, 1), (1, winners[0])]
        assert check.resolve("cpu@production").version == winners[0]


def test_a_registry_at_schema_1_is_migrated_and_its_versions_kept(registry_url, tmp_path):
    """Versions registered before entities were recorded read back with entities None."""
    from sqlalchemy import text

    from perfml.metadata import MetadataDatabase

    artifact = tmp_path / "old.bin"
    artifact.write_bytes(b"registered by a perfml of schema 1")
    with registry_at(registry_url, tmp_path / "artifacts") as old:
        old.register("cpu", artifact, detector="seasonal", entities=["h1"])
        with old.database.writer.begin() as con:  # as schema 1 left it
            con.execute(text("ALTER TABLE model_versions DROP COLUMN entities"))
            con.execute(text("UPDATE perfml_schema SET version = 1 WHERE component = 'registry'"))
    with registry_at(registry_url, tmp_path / "artifacts") as new:
        (version,) = new.versions("cpu")
        assert version.entities is None
        artifact.write_bytes(b"a new version")
        again = new.register("cpu", artifact, detector="seasonal", entities=["h2", "h1"])
        assert again.entities == ("h1", "h2")
    with MetadataDatabase(registry_url) as database:
        assert database.schema_versions()["registry"] == 2
