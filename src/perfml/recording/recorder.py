"""perfml records its own metrics as series: scraped, kept in memory, flushed to the store.

In the embedded mode there is no Prometheus: a :class:`Recorder` scrapes perfml's metrics
endpoints every ``scrape_interval`` (see :mod:`perfml.recording.scrape` for how samples are
labelled) into a :class:`MetricsStore`, which the native rule evaluator and the dashboard query
as a :class:`~perfml.promql.SeriesSource`.

The store keeps the recent samples in memory (``retention``, 6 h by default) and writes them
to the feature store every ``flush_interval`` (5 min) in one atomic write, as ordinary series
(DESIGN.md: perfml's own operational metrics are stored there too):

* ``metric`` is the sample's name (``kube_pod_status_phase``, ``up``...);
* ``entity`` encodes the rest of the label set (:func:`entity_of`): readable when it can be
  (``instance=h:9,job=perfml-jobs,namespace=perfml,phase=Running,pod=p-1``), a hash when the
  values would need escaping or the text would be long. The full label set is kept as the
  series' labels, so a series read back has exactly the labels it was recorded with.

A query answers from memory for the time memory covers and from the feature store before
that (the named metrics only, the files of the needed months only); a series that crosses the
seam comes back as one series. A crash loses at most the samples not yet flushed.

What the feature store cannot hold is not written to it, with these consequences:

* **stale markers**: the store keeps finite values only. In a range read from the store, a
  series that disappeared is therefore seen by an instant query for up to the lookback (5 min)
  after its last sample instead of ending at once — as in Prometheus for samples ingested
  without staleness tracking;
* non-finite values (a gauge set to NaN or ±Inf) are missing from the store's ranges;
* a metric name with a colon (recording-rule names) is kept in memory only; each flush counts
  such samples in :attr:`FlushReport.skipped_names`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

import numpy as np
import pyarrow as pa

from perfml.featurestore import FeatureStore
from perfml.featurestore.schema import METRIC_NAME
from perfml.promql.series import Matcher, MemorySeries, Series
from perfml.recording.errors import RecordingError
from perfml.recording.rounds import every
from perfml.recording.scrape import (
    Labels,
    ScrapedSample,
    Scraper,
    ScrapeResult,
    Target,
)

DEFAULT_SCRAPE_INTERVAL_S = 15.0
DEFAULT_RETENTION_S = 6 * 3600.0
DEFAULT_FLUSH_INTERVAL_S = 300.0
MAX_READABLE_ENTITY = 120
"""Longer label sets are stored under a hashed entity (their labels keep the whole set)."""

_UNSAFE_VALUE = re.compile(r"[,=/#\x00-\x1f\x7f]")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class BadRecorderSettingError(RecordingError):
    """A recorder setting is out of range."""

    def __init__(self, setting: str, value: object, expected: str) -> None:
        self.setting = setting
        self.value = value
        super().__init__(f"recorder setting {setting} {value!r} is not valid: expected {expected}")


class OutOfOrderError(RecordingError):
    """Samples older than the newest recorded: series are recorded in time order."""

    def __init__(self, at_ms: int, newest_ms: int) -> None:
        self.at_ms = at_ms
        self.newest_ms = newest_ms
        super().__init__(
            f"samples at {at_ms} ms are older than the newest recorded ({newest_ms} ms); "
            "series are recorded in time order"
        )


def entity_of(labels: Labels) -> str:
    """The feature-store entity of a label set (``__name__`` excluded), stable and unique.

    Readable ``name=value`` pairs joined by ``,`` when no value holds ``, = / #`` or a control
    character and the text stays short; otherwise the readable leading pairs that fit, then
    ``#`` and a hash of the whole set. Readable entities never contain ``#``, so the two forms
    cannot meet.

    >>> entity_of((("namespace", "perfml"), ("pod", "train-1")))
    'namespace=perfml,pod=train-1'
    >>> entity_of((("job", "x"), ("path", "/metrics")))
    'job=x#50b0d5cdac971d34c608'
    >>> entity_of(())
    '{}'
    """
    if not labels:
        return "{}"
    pairs = [f"{name}={value}" for name, value in labels]
    readable = ",".join(pairs)
    if (
        len(readable) <= MAX_READABLE_ENTITY
        and not any(_UNSAFE_VALUE.search(value) for _, value in labels)
        and readable == readable.rstrip()
    ):
        return readable
    digest = hashlib.sha256(json.dumps(labels, separators=(",", ":")).encode()).hexdigest()[:20]
    prefix: list[str] = []
    for (_, value), pair in zip(labels, pairs, strict=True):
        if _UNSAFE_VALUE.search(value) or value != value.strip():
            break
        if len(",".join([*prefix, pair])) > MAX_READABLE_ENTITY - 22:
            break
        prefix.append(pair)
    return ",".join(prefix) + "#" + digest


@dataclass(frozen=True)
class FlushReport:
    """What one flush wrote to the feature store."""

    points: int = 0
    series: int = 0
    dropped_nonfinite: int = 0
    skipped_names: int = 0
    seconds: float = 0.0
    through_ms: int | None = None


@dataclass
class _Pending:
    """Samples recorded since the last flush, column by column."""

    names: list[str] = field(default_factory=list)
    labels: list[Labels] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ts)

    def extend(self, other: _Pending) -> None:
        self.names += other.names
        self.labels += other.labels
        self.ts += other.ts
        self.values += other.values


class MetricsStore:
    """Recorded series: recent ones in memory, all of them in the feature store.

    ``store`` None keeps memory only (nothing is flushed, memory is trimmed to ``retention``).
    Samples are recorded with :meth:`append` in time order; :meth:`maybe_flush` writes them to
    the store once ``flush_interval_s`` of sample time has passed since the last flush, and
    trims memory to ``retention_s`` (never dropping what is not flushed yet).

    >>> metrics = MetricsStore()
    >>> metrics.add("up", {"job": "perfml-serving"}, 15_000, 1.0)
    >>> found = metrics.select([Matcher("__name__", "=", "up")], 0, 60_000)
    >>> [(sorted(s.labels.items()), s.values.tolist()) for s in found]
    [([('__name__', 'up'), ('job', 'perfml-serving')], [1.0])]
    """

    def __init__(
        self,
        store: FeatureStore | None = None,
        *,
        retention_s: float = DEFAULT_RETENTION_S,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
    ) -> None:
        if not retention_s > 0:
            raise BadRecorderSettingError("retention", retention_s, "a positive duration")
        if not flush_interval_s > 0:
            raise BadRecorderSettingError("flush_interval", flush_interval_s, "a positive duration")
        if store is not None and flush_interval_s > retention_s:
            raise BadRecorderSettingError(
                "flush_interval", flush_interval_s, f"at most the retention ({retention_s:g} s)"
            )
        self.store = store
        self.retention_ms = round(retention_s * 1000)
        self.flush_interval_ms = round(flush_interval_s * 1000)
        self._memory = MemorySeries()
        self._pending = _Pending()
        self._lock = threading.RLock()
        self._flush_lock = threading.Lock()
        self._covered_from_ms: int | None = None  # memory holds every sample after this
        self._newest_ms: int | None = None
        self._flushed_through_ms: int | None = None
        self._last_flush_ms: int | None = None

    @property
    def covered_from_ms(self) -> int | None:
        """Memory holds every sample recorded after this instant (None: nothing yet)."""
        return self._covered_from_ms

    # -- recording ----------------------------------------------------------------------

    def add(self, name: str, labels: Mapping[str, str], ts_ms: int, value: float) -> None:
        """Record one sample (``labels`` without ``__name__``)."""
        self.append([ScrapedSample(name, tuple(sorted(labels.items())), value)], ts_ms)

    def append(self, samples: Iterable[ScrapedSample], at_ms: int) -> None:
        """Record samples all stamped ``at_ms`` (one scrape's); stale markers included."""
        samples = list(samples)
        with self._lock:
            if self._newest_ms is not None and at_ms < self._newest_ms:
                raise OutOfOrderError(at_ms, self._newest_ms)
            if self._covered_from_ms is None:
                self._covered_from_ms = at_ms - 1
                self._last_flush_ms = at_ms
            self._newest_ms = at_ms
            for sample in samples:
                self._memory.add(sample.name, dict(sample.labels), at_ms, sample.value)
                self._pending.names.append(sample.name)
                self._pending.labels.append(sample.labels)
            self._pending.ts += [at_ms] * len(samples)
            self._pending.values += [sample.value for sample in samples]

    def record(self, results: Iterable[ScrapeResult]) -> None:
        """Record the samples of scrapes, in their time order."""
        for result in sorted(results, key=lambda r: r.at_ms):
            self.append(result.samples, result.at_ms)

    # -- flushing and trimming ----------------------------------------------------------

    def flush_due(self, now_ms: int) -> bool:
        """Whether ``flush_interval`` has passed since the last flush (in sample time)."""
        last = self._last_flush_ms
        return (
            self.store is not None and last is not None and now_ms - last >= self.flush_interval_ms
        )

    def maybe_flush(self, now_ms: int) -> FlushReport | None:
        """Flush and trim when a flush is due; the flush's report, or None."""
        if self.store is None:
            self.trim(now_ms)
            return None
        if not self.flush_due(now_ms):
            return None
        report = self.flush()
        self._last_flush_ms = now_ms
        self.trim(now_ms)
        return report

    def flush(self) -> FlushReport:
        """Write every sample not flushed yet to the feature store, in one atomic write.

        On failure nothing is written and the samples stay pending for the next flush.
        """
        if self.store is None:
            return FlushReport()
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, _Pending()
            if not pending:
                return FlushReport()
            began = time.perf_counter()
            try:
                report = self._write(self.store, pending)
            except BaseException:
                with self._lock:  # keep them for the next flush, ahead of newer samples
                    pending.extend(self._pending)
                    self._pending = pending
                raise
            with self._lock:
                self._flushed_through_ms = max(pending.ts)
            return FlushReport(
                points=report[0],
                series=report[1],
                dropped_nonfinite=report[2],
                skipped_names=report[3],
                seconds=time.perf_counter() - began,
                through_ms=self._flushed_through_ms,
            )

    def trim(self, now_ms: int) -> None:
        """Forget samples older than the retention that the store holds already."""
        with self._lock:
            cutoff = now_ms - self.retention_ms
            if self.store is not None:
                if self._flushed_through_ms is None:
                    return
                cutoff = min(cutoff, self._flushed_through_ms)
            if self._covered_from_ms is None or cutoff <= self._covered_from_ms:
                return
            kept = MemorySeries()
            everything = [Matcher("__name__", "=~", ".+")]
            for series in self._memory.select(everything, cutoff, 2**62):
                kept.add_series(series)
            self._memory = kept
            self._covered_from_ms = cutoff

    def _write(self, store: FeatureStore, pending: _Pending) -> tuple[int, int, int, int]:
        names = np.array(pending.names, dtype=object)
        values = np.array(pending.values, dtype=np.float64)
        storable_name = {name: bool(METRIC_NAME.match(name)) for name in set(pending.names)}
        name_ok = np.array([storable_name[n] for n in pending.names], dtype=bool)
        finite = np.isfinite(values)
        keep = name_ok & finite
        entities: dict[Labels, str] = {}
        labels: dict[tuple[str, str], dict[str, str]] = {}
        entity_column = []
        for index in np.flatnonzero(keep).tolist():
            label_set = pending.labels[index]
            entity = entities.get(label_set)
            if entity is None:
                entity = entities[label_set] = entity_of(label_set)
            entity_column.append(entity)
            labels.setdefault((pending.names[index], entity), dict(label_set))
        table = pa.table(
            {
                "metric": pa.array(names[keep].tolist(), pa.string()),
                "entity": pa.array(entity_column, pa.string()),
                "ts": pa.array(np.array(pending.ts, dtype=np.int64)[keep], pa.int64()).cast(
                    pa.timestamp("ms", tz="UTC")
                ),
                "value": pa.array(values[keep], pa.float64()),
            }
        )
        if table.num_rows:
            store.write(table, labels=labels, where="recorded metrics")
            # each flush appends a file per metric: merge them as they pile up, so that a
            # long run keeps few files (and a quick first read after a restart)
            store.compact(sorted(n for n, ok in storable_name.items() if ok))
        return (
            table.num_rows,
            len(labels),
            int((name_ok & ~finite).sum()),
            int((~name_ok).sum()),
        )

    # -- reading ------------------------------------------------------------------------

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[Series]:
        """Series matching ``matchers`` with their samples in ``(start_ms, end_ms]``.

        Memory answers for what it covers, the feature store for the time before.
        """
        with self._lock:  # the recorder's thread appends to memory: read it whole, now
            covered = self._covered_from_ms
            recent: list[Series] = []
            if covered is not None and end_ms > covered:
                recent = list(self._memory.select(matchers, max(start_ms, covered), end_ms))
        parts: dict[Labels, list[Series]] = {}
        if self.store is not None and (covered is None or start_ms < covered):
            upper = end_ms if covered is None else min(end_ms, covered)
            for series in _select_store(self.store, matchers, start_ms, upper):
                parts.setdefault(_key(series), []).append(series)
        for series in recent:
            parts.setdefault(_key(series), []).append(series)
        return [_joined(pieces) for _, pieces in sorted(parts.items())]


def _key(series: Series) -> Labels:
    return tuple(sorted(series.labels.items()))


def _joined(pieces: list[Series]) -> Series:
    """One series from its store part and its memory part (in that order in time)."""
    if len(pieces) == 1:
        return pieces[0]
    pieces = sorted(pieces, key=lambda s: int(s.ts[0]) if len(s.ts) else 0)
    return Series(
        labels=pieces[0].labels,
        ts=np.concatenate([s.ts for s in pieces]),
        values=np.concatenate([s.values for s in pieces]),
    )


def _instant(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _select_store(
    store: FeatureStore, matchers: Sequence[Matcher], start_ms: int, end_ms: int
) -> list[Series]:
    """The stored series matching ``matchers``, samples in ``(start_ms, end_ms]``: only the
    metrics and entities that match are read, only from the files of that time."""
    if end_ms <= start_ms:
        return []
    wanted: dict[tuple[str, str], dict[str, str]] = {}
    for metric, entities in store.manifest.series.items():
        name_only = {"__name__": metric}
        if not all(m.matches(name_only) for m in matchers if m.name == "__name__"):
            continue
        for entity, labels in entities.items():
            full = {**labels, "__name__": metric}
            if all(m.matches(full) for m in matchers):
                wanted[(metric, entity)] = full
    if not wanted:
        return []
    table = store.read(
        metrics=sorted({metric for metric, _ in wanted}),
        entities=sorted({entity for _, entity in wanted}),
        start=_instant(start_ms + 1),
        end=_instant(end_ms + 1),
    )
    if table.num_rows == 0:
        return []
    metric = table.column("metric").combine_chunks()
    entity = table.column("entity").combine_chunks()
    metric_codes = metric.indices.to_numpy().astype(np.int64)
    entity_codes = entity.indices.to_numpy().astype(np.int64)
    ts = table.column("ts").combine_chunks().cast(pa.int64()).to_numpy()
    values = table.column("value").combine_chunks().to_numpy()
    key = metric_codes * (len(entity.dictionary) + 1) + entity_codes
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    ends = np.concatenate((starts[1:], [len(key)]))
    metric_names = metric.dictionary.to_pylist()
    entity_names = entity.dictionary.to_pylist()
    found = []
    for first, stop in zip(starts.tolist(), ends.tolist(), strict=True):
        pair = (metric_names[metric_codes[first]], entity_names[entity_codes[first]])
        found_labels = wanted.get(pair)
        if found_labels is not None:
            found.append(Series(labels=found_labels, ts=ts[first:stop], values=values[first:stop]))
    return found


class Recorder:
    """Scrapes ``targets`` every ``scrape_interval_s`` on a thread and records into
    ``metrics``; :meth:`stop` ends the thread and flushes.

    :meth:`scrape_once` does one round by hand (tests, the demo)::

        recorder = Recorder([ScrapeTarget("perfml-serving", url)], MetricsStore(store))
        with recorder:  # started; stopped and flushed on leaving
            ...
    """

    def __init__(
        self,
        targets: Sequence[Target],
        metrics: MetricsStore,
        *,
        scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S,
        scraper: Scraper | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not scrape_interval_s > 0:
            raise BadRecorderSettingError(
                "scrape_interval", scrape_interval_s, "a positive duration"
            )
        self.targets = list(targets)
        self.metrics = metrics
        self.scrape_interval_s = scrape_interval_s
        self._own_scraper = scraper is None
        self.scraper = scraper or Scraper(timeout_s=min(10.0, scrape_interval_s))
        self.clock = clock
        self.last_error: BaseException | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._round_lock = threading.Lock()

    def scrape_once(self, at_ms: int | None = None) -> list[ScrapeResult]:
        """Scrape every target once, stamped ``at_ms`` (now by default), record the samples,
        and flush when a flush is due."""
        with self._round_lock:
            at = round(self.clock() * 1000) if at_ms is None else at_ms
            results = self.scraper.scrape_all(self.targets, at)
            self.metrics.record(results)
            self.metrics.maybe_flush(at)
            return results

    def start(self) -> Self:
        """Scrape on a thread of its own until :meth:`stop`."""
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._loop, name="perfml-recorder", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop scraping, wait for the round under way, flush what is pending."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._round_lock:
            self.metrics.flush()
        if self._own_scraper:
            self.scraper.close()

    def _loop(self) -> None:
        # a failed flush must not end the recording
        every(self.scrape_interval_s, self._stopping, self.scrape_once, "recording", self._failed)

    def _failed(self, error: Exception) -> None:
        self.last_error = error

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
