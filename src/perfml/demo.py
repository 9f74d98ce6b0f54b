"""The full demo: six months of a fleet, a workload change, and the loop that heals the model.

:func:`run_demo` does, on the embedded default, what an SRE team would see over half a year:

1. a generated fleet over ``demo.months`` months with labelled anomalies and a workload change
   in ``demo.change_month`` (a retired cluster's traffic moves onto part of the fleet);
2. v1 of the latency model trained on months 1–2 through the training pipeline and promoted;
3. the inference server and the monitoring started in this process;
4. month by month: the month scored through the HTTP server by the batch-scoring pipeline, then
   the controller's check of that month — drift against the production model's training data,
   and, over the threshold, a retrain through the pipeline runner, the gate's comparison, the
   promotion the server then follows;
5. a stuck job (its volume is missing) and a failing job (a wrong API token): their alerts fire,
   then resolve — once the volume appears, and once the failed job ages out of the metrics;
6. a self-contained HTML report, ``<workspace>/demo/report.html``.

The calendar is the fleet's (2024); the monitoring runs on the wall clock, with its intervals
and rule durations shortened to seconds (:func:`demo_settings`) so that the whole runs in a
few minutes. Progress goes to ``say``; the summary comes back as a :class:`DemoOutcome`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from perfml.alerting.alerts import Alert, AlertState
from perfml.alerting.store import HistoryEntry
from perfml.config import AlertRuleSettings, Settings
from perfml.controller.collector import ControllerCollector
from perfml.controller.decisions import Action, Decision, DecisionLog
from perfml.controller.loop import Controller
from perfml.detectors import DEFAULT_DETECTOR
from perfml.drift import drift_report, training_window
from perfml.drift.report import DriftRecord
from perfml.embedded import EmbeddedSystem, LatestDrift, Parts
from perfml.errors import PerfmlError
from perfml.pipelines.local import Training, TrainingRequest
from perfml.pipelines.scoring import build_scoring_pipeline
from perfml.pipelines.states import JobState, RunRecord
from perfml.recording.service import MonitoringService
from perfml.sources.fleet import METRICS, Fleet, generate_fleet, write_fleet
from perfml.sources.ingestion import ingest_corpus
from perfml.workspace import Workspace

DEMO_METRIC = "request_latency_ms"
"""The demo's model watches latency: the fleet labels its latency storms and spikes."""
DEMO_MODEL = "request-latency"

Say = Callable[[str], None]


@dataclass(frozen=True)
class MonthRow:
    """One month of the demo: what scored it, and what the controller decided."""

    month: str
    scored_rows: int
    served_by: list[str]
    decision: Decision | None


@dataclass
class DemoOutcome:
    """What the demo did, for its summary table."""

    fleet: Fleet
    first: Training
    months: list[MonthRow] = field(default_factory=list)
    drift: list[DriftRecord] = field(default_factory=list)
    alerts: list[HistoryEntry] = field(default_factory=list)
    production: str = ""
    report: Path | None = None
    seconds: float = 0.0


def demo_settings(settings: Settings, port: int | None = None) -> Settings:
    """``settings`` as the demo runs them: a workspace of its own (``<workspace>/demo``: its
    store, registry and artifacts, whatever ``perfml.yaml`` names for the real ones), a server on
    a free loopback port for the latency model, monitoring every second, rule durations in
    seconds, ended jobs leaving the metrics after 10 s, and the controller checking monthly
    windows of the latency model."""
    monitoring = settings.monitoring.model_copy(
        update={
            "scrape_interval": "1s",
            "evaluation_interval": "1s",
            "flush_interval": "30s",
            "retention": "1h",
            "finished_jobs_ttl": "10s",
            "rules": (
                AlertRuleSettings(name="JobPendingTooLong", params={"threshold": "5s"}),
                AlertRuleSettings(name="JobFailed", for_="0"),
                AlertRuleSettings(name="FeatureDriftHigh", for_="0"),
                AlertRuleSettings(name="InferenceServiceDown", for_="5s"),
            ),  # the shipped rules, quicker; perfml.yaml's own changes are not the demo's
            "notifications": settings.monitoring.notifications.model_copy(
                update={"group_wait": "1s", "critical_group_wait": "1s", "group_interval": "5s"}
            ),
        }
    )
    serving = settings.serving.model_copy(
        update={
            "host": "127.0.0.1",
            "port": port or _free_port(),
            "models": (f"{DEMO_MODEL}@production",),
            "poll_interval": "1s",
        }
    )
    # quality needs feedback, which the demo does not send: skip its scoring
    controller = settings.controller.model_copy(update={"models": (DEMO_MODEL,), "quality": False})
    return settings.model_copy(
        update={
            "workspace": (settings.workspace / "demo").absolute(),  # jobs run elsewhere
            "featurestore": settings.featurestore.model_copy(update={"path": None}),
            "registry": settings.registry.model_copy(update={"url": None, "artifacts": None}),
            "monitoring": monitoring,
            "serving": serving,
            "controller": controller,
        }
    )


