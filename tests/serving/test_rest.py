"""The Open Inference Protocol v2 endpoints, through FastAPI's TestClient."""

from __future__ import annotations

import pytest

from perfml.featurestore import FeatureStore
from serving.support import T0, TestClient, infer_body


def test_health_and_server_metadata(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get("/v2").json()
    assert meta["name"] == "perfml"
    assert meta["extensions"] == [
        "binary_tensor_data"
    ]  # Triton's, as tritonclient sends by default


@pytest.mark.parametrize("name", ["cpu", "cpu@production"])
def test_model_metadata_and_readiness(client: TestClient, name: str) -> None:
    meta = client.get(f"/v2/models/{name}").json()
    assert meta["name"] == name
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "perfml/toy_static_zscore"
    assert [i["name"] for i in meta["inputs"]] == ["ts", "value", "entity"]
    assert meta["parameters"]["optional_inputs"] == ["entity"]
    assert [o["name"] for o in meta["outputs"]] == ["anomaly_score", "is_anomaly"]
    assert meta["parameters"]["threshold"] == 0.4
    assert client.get(f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}
    assert client.get(f"/v2/models/{name}/versions/1/ready").status_code == 200
    assert client.get(f"/v2/models/{name}/versions/1").json()["versions"] == ["1"]


def test_infer_scores_every_row_and_flags_over_the_threshold(client: TestClient) -> None:
    body = {**infer_body([0.0, 3.0, 6.0]), "id": "req-1"}
    answer = client.post("/v2/models/cpu/infer", json=body)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["model_name"] == "cpu"
    assert result["model_version"] == "1"
    assert result["id"] == "req-1"
    score, flag = result["outputs"]
    assert score == {
        "name": "anomaly_score",
        "shape": [3],
        "datatype": "FP64",
        "data": [0.0, 0.5, 1.0],
    }
    assert flag["name"] == "is_anomaly"
    assert flag["datatype"] == "BOOL"
    assert flag["data"] == [False, True, True]


def test_infer_on_a_version_path_and_with_requested_outputs(client: TestClient) -> None:
    body = {**infer_body([3.0]), "outputs": [{"name": "anomaly_score"}]}
    result = client.post("/v2/models/cpu/versions/1/infer", json=body).json()
    assert [o["name"] for o in result["outputs"]] == ["anomaly_score"]
    assert result["outputs"][0]["data"] == [0.5]


def test_iso_timestamps_and_column_shaped_tensors(client: TestClient) -> None:
    body = {
        "inputs": [
            {
                "name": "ts",
                "shape": [2, 1],
                "datatype": "BYTES",
                "data": ["2024-01-01T00:00:00Z", "2024-01-01T00:05:00+00:00"],
            },
            {"name": "value", "shape": [2, 1], "datatype": "FP32", "data": [[1.5], [-3]]},
        ],
        "parameters": {"threshold": 0.3},
    }
    result = client.post("/v2/models/cpu/infer", json=body).json()
    assert result["outputs"][0]["data"] == [0.25, 0.5]
    assert result["outputs"][1]["data"] == [False, True]


def test_multivariate_model_takes_one_input_per_column(client: TestClient) -> None:
    meta = client.get("/v2/models/fleet").json()
    assert [i["name"] for i in meta["inputs"]] == ["ts", "cpu", "mem", "entity"]
    assert [o["name"] for o in meta["outputs"]] == ["anomaly_score"]
    ts = [T0, T0 + 60_000]
    body = {
        "inputs": [
            {"name": "ts", "shape": [2], "datatype": "INT64", "data": ts},
            {"name": "cpu", "shape": [2], "datatype": "FP64", "data": [50.0, 95.0]},
            {"name": "mem", "shape": [2], "datatype": "FP64", "data": [30.0, 30.0]},
        ]
    }
    scores = client.post("/v2/models/fleet/infer", json=body).json()["outputs"][0]["data"]
    assert scores[0] < 0.2
    assert scores[1] == 1.0


def test_feedback_is_stored_as_labelled_windows(client: TestClient, store: FeatureStore) -> None:
    ts = [T0 + i * 60_000 for i in range(6)]
    labels = [False, True, True, False, True, False]
    answer = client.post(
        "/v2/models/cpu/feedback", json={"entity": "web-1", "ts": ts, "labels": labels}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "model_name": "cpu",
        "model_version": "1",
        "metric": "cpu_util",
        "entity": "web-1",
        "points": 6,
        "anomalous": 3,
        "windows": 2,
    }
    windows = store.windows(["cpu_util"], ["web-1"])
    assert [(w.start, w.end, w.kind) for w in windows] == [
        (ts[1], ts[2], "feedback"),
        (ts[4], ts[4], "feedback"),
    ]


def test_feedback_with_mismatched_lengths_is_refused(client: TestClient) -> None:
    answer = client.post(
        "/v2/models/cpu/feedback", json={"entity": "web-1", "ts": [T0], "labels": [True, False]}
    )
    assert answer.status_code == 400
    assert "1 timestamps but 2 labels" in answer.json()["error"]


def test_metrics_are_rendered_from_the_metrics_object(make_app) -> None:  # type: ignore[no-untyped-def]
    from perfml.serving.telemetry import ServingMetrics

    metrics = ServingMetrics(deployment="test")
    with TestClient(make_app(metrics=metrics)) as client:
        client.post("/v2/models/cpu/infer", json=infer_body([1.0]))
        client.post("/v2/models/cpu/infer", json={"inputs": []})
        client.post("/v2/models/nope/infer", json=infer_body([1.0]))
        answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert 'perfml_inference_requests_total{code="200",model="cpu",version="1"} 1.0' in text
    assert 'perfml_inference_errors_total{code="422",model="cpu",version="1"} 1.0' in text
    assert 'model="nope"' not in text
