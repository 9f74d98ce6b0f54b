"""The loop that keeps served models healthy: drift → retrain → gate → promote, or nothing.

For each served model, a check of the latest complete window (a calendar month by default):

1. **decided already?** The model has one decision per window (:class:`DecisionLog`): a second
   check of the same window returns the first decision and does nothing;
2. **drift**: each of the model's features in the window against the production version's
   training window (:func:`perfml.drift.drift_report`); too few points in the window →
   ``insufficient_data``; every feature at or under the threshold → ``no_drift``;
3. **limits**: drift is high, but the model was retrained within the cooldown → ``cooldown``,
   or has had ``max_retrains`` in the period → ``budget_exhausted``;
4. **retrain**: the training pipeline runs on the most recent data (``training_window`` up to
   the window's end) with the production version's detector and parameters, registers the
   candidate and promotes it through the registry's gate, which scores candidate and production
   on the same held-out recent window → ``promoted``, or ``kept`` ("drift high but the candidate
   did not clear the gate: kept production", naming the figures it missed) with the gate's
   figures;
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
    QualityReport,
    drift_report,
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


@dataclass(frozen=True)
class Policy:
    """When the controller retrains (``perfml.yaml``'s ``controller`` section)."""

    every: str = "monthly"
    method: str = "kl"
    threshold: float = 0.1
    min_points: int = 100
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
    :meth:`perfml.workspace.Workspace.trainer`)."""

    def __call__(
        self, production: ModelVersion, start: datetime, end: datetime, policy: Policy
    ) -> TrainingOutcome: ...


class NoModelsError(UsageError):
    def __init__(self) -> None:
        super().__init__(
            "the controller has no model to check: set controller.models or serving.models "
            "in perfml.yaml (e.g. [cpu_util])"
        )


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
        over = {f: v for f, v in drift.items() if v > policy.threshold}
        if not over:
            worst = max(drift.items(), key=lambda item: item[1])
            return decided(
                Action.NO_DRIFT,
                f"{policy.method} at most {worst[1]:.4g} ({worst[0]}) <= {policy.threshold:g}",
            )
        why = ", ".join(f"{f} {policy.method} {v:.4g}" for f, v in sorted(over.items()))
        high = f"drift high in {window.label}: {why} > {policy.threshold:g}"
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
        done = self.trainer(production, start, window.end_time, policy)
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
