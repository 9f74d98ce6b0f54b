"""Job metrics in the names of kube-state-metrics and cAdvisor, read from the run history.

One rule file serves a local runner and a cluster alike (DESIGN.md, "One vocabulary for both
worlds"), so a perfml run is shown as Kubernetes would show it under Kubeflow:

* a **task of a run** is a Kubernetes **Job**: ``namespace`` is ``perfml`` (configurable),
  ``job_name`` is ``<pipeline>-<run>-<task>`` made a DNS-1123 label (lowercase, ``[a-z0-9-]``,
  at most 56 characters, a hash suffix when cut); a run id that already starts with its
  pipeline's name is not prefixed twice (``demo-1a2b3c-extract``, not ``demo-demo-1a2b...``);
* each **attempt** is a **Pod** ``<job_name>-<attempt>`` whose single **container** is named
  after the task, on the **node** that is the runner's host. As on a cluster, a pod exists once
  the job could start but for capacity or a precondition (phase ``Pending``, the reasons
  ``Unschedulable`` and ``PreconditionMissing``), or once it started; a task waiting for its
  inputs, or satisfied from the cache, has no pod and no Job (Kubeflow creates none either);
* a pod's phase is its attempt's fate: ``Running`` while alive, ``Succeeded``, or ``Failed``
  (it failed and was retried or not, was killed by a cancel or an orphan recovery). ``Unknown``
  is always 0, kept so that each pod has the five series kube-state-metrics gives it;
* a Job's ``kube_job_status_completion_time`` is set only when it succeeded, and
  ``kube_job_failed{condition="true"}`` only when it failed, as Kubernetes does; why it failed is
  ``kube_job_status_failed{reason}`` (``BackoffLimitExceeded``, ``DeadlineExceeded``,
  ``PodFailurePolicy``: see :data:`JOB_FAILURE_REASONS`),
  as Kubernetes does; a cancelled task gets neither (on a cluster the Job would be deleted).

Resource use: the history keeps one total per task over all its attempts, written by the
runner at the end of each attempt; it is shown on the task's latest pod that ran (CPU seconds
as ``container_cpu_usage_seconds_total``, the working set as
``container_memory_working_set_bytes``: the tree's peak RSS once an attempt ended). A Running
pod is sampled live with psutil (the earlier attempts' totals plus its process tree now, the
working set its RSS now; see :func:`live_usage`). Network bytes are not measurable per
process, and presenting disk I/O as network traffic would make network rules fire on
disk-heavy jobs, so ``container_network_*`` are **not** exported; the disk bytes read and
written go out under cAdvisor's own names ``container_fs_reads_bytes_total`` and
``container_fs_writes_bytes_total``. Resource requests are not in the history: they come from
the pipeline definitions given (:func:`requests_from`), and are left out for other pipelines.

``perfml_job_phase_seconds{pipeline,step,phase}`` is the time the latest task of each
``(pipeline, step)`` (``step`` is the task's name) spent ``Pending`` and ``Running``, from its
transitions: the clock stops at its terminal state and runs until now for an active task.

Only runs in the window are exported (:class:`Window`: the last ``max_runs`` runs, optionally
also only those active or ended within ``max_age`` seconds), so the cardinality stays bounded.
"""

from __future__ import annotations

import hashlib
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from perfml.pipelines.dsl import Pipeline, Resources
from perfml.pipelines.history import RunHistory
from perfml.pipelines.states import JobRecord, JobState, Reason, ResourceUsage, RunRecord

DEFAULT_NAMESPACE = "perfml"
POD_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
JOB_FAILURE_REASONS = {
    Reason.BACKOFF_LIMIT_EXCEEDED: "BackoffLimitExceeded",
    Reason.ERROR: "BackoffLimitExceeded",
    Reason.OOM_KILLED: "BackoffLimitExceeded",
    Reason.DEADLINE_EXCEEDED: "DeadlineExceeded",
    Reason.PERMANENT_ERROR: "PodFailurePolicy",
}
"""The ``reason`` of ``kube_job_status_failed`` for a failed job, as Kubernetes names the Job's
``Failed`` condition: its retries spent (a step without retries has a backoff limit of 0, so
its one failed attempt spends them), its deadline passed, or a failure no retry can fix (a pod
failure policy's ``FailJob``); other ends (a cancel, an orphan, an upstream failure) carry none."""
"""The pod phases of Kubernetes, each a series of ``kube_pod_status_phase``."""
TIMED_PHASES = (JobState.PENDING, JobState.RUNNING)
"""The phases ``perfml_job_phase_seconds`` reports (a terminal state stops the clock)."""
_WAITING_POD = frozenset({Reason.UNSCHEDULABLE, Reason.PRECONDITION_MISSING})
_MAX_JOB_NAME = 56  # leaves room for "-<attempt>" within the 63 characters of a pod's name
_INVALID = re.compile(r"[^a-z0-9-]+")


