"""The run history: runs, jobs and their state transitions, in the metadata database.

Tables of their own in the registry's database (SQLite by default, PostgreSQL by URL), every
change one transaction. A run row names the runner that owns it (host, pid, the pid's start
time) and a heartbeat the runner refreshes; :meth:`RunHistory.recover_orphans` marks the
active jobs of a runner that is gone Failed (``Orphaned``) and kills their worker processes,
so no job stays Running forever.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from typing import Any

import psutil
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
)
from sqlalchemy.engine import Connection

from perfml.metadata import TableOwner, Tables
from perfml.pipelines.errors import RunActiveError, RunNotFoundError
from perfml.pipelines.processes import kill_tree
from perfml.pipelines.states import (
    ACTIVE,
    JobRecord,
    JobState,
    Reason,
    ResourceUsage,
    RunRecord,
    Transition,
)

metadata = MetaData()

runs = Table(
    "pipeline_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("pipeline", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", String(32)),
    Column("message", Text, nullable=False, default=""),
    Column("params", JSON, nullable=False),
    Column("workspace", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("runner_host", String(255), nullable=False),
    Column("runner_pid", Integer, nullable=False),
    Column("runner_started", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Index("ix_pipeline_runs_state", "state"),
)

jobs = Table(
    "pipeline_jobs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("task", String(64), primary_key=True),
    Column("step", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", String(32)),
    Column("message", Text, nullable=False, default=""),
    Column("attempt", Integer, nullable=False),
    Column("exit_code", Integer),
    Column("pid", Integer),
    Column("pid_started", Float),
    Column("cpu_seconds", Float, nullable=False),
    Column("peak_memory_bytes", BigInteger, nullable=False),
    Column("io_read_bytes", BigInteger, nullable=False),
    Column("io_write_bytes", BigInteger, nullable=False),
    Column("log_path", Text, nullable=False),
    Column("cache_key", String(64), nullable=False),
)

transitions = Table(
    "pipeline_transitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False),
    Column("task", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", String(32)),
    Column("message", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_pipeline_transitions_job", "run_id", "task", "seq"),
)

TABLES = Tables("history", 1, metadata)
"""The tables of history, at schema version 1."""


def _process_started(pid: int | None) -> float | None:
    """The start time of process ``pid`` if it is alive (a pid alone may have been reused)."""
    if pid is None:
        return None
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


class RunHistory(TableOwner):
    """Runs, jobs and transitions of pipelines, in the metadata database."""

    tables = TABLES

    # -- writes, each one transaction -------------------------------------------------------

    def start_run(self, run: RunRecord, runner_pid: int) -> None:
        """Record a new run and its jobs, owned by the runner process ``runner_pid``."""
        now = time.time()
        with self.write() as con:
            con.execute(
                runs.insert().values(
                    id=run.run_id,
                    pipeline=run.pipeline,
                    state=run.state.value,
                    reason=run.reason,
                    message=run.message,
                    params=run.params,
                    workspace=run.workspace,
                    created_at=run.created_at,
                    finished_at=None,
                    runner_host=socket.gethostname(),
                    runner_pid=runner_pid,
                    runner_started=_process_started(runner_pid) or now,
                    heartbeat_at=now,
                    cancel_requested=False,
                )
            )
            for job in run.jobs.values():
                con.execute(
                    jobs.insert().values(**self._job_row(job), run_id=job.run_id, task=job.task)
                )
                self._insert_transitions(con, job, job.transitions, 0)

    def save_run(self, run: RunRecord) -> None:
        with self.write() as con:
            con.execute(
                runs.update()
                .where(runs.c.id == run.run_id)
                .values(
                    state=run.state.value,
                    reason=run.reason,
                    message=run.message,
                    finished_at=run.finished_at,
                    heartbeat_at=time.time(),
                )
            )

    def save_job(self, job: JobRecord, stored_transitions: int) -> None:
        """Write ``job``'s row and the transitions it has beyond the first
        ``stored_transitions`` already recorded, in one transaction."""
        with self.write() as con:
            con.execute(
                jobs.update()
                .where(jobs.c.run_id == job.run_id, jobs.c.task == job.task)
                .values(**self._job_row(job))
            )
            new = job.transitions[stored_transitions:]
            self._insert_transitions(con, job, new, stored_transitions)

    def heartbeat(self, run_id: str) -> bool:
        """Refresh the run's heartbeat; says whether a cancel was requested meanwhile."""
        with self.write() as con:
            con.execute(runs.update().where(runs.c.id == run_id).values(heartbeat_at=time.time()))
            return bool(
                con.execute(select(runs.c.cancel_requested).where(runs.c.id == run_id)).scalar()
            )

    def request_cancel(self, run_id: str) -> None:
        """Ask the runner that owns the run to cancel it (from any process)."""
        with self.write() as con:
            found = con.execute(
                runs.update().where(runs.c.id == run_id).values(cancel_requested=True)
            )
            if found.rowcount == 0:
                raise RunNotFoundError(run_id)

    def delete_run(self, run_id: str) -> RunRecord:
        """Forget an ended run: its row, its jobs and their transitions (its job metrics, and
        the alerts on them, go with it). A run still active is refused
        (:class:`RunActiveError`); returns the run as it was."""
        run = self.get_run(run_id)
        if not run.state.is_terminal:
            raise RunActiveError(run_id, run.state.value)
        with self.write() as con:
            con.execute(transitions.delete().where(transitions.c.run_id == run_id))
            con.execute(jobs.delete().where(jobs.c.run_id == run_id))
            con.execute(runs.delete().where(runs.c.id == run_id))
        return run

    def recover_orphans(self, stale_after: float = 30.0) -> list[JobRecord]:
        """Mark Failed (``Orphaned``) the active jobs of runs whose runner is dead: on this
        host its pid is gone (or now another process), elsewhere its heartbeat is older than
        ``stale_after`` seconds. Their worker processes, if still alive, are killed."""
        now, host = time.time(), socket.gethostname()
        with self.engine.connect() as con:
            active = (
                con.execute(select(runs).where(runs.c.state.in_([s.value for s in ACTIVE])))
                .mappings()
                .all()
            )
        orphaned: list[JobRecord] = []
        for row in active:
            if row["runner_host"] == host:
                started = _process_started(row["runner_pid"])
                dead = started is None or abs(started - row["runner_started"]) > 1.0
            else:
                dead = now - row["heartbeat_at"] > stale_after
            if dead:
                orphaned.extend(self._orphan_run(row["id"], row["runner_pid"]))
        return orphaned

    def _orphan_run(self, run_id: str, runner_pid: int) -> list[JobRecord]:
        run = self.get_run(run_id)
        message = f"runner pid {runner_pid} died while the job was active"
        orphaned = []
        with self.write() as con:
            for job in run.jobs.values():
                if not job.state.is_active:
                    continue
                if job.pid is not None and job.state is JobState.RUNNING:
                    started = con.execute(
                        select(jobs.c.pid_started).where(
                            jobs.c.run_id == run_id, jobs.c.task == job.task
                        )
                    ).scalar()
                    if started is not None and _process_started(job.pid) == started:
                        kill_tree(job.pid, grace=0.5)
                failed = job.with_state(JobState.FAILED, Reason.ORPHANED, message)
                con.execute(
                    jobs.update()
                    .where(jobs.c.run_id == run_id, jobs.c.task == job.task)
                    .values(**self._job_row(failed))
                )
                self._insert_transitions(con, failed, failed.transitions[-1:], len(job.transitions))
                orphaned.append(failed)
            con.execute(
                runs.update()
                .where(runs.c.id == run_id)
                .values(
                    state=JobState.FAILED.value,
                    reason=Reason.ORPHANED.value,
                    message=message,
                    finished_at=time.time(),
                )
            )
        return orphaned

    @staticmethod
    def _job_row(job: JobRecord) -> dict[str, Any]:
        return {
            "step": job.step,
            "state": job.state.value,
            "reason": job.reason,
            "message": job.message,
            "attempt": job.attempt,
            "exit_code": job.exit_code,
            "pid": job.pid,
            "pid_started": _process_started(job.pid),
            "cpu_seconds": job.usage.cpu_seconds,
            "peak_memory_bytes": job.usage.peak_memory_bytes,
            "io_read_bytes": job.usage.io_read_bytes,
            "io_write_bytes": job.usage.io_write_bytes,
            "log_path": job.log_path,
            "cache_key": job.cache_key,
        }

    @staticmethod
    def _insert_transitions(
        con: Connection, job: JobRecord, new: Iterable[Transition], first_seq: int
    ) -> None:
        rows = [
            {
                "run_id": job.run_id,
                "task": job.task,
                "seq": first_seq + i,
                "state": t.state.value,
                "reason": t.reason,
                "message": t.message,
                "attempt": t.attempt,
                "at": t.at,
            }
            for i, t in enumerate(new)
        ]
        if rows:
            con.execute(transitions.insert(), rows)

    # -- reads --------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRecord:
        """The run with its jobs and every transition."""
        with self.engine.connect() as con:
            row = con.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
            if row is None:
                raise RunNotFoundError(run_id)
            job_rows = con.execute(select(jobs).where(jobs.c.run_id == run_id)).mappings().all()
            steps = (
                con.execute(
                    select(transitions)
                    .where(transitions.c.run_id == run_id)
                    .order_by(transitions.c.task, transitions.c.seq)
                )
                .mappings()
                .all()
            )
        by_task: dict[str, list[Transition]] = {}
        for t in steps:
            by_task.setdefault(t["task"], []).append(
                Transition(
                    JobState(t["state"]),
                    t["at"],
                    Reason(t["reason"]) if t["reason"] else None,
                    t["message"],
                    t["attempt"],
                )
            )
        records = {
            j["task"]: JobRecord(
                run_id=run_id,
                task=j["task"],
                step=j["step"],
                state=JobState(j["state"]),
                reason=Reason(j["reason"]) if j["reason"] else None,
                message=j["message"],
                attempt=j["attempt"],
                exit_code=j["exit_code"],
                pid=j["pid"],
                usage=ResourceUsage(
                    j["cpu_seconds"],
                    j["peak_memory_bytes"],
                    j["io_read_bytes"],
                    j["io_write_bytes"],
                ),
                log_path=j["log_path"],
                cache_key=j["cache_key"],
                transitions=tuple(by_task.get(j["task"], ())),
            )
            for j in job_rows
        }
        return RunRecord(
            run_id=run_id,
            pipeline=row["pipeline"],
            state=JobState(row["state"]),
            reason=Reason(row["reason"]) if row["reason"] else None,
            message=row["message"],
            params=dict(row["params"]),
            workspace=row["workspace"],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
            jobs=records,
        )

    def list_runs(self, limit: int = 50) -> list[RunRecord]:
        """The most recent runs first (without re-reading each one's transitions twice)."""
        with self.engine.connect() as con:
            ids = (
                con.execute(select(runs.c.id).order_by(runs.c.created_at.desc()).limit(limit))
                .scalars()
                .all()
            )
        return [self.get_run(run_id) for run_id in ids]
