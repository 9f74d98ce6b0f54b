"""The Grafana export: structurally valid dashboard JSON, the same panels as the web page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from perfml.dashboard.grafana import (
    DATASOURCE_INPUT,
    SCHEMA_VERSION,
    grafana_dashboard,
    grafana_dashboards,
    render_json,
    write_grafana_dashboards,
)
from perfml.dashboard.panels import POD_PHASES, ChartKind, Page, Panel, Query, default_dashboard
from perfml.promql.parser import parse

GRAFANA_UNITS = {"short", "none", "s", "ms", "bytes", "Bps", "reqps", "percentunit", "percent"}
"""Unit ids Grafana's field config knows (a subset: those a perfml panel may use)."""
PANEL_TYPES = {"timeseries", "stat", "table", "state-timeline", "text"}
DATASOURCE_REF = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

Json = dict[str, Any]


def all_models() -> list[Json]:
    return list(grafana_dashboards().values())


def _overlap(a: Json, b: Json) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def test_one_dashboard_per_page_with_stable_names() -> None:
    models = grafana_dashboards()
    assert list(models) == [
        "perfml-jobs.json",
        "perfml-inference.json",
        "perfml-anomalies.json",
        "perfml-drift.json",
        "perfml-models.json",
        "perfml-alerts.json",
    ]
    assert len({m["uid"] for m in models.values()}) == 6
    assert models["perfml-drift.json"]["time"] == {"from": "now-400d", "to": "now"}


@pytest.mark.parametrize("model", all_models(), ids=lambda m: m["uid"])
def test_dashboard_structure(model: Json) -> None:
    assert model["schemaVersion"] == SCHEMA_VERSION
    assert model["tags"] == ["perfml"]
    assert [i["name"] for i in model["__inputs"]] == [DATASOURCE_INPUT]
    assert model["__inputs"][0]["pluginId"] == "prometheus"
    panels = model["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    assert all(isinstance(i, int) and i > 0 for i in ids)
    required = {r["id"] for r in model["__requires"] if r["type"] == "panel"}
    assert required == {p["type"] for p in panels}
    for index, panel in enumerate(panels):
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"}
        assert grid["w"] > 0
        assert grid["h"] > 0
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= 24
        assert not any(_overlap(grid, other["gridPos"]) for other in panels[:index])
        assert panel["type"] in PANEL_TYPES
        assert panel["title"]


@pytest.mark.parametrize("model", all_models(), ids=lambda m: m["uid"])
def test_targets_parse_and_use_the_datasource_input(model: Json) -> None:
    for panel in model["panels"]:
        if panel["type"] == "text":
            assert "targets" not in panel
            assert panel["options"]["content"]
            continue
        assert panel["datasource"] == DATASOURCE_REF
        assert panel["fieldConfig"]["defaults"]["unit"] in GRAFANA_UNITS
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[0] == {"color": "green", "value": None}
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)) >= 1
        for target in panel["targets"]:
            parse(target["expr"])
            assert target["datasource"] == DATASOURCE_REF
            assert target["legendFormat"]


def test_panels_follow_their_definitions() -> None:
    dashboard = default_dashboard()
    for page in dashboard.pages:
        model = grafana_dashboard(page)
        for panel, exported in zip(page.panels, model["panels"], strict=True):
            assert exported["title"] == panel.title
            if panel.queries:
                assert [t["expr"] for t in exported["targets"]] == [q.expr for q in panel.queries]
    latency = grafana_dashboard(dashboard.page("inference"))["panels"][4]
    assert latency["title"] == "Latency"
    assert latency["type"] == "timeseries"
    assert [t["legendFormat"] for t in latency["targets"]] == ["p50", "p95", "p99"]
    assert latency["fieldConfig"]["defaults"]["unit"] == "s"


def test_drift_threshold_is_a_red_step_drawn_as_a_line() -> None:
    drift = grafana_dashboard(default_dashboard(drift_threshold=0.2).page("drift"))["panels"][0]
    defaults = drift["fieldConfig"]["defaults"]
    assert defaults["thresholds"]["steps"][-1] == {"color": "red", "value": 0.2}
    assert defaults["custom"]["thresholdsStyle"] == {"mode": "line"}


def test_job_states_are_a_state_timeline_with_the_pod_phases() -> None:
    states = grafana_dashboard(default_dashboard().page("jobs"))["panels"][0]
    assert states["type"] == "state-timeline"
    mapping = states["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert [mapping[str(i)]["text"] for i in range(len(POD_PHASES))] == list(POD_PHASES)
    assert states["gridPos"]["w"] == 24


def test_registry_tables_become_notes_and_alerts_read_prometheus() -> None:
    models = grafana_dashboard(default_dashboard().page("models"))
    kinds = {p["title"]: p["type"] for p in models["panels"]}
    assert kinds == {
        "Versions": "text",
        "Aliases": "text",
        "Loaded version over time": "timeseries",
        "Audit log": "text",
    }
    alerts = grafana_dashboard(default_dashboard().page("alerts"))["panels"]
    assert [p["type"] for p in alerts] == ["table", "table"]
    assert alerts[0]["targets"][0] | {"datasource": None} == {
        "datasource": None,
        "expr": 'ALERTS{alertstate="firing"}',
        "format": "table",
        "instant": True,
        "legendFormat": "{{alertname}}",
        "range": False,
        "refId": "A",
    }


def test_layout_wraps_rows() -> None:
    page = Page(
        "p",
        "P",
        tuple(
            Panel(f"s{i}", f"S{i}", ChartKind.STAT, (Query("up"),), width=w)
            for i, w in enumerate((12, 12, 18, 6, 8))
        ),
    )
    grids = [p["gridPos"] for p in grafana_dashboard(page)["panels"]]
    assert [(g["x"], g["y"]) for g in grids] == [(0, 0), (12, 0), (0, 8), (18, 8), (0, 16)]


def test_export_is_deterministic_and_atomic(tmp_path: Path) -> None:
    first = write_grafana_dashboards(tmp_path / "a")
    second = write_grafana_dashboards(tmp_path / "b")
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes()
        assert json.loads(a.read_text()) == grafana_dashboards()[a.name]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(p.name for p in first)
    text = render_json(grafana_dashboards()["perfml-jobs.json"])
    assert text.endswith("}\n")
    assert "NaN" not in text
