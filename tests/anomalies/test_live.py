"""The live loop: each new point scored with its series' state and learnt, once, across
restarts and promotions; scores in the log and in /metrics; incidents per host."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from fixtures.registry import database, registry, registry_url
from perfml.anomalies import LiveScorer, NotScorableError, ScoreLog, backfill, find_incidents
from perfml.anomalies.report import against_labels
from perfml.detectors import create
from perfml.detectors.series import fit_series
from perfml.featurestore import FeatureStore
from perfml.registry import ModelRegistry
from perfml.registry.detector_versions import register_detector
from perfml.sources.fleet import generate_fleet

__all__ = ["database", "registry", "registry_url"]

METRIC = "cpu_util"
DAY = 86_400_000
FLEET = generate_fleet(hosts=5, months=2, seed=41, drift_months=[])
TICKS = FLEET.timestamps()
TRAIN_END = int(TICKS[0]) + 35 * DAY  # the version learns 35 days; the rest arrives live


def points_of(lo: int, hi: int, metrics: tuple[str, ...] = (METRIC,)) -> pa.Table:
    """The fleet's points of ``metrics`` with lo <= ts < hi, as the store would hand them."""
    parts = []
    for table in FLEET.iter_hosts():
        ts = pc.cast(table.column("ts"), pa.int64())
        keep = pc.and_(
            pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi)),
            pc.is_in(table.column("metric"), pa.array(metrics)),
        )
        parts.append(table.filter(keep))
    return pa.concat_tables(parts)


def train(registry: ModelRegistry, end: int, threshold: float = 0.35) -> int:
    """Register per-host states learnt up to ``end``; production points at it."""
    history = points_of(int(TICKS[0]), end)
    entities, frames = [], []
    for host in FLEET.host_names:
        mine = history.filter(pc.equal(history.column("entity"), host))
        entities.append(host)
        frames.append(
            (pc.cast(mine.column("ts"), pa.int64()).to_numpy(), mine.column("value").to_numpy())
        )
    states = fit_series(create("streaming"), entities, frames)
    version = register_detector(
        registry, "cpu", states, features=[METRIC],
        data_start=datetime.fromtimestamp(int(TICKS[0]) / 1000, UTC),
        data_end=datetime.fromtimestamp(end / 1000, UTC),  # the window [start, end)
    )  # fmt: skip
    registry.set_tag(version.ref, "threshold", str(threshold))
    registry.set_alias("cpu", "production", version.version)
    return version.version


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    found = FeatureStore(tmp_path / "store")
    found.write(points_of(int(TICKS[0]), TRAIN_END))
    return found


def scorer(
    registry: ModelRegistry, store: FeatureStore, folder: Path, **options: object
) -> LiveScorer:
    return LiveScorer(registry, store, folder, ["cpu@production"], **options)  # type: ignore[arg-type]


def arrive(store: FeatureStore, live: LiveScorer, lo: int, hi: int, day: int = DAY) -> int:
    """Points of [lo, hi) stored and fed a day at a time, as the receiver hands them over."""
    scored = 0
    for at in range(lo, hi, day):
        batch = points_of(at, min(at + day, hi))
        store.write(batch)
        scored += live.feed(batch)
    return scored


def expected_scores(registry: ModelRegistry, lo: int, hi: int) -> dict[tuple[str, int], float]:
    """Each point of [lo, hi) scored by the production version's own series, replayed."""
    from perfml.registry.detector_versions import load_detector

    _, states = load_detector(registry, "cpu@production")
    arrived = points_of(lo, hi)
    series = []
    for host in FLEET.host_names:
        mine = arrived.filter(pc.equal(arrived.column("entity"), host))
        series.append(
            (pc.cast(mine.column("ts"), pa.int64()).to_numpy(), mine.column("value").to_numpy())
        )
    replayed = states.replay(list(FLEET.host_names), series)
    return {
        (host, int(t)): float(s)
        for host, (ts, _), scores in zip(FLEET.host_names, series, replayed, strict=True)
        for t, s in zip(ts, scores, strict=True)
    }


