"""The controller's decisions on a generated fleet whose workload changes in its third month.

Production is trained on January; the change hits part of the fleet in March. The
trainer here runs what the training pipeline's steps run — fit on the recent data, register
with the lineage, promote through the registry's gate on the held-out recent window — in this
process, so each test takes seconds; ``test_the_training_pipeline_retrains_...`` runs the real
pipeline on the local runner once.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from fixtures.detectors import RollingZScore
from perfml.config import ControllerSettings, RegistrySettings, Settings
from perfml.controller import (
    Action,
    Controller,
    ControllerCollector,
    Policy,
    latest_complete_window,
)
from perfml.detectors import Detector, create, register
from perfml.detectors.frames import Floats, Millis
from perfml.detectors.series import fit_series
from perfml.evaluation.labelled_window import GateDataError, LabelledWindowEvaluator
from perfml.featurestore import FeatureStore
from perfml.pipelines.outcomes import GateVerdict, TrainingOutcome
from perfml.pipelines.training import split_instant
from perfml.registry import MetricThreshold, PromotionRefusedError
from perfml.registry.detector_versions import register_detector
from perfml.registry.records import ModelVersion
from perfml.sources.fleet import generate_fleet, write_fleet
from perfml.sources.ingestion import ingest_corpus
from perfml.workspace import Workspace

METRIC = "request_latency_ms"
MODEL = "latency"


@register
class Silent(Detector):
    """Never alarms: a candidate the gate must refuse."""

    name = "test_controller_silent"

    def reset(self) -> None:
        pass

    def update(self, ts: int, value: Any) -> float:
        return 0.0

    def score_values(self, ts: Millis, values: Floats) -> Floats:
        return np.zeros(len(ts))

    def get_state(self) -> Any:
        return {}, {}

    def set_state(self, meta: Any, arrays: Any) -> None:
        pass


@dataclass
class Fleet:
    root: Path
    settings: Settings


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    root = tmp_path_factory.mktemp("controller-fleet")
    write_fleet(generate_fleet(hosts=8, months=4, seed=11, drift_months=[2]), root / "corpus")
    ingest_corpus(FeatureStore(root / "store"), root / "corpus")
    return Fleet(root, Settings(workspace=root))


@pytest.fixture
def workspace(fleet: Fleet, tmp_path: Path) -> Iterator[Workspace]:
    """A fresh registry (production v1 trained on January) over the module's store."""
    settings = Settings(
        workspace=tmp_path,
        featurestore=fleet.settings.featurestore.model_copy(update={"path": fleet.root / "store"}),
        registry=RegistrySettings(),
        controller=ControllerSettings(models=(MODEL,)),
    )
    with Workspace(settings) as opened:
        trainer = InProcessTrainer(opened)
        first = trainer.fit_and_register(
            "streaming", {}, datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)
        )
        trainer.registry.promote(MODEL, first.version, "production", force=True, reason="first")
        yield opened


