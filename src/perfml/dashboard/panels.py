"""The dashboard's panels, as data: one definition drawn by perfml's web page and exported to
Grafana.

A :class:`Panel` says what to show (PromQL queries with Grafana's legend format, or one of
perfml's own records: the run history, the registry, the alerts, the controller's decisions,
the fleet's score log), how (a
:class:`ChartKind`), in which unit (a Grafana unit id, see :data:`UNITS`) and with which
threshold line. Panels are grouped into :class:`Page` s, and the pages into a
:class:`Dashboard`. The metric names are those of "One vocabulary for both worlds" (DESIGN.md),
so the same query reads perfml's embedded store and a cluster's Prometheus alike.

>>> dashboard = default_dashboard()
>>> dashboard.slugs
('jobs', 'inference', 'anomalies', 'drift', 'models', 'alerts')
>>> latency = dashboard.page("inference").panel("latency")
>>> [q.legend for q in latency.queries]
['p50', 'p95', 'p99']
>>> Query("up", "{{instance}} ({{job}})").legend_for({"instance": "a:80", "job": "serving"})
'a:80 (serving)'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from perfml.dashboard.errors import PanelDefinitionError, UnknownPageError

GRID_COLUMNS: Final = 24
"""The width of a page in grid columns (Grafana's grid)."""
DEFAULT_DRIFT_THRESHOLD: Final = 0.1
"""The KL divergence above which a feature counts as drifted (DESIGN.md, drift)."""
POD_PHASES: Final = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
"""The phases of ``kube_pod_status_phase``, in the order of the job timeline's state codes."""

UNITS: Final[Mapping[str, tuple[str, str]]] = {
    "short": (".3s", ""),
    "none": ("", ""),
    "s": (".3s", "s"),
    "bytes": (".3s", "B"),
    "Bps": (".3s", "B/s"),
    "reqps": (".3s", " req/s"),
    "percentunit": (".2%", ""),
}
"""Each Grafana unit id a panel may use → how the web page formats it: a d3 number format
and a suffix (``.3s`` is SI: 0.005 s reads ``5.00ms``)."""

STATE_COLORS: Final[Mapping[str, str]] = {
    "Pending": "#e0b400",
    "Running": "#3274d9",
    "Succeeded": "#37872d",
    "Failed": "#c4162a",
    "Cancelled": "#8e8e8e",
    "Unknown": "#8e8e8e",
}
"""The colour of each job or pod state, on the web page and in Grafana alike."""

_SLUG = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_LEGEND_LABEL = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


class ChartKind(StrEnum):
    """How a panel is drawn; each maps to one Grafana panel type (see :mod:`.grafana`)."""

    TIMESERIES = "timeseries"
    """Lines over time, one per series."""
    STAT = "stat"
    """The latest value of each series, as a big number."""
    TABLE = "table"
    """Rows of records (registry, alerts) or of the latest value of each series."""
    TIMELINE = "timeline"
    """Coloured state spans over time, one lane per job (Grafana's state timeline)."""
    HEATMAP = "heatmap"
    """A colour per row and time bucket (the hosts' scores over their thresholds)."""


class Source(StrEnum):
    """Where a panel's data comes from on perfml's web page.

    Grafana only reads Prometheus: it draws a panel from its :attr:`Panel.queries`, whatever
    the source; a panel without queries is exported as a note pointing at perfml.
    """

    PROMQL = "promql"
    """The panel's queries, evaluated over the time range."""
    RUN_HISTORY = "run_history"
    """Jobs and their state transitions, from the pipelines' run history."""
    MODEL_VERSIONS = "model_versions"
    MODEL_ALIASES = "model_aliases"
    AUDIT_LOG = "audit_log"
    """Every alias move recorded by the registry."""
    ACTIVE_ALERTS = "active_alerts"
    ALERT_HISTORY = "alert_history"
    CONTROLLER_DECISIONS = "controller_decisions"
    """The controller's recorded decisions (``perfml controller history``)."""
    ANOMALY_HEATMAP = "anomaly_heatmap"
    """Each host's highest score over its threshold per time bucket, from the score log."""
    INCIDENTS = "incidents"
    """The incidents of the score log: per host, and fleet-wide ones as one."""
    HOST_SCORES = "host_scores"
    """One host's metrics with their scores, the threshold, labelled windows and incidents."""


@dataclass(frozen=True)
class Query:
    """A PromQL expression and the legend of each series it gives, in Grafana's format:
    ``{{label}}`` stands for the value of ``label``. An empty legend shows all labels."""

    expr: str
    legend: str = ""

    def legend_for(self, labels: Mapping[str, str]) -> str:
        """The legend of the series with ``labels``."""
        if not self.legend:
            shown = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
            return f"{{{shown}}}" if shown else self.expr
        return _LEGEND_LABEL.sub(lambda m: labels.get(m.group(1), ""), self.legend)


@dataclass(frozen=True)
class Threshold:
    """A horizontal line at ``value`` (in the panel's unit): over it is bad."""

    value: float
    label: str = ""


@dataclass(frozen=True)
class Panel:
    """One chart or table: what it shows, how, in which unit.

    ``value_names`` name the values a timeline's query gives (value ``i`` is
    ``value_names[i]``), for Grafana's value mappings. ``note`` is shown under the panel: what
    the data is, and what is not there and why. ``width`` is in grid columns (of 24).
    """

    id: str
    title: str
    kind: ChartKind
    queries: tuple[Query, ...] = ()
    source: Source = Source.PROMQL
    unit: str = "short"
    threshold: Threshold | None = None
    value_names: tuple[str, ...] = ()
    note: str = ""
    width: int = 12

    def __post_init__(self) -> None:
        if not _SLUG.match(self.id):
            raise PanelDefinitionError(self.id, "an id is lowercase letters, digits and '-'")
        if self.source is Source.PROMQL and not self.queries:
            raise PanelDefinitionError(self.id, "a PromQL panel needs at least one query")
        if any(not q.expr.strip() for q in self.queries):
            raise PanelDefinitionError(self.id, "a query has an empty expression")
        if self.unit not in UNITS:
            raise PanelDefinitionError(
                self.id, f"unit {self.unit!r} is not one of {', '.join(UNITS)}"
            )
        if self.kind is ChartKind.HEATMAP and self.source is Source.PROMQL:
            raise PanelDefinitionError(self.id, "a heatmap reads the score log, not PromQL")
        if self.threshold is not None and self.kind is not ChartKind.TIMESERIES:
            raise PanelDefinitionError(self.id, "only a time series draws a threshold line")
        if self.kind is ChartKind.TIMELINE and self.queries and not self.value_names:
            raise PanelDefinitionError(self.id, "a timeline's query needs value_names")
        if not 1 <= self.width <= GRID_COLUMNS:
            raise PanelDefinitionError(self.id, f"width {self.width} is not within 1..24")


@dataclass(frozen=True)
class Page:
    """A page of panels about one part of the lifecycle; ``default_range`` is the time range
    it opens with (a duration: ``1h``, ``400d``), ending now, or, with ``ends_at_latest_data``,
    at the latest data it shows (scores of a backfilled past are shown where they are)."""

    slug: str
    title: str
    panels: tuple[Panel, ...]
    description: str = ""
    default_range: str = "1h"
    ends_at_latest_data: bool = False
    _by_id: Mapping[str, Panel] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _SLUG.match(self.slug):
            raise PanelDefinitionError(self.slug, "a page's slug is lowercase letters, digits, '-'")
        if not self.panels:
            raise PanelDefinitionError(self.slug, "a page needs at least one panel")
        by_id: dict[str, Panel] = {}
        for panel in self.panels:
            if panel.id in by_id:
                raise PanelDefinitionError(panel.id, f"defined twice on page {self.slug!r}")
            by_id[panel.id] = panel
        object.__setattr__(self, "_by_id", by_id)

    def panel(self, panel_id: str) -> Panel:
        """The panel ``panel_id`` of this page."""
        found = self._by_id.get(panel_id)
        if found is None:
            raise PanelDefinitionError(panel_id, f"no such panel on page {self.slug!r}")
        return found


class Dashboard:
    """The pages, in the order of the navigation; build your own or take
    :func:`default_dashboard`."""

    def __init__(self, pages: Iterable[Page]) -> None:
        self.pages: tuple[Page, ...] = tuple(pages)
        self._by_slug = {page.slug: page for page in self.pages}
        if len(self._by_slug) != len(self.pages):
            raise PanelDefinitionError(
                ",".join(p.slug for p in self.pages), "two pages share a slug"
            )

    @property
    def slugs(self) -> tuple[str, ...]:
        return tuple(self._by_slug)

    def page(self, slug: str) -> Page:
        """The page ``slug``; :class:`UnknownPageError` names the pages there are."""
        found = self._by_slug.get(slug)
        if found is None:
            raise UnknownPageError(slug, self.slugs)
        return found


def _rate(metric: str, selector: str, by: str = "", window: str = "5m") -> str:
    inner = f"rate({metric}{{{selector}}}[{window}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def phase_code_query(namespace: str, phases: Sequence[str] = POD_PHASES) -> str:
    """PromQL giving each pod's phase as a number: ``i`` for ``phases[i]`` (kube-state-metrics
    exports one 0/1 series per phase, so the codes weighted by the flags add up to one).

    >>> phase_code_query("perfml", ("Pending", "Running"))
    'sum by (pod) (kube_pod_status_phase{namespace="perfml",phase="Running"})'
    """
    terms = []
    for code, phase in enumerate(phases):
        if code == 0:
            continue  # weighted by 0: adds nothing
        flag = f'sum by (pod) (kube_pod_status_phase{{namespace="{namespace}",phase="{phase}"}})'
        terms.append(flag if code == 1 else f"{code} * {flag}")
    return " + ".join(terms)


def jobs_page(namespace: str = "perfml") -> Page:
    """Training jobs: states over time, time in state per step, CPU, memory, disk, network."""
    pods = f'namespace="{namespace}"'
    return Page(
        "jobs",
        "Training jobs",
        (
            Panel(
                "job-states",
                "Job states",
                ChartKind.TIMELINE,
                (Query(phase_code_query(namespace), "{{pod}}"),),
                source=Source.RUN_HISTORY,
                value_names=POD_PHASES,
                note="Each job's state over time, from the run history's transitions.",
                width=24,
            ),
            Panel(
                "phase-seconds",
                "Time in state per step",
                ChartKind.TIMESERIES,
                (Query("perfml_job_phase_seconds", "{{pipeline}}/{{step}} {{phase}}"),),
                unit="s",
                note="Seconds the latest job of each step spent Pending and Running.",
            ),
            Panel(
                "cpu",
                "CPU (cores)",
                ChartKind.TIMESERIES,
                (Query(f"rate(container_cpu_usage_seconds_total{{{pods}}}[5m])", "{{pod}}"),),
                unit="short",
            ),
            Panel(
                "memory",
                "Memory (working set)",
                ChartKind.TIMESERIES,
                (Query(f"container_memory_working_set_bytes{{{pods}}}", "{{pod}}"),),
                unit="bytes",
            ),
            Panel(
                "disk",
                "Disk bytes",
                ChartKind.TIMESERIES,
                (
                    Query(f"rate(container_fs_reads_bytes_total{{{pods}}}[5m])", "{{pod}} read"),
                    Query(f"rate(container_fs_writes_bytes_total{{{pods}}}[5m])", "{{pod}} write"),
                ),
                unit="Bps",
            ),
            Panel(
                "network",
                "Network bytes",
                ChartKind.TIMESERIES,
                (
                    Query(
                        f"rate(container_network_receive_bytes_total{{{pods}}}[5m])",
                        "{{pod}} received",
                    ),
                    Query(
                        f"rate(container_network_transmit_bytes_total{{{pods}}}[5m])",
                        "{{pod}} sent",
                    ),
                ),
                unit="Bps",
                note=(
                    "perfml's local runner does not export network bytes: they cannot be "
                    "measured per process. On Kubernetes, cAdvisor exports them."
                ),
                width=24,
            ),
        ),
        "Pipeline jobs as Kubernetes shows them: pods, phases and containers' resources.",
    )


def inference_page(serving_job: str = "perfml-serving") -> Page:
    """Inference: uptime, request rate, latency quantiles, error rate, loaded version."""
    histogram = "seldon_api_executor_server_requests_seconds"
    predictions = 'service="predictions"'
    quantiles = tuple(
        Query(
            f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket{{{predictions}}}[5m])))",
            f"p{round(q * 100)}",
        )
        for q in (0.5, 0.95, 0.99)
    )
    errors = _rate(f"{histogram}_count", f'{predictions},code=~"[45].."')
    requests = _rate(f"{histogram}_count", predictions)
    return Page(
        "inference",
        "Inference",
        (
            Panel(
                "up",
                "Up",
                ChartKind.TIMESERIES,
                (Query(f'up{{job="{serving_job}"}}', "{{instance}}"),),
                unit="none",
                note="1 while the server answers its scrapes, 0 when it does not.",
            ),
            Panel(
                "uptime",
                "Uptime (24 h)",
                ChartKind.STAT,
                (Query(f'avg_over_time(up{{job="{serving_job}"}}[1d])', "{{instance}}"),),
                unit="percentunit",
                width=6,
            ),
            Panel(
                "loaded-version",
                "Loaded version",
                ChartKind.STAT,
                (Query("perfml_model_loaded_version", "{{model}}"),),
                unit="none",
                width=6,
            ),
            Panel(
                "request-rate",
                "Request rate",
                ChartKind.TIMESERIES,
                (
                    Query(
                        _rate(f"{histogram}_count", predictions, "predictor_name"),
                        "{{predictor_name}}",
                    ),
                ),
                unit="reqps",
            ),
            Panel("latency", "Latency", ChartKind.TIMESERIES, quantiles, unit="s"),
            Panel(
                "error-rate",
                "Error rate",
                ChartKind.TIMESERIES,
                (Query(f"({errors} or vector(0)) / {requests}", "errors"),),
                unit="percentunit",
                note=(
                    "The share of inference requests answered with a status of 400 or more "
                    "(0 while requests are all answered well)."
                ),
                width=24,
            ),
        ),
        "The inference server, in Seldon Core's metric names.",
    )


