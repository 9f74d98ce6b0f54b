"""The local runner: each attempt of each task is a job in its own process.

The runner is a plain state machine over :class:`~perfml.pipelines.states.JobRecord`; every
transition is written to the :class:`~perfml.pipelines.history.RunHistory` at once. A Pending
job starts when its upstream tasks succeeded, its preconditions hold (else it stays Pending,
``PreconditionMissing``, re-checked every tick), its backoff has passed and the runner has
room for its CPUs and memory (else ``Unschedulable``). A Running job is sampled with psutil
every tick: over its memory limit it is killed (``OOMKilled``, enforced by sampling the tree's
RSS, not by RLIMIT_AS, so the limit means what Kubernetes means by it: the working set);
past its timeout its whole tree is killed (``DeadlineExceeded``). Failed attempts are retried
after ``backoff * 2**(n-1)`` seconds until ``retries`` are spent (``BackoffLimitExceeded``),
except a permanent failure reported by the worker (a refused credential, a usage error), which
fails the job at once (``PermanentError``, naming the error). On every heartbeat the usage of
the Running jobs is written to the history too, so that live CPU and memory are visible.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

from perfml.pipelines.cache import StepCache
from perfml.pipelines.dsl import Param, Part, Pipeline, Ref, Resources, Task
from perfml.pipelines.errors import ExceedsCapacityError, MissingInputError
from perfml.pipelines.history import RunHistory
from perfml.pipelines.launcher import Launcher, WorkerProcess, default_launcher, exit_usage
from perfml.pipelines.parts import PartsSource, check_parts, parts_spec
from perfml.pipelines.processes import TreeSampler, kill_tree, log_tail
from perfml.pipelines.states import JobRecord, JobState, Reason, RunRecord
from perfml.pipelines.worker import read_failure, write_spec


@dataclass
class _Attempt:
    process: WorkerProcess
    deadline: float | None
    next_sample: float = 0.0


SAMPLE_INTERVAL = 0.05
"""Seconds between two samples of a job's process tree (memory limit, usage)."""


@dataclass
class _RunState:
    run: RunRecord
    pipeline: Pipeline
    params: dict[str, Any]
    root: Path
    stored: dict[str, int] = field(default_factory=dict)
    attempts: dict[str, _Attempt] = field(default_factory=dict)
    samplers: dict[str, TreeSampler] = field(default_factory=dict)
    retry_at: dict[str, float] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    moves: int = 0
    """State changes so far: the loop acts again at once after a change, sleeps otherwise."""


