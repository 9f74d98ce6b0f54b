"""The workspace: ``perfml.yaml``'s settings in, perfml's parts out, each built once.

A :class:`Workspace` is the one place that turns :class:`~perfml.config.Settings` into objects:
the feature store, the metadata database and the parts with tables in it (the registry, the run
history, the controller's decisions, the alerts), the artifact store, the pipelines and the
runner that runs them, and — assembled from those — the inference server, the controller, the
monitoring service and the dashboard's sources. Every other module takes the parts it uses. A
workspace is a context manager: closing it closes what it opened.

A job of a pipeline runs in a process of its own; its steps are handed the same parts by
:func:`open_job_workspace`, which the runner's :meth:`Workspace.parts_source` names.

>>> import tempfile
>>> from perfml.config import Settings
>>> with Workspace(Settings(workspace=tempfile.mkdtemp())) as workspace:
...     workspace.store() is workspace.store(), workspace.registry().models()
(True, [])
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from perfml.config import Settings, load_settings
from perfml.errors import UsageError
from perfml.featurestore import FeatureStore
from perfml.metadata import MetadataDatabase
from perfml.pipelines.catalog import PIPELINES, PipelineFactory
from perfml.pipelines.local import Training, TrainingRequest, run_training, runner_capacity
from perfml.pipelines.outcomes import TrainingOutcome
from perfml.pipelines.parts import PartsSource
from perfml.pipelines.runner import LocalRunner
from perfml.plugins import Registry
from perfml.registry import ArtifactStore, FilesystemArtifactStore, MetricThreshold, ModelRegistry
from perfml.registry.records import ModelVersion

if TYPE_CHECKING:
    from fastapi import FastAPI
    from prometheus_client.registry import Collector

    from perfml.alerting.alerts import Alert
    from perfml.alerting.store import AlertStore
    from perfml.anomalies import Findings, LiveScorer, ScoreLog, VerdictLog
    from perfml.controller.decisions import DecisionLog
    from perfml.controller.loop import Controller, Policy, Trainer
    from perfml.dashboard.data import DashboardSources
    from perfml.evaluation.labelled_window import LabelledWindowEvaluator
    from perfml.pipelines.history import RunHistory
    from perfml.pipelines.job_metrics import JobMetricsCollector
    from perfml.promql import SeriesSource
    from perfml.recording.scrape import Target
    from perfml.recording.service import MonitoringService
    from perfml.serving.telemetry import ServingMetrics

JOB_STORE_MEMORY = "512MB"
"""The feature store's query memory in a pipeline job: within the smallest step's request."""
JOB_PARTS_FACTORY = "perfml.workspace:open_job_workspace"
"""The parts factory of perfml's pipeline jobs (:func:`open_job_workspace`)."""
PRODUCTION = "production"
"""The alias ``perfml up`` serves when ``serving.models`` names none."""
PARTS = ("store", "registry", "history", "decisions", "alerts", "artifacts", "scores")
"""The parts a step can be handed by name (:class:`~perfml.pipelines.dsl.Part`)."""

P = TypeVar("P")


