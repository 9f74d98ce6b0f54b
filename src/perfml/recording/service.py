"""The embedded monitoring service: perfml's own Prometheus, in one object.

Without a cluster nothing else scrapes perfml's endpoints or evaluates its rules, so
:class:`MonitoringService` does both, as ``perfml monitor`` runs it:

* a :class:`~perfml.recording.recorder.MetricsStore` over the workspace's feature store
  (``monitoring.retention`` in memory, flushed every ``monitoring.flush_interval``), which a
  dashboard in the same process reads live through :attr:`MonitoringService.metrics`;
* a :class:`~perfml.recording.recorder.Recorder` scraping the targets every
  ``monitoring.scrape_interval`` on a thread (each scrape given up after
  ``monitoring.scrape_timeout``, cut to the interval when longer: a scrape never overlaps
  the next);
* the :class:`~perfml.alerting.engine.RuleEngine` of
  :func:`~perfml.alerting.engine.build_engine` (the alerts kept in the alert store, the
  notifications of ``monitoring.notifications``) evaluated every
  ``monitoring.evaluation_interval`` on a thread of its own.

It is handed its parts — the feature store, the alert store, the targets — and closes none of
them. A workspace's targets (:meth:`perfml.workspace.Workspace.monitoring`) are
:func:`default_targets`, those of the ``prometheus.yml`` that ``perfml export prometheus``
writes, so that the alerts carry the same labels in both worlds:

* ``perfml-serving``: ``http://{serving.host}:{serving.port}/metrics`` (``127.0.0.1`` for a
  server listening on every address), with the bearer token of ``serving.token_env`` when
  that variable is set;
* ``perfml-jobs``: when ``monitoring.jobs_metrics`` names an address, that endpoint (a
  ``perfml runs serve-metrics`` elsewhere). Otherwise nothing serves the job metrics but this
  process could, so they are read in-process (:func:`jobs_target`: the workspace's run history)
  — no port to open, no second process to keep alive — under ``instance="127.0.0.1:9102"``,
  the address the exported ``prometheus.yml`` scrapes them at, so the series are labelled as
  a Prometheus would label them;
* every ``monitoring.targets`` entry, with its labels;
* the ``extra_registries`` of this process (a controller's or drift job's metrics), read
  without HTTP as one target, job ``perfml``.

A failing scrape is ``up`` 0 for its target and the rounds go on; a failing rule is recorded
in the engine's rule health and the other rules still run; a round that fails as a whole (the
database unreachable) is logged and the next one runs on time.

>>> import tempfile
>>> from perfml.alerting import AlertStore
>>> from perfml.config import MonitoringSettings
>>> from perfml.featurestore import FeatureStore
>>> from perfml.metadata import MetadataDatabase
>>> alerts = AlertStore(MetadataDatabase("sqlite://"))
>>> store = FeatureStore(tempfile.mkdtemp())
>>> service = MonitoringService(store, alerts, MonitoringSettings(), [])  # nothing scraped
>>> [(alert.rule, alert.state.value) for alert in service.evaluate_now()]
[('InferenceServiceDown', 'pending')]
>>> service.stop()
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from perfml.alerting.alerts import Alert, AlertState
from perfml.alerting.engine import EngineRule, RuleEngine, build_engine
from perfml.alerting.prometheus_config import JOBS_METRICS_PORT
from perfml.alerting.rules import JOBS_JOB, SERVING_JOB
from perfml.alerting.store import AlertStore
from perfml.config import MonitoringSettings, ServingSettings
from perfml.featurestore import FeatureStore
from perfml.recording.errors import RecordingError
from perfml.recording.recorder import MetricsStore, Recorder
from perfml.recording.rounds import every
from perfml.recording.scrape import (
    RegistryTarget,
    Scraper,
    ScrapeResult,
    ScrapeTarget,
    Target,
)
from perfml.timeparse import parse_duration

log = logging.getLogger(__name__)

PROCESS_JOB = "perfml"
"""The ``job`` of the metrics this process's own registries give (``extra_registries``)."""
_ANY_ADDRESS = {"", "0.0.0.0", "::", "[::]"}

