"""Grafana dashboards of the dashboard's pages: one JSON model per page, ready to import.

Each panel of :mod:`perfml.dashboard.panels` becomes a Grafana panel of its kind
(:data:`PANEL_TYPES`) with one target per query (``expr``, ``legendFormat``), its unit and
its threshold (a red step, drawn as a line on a time series). The datasource is the import
input ``${DS_PROMETHEUS}``, so Grafana asks which Prometheus on import (or a provisioning
ConfigMap substitutes it). A panel read from perfml's own records and without a query (the
registry's tables) is exported as a text panel pointing at perfml, which holds them.

The output is deterministic: the same pages give the same bytes (keys sorted, no time
stamps), so exported dashboards can be committed and diffed.

>>> from perfml.dashboard.panels import default_dashboard
>>> model = grafana_dashboard(default_dashboard().page("inference"))
>>> model["uid"], model["title"], [p["type"] for p in model["panels"]][:3]
('perfml-inference', 'perfml / Inference', ['timeseries', 'stat', 'stat'])
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from perfml.atomic import atomic_output
from perfml.dashboard.panels import (
    GRID_COLUMNS,
    STATE_COLORS,
    ChartKind,
    Dashboard,
    Page,
    Panel,
    default_dashboard,
)

SCHEMA_VERSION: Final = 39
"""The dashboard JSON schema of Grafana 10.4 / 11."""
DATASOURCE_INPUT: Final = "DS_PROMETHEUS"
DATASOURCE: Final[Mapping[str, str]] = {"type": "prometheus", "uid": f"${{{DATASOURCE_INPUT}}}"}
TAG: Final = "perfml"
PANEL_TYPES: Final[Mapping[ChartKind, str]] = {
    ChartKind.TIMESERIES: "timeseries",
    ChartKind.STAT: "stat",
    ChartKind.TABLE: "table",
    ChartKind.TIMELINE: "state-timeline",
    ChartKind.HEATMAP: "heatmap",
}
"""The Grafana panel type of each chart kind (a panel without queries is a ``text``)."""
_HEIGHTS: Final[Mapping[ChartKind, int]] = {
    ChartKind.TIMESERIES: 8,
    ChartKind.STAT: 8,
    ChartKind.TABLE: 8,
    ChartKind.TIMELINE: 10,
    ChartKind.HEATMAP: 10,
}
_REF_IDS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

Json = dict[str, Any]


def dashboard_uid(page: Page) -> str:
    """The Grafana uid of ``page``'s dashboard (stable, so links and re-imports hold)."""
    return f"{TAG}-{page.slug}"


def file_name(page: Page) -> str:
    return f"{dashboard_uid(page)}.json"


def _thresholds(panel: Panel) -> Json:
    steps: list[Json] = [{"color": "green", "value": None}]
    if panel.threshold is not None:
        steps.append({"color": "red", "value": panel.threshold.value})
    return {"mode": "absolute", "steps": steps}


def _targets(panel: Panel, instant: bool) -> list[Json]:
    return [
        {
            "datasource": dict(DATASOURCE),
            "expr": query.expr,
            "legendFormat": query.legend or "__auto",
            "refId": _REF_IDS[index],
            "range": not instant,
            "instant": instant,
            **({"format": "table"} if instant else {}),
        }
        for index, query in enumerate(panel.queries)
    ]


def _value_mappings(panel: Panel) -> list[Json]:
    if not panel.value_names:
        return []
    options = {
        str(code): {"color": STATE_COLORS.get(name, "#8e8e8e"), "index": code, "text": name}
        for code, name in enumerate(panel.value_names)
    }
    return [{"options": options, "type": "value"}]


def _options(panel: Panel) -> Json:
    legend = {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []}
    if panel.kind is ChartKind.TIMESERIES:
        return {"legend": legend, "tooltip": {"mode": "multi", "sort": "desc"}}
    if panel.kind is ChartKind.STAT:
        return {
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "auto",
        }
    if panel.kind is ChartKind.TIMELINE:
        return {
            "alignValue": "left",
            "legend": legend,
            "mergeValues": True,
            "rowHeight": 0.9,
            "showValue": "never",
            "tooltip": {"mode": "single", "sort": "none"},
        }
    return {"cellHeight": "sm", "showHeader": True}


