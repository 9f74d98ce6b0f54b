"""The embedded system: serving, monitoring, the controller's schedule and the dashboard in one
process, as ``perfml up`` runs them on one machine.

Each part is the same object the separate commands run (``perfml serve``, ``perfml monitor``,
``perfml controller run``, ``perfml dashboard``), started on threads of this process:

* the **inference server** on ``serving.host:serving.port`` for ``serving.models`` (by
  default every model's production version; none runs if there is none);
* the **monitoring service**: scrapes the server (if one runs) and the job metrics, records
  them, evaluates the alert rules and notifies; it also reads the controller's and the
  drift's metrics in-process (``perfml_controller_actions_total``, ``perfml_feature_drift``);
* the **controller**, checking the served models every ``controller.schedule``;
* the **live loop** (``live:``), scoring each new point of the served models' metrics with
  its series' state (:class:`~perfml.anomalies.LiveScorer`), its scores in ``/metrics``;
* the **remote-write receiver** (``sources.remote_write.enabled``) and the **scheduled pulls**
  (``sources.queries``), whose stored points the live loop scores;
* the **dashboard**, reading the monitoring's live series.

:meth:`EmbeddedSystem.stop` stops them in the reverse order (the dashboard, what brings points
in, the server, the live loop (which checkpoints), the controller's loop, the monitoring last,
so it records the others' final state and flushes).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import pyarrow as pa
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from perfml.alerting.alerts import Alert
from perfml.anomalies import LiveScorer
from perfml.controller.collector import ControllerCollector
from perfml.controller.loop import Controller, Trainer
from perfml.drift.collector import DriftCollector
from perfml.recording.service import MonitoringService
from perfml.serving.server import AppServer
from perfml.serving.telemetry import ServingMetrics
from perfml.sources.pulls import ScheduledPulls
from perfml.timeparse import parse_duration
from perfml.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parts:
    """Which parts to run (all by default)."""

    serving: bool = True
    monitoring: bool = True
    controller: bool = True
    dashboard: bool = True
    dashboard_port: int = 8088
    live: bool = True
    intake: bool = True
    """The remote-write receiver and the scheduled pulls, as configured."""


class EmbeddedSystem:
    """perfml's parts in this process (see the module's docstring), built by ``workspace``;
    ``with`` starts and stops.

    ``collectors`` are more metrics of this process for the monitoring to record (job
    ``perfml``); ``on_alert`` is told of every alert that changes state; ``monitoring``
    replaces the workspace's monitoring service (it is called with the workspace's keyword
    arguments).
    """

    def __init__(
        self,
        workspace: Workspace,
        parts: Parts | None = None,
        *,
        trainer: Trainer | None = None,
        on_alert: Callable[[Alert], None] | None = None,
        collectors: Sequence[Collector] = (),
        monitoring: Callable[..., MonitoringService] | None = None,
    ) -> None:
        self.workspace = workspace
        self.parts = parts or Parts()
        if self.parts.serving:
            workspace.serve_production_by_default()
        self.settings = workspace.settings
        self._trainer = trainer
        self._on_alert = on_alert
        self._make_monitoring = monitoring or workspace.monitoring
        self._collectors = list(collectors)
        self.server: AppServer | None = None
        self.dashboard: AppServer | None = None
        self.monitoring: MonitoringService | None = None
        self.controller: Controller | None = None
        self.live: LiveScorer | None = None
        self.pulls: ScheduledPulls | None = None
        self.receiver: Any = None
        self._stop = threading.Event()
        self._controller_thread: threading.Thread | None = None

    @property
    def served(self) -> list[str]:
        return list(self.settings.serving.models)

    def start(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        settings, parts, workspace = self.settings, self.parts, self.workspace
        collectors: list[Collector] = list(self._collectors)
        if parts.controller and workspace.controlled_models():
            self.controller = workspace.controller(self._trainer)
            collectors += [
                ControllerCollector(workspace.decisions()),
                LatestDrift(self.controller),
            ]
        if parts.live and settings.live.enabled and workspace.live_models():
            self.live = workspace.live_scorer().start()
        if parts.serving and self.served:
            serving = settings.serving
            metrics = ServingMetrics()
            if self.live is not None:
                metrics.registry.register(self.live)  # the fleet's scores in the server's /metrics
            app = workspace.serving_app(self.served, metrics=metrics)
            self.server = AppServer(
                app, serving.host, serving.port, "inference server", setting="serving.port"
            ).start()
        if parts.intake:
            self._start_intake()
        if self.live is not None and self.server is None:
            if self.receiver is not None:  # its /metrics, beside /api/v1/write
                self.receiver.registry.register(self.live)
            else:
                collectors.append(self.live)
        if parts.monitoring:
            unserved: dict[str, Any] = {}
            if self.server is None:  # nothing to scrape: no InferenceServiceDown against itself
                unserved["targets"] = workspace.monitoring_targets(serving=False)
            self.monitoring = self._make_monitoring(
                extra_registries=collectors, on_transition=self._on_alert, **unserved
            ).start()
        if self.controller is not None:
            interval = parse_duration(settings.controller.schedule).total_seconds()
            self._controller_thread = threading.Thread(
                target=self.controller.run,
                args=(interval, self._stop),
                name="perfml-controller",
                daemon=True,
            )
            self._controller_thread.start()
        if parts.dashboard:
            self.dashboard = AppServer(
                self._dashboard_app(),
                settings.serving.host,
                parts.dashboard_port,
                "dashboard",
                setting="--dashboard-port",
            ).start()

    def _start_intake(self) -> None:
        settings, workspace = self.settings, self.workspace
        live = self.live

        def on_stored(points: pa.Table) -> None:
            if live is not None:
                live.feed(points)

        if settings.sources.remote_write.enabled:
            from perfml.sources.receiver import Receiver

            self.receiver = Receiver.from_settings(
                workspace.store(),
                settings.sources.remote_write,
                workspace.path / "landing",
                on_stored=on_stored,
                server=lambda app, host, port: AppServer(
                    app, host, port, "remote-write receiver", setting="sources.remote_write.port"
                ),
            ).start()
        if settings.sources.queries:
            from perfml.sources.pulls import ScheduledPulls

            self.pulls = ScheduledPulls(
                workspace.store(),
                settings.sources.prometheus,
                settings.sources.queries,
                parse_duration(settings.sources.pull_interval).total_seconds(),
                on_stored=on_stored,
            ).start()

    def _dashboard_app(self) -> Any:
        from perfml.dashboard.app import create_app

        live = None if self.monitoring is None else self.monitoring.metrics  # not only flushed
        return create_app(self.workspace.dashboard_sources(live))

    def stop(self) -> None:
        """Stop every part that runs (idempotent); the workspace stays open."""
        self._stop.set()
        if self.dashboard is not None:
            self.dashboard.stop()
        if self.pulls is not None:
            self.pulls.stop()
        if self.receiver is not None:
            self.receiver.stop()  # flushes what it acknowledged into the store (and the loop)
        if self.server is not None:
            self.server.stop()
        if self.live is not None:
            self.live.stop()
        if self._controller_thread is not None:
            self._controller_thread.join(timeout=60)
        if self.monitoring is not None:
            self.monitoring.stop()
        self.dashboard = self.server = self.monitoring = None
        self.live = self.pulls = self.receiver = None
        self._controller_thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class LatestDrift(Collector):
    """``perfml_feature_drift`` and ``perfml_model_quality`` from the controller's latest
    drift and quality reports of each model."""

    def __init__(self, controller: Controller) -> None:
        self._controller = controller

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        reports = list(self._controller.reports.items())
        quality = dict(self._controller.quality)
        for model, report in reports:
            for family in DriftCollector(drift=report, quality=quality.get(model)).collect():
                if family.name in merged:
                    merged[family.name].samples.extend(family.samples)
                else:
                    merged[family.name] = family
        yield from merged.values()
