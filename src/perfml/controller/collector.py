"""The controller's metrics, read from its decision log at each scrape.

- ``perfml_controller_actions_total{action}``: the decisions, by how they ended. Every action
  is exported, at 0 until it happens, so a rule can use ``increase(...)`` from the first on;
- ``perfml_feature_drift{feature,method}`` (with ``drift=True``): the drift of each feature in
  the window of its model's latest decision, as the controller measured it.

Read from the :class:`~perfml.controller.decisions.DecisionLog`, so every process that serves
them agrees, a restart loses nothing, and on a cluster — where each check is a CronJob's pod
that ends — the long-running ``perfml runs serve-metrics`` can serve them.

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> from perfml.controller.decisions import Action, Decision, DecisionLog
>>> from perfml.metadata import MetadataDatabase
>>> log = DecisionLog(MetadataDatabase("sqlite://"))
>>> _ = log.record(Decision.new("cpu", "2026-04", Action.PROMOTED, at_ms=0))
>>> registry = CollectorRegistry()
>>> registry.register(ControllerCollector(log))
>>> b'perfml_controller_actions_total{action="promoted"} 1.0' in generate_latest(registry)
True
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from perfml.controller.decisions import Action, DecisionLog


class ControllerCollector(Collector):
    """The count of decisions per action (and, with ``drift``, the latest drift figures),
    read from ``log`` when scraped."""

    def __init__(self, log: DecisionLog, drift: bool = False) -> None:
        self.log = log
        self.drift = drift

    def collect(self) -> Iterator[Metric]:
        counts = self.log.counts()
        family = CounterMetricFamily(
            "perfml_controller_actions",
            "Decisions of the retraining controller, by how they ended.",
            labels=["action"],
        )
        for action in Action:
            family.add_metric([action.value], float(counts.get(action.value, 0)))
        yield family
        if self.drift:
            yield self._drift()

    def _drift(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "perfml_feature_drift",
            "Drift of a feature in the latest window against the reference window, by measure.",
            labels=["feature", "method"],
        )
        seen: set[tuple[str, str]] = set()
        for decision in self.log.latest():
            method = str(decision.figures.get("method", ""))
            for feature, value in sorted(dict(decision.figures.get("drift") or {}).items()):
                if value is None or not method or (feature, method) in seen:
                    continue
                seen.add((feature, method))
                family.add_metric([feature, method], float(value))
        return family
