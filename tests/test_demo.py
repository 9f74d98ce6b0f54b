"""The demo as `make demo` runs it: the change is caught, v2 takes over, alerts come and go."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfml.config import Settings
from perfml.controller.decisions import Action
from perfml.demo import DEMO_MODEL, run_demo


def test_the_demo_heals_the_model_and_its_alerts_fire_and_resolve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # as `make demo` runs it: the default, relative workspace
    settings = Settings()  # the shipped demo: 12 hosts, 6 months, in ./.perfml/demo
    said: list[str] = []
    outcome = run_demo(settings, said.append)

    actions = {row.month: row.decision.action for row in outcome.months if row.decision}
    assert all(row.scored_rows > 100_000 for row in outcome.months), said
    assert not any(entry.rule == "JobRetriesExhausted" for entry in outcome.alerts), said
    assert actions == {
        "2024-03": Action.NO_DRIFT,
        "2024-04": Action.PROMOTED,
        "2024-05": Action.NO_DRIFT,  # judged against v2, which learnt the new workload
        "2024-06": Action.NO_DRIFT,
    }, said
    assert outcome.production == f"{DEMO_MODEL}:2"
    april = outcome.months[1]
    assert april.served_by == [f"{DEMO_MODEL}:1"]  # scored before the check that retrained
    assert outcome.months[1].decision is not None
    assert outcome.months[1].decision.candidate == f"{DEMO_MODEL}:2"
    assert outcome.months[2].served_by == [f"{DEMO_MODEL}:2"]  # May is scored by v2
    assert any("swapped to request-latency:2 without a restart" in line for line in said)

    seen = {(entry.rule, entry.to_state) for entry in outcome.alerts}
    for rule in ("JobPendingTooLong", "JobFailed", "FeatureDriftHigh"):
        assert (rule, "firing") in seen, (rule, said)
        assert (rule, "resolved") in seen, (rule, said)

    drifted = {r.window for r in outcome.drift if r.feature == "request_latency_ms" and r.drifted}
    assert "2024-04" in drifted
    assert outcome.report is not None
    page = outcome.report.read_text()
    assert "request-latency" in page
    assert "<script src=" not in page  # self-contained
