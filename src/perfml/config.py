"""``perfml.yaml``: every setting, its default, and validation that names what is wrong.

Every setting has a default, so perfml runs with no file at all. A file may set any subset;
an unknown key or a bad value is an error naming the key, the value and the file:

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "perfml.yaml"
>>> _ = path.write_text("featurestore:\\n  memory_limt: 4GB\\n")
>>> load_settings(path)
Traceback (most recent call last):
...
perfml.config.ConfigError: ...perfml.yaml: unknown key featurestore.memory_limt (value '4GB')
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from perfml.errors import PerfmlError, UsageError
from perfml.timeparse import parse_duration

CONFIG_NAME = "perfml.yaml"
CONFIG_ENV = "PERFML_CONFIG"


class ConfigError(PerfmlError):
    """``perfml.yaml`` cannot be used as written."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: {problem}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _duration(value: str) -> str:
    try:
        parse_duration(value)
    except UsageError:
        raise ValueError("not a duration: write it as Prometheus does, e.g. 30s, 5m, 1h") from None
    return value


class FeatureStoreSettings(_Strict):
    """Where points live and how much the query engine may use."""

    path: Path | None = Field(None, description="store folder; default: <workspace>/store")
    memory_limit: str = Field("2GB", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")
    threads: int | None = Field(None, ge=1, description="DuckDB threads; default: all cores")


class PrometheusSettings(_Strict):
    """How ``perfml ingest prometheus`` reaches a Prometheus server."""

    url: str | None = Field(None, pattern=r"^https?://")
    entity_label: str = "instance"
    step: str = "5m"
    max_points_per_series: int = Field(10_000, ge=1, le=11_000)
    attempts: int = Field(5, ge=1, le=50)
    timeout: str = "30s"
    token_env: str = "PERFML_PROMETHEUS_TOKEN"
    username: str | None = None
    password_env: str = "PERFML_PROMETHEUS_PASSWORD"

    _check_step = field_validator("step", "timeout")(_duration)


class PullSettings(_Strict):
    """One scheduled pull of ``perfml up``: a PromQL query stored as ``metric``, one series per
    value of ``sources.prometheus.entity_label``."""

    metric: str = Field(pattern=r"^[A-Za-z_:][A-Za-z0-9_:.-]*$")
    query: str = Field(min_length=1)


class RemoteWriteSettings(_Strict):
    """The Prometheus remote-write receiver (``POST /api/v1/write``) of ``perfml receive`` and,
    when ``enabled``, of ``perfml up``."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(9201, ge=1, le=65535)
    keep: tuple[str, ...] = Field(
        (), description="series selectors kept, e.g. 'node_load1' or 'cpu{job=\"node\"}'; none: all"
    )
    entity_label: str = Field("instance", description="the label whose value is the entity")
    max_pending_samples: int = Field(
        2_000_000, ge=1_000, description="acknowledged samples not yet in the store, at most"
    )
    flush_interval: str = Field("2s", description="how often acknowledged samples are stored")
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)

    _check_flush = field_validator("flush_interval")(_duration)


class SourcesSettings(_Strict):
    prometheus: PrometheusSettings = PrometheusSettings()
    queries: tuple[PullSettings, ...] = Field(
        (), description="pulled every pull_interval by perfml up, from the last point stored"
    )
    pull_interval: str = "1m"
    remote_write: RemoteWriteSettings = RemoteWriteSettings()

    _check_pull = field_validator("pull_interval")(_duration)


class LiveSettings(_Strict):
    """How ``perfml up`` scores the fleet as it arrives (:mod:`perfml.anomalies`)."""

    enabled: bool = True
    models: tuple[str, ...] = Field(
        (), description="references scored live, e.g. cpu@production; default: serving.models"
    )
    checkpoint_interval: str = Field("1m", description="how often the series' states are saved")
    flush_interval: str = Field("5s", description="how often new scores are stored")
    incident_gap: str = Field("30m", description="anomalous points this close are one incident")
    fleet_fraction: float = Field(
        0.2, gt=0, le=1, description="share of entities anomalous at once that is a fleet incident"
    )
    fleet_min_entities: int = Field(3, ge=2)
    max_exported_series: int = Field(
        10_000, ge=0, description="beyond this, /metrics has only the series over the threshold"
    )

    _check_intervals = field_validator("checkpoint_interval", "flush_interval", "incident_gap")(
        _duration
    )


class ThresholdSettings(_Strict):
    """One metric of the promotion gate (:class:`perfml.registry.MetricThreshold`): a margin
    below the current holder (``max_drop``), a floor (``min_value``), or MLflow's required
    improvements."""

    metric: str
    min_value: float | None = None
    min_absolute_change: float | None = None
    min_relative_change: float | None = None
    greater_is_better: bool = True
    max_drop: float | None = Field(None, ge=0)


NAB_FLOOR, NAB_MARGIN = 50.0, 5.0
"""The default gate's NAB standard: at least halfway from never firing (0) to perfect (100),
and at most 5 points below the current holder."""
EVENT_F1_FLOOR, EVENT_F1_MARGIN = 0.5, 0.05
"""The default gate's event-wise F1: at least 0.5, and at most 0.05 below the current holder."""


def _default_gate() -> tuple[ThresholdSettings, ...]:
    # The test slice of a held-out window holds a handful of anomalies: a margin keeps a
    # comparable candidate from being refused by one window's luck, and the floors refuse a
    # model that misses most anomalies or raises mostly false alarms.
    return (
        ThresholdSettings(metric="nab_standard", min_value=NAB_FLOOR, max_drop=NAB_MARGIN),
        ThresholdSettings(metric="event_f1", min_value=EVENT_F1_FLOOR, max_drop=EVENT_F1_MARGIN),
    )


class RegistrySettings(_Strict):
    """Where versions are recorded and their artifacts kept, and the promotion gate."""

    url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite <workspace>/metadata.db"
    )
    artifacts: str | None = Field(
        None, description="a folder, or oci://HOST[:PORT]/PREFIX; default <workspace>/artifacts"
    )
    oci_username_env: str = "PERFML_OCI_USERNAME"
    oci_password_env: str = "PERFML_OCI_PASSWORD"
    oci_insecure: bool = False
    gate: tuple[ThresholdSettings, ...] = Field(default_factory=_default_gate)
    gate_window: str = "30d"
    gate_validation: float = Field(
        0.5, gt=0, lt=1, description="share of the gate's window that chooses the threshold"
    )

    _check_window = field_validator("gate_window")(_duration)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite:", "postgresql")):
            raise ValueError("expected a sqlite:/// or postgresql+psycopg:// URL")
        return value


