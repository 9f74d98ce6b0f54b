"""``perfml_controller_actions_total{action}``: the controller's decisions, counted from its log.

Read from the :class:`~perfml.controller.decisions.DecisionLog` at each scrape, so every
process that serves it agrees and a restart loses no count. Every action is exported, at 0
until it happens, so a rule can use ``increase(...)`` from the first decision on.

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> from perfml.controller.decisions import Action, Decision, DecisionLog
>>> log = DecisionLog("sqlite://")
>>> _ = log.record(Decision.new("cpu", "2026-04", Action.PROMOTED, at_ms=0))
>>> registry = CollectorRegistry()
>>> registry.register(ControllerCollector(log))
>>> b'perfml_controller_actions_total{action="promoted"} 1.0' in generate_latest(registry)
True
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from perfml.controller.decisions import Action, DecisionLog


class ControllerCollector(Collector):
    """The count of decisions per action, read from ``log`` when scraped."""

    def __init__(self, log: DecisionLog) -> None:
        self.log = log

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
