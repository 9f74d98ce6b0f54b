"""The shipped rules on the fleet's anomalies, end to end in the embedded mode: the scorer's
gauges recorded as series, the shipped rules evaluated by the real engine and PromQL, and the
notifications the dispatcher actually delivers (to the JSON-lines log), routed and inhibited as
the exported Alertmanager configuration says."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from perfml.alerting.alerts import Alert, AlertState
from perfml.alerting.engine import RuleEngine, build_engine
from perfml.alerting.notify import rfc3339
from perfml.alerting.rules import rules_from_settings
from perfml.alerting.store import AlertStore
from perfml.config import MonitoringSettings
from perfml.metadata import sqlite_url
from perfml.promql import MemorySeries

ANOMALY_RULES = ("AnomalyDetected", "FleetAnomalyStorm")
SCRAPE = 15_000
"""The monitoring scrapes perfml's own metrics, and evaluates the rules, every 15 s."""
POINT = 300_000
"""A fleet metric's point arrives every 5 minutes; the gauge holds its score until the next."""
MINUTE = 60_000
HOSTS = [f"host-{i}" for i in range(10)]
METRICS = ("cpu_util", "mem_util", "disk_util")
THRESHOLD = 0.8
EXPORTED_FROM = 0.5
"""A large fleet exports only the scores from here up: the others are absent."""

Scores = Callable[[int], Mapping[tuple[str, str], float]]
"""At a point's time, the score of each (entity, metric) of model ``cpu``."""


def fleet(scores: Scores, end_ms: int) -> MemorySeries:
    """perfml's own metrics as the monitoring records them (job ``perfml``), scraped every 15 s
    until ``end_ms``: the threshold and fleet size of model ``cpu``, and the scores of the
    series ``scores`` gives at or over :data:`EXPORTED_FROM`, each held until the next point."""
    source = MemorySeries()
    scraped = {"job": "perfml", "instance": "127.0.0.1:8080"}
    for ts in range(0, end_ms + 1, SCRAPE):
        source.add("perfml_anomaly_threshold", {**scraped, "model": "cpu"}, ts, THRESHOLD)
        source.add("perfml_fleet_entities", {**scraped, "model": "cpu"}, ts, len(HOSTS))
        for (entity, metric), score in scores(ts - ts % POINT).items():
            if score >= EXPORTED_FROM:
                labels = {**scraped, "entity": entity, "metric": metric, "model": "cpu"}
                source.add("perfml_anomaly_score", labels, ts, score)
    return source


def engine(tmp_path: Path, open_part: Any, source: MemorySeries) -> RuleEngine:
    """The two shipped anomaly rules (the others watch what this fleet does not export) and
    their routing, notifying into ``tmp_path / alerts.log``."""
    monitoring = MonitoringSettings.model_validate(
        {"notifications": {"log": str(tmp_path / "alerts.log")}}
    )
    store = open_part(AlertStore, sqlite_url(tmp_path / "metadata.db"))
    rules = [r for r in rules_from_settings(monitoring) if r.name in ANOMALY_RULES]
    assert len(rules) == len(ANOMALY_RULES)
    return build_engine(monitoring, store, source, rules=rules)


def delivered(tmp_path: Path) -> list[dict[str, Any]]:
    """The notifications delivered, in order (Alertmanager's webhook payload each)."""
    path = tmp_path / "alerts.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def named(alerts: list[Alert], rule: str) -> list[Alert]:
    return [a for a in alerts if a.rule == rule]


