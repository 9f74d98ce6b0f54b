"""Starting a job's worker process: by forking a warm server, or as a fresh interpreter.

A fresh ``python -m perfml.pipelines.worker`` pays the interpreter's start and perfml's
imports for every job — about 150 ms, most of a short step's cost. :class:`ForkServer` pays it
once: a small single-threaded server process (``python -m perfml.pipelines.forkserver``)
imports the worker and forks a child per job. The child starts a session of its own (so a
timeout still kills its whole tree), sends its output to the job's log, takes the job's
environment and folder, and runs the worker exactly as the command would. The server reports
each child's pid when it starts and its exit status when it ends, so a :class:`ForkedProcess`
answers ``poll()`` and ``wait()`` like a ``subprocess.Popen``.

:class:`SubprocessLauncher` keeps the plain command, where forking is unavailable.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Protocol

from perfml.pipelines.errors import PipelineError


class WorkerProcess(Protocol):
    """What the runner needs of a worker: its pid, and its exit code when it has one."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self) -> int: ...


def exit_usage(process: WorkerProcess) -> tuple[float, int] | None:
    """``(cpu seconds, peak bytes)`` of an ended worker, when its launcher accounted for it."""
    usage = getattr(process, "usage", None)
    return usage() if callable(usage) else None


class Launcher(Protocol):
    def start(self, spec: Path, log: Path, env: Mapping[str, str], cwd: Path) -> WorkerProcess: ...

    def close(self) -> None: ...


class SubprocessLauncher:
    """Each job a fresh interpreter running ``python -m perfml.pipelines.worker SPEC``."""

    def start(
        self, spec: Path, log: Path, env: Mapping[str, str], cwd: Path
    ) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:  # the child keeps its own descriptor
            return subprocess.Popen(
                [sys.executable, "-m", "perfml.pipelines.worker", str(spec)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
            )

    def close(self) -> None:
        return None


class ForkServerError(PipelineError):
    def __init__(self, problem: str) -> None:
        super().__init__(f"the pipeline fork server {problem}")


class ForkedProcess:
    """A job forked by the :class:`ForkServer`; ``poll``/``wait`` as ``subprocess.Popen``."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.pid = pid
        self._server = server

    def poll(self) -> int | None:
        return self._server.exit_code(self.pid)

    def wait(self) -> int:
        return self._server.wait_exit(self.pid)

    def usage(self) -> tuple[float, int] | None:
        """CPU seconds and peak RSS of the ended job and its reaped children (``wait4``)."""
        return self._server.usage(self.pid)


class ForkServer:
    """A warm process that forks the workers (see the module's docstring)."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._started: dict[int, int] = {}
        self._exited: dict[int, int] = {}
        self._usage: dict[int, tuple[float, int]] = {}
        self._ids = itertools.count()
        self._reader: threading.Thread | None = None
        self._dead = False

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "perfml.pipelines.forkserver"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None,
            )
            self._dead = False
            stdout = self._process.stdout
            if stdout is None:
                raise ForkServerError("has no output pipe")
            self._reader = threading.Thread(target=self._read, args=(stdout,), daemon=True)
            self._reader.start()
        return self._process

    def start(self, spec: Path, log: Path, env: Mapping[str, str], cwd: Path) -> ForkedProcess:
        process = self._ensure()
        job = next(self._ids)
        request = {"id": job, "spec": str(spec), "log": str(log), "env": dict(env), "cwd": str(cwd)}
        if process.stdin is None:
            raise ForkServerError("has no input pipe")
        try:
            process.stdin.write(json.dumps(request).encode() + b"\n")
            process.stdin.flush()
        except BrokenPipeError:
            raise ForkServerError("exited before it could start a job") from None
        with self._changed:
            while job not in self._started:
                if self._dead:
                    raise ForkServerError("exited before it could start a job")
                self._changed.wait(timeout=1.0)
            return ForkedProcess(self, self._started.pop(job))

    def exit_code(self, pid: int) -> int | None:
        with self._lock:
            return self._exited.get(pid)

    def usage(self, pid: int) -> tuple[float, int] | None:
        with self._lock:
            return self._usage.get(pid)

    def wait_exit(self, pid: int) -> int:
        with self._changed:
            while pid not in self._exited:
                if self._dead:
                    raise ForkServerError(f"exited before reporting job pid {pid}")
                self._changed.wait(timeout=1.0)
            return self._exited[pid]

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            message = json.loads(line)
            with self._changed:
                if "exited" in message:
                    pid = int(message["exited"])
                    self._usage[pid] = (
                        float(message["cpu_seconds"]),
                        int(message["peak_bytes"]),
                    )
                    self._exited[pid] = int(message["code"])
                else:
                    self._started[int(message["id"])] = int(message["pid"])
                self._changed.notify_all()
        with self._changed:
            self._dead = True
            self._changed.notify_all()

    def close(self) -> None:
        """Stop the server; jobs it started keep running in their own sessions."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        if self._reader is not None:
            self._reader.join(timeout=5)


def default_launcher() -> Launcher:
    """The fork server where the platform forks; a fresh interpreter per job elsewhere."""
    if hasattr(os, "fork") and sys.platform != "win32":
        return ForkServer()
    return SubprocessLauncher()
