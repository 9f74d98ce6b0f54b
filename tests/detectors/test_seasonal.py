"""The seasonal baseline judges a point by its time of day and week, and follows change."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from perfml.detectors import create
from perfml.detectors.errors import BadParamsError
from perfml.detectors.seasonal import SeasonalDetector
from perfml.sources.fleet import generate_fleet

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
STEP_MS = 300_000


def _score_at(tail: float) -> float:
    """The seasonal score of a deviation whose two-sided tail probability is ``tail``."""
    surprise = -math.log10(tail)
    return surprise / (surprise + 3.0)


P1, P01, P001 = _score_at(0.1), _score_at(0.01), _score_at(0.001)


def frame(ts: np.ndarray, values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"ts": ts, "value": values})


def office_day(days: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``days`` of 5-minute points: 20 at night, 60 around 13:00, noise of σ 1.5."""
    ts = np.arange(days * 288, dtype=np.int64) * STEP_MS
    hour = ts % DAY_MS / HOUR_MS
    level = 20.0 + 40.0 * np.exp(-(((hour - 13.0) / 3.0) ** 2))
    return ts, level + np.random.default_rng(seed).normal(0.0, 1.5, ts.size)


@pytest.mark.parametrize("host", range(3))
def test_noon_load_at_three_in_the_morning_is_flagged_where_a_global_threshold_is_not(
    host: int,
) -> None:
    fleet = generate_fleet(hosts=3, months=1, seed=4)
    profile = fleet.hosts[host]
    ts = fleet.timestamps()
    cpu = fleet.host_values(profile.name, anomalies=False)["cpu_util"]
    local_hour = (ts // HOUR_MS + profile.utc_offset_hours) % 24
    weekday = (ts // DAY_MS + 3) % 7 < 5  # 1970-01-01 was a Thursday
    history = slice(0, 21 * 288)
    detector = create("seasonal").fit(frame(ts[history], cpu[history]))

    busy = float(np.median(cpu[history][(local_hour[history] == 12) & weekday[history]]))
    later = np.arange(21 * 288, 28 * 288)
    three_am = later[(local_hour[later] == 3) & weekday[later]][0]
    noon = later[(local_hour[later] == 12) & weekday[later]][0]
    first, second = sorted([three_am, noon])
    at_both = detector.score(frame(ts[[first, second]], np.array([busy] * 2)))
    scores = dict(zip([first, second], at_both, strict=True))
    assert scores[three_am] > P001
    assert scores[noon] < P1
    # A single threshold learnt from the same history lets the noon level pass at any hour.
    assert busy < np.percentile(cpu[history], 99)
    median = np.median(cpu[history])
    robust_z = (busy - median) / (1.4826 * np.median(np.abs(cpu[history] - median)))
    assert robust_z < 3.0


def test_it_follows_a_workload_change_within_its_horizon() -> None:
    ts, values = office_day(16)
    change = 8 * 288
    values[change:] *= 1.5  # from day 8 on, every hour carries half as much again
    history, later = slice(0, change), slice(change, None)

    def scores(horizon: int, slot_capacity: int = 64) -> np.ndarray:
        detector = create("seasonal", season="day", horizon=horizon, slot_capacity=slot_capacity)
        detector.fit(frame(ts[history], values[history]))
        return detector.score(frame(ts[later], values[later]))

    before = create("seasonal", season="day", horizon=3).fit(frame(ts[:change], values[:change]))
    usual = before.score(frame(ts[7 * 288 : change], values[7 * 288 : change]))
    after = scores(horizon=3)
    first_hours, settled = after[: 6 * 12], after[3 * 288 :]
    assert np.mean(first_hours) > P01  # the change itself stands out
    # Once the horizon has passed, the new level is the norm: as few alarms as before.
    assert np.mean(settled > P001) <= max(2 * np.mean(usual > P001), 0.01)
    assert np.median(settled) < np.median(usual) + 0.1
    # A longer memory takes longer: three days after the change it still sees the old level.
    assert np.median(scores(horizon=10, slot_capacity=120)[3 * 288 : 4 * 288]) > P01


def test_a_new_series_is_judged_against_its_recent_values_until_its_slots_fill() -> None:
    ts, values = office_day(3)
    detector = create("seasonal", season="day")
    rows = list(zip(ts.tolist(), values.tolist(), strict=True))
    warm_up = [detector.update(t, v) for t, v in rows[:12]]
    assert warm_up == [0.0] * 12  # nothing to judge by yet
    for t, v in rows[12:200]:
        detector.update(t, v)
    # On the first day, against the series' last values: a point at the day's level passes,
    # a point ten times higher does not.
    t, v = rows[200]
    assert detector.copy().update(t, v) < P1
    assert detector.copy().update(t, 10 * v) > P001
    # From the second day on, each hour is judged against its own.
    for t, v in rows[200:]:
        detector.update(t, v)
    assert detector.update(rows[-1][0] + 3 * 3_600_000 + STEP_MS, 60.0) > P001


def test_direction_up_ignores_drops() -> None:
    ts, values = office_day(8)
    history = frame(ts[: 7 * 288], values[: 7 * 288])
    later_ts = ts[7 * 288 + 36 : 7 * 288 + 38]  # 03:00 and 03:05
    drop_and_rise = np.array([0.0, 60.0])
    up = create("seasonal", season="day", direction="up").fit(history)
    both = create("seasonal", season="day").fit(history)
    assert up.score(frame(later_ts, drop_and_rise)).tolist()[0] == 0.0
    assert up.score(frame(later_ts, drop_and_rise))[1] > P001
    assert np.all(both.score(frame(later_ts, drop_and_rise)) > P001)


def test_a_missing_value_scores_zero_and_is_not_learnt() -> None:
    ts, values = office_day(2)
    detector = create("seasonal", season="day").fit(frame(ts, values))
    _, arrays = detector.get_state()
    assert detector.update(int(ts[-1]) + STEP_MS, float("nan")) == 0.0
    assert detector.update(int(ts[-1]) + 2 * STEP_MS, float("inf")) == 0.0
    for name, array in detector.get_state()[1].items():
        np.testing.assert_array_equal(array, arrays[name])


def test_slots_follow_the_parameters() -> None:
    detector = create("seasonal", season="day", slot_minutes=30)
    assert isinstance(detector, SeasonalDetector)
    assert detector.slots == 48
    assert create("seasonal").slots == 168


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"slot_minutes": 11}, "slot_minutes = 11: Value error, must divide the season"),
        ({"min_slot_seasons": 5}, "cannot exceed horizon"),
        ({"min_slot_values": 100}, "cannot exceed slot_capacity"),
        ({"min_global_values": 300}, "cannot exceed global_window"),
        ({"season": "month"}, "season = 'month'"),
        ({"horizon": 0}, "horizon = 0"),
    ],
)
def test_bad_parameters_are_refused_with_the_offending_value(
    params: dict[str, object], message: str
) -> None:
    with pytest.raises(BadParamsError, match=message):
        create("seasonal", **params)
