"""Fixtures that start real services; the machinery lives in :mod:`tests.integration.services`.

Each factory fixture starts what a test asks for and stops it when the test ends::

    @pytest.mark.integration
    def test_scrape(start_metrics_endpoint, start_prometheus):
        registry = CollectorRegistry()
        Gauge("load", "Load.", registry=registry).set(1.5)
        target = start_metrics_endpoint(registry)
        prom = start_prometheus(targets=[target.address])
        ...

A module that wants one service for all its tests builds a module-scoped fixture from
:class:`~tests.integration.services.PrometheusServer` and ``tmp_path_factory`` instead.
"""

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from tests.integration.services import (
    MetricsEndpoint,
    OciRegistry,
    PostgresServer,
    PrometheusServer,
    StartMetricsEndpoint,
    StartOciRegistry,
    StartPrometheus,
    require_module,
)


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[StartPrometheus]:
    """Start a Prometheus: ``start_prometheus(targets=..., basic_auth=..., scrape_interval=...)``
    takes the arguments of :class:`PrometheusServer` (but ``workdir``) and returns it ready.
    Every Prometheus started is stopped when the test ends."""
    with ExitStack() as stack:
        started = 0

        def start(
            targets: Sequence[str] | Mapping[str, Mapping[str, str]] = (),
            **options: Any,
        ) -> PrometheusServer:
            nonlocal started
            started += 1
            workdir = tmp_path / f"prometheus-{started}"
            return stack.enter_context(PrometheusServer(workdir, targets, **options))

        yield start


@pytest.fixture
def start_metrics_endpoint() -> Iterator[StartMetricsEndpoint]:
    """Serve a ``CollectorRegistry`` on a free loopback port: ``start_metrics_endpoint(registry)``
    returns the :class:`MetricsEndpoint`, whose ``address`` Prometheus can scrape. Stopped when
    the test ends."""
    with ExitStack() as stack:
        yield lambda registry: stack.enter_context(MetricsEndpoint(registry))


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One PostgreSQL for the whole session, started by the first test that asks for it (its
    log under pytest's temporary directory) and stopped, its cluster removed, at the end.
    ``postgres_server.url`` is its database ``perfml``; a test that needs a database to itself
    takes :func:`postgres_url` instead. Without PostgreSQL or the ``postgres`` extra
    (SQLAlchemy, psycopg) the tests that use it skip, or fail in CI."""
    require_module("sqlalchemy", "postgres")
    with PostgresServer(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The SQLAlchemy URL (``postgresql+psycopg://...``) of a fresh, empty database for this
    test alone, dropped when it ends (sessions still connected are ended)::

        def test_store(postgres_url):
            engine = sqlalchemy.create_engine(postgres_url)
            ...
            engine.dispose()
    """
    name = f"test_{uuid.uuid4().hex[:16]}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture
def start_oci_registry(tmp_path: Path) -> Iterator[StartOciRegistry]:
    """Start an OCI registry (Docker Distribution): ``start_oci_registry(basic_auth=...,
    tls=..., delete_enabled=...)`` takes the arguments of :class:`OciRegistry` (but ``workdir``)
    and returns it ready, its ``address`` the ``host:port`` for an artifact store. Every
    registry started is stopped when the test ends."""
    with ExitStack() as stack:
        started = 0

        def start(**options: Any) -> OciRegistry:
            nonlocal started
            started += 1
            workdir = tmp_path / f"oci-registry-{started}"
            return stack.enter_context(OciRegistry(workdir, **options))

        yield start
