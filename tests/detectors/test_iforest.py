"""The isolation forest sees combinations; its NumPy trees score exactly as scikit-learn's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import IsolationForest

from perfml.detectors import create, load
from perfml.detectors.errors import BadInputError, NotFittedError
from perfml.detectors.isolation_trees import IsolationTrees
from perfml.sources.fleet import AnomalyKind, generate_fleet

DAY = 288
HISTORY_DAYS = 10


def host_frame(seed: int, host: str, *, anomalies: bool = False) -> pd.DataFrame:
    fleet = generate_fleet(hosts=4, months=1, seed=seed)
    return pd.DataFrame({"ts": fleet.timestamps(), **fleet.host_values(host, anomalies=anomalies)})


# -- the NumPy trees ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_samples", "max_features", "n_estimators"),
    [(256, 1.0, 100), (64, 0.5, 30), (2000, 1.0, 10), (3, 1.0, 5)],
)
def test_numpy_scores_match_score_samples(
    max_samples: int, max_features: float, n_estimators: int
) -> None:
    rng = np.random.default_rng(3)
    x = np.vstack([rng.normal(size=(1900, 8)), rng.normal(6.0, 1.0, size=(100, 8))])
    x[:, 3] = np.round(x[:, 3])  # ties, and thresholds between float32 neighbours
    x[:, 5] *= 1e7
    model = IsolationForest(
        n_estimators=n_estimators,
        max_samples=max_samples,
        max_features=max_features,
        random_state=7,
    ).fit(x)
    trees = IsolationTrees.from_sklearn(model)
    probe = np.vstack([x, rng.normal(0.0, 4.0, size=(500, 8))])
    np.testing.assert_allclose(trees.anomaly_scores(probe), -model.score_samples(probe), atol=1e-12)
    # Row by row as in a batch, to the bit.
    one_by_one = np.concatenate([trees.anomaly_scores(probe[i : i + 1]) for i in range(50)])
    np.testing.assert_array_equal(one_by_one, trees.anomaly_scores(probe[:50]))


# -- what it finds ------------------------------------------------------------------------------


def test_a_latency_storm_with_normal_cpu_scores_above_the_typical() -> None:
    """Four hosts, three hour-long storms each: latency three times normal, CPU as usual."""
    above_median, above_p95 = [], []
    for host in ("host-0000", "host-0001", "host-0002", "host-0003"):
        frame = host_frame(seed=1, host=host)
        detector = create("iforest").fit(frame[: HISTORY_DAYS * DAY])
        later = frame[HISTORY_DAYS * DAY : (HISTORY_DAYS + 2) * DAY].reset_index(drop=True)
        usual = detector.score(later)
        for start in (100, 300, 450):
            storm = later.copy()
            storm.loc[start : start + 11, "request_latency_ms"] *= 3.0
            scores = detector.score(storm)
            np.testing.assert_array_equal(scores[:start], usual[:start])
            during = scores[start : start + 12]
            typical = np.r_[usual[:start], usual[start + 48 :]]  # the storm's wake left out
            above_median.append(during.mean() - np.median(typical))
            above_p95.append(during.max() > np.percentile(typical, 95))
    assert min(above_median) > 0.3
    assert sum(above_p95) >= 11  # of 12


def test_latency_of_the_busy_hours_at_night_is_flagged_in_combination() -> None:
    """Each metric stays within its usual range; only together are they unusual."""
    frame = host_frame(seed=11, host="host-0001")
    history = frame[: HISTORY_DAYS * DAY]
    detector = create("iforest").fit(history)
    later = frame[HISTORY_DAYS * DAY : (HISTORY_DAYS + 2) * DAY].reset_index(drop=True)
    night = int(np.argmin(later.cpu_util[300:500])) + 300
    busy_latency = float(np.percentile(history.request_latency_ms, 95))
    odd = later.copy()
    odd.loc[night : night + 11, "request_latency_ms"] = busy_latency
    scores, usual = detector.score(odd), detector.score(later)
    assert busy_latency < history.request_latency_ms.max()
    assert odd.cpu_util[night : night + 12].max() < np.median(history.cpu_util)
    typical = np.r_[usual[:night], usual[night + 48 :]]
    assert scores[night : night + 12].mean() > np.percentile(typical, 95)


def test_a_generated_latency_storm_without_cpu_is_found() -> None:
    fleet = generate_fleet(hosts=6, months=1, seed=0)
    storm = next(
        a for a in fleet.anomalies if a.kind is AnomalyKind.LATENCY_STORM and a.host == "host-0004"
    )
    assert not any(
        a.kind is AnomalyKind.LATENCY_STORM and a.host == "host-0004" and a.metric == "cpu_util"
        for a in fleet.anomalies
    )
    ts = fleet.timestamps()
    frame = pd.DataFrame({"ts": ts, **fleet.host_values("host-0004")})
    detector = create("iforest").fit(frame[: 7 * DAY])
    scores = detector.score(frame[7 * DAY :])
    rows = np.arange(7 * DAY, len(ts))
    first, last = (int(np.searchsorted(ts, t.timestamp() * 1000)) for t in (storm.start, storm.end))
    inside = (rows >= first) & (rows <= last)
    far = np.abs(rows - first) > 100
    assert scores[inside].mean() > np.percentile(scores[far], 95)
    assert scores[inside].max() > np.percentile(scores[far], 99)


# -- its contract -------------------------------------------------------------------------------


def test_it_refuses_to_score_before_it_is_fitted() -> None:
    detector = create("iforest")
    with pytest.raises(NotFittedError, match="'iforest' must be fitted"):
        detector.update(0, np.zeros(6))
    with pytest.raises(NotFittedError):
        detector.score(pd.DataFrame({"ts": [0], "a": [1.0], "b": [2.0]}))


def test_it_refuses_rows_of_another_width() -> None:
    frame = host_frame(seed=1, host="host-0000")[:DAY]
    detector = create("iforest", n_estimators=10).fit(frame)
    with pytest.raises(BadInputError, match="rows of 5 values; it was fitted on 6"):
        detector.update(0, np.zeros(5))
    with pytest.raises(BadInputError, match="at least 4 rows"):
        create("iforest").fit(frame[:3])


def test_a_missing_metric_counts_as_its_last_value() -> None:
    frame = host_frame(seed=1, host="host-0000")[: 3 * DAY]
    detector = create("iforest", n_estimators=20).fit(frame[: 2 * DAY])
    later = frame[2 * DAY :].reset_index(drop=True)
    gappy, carried = later.copy(), later.copy()
    gappy.loc[50:59, "cpu_util"] = np.nan
    carried.loc[50:59, "cpu_util"] = later.cpu_util[49]
    np.testing.assert_array_equal(detector.score(gappy), detector.score(carried))


def test_a_saved_model_scores_without_scikit_learn(tmp_path: Path) -> None:
    frame = host_frame(seed=1, host="host-0000")[: 3 * DAY]
    detector = create("iforest", n_estimators=20).fit(frame[: 2 * DAY])
    detector.save(tmp_path / "model.zip")
    frame[2 * DAY :].to_parquet(tmp_path / "later.parquet")
    expected = detector.score(frame[2 * DAY :])
    np.save(tmp_path / "expected.npy", expected)
    script = (
        "import sys; sys.modules['sklearn'] = None\n"  # any import of scikit-learn fails
        "import numpy as np, pandas as pd\n"
        "from perfml.detectors import load\n"
        f"d = load({str(tmp_path / 'model.zip')!r})\n"
        f"s = d.score(pd.read_parquet({str(tmp_path / 'later.parquet')!r}))\n"
        f"assert np.array_equal(s, np.load({str(tmp_path / 'expected.npy')!r}))\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    assert np.array_equal(load(tmp_path / "model.zip").score(frame[2 * DAY :]), expected)
