"""The full demo: six months of a fleet, a workload change, and the loop that heals the model.

:func:`run_demo` does, on the embedded default, what an SRE team would see over half a year:

1. a generated fleet over ``demo.months`` months with labelled anomalies and a workload change
   in ``demo.change_month`` (a retired cluster's traffic moves onto part of the fleet);
2. v1 of the latency model trained on months 1–2 through the training pipeline and promoted
   through the gate, which holds a first version to its floors;
3. the inference server and the monitoring started in this process;
4. month by month: the month arrives — stored, and scored point by point by the live loop with
   each host's own state (its incidents judged against the fleet's labels: precision, recall,
   time to detect) and through the HTTP server by the batch-scoring pipeline; then
   the controller's check of that month — drift against the production model's training data,
   and, over the threshold, a retrain through the pipeline runner, the gate's comparison (both
   versions' figures on the held-out window's test slice, each at its threshold chosen on the
   validation slice), the promotion the server then follows;
5. a stuck job (its volume is missing) and a failing job (a wrong API token): their alerts fire,
   then resolve — once the volume appears, and once the failed job ages out of the metrics;
6. a self-contained HTML report, ``<workspace>/demo/report.html``.

The calendar is the fleet's (2024); the monitoring runs on the wall clock, with its intervals
and rule durations shortened to seconds (:func:`demo_settings`) so that the whole runs in a
few minutes. Progress goes to ``say``; the summary comes back as a :class:`DemoOutcome`, with
every decision of the gate and the figures it was made on (:class:`GateDecision`).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from perfml.alerting.alerts import Alert, AlertState
from perfml.alerting.store import HistoryEntry
from perfml.anomalies import LiveScorer
from perfml.anomalies.report import Detection, against_labels
from perfml.config import AlertRuleSettings, Settings
from perfml.controller.collector import ControllerCollector
from perfml.controller.decisions import Action, Decision, DecisionLog
from perfml.controller.loop import Controller
from perfml.detectors import DEFAULT_DETECTOR
from perfml.drift import drift_report, training_window
from perfml.drift.report import DriftRecord
from perfml.embedded import EmbeddedSystem, LatestDrift, Parts
from perfml.errors import PerfmlError
from perfml.featurestore import FeatureStore
from perfml.pipelines.local import Training, TrainingRequest
from perfml.pipelines.outcomes import GateVerdict, TrainingOutcome
from perfml.pipelines.scoring import build_scoring_pipeline
from perfml.pipelines.states import JobState, RunRecord
from perfml.recording.service import MonitoringService
from perfml.sources.fleet import METRICS, WINDOW_PAD_STEPS, Fleet, generate_fleet, write_fleet
from perfml.sources.ingestion import ingest_corpus
from perfml.timeparse import to_epoch_ms
from perfml.workspace import Workspace

DEMO_METRIC = "request_latency_ms"
"""The demo's model watches latency: the fleet labels its latency storms and spikes."""
DEMO_MODEL = "request-latency"

Say = Callable[[str], None]


@dataclass(frozen=True)
class GateDecision:
    """One decision of the promotion gate: the candidate, the holder it was compared with
    (None: a first version, held to the floors only) and the verdict with both figures."""

    when: str
    candidate: str
    holder: str | None
    verdict: GateVerdict

    def summary(self) -> str:
        """One line: both versions' figures, the bars and the verdict."""
        figures = f"{self.candidate} {_figures(self.verdict.candidate)}"
        if self.holder is not None and self.verdict.baseline is not None:
            figures += f" against {self.holder} {_figures(self.verdict.baseline)}"
        test = self.verdict.candidate.get("test_windows")
        plural = "" if test == 1 else "s"
        where = "" if test is None else f" on the test slice ({test:.0f} labelled window{plural})"
        bars = "; ".join(_bar(t) for t in self.verdict.thresholds)
        verdict = "passed" if self.verdict.passed else f"refused: {self.verdict.reason}"
        return f"gate: {figures}{where}; {bars}: {verdict}"


