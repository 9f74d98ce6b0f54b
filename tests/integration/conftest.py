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

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from tests.integration.services import (
    MetricsEndpoint,
    PrometheusServer,
    StartMetricsEndpoint,
    StartPrometheus,
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
