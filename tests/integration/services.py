"""Real services for integration tests, each on a free loopback port, stopped afterwards.

The pieces compose: :func:`require_binary` finds the program (or skips the test locally and
fails it in CI), :class:`ServiceProcess` runs it with its output in a log file and stops it
(terminate, wait, kill), :func:`wait_for_http` waits until it answers. :class:`PrometheusServer`
is the first service built from them; PostgreSQL, Alertmanager, an OCI registry and Chromium
follow the same pattern. :class:`MetricsEndpoint` is an in-process scrape target.

A test that needs Prometheus scraping a gauge::

    registry = CollectorRegistry()
    Gauge("load", "Load.", registry=registry).set(1.5)
    with MetricsEndpoint(registry) as target, PrometheusServer(tmp_path, [target.address]) as prom:
        wait_until(lambda: prom.query("load"), 10, "Prometheus to scrape load")
"""

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, TypeVar

import bcrypt
import httpx
import pytest
from prometheus_client import CollectorRegistry, start_http_server

PROVISION_SCRIPT = "scripts/provision-test-services"

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
    process: "subprocess.Popen[bytes] | None" = None,
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


class PrometheusServer:
    """A Prometheus of its own for one test: config and data in ``workdir``, on a free port.

    ``targets`` are the ``host:port`` addresses it scrapes (job ``job``) every
    ``scrape_interval``; give a mapping to attach target labels to each address, as
    ``{"127.0.0.1:8001": {"host": "web-1"}}``. With ``basic_auth=(user, password)`` it serves
    only requests carrying those credentials (a web config file with the bcrypt hash).
    """

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[str] | Mapping[str, Mapping[str, str]] = (),
        *,
        scrape_interval: str = "1s",
        job: str = "test",
        basic_auth: tuple[str, str] | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.workdir = workdir
        self.targets: dict[str, dict[str, str]] = (
            {address: dict(labels) for address, labels in targets.items()}
            if isinstance(targets, Mapping)
            else {address: {} for address in targets}
        )
        self.scrape_interval = scrape_interval
        self.job = job
        self.auth = basic_auth
        self.start_timeout = start_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "prometheus.yml"
        self.web_config_path = workdir / "web.yml"
        self.service: ServiceProcess | None = None

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

    def start(self) -> None:
        """Write the config, start Prometheus and wait until ``/-/ready`` answers."""
        binary = require_binary("prometheus")
        self.workdir.mkdir(parents=True, exist_ok=True)
        # JSON is YAML, so the config needs no YAML writer.
        self.config_path.write_text(json.dumps(self._config(), indent=2))
        argv = [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        if self.auth is not None:
            user, password = self.auth
            # Cost 4, bcrypt's minimum: the hash guards a test server, and every request pays it.
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
            self.web_config_path.write_text(json.dumps({"basic_auth_users": {user: hashed}}))
            argv.append(f"--web.config.file={self.web_config_path}")
        self.service = ServiceProcess("prometheus", argv, self.workdir / "prometheus.log")
        self.service.start()
        self.service.wait_ready(f"{self.url}/-/ready", self.start_timeout, auth=self.auth)

    def stop(self) -> None:
        """Stop Prometheus (terminate, wait, kill)."""
        if self.service is not None:
            self.service.stop()

    def log(self) -> str:
        """What Prometheus has logged so far."""
        return self.service.log() if self.service is not None else "(not started)"

    def query(self, promql: str) -> list[Any]:
        """Evaluate ``promql`` now (``/api/v1/query``) and return the ``result`` list."""
        response = httpx.get(
            f"{self.url}/api/v1/query", params={"query": promql}, auth=self.auth, timeout=5.0
        )
        response.raise_for_status()
        result: list[Any] = response.json()["data"]["result"]
        return result

    def _config(self) -> dict[str, Any]:
        return {
            "global": {
                "scrape_interval": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "scrape_configs": [
                {
                    "job_name": self.job,
                    "scrape_interval": self.scrape_interval,
                    "scrape_timeout": self.scrape_interval,
                    "static_configs": [
                        {"targets": [address], "labels": labels}
                        for address, labels in self.targets.items()
                    ],
                }
            ],
        }


class MetricsEndpoint:
    """An in-process ``/metrics`` endpoint (prometheus_client) on a free loopback port, serving
    ``registry``: a scrape target whose values the test sets."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.address = ""
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._server, self._thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.address = f"127.0.0.1:{self._server.server_port}"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()


StartPrometheus = Callable[..., PrometheusServer]
"""The type of the ``start_prometheus`` fixture: ``PrometheusServer``'s arguments but
``workdir``."""

StartMetricsEndpoint = Callable[[CollectorRegistry], MetricsEndpoint]
"""The type of the ``start_metrics_endpoint`` fixture."""
