"""Score logs for the Anomalies page, its report section and the Drift page's decisions.

- :func:`small_log`: a hand-made score log of five hosts and two metrics every five minutes
  over the two hours before ``now_ms``: ``host-0001`` anomalous on ``cpu_util`` (and a little
  on ``memory_util``) 90 minutes ago, a fleet-wide event on three hosts 30 minutes ago, a
  labelled window on ``host-0001``'s cpu; fast, for the unit tests and the report;
- :func:`fleet_log`: a generated fleet, a per-host model trained on its first 35 days, and its
  last 25 days backfilled (``perfml score``), with the fleet's labelled windows in the store:
  the scores as perfml writes them, for the browser tests;
- :func:`decision_log`: a decision log with a promotion and a kept candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from perfml.anomalies import ScoreLog, backfill
from perfml.controller.decisions import Action, Decision, DecisionLog
from perfml.detectors import create
from perfml.detectors.series import fit_series
from perfml.featurestore import FeatureStore
from perfml.featurestore.manifest import LabelWindow
from perfml.metadata import MetadataDatabase
from perfml.registry import FilesystemArtifactStore, ModelRegistry
from perfml.registry.detector_versions import register_detector
from perfml.sources.fleet import generate_fleet

STEP_MS = 5 * 60_000
HOSTS = tuple(f"host-{n:04d}" for n in range(5))
METRICS = ("cpu_util", "memory_util")
THRESHOLD = 0.5
DAY_MS = 86_400_000


@dataclass
class Labels:
    """Labelled windows, as the feature store hands them out."""

    found: list[LabelWindow] = field(default_factory=list)

    def windows(
        self, metrics: Sequence[str] | None = None, entities: Sequence[str] | None = None
    ) -> list[LabelWindow]:
        return [
            w
            for w in self.found
            if (metrics is None or w.metric in metrics)
            and (entities is None or w.entity in entities)
        ]


def score_table(
    entity: str, metric: str, ts: np.ndarray, score: np.ndarray, model: str = "cpu"
) -> pa.Table:
    n = len(ts)
    return pa.table(
        {
            "model": [model] * n,
            "version": pa.array([1] * n, pa.int32()),
            "metric": [metric] * n,
            "entity": [entity] * n,
            "ts": pa.array(ts, pa.int64()),
            "value": 50.0 + 40.0 * score,
            "score": score,
            "threshold": [THRESHOLD] * n,
            "written": [0] * n,
        }
    )


def small_log(folder: Path, now_ms: int, extra: Sequence[str] = ()) -> tuple[ScoreLog, Labels]:
    """The log described in the module, and its labels; ``extra`` hosts are scored too, each
    anomalous on cpu an hour ago (a hostile name, say)."""
    log = ScoreLog(folder)
    end = now_ms - now_ms % STEP_MS
    ts = np.arange(end - 2 * 3_600_000, end + 1, STEP_MS, dtype=np.int64)
    rng = np.random.default_rng(3)
    tables = []
    for host in (*HOSTS, *extra):
        for metric in METRICS:
            score = rng.uniform(0.05, 0.3, len(ts))
            if host == "host-0001" and metric == "cpu_util":
                score[(ts >= end - 90 * 60_000) & (ts <= end - 80 * 60_000)] = [0.9, 0.95, 0.8]
            if host == "host-0001" and metric == "memory_util":
                score[ts == end - 85 * 60_000] = 0.6
            if host in HOSTS[2:] and metric == "cpu_util":
                score[ts == end - 30 * 60_000] = 0.7 + 0.05 * HOSTS.index(host)
            if host in extra and metric == "cpu_util":
                score[ts == end - 60 * 60_000] = 0.99
            tables.append(score_table(host, metric, ts, score))
    log.append_batch("cpu", pa.concat_tables(tables))
    labels = Labels(
        [LabelWindow("cpu_util", "host-0001", end - 95 * 60_000, end - 75 * 60_000, "spike")]
    )
    return log, labels


def decision_log(database: MetadataDatabase, now_ms: int) -> DecisionLog:
    """A promotion 2 days ago (drift in memory_util, the gate passed) and a kept candidate
    yesterday (the gate refused)."""
    log = DecisionLog(database)
    figures = {"method": "kl", "threshold": 0.1, "drift": {"cpu_util": 0.04, "memory_util": 0.31}}
    log.record(
        Decision.new(
            "cpu", "2026-05", Action.PROMOTED, at_ms=now_ms - 2 * DAY_MS,
            production="cpu:1", candidate="cpu:2", run_id="r-1",
            reasons=["drift high", "cpu:2 passed the gate: promoted"],
            figures=figures | {"gate": {"passed": True, "reason": "passed"}},
        )
    )  # fmt: skip
    log.record(
        Decision.new(
            "cpu", "2026-06", Action.KEPT, at_ms=now_ms - DAY_MS,
            production="cpu:2", candidate="cpu:3", run_id="r-2", reasons=["kept production"],
            figures=figures | {"gate": {"passed": False, "reason": "f1 0.71 < 0.80"}},
        )
    )  # fmt: skip
    return log


# -- a generated fleet, scored as perfml scores it ---------------------------------------------

FLEET_HOSTS = 5
TRAIN_DAYS = 35


def fleet_log(root: Path) -> tuple[ScoreLog, FeatureStore, list[str]]:
    """The fleet's backfilled score log, its store (points and labelled windows) and its hosts
    (see the module)."""
    fleet = generate_fleet(hosts=FLEET_HOSTS, months=2, seed=41, drift_months=[])
    ticks = fleet.timestamps()
    train_end = int(ticks[0]) + TRAIN_DAYS * DAY_MS
    points = pa.concat_tables(
        table.filter(pc.equal(table.column("metric"), "cpu_util")) for table in fleet.iter_hosts()
    )
    windows = [
        LabelWindow(
            key.split("/")[0],
            key.split("/")[1].removesuffix(".csv"),
            int(lo.timestamp() * 1000),
            int(hi.timestamp() * 1000),
        )
        for key, spans in fleet.windows().items()
        for lo, hi in spans
        if key.startswith("cpu_util/")
    ]
    store = FeatureStore(root / "store")
    store.write(points, windows=windows)
    with MetadataDatabase(f"sqlite:///{root}/fleet.db") as database:
        registry = ModelRegistry(
            database,
            FilesystemArtifactStore(root / "artifacts"),
            actor="tester",
            cache_dir=root / "cache",
            deliver_in_background=False,
        )
        ts = pc.cast(points.column("ts"), pa.int64())
        learnt = points.filter(pc.less(ts, train_end))
        frames = []
        for host in fleet.host_names:
            mine = learnt.filter(pc.equal(learnt.column("entity"), host))
            frames.append(
                (pc.cast(mine.column("ts"), pa.int64()).to_numpy(), mine.column("value").to_numpy())
            )
        states = fit_series(create("streaming"), list(fleet.host_names), frames)
        version = register_detector(
            registry, "cpu", states, features=["cpu_util"],
            data_start=datetime.fromtimestamp(int(ticks[0]) / 1000, UTC),
            data_end=datetime.fromtimestamp((train_end - 1) / 1000, UTC),
        )  # fmt: skip
        registry.set_tag(version.ref, "threshold", "0.35")
        registry.set_alias("cpu", "production", version.version)
        log = ScoreLog(root / "anomalies" / "scores")
        backfill(registry, store, log, "cpu@production")
    return log, store, list(fleet.host_names)
