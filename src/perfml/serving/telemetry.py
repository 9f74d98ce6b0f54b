"""The inference metrics served at ``/metrics``, in Seldon Core's names and perfml's own.

One rule file and one dashboard serve perfml's server and a Seldon cluster alike (DESIGN.md,
"One vocabulary for both worlds"), so every request is observed in Seldon's histogram:

* ``seldon_api_executor_server_requests_seconds{deployment_name, predictor_name,
  predictor_version, service, method, code}``: the time to answer, in the buckets of Seldon's
  executor (Go's default buckets, :data:`SELDON_BUCKETS`; not prometheus_client's, which add
  0.075, 0.75 and 7.5). ``predictor_name`` is the model, ``predictor_version`` its version,
  ``service`` the endpoint kind (``predictions``, ``feedback``, ``metadata``...), ``method``
  the HTTP method or the Open Inference Protocol call (``infer``, ``feedback``, ``metadata``)
  and ``code`` the HTTP status.

and in perfml's counters and gauges, per model and version:

* ``perfml_inference_requests_total{model, version, code}``: every answered request;
* ``perfml_inference_errors_total{model, version, code}``: those answered with a status of
  400 or more (``code`` tells a client's 4xx from the server's 5xx);
* ``perfml_model_load_seconds{model, version}``: how long loading that version took (the
  slowest worker's load, when several loaded it);
* ``perfml_model_loaded_version{model}``: the version number loaded (the highest over the
  live workers while a swap is under way);
* ``perfml_model_load_failures_total{model, version}``: loads that failed, for the
  ``ModelLoadFailed`` alert (``increase(perfml_model_load_failures_total[10m]) > 0``).

``up`` and readiness are the server's. :meth:`ServingMetrics.render` gives the text format
0.0.4, ready to be the body of ``GET /metrics``.

**Several worker processes.** Each uvicorn worker is a process of its own; a registry per
process would show one worker's view per scrape, its counters jumping as the scrapes land on
different workers. So with several workers, prometheus_client's multiprocess mode is used:
every worker writes its values to memory-mapped files in one shared directory and a scrape
sums them (:class:`~prometheus_client.multiprocess.MultiProcessCollector`). prometheus_client
chooses its value class once, when it is imported, from ``PROMETHEUS_MULTIPROC_DIR``, so the
directory must be in the environment before the workers import it. The server does::

    # in the parent, before uvicorn spawns its workers (they inherit the environment)
    ServingMetrics.prepare_multiprocess(directory)  # creates it, clears stale files, sets env
    uvicorn.run("perfml.cli.serve:app_factory", factory=True, workers=4)

    # in each worker (the application factory or its lifespan)
    metrics = ServingMetrics.from_environment(deployment="perfml")  # multiprocess if set up
    ...
    metrics.close()  # at shutdown: drops this worker's live gauges

A worker that dies without :meth:`~ServingMetrics.close` has its live gauges dropped at the
next scrape (its pid is gone). Without a directory the metrics live in an ordinary
:class:`~prometheus_client.CollectorRegistry` (one process; tests build a fresh one each):

>>> metrics = ServingMetrics(deployment="demo")
>>> metrics.observe_request("detector", 3, "infer", 200, 0.012)
>>> body, content_type = metrics.render()
>>> b'perfml_inference_requests_total{code="200",model="detector",version="3"} 1.0' in body
True
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from perfml.errors import PerfmlError

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
"""The environment variable prometheus_client reads the shared directory from."""
DEFAULT_DEPLOYMENT: Final = "perfml"
SELDON_HISTOGRAM: Final = "seldon_api_executor_server_requests_seconds"
SELDON_LABELS: Final = (
    "deployment_name",
    "predictor_name",
    "predictor_version",
    "service",
    "method",
    "code",
)
SELDON_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""The buckets of Seldon Core's executor histogram (Go's ``prometheus.DefBuckets``)."""
PREDICTIONS: Final = "predictions"
"""The ``service`` of an inference request, as Seldon's executor names it."""
ERROR_STATUS: Final = 400
"""A request answered with this status or above counts as an error."""
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w+?_(\d+)\.db$")


