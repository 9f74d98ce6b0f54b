"""The fork server's own process: ``python -m perfml.pipelines.forkserver``.

It reads one JSON request per line on stdin (``id``, ``spec``, ``log``, ``env``, ``cwd``),
forks a child per request and answers on stdout with ``{"id", "pid"}``; when a child ends it
writes ``{"exited": pid, "code": c}`` (``c`` negative for a signal, as ``subprocess`` reports
it). It stays single-threaded, so forking it is safe, and it exits when its stdin closes —
when the runner that started it ends.
"""

from __future__ import annotations

import json
import os
import select
import sys
from typing import Any

# Preloaded once, shared by every job: the worker and the step DSL every step module imports.
# Only pure-Python modules that start no threads belong here, so that forking stays safe.
import perfml.pipelines  # noqa: F401
from perfml.pipelines import worker


def _child(request: dict[str, Any], reply_fd: int, request_fd: int) -> None:
    """Become the job: own session, log as output, job's environment and folder; never
    returns."""
    code = 1
    try:
        os.setsid()
        os.close(reply_fd)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, request_fd)  # the requests pipe (stdin) becomes /dev/null
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 (lives until exit)
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        # The interpreter read PYTHONPATH when the server started; honour the job's own.
        for entry in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
            if entry and entry not in sys.path:
                sys.path.insert(0, entry)
        code = worker.main([request["spec"]])
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve() -> None:
    request_fd = sys.stdin.fileno()
    reply_fd = os.dup(sys.stdout.fileno())
    pending = b""

    def reply(message: dict[str, Any]) -> None:
        os.write(reply_fd, json.dumps(message).encode() + b"\n")

    children: set[int] = set()
    open_input = True
    while open_input or children:
        if open_input:
            ready, _, _ = select.select([request_fd], [], [], 0.01)
            if ready:
                chunk = os.read(request_fd, 1 << 16)
                if not chunk:
                    open_input = False  # the runner is gone; reap what is left, then exit
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    request = json.loads(line)
                    pid = os.fork()
                    if pid == 0:
                        _child(request, reply_fd, request_fd)
                    children.add(pid)
                    reply({"id": request["id"], "pid": pid})
        else:
            select.select([], [], [], 0.05)
        while children:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
            if pid == 0:
                break
            children.discard(pid)
            if open_input:
                reply(
                    {
                        "exited": pid,
                        "code": os.waitstatus_to_exitcode(status),
                        "cpu_seconds": usage.ru_utime + usage.ru_stime,
                        "peak_bytes": usage.ru_maxrss * 1024,  # Linux reports KiB
                    }
                )


if __name__ == "__main__":
    serve()