class UnknownPartError(UsageError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no part of the workspace is called {name!r} (parts: {', '.join(PARTS)})")


class NoWorkspaceError(UsageError):
    """A command that only reads was pointed at a folder that does not exist (a mistyped
    ``-w``): it is not created empty."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"no workspace at {path} (check -w/--workspace or workspace: in perfml.yaml; "
            "perfml init creates one)"
        )


class Workspace:
    """The parts of one workspace (see the module's docstring). ``actor`` names who changes the
    registry (the audit log), unless a part is asked for with its own."""

    def __init__(self, settings: Settings, *, actor: str | None = None) -> None:
        self.settings = _absolute(settings)
        self.actor = actor
        self._parts: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._closed = False

    @classmethod
    def load(cls, config: Path | None = None, workspace: Path | None = None) -> Workspace:
        """The workspace of ``config`` (``$PERFML_CONFIG``, ``./perfml.yaml``, or the defaults)
        with its folder changed to ``workspace`` if given."""
        settings = load_settings(config)
        if workspace is not None:
            settings = settings.model_copy(update={"workspace": workspace})
        return cls(settings)

    @property
    def path(self) -> Path:
        """The workspace's folder (absolute)."""
        return self.settings.workspace

    def exists(self) -> bool:
        """Whether the workspace's folder exists (opening a part creates it)."""
        return self.path.is_dir()

    def _once(self, name: str, build: Callable[[], P]) -> P:
        with self._lock:
            if self._closed:
                raise UsageError("this workspace was closed; open a new one")
            if name not in self._parts:
                self._parts[name] = build()
            found: P = self._parts[name]
            return found

    # -- data ------------------------------------------------------------------------------

    def store(self) -> FeatureStore:
        """The feature store (``featurestore:``)."""
        chosen = self.settings.featurestore
        return self._once(
            "store",
            lambda: FeatureStore(self.settings.store_path, chosen.memory_limit, chosen.threads),
        )

    def telemetry(self) -> FeatureStore:
        """perfml's own recorded metrics (``<workspace>/telemetry``), apart from the fleet's
        points, so that the store's summary, training and drift see only the fleet."""
        chosen = self.settings.featurestore
        return self._once(
            "telemetry",
            lambda: FeatureStore(self.settings.telemetry_path, chosen.memory_limit, chosen.threads),
        )

    def scores(self) -> ScoreLog:
        """Every score of the live loop and of backfills (``<workspace>/anomalies/scores``)."""
        from perfml.anomalies import ScoreLog

        return self._once("scores", lambda: ScoreLog(self.settings.anomalies_path / "scores"))

    def live_models(self) -> list[str]:
        """The references scored live: ``live.models``, else those served."""
        return list(self.settings.live.models or self.settings.serving.models)

    def live_scorer(self, refs: Sequence[str] | None = None) -> LiveScorer:
        """The live loop over ``refs`` (default :meth:`live_models`; ``live:``), not started."""
        from perfml.anomalies import LiveScorer
        from perfml.timeparse import parse_duration

        live = self.settings.live
        return LiveScorer(
            self.registry("live", background_delivery=False),
            self.store(),
            self.settings.anomalies_path,
            self.live_models() if refs is None else refs,
            flush_every=parse_duration(live.flush_interval).total_seconds(),
            checkpoint_every=parse_duration(live.checkpoint_interval).total_seconds(),
            follow_every=parse_duration(self.settings.serving.poll_interval).total_seconds(),
            max_exported=live.max_exported_series,
        )

    def find_incidents(self, **window: Any) -> Findings:
        """The incidents of the score log in a window (``live:`` says how they group)."""
        from perfml.anomalies import find_incidents
        from perfml.timeparse import parse_duration

        live = self.settings.live
        return find_incidents(
            self.scores(),
            gap_ms=int(parse_duration(live.incident_gap).total_seconds() * 1000),
            fleet_fraction=live.fleet_fraction,
            fleet_min_entities=live.fleet_min_entities,
            **window,
        )

    # -- the metadata database and its tables ------------------------------------------------

    def metadata(self) -> MetadataDatabase:
        """The metadata database (``registry.url``, SQLite in the workspace by default)."""
        return self._once("metadata", lambda: MetadataDatabase(self.settings.registry_url))

    def artifacts(self) -> ArtifactStore:
        """Where model artifacts are kept: ``<workspace>/artifacts`` by default, a folder, or
        an OCI registry for ``oci://HOST[:PORT]/PREFIX``."""
        return self._once("artifacts", self._open_artifacts)

    def _open_artifacts(self) -> ArtifactStore:
        chosen = self.settings.registry
        where = chosen.artifacts
        if where is None:
            return FilesystemArtifactStore(self.settings.artifacts_path)
        if where.startswith("oci://"):
            from perfml.registry.oci import OciArtifactStore

            host, _, prefix = where.removeprefix("oci://").partition("/")
            return OciArtifactStore(
                host,
                repository_prefix=prefix or "perfml",
                username=os.environ.get(chosen.oci_username_env) or None,
                password=os.environ.get(chosen.oci_password_env) or None,
                insecure=chosen.oci_insecure,
            )
        return FilesystemArtifactStore(where)

    def registry(
        self, actor: str | None = None, *, background_delivery: bool = True
    ) -> ModelRegistry:
        """The model registry, its changes recorded as ``actor``'s; with
        ``background_delivery`` its webhooks are sent from a thread (a short-lived command
        delivers them itself before it ends)."""
        who = actor or self.actor
        return self._once(
            f"registry:{who}:{background_delivery}",
            lambda: ModelRegistry(
                self.metadata(),
                self.artifacts(),
                actor=who,
                cache_dir=self.path / "cache" / "artifacts",
                deliver_in_background=background_delivery,
            ),
        )

    def history(self) -> RunHistory:
        """The pipelines' run history."""
        from perfml.pipelines.history import RunHistory

        return self._once("history", lambda: RunHistory(self.metadata()))

    def decisions(self) -> DecisionLog:
        """The controller's decision log."""
        from perfml.controller.decisions import DecisionLog

        return self._once("decisions", lambda: DecisionLog(self.metadata()))

    def alerts(self) -> AlertStore:
        """The alerts, their history, silences and notification log."""
        from perfml.alerting.store import AlertStore

        return self._once("alerts", lambda: AlertStore(self.metadata()))

    def verdicts(self) -> VerdictLog:
        """Operators' verdicts on incidents: written through to the store's labelled windows,
        an expected change silencing ``AnomalyDetected`` of the entity's metrics in the alert
        store."""
        from perfml.alerting.dispatch import LabelMatcher
        from perfml.anomalies import VerdictLog

        def silence(entity: str, metric: str, start: int, end: int, by: str, note: str) -> str:
            matchers = [
                LabelMatcher("alertname", "=", "AnomalyDetected"),
                LabelMatcher("entity", "=", entity),
                LabelMatcher("metric", "=", metric),
            ]
            return self.alerts().add_silence(matchers, start, end, by, note).id

        return self._once("verdicts", lambda: VerdictLog(self.metadata(), self.store(), silence))

    def part(self, name: str) -> Any:
        """The part called ``name`` (one of :data:`PARTS`), as a pipeline step is handed it."""
        if name == "registry":
            return self.registry(background_delivery=False)
        if name not in PARTS:
            raise UnknownPartError(name)
        opened: Any = getattr(self, name)()
        return opened

    # -- pipelines ---------------------------------------------------------------------------

    @property
    def pipelines(self) -> Registry[PipelineFactory]:
        """The pipelines by name (the built-in ones and any a plugin registered)."""
        return PIPELINES

    def parts_source(self) -> PartsSource:
        """How a pipeline job opens this workspace's parts in its own process."""
        settings = self.settings.model_dump(mode="json", by_alias=True, exclude_unset=True)
        settings["workspace"] = str(self.path)
        featurestore = {**settings.get("featurestore", {})}
        featurestore["path"] = str(self.settings.store_path)
        featurestore["memory_limit"] = JOB_STORE_MEMORY
        settings["featurestore"] = featurestore
        return PartsSource(
            factory=JOB_PARTS_FACTORY,
            config={"settings": settings, "actor": f"pipeline:{self.actor or 'runner'}"},
        )

    def runner(self, environ: Mapping[str, str] | None = None) -> LocalRunner:
        """A local runner on this workspace: runs under ``<workspace>/runs``, its history,
        the capacity of ``pipelines:``, the jobs handed this workspace's parts. Close it (or
        use ``with``) to stop its fork server."""
        return LocalRunner(
            self.history(),
            self.path,
            runner_capacity(self.settings.pipelines),
            environ=environ,
            parts=self.parts_source(),
        )

    def delete_run(self, run_id: str) -> None:
        """Delete an ended run: its history and its folder (``<workspace>/runs/<run>``, its
        artifacts and logs); a run still active is refused."""
        self.history().delete_run(run_id)
        shutil.rmtree(self.path / "runs" / run_id, ignore_errors=True)

    def gate_thresholds(self) -> list[MetricThreshold]:
        """The promotion gate's thresholds (``registry.gate``)."""
        return MetricThreshold.all_of(self.settings.registry.gate)

    def gate_evaluator(
        self, registry: ModelRegistry | None = None, candidate: ModelVersion | None = None
    ) -> LabelledWindowEvaluator:
        """The gate's evaluator: both versions scored on the same recent labelled window of
        the store (the last ``registry.gate_window``, none of it before the end of the
        ``candidate``'s training data), each threshold chosen on its first
        ``registry.gate_validation`` share."""
        from perfml.evaluation.labelled_window import LabelledWindowEvaluator

        gate = self.settings.registry
        after = None if candidate is None else candidate.data_end
        return LabelledWindowEvaluator.recent(
            registry or self.registry(), self.store(), gate.gate_window, gate.gate_validation,
            after,
        )  # fmt: skip

    def train(self, request: TrainingRequest) -> Training:
        """Run the training pipeline for ``request`` (the gate's thresholds and validation
        share of ``registry:`` unless the request names its own) on a runner of this
        workspace."""
        chosen = replace(
            request,
            gate=self.gate_thresholds() if request.gate is None else request.gate,
            validation=(
                self.settings.registry.gate_validation
                if request.validation is None
                else request.validation
            ),
        )
        with self.runner() as runner:
            return run_training(runner, chosen, self.settings.pipelines)

    def trainer(self) -> Trainer:
        """The controller's trainer: the training pipeline on this workspace, with the
        production version's detector and parameters, promoting through the gate."""

        def retrain(
            production: ModelVersion,
            start: datetime,
            end: datetime,
            policy: Policy,
            *,
            refresh: Sequence[str] | None = None,
        ) -> TrainingOutcome:
            request = TrainingRequest(
                detector=production.detector,
                metrics=production.features,
                start=start,
                end=end,
                model=production.model,
                params=production.params,
                holdout=policy.holdout,
                promote=True,
                alias=policy.alias,
                keep_from=None if refresh is None else production.ref,
                refresh=refresh,
            )
            return self.train(request).outcome

        return retrain

    # -- parts assembled from parts ----------------------------------------------------------

    def production_models(self) -> list[str]:
        """``NAME@production`` of every model of the registry with a production version."""
        registry = self.registry(background_delivery=False)
        return [f"{m.name}@{PRODUCTION}" for m in registry.models() if PRODUCTION in m.aliases]

    def serve_production_by_default(self) -> list[str]:
        """The models served: ``serving.models``, else (and the settings then name them, so
        the controller and the live loop follow them too) :meth:`production_models`."""
        serving = self.settings.serving
        if not serving.models:
            chosen = serving.model_copy(update={"models": tuple(self.production_models())})
            self.settings = self.settings.model_copy(update={"serving": chosen})
        return list(self.settings.serving.models)

    def serving_app(self, refs: Sequence[str], metrics: ServingMetrics | None = None) -> FastAPI:
        """The inference server for ``refs`` (``serving:``)."""
        from perfml.serving.app import inference_app

        registry = self.registry(background_delivery=False)
        return inference_app(registry, self.store(), refs, self.settings.serving, metrics)

    def controlled_models(self) -> list[str]:
        """The models the controller checks (``controller.models``, else those served)."""
        from perfml.controller.loop import controlled_models

        return controlled_models(self.settings.controller, self.settings.serving)

    def controller(self, trainer: Trainer | None = None) -> Controller:
        """The controller of the served models (``controller:``); ``trainer`` replaces the
        training pipeline (:meth:`trainer`)."""
        from perfml.controller.loop import Controller, NoModelsError, Policy

        models = self.controlled_models()
        if not models:
            raise NoModelsError()
        return Controller(
            self.registry("controller", background_delivery=False),
            self.store(),
            self.decisions(),
            trainer or self.trainer(),
            models,
            Policy.from_settings(self.settings.controller),
        )

    def job_metrics(self, clock: Callable[[], float] = time.time) -> JobMetricsCollector:
        """The job metrics of the run history, as kube-state-metrics names them."""
        from perfml.pipelines.job_metrics import JobMetricsCollector, Window, requests_from
        from perfml.timeparse import parse_duration

        ttl = self.settings.monitoring.finished_jobs_ttl
        return JobMetricsCollector(
            self.history(),
            runner_capacity(self.settings.pipelines),
            requests=requests_from(factory() for factory in self.pipelines),
            window=Window(max_age=None if ttl is None else parse_duration(ttl).total_seconds()),
            clock=clock,
        )

    def monitoring_targets(
        self, clock: Callable[[], float] = time.time, *, serving: bool = True
    ) -> list[Target]:
        """What the monitoring scrapes: the server (unless not ``serving``: none runs), the
        jobs (read in-process from the run history unless ``monitoring.jobs_metrics`` names an
        endpoint), ``monitoring.targets``."""
        from perfml.alerting.rules import SERVING_JOB
        from perfml.recording.service import default_targets, jobs_target

        monitoring = self.settings.monitoring
        jobs = None if monitoring.jobs_metrics else jobs_target(self.job_metrics(clock))
        targets = default_targets(self.settings.serving, monitoring, jobs)
        return targets if serving else [t for t in targets if t.job != SERVING_JOB]

    def monitoring(
        self,
        *,
        targets: Sequence[Target] | None = None,
        extra_registries: Sequence[Collector] = (),
        clock: Callable[[], float] = time.time,
        on_transition: Callable[[Alert], None] | None = None,
    ) -> MonitoringService:
        """The embedded monitoring service over this workspace (``monitoring:``): it records
        into the store, keeps the alerts, and scrapes ``targets`` (default:
        :meth:`monitoring_targets`)."""
        from perfml.recording.service import MonitoringService

        return MonitoringService(
            self.telemetry(),
            self.alerts(),
            self.settings.monitoring,
            self.monitoring_targets(clock) if targets is None else targets,
            alerts_log=self.path / "alerts.log",
            extra_registries=extra_registries,
            clock=clock,
            on_transition=on_transition,
        )

    def dashboard_sources(self, series: SeriesSource | None = None) -> DashboardSources:
        """What the dashboard reads: ``series`` (live) or perfml's recorded metrics as flushed
        to the telemetry store, the run history, the registry, the alerts, the controller's
        decisions, the score log, the store's labelled windows and the verdicts."""
        from perfml.dashboard.data import DashboardSources, IncidentOptions
        from perfml.recording.recorder import MetricsStore
        from perfml.timeparse import parse_duration

        live = self.settings.live
        return DashboardSources(
            series=series if series is not None else MetricsStore(self.telemetry()),
            history=self.history(),
            registry=self.registry(background_delivery=False),
            alerts=self.alerts(),
            decisions=self.decisions(),
            scores=self.scores(),
            labels=self.store(),
            verdicts=self.verdicts(),
            incidents=IncidentOptions(
                gap_ms=int(parse_duration(live.incident_gap).total_seconds() * 1000),
                fleet_fraction=live.fleet_fraction,
                fleet_min_entities=live.fleet_min_entities,
            ),
        )

    # -- closing -----------------------------------------------------------------------------

    def close(self) -> None:
        """Deliver the webhook events of what this workspace's registries changed (unless
        they deliver in the background), close the metadata database. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            parts, self._parts = self._parts, {}
        for name, part in parts.items():
            if name.startswith("registry:") and part.changed and not part.delivers_in_background:
                part.deliver_events()  # what this process changed is announced before it ends
        database = parts.get("metadata")
        if database is not None:
            database.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def cluster_parts(config_file: str | None = None) -> PartsSource:
    """Where a compiled pipeline's steps open their parts on a cluster: the workspace of the
    ``perfml.yaml`` their pod reads (``config_file``; default ``$PERFML_CONFIG``, else
    ``./perfml.yaml`` in the pod)."""
    config: dict[str, Any] = {} if config_file is None else {"config_file": config_file}
    return PartsSource(factory=JOB_PARTS_FACTORY, config={**config, "actor": "pipeline:cluster"})


@contextmanager
def open_job_workspace(config: Mapping[str, Any]) -> Iterator[Workspace]:
    """The workspace a pipeline job's steps are handed their parts from
    (:class:`~perfml.pipelines.parts.PartsSource`'s factory): ``config["settings"]`` (the
    settings of the workspace that started the run), else the settings the CLI would load
    (``config["config_file"]``, ``$PERFML_CONFIG`` or ``./perfml.yaml``)."""
    if "settings" in config:
        settings = Settings.model_validate(config["settings"])
    else:
        file = config.get("config_file")
        settings = load_settings(Path(file) if file else None)
    with Workspace(settings, actor=config.get("actor")) as workspace:
        yield workspace


def _absolute(settings: Settings) -> Settings:
    """``settings`` with the workspace and the store's folder made absolute: parts opened in
    other processes and other folders (pipeline jobs) find the same files."""
    updates: dict[str, Any] = {}
    if not settings.workspace.is_absolute():
        updates["workspace"] = settings.workspace.absolute()
    store = settings.featurestore.path
    if store is not None and not store.is_absolute():
        updates["featurestore"] = settings.featurestore.model_copy(
            update={"path": store.absolute()}
        )
    return settings.model_copy(update=updates) if updates else settings