class ServingMetricsError(PerfmlError):
    """The inference metrics cannot be kept as asked."""


class MultiprocessNotPreparedError(ServingMetricsError):
    """Multiprocess metrics were asked for in a process that would not write them there."""

    def __init__(self, directory: Path, reason: str) -> None:
        self.directory = directory
        super().__init__(
            f"multiprocess metrics in {directory} are not set up in this process: {reason}; "
            "call ServingMetrics.prepare_multiprocess(directory) in the parent before "
            "starting the workers"
        )


class NonNumericVersionError(ServingMetricsError):
    """``perfml_model_loaded_version`` holds a number, and this version is not one."""

    def __init__(self, model: str, version: str | int) -> None:
        self.model, self.version = model, version
        super().__init__(f"model {model!r}: version {version!r} is not a whole number")


class ServingMetrics:
    """The inference server's metrics: Seldon's request histogram, perfml's request, error
    and model-load series (see the module's doc for the names and for several workers).

    ``registry`` is the registry :meth:`render` serves (a fresh one by default): with one
    process the metrics are registered in it, with ``multiprocess_dir`` a collector of the
    shared directory is, and the metrics write to the directory only.
    """

    def __init__(
        self,
        deployment: str = DEFAULT_DEPLOYMENT,
        registry: CollectorRegistry | None = None,
        multiprocess_dir: str | Path | None = None,
    ) -> None:
        self.deployment = deployment
        self.registry = CollectorRegistry() if registry is None else registry
        self.multiprocess_dir = None if multiprocess_dir is None else Path(multiprocess_dir)
        if self.multiprocess_dir is None:
            owner: CollectorRegistry | None = self.registry
        else:
            _check_prepared(self.multiprocess_dir)
            shared = str(self.multiprocess_dir)
            MultiProcessCollector(self.registry, path=shared)  # type: ignore[no-untyped-call]
            owner = None  # the values go to the files; the collector reads them back
        self._latency = Histogram(
            SELDON_HISTOGRAM,
            "Time taken to answer an inference request, as Seldon Core's executor measures it.",
            labelnames=SELDON_LABELS,
            buckets=SELDON_BUCKETS,
            registry=owner,
        )
        per_model = ("model", "version", "code")
        self._requests = Counter(
            "perfml_inference_requests",
            "Inference requests answered, by model, version and HTTP status.",
            labelnames=per_model,
            registry=owner,
        )
        self._errors = Counter(
            "perfml_inference_errors",
            f"Inference requests answered with an HTTP status of {ERROR_STATUS} or more.",
            labelnames=per_model,
            registry=owner,
        )
        self._load_seconds = Gauge(
            "perfml_model_load_seconds",
            "Seconds loading a model version took (the slowest worker's load).",
            labelnames=("model", "version"),
            multiprocess_mode="max",
            registry=owner,
        )
        self._loaded_version = Gauge(
            "perfml_model_loaded_version",
            "The version of each model loaded (the highest over the live workers).",
            labelnames=("model",),
            multiprocess_mode="livemax",
            registry=owner,
        )
        self._load_failures = Counter(
            "perfml_model_load_failures",
            "Model versions that failed to load (the previous version kept serving).",
            labelnames=("model", "version"),
            registry=owner,
        )

    @classmethod
    def from_environment(
        cls, deployment: str = DEFAULT_DEPLOYMENT, registry: CollectorRegistry | None = None
    ) -> ServingMetrics:
        """The metrics of a worker: multiprocess when ``PROMETHEUS_MULTIPROC_DIR`` is set (by
        :meth:`prepare_multiprocess` in the parent), single-process otherwise."""
        directory = os.environ.get(MULTIPROC_ENV) or None
        return cls(deployment, registry, directory)

    @staticmethod
    def prepare_multiprocess(directory: str | Path) -> Path:
        """Make ``directory`` the shared metrics directory of the workers started from now on.

        Call it once, in the parent, before starting the workers: it creates the directory,
        deletes the files a previous server left (their counts would be added to this one's),
        and sets ``PROMETHEUS_MULTIPROC_DIR``, which the workers inherit. prometheus_client
        chose its value class when this process imported it, so that choice is redone here:
        metrics created in this process from now on write to the directory too (a server
        with one worker runs it in this process). Returns the directory, absolute.
        """
        path = Path(directory).absolute()
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
        os.environ[MULTIPROC_ENV] = str(path)
        if not _writes_to_files():
            writing = prometheus_values.MultiProcessValue()  # type: ignore[no-untyped-call]
            prometheus_values.ValueClass = writing
        return path

    def observe_request(
        self,
        model: str,
        version: str | int,
        method: str,
        code: int,
        seconds: float,
        service: str = PREDICTIONS,
    ) -> None:
        """Count one answered request to ``model`` at ``version`` and observe its latency.

        ``method`` is the HTTP method or the protocol call (``infer``, ``feedback``,
        ``metadata``), ``code`` the HTTP status, ``service`` the endpoint kind.
        """
        version_label, status = str(version), str(code)
        self._latency.labels(
            self.deployment, model, version_label, service, method, status
        ).observe(seconds)
        self._requests.labels(model, version_label, status).inc()
        if code >= ERROR_STATUS:
            self._errors.labels(model, version_label, status).inc()

    def model_loaded(self, model: str, version: str | int, seconds: float) -> None:
        """Record that ``model`` at ``version`` was loaded in ``seconds`` and now serves."""
        number = _version_number(model, version)
        self._load_seconds.labels(model, str(version)).set(seconds)
        self._loaded_version.labels(model).set(number)

    def model_load_failed(self, model: str, version: str | int) -> None:
        """Count a failed load of ``model`` at ``version`` (``ModelLoadFailed`` watches it)."""
        self._load_failures.labels(model, str(version)).inc()

    def render(self) -> tuple[bytes, str]:
        """The metrics as ``(body, content type)`` in the Prometheus text format 0.0.4: in
        multiprocess mode the sum over every worker, live or gone, for counters and
        histograms, and over the live workers for the loaded versions."""
        if self.multiprocess_dir is not None:
            _drop_dead_workers(self.multiprocess_dir)
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4

    def close(self, pid: int | None = None) -> None:
        """A worker's last act (or its parent's for it, by ``pid``): drop its live gauges,
        so a model it no longer serves is not shown as loaded. Its counts stay."""
        if self.multiprocess_dir is not None:
            _mark_process_dead(os.getpid() if pid is None else pid, self.multiprocess_dir)