def run_demo(settings: Settings, say: Say) -> DemoOutcome:
    """Run the demo on ``settings``' workspace (see the module's docstring)."""
    started = time.monotonic()
    settings = demo_settings(settings)
    if settings.workspace.exists():  # the demo's own folder: each run starts afresh
        shutil.rmtree(settings.workspace)
    settings.workspace.mkdir(parents=True)
    token_env = settings.serving.token_env
    token_before = os.environ.get(token_env)
    os.environ[token_env] = token_before or secrets.token_urlsafe(16)  # the server's, the jobs'
    try:
        return _run(settings, say, started)
    finally:
        if token_before is None:
            del os.environ[token_env]


def _run(settings: Settings, say: Say, started: float) -> DemoOutcome:
    with Workspace(settings) as workspace:
        fleet = _make_fleet(workspace, say)
        months = _month_starts(fleet)
        first = _train_first(workspace, months, say)
        outcome = DemoOutcome(fleet=fleet, first=first)
        controller = workspace.controller()
        say_alert = _alert_printer(say)
        system = EmbeddedSystem(
            workspace,
            Parts(controller=False, dashboard=False),
            on_alert=say_alert,
            collectors=[ControllerCollector(workspace.decisions()), LatestDrift(controller)],
        )
        with system:
            url = _running(system)[0]
            say(f"inference server on {url}, monitoring every second")
            for index in range(2, len(months) - 1):
                outcome.months.append(_one_month(workspace, url, controller, months, index, say))
            _stuck_job(workspace, system, months, say)
            _failing_job(workspace, system, months, say)
            time.sleep(2)  # the last scrapes and evaluations
        registry = workspace.registry(background_delivery=False)
        outcome.production = registry.get(f"{DEMO_MODEL}@production").ref
        reference = training_window(registry.get(f"{DEMO_MODEL}:1"))
        report = drift_report(
            workspace.store(), reference, methods=["kl"], metrics=list(METRICS), end=months[-1],
            thresholds={"kl": settings.controller.threshold},
        )  # fmt: skip
        outcome.drift = list(report.records)
        outcome.alerts = workspace.alerts().history()
        outcome.report = _write_report(workspace, outcome, workspace.decisions(), started)
    outcome.seconds = time.monotonic() - started
    return outcome


# -- the steps -------------------------------------------------------------------------------


def _make_fleet(workspace: Workspace, say: Say) -> Fleet:
    demo = workspace.settings.demo
    fleet = generate_fleet(demo.hosts, demo.months, demo.seed, drift_months=[demo.change_month - 1])
    folder = workspace.path / "demo-fleet"
    write_fleet(fleet, folder)
    report = ingest_corpus(workspace.store(), folder)
    change = fleet.drift_events[0]
    say(
        f"{len(fleet.hosts)} hosts × 6 metrics × {fleet.steps:,} five-minute steps "
        f"({fleet.points:,} points, {report.points_added:,} ingested), "
        f"{len(fleet.anomalies)} labelled anomalies; month {demo.change_month}: "
        f"{change.description}"
    )
    return fleet