def drift_page(method: str = "kl", threshold: float = DEFAULT_DRIFT_THRESHOLD) -> Page:
    """Drift: the monthly divergence of each feature from the reference, and model quality.

    Both are computed once a month (or when feedback arrives): ``last_over_time`` over a
    month draws the latest value at every step, whether the gauge is scraped every 15 s or
    recorded once a month."""
    return Page(
        "drift",
        "Drift",
        (
            Panel(
                "feature-drift",
                "Feature drift (KL divergence, monthly)",
                ChartKind.TIMESERIES,
                (
                    Query(
                        "max by (feature) "
                        f'(last_over_time(perfml_feature_drift{{method="{method}"}}[31d]))',
                        "{{feature}}",
                    ),
                ),
                unit="short",
                threshold=Threshold(threshold, f"threshold {threshold:g}"),
                note=(
                    "The largest over the models, per feature, as the FeatureDriftHigh alert "
                    "reads it: over the threshold, a feature has drifted away from the "
                    "training data."
                ),
                width=24,
            ),
            Panel(
                "model-quality",
                "Model quality",
                ChartKind.TIMESERIES,
                (
                    Query(
                        "last_over_time(perfml_model_quality[31d])",
                        "{{model}}:{{version}} {{metric}}",
                    ),
                ),
                unit="short",
                note="Quality of the served models, from labelled feedback.",
                width=24,
            ),
            Panel(
                "controller-decisions",
                "Controller decisions",
                ChartKind.TABLE,
                source=Source.CONTROLLER_DECISIONS,
                note=(
                    "Newest first: each check of a served model on a window, the drift it "
                    "measured, the version it trained and the gate's verdict "
                    "(`perfml controller history`)."
                ),
                width=24,
            ),
        ),
        "How far today's data is from what the models were trained on.",
        default_range="400d",
    )


