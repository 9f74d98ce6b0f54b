"""Starting, waiting for and stopping a real service in a test; skip or fail when missing."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self, TypeVar

import httpx
import pytest

PROVISION_SCRIPT = "scripts/provision-test-services"
T = TypeVar("T")
T = TypeVar("T")


class ServiceStartError(RuntimeError):
    """A service did not become ready; the message carries the reason and the service's log."""

    def __init__(self, name: str, reason: str, log: str) -> None:
        self.name = name
        self.reason = reason
        self.log = log
        super().__init__(f"{name} did not start: {reason}\n--- {name} log ---\n{log}")


def require_binary(name: str) -> str:
    """Return the path of the program ``name``; without it, skip the test, or fail it in CI.

    A missing service is a fact of a developer's laptop but a broken CI image, so when the
    environment variable ``CI`` is set (non-empty) a test that needs ``name`` fails instead of
    silently skipping.
    """
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name!r} is not installed (run {PROVISION_SCRIPT} as root to install it)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI is set, so a missing service fails the test", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Call ``condition`` until it returns something truthy, and return that; give up after
    ``timeout`` seconds with a :class:`TimeoutError` saying what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"waited {timeout:g}s for {what}; last result: {result!r}")
        time.sleep(interval)


def wait_for_http(
    url: str,
    timeout: float,
    *,
    auth: tuple[str, str] | None = None,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait until ``GET url`` answers 200.

    Raises :class:`TimeoutError` naming the last status or connection error after ``timeout``
    seconds, or :class:`RuntimeError` as soon as ``process`` (the server) has exited.
    """
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    with httpx.Client(auth=auth, timeout=2.0) as client:
        while True:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the process exited with code {process.returncode}")
            try:
                response = client.get(url)
            except httpx.TransportError as error:
                last = f"{type(error).__name__}: {error}"
            else:
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{url} did not answer 200 within {timeout:g}s; last: {last}")
            time.sleep(0.1)


class Service:
    """A real service a test starts and stops; ``with`` starts it and always stops it."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class ServiceProcess:
    """An external server started for a test, its output kept in ``log_path``."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def start(self) -> None:
        """Start the program; its stdout and stderr go to the log file."""
        self._log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.argv, stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def wait_ready(self, url: str, timeout: float, auth: tuple[str, str] | None = None) -> None:
        """Wait until ``url`` answers 200; if it does not, stop the program and raise
        :class:`ServiceStartError` with its log."""
        try:
            wait_for_http(url, timeout, auth=auth, process=self.process)
        except (TimeoutError, RuntimeError) as error:
            self.stop()
            raise ServiceStartError(self.name, str(error), self.log()) from None

    def log(self) -> str:
        """What the program has written so far."""
        if not self.log_path.exists():
            return "(no log)"
        return self.log_path.read_text(errors="replace")

    def stop(self, grace: float = 10.0) -> None:
        """Ask the program to stop (SIGTERM), wait up to ``grace`` seconds, then kill it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
