"""The root of the alerting part's failures: rules, their lifecycle, the store, notifications."""

from __future__ import annotations

from perfml.errors import PerfmlError


class AlertingError(PerfmlError):
    """The root of the alerting failures (rules and kinds, templates, the alert lifecycle, the
    alert store, dispatch and notifications, the rule engine)."""