def _month_starts(fleet: Fleet) -> list[datetime]:
    """The first instant of each month of the fleet, and the end of its last month."""
    starts = [fleet.start]
    while len(starts) <= fleet.months:
        last = starts[-1]
        starts.append(datetime(last.year + last.month // 12, last.month % 12 + 1, 1, tzinfo=UTC))
    return starts


def _train_first(workspace: Workspace, months: list[datetime], say: Say) -> Training:
    request = TrainingRequest(
        detector=DEFAULT_DETECTOR, metrics=[DEMO_METRIC], start=months[0], end=months[2],
        model=DEMO_MODEL, promote=True, holdout=workspace.settings.controller.holdout,
    )  # fmt: skip
    done = workspace.train(request)
    outcome = done.outcome
    if outcome.promoted != "production":
        workspace.registry(background_delivery=False).promote(
            DEMO_MODEL, outcome.version, "production", force=True,
            reason="the first version: nothing to compare with",
        )  # fmt: skip
    say(f"v1 {outcome.ref} trained on {_label(months[0])}–{_label(months[1])} "
        f"through the pipeline (run {done.run.run_id}) and promoted")  # fmt: skip
    return done


def _one_month(
    workspace: Workspace,
    url: str,
    controller: Controller,
    months: list[datetime],
    index: int,
    say: Say,
) -> MonthRow:
    start, end = months[index], months[index + 1]
    volume = workspace.path / "volumes" / "scores"
    volume.mkdir(parents=True, exist_ok=True)
    run = _score(workspace, url, start, end, volume, os.environ)
    if run.state is not JobState.SUCCEEDED:
        message = run.jobs["score"].message.strip().splitlines()
        say(f"{_label(start)}: the scoring job {run.run_id} {run.state.value}: "
            f"{message[-1] if message else ''}")  # fmt: skip
    scored = _scored(run)
    served_by = [f"{DEMO_MODEL}:{v}" for v in scored.get("versions", [])]
    say(f"{_label(start)}: scored {scored.get('rows', 0):,} points through the server "
        f"({', '.join(served_by)})")  # fmt: skip
    (decision,) = controller.run_once(end)
    drift = decision.figures.get("drift", {}).get(DEMO_METRIC)
    figure = "" if drift is None else f" (KL {drift:.3f})"
    say(f"{_label(start)}: controller: {decision.action.value}{figure}: {decision.reasons[-1]}")
    if decision.action is Action.PROMOTED and decision.candidate is not None:
        _wait_served(url, decision.candidate, workspace.settings.serving.token_env, say)
    return MonthRow(_label(start), int(scored.get("rows", 0)), served_by, decision)


def _stuck_job(
    workspace: Workspace, system: EmbeddedSystem, months: list[datetime], say: Say
) -> None:
    """A scoring job whose output volume is not there: Pending until it is mounted."""
    url = _running(system)[0]
    volume = workspace.path / "volumes" / "archive"
    if volume.exists():
        volume.rmdir()
    start, end = months[-2], months[-2].replace(day=2)

    def run() -> None:
        _score(workspace, url, start, end, volume, os.environ)

    thread = threading.Thread(target=run, name="perfml-demo-stuck-job", daemon=True)
    say(f"a scoring job whose volume {volume} is missing: it stays Pending")
    thread.start()
    _wait_alert(system, "JobPendingTooLong", AlertState.FIRING, 60)
    volume.mkdir(parents=True)
    say(f"the volume is mounted: {volume}")
    thread.join(timeout=120)
    _wait_alert(system, "JobPendingTooLong", None, 60)


def _failing_job(
    workspace: Workspace, system: EmbeddedSystem, months: list[datetime], say: Say
) -> None:
    """A scoring job with a wrong API token: refused, it fails at once."""
    url = _running(system)[0]
    volume = workspace.path / "volumes" / "scores"
    start, end = months[-2], months[-2].replace(day=2)
    environ = {**os.environ, workspace.settings.serving.token_env: "a-wrong-token"}
    say("a scoring job with a wrong API token: the server refuses it")
    run = _score(workspace, url, start, end, volume, environ)
    job = run.jobs["score"]
    say(f"it failed at once ({job.reason.value if job.reason else job.state.value}): "
        f"{job.message.splitlines()[0][:100]}")  # fmt: skip
    _wait_alert(system, "JobFailed", AlertState.FIRING, 60)
    say("the failed job ages out of the job metrics (finished_jobs_ttl: 10s)")
    _wait_alert(system, "JobFailed", None, 60)


# -- helpers ---------------------------------------------------------------------------------


def _score(
    workspace: Workspace,
    url: str,
    start: datetime,
    end: datetime,
    volume: Path,
    environ: Any,
) -> RunRecord:
    pipeline = build_scoring_pipeline(volume, workspace.settings.serving.token_env)
    params = {
        "url": url, "model": DEMO_MODEL, "metric": DEMO_METRIC,
        "start": start.isoformat(), "end": end.isoformat(),
        "run_id": f"{start:%Y%m%d}-{secrets.token_hex(3)}",
    }  # fmt: skip
    with workspace.runner(environ=dict(environ)) as runner:
        return runner.run(pipeline, params)


def _scored(run: RunRecord) -> dict[str, Any]:
    if run.state is not JobState.SUCCEEDED:
        return {}
    found: dict[str, Any] = json.loads((Path(run.workspace) / "score" / "result.json").read_text())[
        "value"
    ]
    return found


def _wait_served(url: str, ref: str, token_env: str, say: Say, timeout: float = 60) -> None:
    """Until the server answers with ``ref``'s version (it follows the alias)."""
    version = ref.rsplit(":", 1)[1]
    deadline = time.monotonic() + timeout
    token = os.environ.get(token_env, "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    while time.monotonic() < deadline:
        try:
            found = httpx.get(f"{url}/v2/models/{DEMO_MODEL}", headers=headers, timeout=5).json()
            if version in found.get("versions", []):
                say(f"the server swapped to {ref} without a restart")
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    say(f"the server did not report {ref} within {timeout:g} s")


def _wait_alert(
    system: EmbeddedSystem, rule: str, state: AlertState | None, timeout: float
) -> bool:
    """Until ``rule`` has an alert in ``state`` (None: has none pending or firing)."""
    monitoring = _running(system)[1]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alerts = [a for a in monitoring.alerts() if a.rule == rule]
        if (state is None and not alerts) or any(a.state is state for a in alerts):
            time.sleep(0.3)  # the evaluating thread tells of the change just after making it
            return True
        time.sleep(0.25)
    return False


class DemoNotRunningError(PerfmlError):
    def __init__(self, part: str) -> None:
        super().__init__(f"the demo's {part} is not running")


def _running(system: EmbeddedSystem) -> tuple[str, MonitoringService]:
    """The server's URL and the monitoring of a started ``system``."""
    if system.server is None:
        raise DemoNotRunningError("inference server")
    if system.monitoring is None:
        raise DemoNotRunningError("monitoring")
    return system.server.url, system.monitoring


def _alert_printer(say: Say) -> Callable[[Alert], None]:
    def told(alert: Alert) -> None:
        if alert.state in (AlertState.FIRING, AlertState.RESOLVED):
            labels = alert.labels
            where = labels.get("job_name") or labels.get("pod") or labels.get("feature") or ""
            say(f"alert {alert.rule} {alert.state.value}" + (f" ({where})" if where else ""))

    return told


def _write_report(
    workspace: Workspace, outcome: DemoOutcome, decisions: DecisionLog, started: float
) -> Path:
    from perfml.dashboard.data import TimeRange
    from perfml.dashboard.report import write_report

    now_ms = int(time.time() * 1000)
    begin_ms = now_ms - int((time.monotonic() - started + 5) * 1000)
    window = TimeRange(begin_ms, now_ms, max(1000, (now_ms - begin_ms) // 240))
    return write_report(
        workspace.path / "report.html",
        workspace.dashboard_sources(),
        window,
        drift=outcome.drift,
        decisions=decisions.history(),
        title="perfml demo: six months of a fleet",
    )


def _label(moment: datetime) -> str:
    return f"{moment:%Y-%m}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
