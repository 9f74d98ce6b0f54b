"""Verdicts from the dashboard: the incidents table offers them, a POST records one (JSON only),
and Alertmanager's webhook records those its acknowledged AnomalyDetected alerts carry."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dashboard import anomaly_seeding
from dashboard.anomaly_seeding import STEP_MS
from perfml.anomalies import VerdictLog
from perfml.dashboard.app import create_app
from perfml.dashboard.data import DashboardSources
from perfml.featurestore import FeatureStore
from perfml.metadata import MetadataDatabase

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

NOW_MS = 1_790_000_000_000
END_MS = NOW_MS - NOW_MS % STEP_MS
HOSTILE = "<script>alert('pwned')</script>"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def sources(tmp_path: Path) -> Iterator[DashboardSources]:
    log, labels = anomaly_seeding.small_log(tmp_path / "scores", NOW_MS, extra=[HOSTILE])
    with MetadataDatabase(f"sqlite:///{tmp_path / 'metadata.db'}") as database:
        verdicts = VerdictLog(database, FeatureStore(tmp_path / "store"))
        yield DashboardSources(scores=log, labels=labels, verdicts=verdicts)


def incidents_panel(client: TestClient) -> dict[str, Any]:
    data = client.get("/api/panels/anomalies", params={"range": "3h"}).json()
    found: dict[str, Any] = next(p for p in data["panels"] if p["id"] == "incidents")
    return found


def test_each_host_incident_takes_a_verdict_which_labels_it(sources: DashboardSources) -> None:
    client = TestClient(create_app(sources))
    panel = incidents_panel(client)
    offered = {panel["rows"][row][0]: (found, given) for row, found, given in panel["verdicts"]}
    assert all(given is None for _, given in offered.values())
    assert not any(row in panel["marked"] for row, _, _ in panel["verdicts"])  # not fleet rows
    incident, _ = offered["host-0001"]
    answer = client.post(
        f"/api/incidents/{incident}/verdict",
        json={"verdict": "true_anomaly", "note": "runaway cron"},
        headers={"X-Forwarded-User": "ana"},
    )
    assert answer.status_code == 201, answer.text
    assert (answer.json()["by"], answer.json()["verdict"]) == ("ana", "true_anomaly")
    assert sources.verdicts is not None
    windows = sources.verdicts.store.windows(entities=["host-0001"])
    assert {(w.metric, w.kind) for w in windows} == {("cpu_util", "operator"),
                                                     ("memory_util", "operator")}  # fmt: skip
    again = incidents_panel(client)
    shown = {again["rows"][row][0]: given for row, _, given in again["verdicts"]}
    assert shown["host-0001"] == "true_anomaly"
    taken = client.post(f"/api/incidents/{incident}/verdict", json={"verdict": "false_alarm"})
    assert taken.status_code == 409
    assert "already has a verdict" in taken.json()["error"]


def test_a_verdict_must_be_json_known_and_about_a_known_incident(
    sources: DashboardSources,
) -> None:
    client = TestClient(create_app(sources))
    panel = incidents_panel(client)
    incident = panel["verdicts"][0][1]
    form = client.post(f"/api/incidents/{incident}/verdict", data={"verdict": "true_anomaly"})
    assert form.status_code == 400  # a cross-site form cannot give a verdict
    unknown = client.post(f"/api/incidents/{incident}/verdict", json={"verdict": "maybe"})
    assert unknown.status_code == 400
    missing = client.post("/api/incidents/i-nothing/verdict", json={"verdict": "false_alarm"})
    assert missing.status_code == 404
    assert sources.verdicts is not None
    assert sources.verdicts.history() == []


def test_a_hostile_host_name_takes_a_verdict_and_stays_text(sources: DashboardSources) -> None:
    client = TestClient(create_app(sources))
    panel = incidents_panel(client)
    (incident,) = [f for row, f, _ in panel["verdicts"] if panel["rows"][row][0] == HOSTILE]
    answer = client.post(f"/api/incidents/{incident}/verdict", json={"verdict": "false_alarm"})
    assert answer.status_code == 201
    assert answer.json()["entity"] == HOSTILE
    page = client.get("/anomalies")
    assert HOSTILE not in page.text


def payload(alerts: list[dict[str, Any]], receiver: str = "perfml-ack") -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="AnomalyDetected"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": receiver,
        "groupLabels": {"alertname": "AnomalyDetected"},
        "commonLabels": {"alertname": "AnomalyDetected"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }


def alert(
    entity: str, minutes_ago: int, fingerprint: str, annotations: dict[str, str] | None = None,
    alertname: str = "AnomalyDetected",
) -> dict[str, Any]:  # fmt: skip
    starts = datetime.fromtimestamp((END_MS - minutes_ago * 60_000) / 1000, UTC)
    return {
        "status": "firing",
        "labels": {"alertname": alertname, "entity": entity, "metric": "cpu_util", "model": "cpu"},
        "annotations": annotations or {},
        "startsAt": starts.isoformat().replace("+00:00", "Z"),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": fingerprint,
    }


def test_alertmanagers_webhook_records_the_verdicts_its_alerts_carry(
    sources: DashboardSources,
) -> None:
    client = TestClient(create_app(sources))
    body = payload([
        alert("host-0001", 85, "a1", {"verdict": "true", "by": "ana", "note": "paged"}),
        alert("host-0003", 30, "a2"),  # no verdict
        alert("host-0009", 30, "a3", {"verdict": "false"}),  # no incident of that host
        alert("host-0001", 85, "a4", {"verdict": "false"}, alertname="JobFailed"),
    ])  # fmt: skip
    answer = client.post("/api/verdicts/alertmanager", json=body)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    (recorded,) = result["recorded"]
    assert (recorded["entity"], recorded["verdict"], recorded["by"], recorded["note"]) == (
        "host-0001", "true_anomaly", "ana", "paged",
    )  # fmt: skip
    assert {s["fingerprint"] for s in result["skipped"]} == {"a2", "a3", "a4"}
    again = client.post("/api/verdicts/alertmanager", json=body).json()
    assert again["recorded"] == []  # a redelivery changes nothing
    by_receiver = payload([alert("host-0002", 30, "b1")], receiver="perfml-verdict-expected")
    answer = client.post("/api/verdicts/alertmanager", json=by_receiver).json()
    (recorded,) = answer["recorded"]
    assert (recorded["entity"], recorded["verdict"], recorded["by"]) == (
        "host-0002", "expected_change", "alertmanager:perfml-verdict-expected",
    )  # fmt: skip
    assert sources.verdicts is not None
    assert len(sources.verdicts.history()) == 2
    bad = client.post("/api/verdicts/alertmanager", json={"version": "4"})
    assert bad.status_code == 400


def test_without_a_verdict_log_the_table_offers_none_and_a_post_is_refused(
    tmp_path: Path,
) -> None:
    log, labels = anomaly_seeding.small_log(tmp_path / "scores", NOW_MS)
    client = TestClient(create_app(DashboardSources(scores=log, labels=labels)))
    assert "verdicts" not in incidents_panel(client)
    answer = client.post("/api/incidents/i-x/verdict", headers=JSON, content=b'{"verdict": "x"}')
    assert answer.status_code == 503
