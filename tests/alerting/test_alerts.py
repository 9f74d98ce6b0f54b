"""The alert lifecycle follows Prometheus's rules/alerting.go at the exact boundaries."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from perfml.alerting.alerts import (
    ACTIVE,
    ENDED,
    Alert,
    AlertState,
    AlertTracker,
    DuplicateAlertError,
    fingerprint,
)


@dataclass(frozen=True)
class Rule:
    name: str = "JobPendingTooLong"
    for_: float = 60.0
    keep_firing_for: float = 0.0
    labels: dict[str, str] = field(default_factory=lambda: {"severity": "warning"})
    annotations: dict[str, str] = field(
        default_factory=lambda: {"summary": "{{ $labels.pod }} at {{ $value }}"}
    )


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


POD = Sample({"__name__": "kube_pod_status_phase", "pod": "p1", "phase": "Pending"}, 1.0)


def states(changes: list[Alert]) -> list[str]:
    return [a.state.value for a in changes]


def test_states_and_groups_cover_every_state():
    assert set(AlertState) == ACTIVE | ENDED
    assert not ACTIVE & ENDED


def test_pending_fires_exactly_when_for_has_passed():
    tracker, rule = AlertTracker(), Rule(for_=60.0)
    assert states(tracker.update(rule, [POD], 0)) == ["pending"]
    assert tracker.update(rule, [POD], 59_999) == []
    fired = tracker.update(rule, [POD], 60_000)
    assert states(fired) == ["firing"]
    assert (fired[0].active_at_ms, fired[0].fired_at_ms) == (0, 60_000)


def test_for_zero_fires_at_once_without_a_pending_step():
    tracker = AlertTracker()
    changes = tracker.update(Rule(for_=0.0), [POD], 5_000)
    assert states(changes) == ["firing"]
    assert changes[0].active_at_ms == changes[0].fired_at_ms == 5_000


def test_labels_annotations_and_fingerprint():
    tracker = AlertTracker()
    alert = tracker.update(Rule(for_=0.0), [POD], 0)[0]
    assert dict(alert.labels) == {
        "alertname": "JobPendingTooLong", "phase": "Pending", "pod": "p1", "severity": "warning",
    }  # fmt: skip
    assert alert.annotations["summary"] == "p1 at 1"
    assert alert.fingerprint == fingerprint(alert.labels)
    assert len(alert.fingerprint) == 16


def test_alertmanager_fingerprint_of_known_label_sets():
    # FNV-1a 64 as prometheus/common model.LabelSet.Fingerprint computes it.
    assert fingerprint({}) == "cbf29ce484222325"
    assert fingerprint({"a": "b"}) != fingerprint({"a": "c"})
    assert fingerprint({"a": "b", "c": "d"}) == fingerprint({"c": "d", "a": "b"})


def test_pending_that_goes_away_is_dropped_and_a_return_starts_over():
    tracker, rule = AlertTracker(), Rule(for_=60.0)
    tracker.update(rule, [POD], 0)
    assert states(tracker.update(rule, [], 30_000)) == ["inactive"]
    assert tracker.tracked() == []
    again = tracker.update(rule, [POD], 45_000)
    assert again[0].active_at_ms == 45_000
    assert tracker.update(rule, [POD], 104_999) == []
    assert states(tracker.update(rule, [POD], 105_000)) == ["firing"]


def test_a_returning_label_set_keeps_its_active_at_and_updates_its_value():
    tracker, rule = AlertTracker(), Rule(for_=60.0)
    tracker.update(rule, [POD], 0)
    tracker.update(rule, [Sample(POD.labels, 7.0)], 30_000)
    (alert,) = tracker.alerts()
    assert (alert.active_at_ms, alert.value, alert.annotations["summary"]) == (0, 7.0, "p1 at 7")


def test_firing_resolves_at_once_and_is_forgotten_after_retention():
    tracker, rule = AlertTracker(resolved_retention_ms=300_000), Rule(for_=0.0)
    tracker.update(rule, [POD], 0)
    resolved = tracker.update(rule, [], 15_000)
    assert states(resolved) == ["resolved"]
    assert resolved[0].resolved_at_ms == 15_000
    assert tracker.alerts() == []
    tracker.update(rule, [], 315_000)
    assert [a.state for a in tracker.tracked()] == [AlertState.RESOLVED]  # exactly 5 m: kept
    tracker.update(rule, [], 315_001)
    assert tracker.tracked() == []


def test_a_resolved_label_set_that_returns_is_a_new_alert():
    tracker, rule = AlertTracker(), Rule(for_=0.0)
    tracker.update(rule, [POD], 0)
    tracker.update(rule, [], 15_000)
    again = tracker.update(rule, [POD], 30_000)
    assert states(again) == ["firing"]
    assert again[0].active_at_ms == 30_000


def test_keep_firing_for_counts_from_the_first_evaluation_without_the_label_set():
    tracker, rule = AlertTracker(), Rule(for_=0.0, keep_firing_for=60.0)
    tracker.update(rule, [POD], 0)
    assert tracker.update(rule, [], 15_000) == []  # KeepFiringSince = 15 s
    assert tracker.update(rule, [], 74_999) == []
    (kept,) = tracker.alerts()
    assert kept.state is AlertState.FIRING
    assert kept.keep_firing_since_ms == 15_000
    assert states(tracker.update(rule, [], 75_000)) == ["resolved"]


def test_keep_firing_is_reset_when_the_label_set_returns():
    tracker, rule = AlertTracker(), Rule(for_=0.0, keep_firing_for=60.0)
    tracker.update(rule, [POD], 0)
    tracker.update(rule, [], 15_000)
    tracker.update(rule, [POD], 30_000)
    assert tracker.alerts()[0].keep_firing_since_ms is None
    assert tracker.update(rule, [], 45_000) == []
    assert tracker.update(rule, [], 104_999) == []
    assert states(tracker.update(rule, [], 105_000)) == ["resolved"]


def test_keep_firing_for_does_not_hold_a_pending_alert():
    tracker, rule = AlertTracker(), Rule(for_=60.0, keep_firing_for=600.0)
    tracker.update(rule, [POD], 0)
    assert states(tracker.update(rule, [], 15_000)) == ["inactive"]


def test_two_samples_with_the_same_alert_labels_are_an_error():
    rule = Rule()
    twins = [Sample({"__name__": "a", "pod": "p"}, 1.0), Sample({"__name__": "b", "pod": "p"}, 2.0)]
    with pytest.raises(DuplicateAlertError, match="JobPendingTooLong"):
        AlertTracker().update(rule, twins, 0)


def test_a_bad_annotation_template_shows_the_error_as_prometheus_does():
    rule = Rule(for_=0.0, annotations={"summary": "{{ $value | nope }}"})
    (alert,) = AlertTracker().update(rule, [POD], 0)
    assert alert.annotations["summary"].startswith("<error expanding template: unknown function")


def test_export_and_restore_keep_every_alert_and_its_times():
    tracker, rule = AlertTracker(), Rule(for_=60.0)
    tracker.update(rule, [POD, Sample({"pod": "p2"}, 2.0)], 0)
    tracker.update(rule, [POD], 30_000)
    tracker.update(rule, [POD, Sample({"pod": "p3"}, float("nan"))], 60_000)
    restored = AlertTracker()
    restored.restore(tracker.export_state())
    assert restored.export_state() == tracker.export_state()  # (NaN != NaN: compare dicts)
    assert len(restored.tracked()) == 2
    # the restored tracker goes on from where the other stopped
    ours, theirs = restored.update(rule, [POD], 90_000), tracker.update(rule, [POD], 90_000)
    assert [a.to_dict() for a in ours] == [a.to_dict() for a in theirs]
    assert states(ours) == ["inactive"]


def test_alerts_of_several_rules_are_kept_apart():
    tracker = AlertTracker()
    tracker.update(Rule(name="A", for_=0.0), [POD], 0)
    tracker.update(Rule(name="B", for_=0.0), [POD], 0)
    assert [a.rule for a in tracker.alerts()] == ["A", "B"]
    tracker.forget("A")
    assert [a.rule for a in tracker.alerts()] == ["B"]
