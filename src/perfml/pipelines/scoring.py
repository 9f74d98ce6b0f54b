"""The batch-scoring pipeline: score a window of the store through the inference API.

One task, ``score``, reads each entity's points of a metric in ``[start, end)`` from the
feature store, sends them to a served model's ``/v2/models/{model}/infer`` in requests of
``batch_rows`` rows, each row naming its entity (so the server scores it against that
series' state), and writes ``(entity, ts, value, anomaly_score)`` as one Parquet file into
the output volume. It is the job an SRE team schedules to score yesterday's fleet with
today's model.

What it needs is declared as preconditions, as a Kubernetes pod declares its volume and secret:
the output volume must exist and the API token must be in the environment (the variable
``serving.token_env`` names); while either is missing the job stays Pending
(``PreconditionMissing``). A token the server refuses (401, 403) fails the job at once: no retry
can fix a wrong credential (:class:`ScoringRefusedError` is permanent).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from perfml.errors import PerfmlError
from perfml.pipelines.catalog import pipeline
from perfml.pipelines.dsl import (
    Param,
    Part,
    Pipeline,
    Preconditions,
    Resources,
    StepDefinition,
    Task,
    step,
)

if TYPE_CHECKING:
    from perfml.featurestore import FeatureStore

PIPELINE = "batch-scoring"
DEFAULT_TOKEN_ENV = "PERFML_SERVING_TOKEN"
"""The variable holding the inference API's token unless told otherwise (``serving.token_env``)."""


class ScoringRefusedError(PerfmlError):
    """The inference API refused the credential: retrying cannot help."""

    permanent = True

    def __init__(self, url: str, status: int, body: str) -> None:
        self.status = status
        super().__init__(f"{url} refused the request with {status}: {body[:200]}")


class ScoringFailedError(PerfmlError):
    def __init__(self, url: str, status: int, body: str) -> None:
        self.status = status
        super().__init__(f"{url} answered {status}: {body[:200]}")


scoring_step: Callable[..., Callable[[Callable[..., Any]], StepDefinition]] = step
"""``step``, typed for the decorator form."""


@scoring_step(retries=2, backoff=1.0, timeout=1800, resources=Resources(cpu=0.5, memory="1Gi"))
def score(
    store: FeatureStore,
    url: str,
    model: str,
    metric: str,
    start: str,
    end: str,
    volume: str,
    token_env: str,
    run_id: str,
    batch_rows: int = 100,
) -> dict[str, Any]:
    """Score ``metric`` in ``[start, end)`` through ``url``; write the scores into ``volume``."""
    points = store.read(metric, start=start, end=end)
    token = os.environ.get(token_env, "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    endpoint = f"{url.rstrip('/')}/v2/models/{model}/infer"
    entities: list[str] = []
    stamps: list[int] = []
    values: list[float] = []
    scores: list[float] = []
    versions: set[str] = set()
    with httpx.Client(timeout=30.0, headers=headers) as client:
        for entity, ts, value in _entity_slices(points):
            for at in range(0, len(ts), batch_rows):
                chunk_ts, chunk_values = ts[at : at + batch_rows], value[at : at + batch_rows]
                body = {
                    "inputs": [
                        {"name": "ts", "shape": [len(chunk_ts)], "datatype": "INT64",
                         "data": chunk_ts},
                        {"name": "value", "shape": [len(chunk_ts)], "datatype": "FP64",
                         "data": chunk_values},
                        {"name": "entity", "shape": [len(chunk_ts)], "datatype": "BYTES",
                         "data": [entity] * len(chunk_ts)},
                    ],
                    "outputs": [{"name": "anomaly_score"}],
                }  # fmt: skip
                answer = client.post(endpoint, json=body)
                if answer.status_code in (401, 403):
                    raise ScoringRefusedError(endpoint, answer.status_code, answer.text)
                if answer.status_code != 200:
                    raise ScoringFailedError(endpoint, answer.status_code, answer.text)
                found = answer.json()
                scores.extend(found["outputs"][0]["data"])
                versions.add(str(found.get("model_version", "")))
                entities.extend([entity] * len(chunk_ts))
                stamps.extend(chunk_ts)
                values.extend(chunk_values)
    table = pa.table(
        {
            "entity": pa.array(entities, pa.string()),
            "ts": pa.array(stamps, pa.timestamp("ms", tz="UTC")),
            "value": pa.array(values, pa.float64()),
            "anomaly_score": pa.array(scores, pa.float64()),
        }
    )
    target = Path(volume) / f"scores-{metric}-{run_id}.parquet"
    partial = target.with_suffix(".parquet.partial")
    pq.write_table(table, partial)
    partial.replace(target)
    return {
        "rows": table.num_rows,
        "entities": len(set(entities)),
        "versions": sorted(versions),
        "file": str(target),
    }


def _entity_slices(points: pa.Table) -> list[tuple[str, list[int], list[float]]]:
    """Each entity's ``(entity, ts in epoch ms, values)``; the store reads sorted by entity, ts."""
    entity = points.column("entity").cast(pa.string()).to_pylist()
    ts = points.column("ts").cast(pa.int64()).to_pylist()
    value = points.column("value").to_pylist()
    slices: list[tuple[str, list[int], list[float]]] = []
    begin = 0
    for at in range(1, len(entity) + 1):
        if at == len(entity) or entity[at] != entity[begin]:
            slices.append((entity[begin], ts[begin:at], value[begin:at]))
            begin = at
    return slices


@pipeline(PIPELINE)
def build_scoring_pipeline(
    volume: str | Path = "scores", token_env: str = DEFAULT_TOKEN_ENV
) -> Pipeline:
    """The pipeline, with its preconditions: the output ``volume`` and the token's variable.

    A relative ``volume`` is taken from the current folder (the job runs in a folder of its
    own, so it is given the absolute path)."""
    volume = Path(volume).absolute()
    needs = Preconditions(paths=(str(volume),), env=(token_env,))
    task = Task(
        "score",
        replace(score, needs=needs),
        {name: Part(name) if name == "store" else Param(name) for name in score.inputs},
    )
    return Pipeline(
        PIPELINE,
        [task],
        params={"volume": str(volume), "token_env": token_env, "batch_rows": 100},
    )