def anomalies_page() -> Page:
    """Anomalies: the hosts' scores over time, the incidents, and one host's metrics."""
    return Page(
        "anomalies",
        "Anomalies",
        (
            Panel(
                "heatmap",
                "Hosts over time",
                ChartKind.HEATMAP,
                source=Source.ANOMALY_HEATMAP,
                note=(
                    "Each host's highest score over its threshold per time bucket, across its "
                    "metrics: 1 is the threshold, over it is anomalous. The hosts of the highest "
                    "peaks are shown."
                ),
                width=24,
            ),
            Panel(
                "incidents",
                "Incidents",
                ChartKind.TABLE,
                source=Source.INCIDENTS,
                note=(
                    "Newest first. A host's anomalous points close in time are one incident, "
                    "its metrics ranked by their peak; many hosts at once are one fleet "
                    "incident. Pick a host for its own view."
                ),
                width=24,
            ),
            Panel(
                "hosts-over-threshold",
                "Hosts over their threshold, live",
                ChartKind.TIMESERIES,
                (
                    Query(
                        "count by (model) (perfml_anomaly_score >= on (model) group_left "
                        "max by (model) (perfml_anomaly_threshold))",
                        "{{model}}",
                    ),
                ),
                unit="short",
                note=(
                    "How many hosts' last point scored at or over the threshold, as the live "
                    "loop exports it (AnomalyDetected fires per host, FleetAnomalyStorm when "
                    "many are at once)."
                ),
                width=12,
            ),
            Panel(
                "live-points",
                "Points scored live",
                ChartKind.TIMESERIES,
                (
                    Query(
                        'sum by (model) (rate(perfml_live_points_total{outcome="scored"}[5m]))',
                        "{{model}}",
                    ),
                ),
                unit="short",
                note="Points per second the live loop scored as they arrived, per model.",
                width=12,
            ),
            Panel(
                "host",
                "Host",
                ChartKind.TIMESERIES,
                source=Source.HOST_SCORES,
                note=(
                    "Each metric's values, its scores (right axis) and the threshold (dashed); "
                    "labelled windows shaded blue, detected incidents red."
                ),
                width=24,
            ),
        ),
        "The fleet's anomalies, from the score log: which hosts, which metrics, when.",
        default_range="7d",
        ends_at_latest_data=True,
    )


