"""Scheduled pulls: the queries of ``sources.queries``, pulled from Prometheus every
``sources.pull_interval``, each resuming just after the last point stored of its metric.

For a setup without remote write: :class:`ScheduledPulls` asks ``query_range`` for
``(last stored, now]`` at ``sources.prometheus.step`` (on the first pull, the last
``first_lookback``), stores the points, and hands them to ``on_stored`` (the live loop), in
order, from its one thread. A pull that fails is logged and counted and the next round asks
again from the same point, so nothing is skipped.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from perfml.config import PrometheusSettings, PullSettings
from perfml.errors import PerfmlError
from perfml.featurestore import FeatureStore
from perfml.sources.prometheus import PrometheusClient, RetryPolicy
from perfml.timeparse import parse_duration

log = logging.getLogger(__name__)

OnStored = Callable[[pa.Table], object]


@dataclass
class PullState:
    """One query's progress."""

    metric: str
    query: str
    pulls: int = 0
    failures: int = 0
    points: int = 0
    last_error: str | None = None


class ScheduledPulls:
    """The queries' pulls, every ``interval`` seconds on a thread (see the module)."""

    def __init__(
        self,
        store: FeatureStore,
        prometheus: PrometheusSettings,
        queries: Sequence[PullSettings],
        interval: float,
        on_stored: OnStored | None = None,
        first_lookback: timedelta = timedelta(days=1),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if prometheus.url is None:
            raise PerfmlError("sources.queries needs sources.prometheus.url to pull from")
        self.store = store
        self.prometheus = prometheus
        self.url = prometheus.url
        self.step = parse_duration(prometheus.step)
        self.queries = [PullState(q.metric, q.query) for q in queries]
        self.interval = interval
        self.on_stored = on_stored
        self.first_lookback = first_lookback
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ScheduledPulls:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="perfml-pulls", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def _run(self) -> None:
        while True:
            self.pull_all()
            if self._stop.wait(self.interval):
                return

    def pull_all(self) -> int:
        """One round: each query once; returns the points stored."""
        return sum(self.pull(query) for query in self.queries)

    def resume_from(self, metric: str) -> datetime:
        """Just after the last point stored of ``metric``, else ``first_lookback`` ago."""
        last = max(
            (f.max_ts for f in self.store.manifest.files if f.metric == metric), default=None
        )
        if last is None:
            return self.clock() - self.first_lookback
        return datetime.fromtimestamp(last / 1000, UTC) + self.step

    def pull(self, query: PullState) -> int:
        start, end = self.resume_from(query.metric), self.clock()
        if start > end:
            return 0
        settings = self.prometheus
        password = os.environ.get(settings.password_env, "")
        try:
            with PrometheusClient(
                self.url,
                bearer_token=os.environ.get(settings.token_env) or None,
                basic_auth=(settings.username, password) if settings.username else None,
                timeout=parse_duration(settings.timeout).total_seconds(),
                retry=RetryPolicy(attempts=settings.attempts),
            ) as client:
                ranged = client.query_range(
                    query.query, start, end, self.step, metric=query.metric,
                    entity_label=settings.entity_label,
                    max_points_per_series=settings.max_points_per_series,
                )  # fmt: skip
                tables = list(ranged)
                if not tables or not sum(t.num_rows for t in tables):
                    query.pulls += 1
                    return 0
                points = pa.concat_tables(tables)
                self.store.write(points, labels=ranged.labels)
        except PerfmlError as exc:
            query.failures += 1
            query.last_error = str(exc)
            log.warning("pull of %s (%s) failed: %s", query.metric, query.query, exc)
            return 0
        query.pulls += 1
        query.points += points.num_rows
        query.last_error = None
        if self.on_stored is not None:
            self.on_stored(points)
        return int(points.num_rows)
