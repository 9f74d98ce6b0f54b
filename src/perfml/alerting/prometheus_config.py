"""Prometheus and Alertmanager configuration from ``perfml.yaml``: the same rules, at scale.

:func:`export_prometheus` writes, into one folder, deterministically (the same settings give
byte-identical files) and atomically:

- ``rules.yml``: one rule group ``perfml``, evaluated every ``monitoring.evaluation_interval``,
  with the enabled rules (:func:`rule_groups`);
- ``prometheus.yml``: the evaluation interval, ``rule_files: [rules.yml]``, the Alertmanager
  to send alerts to, and the scrape jobs ``perfml-serving`` (the inference server at
  ``serving.host:serving.port``) and ``perfml-jobs`` (``perfml runs serve-metrics``)
  (:func:`prometheus_config`);
- ``alertmanager.yml``: routes, receivers and inhibitions (:mod:`.alertmanager`);
- with ``unit_tests``, ``rules.test.yml``: a ``promtool test rules`` test per example of every
  rule, firing and quiet (:func:`rule_unit_tests`), so ``promtool test rules rules.test.yml``
  checks the exported rules on the input they are meant for.

>>> from perfml.config import Settings
>>> config = prometheus_config(Settings())
>>> [job["job_name"] for job in config["scrape_configs"]]
['perfml-serving', 'perfml-jobs']
>>> config["scrape_configs"][0]["static_configs"]
[{'targets': ['127.0.0.1:8080']}]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from perfml.alerting.alertmanager import alertmanager_config
from perfml.alerting.rules import (
    JOBS_JOB,
    SERVING_JOB,
    KindRegistry,
    Rule,
    duration,
    rules_from_settings,
)
from perfml.alerting.templates import expand
from perfml.atomic import atomic_output
from perfml.config import Settings, TargetSettings
from perfml.timeparse import format_duration, parse_duration

GROUP = "perfml"
RULES_FILE = "rules.yml"
PROMETHEUS_FILE = "prometheus.yml"
ALERTMANAGER_FILE = "alertmanager.yml"
TESTS_FILE = "rules.test.yml"
JOBS_METRICS_PORT = 9102
"""Where ``perfml runs serve-metrics`` listens unless told otherwise."""
_HEADER = "# Written by `perfml export prometheus` from perfml.yaml: change that file instead.\n"
_ANY_ADDRESS = {"", "0.0.0.0", "::", "[::]"}


def dump_yaml(data: Any, header: str = _HEADER) -> str:
    """``data`` as YAML, keys in the order given, long lines kept whole: the same data gives
    the same text."""
    body = yaml.safe_dump(
        data, sort_keys=False, allow_unicode=True, default_flow_style=False, width=10_000
    )
    return header + body


def rule_groups(rules: Sequence[Rule], evaluation_interval: str) -> dict[str, Any]:
    """The content of ``rules.yml``: one group of the enabled ``rules``."""
    return {
        "groups": [
            {
                "name": GROUP,
                "interval": evaluation_interval,
                "rules": [rule.to_prometheus() for rule in rules if rule.enabled],
            }
        ]
    }


def _target(host: str, port: int) -> str:
    scraped = "127.0.0.1" if host in _ANY_ADDRESS else host
    if ":" in scraped and not scraped.startswith("["):
        scraped = f"[{scraped}]"  # an IPv6 address
    return f"{scraped}:{port}"


def prometheus_config(
    settings: Settings, rule_files: Sequence[str] = (RULES_FILE,)
) -> dict[str, Any]:
    """The content of ``prometheus.yml`` for ``settings`` (see the module's doc)."""
    monitoring = settings.monitoring
    jobs = monitoring.jobs_metrics or f"127.0.0.1:{JOBS_METRICS_PORT}"
    timeout = min(
        parse_duration(monitoring.scrape_timeout), parse_duration(monitoring.scrape_interval)
    )
    return {
        "global": {
            "scrape_interval": monitoring.scrape_interval,
            "scrape_timeout": format_duration(timeout),
            "evaluation_interval": monitoring.evaluation_interval,
        },
        "rule_files": list(rule_files),
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [monitoring.alertmanager]}]}]
        },
        "scrape_configs": [
            {
                "job_name": SERVING_JOB,
                "static_configs": [
                    {"targets": [_target(settings.serving.host, settings.serving.port)]}
                ],
            },
            {"job_name": JOBS_JOB, "static_configs": [{"targets": [jobs]}]},
            *(_extra_scrape(target) for target in monitoring.targets),
        ],
    }


