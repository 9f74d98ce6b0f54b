"""The rule engine over real PromQL: replay, persistence across restarts, broken rules, silences."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from perfml.alerting.alerts import AlertState
from perfml.alerting.dispatch import Dispatcher, GroupingOptions
from perfml.alerting.engine import BadStepError, RuleEngine
from perfml.alerting.notify import LogNotifier
from perfml.alerting.store import AlertStore
from perfml.metadata import sqlite_url
from perfml.promql import MemorySeries

STEP = 15_000


@dataclass(frozen=True)
class Rule:
    name: str
    expr: str
    for_: float = 60.0
    keep_firing_for: float = 0.0
    labels: dict[str, str] = field(default_factory=lambda: {"severity": "critical"})
    annotations: dict[str, str] = field(
        default_factory=lambda: {"summary": "{{ $labels.job }} is down ({{ $value }})"}
    )
    enabled: bool = True


DOWN = Rule("InferenceServiceDown", 'up{job="perfml-serving"} == 0')


def series(down_from: int, down_until: int, end: int = 600_000) -> MemorySeries:
    """``up`` scraped every 15 s, 0 in [down_from, down_until)."""
    source = MemorySeries()
    for ts in range(0, end + 1, STEP):
        value = 0.0 if down_from <= ts < down_until else 1.0
        source.add("up", {"job": "perfml-serving", "instance": "h:8080"}, ts, value)
    return source


def test_replay_fires_and_resolves_over_recorded_history():
    engine = RuleEngine([DOWN], series(60_000, 300_000))
    changes = engine.evaluate_range(0, 600_000, STEP)
    assert [(a.state.value, a.last_evaluated_ms) for a in changes] == [
        ("pending", 60_000), ("firing", 120_000), ("resolved", 300_000),
    ]  # fmt: skip
    firing = changes[1]
    assert dict(firing.labels) == {
        "alertname": "InferenceServiceDown", "instance": "h:8080", "job": "perfml-serving",
        "severity": "critical",
    }  # fmt: skip
    assert firing.annotations["summary"] == "perfml-serving is down (0)"


def test_state_survives_a_restart_over_the_same_database(tmp_path: Path, open_part):
    url, log = sqlite_url(tmp_path / "metadata.db"), tmp_path / "alerts.log"
    source = series(60_000, 600_000)
    options = GroupingOptions(("alertname",), 30_000, 300_000, 3_600_000)

    def start() -> RuleEngine:
        store = open_part(AlertStore, url)  # each start as a new process
        return RuleEngine([DOWN], source, store, Dispatcher([LogNotifier(log)], options))

    first = start()
    first.evaluate_range(0, 90_000, STEP)  # pending since 60 s
    assert [a.state for a in first.alerts()] == [AlertState.PENDING]
    first.evaluate_range(105_000, 180_000, STEP)  # fired at 120 s, notified at 150 s
    assert len(log.read_text().splitlines()) == 1

    second = start()  # a new process: same database
    (kept,) = second.alerts()
    assert (kept.state, kept.active_at_ms, kept.fired_at_ms) == (AlertState.FIRING, 60_000, 120_000)
    assert second.evaluate(195_000) == []  # no new transition, and no second notification
    assert len(log.read_text().splitlines()) == 1
    history = second.store.history()  # type: ignore[union-attr]
    assert [(e.from_state, e.to_state) for e in history] == [(None, "pending"),
                                                             ("pending", "firing")]  # fmt: skip
    assert second.store.deliveries()[0].outcome == "sent"  # type: ignore[union-attr]


def test_a_pending_alert_resumes_its_for_after_a_restart(tmp_path: Path, open_part):
    url = sqlite_url(tmp_path / "metadata.db")
    source = series(60_000, 600_000)
    RuleEngine([DOWN], source, open_part(AlertStore, url)).evaluate_range(60_000, 90_000, STEP)
    second = RuleEngine([DOWN], source, open_part(AlertStore, url))
    assert second.evaluate(105_000) == []
    assert [a.state.value for a in second.evaluate(120_000)] == ["firing"]  # 60 s after 60 s


def test_one_broken_rule_does_not_stop_the_others():
    broken = Rule("Broken", "sum(up{job=", for_=0.0)
    engine = RuleEngine([broken, DOWN], series(0, 600_000))
    engine.evaluate_range(0, 60_000, STEP)
    assert [a.rule for a in engine.alerts()] == ["InferenceServiceDown"]
    health = engine.health
    assert health["Broken"].health == "err"
    assert health["Broken"].failures == 5
    assert "Broken" not in health["InferenceServiceDown"].last_error
    assert health["InferenceServiceDown"].health == "ok"
    assert health["InferenceServiceDown"].last_duration_s > 0


def test_a_scalar_result_is_one_alert_without_labels_and_disabled_rules_do_not_run():
    rules = [Rule("Always", "vector(1) > 0", for_=0.0), Rule("Off", "vector(1)", enabled=False)]
    engine = RuleEngine(rules, MemorySeries())
    engine.evaluate(0)
    assert [dict(a.labels) for a in engine.alerts()] == [
        {"alertname": "Always", "severity": "critical"}
    ]
    scalar = RuleEngine([Rule("Scalar", "1", for_=0.0)], MemorySeries())
    assert [a.value for a in scalar.evaluate(0)] == [1.0]


def test_silenced_alerts_are_stored_but_not_notified(tmp_path: Path, open_part):
    url, log = sqlite_url(tmp_path / "metadata.db"), tmp_path / "alerts.log"
    store = open_part(AlertStore, url)
    store.add_silence(["alertname=InferenceServiceDown"], 0, 10_000_000, "ops", "maintenance")
    options = GroupingOptions(("alertname",), 30_000, 300_000, 3_600_000)
    engine = RuleEngine([DOWN], series(0, 600_000), store, Dispatcher([LogNotifier(log)], options))
    engine.evaluate_range(0, 300_000, STEP)
    assert [a.state for a in store.current_alerts()] == [AlertState.FIRING]
    assert not log.exists()


def test_run_evaluates_until_stopped():
    stop = threading.Event()
    ticks = iter(float(t) for t in range(0, 10_000, 15))
    evaluated: list[int] = []

    class Counting(RuleEngine):
        def evaluate(self, at_ms: int) -> list:  # type: ignore[type-arg]
            evaluated.append(at_ms)
            if len(evaluated) == 3:
                stop.set()
            return super().evaluate(at_ms)

    Counting([DOWN], series(0, 0)).run(0.0, stop, clock=lambda: next(ticks))
    assert evaluated == [0, 30_000, 60_000]


def test_a_bad_step_is_refused():
    with pytest.raises(BadStepError, match="positive"):
        RuleEngine([DOWN], MemorySeries()).evaluate_range(0, 10, 0)