class LocalRunner:
    """Runs pipelines on this machine within ``capacity``, recording into ``history``.

    ``parts`` is where the jobs open the parts of the workspace that tasks bound to a
    :class:`~perfml.pipelines.dsl.Part` take (see :mod:`perfml.pipelines.parts`).

    Starting a runner first marks the jobs of runners that died ``Orphaned``. ``run`` blocks
    until the run ends; ``cancel`` (from another thread, or ``history.request_cancel`` from
    another process) stops it: running jobs are killed, pending ones never start.
    """

    def __init__(
        self,
        history: RunHistory,
        workspace: Path,
        capacity: Resources | None = None,
        *,
        poll_interval: float = 0.01,
        heartbeat_interval: float = 0.5,
        orphan_after: float = 30.0,
        environ: Mapping[str, str] | None = None,
        launcher: Launcher | None = None,
        parts: PartsSource | None = None,
    ) -> None:
        self.history = history
        self.parts = parts
        self.launcher = launcher or default_launcher()
        weakref.finalize(self, self.launcher.close)
        self.workspace = workspace
        self.capacity = capacity or Resources(
            cpu=psutil.cpu_count() or 1, memory=psutil.virtual_memory().total
        )
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.environ = environ
        self.cache = StepCache(workspace / "cache")
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()
        self.orphaned = history.recover_orphans(stale_after=orphan_after)

    def cancel(self, run_id: str) -> None:
        self.history.request_cancel(run_id)
        with self._lock:
            self._cancelled.add(run_id)

    def run(
        self,
        pipeline: Pipeline,
        params: Mapping[str, Any] | None = None,
        run_id: str | None = None,
    ) -> RunRecord:
        """Run ``pipeline`` to the end and return its final record."""
        state = self._start(pipeline, {**pipeline.defaults, **(params or {})}, run_id)
        self._drive(pipeline, state)
        return self._finish(state)

    def task_value(self, run: RunRecord, task: str) -> Any:
        """The return value of ``run``'s succeeded ``task`` (what the step returned)."""
        result = Path(run.workspace) / task / "result.json"
        return json.loads(result.read_text())["value"]

    def close(self) -> None:
        """Stop the worker launcher (the fork server); a runner also stops it when collected."""
        self.launcher.close()

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drive(self, pipeline: Pipeline, state: _RunState) -> None:
        next_beat = 0.0
        moves_seen = -1
        while not all(j.state.is_terminal for j in state.run.jobs.values()):
            now = time.time()
            if now >= next_beat:
                cancel = self.history.heartbeat(state.run.run_id)
                next_beat = now + self.heartbeat_interval
                with self._lock:
                    cancel = cancel or state.run.run_id in self._cancelled
                if cancel:
                    self._cancel_all(state)
                    break
                self._record_usage(state)
            for name in pipeline.order:
                if state.run.jobs[name].state is JobState.PENDING:
                    self._schedule(state, pipeline.tasks[name])
            for name in list(state.attempts):
                self._watch(state, pipeline.tasks[name])
            if state.moves == moves_seen:  # nothing changed: wait; else act on it at once
                time.sleep(self.poll_interval)
            moves_seen = state.moves

    # -- the run ------------------------------------------------------------------------------

    def _start(self, pipeline: Pipeline, params: dict[str, Any], run_id: str | None) -> _RunState:
        check_parts(pipeline, self.parts)
        for task in pipeline.tasks.values():
            for input_name, binding in task.inputs.items():
                if isinstance(binding, Param) and binding.name not in params:
                    raise MissingInputError(
                        pipeline.name,
                        task.name,
                        input_name,
                        f"run parameter {binding.name!r} not given",
                    )
            wanted = task.step.resources
            if wanted.cpu > self.capacity.cpu:
                raise ExceedsCapacityError(task.name, "cpu", wanted.cpu, self.capacity.cpu)
            if wanted.memory_bytes > self.capacity.memory_bytes:
                raise ExceedsCapacityError(
                    task.name, "memory", wanted.memory_bytes, self.capacity.memory_bytes
                )
        run_id = run_id or f"{pipeline.name}-{uuid.uuid4().hex[:12]}"
        root = self.workspace / "runs" / run_id
        now = time.time()
        jobs = {
            name: JobRecord.new(run_id, name, pipeline.tasks[name].step.name, at=now)
            for name in pipeline.order
        }
        jobs = {n: replace(j, log_path=str(root / n / "job.log")) for n, j in jobs.items()}
        run = RunRecord(
            run_id,
            pipeline.name,
            JobState.RUNNING,
            params=params,
            workspace=str(root),
            created_at=now,
            jobs=jobs,
        )
        self.history.start_run(run, os.getpid())
        stored = {name: len(job.transitions) for name, job in jobs.items()}
        return _RunState(run, pipeline, params, root, stored)

    def _finish(self, state: _RunState) -> RunRecord:
        jobs = state.run.jobs.values()
        if all(j.state is JobState.SUCCEEDED for j in jobs):
            run = state.run.with_state(JobState.SUCCEEDED, Reason.COMPLETED)
        elif any(j.reason is Reason.CANCELLED for j in jobs):
            run = state.run.with_state(JobState.CANCELLED, Reason.CANCELLED, "cancelled")
        else:
            failed = next(j for j in jobs if j.state is JobState.FAILED)
            run = state.run.with_state(
                JobState.FAILED, failed.reason, f"task {failed.task!r}: {failed.message}"
            )
        self.history.save_run(run)
        state.run = run
        return run

    def _update(self, state: _RunState, job: JobRecord) -> JobRecord:
        """Record ``job`` (row and new transitions) and keep it as the current record."""
        self.history.save_job(job, state.stored[job.task])
        state.stored[job.task] = len(job.transitions)
        state.run = state.run.with_job(job)
        return job

    def _move(
        self,
        state: _RunState,
        task: str,
        to: JobState,
        reason: Reason | None,
        message: str = "",
        **changes: Any,
    ) -> JobRecord:
        job = replace(state.run.jobs[task], **changes) if changes else state.run.jobs[task]
        state.moves += 1
        return self._update(state, job.with_state(to, reason, message))

    def _cancel_all(self, state: _RunState) -> None:
        for name, job in state.run.jobs.items():
            if job.state.is_terminal:
                continue
            if name in state.attempts:
                self._stop(state, name)
            self._move(state, name, JobState.CANCELLED, Reason.CANCELLED, "run cancelled")

    # -- scheduling ---------------------------------------------------------------------------

    def _paths(self, state: _RunState, task: str) -> Path:
        return state.root / task

    def _schedule(self, state: _RunState, task: Task) -> None:
        job = state.run.jobs[task.name]
        upstream = [state.run.jobs[u] for u in task.upstream()]
        broken = [u for u in upstream if u.state.is_terminal and u.state is not JobState.SUCCEEDED]
        if broken:
            self._move(
                state,
                task.name,
                JobState.CANCELLED,
                Reason.UPSTREAM_FAILED,
                f"upstream task {broken[0].task!r} {broken[0].state.value}",
            )
            return
        if any(u.state is not JobState.SUCCEEDED for u in upstream):
            return
        if state.retry_at.get(task.name, 0.0) > time.time():
            return
        missing = task.step.needs.missing(self.environ if self.environ is not None else os.environ)
        if missing:
            message = "missing " + ", ".join(missing)
            if job.reason is not Reason.PRECONDITION_MISSING or job.message != message:
                self._move(state, task.name, JobState.PENDING, Reason.PRECONDITION_MISSING, message)
            return
        values, paths, parts = self._inputs(state, task)
        outputs = {o: self._paths(state, task.name) / "outputs" / o for o in task.step.outputs}
        parted = {**values, **{name: f"part:{part}" for name, part in parts.items()}}
        key = StepCache.key(task.step, parted, paths) if task.step.cache else ""
        if key:
            hit, value = self.cache.restore(key, outputs)
            if hit:
                state.values[task.name] = value
                self._move(
                    state,
                    task.name,
                    JobState.SUCCEEDED,
                    Reason.CACHED,
                    f"outputs reused from cache {key[:12]}",
                    cache_key=key,
                )
                return
        free_cpu, free_memory = self._free(state)
        wanted = task.step.resources
        if wanted.cpu > free_cpu or wanted.memory_bytes > free_memory:
            message = (
                f"requests cpu={wanted.cpu:g} memory={wanted.memory}; free "
                f"cpu={free_cpu:g} memory={free_memory}"
            )
            if job.reason is not Reason.UNSCHEDULABLE:
                self._move(state, task.name, JobState.PENDING, Reason.UNSCHEDULABLE, message)
            return
        self._launch(state, task, values, paths, parts, outputs, key)

    def _free(self, state: _RunState) -> tuple[float, int]:
        running = [state.pipeline.tasks[name].step.resources for name in state.attempts]
        cpu = self.capacity.cpu - sum(r.cpu for r in running)
        memory = self.capacity.memory_bytes - sum(r.memory_bytes for r in running)
        return cpu, memory

    def _inputs(
        self, state: _RunState, task: Task
    ) -> tuple[dict[str, Any], dict[str, Path], dict[str, str]]:
        """The task's inputs by value, by path (artifacts) and by part (input → part name)."""
        values: dict[str, Any] = {}
        paths: dict[str, Path] = {}
        parts: dict[str, str] = {}
        for name, binding in task.inputs.items():
            if isinstance(binding, Part):
                parts[name] = binding.name
            elif isinstance(binding, Param):
                values[name] = state.params[binding.name]
            elif isinstance(binding, Ref):
                if binding.output is None:
                    values[name] = state.values[binding.task]
                else:
                    paths[name] = self._paths(state, binding.task) / "outputs" / binding.output
            else:
                values[name] = binding
        return values, paths, parts

    def _launch(
        self,
        state: _RunState,
        task: Task,
        values: dict[str, Any],
        paths: dict[str, Path],
        parts: dict[str, str],
        outputs: dict[str, Path],
        key: str,
    ) -> None:
        job = state.run.jobs[task.name]
        attempt = job.attempt + 1
        folder = self._paths(state, task.name)
        folder.mkdir(parents=True, exist_ok=True)
        spec_path = write_spec(
            folder / f"attempt-{attempt}.json",
            task.step.fn,
            values,
            paths,
            outputs,
            folder / "result.json",
            parts=parts_spec(self.parts, task),
        )
        env = {**os.environ, **(self.environ or {}), "PYTHONUNBUFFERED": "1"}
        log_path = Path(job.log_path)
        with log_path.open("ab") as log:
            log.write(f"--- attempt {attempt} at {time.time():.3f}\n".encode())
        process = self.launcher.start(spec_path, log_path, env, folder)
        timeout = task.step.timeout
        state.attempts[task.name] = _Attempt(
            process, None if timeout is None else time.time() + timeout
        )
        state.samplers.setdefault(task.name, TreeSampler())
        self._move(
            state,
            task.name,
            JobState.RUNNING,
            None,
            f"attempt {attempt}, pid {process.pid}",
            attempt=attempt,
            pid=process.pid,
            cache_key=key,
        )

    # -- watching -----------------------------------------------------------------------------

    def _stop(self, state: _RunState, task: str) -> int | None:
        """Kill the task's process tree; returns its exit code."""
        attempt = state.attempts.pop(task)
        state.samplers[task].sample(attempt.process.pid)
        kill_tree(attempt.process.pid, grace=0.5)
        code = attempt.process.wait()
        final = exit_usage(attempt.process)
        if final is not None:
            state.samplers[task].account(*final)
        return code

    def _watch(self, state: _RunState, task: Task) -> None:
        attempt = state.attempts[task.name]
        limit = task.step.resources.memory_bytes
        code = attempt.process.poll()
        rss = 0
        now = time.time()
        if code is None and now >= attempt.next_sample:  # sampling a tree costs milliseconds
            rss = state.samplers[task.name].sample(attempt.process.pid)
            attempt.next_sample = now + SAMPLE_INTERVAL
        if code is None and rss > limit:
            code = self._stop(state, task.name)
            reason, message = (
                Reason.OOM_KILLED,
                (
                    f"memory {rss} bytes over the limit {task.step.resources.memory} "
                    f"({limit} bytes); killed"
                ),
            )
        elif code is None and attempt.deadline is not None and time.time() > attempt.deadline:
            code = self._stop(state, task.name)
            reason, message = (
                Reason.DEADLINE_EXCEEDED,
                (
                    f"still running after its timeout of {task.step.timeout:g} s; "
                    "process tree killed"
                ),
            )
        elif code is None:
            return
        else:
            state.attempts.pop(task.name)
            final = exit_usage(attempt.process)
            if final is not None:
                state.samplers[task.name].account(*final)
            if code == 0:
                self._succeed(state, task)
                return
            failure = read_failure(self._paths(state, task.name) / "result.json")
            if failure is not None:
                self._fail_permanently(state, task, failure, code)
                return
            tail = log_tail(Path(state.run.jobs[task.name].log_path))
            reason, message = Reason.ERROR, f"exit code {code}; last log lines:\n{tail}"
        self._fail(state, task, reason, message, code)

    def _record_usage(self, state: _RunState) -> None:
        """Write the usage of the Running jobs, when it changed since it was last written."""
        for name in state.attempts:
            job = state.run.jobs[name]
            usage = state.samplers[name].usage()
            if usage != job.usage:
                self._update(state, replace(job, usage=usage))

    def _fail_permanently(
        self, state: _RunState, task: Task, failure: dict[str, str], code: int
    ) -> None:
        job = state.run.jobs[task.name]
        kind = failure.get("type", "error").rsplit(".", 1)[-1]
        message = (
            f"{kind}: {failure.get('message', '')} (a permanent failure, not retried; "
            f"attempt {job.attempt} of {task.step.retries + 1}, exit code {code})"
        )
        self._move(
            state,
            task.name,
            JobState.FAILED,
            Reason.PERMANENT_ERROR,
            message,
            exit_code=code,
            usage=state.samplers[task.name].usage(),
        )

    def _succeed(self, state: _RunState, task: Task) -> None:
        folder = self._paths(state, task.name)
        value = json.loads((folder / "result.json").read_text())["value"]
        state.values[task.name] = value
        job = state.run.jobs[task.name]
        if job.cache_key:
            outputs = {o: folder / "outputs" / o for o in task.step.outputs}
            self.cache.store(job.cache_key, outputs, value)
        self._move(
            state,
            task.name,
            JobState.SUCCEEDED,
            Reason.COMPLETED,
            f"attempt {job.attempt} succeeded",
            exit_code=0,
            usage=state.samplers[task.name].usage(),
        )

    def _fail(
        self, state: _RunState, task: Task, reason: Reason, message: str, code: int | None
    ) -> None:
        job = state.run.jobs[task.name]
        usage = state.samplers[task.name].usage()
        retries = task.step.retries
        if job.attempt <= retries:
            delay = task.step.backoff * 2 ** (job.attempt - 1)
            state.retry_at[task.name] = time.time() + delay
            self._move(
                state,
                task.name,
                JobState.PENDING,
                Reason.BACKOFF_WAIT,
                f"attempt {job.attempt} failed ({reason.value}: {message}); "
                f"retrying in {delay:g} s",
                exit_code=code,
                usage=usage,
            )
        elif retries:
            self._move(
                state,
                task.name,
                JobState.FAILED,
                Reason.BACKOFF_LIMIT_EXCEEDED,
                f"{job.attempt} attempts failed, the last with {reason.value}: {message}",
                exit_code=code,
                usage=usage,
            )
        else:
            self._move(
                state, task.name, JobState.FAILED, reason, message, exit_code=code, usage=usage
            )