def test_an_entity_over_its_threshold_fires_one_notification_listing_its_metrics_then_resolves(
    tmp_path: Path, open_part: Any
) -> None:
    anomalous = {"cpu_util": 0.95, "mem_util": 0.85, "disk_util": THRESHOLD}  # at it counts

    def scores(at: int) -> dict[tuple[str, str], float]:
        found = {(host, "cpu_util"): 0.6 for host in HOSTS}  # exported, under the threshold
        for metric, score in anomalous.items():
            found["host-3", metric] = score if 10 * MINUTE <= at < 20 * MINUTE else 0.55
        return found

    rules = engine(tmp_path, open_part, fleet(scores, 40 * MINUTE))
    rules.evaluate_range(0, 12 * MINUTE, SCRAPE)

    firing = named(rules.alerts(), "AnomalyDetected")
    assert {a.labels["metric"]: a.value for a in firing} == anomalous
    for alert in firing:
        assert alert.state is AlertState.FIRING
        assert alert.active_at_ms == 10 * MINUTE  # for 0s: fires with the point
        assert dict(alert.labels) == {
            "alertname": "AnomalyDetected",
            "entity": "host-3",
            "metric": alert.labels["metric"],
            "model": "cpu",
            "severity": "warning",
            "team": "perfml",
        }  # fmt: skip  (the threshold is not a label: a new one makes no new alert)
        assert alert.annotations["threshold"] == "0.8"
    cpu = next(a for a in firing if a.labels["metric"] == "cpu_util")
    assert cpu.annotations["score"] == "0.95"
    assert cpu.annotations["summary"] == "host-3 is anomalous: cpu_util"
    assert cpu.annotations["description"] == (
        "cpu_util of host-3 scores 0.95, at or over the threshold 0.8 of model cpu."
    )
    assert named(rules.alerts(), "FleetAnomalyStorm") == []

    (message,) = delivered(tmp_path)  # one notification for the host's three metrics
    assert message["status"] == "firing"
    assert message["groupLabels"] == {"alertname": "AnomalyDetected", "entity": "host-3"}
    assert message["commonLabels"]["entity"] == "host-3"
    assert {a["labels"]["metric"]: a["annotations"]["score"] for a in message["alerts"]} == {
        "cpu_util": "0.95", "mem_util": "0.85", "disk_util": "0.8",
    }  # fmt: skip
    assert {a["startsAt"] for a in message["alerts"]} == {rfc3339(10 * MINUTE)}

    changes = rules.evaluate_range(12 * MINUTE + SCRAPE, 40 * MINUTE, SCRAPE)  # fell at 20 min
    assert named(rules.alerts(), "AnomalyDetected") == []
    assert sorted((a.labels["metric"], a.state, a.resolved_at_ms) for a in changes) == [
        (metric, AlertState.RESOLVED, 20 * MINUTE) for metric in sorted(anomalous)
    ]
    _, last = delivered(tmp_path)
    assert (last["status"], last["groupLabels"]["entity"]) == ("resolved", "host-3")
    assert {a["labels"]["metric"] for a in last["alerts"]} == set(anomalous)


def test_absent_scores_and_a_model_without_a_threshold_fire_nothing(
    tmp_path: Path, open_part: Any
) -> None:
    def scores(at: int) -> dict[tuple[str, str], float]:
        return {(host, "cpu_util"): 0.1 for host in HOSTS}  # all under 0.5: none exported

    source = fleet(scores, 30 * MINUTE)
    for ts in range(0, 30 * MINUTE + 1, SCRAPE):  # a score of a model with no threshold
        source.add("perfml_anomaly_score", {"entity": "host-1", "metric": "disk_util",
                                            "model": "disk"}, ts, 0.99)  # fmt: skip
    rules = engine(tmp_path, open_part, source)
    assert rules.evaluate_range(0, 30 * MINUTE, SCRAPE) == []
    assert all(health.health == "ok" for health in rules.health.values())
    assert delivered(tmp_path) == []


def storm_of(count: int, until: int, lingering: int = 0) -> Scores:
    """``count`` hosts anomalous on cpu_util from 10 min until ``until``, the first
    ``lingering`` of them anomalous for good."""

    def scores(at: int) -> dict[tuple[str, str], float]:
        found: dict[tuple[str, str], float] = {}
        for index, host in enumerate(HOSTS[:count]):
            on = 10 * MINUTE <= at < until or (at >= 10 * MINUTE and index < lingering)
            found[host, "cpu_util"] = 0.9 if on else 0.2
            found[host, "mem_util"] = 0.6  # exported, under the threshold: not counted
        return found

    return scores