class InProcessTrainer:
    """What the pipeline's train, evaluate and register steps do, in this process, on the
    workspace's parts."""

    def __init__(self, workspace: Workspace) -> None:
        self.registry = workspace.registry("controller", background_delivery=False)
        self.store = workspace.store()
        self.thresholds: list[MetricThreshold] = workspace.gate_thresholds()
        self.kind: str | None = None
        self.calls: list[tuple[datetime, datetime]] = []
        self.refreshed: list[list[str] | None] = []

    def fit_and_register(
        self, kind: str, params: dict[str, Any], start: datetime, split: datetime
    ) -> ModelVersion:
        # as the pipeline's train step does: one state per host, each from its own history
        rows = self.store.read(METRIC, start=start, end=split)
        hosts = np.asarray(rows.column("entity").to_pylist(), dtype=object)
        ts = rows.column("ts").cast(pa.int64()).to_numpy()
        values = rows.column("value").to_numpy()
        names = sorted(set(hosts))
        detector = fit_series(
            create(kind, **params), names,
            [(ts[hosts == name], values[hosts == name]) for name in names],
        )  # fmt: skip
        return register_detector(
            self.registry, MODEL, detector, features=[METRIC], data_start=start,
            data_end=split, metrics={"threshold": 0.3},  # what the pipeline's evaluate records
        )  # fmt: skip

    def __call__(
        self,
        production: ModelVersion,
        start: datetime,
        end: datetime,
        policy: Policy,
        *,
        refresh: Sequence[str] | None = None,
    ) -> TrainingOutcome:
        self.calls.append((start, end))
        self.refreshed.append(None if refresh is None else list(refresh))
        split = split_instant(start.isoformat(), end.isoformat(), policy.holdout)
        kind = self.kind or production.detector
        version = self.fit_and_register(
            kind, production.params if not self.kind else {}, start, split
        )
        evaluator = LabelledWindowEvaluator(self.registry, self.store, split, end)
        outcome = TrainingOutcome(run_id="in-process", model=MODEL, version=version.version)
        try:
            done = self.registry.promote(
                MODEL, version.version, policy.alias, thresholds=self.thresholds,
                evaluator=evaluator,
            )  # fmt: skip
        except PromotionRefusedError as refused:
            return outcome.model_copy(update={"gate": GateVerdict.of(refused.gate, str(refused))})
        except GateDataError as missing:
            return outcome.model_copy(
                update={"gate": GateVerdict(passed=False, reason=str(missing))}
            )
        return outcome.model_copy(
            update={"promoted": policy.alias, "gate": GateVerdict.of(done.gate)}
        )


@pytest.fixture
def controller(workspace: Workspace) -> tuple[Controller, InProcessTrainer]:
    trainer = InProcessTrainer(workspace)
    loop = workspace.controller(trainer)
    loop.policy = replace(loop.policy, quality=False)  # see test_quality_...
    return loop, trainer


MARCH_END = datetime(2024, 4, 1, tzinfo=UTC)  # March, the month of the change, is complete
FEBRUARY_END = datetime(2024, 3, 1, tzinfo=UTC)


def production(controller: Controller) -> str:
    return controller.registry.get(f"{MODEL}@production").ref


def test_the_latest_complete_window_is_the_one_before_now() -> None:
    assert latest_complete_window(datetime(2024, 4, 1, tzinfo=UTC), "monthly").label == "2024-03"
    assert latest_complete_window(datetime(2024, 4, 9, tzinfo=UTC), "monthly").label == "2024-03"
    assert latest_complete_window(datetime(2024, 4, 9, tzinfo=UTC), "daily").label == "2024-04-08"
    rolling = latest_complete_window(datetime(2024, 4, 9, tzinfo=UTC), "7d")
    assert rolling.end_time == datetime(2024, 4, 9, tzinfo=UTC)


def test_no_drift_does_nothing(controller: tuple[Controller, InProcessTrainer]) -> None:
    loop, trainer = controller
    before = production(loop)
    # February: the same workload as January's
    (decision,) = loop.run_once(datetime(2024, 3, 1, tzinfo=UTC))
    assert decision.action is Action.NO_DRIFT, decision.reasons
    assert decision.window == "2024-02"
    assert decision.figures["drift"][METRIC] <= 0.1
    assert trainer.calls == []
    assert production(loop) == before


