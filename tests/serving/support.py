"""What the serving tests share besides fixtures: toy model versions and request bodies."""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa

from fixtures.detectors import RunningZScore, StaticZScore

with warnings.catch_warnings():
    # starlette 0.46's testclient names anyio.abc.BlockingPortal, deprecated by anyio 4.16
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

__all__ = ["MAX_BODY", "T0", "TOKEN", "TestClient", "infer_body", "multi_model", "static_model"]


TOKEN = "s3cret-token"
MAX_BODY = 64 * 1024
T0 = 1_700_000_000_000


def static_model(mean: float) -> StaticZScore:
    """Scores |x - mean| / 1 / 6: a version whose answers tell it apart."""
    values = np.array([mean - 1.0, mean + 1.0] * 20)
    frame = pa.table({"ts": np.arange(len(values), dtype=np.int64) * 60_000, "value": values})
    return StaticZScore().fit(frame)


def multi_model() -> RunningZScore:
    rng = np.random.default_rng(3)
    frame = pa.table(
        {
            "ts": np.arange(50, dtype=np.int64) * 60_000,
            "cpu": rng.normal(50, 5, 50),
            "mem": rng.normal(30, 2, 50),
        }
    )
    return RunningZScore().fit(frame)


def infer_body(values: list[float], start: int = T0) -> dict[str, object]:
    n = len(values)
    return {
        "inputs": [
            {
                "name": "ts",
                "shape": [n],
                "datatype": "INT64",
                "data": [start + i * 60_000 for i in range(n)],
            },
            {"name": "value", "shape": [n], "datatype": "FP64", "data": values},
        ]
    }