OnTransition = Callable[[Alert], None]
"""Called with every alert whose state an evaluation changed (pending, firing, resolved…)."""


class ServiceClosedError(RecordingError):
    """A stopped service cannot start again: its scraper is closed."""

    def __init__(self) -> None:
        super().__init__("the monitoring service was stopped; create a new one to start again")


class CollectFailedError(RecordingError, ValueError):
    """An in-process collector failed; a ``ValueError`` as an unreadable body is, so the
    scrape of its target fails (``up`` 0) instead of the whole round."""

    def __init__(self, job: str, error: BaseException) -> None:
        self.job = job
        super().__init__(f"collecting the metrics of {job} failed: {type(error).__name__}: {error}")


def seconds(duration: str) -> float:
    """A duration of the settings (``15s``, ``5m``) in seconds.

    >>> seconds("1m30s")
    90.0
    """
    return parse_duration(duration).total_seconds()


def address(host: str, port: int) -> str:
    """``host:port`` to reach a server listening on ``host`` (every address: loopback).

    >>> address("0.0.0.0", 8080), address("::1", 9102)
    ('127.0.0.1:8080', '[::1]:9102')
    """
    reached = "127.0.0.1" if host in _ANY_ADDRESS else host
    if ":" in reached and not reached.startswith("["):
        reached = f"[{reached}]"
    return f"{reached}:{port}"


class _Guarded(Collector):
    """The families of ``collectors``, one after the other; a failure is one failed scrape."""

    def __init__(self, job: str, collectors: Sequence[Collector]) -> None:
        self.job = job
        self.collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        try:
            families = [family for c in self.collectors for family in c.collect()]
        except Exception as error:
            raise CollectFailedError(self.job, error) from error
        return iter(families)


