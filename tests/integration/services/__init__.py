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

from tests.integration.services.common import *  # noqa: F403
from tests.integration.services.oci import *  # noqa: F403
from tests.integration.services.postgres import *  # noqa: F403
from tests.integration.services.prometheus import *  # noqa: F403
