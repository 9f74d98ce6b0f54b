"""Dispatch timing and dedup as Alertmanager's, and real deliveries: HTTP webhook, SMTP, file."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message

from integration.services.common import free_port
from perfml.alerting.alertmanager import alertmanager_config
from perfml.alerting.alerts import Alert, AlertState
from perfml.alerting.dispatch import (
    Dispatcher,
    GroupingOptions,
    Inhibition,
    LabelMatcher,
    Route,
    Silence,
    group_key,
    routing_from_config,
)
from perfml.alerting.notify import (
    LogNotifier,
    Notification,
    Notifier,
    SmtpNotifier,
    WebhookNotifier,
)
from perfml.alerting.rules import default_rules
from perfml.config import MonitoringSettings

OPTIONS = GroupingOptions(("alertname",), 30_000, 300_000, 3_600_000)


class Recorder(Notifier):
    """A real notifier that keeps what it is given (the channel under test is the dispatcher)."""

    kind = "recorder"

    def __init__(self, send_resolved: bool = True, fail: bool = False) -> None:
        self.send_resolved = send_resolved
        self.fail = fail
        self.sent: list[Notification] = []

    @property
    def target(self) -> str:
        return "memory"

    def send(self, notification: Notification) -> int:
        if self.fail:
            from perfml.alerting.notify import NotifyError

            raise NotifyError(self.kind, self.target, "receiver down")
        self.sent.append(notification)
        return 1


def alert(pod: str, state: AlertState = AlertState.FIRING, fired: int = 0, **labels: str) -> Alert:
    return Alert(
        "JobFailed", {"alertname": "JobFailed", "pod": pod, **labels}, {"summary": f"{pod} failed"},
        state, active_at_ms=fired, fired_at_ms=fired,
        resolved_at_ms=None if state is AlertState.FIRING else fired + 1,
    )  # fmt: skip


def pods(notification: Notification) -> list[tuple[str, str]]:
    return [(a.labels["pod"], a.state.value) for a in notification.alerts]


def test_group_wait_then_group_interval_then_repeat_interval():
    rec = Recorder()
    d = Dispatcher([rec], OPTIONS)
    d.dispatch([alert("a", fired=0)], 0)
    d.dispatch([alert("a", fired=0)], 29_999)
    assert rec.sent == []
    d.dispatch([alert("a", fired=0)], 30_000)
    assert [pods(n) for n in rec.sent] == [[("a", "firing")]]
    # a second alert joins the group: told at the next group_interval, not before
    d.dispatch([alert("a"), alert("b", fired=40_000)], 40_000)
    d.dispatch([alert("a"), alert("b", fired=40_000)], 329_999)
    assert len(rec.sent) == 1
    d.dispatch([alert("a"), alert("b", fired=40_000)], 330_000)
    assert pods(rec.sent[-1]) == [("a", "firing"), ("b", "firing")]
    # unchanged: nothing until more than repeat_interval after the last notification
    for at in range(630_000, 330_000 + 3_600_000 + 1, 300_000):
        d.dispatch([alert("a"), alert("b", fired=40_000)], at)
    assert len(rec.sent) == 2
    d.dispatch([alert("a"), alert("b", fired=40_000)], 330_000 + 3_900_000)
    assert len(rec.sent) == 3


def test_resolved_is_sent_once_then_the_group_goes():
    rec = Recorder()
    d = Dispatcher([rec], OPTIONS)
    d.dispatch([alert("a")], 0)
    d.dispatch([alert("a")], 30_000)
    d.dispatch([alert("a", AlertState.RESOLVED, fired=0)], 60_000)
    d.dispatch([alert("a", AlertState.RESOLVED, fired=0)], 330_000)
    assert [n.status for n in rec.sent] == ["firing", "resolved"]
    assert rec.sent[-1].alerts[0].resolved_at_ms == 1
    d.dispatch([alert("a", AlertState.RESOLVED, fired=0)], 700_000)  # sent again by the engine
    d.dispatch([alert("a", AlertState.RESOLVED, fired=0)], 1_100_000)
    assert len(rec.sent) == 2
    assert d.next_flush_ms() is None


def test_without_send_resolved_a_resolution_is_not_sent():
    rec = Recorder(send_resolved=False)
    d = Dispatcher([rec], OPTIONS)
    d.dispatch([alert("a"), alert("b")], 0)
    d.dispatch([alert("a"), alert("b")], 30_000)
    d.dispatch([alert("a"), alert("b", AlertState.RESOLVED)], 330_000)
    assert len(rec.sent) == 1


def test_grouping_by_labels_and_a_late_alert_is_flushed_at_once():
    rec = Recorder()
    options = GroupingOptions(("alertname", "namespace"), 30_000, 300_000, 3_600_000)
    d = Dispatcher([rec], options)
    d.dispatch([alert("a", namespace="x", fired=0), alert("b", namespace="y", fired=0)], 100_000)
    assert sorted(n.group_key for n in rec.sent) == [
        group_key({"alertname": "JobFailed", "namespace": "x"}),
        group_key({"alertname": "JobFailed", "namespace": "y"}),
    ]
    assert rec.sent[0].group_key == '{}:{alertname="JobFailed", namespace="x"}'


def test_a_sub_route_has_its_own_key_and_timing():
    rec = Recorder()
    critical = Route((LabelMatcher("severity", "=", "critical"),),
                     GroupingOptions(("alertname",), 10_000, 300_000, 3_600_000))  # fmt: skip
    d = Dispatcher([rec], OPTIONS, routes=[critical])
    d.dispatch([alert("a", severity="critical", fired=0), alert("b", fired=0)], 0)
    d.dispatch([alert("a", severity="critical", fired=0), alert("b", fired=0)], 10_000)
    assert [n.group_key for n in rec.sent] == ['{}/{severity="critical"}:{alertname="JobFailed"}']


def test_silenced_alerts_are_not_sent():
    rec = Recorder()
    d = Dispatcher([rec], OPTIONS)
    silence = Silence.new(["pod=~a|c"], 0, 600_000)
    d.dispatch([alert("a"), alert("b")], 0, [silence])
    d.dispatch([alert("a"), alert("b")], 30_000, [silence])
    assert [pods(n) for n in rec.sent] == [[("b", "firing")]]
    d.dispatch([alert("a"), alert("b")], 900_000, [silence])  # the silence ended
    assert pods(rec.sent[-1]) == [("a", "firing"), ("b", "firing")]


def test_an_inhibited_alert_is_not_sent_while_its_source_fires_with_equal_labels():
    rec = Recorder()
    storm = Inhibition.parse(['alertname="Storm"'], ['alertname="JobFailed"'], ["namespace"])
    d = Dispatcher([rec], GroupingOptions(("alertname", "pod")), inhibitions=[storm])

    def source(state: AlertState, namespace: str) -> Alert:
        return Alert("Storm", {"alertname": "Storm", "namespace": namespace}, {}, state,
                     active_at_ms=0, fired_at_ms=0,
                     resolved_at_ms=None if state is AlertState.FIRING else 60_000)  # fmt: skip

    targets = [alert("a", namespace="perfml"), alert("b", namespace="other")]
    d.dispatch([source(AlertState.FIRING, "perfml"), *targets], 60_000)
    assert sorted(n.group_labels.get("pod", "storm") for n in rec.sent) == ["b", "storm"]
    # The source resolves: the target still firing is told at the next flush.
    d.dispatch([source(AlertState.RESOLVED, "perfml"), *targets], 400_000)
    assert [pods(n) for n in rec.sent[2:] if n.alerts[0].rule == "JobFailed"] == [[("a", "firing")]]


def test_an_alert_matching_both_sides_does_not_inhibit_itself():
    critical = Inhibition.parse(['severity="critical"'], ['severity=~"critical|warning"'], [])
    both = {"alertname": "Down", "severity": "critical"}
    assert not critical.mutes(both, [both])
    assert critical.mutes({"alertname": "Slow", "severity": "warning"}, [both])
    assert not critical.mutes({"alertname": "Slow", "severity": "info"}, [both])


def test_the_embedded_routing_is_the_exported_alertmanager_configuration():
    options, routes, inhibitions = routing_from_config(
        alertmanager_config(MonitoringSettings(), default_rules())
    )
    assert options == GroupingOptions(("alertname", "namespace"), 30_000, 300_000, 4 * 3600_000)
    anomalies, critical = routes
    assert anomalies.matches({"alertname": "AnomalyDetected", "severity": "warning"})
    assert anomalies.options == GroupingOptions(
        ("alertname", "entity"), 30_000, 300_000, 4 * 3600_000
    )
    assert critical.options.group_wait_ms == 10_000
    _, storm = inhibitions
    host = {"alertname": "AnomalyDetected", "entity": "host-1", "model": "cpu"}
    assert storm.mutes(host, [{"alertname": "FleetAnomalyStorm", "model": "cpu"}])
    assert not storm.mutes(host, [{"alertname": "FleetAnomalyStorm", "model": "disk"}])


def test_a_failed_delivery_is_recorded_retried_next_interval_and_never_raised():
    broken = Recorder(fail=True)
    d = Dispatcher([broken], OPTIONS)
    d.dispatch([alert("a")], 0)
    first = d.dispatch([alert("a")], 30_000)
    assert [(x.outcome, x.error) for x in first] == [("failed", "receiver down")]
    broken.fail = False
    assert d.dispatch([alert("a")], 100_000) == []
    assert [x.outcome for x in d.dispatch([alert("a")], 330_000)] == ["sent"]


def test_the_notification_log_survives_a_restart():
    rec = Recorder()
    d = Dispatcher([rec], OPTIONS)
    d.dispatch([alert("a")], 0)
    d.dispatch([alert("a")], 30_000)
    again = Dispatcher([rec], OPTIONS)
    again.restore_log(d.export_log())
    again.dispatch([alert("a")], 60_000)  # fired long ago: flushed at once, but deduplicated
    assert len(rec.sent) == 1


def test_matchers_parse_and_refuse_bad_input():
    assert LabelMatcher.parse('namespace!="prod"').matches({"namespace": "dev"})
    assert LabelMatcher.parse("pod!~p.*").matches({})
    with pytest.raises(Exception, match="not a matcher"):
        LabelMatcher.parse("no operator")
    with pytest.raises(Exception, match="bad regex"):
        LabelMatcher.parse("a=~(")
    with pytest.raises(Exception, match="end after it starts"):
        Silence.new(["a=b"], 10, 10)


# -- real deliveries -------------------------------------------------------------------------


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []
    statuses: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            self.received.append(json.loads(body))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[_Hook]]]:
    handler = type("Hook", (_Hook,), {"received": [], "statuses": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    server.shutdown()
    server.server_close()
    thread.join()


def test_webhook_posts_the_alertmanager_payload(webhook):
    url, handler = webhook
    handler.statuses.extend([503])  # one transient failure, then success
    naps: list[float] = []
    hook = WebhookNotifier(url, attempts=3, backoff_s=0.25, sleep=naps.append)
    d = Dispatcher([hook], OPTIONS, external_url="http://perfml:9090",
                   generator_urls={"JobFailed": "http://perfml:9090/graph?g0.expr=x"})  # fmt: skip
    d.dispatch([alert("a", fired=1_700_000_000_000)], 1_700_000_000_000)
    (delivery,) = d.dispatch([alert("a", fired=1_700_000_000_000)], 1_700_000_030_000)
    assert (delivery.outcome, delivery.attempts, naps) == ("sent", 2, [0.25])
    (payload,) = handler.received
    assert payload == {
        "version": "4",
        "groupKey": '{}:{alertname="JobFailed"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "perfml",
        "groupLabels": {"alertname": "JobFailed"},
        "commonLabels": {"alertname": "JobFailed", "pod": "a"},
        "commonAnnotations": {"summary": "a failed"},
        "externalURL": "http://perfml:9090",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "JobFailed", "pod": "a"},
            "annotations": {"summary": "a failed"},
            "startsAt": "2023-11-14T22:13:20Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://perfml:9090/graph?g0.expr=x",
            "fingerprint": alert("a").fingerprint,
        }],
    }  # fmt: skip


def test_webhook_gives_up_on_a_client_error_and_the_failure_is_recorded(webhook):
    url, handler = webhook
    handler.statuses.extend([400, 200])
    d = Dispatcher([WebhookNotifier(url, sleep=lambda _: None)], OPTIONS)
    d.dispatch([alert("a")], 0)
    (delivery,) = d.dispatch([alert("a")], 30_000)
    assert (delivery.outcome, delivery.error) == ("failed", "HTTP 400")
    assert handler.received == []


def test_webhook_to_nowhere_fails_after_its_attempts():
    hook = WebhookNotifier("http://127.0.0.1:9/", attempts=2, timeout_s=1, sleep=lambda _: None)
    d = Dispatcher([hook], OPTIONS)
    d.dispatch([alert("a")], 0)
    (delivery,) = d.dispatch([alert("a")], 30_000)
    assert delivery.outcome == "failed"
    assert "after 2 attempts" in delivery.error


def test_log_notifier_appends_json_lines(tmp_path: Path):
    path = tmp_path / "alerts.log"
    d = Dispatcher([LogNotifier(path)], OPTIONS)
    d.dispatch([alert("a")], 0)
    d.dispatch([alert("a")], 30_000)
    d.dispatch([alert("a", AlertState.RESOLVED)], 330_000)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(x["status"], x["at"]) for x in lines] == [
        ("firing", "1970-01-01T00:00:30Z"), ("resolved", "1970-01-01T00:05:30Z"),
    ]  # fmt: skip


class _Inbox(Message):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Any] = []

    def handle_message(self, message: Any) -> None:
        self.messages.append(message)


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, _Inbox]]:
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, inbox
    controller.stop()


def test_smtp_sends_a_mail_with_alertmanagers_subject(smtp_server):
    port, inbox = smtp_server
    mail = SmtpNotifier(f"127.0.0.1:{port}", "perfml@example.org", "ops@example.org, b@example.org",
                        require_tls=False)  # fmt: skip
    d = Dispatcher([mail], OPTIONS)
    d.dispatch([alert("a"), alert("b")], 0)
    (delivery,) = d.dispatch([alert("a"), alert("b")], 30_000)
    assert delivery.outcome == "sent"
    (message,) = inbox.messages
    assert message["Subject"] == "[FIRING:2] JobFailed"
    assert message["To"] == "ops@example.org, b@example.org"
    assert 'FIRING {alertname="JobFailed", pod="a"}' in message.get_payload()


def test_smtp_requiring_tls_from_a_server_without_it_fails(smtp_server):
    port, _ = smtp_server
    mail = SmtpNotifier(f"127.0.0.1:{port}", "perfml@example.org", "ops@example.org")
    d = Dispatcher([mail], OPTIONS)
    d.dispatch([alert("a")], 0)
    (delivery,) = d.dispatch([alert("a")], 30_000)
    assert delivery.outcome == "failed"
    assert "STARTTLS" in delivery.error


def test_smtp_password_comes_from_the_environment(monkeypatch):
    mail = SmtpNotifier("127.0.0.1:1", "a@b.c", "d@e.f", username="u", password_env="PERFML_T_PW")
    monkeypatch.delenv("PERFML_T_PW", raising=False)
    with pytest.raises(Exception, match="PERFML_T_PW"):
        mail._password()
    monkeypatch.setenv("PERFML_T_PW", "s3cret")
    assert mail._password() == "s3cret"