def _extra_scrape(target: TargetSettings) -> dict[str, Any]:
    """A ``monitoring.targets`` entry as Prometheus scrapes it (the embedded mode does the same)."""
    url = urlsplit(target.url)
    config: dict[str, Any] = {
        "job_name": target.job,
        "scheme": url.scheme,
        "metrics_path": url.path or "/metrics",
        "static_configs": [{"targets": [url.netloc]}],
    }
    if target.labels:
        config["static_configs"][0]["labels"] = dict(sorted(target.labels.items()))
    return config


def _alert_labels(labels: dict[str, str]) -> dict[str, str]:
    # An empty label is no label: a rule drops a label of its expression by setting it empty.
    return {name: value for name, value in labels.items() if value != ""}


def rule_unit_tests(
    rules: Sequence[Rule], rule_files: Sequence[str] = (RULES_FILE,)
) -> dict[str, Any]:
    """A ``promtool test rules`` file: for each enabled rule, one test group per example of
    its kind (:meth:`Rule.examples`), expecting exactly the alerts the example says — with the
    rule's labels (those it sets empty dropped) and its annotations expanded as Prometheus
    expands them — or none."""
    tests = []
    for rule in rules:
        if not rule.enabled:
            continue
        for example in rule.examples():
            expected = [
                {
                    "exp_labels": _alert_labels({**alert.labels, **rule.labels}),
                    "exp_annotations": {
                        key: expand(text, alert.labels, alert.value)
                        for key, text in sorted(rule.annotations.items())
                    },
                }
                for alert in example.alerts
            ]
            tests.append(
                {
                    "name": f"{rule.name}: {example.description}",
                    "interval": duration(example.interval),
                    "input_series": [
                        {"series": s.series, "values": s.values} for s in example.series
                    ],
                    "alert_rule_test": [
                        {
                            "eval_time": duration(example.at),
                            "alertname": rule.name,
                            "exp_alerts": expected,
                        }
                    ],
                }
            )
    return {"rule_files": list(rule_files), "evaluation_interval": "1m", "tests": tests}


def export_prometheus(
    settings: Settings,
    directory: str | Path,
    *,
    rules: Sequence[Rule] | None = None,
    kinds: KindRegistry | None = None,
    unit_tests: bool = False,
) -> list[Path]:
    """Write ``rules.yml``, ``prometheus.yml`` and ``alertmanager.yml`` (and with
    ``unit_tests`` ``rules.test.yml``) into ``directory``; return the paths written.

    ``rules`` default to :func:`~perfml.alerting.rules.rules_from_settings` (with ``kinds``),
    so a bad rule in the settings fails before anything is written.
    """
    chosen = list(rules) if rules is not None else rules_from_settings(settings, kinds)
    files = {
        RULES_FILE: rule_groups(chosen, settings.monitoring.evaluation_interval),
        PROMETHEUS_FILE: prometheus_config(settings),
        ALERTMANAGER_FILE: alertmanager_config(settings.monitoring, chosen).to_dict(),
    }
    if unit_tests:
        files[TESTS_FILE] = rule_unit_tests(chosen)
    written = []
    for name, data in files.items():
        path = Path(directory) / name
        with atomic_output(path) as temporary:
            temporary.write_text(dump_yaml(data), encoding="utf-8")
        written.append(path)
    return written