def _figures(found: dict[str, float]) -> str:
    nab, f1 = found.get("nab_standard", math.nan), found.get("event_f1", math.nan)
    return f"(NAB {nab:.1f}, event F1 {f1:.2f})"


def _bar(threshold: dict[str, Any]) -> str:
    """What a threshold asks, e.g. ``event_f1 ≥ 0.5, within 0.05 of the holder``."""
    better = threshold.get("greater_is_better", True)
    parts = []
    if threshold.get("min_value") is not None:
        parts.append(f"{'≥' if better else '≤'} {threshold['min_value']:g}")
    if threshold.get("max_drop") is not None:
        parts.append(f"within {threshold['max_drop']:g} of the holder")
    if threshold.get("min_absolute_change") is not None:
        parts.append(f"{threshold['min_absolute_change']:g} better than the holder")
    if threshold.get("min_relative_change") is not None:
        parts.append(f"{threshold['min_relative_change']:.0%} better than the holder")
    return f"{threshold['metric']} {', '.join(parts)}".strip()


@dataclass(frozen=True)
class MonthRow:
    """One month of the demo: what scored it, what the controller decided, and the gate's
    decision when it retrained."""

    month: str
    scored_rows: int
    served_by: list[str]
    decision: Decision | None
    gate: GateDecision | None = None
    found: Detection | None = None
    """The live loop's incidents of the month against the labelled anomalies of its metric."""
    incidents: int = 0
    hosts: int = 0
    live_scored: int = 0
    """Points the live loop scored as the month arrived."""


@dataclass
class DemoOutcome:
    """What the demo did, for its summary table."""

    fleet: Fleet
    first: Training
    gates: list[GateDecision] = field(default_factory=list)
    """Every decision of the gate, in order: v1's first promotion, then each retrain's."""
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
    # Quality needs feedback, which the demo does not send: skip its scoring. Half the 60
    # days a retrain takes are its gate window (15 days to choose the threshold, 15 to judge):
    # about a dozen labelled latency anomalies, not three.
    controller = settings.controller.model_copy(
        update={"models": (DEMO_MODEL,), "quality": False, "holdout": 0.5}
    )
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
        fleet, arrivals = _make_fleet(workspace, say)
        months = _month_starts(fleet)
        _arrive(workspace, arrivals, None, months[2], windows=True)
        first = _train_first(workspace, months, say)
        outcome = DemoOutcome(fleet=fleet, first=first)
        if first.outcome.gate is not None:
            outcome.gates.append(
                GateDecision(
                    _span(months[0], months[1]), first.outcome.ref, None, first.outcome.gate
                )
            )
        controller = workspace.controller()
        say_alert = _alert_printer(say)
        system = EmbeddedSystem(
            workspace,
            Parts(controller=False, dashboard=False, intake=False),
            on_alert=say_alert,
            collectors=[ControllerCollector(workspace.decisions()), LatestDrift(controller)],
        )
        with system:
            url = _running(system)[0]
            say(f"inference server on {url}, monitoring every second")
            for index in range(2, len(months) - 1):
                row = _one_month(
                    workspace, fleet, system, arrivals, url, controller, months, index, say
                )
                outcome.months.append(row)
                if row.gate is not None:
                    outcome.gates.append(row.gate)
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


def _make_fleet(workspace: Workspace, say: Say) -> tuple[Fleet, FeatureStore]:
    """The fleet, written in NAB's layout and read into a store of arrivals: what the fleet
    will send, month by month (:func:`_arrive`)."""
    demo = workspace.settings.demo
    fleet = generate_fleet(demo.hosts, demo.months, demo.seed, drift_months=[demo.change_month - 1])
    folder = workspace.path / "demo-fleet"
    write_fleet(fleet, folder)
    arrivals = FeatureStore(workspace.path / "demo-arrivals")
    report = ingest_corpus(arrivals, folder)
    change = fleet.drift_events[0]
    say(
        f"{len(fleet.hosts)} hosts × 6 metrics × {fleet.steps:,} five-minute steps "
        f"({fleet.points:,} points, {report.points_added:,} to arrive month by month), "
        f"{len(fleet.anomalies)} labelled anomalies; month {demo.change_month}: "
        f"{change.description}"
    )
    return fleet, arrivals


