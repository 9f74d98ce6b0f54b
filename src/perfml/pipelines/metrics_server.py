"""Serving the job metrics at ``/metrics`` over HTTP: a thin adapter over a registry.

The server owns a fresh :class:`~prometheus_client.CollectorRegistry` holding a
:class:`~perfml.pipelines.job_metrics.JobMetricsCollector` (or serves the registry given), always
in the Prometheus text format 0.0.4, as kube-state-metrics does (the names are all classic
ones, so no content negotiation is needed)::

    with serve_metrics(history, runner.capacity, port=0) as server:
        print(server.url)  # http://127.0.0.1:PORT/metrics
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import Any, Self
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from perfml.pipelines.dsl import Pipeline, Resources
from perfml.pipelines.history import RunHistory
from perfml.pipelines.job_metrics import (
    DEFAULT_NAMESPACE,
    JobMetricsCollector,
    Window,
    requests_from,
)

METRICS_PATH = "/metrics"


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood stderr."""


def metrics_app(registry: CollectorRegistry) -> Any:
    """A WSGI application serving ``registry`` at ``/metrics`` (404 elsewhere)."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != METRICS_PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found; the metrics are at /metrics\n"]
        body = generate_latest(registry)
        start_response(
            "200 OK",
            [("Content-Type", CONTENT_TYPE_PLAIN_0_0_4), ("Content-Length", str(len(body)))],
        )
        return [body]

    return app


class MetricsServer:
    """An HTTP server of ``registry`` on ``host:port`` (port 0: a free one), in a thread of
    its own from :meth:`start` until :meth:`close`; ``with`` does both."""

    def __init__(self, registry: CollectorRegistry, port: int = 0, host: str = "127.0.0.1") -> None:
        self.registry = registry
        self._server = make_server(
            host, port, metrics_app(registry), _ThreadingServer, handler_class=_QuietHandler
        )
        self.host = host
        self.port: int = self._server.server_port
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """``host:port``, as a Prometheus scrape target."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}{METRICS_PATH}"

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, name=f"metrics-{self.port}", daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, wait for the serving thread, and release the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def serve_metrics(
    history: RunHistory,
    capacity: Resources,
    port: int = 0,
    host: str = "127.0.0.1",
    *,
    pipelines: Iterable[Pipeline] = (),
    window: Window | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    registry: CollectorRegistry | None = None,
) -> MetricsServer:
    """Serve the job metrics of ``history`` at ``http://host:port/metrics``, started.

    The collector goes into ``registry`` (a fresh one by default); ``pipelines`` give the
    resource requests. Stop it with ``close()`` or use it in a ``with`` block.
    """
    registry = CollectorRegistry() if registry is None else registry
    registry.register(
        JobMetricsCollector(
            history,
            capacity,
            requests=requests_from(pipelines),
            window=window,
            namespace=namespace,
        )
    )
    return MetricsServer(registry, port, host).start()
