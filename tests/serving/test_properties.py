"""Property tests: whatever a client sends, the server answers without a 500 and with the
protocol's error body; schemathesis checks the app against its own OpenAPI description."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perfml.serving import ModelRepository
from serving.support import T0, TestClient

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import schemathesis
    from schemathesis.checks import not_a_server_error

FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
DATATYPES = ["BOOL", "INT8", "INT64", "UINT64", "FP16", "FP32", "FP64", "BYTES", "fp64", ""]

scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=T0, max_value=T0 + 10**8),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=30),
    st.sampled_from(["2024-01-01T00:00:00Z", "nan", "1e400", "-1", "2024-13-45"]),
)
data = st.lists(st.one_of(scalars, st.lists(scalars, max_size=3)), max_size=8)
tensor = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["ts", "value", "cpu", "mem", "", "x"]),
        "shape": st.lists(st.integers(min_value=-3, max_value=10), max_size=3),
        "datatype": st.sampled_from(DATATYPES),
        "data": data,
        "parameters": st.dictionaries(st.text(max_size=5), scalars, max_size=2),
    },
)
request = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=10), st.integers()),
        "inputs": st.lists(tensor, max_size=4),
        "outputs": st.lists(
            st.fixed_dictionaries({"name": st.sampled_from(["anomaly_score", "is_anomaly", "z"])}),
            max_size=2,
        ),
        "parameters": st.dictionaries(st.sampled_from(["threshold", "x"]), scalars, max_size=2),
    },
)
paths = st.sampled_from(
    ["/v2/models/cpu/infer", "/v2/models/fleet/infer", "/v2/models/cpu/versions/1/infer"]
)


@pytest.fixture
def loaded_app(make_app: Callable[..., FastAPI], repository: ModelRepository) -> FastAPI:
    repository.refresh()  # loaded once, no reload thread: examples run fast
    return make_app(manage_models=False)


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURES)
@given(path=paths, body=request)
def test_no_request_makes_the_server_fail(loaded_app: FastAPI, path: str, body: Any) -> None:
    with TestClient(loaded_app, raise_server_exceptions=False) as client:
        answer = client.post(
            path, content=json.dumps(body), headers={"content-type": "application/json"}
        )
    assert answer.status_code in (200, 400, 404, 422), answer.text
    if answer.status_code != 200:
        assert list(answer.json()) == ["error"]
        assert answer.json()["error"]


@settings(max_examples=100, deadline=None, suppress_health_check=FIXTURES)
@given(text=st.text(max_size=60) | st.binary(max_size=60).map(lambda b: b.decode("latin-1")))
def test_any_body_text_is_answered_with_a_client_error(loaded_app: FastAPI, text: str) -> None:
    with TestClient(loaded_app, raise_server_exceptions=False) as client:
        answer = client.post(
            "/v2/models/cpu/infer",
            content=text.encode(),
            headers={"content-type": "application/json"},
        )
    assert answer.status_code in (400, 422), answer.text
    assert "error" in answer.json()


def test_the_app_keeps_its_own_openapi_description(loaded_app: FastAPI) -> None:
    """schemathesis, in-process over ASGI, on every operation the app describes.

    Its pytest plugin does not run under pytest 9, so the operations' strategies are drawn
    here with hypothesis directly.
    """
    schema = schemathesis.openapi.from_asgi("/openapi.json", loaded_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 11
    calls: list[tuple[str, int]] = []

    @settings(max_examples=50, deadline=None, suppress_health_check=FIXTURES, database=None)
    @given(case=st.one_of([op.as_strategy() for op in operations]))
    def check(case: Any) -> None:
        response = case.call_and_validate(checks=[not_a_server_error])
        calls.append((case.operation.label, response.status_code))

    check()
    assert all(code < 500 for _, code in calls)