def _arrive(
    workspace: Workspace,
    arrivals: FeatureStore,
    start: datetime | None,
    end: datetime,
    windows: bool = False,
    live: LiveScorer | None = None,
) -> int:
    """The fleet's points of ``[start, end)`` arrive: stored (with the labels, ``windows``),
    then handed to the live loop, as the remote-write receiver hands what it stored."""
    points = arrivals.read(start=start, end=end)
    workspace.store().write(points, windows=arrivals.windows() if windows else ())
    if live is None:
        return 0
    scored = live.feed(points)
    live.flush()
    return scored


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
    if outcome.promoted != "production":  # the story needs a v1: it is not forced past the gate
        raise FirstVersionRefusedError(outcome)
    say(f"v1 {outcome.ref} trained on {_span(months[0], months[1])} "
        f"through the pipeline (run {done.run.run_id}) and promoted")  # fmt: skip
    if outcome.gate is not None:
        say(GateDecision(_span(months[0], months[1]), outcome.ref, None, outcome.gate).summary())
    return done


class FirstVersionRefusedError(PerfmlError):
    def __init__(self, outcome: TrainingOutcome) -> None:
        why = "promotion was not asked for" if outcome.gate is None else outcome.gate.reason
        super().__init__(f"the demo's first version {outcome.ref} was not promoted: {why}")


def _gate_of(month: str, decision: Decision) -> GateDecision | None:
    """The gate's decision in a controller's ``decision``, if it retrained."""
    found = decision.figures.get("gate")
    if found is None or decision.candidate is None:
        return None
    return GateDecision(
        month, decision.candidate, decision.production, GateVerdict.model_validate(found)
    )


def _one_month(
    workspace: Workspace,
    fleet: Fleet,
    system: EmbeddedSystem,
    arrivals: FeatureStore,
    url: str,
    controller: Controller,
    months: list[datetime],
    index: int,
    say: Say,
) -> MonthRow:
    start, end = months[index], months[index + 1]
    live = system.live
    live_scored = _arrive(workspace, arrivals, start, end, live=live)
    findings = workspace.find_incidents(start=start, end=end, metrics=[DEMO_METRIC])
    pad = WINDOW_PAD_STEPS * fleet.step
    labelled = [
        a for a in fleet.anomalies if a.metric == DEMO_METRIC and start <= a.start < end
    ]  # the generator's labels; NAB's windows pad each anomaly on both sides
    windows = [
        (a.metric, a.host, to_epoch_ms(a.start - pad), to_epoch_ms(a.end + pad)) for a in labelled
    ]
    found = against_labels(findings, windows, onsets=[to_epoch_ms(a.start) for a in labelled])
    hosts = len({i.entity for i in findings.incidents})
    delay = found.median_delay_minutes
    wide = f", {len(findings.fleets)} fleet-wide" if findings.fleets else ""
    say(
        f"{_label(start)}: the live loop scored {live_scored:,} points as they arrived: "
        f"{len(findings.incidents)} incidents on {hosts} hosts{wide}; "
        f"{found.found} of {found.windows} labelled anomalies found (recall {found.recall:.2f}), "
        f"precision {found.precision:.2f}"
        + ("" if delay is None else f", median time to detect {delay:.0f} min")
    )
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
    gate = _gate_of(_label(start), decision)
    if gate is not None:
        say(f"{_label(start)}: {gate.summary()}")
    if decision.action is Action.PROMOTED and decision.candidate is not None:
        _wait_served(url, decision.candidate, workspace.settings.serving.token_env, say)
        if live is not None:
            live.follow()  # the live series move to the new version now, not at the next poll
    row = MonthRow(_label(start), int(scored.get("rows", 0)), served_by, decision, gate)
    return replace(
        row, found=found, incidents=len(findings.incidents), hosts=hosts, live_scored=live_scored
    )


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


def _span(first: datetime, last: datetime) -> str:
    return f"{_label(first)}–{_label(last)}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