def logged(folder: Path) -> dict[tuple[str, int], float]:
    table = ScoreLog(folder / "scores").read()
    keys = list(
        zip(table.column("entity").to_pylist(), table.column("ts").to_pylist(), strict=True)
    )
    assert len(keys) == len(set(keys))
    return dict(zip(keys, table.column("score").to_pylist(), strict=True))


def test_each_point_is_scored_by_its_own_series_once_and_logged(
    registry: ModelRegistry, store: FeatureStore, tmp_path: Path
) -> None:
    train(registry, TRAIN_END)
    end = TRAIN_END + 7 * DAY
    live = scorer(registry, store, tmp_path / "live").start(background=False)
    assert arrive(store, live, TRAIN_END, end) == 5 * 7 * 288
    live.feed(points_of(TRAIN_END, TRAIN_END + DAY))  # repeated: counted, not scored again
    live.stop()
    found = logged(tmp_path / "live")
    wanted = expected_scores(registry, TRAIN_END, end)
    assert found.keys() == wanted.keys()
    assert np.allclose([found[k] for k in wanted], list(wanted.values()))
    assert live.models["cpu@production"].late == 5 * 288


def test_a_crash_after_the_checkpoint_loses_no_point_and_scores_none_twice(
    registry: ModelRegistry, store: FeatureStore, tmp_path: Path
) -> None:
    train(registry, TRAIN_END)
    folder = tmp_path / "live"
    first = scorer(registry, store, folder).start(background=False)
    arrive(store, first, TRAIN_END, TRAIN_END + 3 * DAY)
    first.checkpoint()
    arrive(store, first, TRAIN_END + 3 * DAY, TRAIN_END + 5 * DAY)
    first.flush()  # scores past the checkpoint are on disk; then the process dies
    store.write(points_of(TRAIN_END + 5 * DAY, TRAIN_END + 6 * DAY))  # stored, never fed
    second = scorer(registry, store, folder).start(background=False)  # restores, catches up
    arrive(store, second, TRAIN_END + 6 * DAY, TRAIN_END + 7 * DAY)
    second.stop()
    found = logged(folder)
    wanted = expected_scores(registry, TRAIN_END, TRAIN_END + 7 * DAY)
    assert found.keys() == wanted.keys()
    assert np.allclose([found[k] for k in wanted], list(wanted.values()))


def test_a_promotion_hands_the_series_over_without_a_gap(
    registry: ModelRegistry, store: FeatureStore, tmp_path: Path
) -> None:
    train(registry, TRAIN_END)
    live = scorer(registry, store, tmp_path / "live").start(background=False)
    arrive(store, live, TRAIN_END, TRAIN_END + 7 * DAY)
    second = train(registry, TRAIN_END + 5 * DAY)  # knows two of the seven days live
    assert live.follow() == ["cpu@production"]
    arrive(store, live, TRAIN_END + 7 * DAY, TRAIN_END + 9 * DAY)
    live.stop()
    table = ScoreLog(tmp_path / "live" / "scores").read()
    ts, version = table.column("ts").to_numpy(), table.column("version").to_numpy()
    assert len(ts) == 5 * 9 * 288  # every point once, none lost at the handover
    assert set(version[ts < TRAIN_END + 7 * DAY]) == {1}
    assert set(version[ts >= TRAIN_END + 7 * DAY]) == {second}
    # v2 learnt days 6 and 7 once, from the store: its scores are its own series' replay
    found = logged(tmp_path / "live")
    wanted = expected_scores(registry, TRAIN_END + 5 * DAY, TRAIN_END + 9 * DAY)
    after = [k for k in wanted if k[1] >= TRAIN_END + 7 * DAY]
    assert np.allclose([found[k] for k in after], [wanted[k] for k in after])


