"""The knobs a cluster operator sets when perfml runs on Kubernetes (the Carvel data values).

``perfml.yaml`` says what perfml does; :class:`DeployValues` says how it runs on a cluster:
which image, in which namespace, how many serving replicas with what resources, on which
storage, behind which inference engine, and the thresholds an operator tunes without touching
``perfml.yaml``. Every knob has a default, so ``DeployValues()`` deploys the defaults; a file of
values is read with :func:`load_values`, and a bad key or value names itself:

>>> values = DeployValues(replicas=3, serving_engine="kserve")
>>> values.namespace, values.replicas, values.resources.serving.limits.memory
('perfml', 3, '1Gi')
>>> DeployValues.model_validate({"serving_engine": "triton"})
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for DeployValues
...

The thresholds are the cluster's, in the controller's configuration and in the PrometheusRule
alike (:func:`effective_settings`); ``perfml export`` starts from ``perfml.yaml``'s
(:meth:`DeployValues.for_settings`), so a values file only says what differs.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from perfml import __version__
from perfml.config import AlertRuleSettings, Settings
from perfml.deploy.errors import DeployError
from perfml.errors import UsageError
from perfml.timeparse import format_duration, parse_duration

ServingEngine = Literal["seldon", "kserve", "deployment"]
SERVING_ENGINES: tuple[ServingEngine, ...] = ("seldon", "kserve", "deployment")
Scheduler = Literal["cronjob", "deployment"]

_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"
_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_CRON_FIELD = r"[0-9A-Za-z*/,?#LW-]+"


def default_image() -> str:
    """The published perfml image of this version."""
    return f"ghcr.io/perfml/perfml:{__version__}"


class ValuesError(DeployError, UsageError):
    """A values file cannot be used as written; names the file and the key."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: {problem}")


class _Values(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Amounts(_Values):
    """CPU and memory, as Kubernetes quantities (``250m``, ``512Mi``)."""

    cpu: str = Field(pattern=_QUANTITY)
    memory: str = Field(pattern=_QUANTITY)


class ComponentResources(_Values):
    """What one container requests and may use at most."""

    requests: Amounts
    limits: Amounts


def _resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> ComponentResources:
    return ComponentResources(
        requests=Amounts(cpu=cpu, memory=memory), limits=Amounts(cpu=cpu_limit, memory=memory_limit)
    )


class Resources(_Values):
    """Requests and limits per component. ``controller`` also bounds the retraining the
    controller runs in its pod (and in the CronJob's); ``jobs_metrics`` is the job metrics
    server beside the dashboard; ``live`` holds every live series' state (about 4 KiB each)."""

    serving: ComponentResources = _resources("250m", "512Mi", "2", "1Gi")
    controller: ComponentResources = _resources("500m", "1Gi", "2", "4Gi")
    dashboard: ComponentResources = _resources("100m", "256Mi", "1", "512Mi")
    jobs_metrics: ComponentResources = _resources("50m", "128Mi", "500m", "256Mi")
    live: ComponentResources = _resources("500m", "1Gi", "2", "4Gi")


class Thresholds(_Values):
    """Thresholds an operator tunes at deploy time (see :meth:`DeployValues.for_settings`)."""

    drift: float = Field(
        0.1, gt=0, description="controller.threshold and the FeatureDriftHigh alert"
    )
    latency_p99: str = Field(
        "500ms", description="the InferenceLatencyHigh alert's threshold, e.g. 500ms"
    )
    error_rate: float = Field(
        0.05, gt=0, lt=1, description="the InferenceErrorRateHigh alert's threshold"
    )

    @field_validator("latency_p99")
    @classmethod
    def _check_latency(cls, value: str) -> str:
        try:
            parse_duration(value)
        except UsageError:
            raise ValueError("not a duration: write it as Prometheus does, e.g. 500ms") from None
        return value


class DeployValues(_Values):
    """The operator's knobs for ``perfml export k8s`` and the Carvel package (see the module)."""

    image: str = Field(default_factory=default_image, min_length=1, description="perfml image")
    namespace: str = Field("perfml", pattern=_NAME, max_length=63)
    monitoring_namespace: str = Field(
        "monitoring",
        pattern=_NAME,
        max_length=63,
        description="where Prometheus, Alertmanager and Grafana run (their config goes there)",
    )
    replicas: int = Field(2, ge=1, le=1000, description="serving replicas")
    resources: Resources = Resources()
    storage_class: str | None = Field(None, description="None: the cluster's default class")
    storage_size: str = Field("20Gi", pattern=_QUANTITY)
    serving_engine: ServingEngine = "seldon"
    scheduler: Scheduler = Field(
        "cronjob",
        description="what runs the controller's checks: the CronJob, or the controller "
        "Deployment's loop (the other is then idle: suspended, or scaled to 0)",
    )
    thresholds: Thresholds = Thresholds()
    schedule: str = Field("0 * * * *", description="the controller CronJob's schedule")

    @classmethod
    def for_settings(cls, settings: Settings) -> DeployValues:
        """The default values with the thresholds ``settings`` give: ``controller.threshold``
        and the effective ``InferenceLatencyHigh`` and ``InferenceErrorRateHigh`` rules."""
        from perfml.alerting.rules import rules_from_settings

        found = {rule.name: rule for rule in rules_from_settings(settings, include_disabled=True)}
        latency = found["InferenceLatencyHigh"].params.threshold  # type: ignore[attr-defined]
        errors = found["InferenceErrorRateHigh"].params.threshold  # type: ignore[attr-defined]
        thresholds = Thresholds(
            drift=settings.controller.threshold,
            latency_p99=format_duration(timedelta(seconds=float(latency))),
            error_rate=float(errors),
        )
        return cls(thresholds=thresholds)

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str) -> str:
        fields = value.split()
        macro = len(fields) == 1 and value.startswith("@")
        if not macro and (len(fields) != 5 or not all(_fits(f) for f in fields)):
            raise ValueError("not a cron schedule: five fields, e.g. '0 * * * *'")
        return value