class PipelinesSettings(_Strict):
    """The local runner's capacity, and limits that override every step's own."""

    cpu: float | None = Field(None, gt=0, description="CPUs the runner may use; default: all")
    memory: str | None = Field(
        None, pattern=r"^[0-9]+(\.[0-9]+)?(k|M|G|Ki|Mi|Gi)?$", description="e.g. 4Gi; default: all"
    )
    step_timeout: str | None = Field(None, description="per attempt; default: each step's own")
    step_retries: int | None = Field(None, ge=0, le=20, description="default: each step's own")

    @field_validator("step_timeout")
    @classmethod
    def _check_timeout(cls, value: str | None) -> str | None:
        return None if value is None else _duration(value)


class ServingSettings(_Strict):
    """``perfml serve``: where it listens, what it serves, how it guards and reloads."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    models: tuple[str, ...] = Field((), description="references served, e.g. cpu@production")
    token_env: str = "PERFML_SERVING_TOKEN"
    poll_interval: str = "10s"
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)

    _check_poll = field_validator("poll_interval")(_duration)


class ControllerSettings(_Strict):
    """The retraining controller: when drift makes it retrain a served model."""

    models: tuple[str, ...] = Field((), description="models checked; default: serving.models")
    schedule: str = "1h"
    every: str = Field("monthly", pattern=r"^(monthly|weekly|daily|[1-9][0-9]{0,3}d)$")
    method: str = Field("kl", pattern=r"^(kl|psi|js|wasserstein)$")
    threshold: float = Field(0.1, gt=0)
    min_points: int = Field(100, ge=1)
    entity_fraction: float = Field(
        0.2,
        gt=0,
        le=1,
        description="retrain when more than this share of the entities judged has drifted",
    )
    min_entity_points: int = Field(
        100, ge=1, description="an entity is judged with this many points in both windows"
    )
    cooldown: str = "7d"
    max_retrains: int = Field(3, ge=1)
    retrain_period: str = "30d"
    training_window: str = "60d"
    holdout: float = Field(0.25, gt=0, lt=1)
    alias: str = "production"
    quality: bool = Field(True, description="also judge production on labelled feedback")

    _check_durations = field_validator("schedule", "cooldown", "retrain_period", "training_window")(
        _duration
    )


class DemoSettings(_Strict):
    """The fleet ``make demo`` generates."""

    hosts: int = Field(12, ge=1, le=100_000)
    months: int = Field(6, ge=3, le=120)
    change_month: int = Field(4, ge=2, description="the month (1-based) the workload changes")
    seed: int = 7

    @model_validator(mode="after")
    def _check_change(self) -> DemoSettings:
        if self.change_month > self.months:
            raise ValueError(
                f"change_month {self.change_month} is after the last month ({self.months})"
            )
        return self


class AlertRuleSettings(_Strict):
    """One entry of ``monitoring.rules``: a change to a shipped rule (by ``name``), or a new
    rule (``name`` and ``kind``). Only what is given changes; parameters are those of the kind
    (see :mod:`perfml.alerting.rule_kinds`), durations written as Prometheus does."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[A-Za-z_:][A-Za-z0-9_:]*$")
    kind: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    for_: str | None = Field(None, alias="for")
    keep_firing_for: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    enabled: bool | None = None

    @field_validator("for_", "keep_firing_for")
    @classmethod
    def _check_durations(cls, value: str | None) -> str | None:
        if value is None or value == "0":
            return value
        return _duration(value)


