"""The alert store: current alerts and history in one transaction, silences, the delivery log."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest

from fixtures.metadata import opened
from perfml.alerting.alerts import Alert, AlertState
from perfml.alerting.notify import Delivery
from perfml.alerting.store import AlertStore, SilenceNotFoundError
from perfml.metadata import sqlite_url


def alert(state: AlertState, at: int, value: float = 1.0) -> Alert:
    return Alert("Down", {"alertname": "Down", "job": "serving"}, {"summary": "down"}, state,
                 active_at_ms=0, last_evaluated_ms=at, value=value)  # fmt: skip


@pytest.fixture
def url(tmp_path: Path) -> str:
    return sqlite_url(tmp_path / "metadata.db")


def test_evaluations_record_history_with_the_state_left_and_survive_reopening(url, open_part):
    store = open_part(AlertStore, url)
    pending = alert(AlertState.PENDING, 0)
    store.save_evaluation([pending], [pending])
    firing = pending.with_state(AlertState.FIRING, 60_000)
    store.save_evaluation([firing], [firing])
    resolved = firing.with_state(AlertState.RESOLVED, 90_000)
    store.save_evaluation([resolved], [resolved])
    reopened = open_part(AlertStore, url)  # as another process
    assert [(e.from_state, e.to_state, e.at_ms) for e in reopened.history()] == [
        (None, "pending", 0), ("pending", "firing", 60_000), ("firing", "resolved", 90_000),
    ]  # fmt: skip
    (kept,) = reopened.current_alerts()
    assert kept.state is AlertState.RESOLVED
    assert kept.fired_at_ms == 60_000
    assert reopened.history(since_ms=60_000, rule="Down")[0].to_state == "firing"
    assert reopened.history(rule="Other") == []


def test_non_finite_values_round_trip(url, open_part):
    store = open_part(AlertStore, url)
    values = [math.inf, -math.inf, 0.1]
    for v in values:
        store.save_evaluation([], [alert(AlertState.FIRING, 0, v)])
        assert store.current_alerts()[0].value == v
    store.save_evaluation([], [alert(AlertState.FIRING, 0, math.nan)])
    assert math.isnan(store.current_alerts(AlertState.FIRING)[0].value)


def test_silences_are_listed_active_and_expired(url, open_part):
    store = open_part(AlertStore, url)
    one = store.add_silence(["alertname=Down", 'job=~"serv.*"'], 0, 7_200_000, "ana", "deploy")
    store.add_silence(["team=perf"], 10_000_000, 20_000_000)
    assert [s.id for s in store.silences(at_ms=1_000)] == [one.id]
    assert len(store.silences()) == 2
    (found,) = store.silences(at_ms=1_000)
    assert [str(m) for m in found.matchers] == ['alertname="Down"', 'job=~"serv.*"']
    assert found.mutes({"alertname": "Down", "job": "serving"}, 1_000)
    store.expire_silence(one.id, 5_000)
    assert store.silences(at_ms=5_000) == []
    with pytest.raises(SilenceNotFoundError, match="nope"):
        store.expire_silence("nope", 0)


def test_deliveries_and_the_notification_log(url, open_part):
    store = open_part(AlertStore, url)
    sent = Delivery(1, "webhook", "http://x", "{}:{}", "firing", ("ab",), "sent")
    failed = Delivery(2, "smtp", "a@b", "{}:{}", "firing", ("ab",), "failed", "refused", 3)
    store.record_deliveries([sent, failed])
    assert store.deliveries() == [sent, failed]
    entries = [{"group_key": "{}:{}", "notifier": "log:/x", "firing": ["ab"], "resolved": [],
                "at_ms": 5}]  # fmt: skip
    store.save_notify_log(entries)
    assert store.notify_log() == entries


def test_concurrent_writers_do_not_lose_rows(url, open_part):
    open_part(AlertStore, url)  # the tables exist
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            with opened(AlertStore, url) as store:  # each thread as a process
                for i in range(10):
                    store.add_silence([f"n={n}"], i, i + 1_000)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(open_part(AlertStore, url).silences()) == 40