def test_half_the_fleet_anomalous_pages_one_storm_and_the_hosts_are_inhibited_until_it_ends(
    tmp_path: Path, open_part: Any
) -> None:
    # Five of ten hosts anomalous from 10 min; from 25 min only host-4 still is.
    source = fleet(storm_of(5, until=25 * MINUTE, lingering=5), 40 * MINUTE)
    rules = engine(tmp_path, open_part, source)
    rules.evaluate_range(0, 20 * MINUTE, SCRAPE)

    (storm,) = named(rules.alerts(), "FleetAnomalyStorm")
    assert storm.state is AlertState.FIRING
    assert dict(storm.labels) == {
        "alertname": "FleetAnomalyStorm", "model": "cpu", "severity": "critical", "team": "perfml"
    }  # fmt: skip
    assert (storm.value, storm.annotations["entities"], storm.annotations["fraction"]) == (
        0.5, "5", "0.5",
    )  # fmt: skip
    assert storm.annotations["description"] == (
        "5 entities scored by model cpu, 50% of its fleet, are anomalous at once."
    )
    hosts = named(rules.alerts(), "AnomalyDetected")
    assert sorted(a.labels["entity"] for a in hosts) == HOSTS[:5]  # firing, yet not notified
    assert all(a.state is AlertState.FIRING for a in hosts)

    messages = delivered(tmp_path)
    assert [m["groupLabels"]["alertname"] for m in messages] == ["FleetAnomalyStorm"]
    (paged,) = messages[0]["alerts"]
    assert (paged["labels"]["model"], paged["annotations"]["entities"]) == ("cpu", "5")


def test_when_the_storm_ends_the_hosts_still_anomalous_are_notified(
    tmp_path: Path, open_part: Any
) -> None:
    source = fleet(storm_of(5, until=25 * MINUTE, lingering=1), 40 * MINUTE)
    rules = engine(tmp_path, open_part, source)
    rules.evaluate_range(0, 40 * MINUTE, SCRAPE)

    assert named(rules.alerts(), "FleetAnomalyStorm") == []
    (host,) = named(rules.alerts(), "AnomalyDetected")
    assert host.labels["entity"] == "host-0"
    messages = [(m["groupLabels"]["alertname"], m["status"]) for m in delivered(tmp_path)]
    assert messages == [
        ("FleetAnomalyStorm", "firing"),
        ("FleetAnomalyStorm", "resolved"),
        ("AnomalyDetected", "firing"),  # host-0 alone, once nothing inhibits it
    ]
    host_message = delivered(tmp_path)[-1]
    assert [a["labels"]["entity"] for a in host_message["alerts"]] == ["host-0"]
    assert host_message["alerts"][0]["startsAt"] == rfc3339(10 * MINUTE)


def test_two_hosts_of_ten_do_not_storm_each_is_notified_on_its_own(
    tmp_path: Path, open_part: Any
) -> None:
    rules = engine(tmp_path, open_part, fleet(storm_of(2, until=40 * MINUTE), 20 * MINUTE))
    rules.evaluate_range(0, 20 * MINUTE, SCRAPE)

    assert named(rules.tracker.tracked(), "FleetAnomalyStorm") == []
    assert len(named(rules.alerts(), "AnomalyDetected")) == 2
    messages = delivered(tmp_path)
    assert sorted(m["groupLabels"]["entity"] for m in messages) == ["host-0", "host-1"]
    assert all(len(m["alerts"]) == 1 for m in messages)


def test_the_examples_promtool_checks_give_the_same_alerts_natively() -> None:
    # The kinds' examples are what ``promtool test rules`` holds the exported rules to; the
    # native engine is held to them too (their values are all written ``AxN``).
    for rule in rules_from_settings(MonitoringSettings()):
        if rule.name not in ANOMALY_RULES:
            continue
        for example in rule.examples():
            source = MemorySeries()
            for given in example.series:
                name, _, inner = given.series.partition("{")
                labels = dict(
                    pair.split("=") for pair in inner.rstrip("}").replace('"', "").split(",")
                )
                value, _, count = given.values.partition("x")
                for step in range(int(count) + 1):
                    ts = round(step * example.interval * 1000)
                    source.add(name, labels, ts, float(value))
            at = round(example.at * 1000)
            engine = RuleEngine([rule], source)
            engine.evaluate_range(0, at, round(example.interval * 1000))
            expected = {
                frozenset({k: v for k, v in {**a.labels, **rule.labels}.items() if v}.items())
                | {("alertname", rule.name)}: a.value
                for a in example.alerts
            }
            found = {frozenset(a.labels.items()): a.value for a in engine.alerts()}
            assert found == expected, (rule.name, example.description)
