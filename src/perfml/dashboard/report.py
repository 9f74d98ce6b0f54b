"""A self-contained HTML report: the dashboard's panels for one time range, frozen into one file.

:func:`write_report` reads the same sources as the live dashboard and writes one HTML file
that opens offline from disk and makes no network request at all: the CSS, Plotly's
JavaScript (from the installed ``plotly`` package), the dashboard's own drawing script and
the data (an inline ``application/json`` script tag) are all inside it. The charts are the
dashboard's: each panel is :func:`perfml.dashboard.data.panel_data` of a panel of the
dashboard's pages, drawn by ``static/dashboard.js``; what no page shows is built here as
panel data of the same shape (:mod:`perfml.dashboard.report_panels`):

- **summary**: the key figures, the promotions and the controller's decisions with reasons;
- **drift**: the divergence of each feature per window (one trace per feature, windows on x,
  the threshold as a dashed line) and the same as a table with the cells over the threshold
  flagged, from drift records or else from the figures of the controller's decisions;
- **jobs**: the training jobs' states over time (the run history);
- **inference**: latency p50, p95, p99 over time;
- **anomalies**: the hosts' scores over their thresholds over time (a heatmap), the incidents,
  and the incidents per month (with labels, the labelled windows found);
- **alerts**: each alert's pending, firing and resolved spans, and its state changes;
- **models**: which version each alias held over time, the versions, aliases and audit log.

Promotions are marked on every time axis. The file is the same for the same inputs but for
the generation time it shows.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Final

from perfml.atomic import atomic_output
from perfml.dashboard.anomalies import (
    NO_SCORES,
    NOT_CONNECTED,
    findings,
    monthly_counts,
    report_labels,
)
from perfml.dashboard.app import STATIC_DIR, TEMPLATES_DIR, plotly_js
from perfml.dashboard.data import DashboardSources, Focus, Json, TimeRange, panel_data
from perfml.dashboard.panels import Dashboard, default_dashboard
from perfml.dashboard.records import format_time
from perfml.dashboard.report_panels import (
    alert_timeline,
    alias_timeline,
    decisions_table,
    drift_method,
    drift_panels,
    promotion_markers,
    promotions_table,
    registry_moves,
    report_panel,
    summary_facts,
)

if TYPE_CHECKING:
    from perfml.controller.decisions import Decision
    from perfml.drift.report import DriftRecord

DATA_ELEMENT_ID: Final = "perfml-data"
"""The id of the script tag holding the report's JSON; ``dashboard.js`` draws from it."""
_SCRIPT_END = re.compile(r"</(script)", re.IGNORECASE)


@dataclass(frozen=True)
class Section:
    """A section of the report: its anchor, title, description and panels (JSON)."""

    id: str
    title: str
    description: str
    panels: list[Json] = field(default_factory=list)

    def to_json(self) -> Json:
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "panels": self.panels,
        }


def report_data(
    sources: DashboardSources,
    window: TimeRange,
    *,
    drift: Sequence[DriftRecord] | None = None,
    decisions: Sequence[Decision] = (),
    title: str = "perfml report",
    dashboard: Dashboard | None = None,
    generated_at: datetime | None = None,
) -> Json:
    """Everything the report shows, as JSON-able data: ``title``, ``generated``, ``range``
    and the ``sections``, each with its ``panels`` in the shape of
    :func:`~perfml.dashboard.data.panel_data` (ids prefixed with the section's)."""
    book = dashboard or default_dashboard()
    drift_panel = book.page("drift").panel("feature-drift")
    method = drift_method(drift_panel.queries[0].expr) if drift_panel.queries else "kl"
    default_threshold = drift_panel.threshold.value if drift_panel.threshold else None
    moves = registry_moves(sources)
    markers = promotion_markers(moves, window)

    def dashboard_panel(page: str, panel: str, marked: bool = False, width: int = 24) -> Json:
        # Ids are unique within a page; the report holds several pages' panels.
        answer = panel_data(book.page(page).panel(panel), sources, window)
        answer["id"] = f"{page}-{answer['id']}"
        answer["width"] = width
        if marked:
            answer["markers"] = markers
        return answer

    jobs = dashboard_panel("jobs", "job-states", marked=True)
    alert_lanes = alert_timeline(sources, window)
    drift_chart = drift_panels(drift or (), decisions, method, default_threshold)
    if not drift_chart[0]["series"]:
        # Nothing measured for the report: the drift the metrics store recorded, over time.
        recorded = dashboard_panel("drift", "feature-drift")
        drift_chart = [recorded]
    sections = [
        Section(
            "summary",
            "Summary",
            "The models in service, how they got there, and what the controller decided.",
            [
                summary_facts(sources, window, moves, decisions, jobs, alert_lanes),
                promotions_table(moves),
                decisions_table(decisions),
            ],
        ),
        Section(
            "drift",
            "Drift",
            "How far each window's data is from the data the served model was trained on.",
            drift_chart,
        ),
        Section("jobs", "Training jobs", "Each pipeline job's state over time.", [jobs]),
        Section(
            "inference",
            "Inference",
            "Latency quantiles of the inference server's answers.",
            [dashboard_panel("inference", "latency", marked=True)],
        ),
        Section(
            "anomalies",
            "Anomalies",
            "Which hosts were anomalous, on which metrics, when: from the score log.",
            [
                dashboard_panel("anomalies", "heatmap"),
                _without_links(dashboard_panel("anomalies", "incidents")),
                anomalies_per_month(sources, window),
            ],
        ),
        Section(
            "alerts",
            "Alerts",
            "Each alert's pending, firing and resolved spans, and its state changes.",
            [alert_lanes, dashboard_panel("alerts", "alert-history")],
        ),
        Section(
            "models",
            "Models",
            "Which version each alias held over time; every version and every alias move.",
            [
                alias_timeline(moves, window, markers),
                dashboard_panel("models", "versions"),
                dashboard_panel("models", "aliases"),
                dashboard_panel("models", "audit-log"),
            ],
        ),
    ]
    moment = generated_at or datetime.now(UTC)
    return {
        "title": title,
        "generated": format_time(moment.timestamp()),
        "range": {"start": window.start_ms, "end": window.end_ms, "step": window.step_ms},
        "sections": [section.to_json() for section in sections],
    }


