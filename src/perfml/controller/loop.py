"""The loop that keeps served models healthy: drift → retrain → gate → promote, or nothing.

For each served model, a check of the latest complete window (a calendar month by default):

1. **decided already?** The model has one decision per window (:class:`DecisionLog`): a second
   check of the same window returns the first decision and does nothing;
2. **drift**: each of the model's features in the window against the production version's
   training window, over the whole fleet (:func:`perfml.drift.drift_report`) and per entity
   (:func:`perfml.drift.entity_drift`, what ``perfml drift report --per-entity`` measures);
   too few points in the window → ``insufficient_data``; every feature at or under the
   threshold over the fleet, and at most ``entity_fraction`` of the entities judged with a
   series over it → ``no_drift``. The decision names the rule that fired (``fleet`` or
   ``entities``), the drifted entities and their share;
3. **limits**: drift is high, but the model was retrained within the cooldown → ``cooldown``,
   or has had ``max_retrains`` in the period → ``budget_exhausted``;
4. **retrain**: the training pipeline runs on the most recent data (``training_window`` up to
   the window's end) with the production version's detector and parameters — when only the
   share of entities fired, the candidate refreshes the drifted entities' states and keeps
   production's for the others — registers the candidate and promotes it through the
   registry's gate, which scores candidate and production on the same held-out recent window
   → ``promoted``, or ``kept`` ("drift high but the candidate did not clear the gate: kept
   production", naming the figures it missed) with the gate's figures;
5. **failure** anywhere (drift, the run, the gate) → ``failed`` with the error; the alias is
   moved only by a promotion that passed, so production keeps serving the old version.

The serving side needs nothing from the controller: servers follow the alias (registry events,
with polling as a fallback) and swap to the promoted version.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from perfml.config import ControllerSettings, ServingSettings
from perfml.controller.decisions import Action, Decision, DecisionLog
from perfml.drift import (
    DriftReport,
    EntityDrift,
    QualityReport,
    drift_report,
    entity_drift,
    quality_report,
    training_window,
    window_of,
)
from perfml.drift.windows import Window, calendar_windows
from perfml.errors import PerfmlError, UsageError
from perfml.featurestore import FeatureStore
from perfml.pipelines.outcomes import TrainingOutcome
from perfml.registry.records import ModelVersion
from perfml.registry.registry import ModelRegistry
from perfml.timeparse import parse_duration, to_epoch_ms

log = logging.getLogger(__name__)

LISTED_ENTITIES = 1000
"""The drifted entities a decision's figures list by name; past them, a count."""
NAMED_ENTITIES = 20
"""The drifted entities a decision's reason names; past them, a count."""
FLEET = "fleet"
"""The rule that fires on a feature's drift over the whole fleet."""
ENTITIES = "entities"
"""The rule that fires on the share of entities with a series over the threshold."""


@dataclass(frozen=True)
class Policy:
    """When the controller retrains (``perfml.yaml``'s ``controller`` section)."""

    every: str = "monthly"
    method: str = "kl"
    threshold: float = 0.1
    min_points: int = 100
    entity_fraction: float = 0.2
    min_entity_points: int = 100
    cooldown: timedelta = timedelta(days=7)
    max_retrains: int = 3
    retrain_period: timedelta = timedelta(days=30)
    training_window: timedelta = timedelta(days=60)
    holdout: float = 0.25
    alias: str = "production"
    quality: bool = True

    @classmethod
    def from_settings(cls, found: ControllerSettings) -> Policy:
        return cls(
            every=found.every,
            method=found.method,
            threshold=found.threshold,
            min_points=found.min_points,
            entity_fraction=found.entity_fraction,
            min_entity_points=found.min_entity_points,
            cooldown=parse_duration(found.cooldown),
            max_retrains=found.max_retrains,
            retrain_period=parse_duration(found.retrain_period),
            training_window=parse_duration(found.training_window),
            holdout=found.holdout,
            alias=found.alias,
            quality=found.quality,
        )


class Trainer(Protocol):
    """Runs the training pipeline on ``[start, end)`` for ``production``'s model and
    promotes the candidate through the gate (a workspace's is
    :meth:`perfml.workspace.Workspace.trainer`). With ``refresh``, the candidate holds fresh
    states for those entities and production's, unchanged, for the others it had."""

    def __call__(
        self,
        production: ModelVersion,
        start: datetime,
        end: datetime,
        policy: Policy,
        *,
        refresh: Sequence[str] | None = None,
    ) -> TrainingOutcome: ...


class NoModelsError(UsageError):
    def __init__(self) -> None:
        super().__init__(
            "the controller has no model to check: set controller.models or serving.models "
            "in perfml.yaml (e.g. [cpu_util])"
        )


