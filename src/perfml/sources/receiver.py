"""The remote-write receiver: Prometheus pushes, perfml stores (``POST /api/v1/write``).

The HTTP layer only translates: it checks the headers and the size, hands the body to
:func:`~perfml.sources.remote_write.decode_write` and the points to the
:class:`~perfml.sources.landing.Landing`, and answers ``204`` once they are logged on disk.
A :class:`~perfml.sources.remote_write_errors.RemoteWriteError` becomes its ``status_code``
with the message as the body: a 4xx that Prometheus drops for a body that can never be read, a
503 with ``Retry-After`` that it retries when the landing is full.

:class:`Receiver` owns the landing, the app and its metrics; the server it runs on is given to
it (``server=AppServer`` of :mod:`perfml.serving.server`, or any class taking
``(app, host, port)`` with ``start``, ``stop`` and ``url``), so that the receiver runs alone
(``perfml receive``) or beside the other servers of ``perfml up``.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from perfml.config import RemoteWriteSettings
from perfml.featurestore import FeatureStore
from perfml.sources.landing import Landing, OnStored
from perfml.sources.remote_write import DecodedWrite, SeriesFilter, SeriesRouter, decode_write
from perfml.sources.remote_write_errors import (
    LandingClosedError,
    LandingOverloadedError,
    RemoteWriteError,
    UnsupportedWriteError,
    WriteTooLargeError,
)
from perfml.timeparse import parse_duration

WRITE_PATH = "/api/v1/write"


class Server(Protocol):
    """What runs the receiver's app: :class:`perfml.serving.server.AppServer` fits."""

    @property
    def url(self) -> str: ...

    def start(self) -> Any: ...

    def stop(self) -> None: ...


ServerFactory = Callable[[Any, str, int], Server]
"""``(app, host, port) -> Server``."""


@dataclass(frozen=True)
class ReceiverTotals:
    """What a receiver did since it started."""

    requests: int
    acknowledged: int
    """Samples logged and answered 204."""
    stored: int
    dropped: int
    refused: int
    """Samples of requests answered 503 (Prometheus sends them again)."""
    pending: int
    replayed: int
    """Samples a previous run acknowledged but had not stored, stored at start."""


class ReceiverMetrics(Collector):
    """The receiver's own metrics, read from its tallies and its landing at each scrape."""

    def __init__(self, landing: Landing) -> None:
        self.landing = landing
        self._lock = threading.Lock()
        self.codes: Counter[int] = Counter()
        self.dropped: Counter[str] = Counter()
        self.acknowledged = 0
        self.refused = 0

    def request(self, code: int, decoded: DecodedWrite | None) -> None:
        with self._lock:
            self.codes[code] += 1
            if decoded is None:
                return
            if code == 204:
                self.acknowledged += decoded.table.num_rows
                for reason, n in decoded.dropped.items():
                    self.dropped[reason.value] += n
            elif code in (429, 503):
                self.refused += decoded.samples

    def totals(self) -> ReceiverTotals:
        with self._lock:
            return ReceiverTotals(
                requests=sum(self.codes.values()),
                acknowledged=self.acknowledged,
                stored=self.landing.stored,
                dropped=sum(self.dropped.values()),
                refused=self.refused,
                pending=self.landing.pending,
                replayed=self.landing.replayed.points,
            )

    def collect(self) -> Iterator[Metric]:
        totals = self.totals()
        samples = CounterMetricFamily(
            "perfml_remote_write_samples",
            "Remote-write samples by outcome: stored in the feature store, dropped (not kept, "
            "no entity, stale, ...), refused (answered 503: Prometheus sends them again).",
            labels=["outcome"],
        )
        samples.add_metric(["stored"], totals.stored)
        samples.add_metric(["dropped"], totals.dropped)
        samples.add_metric(["refused"], totals.refused)
        yield samples
        dropped = CounterMetricFamily(
            "perfml_remote_write_dropped_samples",
            "Remote-write samples left out, by reason.",
            labels=["reason"],
        )
        with self._lock:
            for reason, n in sorted(self.dropped.items()):
                dropped.add_metric([reason], n)
            codes = sorted(self.codes.items())
        yield dropped
        requests = CounterMetricFamily(
            "perfml_remote_write_requests", "Remote-write requests by HTTP status.", labels=["code"]
        )
        for code, n in codes:
            requests.add_metric([str(code)], n)
        yield requests
        yield GaugeMetricFamily(
            "perfml_remote_write_pending_samples",
            "Samples acknowledged (logged on disk) and not yet in the feature store.",
            value=totals.pending,
        )