def test_the_last_scores_are_metrics_per_series_and_large_fleets_export_the_anomalous(
    registry: ModelRegistry, store: FeatureStore, tmp_path: Path
) -> None:
    train(registry, TRAIN_END)
    live = scorer(registry, store, tmp_path / "live").start(background=False)
    arrive(store, live, TRAIN_END, TRAIN_END + DAY)
    metrics = CollectorRegistry()
    metrics.register(live)
    text = generate_latest(metrics).decode()
    for host in FLEET.host_names:
        assert f'perfml_anomaly_score{{entity="{host}",metric="cpu_util",model="cpu"}}' in text
    assert 'perfml_anomaly_threshold{model="cpu"} 0.35' in text
    assert 'perfml_fleet_entities{model="cpu"} 5.0' in text
    live.max_exported = 2
    latest = live.models["cpu@production"].latest
    over = {FLEET.host_names[i] for i in np.flatnonzero(latest >= 0.35)}
    text = generate_latest(metrics).decode()
    exported = {h for h in FLEET.host_names if f'entity="{h}"' in text}
    assert exported == over


def test_incidents_name_the_host_the_metrics_and_the_time_and_match_the_labels(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    store = FeatureStore(tmp_path / "store")
    store.write(points_of(int(TICKS[0]), TRAIN_END, ("cpu_util", "memory_util")))
    train(registry, TRAIN_END)
    log = ScoreLog(tmp_path / "scores")
    result = backfill(registry, store, log, "cpu@production")  # nothing after the version
    assert result.points == 0
    store.write(points_of(TRAIN_END, int(TICKS[-1]) + 1))
    result = backfill(
        registry, store, log, "cpu@production", start=datetime.fromtimestamp(TRAIN_END / 1000, UTC)
    )
    assert result.points == 5 * (len(TICKS) - 35 * 288)
    findings = find_incidents(log, gap_ms=30 * 60_000)
    assert findings.fleet_size == 5
    windows = [
        (
            key.split("/")[0],
            key.split("/")[1][:-4],
            int(lo.timestamp() * 1000),
            int(hi.timestamp() * 1000),
        )
        for key, spans in FLEET.windows().items()
        for lo, hi in spans
        if key.startswith("cpu_util/") and hi.timestamp() * 1000 >= TRAIN_END
    ]
    assert windows, "the fleet has labelled cpu anomalies after the training window"
    judged = against_labels(findings, windows)
    assert judged.found == judged.windows  # each labelled window has its host's incident
    for _, host, lo, hi in windows:
        assert any(i.start_ms <= hi and lo <= i.end_ms for i in findings.entity(host))
    for incident in findings.incidents:
        assert incident.entity in FLEET.host_names
        assert incident.metrics[0].metric == "cpu_util"
        assert incident.start_ms <= incident.peak_ms <= incident.end_ms
        assert incident.peak_score >= 0.35


def test_a_model_of_many_metrics_or_without_a_threshold_is_refused_by_name(
    registry: ModelRegistry, store: FeatureStore, tmp_path: Path
) -> None:
    states = fit_series(create("streaming"), ["h"], [(np.arange(10) * 300_000, np.ones(10))])
    register_detector(registry, "cpu", states, features=[METRIC])
    registry.set_alias("cpu", "production", 1)
    live = scorer(registry, store, tmp_path / "live").start(background=False)
    assert live.models == {}
    assert (
        "model cpu@production cannot be scored: version 1 records no threshold"
        in (live.waiting["cpu@production"])
    )
    with pytest.raises(NotScorableError, match="version 1 records no threshold"):
        backfill(registry, store, ScoreLog(tmp_path / "scores"), "cpu@production")
    registry.set_tag("cpu:1", "threshold", "0.35")  # it is tried again as the loop follows
    assert live.follow() == ["cpu@production"]
    assert live.models["cpu@production"].threshold == 0.35
