"""The live loop: every new point of a watched metric scored with its series' state, then learnt.

:class:`LiveScorer` follows model references (``cpu@production``). For each it holds the
version's per-series states (:class:`~perfml.detectors.series.SeriesStates`: a host never
seen starts from the fleet prior) and, per series, the time of the last point it learnt. Points
come in through :meth:`LiveScorer.feed` — from the remote-write receiver once they are stored,
from a scheduled pull, from a test — and each point newer than its series' last is scored
against the series as it stands and then learnt; an older one (late, or repeated) is counted
and left alone. Scores go to the :class:`~perfml.anomalies.scores.ScoreLog` every
``flush_every`` seconds and to ``/metrics`` at once (:meth:`LiveScorer.collect`).

**Restart.** Every ``checkpoint_every`` seconds (and on stop) the states, the per-series
times and the number of the last score file are saved, the checkpoint's small JSON file being
the commit point. On start, a checkpoint of the version still referenced is restored, the
score files written after it are removed, and the points stored since each series' time are
read from the feature store and scored again: no gap, no point learnt twice.

**Promotion.** When the reference moves, the new version learns the points stored after the
end of its training data (already scored by the old version, so not scored again), and then
takes over: every point has exactly one score.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from perfml.anomalies.errors import CheckpointError, NotScorableError
from perfml.anomalies.scores import ScoreLog
from perfml.atomic import atomic_output
from perfml.detectors.series import SeriesStates, load_series
from perfml.errors import PerfmlError
from perfml.registry.detector_versions import load_detector
from perfml.registry.records import ModelVersion

if TYPE_CHECKING:
    from perfml.featurestore import FeatureStore
    from perfml.registry import ModelRegistry

log = logging.getLogger(__name__)

NEVER = np.iinfo(np.int64).min
"""The last time of a series that has learnt nothing live."""
CHECKPOINT_FORMAT = 1


@dataclass
class LiveModel:
    """One followed reference, as it is scored now."""

    ref: str
    version: ModelVersion
    metric: str
    threshold: float
    states: SeriesStates
    last_ts: np.ndarray
    """Per series (row of ``states``): the time of the last point learnt, ms."""
    latest: np.ndarray
    """Per series: the score of its last point (NaN: none yet)."""
    seq: int = 0
    """The number of the last score file written."""
    pending: list[pa.Table] = field(default_factory=list)
    scored: int = 0
    late: int = 0
    last_point_ms: int = 0

    @property
    def model(self) -> str:
        return self.version.model

    def grow(self) -> None:
        """Room in ``last_ts`` and ``latest`` for series added to ``states``."""
        more = len(self.states) - len(self.last_ts)
        if more > 0:
            self.last_ts = np.concatenate([self.last_ts, np.full(more, NEVER, np.int64)])
            self.latest = np.concatenate([self.latest, np.full(more, np.nan)])


class LiveScorer(Collector):
    """Scores the points of the metrics of ``refs`` as they arrive (see the module)."""

    def __init__(
        self,
        registry: ModelRegistry,
        store: FeatureStore,
        folder: str | Path,
        refs: Sequence[str],
        *,
        flush_every: float = 5.0,
        checkpoint_every: float = 60.0,
        follow_every: float = 10.0,
        max_exported: int = 10_000,
    ) -> None:
        self.registry = registry
        self.store = store
        self.folder = Path(folder)
        self.scores = ScoreLog(self.folder / "scores")
        self.refs = list(dict.fromkeys(refs))
        self.flush_every = flush_every
        self.checkpoint_every = checkpoint_every
        self.follow_every = follow_every
        self.max_exported = max_exported
        self.models: dict[str, LiveModel] = {}
        self.waiting: dict[str, str] = {}
        """The references not scored yet, and why."""
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.handovers = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, background: bool = True) -> Self:
        """Open every reference (restoring checkpoints, catching up from the store) and, with
        ``background``, flush, checkpoint and follow promotions on a thread."""
        with self._lock:
            for ref in self.refs:
                self._try_open(ref)
        if background:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="perfml-live", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread; flush and checkpoint everything (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
            self._thread = None
        self.checkpoint()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        now = time.monotonic()
        next_checkpoint, next_follow = now + self.checkpoint_every, now + self.follow_every
        while not self._stop.wait(self.flush_every):
            try:
                self.flush()
                now = time.monotonic()
                if now >= next_follow:
                    self.follow()
                    next_follow = now + self.follow_every
                if now >= next_checkpoint:
                    self.checkpoint()
                    next_checkpoint = now + self.checkpoint_every
            except Exception:  # the loop must outlive one bad round; the next one retries
                log.exception("live scoring round failed")

    # -- points in -----------------------------------------------------------------------------

    def feed(self, points: pa.Table) -> int:
        """Score and learn the points (long format: metric, entity, ts, value) of the
        followed metrics; returns how many were scored."""
        if not points.num_rows:
            return 0
        scored = 0
        with self._lock:
            metric = points.column("metric").cast(pa.string())
            for live in self.models.values():
                mine = points.filter(pc.equal(metric, live.metric))
                if mine.num_rows:
                    scored += score_points(live, mine, write=True)
        return scored

    # -- scores and checkpoints out ----------------------------------------------------------

    def flush(self) -> None:
        """Write the scores not written yet, one file per model."""
        with self._lock:
            for live in self.models.values():
                if live.pending:
                    table = pa.concat_tables(live.pending)
                    self.scores.append_live(live.model, live.seq + 1, table)
                    live.seq += 1
                    live.pending.clear()

    def checkpoint(self) -> None:
        """Flush, then save each model's states, per-series times and last score file."""
        with self._lock:
            self.flush()
            for live in self.models.values():
                self._save(live)
                self.scores.merge(live.model, live.seq)

    def _checkpoint_path(self, model: str) -> Path:
        return self.folder / "checkpoints" / f"{model}.json"

    def _save(self, live: LiveModel) -> None:
        folder = self.folder / "checkpoints"
        stem = f"{live.model}-v{live.version.version}-{live.seq:012d}"
        states_file = folder / f"{stem}.zip"
        times_file = folder / f"{stem}.times.npy"
        previous = self._read_checkpoint(live.model)
        if previous is not None and previous.get("states") == states_file.name:
            return  # nothing new since
        with atomic_output(states_file, durable=True) as partial:
            live.states.save(partial)
        with atomic_output(times_file, durable=True) as partial, partial.open("wb") as out:
            np.save(out, live.last_ts)
        record = {
            "format": CHECKPOINT_FORMAT,
            "ref": live.ref,
            "model": live.model,
            "version": live.version.version,
            "metric": live.metric,
            "seq": live.seq,
            "states": states_file.name,
            "times": times_file.name,
            "saved_at": datetime.now(UTC).isoformat(),
        }
        with atomic_output(self._checkpoint_path(live.model), durable=True) as partial:
            partial.write_text(json.dumps(record, indent=1))
        for old in folder.glob(f"{live.model}-v*"):
            if old.name not in (states_file.name, times_file.name):
                old.unlink(missing_ok=True)

    def _read_checkpoint(self, model: str) -> dict[str, Any] | None:
        path = self._checkpoint_path(model)
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
            if record.get("format") != CHECKPOINT_FORMAT:
                raise CheckpointError(path, f"format {record.get('format')!r} is not known")
            return dict(record)
        except (OSError, ValueError) as exc:
            raise CheckpointError(path, str(exc)) from None

    # -- opening a reference ---------------------------------------------------------------------

    def _open(self, ref: str) -> LiveModel:
        version = self.registry.resolve(ref)
        metric, threshold = scorable(ref, version)
        record = self._read_checkpoint(version.model)
        live: LiveModel | None = None
        if record is not None and record["version"] == version.version:
            live = self._restore(ref, version, metric, threshold, record)
        if live is None:
            _, states = load_detector(self.registry, ref)
            start = _learnt_until(version)
            live = LiveModel(
                ref, version, metric, threshold, states,
                last_ts=np.full(len(states), start, np.int64),
                latest=np.full(len(states), np.nan),
                seq=self.scores.last_live_seq(version.model),
            )  # fmt: skip
        self._catch_up(live, write=True)
        return live

    def _restore(
        self, ref: str, version: ModelVersion, metric: str, threshold: float,
        record: dict[str, Any],
    ) -> LiveModel | None:  # fmt: skip
        folder = self.folder / "checkpoints"
        try:
            states = load_series(folder / record["states"])
            last_ts = np.load(folder / record["times"])
        except Exception as exc:  # an unreadable checkpoint: start again from the version
            log.warning(
                "live checkpoint of %s unusable (%s); starting from %s", ref, exc, version.ref
            )
            return None
        if len(last_ts) != len(states):
            log.warning("live checkpoint of %s is inconsistent; starting from %s", ref, version.ref)
            return None
        seq = int(record["seq"])
        removed = self.scores.truncate(version.model, after=seq)
        if removed:
            log.info("%s: %d score files past the checkpoint removed; scoring again", ref, removed)
        return LiveModel(ref, version, metric, threshold, states, last_ts,
                         np.full(len(states), np.nan), seq=seq)  # fmt: skip

    def _catch_up(self, live: LiveModel, write: bool) -> int:
        """Feed ``live`` the stored points newer than its series' times."""
        known = live.last_ts[live.last_ts != NEVER]
        start = int(known.min()) + 1 if len(known) else _ms(live.version.data_end)
        if start == NEVER:
            start = None  # type: ignore[assignment]
        begin = None if start is None else datetime.fromtimestamp(start / 1000, UTC)
        points = self.store.read(live.metric, start=begin)
        return score_points(live, points, write=write) if points.num_rows else 0

    def _try_open(self, ref: str) -> None:
        """Open ``ref``, or note why not (no version yet, none scorable): it is tried again
        at each :meth:`follow`."""
        try:
            self.models[ref] = self._open(ref)
        except PerfmlError as exc:
            if self.waiting.get(ref) != str(exc):
                log.warning("not scoring %s live yet: %s", ref, exc)
            self.waiting[ref] = str(exc)
        else:
            self.waiting.pop(ref, None)

    # -- promotions ------------------------------------------------------------------------------

    def follow(self) -> list[str]:
        """Hand each reference that moved to its new version, and open those that could not
        be opened before; returns those that moved or opened."""
        moved = []
        for ref in list(self.waiting):
            with self._lock:
                self._try_open(ref)
            if ref in self.models:
                moved.append(ref)
        for ref in list(self.models):
            try:
                version = self.registry.resolve(ref)
            except PerfmlError as exc:  # the alias was removed: keep scoring with what we have
                log.warning("cannot follow %s: %s", ref, exc)
                continue
            if version.version == self.models[ref].version.version:
                continue
            metric, threshold = scorable(ref, version)
            _, states = load_detector(self.registry, ref)
            fresh = LiveModel(
                ref, version, metric, threshold, states,
                last_ts=np.full(len(states), _learnt_until(version), np.int64),
                latest=np.full(len(states), np.nan),
            )  # fmt: skip
            with self._lock:
                old = self.models[ref]
                self.flush()
                # what the old version scored since the new one's data ends: learnt, not scored
                self._catch_up(fresh, write=False)
                fresh.seq = old.seq
                fresh.scored, fresh.late = old.scored, old.late
                fresh.latest = _carry(old, fresh)
                fresh.last_point_ms = old.last_point_ms
                self.models[ref] = fresh
                self._save(fresh)
            moved.append(ref)
            self.handovers += 1
            log.info("live scoring of %s handed from %s to %s", ref, old.version.ref, version.ref)
        return moved

    # -- /metrics --------------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        score = GaugeMetricFamily(
            "perfml_anomaly_score",
            "The anomaly score of each series' last point (anomalous at or over the threshold)",
            labels=["metric", "entity", "model"],
        )
        threshold = GaugeMetricFamily(
            "perfml_anomaly_threshold", "The threshold of the version scoring live",
            labels=["model"],
        )  # fmt: skip
        entities = GaugeMetricFamily(
            "perfml_fleet_entities", "Entities the model scores live", labels=["model"]
        )
        version = GaugeMetricFamily(
            "perfml_live_version", "The version scoring live", labels=["model"]
        )
        last = GaugeMetricFamily(
            "perfml_live_last_point_timestamp_seconds",
            "The time of the newest point scored live",
            labels=["model"],
        )
        points = CounterMetricFamily(
            "perfml_live_points", "Points the live loop scored, or left as late or repeated",
            labels=["model", "outcome"],
        )  # fmt: skip
        with self._lock:
            models = list(self.models.values())
            for live in models:
                latest = live.latest
                seen = np.flatnonzero(~np.isnan(latest))
                if len(seen) > self.max_exported:
                    seen = seen[latest[seen] >= live.threshold]
                names = live.states.entities
                for row in seen.tolist():
                    score.add_metric([live.metric, names[row], live.model], float(latest[row]))
                threshold.add_metric([live.model], live.threshold)
                entities.add_metric([live.model], float(len(live.states)))
                version.add_metric([live.model], float(live.version.version))
                last.add_metric([live.model], live.last_point_ms / 1000)
                points.add_metric([live.model, "scored"], float(live.scored))
                points.add_metric([live.model, "late"], float(live.late))
        yield from (score, threshold, entities, version, last, points)