def recent_part(reference: Window, window: Window) -> Window:
    """The last stretch of ``reference`` as long as ``window`` (all of it if shorter): what a
    host is judged against one by one. A version's states follow each host's latest regime, so
    a host whose workload changed inside the training window is judged against its new normal,
    not against a mix of the old and the new that it would keep "drifting" from."""
    length = window.end - window.start
    if reference.end - reference.start <= length:
        return reference
    return Window(reference.end - length, reference.end, f"{reference.label} (last part)")


def controlled_models(controller: ControllerSettings, serving: ServingSettings) -> list[str]:
    """The model names checked: ``controller.models``, else those ``serving.models`` serve."""
    chosen = controller.models or serving.models
    names = [ref.split("@")[0].split(":")[0] for ref in chosen]
    return list(dict.fromkeys(names))


class Controller:
    """Checks each served model's latest window and acts (see the module's docstring)."""

    def __init__(
        self,
        registry: ModelRegistry,
        store: FeatureStore,
        decisions: DecisionLog,
        trainer: Trainer,
        models: Sequence[str],
        policy: Policy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.store = store
        self.decisions = decisions
        self.trainer = trainer
        self.models = list(models)
        self.policy = policy or Policy()
        self.clock = clock
        self.reports: dict[str, DriftReport] = {}
        """The latest drift report of each model (``perfml_feature_drift`` shows them)."""
        self.quality: dict[str, QualityReport] = {}
        """The latest quality report of each model (``perfml_model_quality`` shows them)."""

    def run_once(self, at: datetime | None = None) -> list[Decision]:
        """Check every model on the latest window complete at ``at`` (default: now)."""
        moment = at or datetime.fromtimestamp(self.clock(), tz=UTC)
        return [self.check(model, moment) for model in self.models]

    def run(self, interval_s: float, stop: threading.Event) -> None:
        """Check every ``interval_s`` seconds until ``stop`` is set; a failure is logged."""
        while not stop.is_set():
            try:
                for decision in self.run_once():
                    log.info(
                        "controller: %s %s: %s", decision.model, decision.window, decision.action
                    )
            except Exception:  # one bad round must not end the loop
                log.exception("controller round failed")
            stop.wait(interval_s)

    def check(self, model: str, at: datetime) -> Decision:
        """Check ``model`` on the latest window complete at ``at``; record and return the
        decision (the earlier one, unchanged, if that window was decided already)."""
        name = model.split("@")[0].split(":")[0]
        window = latest_complete_window(at, self.policy.every)
        earlier = self.decisions.find(name, window.label)
        if earlier is not None:
            return earlier
        try:
            decision = self._decide(name, window, at)
        except Exception as exc:  # any failure: record it, production untouched
            log.exception("controller check of %s in %s failed", name, window.label)
            decision = Decision.new(
                name, window.label, Action.FAILED, at_ms=to_epoch_ms(at),
                reasons=[f"{type(exc).__name__}: {exc}"],
                production=_production_ref(self.registry, name, self.policy.alias),
            )  # fmt: skip
        recorded = self.decisions.record(decision)
        if self.policy.quality:
            self._judge_quality(name, window)
        return recorded or self.decisions.find(name, window.label) or decision

    def _judge_quality(self, name: str, window: Window) -> None:
        """Production's precision, recall and F1 on the labelled feedback (best effort: a model
        without a threshold or labels has no quality to report, which is not a failure)."""
        try:
            self.quality[name] = quality_report(
                self.store, self.registry, name, alias=self.policy.alias,
                every=self.policy.every, end=window.end_time,
            )  # fmt: skip
        except PerfmlError as exc:
            log.info("no quality report for %s in %s: %s", name, window.label, exc)

    def _decide(self, name: str, window: Window, at: datetime) -> Decision:
        policy = self.policy
        at_ms = to_epoch_ms(at)
        production = self.registry.get(f"{name}@{policy.alias}")
        reference = training_window(production)
        report = drift_report(
            self.store,
            reference,
            every=policy.every,
            methods=[policy.method],
            metrics=production.features,
            end=window.end_time,
            thresholds={policy.method: policy.threshold},
            model=production.ref,
        )
        self.reports[name] = report
        drift = {
            r.feature: r.value
            for r in report.records
            if r.window == window.label and r.method == policy.method and r.entity is None
        }
        points = {
            r.feature: r.points
            for r in report.records
            if r.window == window.label and r.method == policy.method and r.entity is None
        }
        figures: dict[str, Any] = {
            "method": policy.method,
            "threshold": policy.threshold,
            "drift": {f: (None if math.isnan(v) else v) for f, v in drift.items()},
            "points": points,
            "reference": reference.label,
        }

        def decided(action: Action, *reasons: str, **extra: Any) -> Decision:
            return Decision.new(
                name, window.label, action, at_ms=at_ms, production=production.ref,
                reasons=reasons, figures=figures, **extra,
            )  # fmt: skip

        short = [f for f in production.features if points.get(f, 0) < policy.min_points]
        if short:
            return decided(
                Action.INSUFFICIENT_DATA,
                f"fewer than {policy.min_points} points in {window.label} for {', '.join(short)}",
            )
        entities = entity_drift(
            self.store, recent_part(reference, window), window, production.features,
            method=policy.method, threshold=policy.threshold,
            min_points=policy.min_entity_points,
        )  # fmt: skip
        figures["entities"] = entity_figures(entities, policy.entity_fraction)
        share = share_summary(entities, policy.entity_fraction)
        over = {f: v for f, v in drift.items() if v > policy.threshold}
        refresh: list[str] | None = None
        if over:
            figures["rule"] = FLEET
            why = ", ".join(f"{f} {policy.method} {v:.4g}" for f, v in sorted(over.items()))
            high = f"drift high in {window.label} over the fleet: {why} > {policy.threshold:g}"
        elif entities.share > policy.entity_fraction:
            figures["rule"] = ENTITIES
            refresh = entities.drifted
            high = f"drift high in {window.label} for a share of the entities: {share}"
        else:
            worst = max(drift.items(), key=lambda item: item[1])
            return decided(
                Action.NO_DRIFT,
                f"{policy.method} at most {worst[1]:.4g} ({worst[0]}) <= {policy.threshold:g}",
                f"entities: {share}",
            )
        retrains = self.decisions.retrains(name, to_epoch_ms(at - policy.retrain_period))
        recent = [d for d in retrains if d.at_ms >= to_epoch_ms(at - policy.cooldown)]
        if recent:
            return decided(Action.COOLDOWN, high, f"retrained in {recent[-1].window}: cooling down")
        if len(retrains) >= policy.max_retrains:
            return decided(
                Action.BUDGET_EXHAUSTED,
                high,
                f"{len(retrains)} retrains within {policy.retrain_period}: at most "
                f"{policy.max_retrains}",
            )
        start = window.end_time - policy.training_window
        done = self.trainer(production, start, window.end_time, policy, refresh=refresh)
        figures["gate"] = None if done.gate is None else done.gate.model_dump(mode="json")
        figures["training_window"] = [start.isoformat(), window.end_time.isoformat()]
        if done.promoted == policy.alias:
            return decided(
                Action.PROMOTED, high, f"{done.ref} passed the gate: promoted",
                candidate=done.ref, run_id=done.run_id,
            )  # fmt: skip
        why = "not asked to promote" if done.gate is None else done.gate.reason
        return decided(
            Action.KEPT,
            high,
            f"drift high but the candidate did not clear the gate: kept production "
            f"{production.ref} ({why})",
            candidate=done.ref,
            run_id=done.run_id,
        )


def entity_figures(entities: EntityDrift, fraction: float) -> dict[str, Any]:
    """What a decision records of the drift per entity: the drifted entities (the first
    :data:`LISTED_ENTITIES` by name), how many, of how many judged, their share and the
    fraction it is compared with."""
    drifted = entities.drifted
    return {
        "drifted": drifted[:LISTED_ENTITIES],
        "drifted_count": len(drifted),
        "judged": len(entities.judged),
        "not_judged": len(entities.short),
        "share": entities.share,
        "fraction": fraction,
        "min_points": entities.min_points,
    }


def share_summary(entities: EntityDrift, fraction: float) -> str:
    """``3 of 30 entities (10%) over kl 0.1, at most 20%: host-a, host-b, host-c``, the
    first :data:`NAMED_ENTITIES` named and the rest counted."""
    drifted = entities.drifted
    comparison = ">" if entities.share > fraction else "<="
    found = (
        f"{len(drifted)} of {len(entities.judged)} entities ({entities.share:.0%}) over "
        f"{entities.method} {entities.threshold:g}, {comparison} {fraction:.0%}"
    )
    if drifted:
        found += ": " + ", ".join(drifted[:NAMED_ENTITIES])
        if len(drifted) > NAMED_ENTITIES:
            found += f" and {len(drifted) - NAMED_ENTITIES} more"
    return found


def latest_complete_window(at: datetime, every: str) -> Window:
    """The latest window of kind ``every`` that ends at or before ``at``."""
    if every.endswith("d") and every[:-1].isdigit():
        days = int(every[:-1])
        return calendar_windows(at - timedelta(days=days), at, every)[-1]
    current = window_of(at, every)
    if current.start == to_epoch_ms(at):
        return window_of(at - timedelta(milliseconds=1), every)
    return window_of(current.start_time - timedelta(milliseconds=1), every)


def _production_ref(registry: ModelRegistry, name: str, alias: str) -> str | None:
    try:
        return registry.get(f"{name}@{alias}").ref
    except PerfmlError:
        return None
