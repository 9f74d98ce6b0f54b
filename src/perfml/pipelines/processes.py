"""Process trees of jobs: killing one whole, and sampling what it uses (psutil).

A worker is started in a session of its own, so its process group holds what it spawned;
:func:`kill_tree` still walks the children recursively (collected before anything is killed,
since orphans are re-parented), sends SIGTERM, waits ``grace`` seconds, then SIGKILLs what
is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import psutil

from perfml.pipelines.states import ResourceUsage


def kill_tree(pid: int, grace: float = 1.0) -> None:
    """Terminate then kill process ``pid`` and all its descendants."""
    try:
        parent = psutil.Process(pid)
        procs = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    with contextlib.suppress(OSError):  # whatever escaped the walk but kept the group
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=grace)


class TreeSampler:
    """Accumulates the usage of a job's process trees, over all its attempts.

    CPU seconds and I/O bytes are kept per process (the last value seen, processes keyed by
    pid and start time), so processes that end keep counting; memory is the peak over samples
    of the tree's summed RSS.
    """

    def __init__(self) -> None:
        self._cpu: dict[tuple[int, float], float] = {}
        self._io: dict[tuple[int, float], tuple[int, int]] = {}
        self._peak = 0
        self._final_cpu = 0.0

    def sample(self, pid: int) -> int:
        """Sample the tree under ``pid``; returns its RSS now, in bytes."""
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        rss = 0
        for proc in procs:
            try:
                with proc.oneshot():
                    key = (proc.pid, proc.create_time())
                    times = proc.cpu_times()
                    self._cpu[key] = times.user + times.system
                    rss += proc.memory_info().rss
                    if hasattr(proc, "io_counters"):
                        io = proc.io_counters()
                        self._io[key] = (io.read_bytes, io.write_bytes)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        self._peak = max(self._peak, rss)
        return rss

    def account(self, cpu_seconds: float, peak_bytes: int) -> None:
        """Add an attempt's own accounting at its exit (``wait4``'s resource usage).

        It covers what sampling misses — a job shorter than the sampling interval, the last
        moments of a longer one — so CPU is the larger of the two totals, and the peak memory
        the larger of the two peaks.
        """
        self._final_cpu += cpu_seconds
        self._peak = max(self._peak, peak_bytes)

    def usage(self) -> ResourceUsage:
        return ResourceUsage(
            cpu_seconds=round(max(sum(self._cpu.values()), self._final_cpu), 3),
            peak_memory_bytes=self._peak,
            io_read_bytes=sum(r for r, _ in self._io.values()),
            io_write_bytes=sum(w for _, w in self._io.values()),
        )


def log_tail(path: Path, lines: int = 10) -> str:
    """The last ``lines`` lines of a job's log (read from its last 16 KiB)."""
    try:
        text = path.read_bytes()[-16384:].decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])