def remote_write_app(
    landing: Landing,
    router: SeriesRouter,
    metrics: ReceiverMetrics,
    registry: CollectorRegistry,
    max_body_bytes: int,
) -> Starlette:
    """The receiver's routes: ``POST /api/v1/write``, ``GET /-/ready``, ``GET /metrics``."""

    async def write(request: Request) -> Response:
        decoded: DecodedWrite | None = None
        try:
            _check_headers(request)
            body = await _read_body(request, max_body_bytes)
            decoded, refused = await run_in_threadpool(
                _decode_and_accept, body, router, landing, max_body_bytes
            )
            if refused is not None:
                raise refused
        except RemoteWriteError as error:
            metrics.request(error.status_code, decoded)
            headers = {}
            if isinstance(error, LandingOverloadedError | LandingClosedError):
                headers["Retry-After"] = str(error.retry_after)
            return PlainTextResponse(str(error) + "\n", error.status_code, headers=headers)
        metrics.request(204, decoded)
        return Response(status_code=204)

    async def ready(request: Request) -> Response:
        return PlainTextResponse("ready\n")

    async def exposition(request: Request) -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    return Starlette(
        routes=[
            Route(WRITE_PATH, write, methods=["POST"]),
            Route("/-/ready", ready, methods=["GET"]),
            Route("/metrics", exposition, methods=["GET"]),
        ]
    )


def _check_headers(request: Request) -> None:
    encoding = request.headers.get("content-encoding", "")
    if encoding.lower() != "snappy":
        raise UnsupportedWriteError("Content-Encoding", encoding, "snappy")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-protobuf":
        raise UnsupportedWriteError("Content-Type", media, "application/x-protobuf")
    version = request.headers.get("x-prometheus-remote-write-version", "0.1.0")
    if not version.startswith("0.1."):
        raise UnsupportedWriteError("X-Prometheus-Remote-Write-Version", version, "0.1.0")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise WriteTooLargeError("the body", int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise WriteTooLargeError("the body", size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _decode_and_accept(
    body: bytes, router: SeriesRouter, landing: Landing, max_bytes: int
) -> tuple[DecodedWrite, RemoteWriteError | None]:
    """The request's points, and the landing's refusal if it refused them (the samples of a
    refused request are counted as refused)."""
    decoded = decode_write(body, router, max_bytes=max_bytes)
    try:
        landing.accept(decoded.table)
    except RemoteWriteError as error:
        return decoded, error
    return decoded, None


class Receiver:
    """A remote-write endpoint whose 204 means "on disk": the landing, the app, the metrics.

    Build it from the settings with :meth:`from_settings`; ``with receiver:`` (or
    :meth:`start`) replays what a crash left, starts the flusher and, given a ``server``
    factory, listens on ``host:port``; :meth:`stop` finishes the requests in flight, then
    stores everything acknowledged.
    """

    def __init__(
        self,
        landing: Landing,
        router: SeriesRouter,
        *,
        max_body_bytes: int = 32 * 1024 * 1024,
        host: str = "127.0.0.1",
        port: int = 9201,
        server: ServerFactory | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.landing = landing
        self.router = router
        self.host, self.port = host, port
        self.registry = CollectorRegistry(auto_describe=False) if registry is None else registry
        self.metrics = ReceiverMetrics(landing)
        self.registry.register(self.metrics)
        self.app = remote_write_app(landing, router, self.metrics, self.registry, max_body_bytes)
        self._server_factory = server
        self._server: Server | None = None

    @classmethod
    def from_settings(
        cls,
        store: FeatureStore,
        settings: RemoteWriteSettings,
        folder: str | os.PathLike[str],
        *,
        on_stored: OnStored | None = None,
        server: ServerFactory | None = None,
        registry: CollectorRegistry | None = None,
    ) -> Receiver:
        """The receiver of ``sources.remote_write``, logging under ``folder`` (the workspace's
        ``landing/``) and storing into ``store``."""
        landing = Landing(
            store,
            folder,
            flush_interval=parse_duration(settings.flush_interval).total_seconds(),
            max_pending=settings.max_pending_samples,
            on_stored=on_stored,
        )
        router = SeriesRouter(SeriesFilter.parse(settings.keep), settings.entity_label)
        return cls(
            landing, router, max_body_bytes=settings.max_body_bytes, host=settings.host,
            port=settings.port, server=server, registry=registry,
        )  # fmt: skip

    @property
    def url(self) -> str:
        """Where Prometheus writes: ``http://host:port/api/v1/write``."""
        base = self._server.url if self._server is not None else f"http://{self.host}:{self.port}"
        return base + WRITE_PATH

    def start(self) -> Self:
        self.landing.start()
        if self._server_factory is not None and self._server is None:
            server = self._server_factory(self.app, self.host, self.port)
            try:
                server.start()
            except BaseException:
                self.landing.close()
                raise
            self._server = server
        return self

    def stop(self) -> ReceiverTotals:
        """Stop listening (the requests in flight end first), then store what is pending."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        self.landing.close()
        return self.totals()

    def totals(self) -> ReceiverTotals:
        return self.metrics.totals()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