def models_page() -> Page:
    """Models: versions, aliases and the audit log, from the registry."""
    registry_note = "From perfml's model registry (`perfml models list`, `perfml models history`)."
    return Page(
        "models",
        "Models",
        (
            Panel(
                "versions",
                "Versions",
                ChartKind.TABLE,
                source=Source.MODEL_VERSIONS,
                note=registry_note,
                width=24,
            ),
            Panel(
                "aliases",
                "Aliases",
                ChartKind.TABLE,
                source=Source.MODEL_ALIASES,
                note=registry_note,
            ),
            Panel(
                "loaded-versions",
                "Loaded version over time",
                ChartKind.TIMESERIES,
                (Query("perfml_model_loaded_version", "{{model}}"),),
                unit="none",
            ),
            Panel(
                "audit-log",
                "Audit log",
                ChartKind.TABLE,
                source=Source.AUDIT_LOG,
                note=registry_note,
                width=24,
            ),
        ),
        "Every model version, which alias holds it, and who moved what when.",
        default_range="30d",
    )


def alerts_page() -> Page:
    """Alerts: those firing now, and the history of their state changes."""
    return Page(
        "alerts",
        "Alerts",
        (
            Panel(
                "active-alerts",
                "Active alerts",
                ChartKind.TABLE,
                (Query('ALERTS{alertstate="firing"}', "{{alertname}}"),),
                source=Source.ACTIVE_ALERTS,
                width=24,
            ),
            Panel(
                "alert-history",
                "Alert history",
                ChartKind.TABLE,
                (Query("ALERTS", "{{alertname}} {{alertstate}}"),),
                source=Source.ALERT_HISTORY,
                width=24,
            ),
        ),
        "Alerts of perfml's rules: pending, firing and resolved.",
        default_range="7d",
    )


def default_dashboard(
    namespace: str = "perfml",
    serving_job: str = "perfml-serving",
    drift_method: str = "kl",
    drift_threshold: float = DEFAULT_DRIFT_THRESHOLD,
) -> Dashboard:
    """perfml's pages: jobs, inference, anomalies, drift, models and alerts."""
    return Dashboard(
        (
            jobs_page(namespace),
            inference_page(serving_job),
            anomalies_page(),
            drift_page(drift_method, drift_threshold),
            models_page(),
            alerts_page(),
        )
    )