def _without_links(panel: Json) -> Json:
    # A link to a host's view is the live dashboard's: the report is a file.
    panel.pop("links", None)
    return panel


def anomalies_per_month(sources: DashboardSources, window: TimeRange) -> Json:
    """The incidents per month of the report's range, and the labelled windows found."""
    columns = ["month", "incidents", "fleet incidents", "hosts", "labelled windows found"]
    rows: list[list[object]] = []
    log = sources.scores
    if log is None:
        message = NOT_CONNECTED
    elif not log.models():
        message = NO_SCORES
    else:
        found = findings(sources, log, window, Focus())
        rows = monthly_counts(found, report_labels(sources, window))
        message = "No incident in this report's range."
    return report_panel(
        "anomalies-months",
        "Incidents per month",
        "table",
        note="Host incidents outside fleet incidents, fleet incidents, the hosts with an "
        "incident, and the labelled windows with an anomalous point of their metric.",
        message=message,
        columns=columns,
        rows=rows,
    )


def write_report(
    path: str | Path,
    sources: DashboardSources,
    window: TimeRange,
    *,
    drift: Sequence[DriftRecord] | None = None,
    decisions: Sequence[Decision] = (),
    title: str = "perfml report",
    dashboard: Dashboard | None = None,
    generated_at: datetime | None = None,
) -> Path:
    """Write the report of ``sources`` over ``window`` to ``path`` (atomically) and return it.

    ``drift`` are drift records (:attr:`perfml.drift.DriftReport.records`) to chart; without
    them, the drift figures of ``decisions`` (the controller's log) are charted, and without
    those, the drift the metrics store recorded. ``dashboard`` gives the panels (perfml's by
    default); ``generated_at`` (default: now) is the one thing that differs between two
    reports of the same inputs.
    """
    data = report_data(
        sources,
        window,
        drift=drift,
        decisions=decisions,
        title=title,
        dashboard=dashboard,
        generated_at=generated_at,
    )
    target = Path(path)
    with atomic_output(target) as temporary:
        temporary.write_text(render_report(data), encoding="utf-8")
    return target


# -- HTML ----------------------------------------------------------------------------------


def json_for_script(data: object) -> str:
    """``data`` as strict JSON safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` are
    escaped, so no text in the data can end the element.

    >>> json_for_script({"a": "</script><b>"})
    '{"a":"\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e"}'
    """
    text = json.dumps(data, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def inline_script(source: str) -> str:
    """JavaScript ``source`` made safe to inline: a ``</script`` in it (in a string or a
    comment) becomes ``<\\/script``, which means the same to JavaScript.

    >>> inline_script('x = "</script>"')
    'x = "<\\\\/script>"'
    """
    return _SCRIPT_END.sub(r"<\\/\1", source)


def render_report(data: Json) -> str:
    """The HTML of the report of ``data`` (see :func:`report_data`)."""
    esc = html.escape
    template = Template((TEMPLATES_DIR / "report.html").read_text(encoding="utf-8"))
    start, end = data["range"]["start"], data["range"]["end"]
    nav = "".join(f'<a href="#{esc(s["id"])}">{esc(s["title"])}</a>' for s in data["sections"])
    return template.substitute(
        title=esc(data["title"]),
        generated=esc(data["generated"]),
        range=esc(f"{format_time(start / 1000)} → {format_time(end / 1000)}"),
        nav=nav,
        sections="\n".join(_section_html(s) for s in data["sections"]),
        css=(STATIC_DIR / "dashboard.css").read_text(encoding="utf-8"),
        data_id=DATA_ELEMENT_ID,
        data=json_for_script(data),
        plotly=inline_script(plotly_js().read_text(encoding="utf-8")),
        script=inline_script((STATIC_DIR / "dashboard.js").read_text(encoding="utf-8")),
    )


def _section_html(section: Json) -> str:
    esc = html.escape
    panels = "\n".join(
        f'    <section class="panel kind-{esc(p["kind"])}" id="panel-{esc(p["id"])}" '
        f'style="grid-column: span {int(p["width"])}">\n'
        f"      <h3>{esc(p['title'])}</h3>\n"
        f'      <div class="body" id="body-{esc(p["id"])}" data-kind="{esc(p["kind"])}">'
        '<p class="message">Drawing…</p></div>\n'
        + (f'      <p class="note">{esc(p["note"])}</p>\n' if p["note"] else "")
        + "    </section>"
        for p in section["panels"]
    )
    return (
        f'<section class="report-section" id="{esc(section["id"])}">\n'
        f"  <h2>{esc(section['title'])}</h2>\n"
        f'  <p class="description">{esc(section["description"])}</p>\n'
        f'  <div class="grid">\n{panels}\n  </div>\n</section>'
    )
