"""A Prometheus server and scrape targets for tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import bcrypt
import httpx
from prometheus_client import CollectorRegistry, start_http_server
from tests.integration.services.common import (
    Service,
    ServiceProcess,
    free_port,
    require_binary,
)


class PrometheusServer(Service):
    """A Prometheus of its own for one test: config and data in ``workdir``, on a free port.

    ``targets`` are the ``host:port`` addresses it scrapes (job ``job``) every
    ``scrape_interval``; give a mapping to attach target labels to each address, as
    ``{"127.0.0.1:8001": {"host": "web-1"}}``. With ``basic_auth=(user, password)`` it serves
    only requests carrying those credentials (a web config file with the bcrypt hash).
    With ``config_file`` it runs that ``prometheus.yml`` instead (its rule files are found
    next to it, as Prometheus resolves relative paths): ``targets`` and ``scrape_interval``
    are then the file's business.
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
        config_file: Path | None = None,
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
        self.config_path = config_file or workdir / "prometheus.yml"
        self._own_config = config_file is None
        self.web_config_path = workdir / "web.yml"
        self.service: ServiceProcess | None = None

    def start(self) -> None:
        """Write the config, start Prometheus and wait until ``/-/ready`` answers."""
        binary = require_binary("prometheus")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._own_config:  # JSON is YAML, so the config needs no YAML writer.
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

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts of its rules now, pending and firing (``/api/v1/alerts``)."""
        response = httpx.get(f"{self.url}/api/v1/alerts", auth=self.auth, timeout=5.0)
        response.raise_for_status()
        alerts: list[dict[str, Any]] = response.json()["data"]["alerts"]
        return alerts

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
