"""Job and run states, the reasons behind them, and the immutable records that carry them.

The states are Kubernetes pod phases, so that one dashboard reads a local run and a cluster
alike. A job is one task of a run; each retry is a new attempt of the same job::

    Pending ──► Running ──► Succeeded
       ▲           │  └───► Failed        (reason: Error, PermanentError, DeadlineExceeded,
       └───────────┘                        OOMKilled, BackoffLimitExceeded, Orphaned)
     (retry after backoff)
    Pending / Running ──► Cancelled

A Pending job may carry a reason that says why it does not start yet: ``Unschedulable`` (the
runner's capacity is full), ``PreconditionMissing`` (a declared path or secret is absent; the
job stays Pending and the runner re-checks), ``BackoffWait`` (waiting to retry). A job that
failed with a permanent error (a refused credential, a usage error) is Failed with
``PermanentError`` after that one attempt, whatever retries it declares.

Records are immutable; :meth:`JobRecord.with_state` returns a new record with the transition
appended, so the time spent in each state is always derivable:

>>> job = JobRecord.new("run1", "train", "train", at=0.0)
>>> job = job.with_state(JobState.RUNNING, at=2.0).with_state(JobState.SUCCEEDED, at=5.0)
>>> job.state.is_terminal, job.seconds_in_state(at=9.0)
(True, {'Pending': 2.0, 'Running': 3.0, 'Succeeded': 4.0})
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Self


class JobState(StrEnum):
    """The phase of a job or of a run."""

    PENDING = "Pending"
    """Accepted, not started: waiting for its inputs, capacity, a precondition or a retry."""
    RUNNING = "Running"
    """Its process is alive."""
    SUCCEEDED = "Succeeded"
    """Ended with exit code 0 (or was satisfied from the cache); its outputs exist."""
    FAILED = "Failed"
    """Ended without its outputs; the reason says why."""
    CANCELLED = "Cancelled"
    """Stopped on request, or never run because a task it needs did not succeed."""

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def is_active(self) -> bool:
        return self in ACTIVE


TERMINAL: frozenset[JobState] = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
"""States a job never leaves."""
ACTIVE: frozenset[JobState] = frozenset({JobState.PENDING, JobState.RUNNING})
"""States a live runner must be watching; together with TERMINAL they cover every state."""


class Reason(StrEnum):
    """Why a job is in its state (the Kubernetes condition reasons where there is one)."""

    UNSCHEDULABLE = "Unschedulable"
    PRECONDITION_MISSING = "PreconditionMissing"
    BACKOFF_WAIT = "BackoffWait"
    WAITING_FOR_INPUTS = "WaitingForInputs"
    CACHED = "Cached"
    COMPLETED = "Completed"
    ERROR = "Error"
    PERMANENT_ERROR = "PermanentError"
    """The step raised an error no retry can fix (see :func:`perfml.errors.is_permanent`)."""
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    OOM_KILLED = "OOMKilled"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    CANCELLED = "Cancelled"
    UPSTREAM_FAILED = "UpstreamFailed"
    ORPHANED = "Orphaned"


@dataclass(frozen=True)
class Transition:
    """A job (or run) entered ``state`` at ``at`` (Unix seconds)."""

    state: JobState
    at: float
    reason: Reason | None = None
    message: str = ""
    attempt: int = 0


@dataclass(frozen=True)
class ResourceUsage:
    """What a job's process tree used, sampled with psutil (totals over all attempts)."""

    cpu_seconds: float = 0.0
    peak_memory_bytes: int = 0
    """Peak resident set size (the working set) of the process tree."""
    io_read_bytes: int = 0
    io_write_bytes: int = 0


def _seconds_in_state(transitions: tuple[Transition, ...], at: float | None) -> dict[str, float]:
    out: dict[str, float] = {}
    end = time.time() if at is None else at
    for this, following in zip(transitions, (*transitions[1:], None), strict=True):
        until = end if following is None else following.at
        out[this.state.value] = out.get(this.state.value, 0.0) + max(0.0, until - this.at)
    return out


@dataclass(frozen=True)
class JobRecord:
    """One task of one run: its state, why, its attempts, exit code, usage and history."""

    run_id: str
    task: str
    step: str
    state: JobState
    reason: Reason | None = None
    message: str = ""
    attempt: int = 0
    """The number of attempts started so far."""
    exit_code: int | None = None
    pid: int | None = None
    usage: ResourceUsage = field(default_factory=ResourceUsage)
    log_path: str = ""
    cache_key: str = ""
    transitions: tuple[Transition, ...] = ()

    @classmethod
    def new(cls, run_id: str, task: str, step: str, at: float | None = None) -> JobRecord:
        now = time.time() if at is None else at
        return cls(
            run_id,
            task,
            step,
            JobState.PENDING,
            Reason.WAITING_FOR_INPUTS,
            transitions=(Transition(JobState.PENDING, now, Reason.WAITING_FOR_INPUTS),),
        )

    def with_state(
        self,
        state: JobState,
        reason: Reason | None = None,
        message: str = "",
        at: float | None = None,
    ) -> Self:
        """This record in ``state``, the transition appended (a new reason in the same state
        is a transition too: time Pending/Unschedulable and Pending/PreconditionMissing
        are told apart)."""
        now = time.time() if at is None else at
        step = Transition(state, now, reason, message, self.attempt)
        return replace(
            self, state=state, reason=reason, message=message, transitions=(*self.transitions, step)
        )

    def seconds_in_state(self, at: float | None = None) -> dict[str, float]:
        """Seconds spent in each state so far (the current one counted until ``at``/now)."""
        return _seconds_in_state(self.transitions, at)

    def running_seconds(self, at: float | None = None) -> float:
        """Seconds spent Running so far, over every attempt."""
        return self.seconds_in_state(at).get(JobState.RUNNING.value, 0.0)


@dataclass(frozen=True)
class RunRecord:
    """One run of a pipeline: its state and the state of each of its jobs, by task name."""

    run_id: str
    pipeline: str
    state: JobState
    reason: Reason | None = None
    message: str = ""
    params: dict[str, object] = field(default_factory=dict)
    workspace: str = ""
    created_at: float = 0.0
    finished_at: float | None = None
    jobs: dict[str, JobRecord] = field(default_factory=dict)

    def with_state(
        self,
        state: JobState,
        reason: Reason | None = None,
        message: str = "",
        at: float | None = None,
    ) -> Self:
        now = time.time() if at is None else at
        return replace(
            self,
            state=state,
            reason=reason,
            message=message,
            finished_at=now if state.is_terminal else None,
        )

    def with_job(self, job: JobRecord) -> Self:
        return replace(self, jobs={**self.jobs, job.task: job})

    def seconds(self, at: float | None = None) -> float:
        """From its creation to its end (or ``at``/now while it runs)."""
        end = self.finished_at or (time.time() if at is None else at)
        return max(0.0, end - self.created_at)
