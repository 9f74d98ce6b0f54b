"""`perfml alerts list | history | silence | unsilence | rules` over one workspace."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from perfml.alerting.alerts import Alert, AlertState
from perfml.alerting.store import AlertStore
from perfml.cli import alerts
from perfml.cli.state import CliState
from perfml.metadata import MetadataDatabase, sqlite_url

root = typer.Typer()
root.add_typer(alerts.app, name="alerts")


@root.callback()
def _root(ctx: typer.Context, workspace: Path = typer.Option(..., "-w")) -> None:  # noqa: B008
    ctx.obj = CliState(workspace=workspace)


def run(workspace: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(root, ["-w", str(workspace), "alerts", *args])
    return result.exit_code, result.output


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    now = round(time.time() * 1000)
    database = MetadataDatabase(sqlite_url(tmp_path / "metadata.db"))
    store = AlertStore(database)
    pending = Alert("JobPendingTooLong", {"alertname": "JobPendingTooLong", "pod": "p1"},
                    {"summary": "p1 pending"}, AlertState.PENDING, now - 60_000,
                    last_evaluated_ms=now - 60_000, value=1.0)  # fmt: skip
    firing = pending.with_state(AlertState.FIRING, now)
    store.save_evaluation([pending], [pending])
    store.save_evaluation([firing], [firing])
    database.close()
    return tmp_path


def test_list_and_history(workspace):
    code, text = run(workspace, "list", "--json")
    assert code == 0
    (alert,) = json.loads(text)
    assert (alert["rule"], alert["state"], alert["labels"]["pod"]) == (
        "JobPendingTooLong", "firing", "p1",
    )  # fmt: skip
    assert run(workspace, "list", "--state", "pending", "--json")[1].strip() == "[]"
    code, text = run(workspace, "list")
    assert code == 0
    assert "p1 pending" in text
    code, text = run(workspace, "history", "--since", "1h", "--json")
    assert [(e["from"], e["to"]) for e in json.loads(text)] == [(None, "pending"),
                                                                ("pending", "firing")]  # fmt: skip
    assert json.loads(run(workspace, "history", "--rule", "Other", "--json")[1]) == []


def test_silence_list_and_unsilence(workspace):
    code, text = run(workspace, "silence", "alertname=JobFailed", "pod=~p.*", "--for", "2h",
                     "--comment", "deploy", "--author", "ana")  # fmt: skip
    assert code == 0
    silence_id = text.strip()
    listed = json.loads(run(workspace, "silence", "--list", "--json")[1])
    assert [(s["id"], s["active"], s["matchers"]) for s in listed] == [
        (silence_id, True, ['alertname="JobFailed"', 'pod=~"p.*"'])
    ]
    assert run(workspace, "unsilence", silence_id)[0] == 0
    assert json.loads(run(workspace, "silence", "--list", "--json")[1])[0]["active"] is False


def test_silence_needs_matchers_and_refuses_bad_ones(workspace):
    code, _ = run(workspace, "silence")
    assert code != 0
    code, _ = run(workspace, "silence", "a=~(")
    assert code != 0


def test_rules_shows_the_effective_rules_and_their_promql(workspace):
    code, text = run(workspace, "rules", "--json")
    assert code == 0
    found = {r["name"]: r for r in json.loads(text)}
    assert "kube_pod_status_phase" in found["JobPendingTooLong"]["expr"]
    code, text = run(workspace, "rules")
    assert code == 0
    assert "JobPendingTooLong" in text
