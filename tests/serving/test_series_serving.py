"""Serving by series: a request names each row's entity, scored against that series' state."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from perfml.detectors import create
from perfml.detectors.series import PRIOR, SeriesStates
from perfml.registry import ModelRegistry
from perfml.registry.detector_versions import load_detector, register_detector
from perfml.serving import DataPlane, ModelRepository, build_app
from serving.support import T0, TestClient

STEP = 300_000
DAYS = 3


def two_hosts() -> SeriesStates:
    """web-1 runs near 50, web-2 near 10, for three days of five-minute points."""
    states = SeriesStates.empty(create("streaming"))
    rows = states.rows(["web-1", "web-2"], add=True)
    points = DAYS * 288
    rng = np.random.default_rng(7)
    ts = T0 + STEP * np.arange(points, dtype=np.int64)
    values = np.concatenate([50 + rng.normal(0, 1, points), 10 + rng.normal(0, 1, points)])
    states.learn(np.repeat(rows, points), np.tile(ts, 2), values)
    states.refresh_prior()
    return states


NEXT = T0 + STEP * DAYS * 288


@pytest.fixture
def series_client(registry: ModelRegistry) -> Iterator[TestClient]:
    register_detector(registry, "web", two_hosts(), features=["cpu_util"])
    registry.set_alias("web", "production", 1)
    repository = ModelRepository(registry, ["web@production"], poll_interval=0.2)
    try:
        with TestClient(build_app(DataPlane(repository)), raise_server_exceptions=False) as c:
            yield c
    finally:
        repository.stop()


def infer(client: TestClient, ts: list[int], values: list[float], entities: list[str] | None):
    inputs = [
        {"name": "ts", "shape": [len(ts)], "datatype": "INT64", "data": ts},
        {"name": "value", "shape": [len(ts)], "datatype": "FP64", "data": values},
    ]
    if entities is not None:
        inputs.append({"name": "entity", "shape": [len(entities)], "datatype": "BYTES",
                       "data": entities})  # fmt: skip
    return client.post("/v2/models/web/infer", json={"inputs": inputs})


def scores(answer) -> list[float]:  # type: ignore[no-untyped-def]
    assert answer.status_code == 200, answer.text
    return answer.json()["outputs"][0]["data"]


def test_each_row_is_scored_against_its_own_hosts_state(series_client: TestClient) -> None:
    both = scores(infer(series_client, [NEXT, NEXT], [50.5, 50.5], ["web-1", "web-2"]))
    assert both[1] > 0.3 > both[0]  # normal for web-1, far off for web-2
    low = scores(infer(series_client, [NEXT, NEXT], [10.2, 10.2], ["web-1", "web-2"]))
    assert low[0] > 0.3 > low[1]


def test_a_point_scores_the_same_alone_or_among_others_and_teaches_nothing(
    series_client: TestClient,
) -> None:
    ts = [NEXT + STEP * i for i in range(6)]
    values = [50.1, 10.3, 49.5, 80.0, 10.1, 50.0]
    entities = ["web-1", "web-2", "web-1", "web-1", "web-2", "web-1"]
    together = scores(infer(series_client, ts, values, entities))
    alone = [scores(infer(series_client, [t], [v], [e]))[0]
             for t, v, e in zip(ts, values, entities, strict=True)]  # fmt: skip
    assert together == alone
    assert scores(infer(series_client, ts, values, entities)) == together  # nothing was learnt


def test_a_host_never_seen_is_scored_by_the_fleet_prior(
    series_client: TestClient, registry: ModelRegistry
) -> None:
    got = scores(infer(series_client, [NEXT, NEXT], [50.0, 500.0], ["db-9", "db-9"]))
    _, states = load_detector(registry, "web@production")
    expected = states.score(
        np.array([PRIOR, PRIOR]), np.array([NEXT, NEXT]), np.array([50.0, 500.0])
    )
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert got[1] > got[0]


def test_without_entity_the_rows_are_their_own_context(
    series_client: TestClient, registry: ModelRegistry
) -> None:
    ts = [NEXT + STEP * i for i in range(3)]
    got = scores(infer(series_client, ts, [50.0, 50.0, 50.0], None))
    _, states = load_detector(registry, "web@production")
    expected = states.prior.score_values(np.array(ts), np.array([50.0, 50.0, 50.0]))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("entities", "datatype", "problem"),
    [
        (["web-1"], "BYTES", "has 1 rows but 'ts' has 2"),
        ([1, 2], "INT64", "is not BYTES"),
        (["web-1", ""], "BYTES", "is not a series name"),
    ],
)
def test_a_bad_entity_input_is_refused_naming_it(
    series_client: TestClient, entities: list[object], datatype: str, problem: str
) -> None:
    body = {"inputs": [
        {"name": "ts", "shape": [2], "datatype": "INT64", "data": [NEXT, NEXT + STEP]},
        {"name": "value", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]},
        {"name": "entity", "shape": [len(entities)], "datatype": datatype, "data": entities},
    ]}  # fmt: skip
    answer = series_client.post("/v2/models/web/infer", json=body)
    assert answer.status_code in (400, 422)
    assert problem in answer.text
    assert "entity" in answer.text


def test_model_metadata_says_it_takes_an_entity(series_client: TestClient) -> None:
    meta = series_client.get("/v2/models/web").json()
    assert {"name": "entity", "datatype": "BYTES", "shape": [-1]} in meta["inputs"]
    assert meta["parameters"]["series"] == 2