def dns1123_label(name: str, max_length: int = 63) -> str:
    """``name`` as a DNS-1123 label: lowercase alphanumerics and ``-``, starting and ending
    with an alphanumeric; cut to ``max_length`` with a hash of the whole name kept.

    >>> dns1123_label("Demo_Run.42--Train_")
    'demo-run-42-train'
    >>> len(dns1123_label("x" * 80)), dns1123_label("x" * 80)[-9:] == dns1123_label("x" * 81)[-9:]
    (63, False)
    """
    label = _INVALID.sub("-", name.lower()).strip("-")
    label = re.sub("-{2,}", "-", label) or "x"
    if len(label) > max_length:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        label = f"{label[: max_length - 9].rstrip('-')}-{digest}"
    return label


def job_name(run: RunRecord, task: str) -> str:
    """The Kubernetes Job name of ``task`` in ``run``."""
    prefix = "" if run.run_id.startswith(f"{run.pipeline}-") else f"{run.pipeline}-"
    return dns1123_label(f"{prefix}{run.run_id}-{task}", _MAX_JOB_NAME)


@dataclass(frozen=True)
class Window:
    """Which runs are exported: the ``max_runs`` most recent, and with ``max_age`` (seconds)
    only those still active or ended within it."""

    max_runs: int = 50
    max_age: float | None = None

    def select(self, history: RunHistory, now: float) -> list[RunRecord]:
        runs = history.list_runs(limit=self.max_runs)
        if self.max_age is None:
            return runs
        since = now - self.max_age
        return [r for r in runs if r.finished_at is None or r.finished_at >= since]


@dataclass
class PodView:
    """One attempt of a job as a pod: when it was created, started and finished, its phase."""

    attempt: int
    created: float
    phase: str = "Pending"
    started: float | None = None
    finished: float | None = None


def pods_of(job: JobRecord) -> list[PodView]:
    """The pods of ``job``, one per attempt, from its transitions (see the module's doc)."""
    pods: dict[int, PodView] = {}
    for t in job.transitions:
        if t.state is JobState.RUNNING:
            pod = pods.setdefault(t.attempt, PodView(t.attempt, t.at))
            pod.phase, pod.started = "Running", t.at
        elif t.state is JobState.PENDING and t.reason in _WAITING_POD:
            pods.setdefault(t.attempt + 1, PodView(t.attempt + 1, t.at))
        else:  # a retry wait or a terminal state ends the attempt that ran...
            _end(pods.get(t.attempt), t.state, t.at)
            if t.state.is_terminal:  # ...and a terminal state a pod still waiting to start
                _end(pods.get(t.attempt + 1), t.state, t.at)
    return [pods[k] for k in sorted(pods)]


def _end(pod: PodView | None, state: JobState, at: float) -> None:
    if pod is not None and pod.finished is None:
        pod.phase = "Succeeded" if state is JobState.SUCCEEDED else "Failed"
        pod.finished = at


def phase_seconds(job: JobRecord, now: float) -> dict[JobState, float]:
    """Seconds ``job`` spent in each of :data:`TIMED_PHASES`, its active time counted until
    ``now`` and no further than its terminal transition."""
    end = job.transitions[-1].at if job.state.is_terminal and job.transitions else now
    spent = job.seconds_in_state(at=end)
    return {phase: spent.get(phase.value, 0.0) for phase in TIMED_PHASES}