def _fits(field: str) -> bool:
    return re.fullmatch(_CRON_FIELD, field) is not None


def load_values(path: Path, base: DeployValues | None = None) -> DeployValues:
    """The values of a YAML file (any subset of the knobs, over ``base``: by default the
    defaults), or :class:`ValuesError`."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValuesError(path, f"cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ValuesError(path, f"is not valid YAML ({exc})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValuesError(path, f"must be a mapping of values, not {type(data).__name__}")
    try:
        return DeployValues.model_validate(_merged((base or DeployValues()).model_dump(), data))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"])
            value = error.get("input")
            if error["type"] == "extra_forbidden":
                problems.append(f"unknown key {key} (value {value!r})")
            else:
                problems.append(f"{key} = {value!r}: {error['msg'].removeprefix('Value error, ')}")
        raise ValuesError(path, "; ".join(problems)) from None


def _with_params(
    rules: tuple[AlertRuleSettings, ...], name: str, params: dict[str, Any]
) -> tuple[AlertRuleSettings, ...]:
    """``rules`` with ``params`` merged into the entry for the shipped rule ``name``."""
    changed = []
    found = False
    for entry in rules:
        if entry.name == name:
            entry = entry.model_copy(update={"params": {**entry.params, **params}})
            found = True
        changed.append(entry)
    if not found:
        changed.append(AlertRuleSettings(name=name, params=params))
    return tuple(changed)


def _merged(base: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def effective_settings(settings: Settings, values: DeployValues) -> Settings:
    """``settings`` with the thresholds of ``values`` applied: ``drift`` to
    ``controller.threshold`` and the ``FeatureDriftHigh`` rule, ``latency_p99`` to
    ``InferenceLatencyHigh`` and ``error_rate`` to ``InferenceErrorRateHigh`` — always, so
    that the objects have the same shape whatever the numbers (the Carvel templates rely on it).

    >>> chosen = effective_settings(Settings(), DeployValues(thresholds=Thresholds(drift=0.3)))
    >>> chosen.controller.threshold, chosen.monitoring.rules[0].params
    (0.3, {'threshold': 0.3})
    """
    thresholds = values.thresholds
    controller = settings.controller.model_copy(update={"threshold": thresholds.drift})
    rules = _with_params(
        settings.monitoring.rules, "FeatureDriftHigh", {"threshold": thresholds.drift}
    )
    rules = _with_params(
        rules, "InferenceLatencyHigh", {"threshold": thresholds.latency_p99, "quantile": 0.99}
    )
    rules = _with_params(rules, "InferenceErrorRateHigh", {"threshold": thresholds.error_rate})
    monitoring = settings.monitoring.model_copy(update={"rules": rules})
    return settings.model_copy(update={"controller": controller, "monitoring": monitoring})