class WebhookSettings(_Strict):
    """A URL that receives every notification as JSON (Alertmanager's webhook format)."""

    url: str = Field(pattern=r"^https?://")
    send_resolved: bool = True


class SmtpSettings(_Strict):
    """Mail notifications. The password is never written here: ``password_file`` names a
    file holding it, ``password_env`` an environment variable (in an Alertmanager export, the
    file ``<secrets_dir>/<password_env>``, as a mounted Kubernetes Secret provides it)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    smarthost: str = Field(pattern=r"^[^\s:]+:\d+$")
    from_: str = Field(alias="from", pattern=r"^[^@\s]+@[^@\s]+$")
    to: str = Field(pattern=r"^[^@\s]+@[^@\s]+(\s*,\s*[^@\s]+@[^@\s]+)*$")
    username: str | None = None
    password_file: str | None = None
    password_env: str | None = None
    require_tls: bool = True
    send_resolved: bool = False


class NotificationSettings(_Strict):
    """Who is told of alerts, how they are grouped and how often they are repeated."""

    group_by: tuple[str, ...] = ("alertname", "namespace")
    group_wait: str = "30s"
    group_interval: str = "5m"
    repeat_interval: str = "4h"
    critical_group_wait: str = "10s"
    critical_repeat_interval: str = "1h"
    webhooks: tuple[WebhookSettings, ...] = ()
    log: Path | None = Field(None, description="JSON lines; default <workspace>/alerts.log")
    smtp: SmtpSettings | None = None

    _check_intervals = field_validator(
        "group_wait",
        "group_interval",
        "repeat_interval",
        "critical_group_wait",
        "critical_repeat_interval",
    )(_duration)


_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TargetSettings(_Strict):
    """A scrape target besides perfml's own: its ``job`` label, the URL of its metrics in the
    text exposition format, and labels attached to every series it gives."""

    job: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$")
    url: str = Field(pattern=r"^https?://[^\s/]+")
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _LABEL_NAME.match(name) or name.startswith("__"):
                raise ValueError(f"{name!r} is not a label name (letters, digits and _)")
        return value


class MonitoringSettings(_Strict):
    """Alert rules, their evaluation, and notifications (``perfml export prometheus``)."""

    evaluation_interval: str = "15s"
    scrape_interval: str = "15s"
    resolve_timeout: str = "5m"
    disabled: tuple[str, ...] = ()
    rules: tuple[AlertRuleSettings, ...] = ()
    team: str = "perfml"
    runbooks: str = Field(
        "https://perfml.readthedocs.io/en/latest/runbooks.html", pattern=r"^https?://"
    )
    alertmanager: str = Field("localhost:9093", pattern=r"^[^\s/:]+:\d+$")
    jobs_metrics: str | None = Field(
        None, pattern=r"^[^\s/:]+:\d+$", description="default: perfml runs serve-metrics"
    )
    secrets_dir: str = "/etc/alertmanager/secrets"
    notifications: NotificationSettings = NotificationSettings()
    retention: str = Field("6h", description="recorded samples kept in memory")
    flush_interval: str = Field("5m", description="how often they are written to the store")
    scrape_timeout: str = Field("10s", description="at most the scrape interval in effect")
    targets: tuple[TargetSettings, ...] = Field((), description="extra scrape targets")
    finished_jobs_ttl: str | None = Field(
        "24h", description="ended jobs leave the job metrics after this long (none: never)"
    )

    _check_ttl = field_validator("finished_jobs_ttl")(
        lambda value: None if value is None else _duration(value)
    )
    _check_intervals = field_validator(
        "evaluation_interval",
        "scrape_interval",
        "resolve_timeout",
        "retention",
        "flush_interval",
        "scrape_timeout",
    )(_duration)

    @model_validator(mode="after")
    def _check_flush_interval(self) -> MonitoringSettings:
        if parse_duration(self.flush_interval) > parse_duration(self.retention):
            raise ValueError(
                f"flush_interval {self.flush_interval!r} is longer than retention "
                f"{self.retention!r}: samples would leave memory before they are stored"
            )
        return self


class Settings(_Strict):
    """The whole of ``perfml.yaml``."""

    workspace: Path = Path(".perfml")
    featurestore: FeatureStoreSettings = FeatureStoreSettings()
    sources: SourcesSettings = SourcesSettings()
    registry: RegistrySettings = RegistrySettings()
    pipelines: PipelinesSettings = PipelinesSettings()
    serving: ServingSettings = ServingSettings()
    demo: DemoSettings = DemoSettings()
    controller: ControllerSettings = ControllerSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    live: LiveSettings = LiveSettings()

    @property
    def store_path(self) -> Path:
        return self.featurestore.path or self.workspace / "store"

    @property
    def telemetry_path(self) -> Path:
        """perfml's own recorded metrics, apart from the fleet's points."""
        return self.workspace / "telemetry"

    @property
    def anomalies_path(self) -> Path:
        """Every score of the live loop and of batch scoring, and the live states' checkpoints."""
        return self.workspace / "anomalies"

    @property
    def metadata_path(self) -> Path:
        return self.workspace / "metadata.db"

    @property
    def artifacts_path(self) -> Path:
        return self.workspace / "artifacts"

    @property
    def registry_url(self) -> str:
        return self.registry.url or f"sqlite:///{self.metadata_path.absolute()}"