def _writes_to_files() -> bool:
    return bool(getattr(prometheus_values.ValueClass, "_multiprocess", False))


def _check_prepared(directory: Path) -> None:
    shared = os.environ.get(MULTIPROC_ENV)
    if not shared or Path(shared).absolute() != directory.absolute():
        raise MultiprocessNotPreparedError(directory, f"{MULTIPROC_ENV} is {shared!r}")
    if not directory.is_dir():
        raise MultiprocessNotPreparedError(directory, "the directory does not exist")
    if not _writes_to_files():
        raise MultiprocessNotPreparedError(
            directory, f"prometheus_client was imported before {MULTIPROC_ENV} was set"
        )


def _drop_dead_workers(directory: Path) -> None:
    """Drop the live gauges of workers that died without :meth:`ServingMetrics.close`."""
    for pid in _live_gauge_pids(directory.iterdir()):
        if not psutil.pid_exists(pid):
            _mark_process_dead(pid, directory)


def _mark_process_dead(pid: int, directory: Path) -> None:
    mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def _live_gauge_pids(files: Iterable[Path]) -> set[int]:
    pids: set[int] = set()
    for file in files:
        matched = _LIVE_GAUGE_FILE.match(file.name)
        if matched:
            pids.add(int(matched.group(1)))
    return pids


def _version_number(model: str, version: str | int) -> int:
    if isinstance(version, int):
        return version
    if version.strip().isdigit():
        return int(version)
    raise NonNumericVersionError(model, version)
