"""SeriesStates.keeping: the states of some entities taken, byte for byte, from other states."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.detectors import RollingZScore
from perfml.detectors import create
from perfml.detectors.series import SeriesStates, fit_series


def learnt(kind: str, entities: list[str], level: float) -> SeriesStates:
    ts = np.arange(300, dtype=np.int64) * 300_000
    frames = [(ts, level + i + np.sin(np.arange(300) / (5 + i))) for i in range(len(entities))]
    return fit_series(create(kind), entities, frames)


def saved_state(states: SeriesStates, entity: str) -> list[bytes]:
    meta, arrays = states.series(entity).get_state()
    return [repr(meta).encode(), *(np.ascontiguousarray(a).tobytes() for a in arrays.values())]


@pytest.mark.parametrize("kind", ["streaming", RollingZScore.name])
def test_kept_entities_hold_the_other_states_and_the_rest_their_own(kind: str) -> None:
    old = learnt(kind, ["a", "b", "c"], 10.0)
    new = learnt(kind, ["a", "b", "c", "d"], 50.0)
    merged = new.keeping(old, ["a", "c", "gone"])
    assert merged.entities == ["a", "b", "c", "d"]  # the order of the new states
    for entity, source in (("a", old), ("b", new), ("c", old), ("d", new)):
        assert saved_state(merged, entity) == saved_state(source, entity), entity
    assert saved_state(merged, "a") != saved_state(new, "a")
    assert saved_state(new, "a") == saved_state(learnt(kind, ["a", "b", "c", "d"], 50.0), "a")


def test_states_of_another_kind_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot keep states"):
        learnt("streaming", ["a"], 1.0).keeping(learnt(RollingZScore.name, ["a"], 1.0), ["a"])