def in_process_target(
    job: str, collectors: Sequence[Collector], instance: str = "localhost"
) -> RegistryTarget:
    """One target reading ``collectors`` (registries or collectors) of this process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Guarded(job, collectors))
    return RegistryTarget(job, registry, instance=instance)


def jobs_target(collector: Collector) -> RegistryTarget:
    """The job metrics of ``collector`` (a run history's) read in-process, labelled as the
    exported Prometheus scrape of ``perfml runs serve-metrics`` labels them (see the module's
    doc)."""
    return in_process_target(JOBS_JOB, [collector], f"127.0.0.1:{JOBS_METRICS_PORT}")


def default_targets(
    serving: ServingSettings, monitoring: MonitoringSettings, jobs: Target | None = None
) -> list[Target]:
    """The targets the settings describe: serving, the jobs, ``monitoring.targets``.

    The jobs are scraped over HTTP when ``monitoring.jobs_metrics`` is set, else read from
    ``jobs`` (:func:`jobs_target`) when given; without either they are left out.
    """
    token = os.environ.get(serving.token_env) or None
    targets: list[Target] = [
        ScrapeTarget(
            SERVING_JOB,
            f"http://{address(serving.host, serving.port)}/metrics",
            bearer_token=token,
        )
    ]
    if monitoring.jobs_metrics is not None:
        targets.append(ScrapeTarget(JOBS_JOB, f"http://{monitoring.jobs_metrics}/metrics"))
    elif jobs is not None:
        targets.append(jobs)
    targets += [
        ScrapeTarget(extra.job, extra.url, labels=dict(extra.labels))
        for extra in monitoring.targets
    ]
    return targets


class MonitoringService:
    """Scrapes, records and evaluates the alert rules, each on its thread, until stopped.

    Samples are recorded into ``store`` (as ``monitoring:`` says: retention, flushes) and the
    alerts kept in ``alerts``; ``targets`` are scraped (see :func:`default_targets`);
    ``extra_registries`` (registries or collectors of this process) are read as one more
    target, job ``perfml``. ``rules`` replace ``monitoring:``'s; the JSON-lines notification
    log is ``alerts_log`` unless the settings name one. ``clock`` gives
    the time of scrapes and evaluations (seconds since the epoch). ``on_transition`` is called
    with each alert an evaluation moved, from the evaluating thread (keep it short).

    :meth:`start` starts both loops, :meth:`stop` ends them and flushes what is recorded;
    ``with`` does both. :meth:`scrape_now` and :meth:`evaluate_now` do one
    round by hand (``perfml monitor --once``, tests), started or not.
    """

    def __init__(
        self,
        store: FeatureStore,
        alerts: AlertStore,
        monitoring: MonitoringSettings,
        targets: Sequence[Target],
        *,
        rules: Sequence[EngineRule] | None = None,
        alerts_log: Path | None = None,
        extra_registries: Sequence[Collector] = (),
        clock: Callable[[], float] = time.time,
        on_transition: OnTransition | None = None,
    ) -> None:
        self.clock = clock
        self.on_transition = on_transition
        self.scrape_interval_s = seconds(monitoring.scrape_interval)
        self.evaluation_interval_s = seconds(monitoring.evaluation_interval)
        self.store = store
        self.metrics = MetricsStore(
            store,
            retention_s=seconds(monitoring.retention),
            flush_interval_s=seconds(monitoring.flush_interval),
        )
        """The recorded series (a PromQL source): what the rules and a dashboard read."""
        chosen = list(targets)
        if extra_registries:
            chosen.append(in_process_target(PROCESS_JOB, extra_registries))
        self.targets: list[Target] = chosen
        timeout = min(seconds(monitoring.scrape_timeout), self.scrape_interval_s)
        self._scraper = Scraper(timeout_s=timeout)
        self.recorder = Recorder(
            chosen,
            self.metrics,
            scrape_interval_s=self.scrape_interval_s,
            scraper=self._scraper,
            clock=clock,
        )
        try:
            self.engine: RuleEngine = build_engine(
                monitoring, alerts, self.metrics, rules=rules, alerts_log=alerts_log
            )
        except BaseException:
            self._scraper.close()
            raise
        self.last_error: BaseException | None = None
        """The last failure of a whole evaluation round (each rule's are in its health)."""
        self._evaluation_lock = threading.Lock()
        self._stopping = threading.Event()
        self._evaluator: threading.Thread | None = None
        self._started = False
        self._stopped = False

    # -- one round by hand ----------------------------------------------------------------

    def scrape_now(self) -> list[ScrapeResult]:
        """Scrape every target once and record it (flushing when a flush is due)."""
        return self.recorder.scrape_once()

    def evaluate_now(self) -> list[Alert]:
        """Evaluate every rule now; return the alerts whose state changed (each also given to
        ``on_transition``)."""
        with self._evaluation_lock:
            transitions = self.engine.evaluate(round(self.clock() * 1000))
        if self.on_transition is not None:
            for alert in transitions:
                try:
                    self.on_transition(alert)
                except Exception:  # a broken listener must not stop the evaluations
                    log.exception("on_transition failed for %s", alert.rule)
        return transitions

    def alerts(self) -> list[Alert]:
        """The pending and firing alerts, as the last evaluation left them."""
        return self.engine.alerts()

    def firing(self) -> list[Alert]:
        """The firing alerts only."""
        return [a for a in self.engine.alerts() if a.state is AlertState.FIRING]

    # -- running ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Scrape and evaluate on threads of their own until :meth:`stop`; a no-op when
        already started."""
        if self._stopped:
            raise ServiceClosedError()
        if not self._started:
            self._started = True
            self._stopping.clear()
            self.recorder.start()
            self._evaluator = threading.Thread(
                target=self._evaluate_loop, name="perfml-rule-engine", daemon=True
            )
            self._evaluator.start()
        return self

    def stop(self) -> None:
        """End both loops (waiting for the rounds under way) and flush the recorded samples.
        Stopping again does nothing."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        try:
            if self._evaluator is not None:
                self._evaluator.join()
                self._evaluator = None
            self.recorder.stop()  # joins its thread, then flushes
        finally:
            self._scraper.close()

    def _evaluate_loop(self) -> None:
        # the database unreachable, say: try again next round
        every(
            self.evaluation_interval_s, self._stopping, self.evaluate_now, "rule evaluation",
            self._failed,
        )  # fmt: skip

    def _failed(self, error: Exception) -> None:
        self.last_error = error

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
