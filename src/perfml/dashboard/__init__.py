"""The dashboard: a web page for jobs, inference, drift, models and alerts, and Grafana
dashboards exported from the same panels.

:mod:`.panels` defines the panels as data, :mod:`.data` (and :mod:`.records`) computes their
data for a time range, :mod:`.app` serves them over HTTP, :mod:`.grafana` exports them.
"""

from perfml.dashboard.data import DashboardSources, TimeRange, page_data, panel_data
from perfml.dashboard.errors import (
    BadRangeError,
    DashboardError,
    PanelDefinitionError,
    UnknownPageError,
)
from perfml.dashboard.panels import (
    ChartKind,
    Dashboard,
    Page,
    Panel,
    Query,
    Source,
    Threshold,
    default_dashboard,
)

__all__ = [
    "BadRangeError",
    "ChartKind",
    "Dashboard",
    "DashboardError",
    "DashboardSources",
    "Page",
    "Panel",
    "PanelDefinitionError",
    "Query",
    "Source",
    "Threshold",
    "TimeRange",
    "UnknownPageError",
    "default_dashboard",
    "page_data",
    "panel_data",
]
