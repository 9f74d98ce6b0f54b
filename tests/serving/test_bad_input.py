"""Every bad request gets the right status and a protocol error body; the next one is served."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI

from perfml.serving import ModelRepository
from serving.support import MAX_BODY, T0, TOKEN, TestClient, infer_body


def _with(index: int, **changes: Any) -> dict[str, Any]:
    body = infer_body([1.0, 2.0])
    body["inputs"][index] = {**body["inputs"][index], **changes}  # type: ignore[index]
    return body


def _raw(text: str) -> str:
    return text


BAD: list[tuple[str, str, Any, int, str]] = [
    ("malformed JSON", "/v2/models/cpu/infer", _raw('{"inputs": [}'), 400, "malformed JSON"),
    ("not JSON at all", "/v2/models/cpu/infer", _raw("hello"), 400, "malformed JSON"),
    ("empty body", "/v2/models/cpu/infer", _raw(""), 422, "Field required"),
    ("no inputs", "/v2/models/cpu/infer", {"id": "x"}, 422, "inputs"),
    ("empty inputs", "/v2/models/cpu/infer", {"inputs": []}, 422, "inputs"),
    ("input without data", "/v2/models/cpu/infer", {"inputs": [{"name": "ts"}]}, 422, "data"),
    ("unknown datatype", "/v2/models/cpu/infer", _with(1, datatype="FP128"), 422, "datatype"),
    ("shape vs data", "/v2/models/cpu/infer", _with(1, shape=[3]), 400, "holds 3 values"),
    ("negative shape", "/v2/models/cpu/infer", _with(1, shape=[-2]), 400, "negative"),
    ("matrix shape", "/v2/models/cpu/infer", _with(1, shape=[1, 2]), 422, "is not [n]"),
    ("rows differ", "/v2/models/cpu/infer", _with(1, shape=[1], data=[1.0]), 422, "'value'"),
    ("bool values", "/v2/models/cpu/infer", _with(1, datatype="BOOL"), 422, "not a number"),
    ("string values", "/v2/models/cpu/infer", _with(1, data=["a", "b"]), 422, "'value'"),
    ("float ts", "/v2/models/cpu/infer", _with(0, datatype="FP64"), 422, "'ts'"),
    (
        "bad ISO ts",
        "/v2/models/cpu/infer",
        _with(0, datatype="BYTES", data=["x", "y"]),
        422,
        "'ts'",
    ),
    ("ts backwards", "/v2/models/cpu/infer", _with(0, data=[T0, T0 - 1]), 422, "backwards"),
    ("missing value", "/v2/models/cpu/infer", {"inputs": [_with(0)["inputs"][0]]}, 422, "missing"),
    ("unknown input", "/v2/models/cpu/infer", _with(1, name="cpu"), 422, "unknown ['cpu']"),
    ("duplicate input", "/v2/models/cpu/infer", _with(1, name="ts"), 400, "twice"),
    (
        "NaN",
        "/v2/models/cpu/infer",
        _raw(json.dumps(_with(1, data=[1.0, float("nan")]))),
        422,
        "'value'",
    ),
    (
        "Infinity",
        "/v2/models/cpu/infer",
        _raw(json.dumps(_with(1, data=[float("inf"), 1]))),
        422,
        "NaN or infinite",
    ),
    (
        "huge number",
        "/v2/models/cpu/infer",
        _raw(json.dumps(_with(1)).replace("1.0", "1e999")),
        422,
        "infinite",
    ),
    (
        "unknown output",
        "/v2/models/cpu/infer",
        {**infer_body([1.0]), "outputs": [{"name": "x"}]},
        422,
        "unknown output",
    ),
    (
        "bad threshold",
        "/v2/models/cpu/infer",
        {**infer_body([1.0]), "parameters": {"threshold": "hi"}},
        422,
        "threshold",
    ),
    ("unknown model", "/v2/models/nope/infer", infer_body([1.0]), 404, "'nope'"),
    ("unknown version", "/v2/models/cpu/versions/2/infer", infer_body([1.0]), 404, "version 2"),
    ("odd version", "/v2/models/cpu/versions/latest/infer", infer_body([1.0]), 404, "latest"),
    ("unknown route", "/v2/models/cpu/explain", infer_body([1.0]), 404, "Not Found"),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_requests_get_their_status_and_an_error_body(
    client: TestClient, path: str, body: Any, status: int, needle: str
) -> None:
    if isinstance(body, str):
        answer = client.post(path, content=body, headers={"content-type": "application/json"})
    else:
        answer = client.post(path, json=body)
    assert answer.status_code == status, answer.text
    assert list(answer.json()) == ["error"]
    assert needle in answer.json()["error"]
    follow_up = client.post("/v2/models/cpu/infer", json=infer_body([3.0]))
    assert follow_up.status_code == 200
    assert follow_up.json()["outputs"][0]["data"] == [0.5]


def test_a_body_over_the_limit_is_refused_with_413(client: TestClient) -> None:
    big = infer_body([1.0] * (MAX_BODY // 4))
    answer = client.post("/v2/models/cpu/infer", json=big)
    assert answer.status_code == 413
    assert "larger than the limit" in answer.json()["error"]

    def chunks() -> Any:
        for _ in range(MAX_BODY // 1000 + 2):
            yield b" " * 1000

    streamed = client.post(
        "/v2/models/cpu/infer", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert client.post("/v2/models/cpu/infer", json=infer_body([3.0])).status_code == 200


@pytest.mark.parametrize(
    "name",
    ["..%2F..%2Fetc%2Fpasswd", "x%2F..%2F..", "%2E%2E", "cpu%00", "..%5C..%5Cwindows", "a" * 300],
)
def test_model_names_never_reach_the_filesystem(
    client: TestClient, repository: ModelRepository, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    touched: list[object] = []
    monkeypatch.setattr(repository.registry, "resolve", lambda *a: touched.append(a))
    monkeypatch.setattr(repository.registry, "fetch", lambda *a: touched.append(a))
    for path in (f"/v2/models/{name}", f"/v2/models/{name}/ready"):
        answer = client.get(path)
        assert answer.status_code in (400, 404)
        assert "error" in answer.json()
    answer = client.post(f"/v2/models/{name}/infer", json=infer_body([1.0]))
    assert answer.status_code in (400, 404)
    # the repository's own polling of the served model may run meanwhile: nothing else may
    assert [call for call in touched if getattr(call[0], "model", None) != "cpu"] == []


def test_unready_model_answers_503_and_the_server_is_not_ready(
    make_app: Callable[..., FastAPI], repository: ModelRepository
) -> None:
    with TestClient(make_app(manage_models=False)) as client:  # nothing loaded yet
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").status_code == 503
        answer = client.get("/v2/models/cpu/ready")
        assert answer.status_code == 503
        assert "not ready" in answer.json()["error"]
        assert client.post("/v2/models/cpu/infer", json=infer_body([1.0])).status_code == 503
        repository.refresh()
        assert client.get("/v2/health/ready").status_code == 200


def test_bearer_token_guards_everything_but_health(make_app: Callable[..., FastAPI]) -> None:
    with TestClient(make_app(token=TOKEN)) as client:
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").status_code == 200
        for method, path in [
            ("GET", "/v2"),
            ("GET", "/v2/models/cpu"),
            ("GET", "/v2/models/cpu/ready"),
            ("POST", "/v2/models/cpu/infer"),
            ("POST", "/v2/models/cpu/feedback"),
        ]:
            kwargs: dict[str, Any] = {"json": infer_body([1.0])} if method == "POST" else {}
            missing = client.request(method, path, **kwargs)
            assert missing.status_code == 401, path
            assert "bearer token" in missing.json()["error"]
            assert missing.headers["www-authenticate"] == "Bearer"
            basic = client.request(method, path, headers={"Authorization": "Basic eDp5"}, **kwargs)
            assert basic.status_code == 401
            wrong = client.request(method, path, headers={"Authorization": "Bearer nope"}, **kwargs)
            assert wrong.status_code == 403
            assert wrong.json() == {"error": "the bearer token is not valid"}
        good = client.post(
            "/v2/models/cpu/infer",
            json=infer_body([3.0]),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert good.status_code == 200
