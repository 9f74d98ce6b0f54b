"""The demo as `make demo` runs it: the change is caught, v2 takes over through the gate on
its figures, alerts come and go."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfml.cli.init import gates_table
from perfml.config import Settings
from perfml.controller.decisions import Action
from perfml.demo import DEMO_MODEL, run_demo
from perfml.workspace import Workspace


def test_the_demo_heals_the_model_and_its_alerts_fire_and_resolve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # as `make demo` runs it: the default, relative workspace
    settings = Settings()  # the shipped demo: 12 hosts, 6 months, in ./.perfml/demo
    said: list[str] = []
    outcome = run_demo(settings, said.append)

    actions = {row.month: row.decision.action for row in outcome.months if row.decision}
    assert all(row.scored_rows > 100_000 for row in outcome.months), said
    # the live loop scored each month as it arrived, each host against its own state: its
    # incidents, judged against the fleet's labelled latency anomalies of the month
    for row in outcome.months:
        assert row.live_scored == row.scored_rows, (row.month, said)  # every point, once
        assert row.found is not None, (row.month, said)
        assert row.found.windows >= 1, (row.month, said)
        assert row.found.recall >= 0.5, (row.month, row.found, said)
        assert row.found.precision >= 0.6, (row.month, row.found, said)
        assert row.found.median_delay_minutes is not None
        assert row.found.median_delay_minutes <= 30, (row.month, row.found, said)
        assert any(line.startswith(f"{row.month}: the live loop scored ") for line in said)
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

    # The gate's figures, on the test slice of each held-out window, each version at the
    # threshold it chose on the validation slice before it.
    bars = {t.metric: t for t in settings.registry.gate}
    first, april = outcome.gates  # v1's first promotion, then April's retrain
    assert (first.candidate, first.holder) == (f"{DEMO_MODEL}:1", None)
    assert first.verdict.passed
    v1 = first.verdict.candidate
    assert v1["validation_windows"] >= 1
    assert v1["test_windows"] >= 1
    for metric in ("nab_standard", "event_f1"):
        assert v1[metric] >= (bars[metric].min_value or 0.0), (metric, v1)
    assert (april.when, april.candidate, april.holder) == (
        "2024-04",
        f"{DEMO_MODEL}:2",
        f"{DEMO_MODEL}:1",
    )
    assert april.verdict.passed
    v2, holder = april.verdict.candidate, april.verdict.baseline
    assert holder is not None
    assert v2["test_windows"] == holder["test_windows"] >= 1  # the same rows and labels
    for metric in ("nab_standard", "event_f1"):
        margin = bars[metric].max_drop
        assert margin is not None
        assert v2[metric] >= holder[metric] - margin, (metric, v2, holder)
        assert v2[metric] >= (bars[metric].min_value or 0.0), (metric, v2)
    assert set(april.verdict.notes) == {f"{DEMO_MODEL}:1", f"{DEMO_MODEL}:2"}
    assert all("swept on the validation slice" in n for n in april.verdict.notes.values())
    with Workspace(Settings(workspace=tmp_path / ".perfml" / "demo")) as workspace:
        registry = workspace.registry(background_delivery=False)
        recorded = {v.version: v.threshold for v in registry.versions(DEMO_MODEL)}
    # the threshold recorded on each version is the one chosen on its validation slice
    assert recorded == {1: v1["threshold"], 2: v2["threshold"]}
    gate_lines = [line for line in said if "gate: request-latency:" in line]
    assert gate_lines[0].startswith(f"gate: {DEMO_MODEL}:1 (NAB {v1['nab_standard']:.1f}, ")
    assert f"against {DEMO_MODEL}:1 (NAB {holder['nab_standard']:.1f}, " in gate_lines[1]
    assert gate_lines[1].endswith(": passed")
    assert gates_table(outcome).row_count == 3  # v1; v2 and its holder

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