def test_drift_retrains_and_promotes_a_better_candidate(workspace: Workspace) -> None:
    # Production never alarms; the retrain learns the fleet with a rolling z-score. On this
    # 8-host fleet the test slice holds two labelled windows and no detector here reaches the
    # default floors (NAB about 30, event F1 about 0.2 at best): the gate is the default
    # margins, which a candidate that catches what production misses clears.
    trainer = InProcessTrainer(workspace)
    silent = trainer.fit_and_register(
        Silent.name, {}, datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)
    )
    trainer.registry.promote(MODEL, silent.version, "production", force=True, reason="silent")
    trainer.kind = RollingZScore.name
    trainer.thresholds = [
        MetricThreshold("nab_standard", max_drop=5.0),
        MetricThreshold("event_f1", max_drop=0.05),
    ]
    loop = workspace.controller(trainer)
    loop.policy = replace(loop.policy, quality=False)
    before = production(loop)
    (decision,) = loop.run_once(MARCH_END)
    assert decision.window == "2024-03"
    assert decision.figures["drift"][METRIC] > 0.1
    assert trainer.calls == [(datetime(2024, 2, 1, tzinfo=UTC), MARCH_END)]  # the last 60 days
    assert decision.action is Action.PROMOTED, decision.reasons
    assert decision.candidate is not None
    assert production(loop) == decision.candidate != before
    gate = decision.figures["gate"]
    assert gate["passed"] is True
    # both scored on the same test slice, each at its threshold chosen on validation
    assert gate["baseline"]["test_windows"] == gate["candidate"]["test_windows"] >= 1
    assert gate["candidate"]["event_f1"] > gate["baseline"]["event_f1"] == 0.0
    assert gate["candidate"]["nab_standard"] > gate["baseline"]["nab_standard"]


def test_drift_over_the_fleet_retrains_every_series(
    controller: tuple[Controller, InProcessTrainer],
) -> None:
    loop, trainer = controller
    trainer.kind = Silent.name
    (decision,) = loop.run_once(MARCH_END)
    assert decision.figures["drift"][METRIC] > 0.1
    assert decision.rule == "fleet"
    assert decision.reasons[0].startswith("drift high in 2024-03 over the fleet: ")
    assert trainer.refreshed == [None]  # every state learnt afresh, as before
    assert decision.entity_share is not None  # measured all the same, and listed
    assert decision.figures["entities"]["judged"] == 8


def test_drift_with_a_worse_candidate_keeps_production(
    controller: tuple[Controller, InProcessTrainer],
) -> None:
    loop, trainer = controller
    trainer.kind = Silent.name
    before = production(loop)
    (decision,) = loop.run_once(MARCH_END)
    assert decision.action is Action.KEPT
    assert "the candidate did not clear the gate: kept production" in decision.reasons[-1]
    assert decision.candidate is not None
    assert decision.candidate != before
    assert production(loop) == before
    assert decision.figures["gate"]["passed"] is False
    failures = decision.figures["gate"]["failures"]
    # the default gate: a silent candidate falls below production by more than the margins
    assert any(f.startswith("event_f1: candidate 0 is below the current") for f in failures)
    assert any("more than the margin 5" in f for f in failures), failures


def test_a_second_check_of_the_same_window_does_nothing(
    controller: tuple[Controller, InProcessTrainer],
) -> None:
    loop, trainer = controller
    trainer.kind = Silent.name
    (first,) = loop.run_once(MARCH_END)
    (again,) = loop.run_once(datetime(2024, 4, 20, tzinfo=UTC))  # still March: the latest
    assert again == first
    assert len(trainer.calls) == 1
    assert [d.window for d in loop.decisions.history()] == ["2024-03"]


def test_a_failed_retrain_leaves_production_serving(
    controller: tuple[Controller, InProcessTrainer],
) -> None:
    loop, _ = controller
    before = production(loop)

    def broken(*_: Any, **__: Any) -> TrainingOutcome:
        raise RuntimeError("the training run was killed")

    loop.trainer = broken
    (decision,) = loop.run_once(MARCH_END)
    assert decision.action is Action.FAILED
    assert "the training run was killed" in decision.reasons[0]
    assert decision.production == before == production(loop)
    assert loop.registry.history(MODEL, "production")[-1].reason == "first"


def test_cooldown_and_budget_hold_back_retrains(workspace: Workspace) -> None:
    trainer = InProcessTrainer(workspace)
    trainer.kind = Silent.name
    decisions = workspace.decisions()
    weekly = Policy(every="7d", cooldown=Policy().cooldown * 2, max_retrains=1, quality=False)
    loop = Controller(trainer.registry, trainer.store, decisions, trainer, [MODEL], weekly)
    first = loop.check(MODEL, datetime(2024, 3, 22, tzinfo=UTC))
    assert first.action is Action.KEPT
    second = loop.check(MODEL, datetime(2024, 3, 29, tzinfo=UTC))
    assert second.action is Action.COOLDOWN, second.reasons
    loop.policy = Policy(every="7d", cooldown=Policy().cooldown * 0, max_retrains=1, quality=False)
    third = loop.check(MODEL, datetime(2024, 4, 1, tzinfo=UTC))
    assert third.action is Action.BUDGET_EXHAUSTED, third.reasons
    assert len(trainer.calls) == 1
    counts = decisions.counts()
    assert counts == {"kept": 1, "cooldown": 1, "budget_exhausted": 1}