def live_usage(job: JobRecord, started: float, slack: float = 5.0) -> ResourceUsage | None:
    """The usage of ``job``'s running attempt sampled now, added to its earlier attempts'
    totals: CPU and I/O summed over its process tree, the working set its RSS now. None if
    its pid is gone or is a process created at another time than the attempt (pid reuse)."""
    if job.pid is None:
        return None
    try:
        root = psutil.Process(job.pid)
        if abs(root.create_time() - started) > slack:
            return None
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    cpu, io_read, io_write, rss = 0.0, 0, 0, 0
    for proc in procs:
        try:
            with proc.oneshot():
                times = proc.cpu_times()
                cpu += times.user + times.system
                rss += proc.memory_info().rss
                if hasattr(proc, "io_counters"):
                    io = proc.io_counters()
                    io_read, io_write = io_read + io.read_bytes, io_write + io.write_bytes
        except psutil.Error:
            continue
    before = job.usage
    return ResourceUsage(
        cpu_seconds=before.cpu_seconds + cpu,
        peak_memory_bytes=rss,
        io_read_bytes=before.io_read_bytes + io_read,
        io_write_bytes=before.io_write_bytes + io_write,
    )


RequestsFor = Callable[[str, str], Resources | None]
"""``(pipeline, task) -> Resources`` the task requests, or None when unknown."""


def requests_from(pipelines: Iterable[Pipeline]) -> RequestsFor:
    """Look the requests of a task up in the definitions of ``pipelines``."""
    by_name = {p.name: p for p in pipelines}

    def requests(pipeline: str, task: str) -> Resources | None:
        found = by_name.get(pipeline)
        if found is None or task not in found.tasks:
            return None
        return found.tasks[task].step.resources

    return requests


class _Families:
    """The metric families of one scrape, filled run by run."""

    def __init__(self) -> None:
        pod, job = ["namespace", "pod"], ["namespace", "job_name"]
        container = [*pod, "container"]
        gauge, counter = GaugeMetricFamily, CounterMetricFamily
        self.phase = gauge(
            "kube_pod_status_phase", "The pods current phase.", labels=[*pod, "phase"]
        )
        self.created = gauge("kube_pod_created", "Unix creation timestamp.", labels=pod)
        self.start = gauge(
            "kube_pod_start_time", "Start time in unix timestamp for a pod.", labels=pod
        )
        self.completion = gauge(
            "kube_pod_completion_time", "Completion time in unix timestamp for a pod.", labels=pod
        )
        self.requests = gauge(
            "kube_pod_container_resource_requests",
            "The number of requested request resource by a container.",
            labels=[*container, "node", "resource", "unit"],
        )
        self.active = gauge(
            "kube_job_status_active", "The number of actively running pods.", labels=job
        )
        self.succeeded = gauge(
            "kube_job_status_succeeded",
            "The number of pods which reached Phase Succeeded.",
            labels=job,
        )
        self.failed = gauge(
            "kube_job_status_failed",
            "The number of pods which reached Phase Failed and the reason for failure.",
            labels=[*job, "reason"],
        )
        self.job_start = gauge(
            "kube_job_status_start_time",
            "StartTime represents time when the job was acknowledged by the Job Manager.",
            labels=job,
        )
        self.job_completion = gauge(
            "kube_job_status_completion_time",
            "CompletionTime represents time when the job was completed.",
            labels=job,
        )
        self.job_failed = gauge(
            "kube_job_failed", "The job has failed its execution.", labels=[*job, "condition"]
        )
        self.cpu = counter(
            "container_cpu_usage_seconds",
            "Cumulative cpu time consumed in seconds.",
            labels=container,
        )
        self.memory = gauge(
            "container_memory_working_set_bytes",
            "Working set of the job's process tree in bytes: now if running, else its peak.",
            labels=container,
        )
        self.fs_reads = counter(
            "container_fs_reads_bytes", "Cumulative count of bytes read.", labels=container
        )
        self.fs_writes = counter(
            "container_fs_writes_bytes", "Cumulative count of bytes written.", labels=container
        )
        self.phase_seconds = gauge(
            "perfml_job_phase_seconds",
            "Seconds the latest job of each pipeline step spent in each phase.",
            labels=["pipeline", "step", "phase"],
        )

    def all(self) -> list[Metric]:
        return list(vars(self).values())