def find_config(explicit: Path | None = None) -> Path | None:
    """The file to read: the one named, else ``$PERFML_CONFIG``, else ``./perfml.yaml`` if any."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return Path(from_env)
    local = Path(CONFIG_NAME)
    return local if local.is_file() else None


def load_settings(path: Path | None = None) -> Settings:
    """Settings from ``path`` (see :func:`find_config`), or every default when there is none.

    A relative ``workspace`` or store path is resolved against the file's folder.
    """
    found = find_config(path)
    if found is None:
        return Settings()
    try:
        text = found.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(found, f"cannot be read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(found, f"is not valid YAML ({_yaml_problem(exc)})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(found, f"must be a mapping of settings, not {type(data).__name__}")
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(found, _validation_problem(exc)) from None
    base = found.parent
    updates: dict[str, Any] = {}
    if not settings.workspace.is_absolute():
        updates["workspace"] = base / settings.workspace
    store = settings.featurestore.path
    if store is not None and not store.is_absolute():
        updates["featurestore"] = settings.featurestore.model_copy(update={"path": base / store})
    return settings.model_copy(update=updates)


def _validation_problem(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        value = error.get("input")
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown key {key} (value {value!r})")
        else:
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{key} = {value!r}: {message}")
    return "; ".join(problems)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    return f"line {mark.line + 1}: {problem}" if mark is not None else problem


DEFAULT_CONFIG = """\
# perfml.yaml — every setting is optional; these are the defaults.