def score_points(live: LiveModel, points: pa.Table, write: bool) -> int:
    """Score and learn ``points`` (long format) of ``live``'s metric, each newer than its
    series' last; with ``write``, keep the scores for the log and ``/metrics``; returns how
    many were scored."""
    entities = points.column("entity").cast(pa.string()).to_pylist()
    ts = _millis(points.column("ts"))
    values = points.column("value").to_numpy(zero_copy_only=False).astype(np.float64)
    rows = live.states.rows(entities, add=True)
    live.grow()
    order = np.lexsort((ts, rows))
    rows, ts, values = rows[order], ts[order], values[order]
    names = np.asarray(entities, dtype=object)[order]  # the batch's own: O(points), not O(series)
    before = np.empty_like(ts)
    if len(ts):
        before[0] = live.last_ts[rows[0]]
        same = rows[1:] == rows[:-1]
        last = live.last_ts[rows[1:]]
        before[1:] = np.where(same, np.maximum(ts[:-1], last), last)
    fresh = ts > before
    # a repeated time within the batch: the first was kept, the next is not newer than it
    live.late += int((~fresh).sum())
    rows, ts, values, names = rows[fresh], ts[fresh], values[fresh], names[fresh]
    if not len(rows):
        return 0
    scores = live.states.step(rows, ts, values)
    live.last_ts[rows] = ts  # sorted by row then time: the last assignment is the newest
    if not write:
        return 0
    live.latest[rows] = scores
    live.scored += len(rows)
    live.last_point_ms = max(live.last_point_ms, int(ts.max()))
    now = int(time.time() * 1000)
    live.pending.append(
        pa.table(
            {
                "model": pa.array([live.model] * len(rows), pa.string()),
                "version": pa.array(np.full(len(rows), live.version.version, np.int32)),
                "metric": pa.array([live.metric] * len(rows), pa.string()),
                "entity": pa.array(names.tolist(), pa.string()),
                "ts": pa.array(ts, pa.int64()),
                "value": pa.array(values, pa.float64()),
                "score": pa.array(scores, pa.float64()),
                "threshold": pa.array(np.full(len(rows), live.threshold)),
                "written": pa.array(np.full(len(rows), now, np.int64)),
            }
        )
    )
    return len(rows)