def test_too_few_points_is_not_judged(controller: tuple[Controller, InProcessTrainer]) -> None:
    loop, trainer = controller
    (decision,) = loop.run_once(datetime(2024, 6, 1, tzinfo=UTC))  # May: no data at all
    assert decision.action is Action.INSUFFICIENT_DATA
    assert trainer.calls == []


def test_the_actions_are_counted_for_prometheus(
    controller: tuple[Controller, InProcessTrainer],
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    loop, trainer = controller
    trainer.kind = Silent.name
    loop.run_once(FEBRUARY_END)
    (march,) = loop.run_once(MARCH_END)
    registry = CollectorRegistry()
    registry.register(ControllerCollector(loop.decisions, drift=True))
    text = generate_latest(registry).decode()
    assert 'perfml_controller_actions_total{action="no_drift"} 1.0' in text
    assert 'perfml_controller_actions_total{action="kept"} 1.0' in text
    assert 'perfml_controller_actions_total{action="promoted"} 0.0' in text
    # the drift of the latest decision (March), as a CronJob's check leaves it for a scrape
    assert [d.window for d in loop.decisions.latest()] == ["2024-03"]
    drift = march.figures["drift"][METRIC]
    assert f'perfml_feature_drift{{feature="{METRIC}",method="kl"}} {drift!r}' in text


@pytest.mark.integration
def test_promtool_finds_no_problem_in_the_controller_metrics(
    controller: tuple[Controller, InProcessTrainer],
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from tests.integration.services import require_binary

    loop, _ = controller
    loop.run_once(FEBRUARY_END)
    registry = CollectorRegistry()
    registry.register(ControllerCollector(loop.decisions, drift=True))
    checked = subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=generate_latest(registry), capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr


def test_the_training_pipeline_retrains_on_drift(workspace: Workspace) -> None:
    """The real thing once: the local runner runs the pipeline; the gate decides."""
    registry = workspace.registry(background_delivery=False)
    before = registry.get(f"{MODEL}@production").ref
    loop = workspace.controller()  # the workspace's trainer: the training pipeline
    loop.policy = replace(loop.policy, quality=False)
    (decision,) = loop.run_once(MARCH_END)
    assert decision.action in (Action.PROMOTED, Action.KEPT), decision.reasons
    assert decision.run_id is not None
    assert decision.run_id.startswith("training-")
    now = registry.get(f"{MODEL}@production").ref
    assert (now == decision.candidate) is (decision.action is Action.PROMOTED)
    assert (now == before) is (decision.action is Action.KEPT)


def test_quality_is_judged_on_the_labels_after_each_check(
    controller: tuple[Controller, InProcessTrainer],
) -> None:
    """Production (with its threshold) is scored on the labelled windows of each month."""
    from prometheus_client import CollectorRegistry, generate_latest

    from perfml.embedded import LatestDrift

    loop, _ = controller
    production = loop.registry.get(f"{MODEL}@production")
    loop.policy = replace(loop.policy, quality=True)
    loop.run_once(FEBRUARY_END)
    report = loop.quality[MODEL]
    latest = report.latest()
    assert latest is not None
    assert latest.window == "2024-02"
    assert 0.0 <= latest.figure("f1") <= 1.0
    metrics = CollectorRegistry()
    metrics.register(LatestDrift(loop))
    text = generate_latest(metrics).decode()
    quality = f'perfml_model_quality{{metric="f1",model="{MODEL}",version="{production.version}"}}'
    assert quality in text
    assert 'perfml_feature_drift{feature="request_latency_ms",method="kl"}' in text