# Folder for the feature store, the metadata database and model artifacts, relative to this
# file.
workspace: .perfml

featurestore:
  # Folder of the Parquet partitions; default: <workspace>/store.
  path: null
  # Memory the query engine (DuckDB) may use before it spills to disk.
  memory_limit: 2GB
  # Query threads; default: every core.
  threads: null

sources:
  prometheus:
    # Base URL of the Prometheus server to pull from (or pass --url).
    url: null
    # The label that names the entity (host, VM, service) of a series.
    entity_label: instance
    # Resolution of query_range pulls.
    step: 5m
    # Prometheus refuses more than 11,000 points per series in one query.
    max_points_per_series: 10000
    # Attempts for transient failures (connection errors, 429, 502, 503, 504).
    attempts: 5
    # Time limit of one HTTP request.
    timeout: 30s
    # Environment variables holding credentials: never write secrets in this file.
    token_env: PERFML_PROMETHEUS_TOKEN
    username: null
    password_env: PERFML_PROMETHEUS_PASSWORD

registry:
  # SQLAlchemy URL of the metadata database; default: SQLite <workspace>/metadata.db.
  # At scale: postgresql+psycopg://USER@HOST/DB (the password from PGPASSWORD or .pgpass).
  url: null
  # Artifact store: a folder (default <workspace>/artifacts) or oci://HOST[:PORT]/PREFIX for
  # an OCI registry such as Harbor; its credentials come from these environment variables.
  artifacts: null
  oci_username_env: PERFML_OCI_USERNAME
  oci_password_env: PERFML_OCI_PASSWORD
  oci_insecure: false
  # The promotion gate: a candidate replaces an alias's holder only if, evaluated on the same
  # recent labelled window, it clears every threshold. The window (the training run's
  # held-out part; gate_window for `perfml models promote`) is cut by time: each version's
  # threshold is chosen on its first gate_validation share, its figures measured on the rest.
  # Per metric: max_drop refuses a candidate more than that below the current holder;
  # min_value is a floor for every candidate, the only bar of a first version; MLflow's
  # min_absolute_change and min_relative_change require an improvement; greater_is_better:
  # false flips them all.
  gate:
    - metric: nab_standard
      min_value: 50.0
      max_drop: 5.0
    - metric: event_f1
      min_value: 0.5
      max_drop: 0.05
  gate_window: 30d
  gate_validation: 0.5

pipelines:
  # Capacity of the local runner: jobs that do not fit wait as Pending (Unschedulable).
  # Default: every core and all the memory of this machine; memory as 4Gi, 8G...
  cpu: null
  memory: null
  # Override every step's own timeout per attempt (a duration: 30m, 2h) and retries.
  step_timeout: null
  step_retries: null

serving:
  # Where `perfml serve` listens (0.0.0.0 to accept other hosts).
  host: 127.0.0.1
  port: 8080
  # References served when `perfml serve` is given no --model: name@alias, name:version, name.
  models: []
  # The environment variable holding the bearer token; unset or empty: no authentication.
  token_env: PERFML_SERVING_TOKEN
  # How often aliases are re-read for moves made by other processes (a duration).
  poll_interval: 10s
  # Larger request bodies are refused with 413.
  max_body_bytes: 10485760

