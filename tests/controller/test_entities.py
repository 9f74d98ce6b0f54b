"""The controller on a 30-host fleet where a third of the hosts change workload in March.

Over the whole fleet the change barely shows (each host runs at its own level, so the fleet's
distribution is a wide mixture), while each moved host's own series is far from January's:
the share of entities fires, and the retrain — the real training pipeline on the local
runner — refreshes the moved hosts' states and keeps production's for the others. With seed
11 the generator moves 10 of the 30 hosts, each at a KL of 0.7 or more against its own
January, while no other host goes over 0.1 in March.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from perfml.config import ControllerSettings, RegistrySettings, Settings
from perfml.controller import Action, Controller
from perfml.detectors import create
from perfml.detectors.series import SeriesStates, fit_series
from perfml.featurestore import FeatureStore
from perfml.registry.detector_versions import load_detector, register_detector
from perfml.sources.fleet import Fleet, generate_fleet
from perfml.workspace import Workspace

METRIC = "request_latency_ms"
MODEL = "latency"
JANUARY = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC))
FEBRUARY_END = datetime(2024, 3, 1, tzinfo=UTC)
MARCH_END = datetime(2024, 4, 1, tzinfo=UTC)


@dataclass
class Generated:
    fleet: Fleet
    store: Path


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    root = tmp_path_factory.mktemp("entity-fleet")
    fleet = generate_fleet(hosts=30, months=3, seed=11, drift_months=[2])
    FeatureStore(root / "store").write(fleet.iter_hosts())
    return Generated(fleet, root / "store")


@pytest.fixture
def workspace(generated: Generated, tmp_path: Path) -> Iterator[Workspace]:
    """A fresh registry whose production learnt January, one state per host."""
    settings = Settings(workspace=tmp_path, registry=RegistrySettings())
    settings = settings.model_copy(
        update={
            "featurestore": settings.featurestore.model_copy(update={"path": generated.store}),
            "controller": ControllerSettings(models=(MODEL,), quality=False),
        }
    )
    with Workspace(settings) as opened:
        registry = opened.registry("controller", background_delivery=False)
        rows = opened.store().read(METRIC, start=JANUARY[0], end=JANUARY[1])
        hosts = np.asarray(rows.column("entity").to_pylist(), dtype=object)
        ts = rows.column("ts").cast(pa.int64()).to_numpy()
        values = rows.column("value").to_numpy()
        names = sorted(set(hosts))
        states = fit_series(
            create("streaming"), names,
            [(ts[hosts == name], values[hosts == name]) for name in names],
        )  # fmt: skip
        first = register_detector(
            registry, MODEL, states, features=[METRIC], data_start=JANUARY[0],
            data_end=JANUARY[1], metrics={"threshold": 0.3},
        )  # fmt: skip
        registry.promote(MODEL, first.version, "production", force=True, reason="january")
        yield opened


def state_bytes(states: SeriesStates, entity: str) -> list[bytes]:
    meta, arrays = states.series(entity).get_state()
    return [repr(meta).encode(), *(np.ascontiguousarray(a).tobytes() for a in arrays.values())]


def test_a_share_of_drifted_hosts_refreshes_their_states_and_keeps_the_others(
    workspace: Workspace, generated: Generated
) -> None:
    moved = sorted(generated.fleet.drift_events[0].hosts)
    assert 0.25 <= len(moved) / 30 <= 0.4  # about a third of the fleet
    loop = workspace.controller()  # the workspace's trainer: the training pipeline
    production, states = load_detector(loop.registry, f"{MODEL}@production")
    (decision,) = loop.run_once(MARCH_END)
    assert decision.figures["drift"][METRIC] <= 0.1  # the fleet as a whole hardly moved
    assert decision.rule == "entities", decision.reasons
    assert decision.drifted_entities == moved
    assert decision.entity_share == pytest.approx(len(moved) / 30)
    entities = decision.figures["entities"]
    assert (entities["drifted_count"], entities["judged"], entities["fraction"]) == (
        len(moved), 30, 0.2,
    )  # fmt: skip
    assert (
        "for a share of the entities: 10 of 30 entities (33%) over kl 0.1, > 20%"
        in (decision.reasons[0])
    )
    assert all(host in decision.reasons[0] for host in moved)
    assert decision.action in (Action.PROMOTED, Action.KEPT), decision.reasons
    assert decision.run_id is not None
    assert decision.run_id.startswith("training-")
    assert decision.candidate is not None
    candidate, fresh = load_detector(loop.registry, decision.candidate)
    assert candidate.tags["kept_from"] == production.ref
    assert candidate.tags["refreshed"] == str(len(moved))
    assert sorted(fresh.entities) == sorted(states.entities)
    for host in states.entities:
        if host in moved:
            assert state_bytes(fresh, host) != state_bytes(states, host), host
        else:
            assert state_bytes(fresh, host) == state_bytes(states, host), host


def test_a_month_without_a_moved_host_does_not_retrain(workspace: Workspace) -> None:
    loop = workspace.controller()
    before = loop.registry.get(f"{MODEL}@production").ref
    (decision,) = loop.run_once(FEBRUARY_END)
    assert decision.action is Action.NO_DRIFT, decision.reasons
    assert decision.rule is None
    assert decision.entity_share is not None
    assert decision.entity_share <= 0.2
    assert decision.reasons[-1].startswith("entities: ")
    assert decision.candidate is None
    assert decision.run_id is None
    assert loop.registry.get(f"{MODEL}@production").ref == before
    assert [v.ref for v in loop.registry.versions(MODEL)] == [before]


def test_a_share_under_the_fraction_does_not_retrain(workspace: Workspace) -> None:
    loop: Controller = workspace.controller()
    loop.policy = replace(loop.policy, entity_fraction=0.5)
    (decision,) = loop.run_once(MARCH_END)
    assert decision.action is Action.NO_DRIFT, decision.reasons
    assert "10 of 30 entities (33%) over kl 0.1, <= 50%" in decision.reasons[-1]
    assert len(decision.drifted_entities) == 10


def test_a_host_is_judged_against_the_last_stretch_of_the_training_window() -> None:
    from perfml.controller.loop import recent_part
    from perfml.drift.windows import Window

    day = 86_400_000
    training = Window(0, 60 * day, "2024-01..2024-03")
    month = Window(60 * day, 91 * day, "2024-03")
    assert (recent_part(training, month).start, recent_part(training, month).end) == (
        29 * day,
        60 * day,
    )
    short = Window(40 * day, 60 * day, "short")
    assert recent_part(short, month) == short  # shorter than the month: all of it