class JobMetricsCollector(Collector):
    """A prometheus_client collector of the jobs of the recent runs in ``history``.

    ``capacity`` is the runner's (``kube_node_status_allocatable``); ``requests`` says what each
    task requests (``kube_pod_container_resource_requests``; see :func:`requests_from`).
    With ``live`` (the default), a Running job's usage is sampled now from its process tree
    (psutil), when its pid is still the process the runner started: the history has only the
    totals of the attempts that ended. That assumes the runner runs on this host.
    Register it in a registry of your own::

        registry = CollectorRegistry()
        registry.register(JobMetricsCollector(history, runner.capacity))
    """

    def __init__(
        self,
        history: RunHistory,
        capacity: Resources,
        *,
        requests: RequestsFor | None = None,
        window: Window | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        node: str | None = None,
        clock: Callable[[], float] = time.time,
        live: bool = True,
    ) -> None:
        self.history = history
        self.capacity = capacity
        self.requests = requests or (lambda pipeline, task: None)
        self.window = window or Window()
        self.namespace = namespace
        self.node = dns1123_label(node or socket.gethostname())
        self.clock = clock
        self.live = live

    def describe(self) -> Iterator[Metric]:
        """The families, without samples (so registering reads no database)."""
        yield from _Families().all()
        yield self._allocatable()

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        families = _Families()
        latest: dict[tuple[str, str], JobRecord] = {}
        for run in self.window.select(self.history, now):  # the most recent first
            for job in run.jobs.values():
                latest.setdefault((run.pipeline, job.task), job)
                self._add_job(families, run, job)
        for (pipeline, task), job in sorted(latest.items()):
            for phase, seconds in phase_seconds(job, now).items():
                families.phase_seconds.add_metric([pipeline, task, phase.value], seconds)
        yield from families.all()
        yield self._allocatable()

    def _allocatable(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "kube_node_status_allocatable",
            "The allocatable for different resources of a node that are available for scheduling.",
            labels=["node", "resource", "unit"],
        )
        family.add_metric([self.node, "cpu", "core"], float(self.capacity.cpu))
        family.add_metric([self.node, "memory", "byte"], float(self.capacity.memory_bytes))
        return family

    def _add_job(self, f: _Families, run: RunRecord, job: JobRecord) -> None:
        pods = pods_of(job)
        if not pods:  # waiting for its inputs, cached, or cancelled before it could start
            return
        name = job_name(run, job.task)
        labels = [self.namespace, name]
        count = {phase: sum(p.phase == phase for p in pods) for phase in POD_PHASES}
        f.active.add_metric(labels, count["Pending"] + count["Running"])
        f.succeeded.add_metric(labels, count["Succeeded"])
        failed_for = ""
        if job.state is JobState.FAILED and job.reason is not None:
            failed_for = JOB_FAILURE_REASONS.get(job.reason, "")
        f.failed.add_metric([*labels, failed_for], count["Failed"])
        f.job_start.add_metric(labels, pods[0].created)
        if job.state is JobState.SUCCEEDED:
            f.job_completion.add_metric(labels, job.transitions[-1].at)
        if job.state is JobState.FAILED:
            for condition, value in (("true", 1.0), ("false", 0.0), ("unknown", 0.0)):
                f.job_failed.add_metric([*labels, condition], value)
        self._add_pods(f, run, job, name, pods)
        self._add_usage(f, job, name, pods)

    def _add_pods(
        self, f: _Families, run: RunRecord, job: JobRecord, name: str, pods: list[PodView]
    ) -> None:
        wanted = self.requests(run.pipeline, job.task)
        for pod in pods:
            pod_labels = [self.namespace, f"{name}-{pod.attempt}"]
            for phase in POD_PHASES:
                f.phase.add_metric([*pod_labels, phase], float(pod.phase == phase))
            f.created.add_metric(pod_labels, pod.created)
            if pod.started is not None:
                f.start.add_metric(pod_labels, pod.started)
            if pod.finished is not None:
                f.completion.add_metric(pod_labels, pod.finished)
            if wanted is not None:
                node = self.node if pod.started is not None else ""  # unscheduled: no node
                container = [*pod_labels, job.task, node]
                f.requests.add_metric([*container, "cpu", "core"], float(wanted.cpu))
                f.requests.add_metric([*container, "memory", "byte"], float(wanted.memory_bytes))

    def _add_usage(self, f: _Families, job: JobRecord, name: str, pods: list[PodView]) -> None:
        ran = [pod for pod in pods if pod.started is not None]
        if not ran:
            return
        last = ran[-1]  # the totals over all attempts go on the latest pod that ran
        usage = job.usage
        if self.live and last.phase == "Running" and last.started is not None:
            usage = live_usage(job, last.started) or usage
        container = [self.namespace, f"{name}-{last.attempt}", job.task]
        f.cpu.add_metric(container, usage.cpu_seconds)
        f.memory.add_metric(container, float(usage.peak_memory_bytes))
        f.fs_reads.add_metric(container, float(usage.io_read_bytes))
        f.fs_writes.add_metric(container, float(usage.io_write_bytes))