# The retraining controller: on schedule, each served model's latest complete window is
# checked for drift against the production version's training window; over the threshold
# (with enough points, outside the cooldown, within the budget) the training pipeline runs
# on the most recent data and the candidate is promoted only through the gate.
controller:
  # Models checked (names); default: the names in serving.models.
  models: []
  # How often the controller checks (a duration).
  schedule: 1h
  # The windows checked: monthly, weekly, daily or Nd (rolling N days).
  every: monthly
  # The drift measure (kl, psi, js, wasserstein) and the value over which a feature drifted.
  method: kl
  threshold: 0.1
  # Fewer points of a feature in the window: not judged.
  min_points: 100
  # Also per entity: retrain the drifted entities' series (keeping the others') when more
  # than this share of the entities has a series over the threshold; an entity with fewer
  # than min_entity_points points in the window or in the training window is not judged.
  entity_fraction: 0.2
  min_entity_points: 100
  # No retrain within this long of the last; at most max_retrains per retrain_period.
  cooldown: 7d
  max_retrains: 3
  retrain_period: 30d
  # The data a retrain learns from: this long, up to the window's end; the share held out
  # to compare the candidate with production.
  training_window: 60d
  holdout: 0.25
  alias: production
  # After each check, judge production on the labelled feedback of each window (precision,
  # recall, F1: perfml_model_quality, for the ModelQualityDegraded rule).
  quality: true

# The fleet `perfml demo` generates and ingests.
demo:
  hosts: 12
  months: 6
  # The month (1-based) a workload change hits part of the fleet.
  change_month: 4
  seed: 7

# Alert rules (rendered for Prometheus by `perfml export prometheus`, evaluated by perfml in
# the embedded mode) and the notifications they send.
monitoring:
  # How often rules are evaluated and targets scraped.
  evaluation_interval: 15s
  scrape_interval: 15s
  # How long a resolved alert is kept and notified as resolved.
  resolve_timeout: 5m
  # Names of rules switched off.
  disabled: []
  # Change a shipped rule by name, or add one (name and kind), e.g.
  #   - name: JobPendingTooLong
  #     params: {threshold: 30m}
  #     labels: {team: perf}
  #   - name: CpuJobsStuck
  #     kind: JobPendingTooLong
  #     params: {threshold: 4h}
  #     labels: {severity: critical}
  # Each may set params, for, keep_firing_for, labels, annotations and enabled.
  rules: []
  # The team label of every shipped rule, and where the runbooks are (#<kind> appended).
  team: perfml
  runbooks: https://perfml.readthedocs.io/en/latest/runbooks.html
  # Where Prometheus sends alerts (host:port), and where the job metrics are scraped from
  # (default: `perfml runs serve-metrics` on 127.0.0.1); serving is scraped at serving.port.
  alertmanager: localhost:9093
  jobs_metrics: null
  # Where an Alertmanager finds secret files, each named as its environment variable.
  secrets_dir: /etc/alertmanager/secrets
  # `perfml monitor` (perfml's own Prometheus): recorded samples stay in memory for
  # `retention` and are written to the feature store every `flush_interval` (at most the
  # retention); a scrape gives up after `scrape_timeout` (or scrape_interval if shorter).
  retention: 6h
  flush_interval: 5m
  scrape_timeout: 10s
  # More endpoints to scrape besides serving and the jobs, each
  #   {job: node, url: "http://host:9100/metrics", labels: {team: perf}}.
  targets: []
  # Ended jobs leave the job metrics (and their alerts resolve) this long after they end,
  # as Kubernetes deletes a Job ttlSecondsAfterFinished after it ends; null: they stay.
  finished_jobs_ttl: 24h
  notifications:
    # Alerts with the same values of these labels go out as one notification.
    group_by: [alertname, namespace]
    group_wait: 30s
    group_interval: 5m
    repeat_interval: 4h
    # Critical alerts are told sooner and repeated more often.
    critical_group_wait: 10s
    critical_repeat_interval: 1h
    # Each: {url: https://..., send_resolved: true}.
    webhooks: []
    # JSON-lines notification log; default: <workspace>/alerts.log.
    log: null
    # {smarthost: host:port, from, to, username, password_file or password_env, require_tls}
    smtp: null
"""
"""What ``perfml init`` writes: the defaults, commented."""