def scorable(ref: str, version: ModelVersion) -> tuple[str, float]:
    """The metric and threshold ``version`` scores with, or why it cannot be scored."""
    if len(version.features) != 1:
        raise NotScorableError(
            ref, f"version {version.version} scores {len(version.features)} metrics "
            f"({', '.join(version.features)}); live scoring takes one metric per model",
        )  # fmt: skip
    if version.threshold is None:
        raise NotScorableError(ref, f"version {version.version} records no threshold")
    return version.features[0], float(version.threshold)


def _carry(old: LiveModel, fresh: LiveModel) -> np.ndarray:
    """The old version's last scores, by entity, for the new version's rows."""
    fresh.grow()
    carried = np.full(len(fresh.states), np.nan)
    rows = fresh.states.rows(old.states.entities)
    known = rows >= 0
    carried[rows[known]] = old.latest[: len(rows)][known]
    return carried


def _millis(column: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())
    return np.asarray(column.to_numpy(zero_copy_only=False), np.int64)


def _learnt_until(version: ModelVersion) -> int:
    """The time of the last point a version learnt: its window ``[data_start, data_end)``
    ends just before ``data_end``."""
    return NEVER if version.data_end is None else _ms(version.data_end) - 1


def _ms(moment: datetime | None) -> int:
    return NEVER if moment is None else int(moment.timestamp() * 1000)
