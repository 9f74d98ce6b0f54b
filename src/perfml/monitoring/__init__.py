"""Monitoring: perfml's own metrics, alert rules, notifications and dashboards.

Alert rules are data: each renders to a Prometheus alerting rule (PromQL) for a cluster and is
evaluated natively in the embedded mode by :mod:`perfml.monitoring.promql`, an evaluator of the
PromQL subset the rules and dashboard panels use, with Prometheus's semantics, so one rule file
gives the same alerts with or without a Prometheus server.
"""
