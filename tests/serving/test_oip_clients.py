"""Standard Open Inference Protocol clients work against the server unchanged: Triton's
``tritonclient.http`` and raw OIP JSON as KServe's documentation sends it."""

from __future__ import annotations

import warnings

import httpx
import numpy as np
import pytest

from serving.support import T0

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException


def test_tritonclient_speaks_to_the_server_unchanged(live_server: str) -> None:
    client = triton.InferenceServerClient(url=live_server)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("cpu")
        assert client.is_model_ready("cpu", model_version="1")
        assert not client.is_model_ready("cpu", model_version="9")
        assert client.get_server_metadata()["name"] == "perfml"
        meta = client.get_model_metadata("cpu")
        assert [i["name"] for i in meta["inputs"]] == ["ts", "value", "entity"]

        ts = triton.InferInput("ts", [3], "INT64")
        ts.set_data_from_numpy(T0 + np.arange(3, dtype=np.int64) * 60_000, binary_data=False)
        value = triton.InferInput("value", [3], "FP64")
        value.set_data_from_numpy(np.array([0.0, 3.0, 6.0]), binary_data=False)
        outputs = [
            triton.InferRequestedOutput("anomaly_score", binary_data=False),
            triton.InferRequestedOutput("is_anomaly", binary_data=False),
        ]
        result = client.infer("cpu", [ts, value], outputs=outputs, request_id="r-1")
        np.testing.assert_array_equal(result.as_numpy("anomaly_score"), [0.0, 0.5, 1.0])
        np.testing.assert_array_equal(result.as_numpy("is_anomaly"), [False, True, True])
        assert result.get_response()["model_version"] == "1"
        assert result.get_response()["id"] == "r-1"

        plain = client.infer("cpu", [ts, value], model_version="1")  # no outputs named
        np.testing.assert_array_equal(plain.as_numpy("anomaly_score"), [0.0, 0.5, 1.0])

        with pytest.raises(InferenceServerException, match="not served"):
            client.infer("nope", [ts, value])
    finally:
        client.close()


def test_raw_oip_json_as_kserve_documents_it(live_server: str) -> None:
    # The v2 request of KServe's "Open Inference Protocol" docs, adapted to this model.
    request = {
        "id": "42",
        "inputs": [
            {"name": "ts", "shape": [2], "datatype": "INT64", "data": [T0, T0 + 60_000]},
            {"name": "value", "shape": [2], "datatype": "FP32", "data": [6.0, 0.0]},
        ],
        "outputs": [{"name": "anomaly_score"}],
    }
    with httpx.Client(base_url=f"http://{live_server}") as http:
        assert http.get("/v2/health/live").status_code == 200
        answer = http.post("/v2/models/cpu/versions/1/infer", json=request)
        assert answer.status_code == 200
        assert answer.json() == {
            "model_name": "cpu",
            "model_version": "1",
            "id": "42",
            "outputs": [
                {"name": "anomaly_score", "shape": [2], "datatype": "FP64", "data": [1.0, 0.0]}
            ],
        }
        bad = http.post(
            "/v2/models/cpu/infer", content=b"{", headers={"content-type": "application/json"}
        )
        assert bad.status_code == 400
        assert "error" in bad.json()