def _field_defaults(panel: Panel) -> Json:
    defaults: Json = {"unit": panel.unit, "thresholds": _thresholds(panel)}
    if panel.kind is ChartKind.TIMESERIES:
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 0,
            "showPoints": "auto",
            "spanNulls": False,
            "thresholdsStyle": {"mode": "line" if panel.threshold is not None else "off"},
        }
        defaults["color"] = {"mode": "palette-classic"}
    elif panel.kind is ChartKind.TIMELINE:
        defaults["mappings"] = _value_mappings(panel)
        defaults["color"] = {"mode": "thresholds"}
        defaults["custom"] = {"fillOpacity": 80, "lineWidth": 0}
    return defaults


def grafana_panel(panel: Panel, panel_id: int, grid: Json) -> Json:
    """The Grafana panel of ``panel``, numbered ``panel_id`` and placed at ``grid``."""
    if not panel.queries:
        content = (
            f"**{panel.title}** are kept by perfml, not in Prometheus. "
            f"{panel.note} See the *{panel.title}* panel of perfml's own dashboard "
            "(`perfml dashboard`)."
        )
        return {
            "gridPos": grid,
            "id": panel_id,
            "options": {"content": content, "mode": "markdown"},
            "title": panel.title,
            "type": "text",
        }
    return {
        "datasource": dict(DATASOURCE),
        "description": panel.note,
        "fieldConfig": {"defaults": _field_defaults(panel), "overrides": []},
        "gridPos": grid,
        "id": panel_id,
        "options": _options(panel),
        "targets": _targets(panel, instant=panel.kind is ChartKind.TABLE),
        "title": panel.title,
        "type": PANEL_TYPES[panel.kind],
    }


def _layout(page: Page) -> list[Json]:
    """Grid positions, left to right, a new row when a panel does not fit."""
    grids: list[Json] = []
    x = y = row_height = 0
    for panel in page.panels:
        height = _HEIGHTS[panel.kind]
        if x + panel.width > GRID_COLUMNS:
            x, y, row_height = 0, y + row_height, 0
        grids.append({"h": height, "w": panel.width, "x": x, "y": y})
        x += panel.width
        row_height = max(row_height, height)
    return grids


def grafana_dashboard(page: Page) -> Json:
    """The Grafana dashboard JSON model of ``page``."""
    panels = [
        grafana_panel(panel, number, grid)
        for number, (panel, grid) in enumerate(zip(page.panels, _layout(page), strict=True), 1)
    ]
    used = sorted({p["type"] for p in panels})
    return {
        "__inputs": [
            {
                "description": "The Prometheus that scrapes perfml and the cluster",
                "label": "Prometheus",
                "name": DATASOURCE_INPUT,
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
                "type": "datasource",
            }
        ],
        "__requires": [
            {"id": "grafana", "name": "Grafana", "type": "grafana", "version": "10.4.0"},
            {"id": "prometheus", "name": "Prometheus", "type": "datasource", "version": "1.0.0"},
            *({"id": kind, "name": kind, "type": "panel", "version": ""} for kind in used),
        ],
        "annotations": {"list": []},
        "description": page.description,
        "editable": True,
        "graphTooltip": 1,
        "links": [
            {
                "asDropdown": False,
                "includeVars": False,
                "keepTime": True,
                "tags": [TAG],
                "title": "perfml",
                "type": "dashboards",
            }
        ],
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": [TAG],
        "templating": {"list": []},
        "time": {"from": f"now-{page.default_range}", "to": "now"},
        "timepicker": {},
        "timezone": "utc",
        "title": f"perfml / {page.title}",
        "uid": dashboard_uid(page),
        "version": 1,
    }


def render_json(model: Json) -> str:
    """``model`` as the bytes to write: keys sorted, two-space indent, a final newline."""
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def grafana_dashboards(dashboard: Dashboard | None = None) -> dict[str, Json]:
    """Every page's dashboard, by file name (``perfml-<page>.json``)."""
    pages = (dashboard or default_dashboard()).pages
    return {file_name(page): grafana_dashboard(page) for page in pages}


def write_grafana_dashboards(out_dir: Path, dashboard: Dashboard | None = None) -> list[Path]:
    """Write every page's dashboard into ``out_dir`` (created), each file atomically; returns
    the paths written, in the order of the pages."""
    written = []
    for name, model in grafana_dashboards(dashboard).items():
        path = out_dir / name
        with atomic_output(path) as temporary:
            temporary.write_text(render_json(model), encoding="utf-8")
        written.append(path)
    return written
