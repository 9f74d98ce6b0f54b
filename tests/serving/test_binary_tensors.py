"""Triton's binary tensor data extension: ``tritonclient.http`` with its defaults (inputs and
outputs as raw bytes after a JSON header) gets the answers a JSON request gets; a binary body
that contradicts its header is refused naming the input and the sizes."""

from __future__ import annotations

import json
import struct
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from perfml.registry import ModelRegistry
from perfml.registry.detector_versions import register_detector
from perfml.serving import DataPlane, ModelRepository, build_app
from perfml.serving.server import AppServer
from serving.support import MAX_BODY, T0, TOKEN
from serving.test_series_serving import NEXT, STEP, two_hosts

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

HEADER = "Inference-Header-Content-Length"
VALUES = [0.0, 3.0, 6.0, 1.5, -3.0]
STAMPS = [T0 + i * 60_000 for i in range(len(VALUES))]


@pytest.fixture
def client(live_server: str) -> Iterator[triton.InferenceServerClient]:
    connection = triton.InferenceServerClient(url=live_server)
    yield connection
    connection.close()


@pytest.fixture
def http(live_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{live_server}") as connection:
        yield connection


def tensor(name: str, values: list[Any], datatype: str, binary: bool = True) -> triton.InferInput:
    dtype = {"INT64": np.int64, "FP64": np.float64, "FP32": np.float32, "BYTES": np.object_}
    made = triton.InferInput(name, [len(values)], datatype)
    made.set_data_from_numpy(np.array(values, dtype=dtype[datatype]), binary_data=binary)
    return made


def json_answer(http: httpx.Client, model: str, inputs: list[dict[str, Any]]) -> dict[str, Any]:
    answer = http.post(f"/v2/models/{model}/infer", json={"inputs": inputs})
    assert answer.status_code == 200, answer.text
    assert HEADER.lower() not in answer.headers
    outputs: list[dict[str, Any]] = answer.json()["outputs"]
    return {o["name"]: o["data"] for o in outputs}


def json_rows(datatype: str = "FP64") -> list[dict[str, Any]]:
    return [
        {"name": "ts", "shape": [len(STAMPS)], "datatype": "INT64", "data": STAMPS},
        {"name": "value", "shape": [len(VALUES)], "datatype": datatype, "data": VALUES},
    ]


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
def test_a_default_tritonclient_call_scores_as_the_json_request(
    client: triton.InferenceServerClient, http: httpx.Client, datatype: str
) -> None:
    expected = json_answer(http, "cpu", json_rows(datatype))
    inputs = [tensor("ts", STAMPS, "INT64"), tensor("value", VALUES, datatype)]
    assert all("binary_data_size" in i._get_tensor()["parameters"] for i in inputs)

    result = client.infer("cpu", inputs)  # binary inputs, outputs as the client defaults

    assert [o["name"] for o in result.get_response()["outputs"]] == [
        "anomaly_score",
        "is_anomaly",
    ]
    assert all("data" not in o for o in result.get_response()["outputs"])  # came as bytes
    assert result.as_numpy("anomaly_score").tolist() == expected["anomaly_score"]
    assert result.as_numpy("is_anomaly").tolist() == expected["is_anomaly"]


def test_outputs_asked_for_as_binary_come_as_raw_bytes_after_the_json_header(
    client: triton.InferenceServerClient, http: httpx.Client
) -> None:
    expected = json_answer(http, "cpu", json_rows())
    inputs = [tensor("ts", STAMPS, "INT64"), tensor("value", VALUES, "FP64")]
    outputs = [
        triton.InferRequestedOutput("anomaly_score", binary_data=True),
        triton.InferRequestedOutput("is_anomaly", binary_data=False),
    ]
    result = client.infer("cpu", inputs, outputs=outputs, request_id="b-1")
    assert result.as_numpy("anomaly_score").tolist() == expected["anomaly_score"]
    assert result.as_numpy("is_anomaly").tolist() == expected["is_anomaly"]
    assert result.get_response()["id"] == "b-1"

    # The same request on the wire: header, content type and layout as the extension says.
    header = {
        "inputs": [
            {"name": "ts", "shape": [5], "datatype": "INT64", "data": STAMPS},
            {"name": "value", "shape": [5], "datatype": "FP64", "data": VALUES},
        ],
        "outputs": [
            {"name": "anomaly_score", "parameters": {"binary_data": True}},
            {"name": "is_anomaly", "parameters": {"binary_data": False}},
        ],
    }
    answer = http.post("/v2/models/cpu/infer", json=header)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/octet-stream"
    assert int(answer.headers["content-length"]) == len(answer.content)
    length = int(answer.headers[HEADER])
    score, flag = json.loads(answer.content[:length])["outputs"]
    assert score["parameters"] == {"binary_data_size": 8 * len(VALUES)}
    assert "data" not in score
    assert flag["data"] == expected["is_anomaly"]
    raw = answer.content[length:]
    assert np.frombuffer(raw, dtype="<f8").tolist() == expected["anomaly_score"]


def test_the_request_parameter_binary_data_output_makes_every_output_binary(
    http: httpx.Client,
) -> None:
    expected = json_answer(http, "cpu", json_rows())
    answer = http.post(
        "/v2/models/cpu/infer",
        json={"inputs": json_rows(), "parameters": {"binary_data_output": True}},
    )
    assert answer.status_code == 200, answer.text
    length = int(answer.headers[HEADER])
    score, flag = json.loads(answer.content[:length])["outputs"]
    assert score["parameters"]["binary_data_size"] == 8 * len(VALUES)
    assert flag["parameters"]["binary_data_size"] == len(VALUES)  # one byte per BOOL
    raw = answer.content[length:]
    assert np.frombuffer(raw[: 8 * len(VALUES)], "<f8").tolist() == expected["anomaly_score"]
    assert [b == 1 for b in raw[8 * len(VALUES) :]] == expected["is_anomaly"]


def test_some_inputs_binary_and_some_json_data(
    client: triton.InferenceServerClient, http: httpx.Client
) -> None:
    expected = json_answer(http, "cpu", json_rows())
    for ts_binary, value_binary in [(False, True), (True, False)]:
        inputs = [
            tensor("ts", STAMPS, "INT64", binary=ts_binary),
            tensor("value", VALUES, "FP64", binary=value_binary),
        ]
        result = client.infer("cpu", inputs)
        assert result.as_numpy("anomaly_score").tolist() == expected["anomaly_score"]


@pytest.fixture
def hosts_server(registry: ModelRegistry) -> Iterator[str]:
    """``web``: web-1 runs near 50 and web-2 near 10 (one state per host)."""
    register_detector(registry, "web", two_hosts(), features=["cpu_util"])
    registry.set_alias("web", "production", 1)
    repository = ModelRepository(registry, ["web@production"], poll_interval=0.2)
    try:
        with AppServer(build_app(DataPlane(repository))) as server:
            yield f"{server.host}:{server.port}"
    finally:
        repository.stop()


def test_an_entity_bytes_input_scores_each_row_against_its_hosts_state(
    hosts_server: str,
) -> None:
    ts = [NEXT, NEXT, NEXT + STEP, NEXT + STEP]
    values = [50.5, 50.5, 10.2, 10.2]
    hosts = ["web-1", "web-2", "web-1", "web-2"]
    with httpx.Client(base_url=f"http://{hosts_server}") as http:
        expected = json_answer(
            http,
            "web",
            [
                {"name": "ts", "shape": [4], "datatype": "INT64", "data": ts},
                {"name": "value", "shape": [4], "datatype": "FP64", "data": values},
                {"name": "entity", "shape": [4], "datatype": "BYTES", "data": hosts},
            ],
        )["anomaly_score"]
    client = triton.InferenceServerClient(url=hosts_server)
    try:
        inputs = [
            tensor("ts", ts, "INT64"),
            tensor("value", values, "FP64"),
            tensor("entity", [h.encode() for h in hosts], "BYTES"),
        ]
        scores = client.infer("web", inputs).as_numpy("anomaly_score").tolist()
    finally:
        client.close()
    assert scores == expected
    assert scores[1] > 0.3 > scores[0]  # 50.5: normal for web-1, far off for web-2
    assert scores[2] > 0.3 > scores[3]  # 10.2: the other way round


# -- malformed binary bodies --------------------------------------------------------------------


def binary_request(
    inputs: list[tuple[str, list[int], str, bytes]], tail: bytes = b""
) -> tuple[bytes, dict[str, str]]:
    """A body of the extension: each input ``(name, shape, datatype, raw bytes)`` declared
    with ``binary_data_size`` the length of its bytes, then ``tail``."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": shape,
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(raw)},
                }
                for name, shape, datatype, raw in inputs
            ]
        }
    ).encode()
    body = header + b"".join(raw for *_, raw in inputs) + tail
    return body, {HEADER: str(len(header))}


def stamps(n: int) -> bytes:
    return np.array(STAMPS[:n], dtype="<i8").tobytes()


def floats(*values: float) -> bytes:
    return np.array(values, dtype="<f8").tobytes()


def strings(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def header_longer_than_body() -> tuple[bytes, dict[str, str]]:
    body, _ = binary_request([("ts", [2], "INT64", stamps(2))])
    return body, {HEADER: str(len(body) + 10)}


def size_not_matching_shape() -> tuple[bytes, dict[str, str]]:
    return binary_request(
        [("ts", [3], "INT64", stamps(3)), ("value", [3], "FP64", floats(1.0, 2.0))]
    )


def missing_binary_input() -> tuple[bytes, dict[str, str]]:
    body, headers = binary_request(
        [("ts", [2], "INT64", stamps(2)), ("value", [2], "FP64", floats(1.0, 2.0))]
    )
    return body[:-16], headers  # the body ends where the bytes of 'value' should begin


def short_bytes_element() -> tuple[bytes, dict[str, str]]:
    entity = strings(b"web-1") + struct.pack("<I", 50) + b"web-2"
    return binary_request(
        [
            ("ts", [2], "INT64", stamps(2)),
            ("value", [2], "FP64", floats(1.0, 2.0)),
            ("entity", [2], "BYTES", entity),
        ]
    )


def too_few_bytes_elements() -> tuple[bytes, dict[str, str]]:
    return binary_request(
        [
            ("ts", [2], "INT64", stamps(2)),
            ("value", [2], "FP64", floats(1.0, 2.0)),
            ("entity", [2], "BYTES", strings(b"web-1")),
        ]
    )


def bytes_after_the_inputs() -> tuple[bytes, dict[str, str]]:
    return binary_request(
        [("ts", [2], "INT64", stamps(2)), ("value", [2], "FP64", floats(1.0, 2.0))], b"extra"
    )


def header_not_a_number() -> tuple[bytes, dict[str, str]]:
    body, _ = size_not_matching_shape()
    return body, {HEADER: "lots"}


def raw_binary_request() -> tuple[bytes, dict[str, str]]:
    return floats(1.0, 2.0), {HEADER: "0"}


def header_not_json() -> tuple[bytes, dict[str, str]]:
    return b"{inputs" + floats(1.0), {HEADER: "7"}


def both_data_and_binary() -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {
            "inputs": [
                {"name": "ts", "shape": [1], "datatype": "INT64", "data": [T0]},
                {
                    "name": "value",
                    "shape": [1],
                    "datatype": "FP64",
                    "data": [1.0],
                    "parameters": {"binary_data_size": 8},
                },
            ]
        }
    ).encode()
    return header + floats(1.0), {HEADER: str(len(header))}


def header_off_schema() -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {"inputs": [{"name": "ts", "datatype": "INT64", "parameters": {"binary_data_size": 8}}]}
    ).encode()
    return header + stamps(1), {HEADER: str(len(header))}


MALFORMED: list[tuple[Callable[[], tuple[bytes, dict[str, str]]], int, list[str]]] = [
    (header_longer_than_body, 400, [HEADER, "but the body has"]),
    (size_not_matching_shape, 400, ["'value'", "binary_data_size is 16 bytes", "takes 24"]),
    (missing_binary_input, 400, ["'value'", "binary_data_size is 16 bytes", "only 0 left"]),
    (short_bytes_element, 400, ["'entity'", "element 1 is 50 bytes long but 5 are left"]),
    (too_few_bytes_elements, 400, ["'entity'", "holds 1 BYTES elements", "takes 2"]),
    (bytes_after_the_inputs, 400, ["5 bytes after the binary data", "32 bytes declared"]),
    (header_not_a_number, 400, [HEADER, "'lots'"]),
    (raw_binary_request, 400, ["raw binary request", "not supported"]),
    (header_not_json, 400, ["malformed JSON"]),
    (both_data_and_binary, 400, ["'value'", "both data and binary_data_size"]),
    (header_off_schema, 422, ["shape", "Field required"]),
]


@pytest.mark.parametrize(
    ("make", "status", "fragments"), MALFORMED, ids=[m[0].__name__ for m in MALFORMED]
)
def test_a_malformed_binary_body_is_refused_naming_the_input_and_sizes(
    http: httpx.Client,
    make: Callable[[], tuple[bytes, dict[str, str]]],
    status: int,
    fragments: list[str],
) -> None:
    body, headers = make()
    answer = http.post("/v2/models/cpu/infer", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    for fragment in fragments:
        assert fragment in error
    good = http.post("/v2/models/cpu/infer", json={"inputs": json_rows()})
    assert good.status_code == 200  # the server serves the next request


def test_tritonclient_hears_why_a_tensor_does_not_fit_its_shape(
    client: triton.InferenceServerClient,
) -> None:
    value = tensor("value", VALUES[:2], "FP64")
    value.set_shape([3])  # the shape says three values, the bytes hold two
    with pytest.raises(InferenceServerException) as refused:
        client.infer("cpu", [tensor("ts", STAMPS[:3], "INT64"), value])
    assert refused.value.status() == "400"
    assert "input 'value': binary_data_size is 16 bytes but shape [3] of FP64 takes 24" in str(
        refused.value
    )
    assert client.is_server_live()


def test_the_body_size_limit_holds_for_binary_bodies(
    client: triton.InferenceServerClient,
) -> None:
    rows = MAX_BODY // 16 + 1  # eight bytes of ts and eight of value per row
    inputs = [
        tensor("ts", [T0 + i * 60_000 for i in range(rows)], "INT64"),
        tensor("value", [1.0] * rows, "FP64"),
    ]
    with pytest.raises(InferenceServerException) as refused:
        client.infer("cpu", inputs)
    assert refused.value.status() == "413"
    assert "larger than the limit" in str(refused.value)


def test_a_binary_request_still_needs_the_token(make_app: Callable[..., FastAPI]) -> None:
    inputs = [tensor("ts", STAMPS, "INT64"), tensor("value", VALUES, "FP64")]
    with AppServer(make_app(token=TOKEN)) as server:
        client = triton.InferenceServerClient(url=f"{server.host}:{server.port}")
        try:
            with pytest.raises(InferenceServerException) as missing:
                client.infer("cpu", inputs)
            assert missing.value.status() == "401"
            with pytest.raises(InferenceServerException) as wrong:
                client.infer("cpu", inputs, headers={"Authorization": "Bearer nope"})
            assert wrong.value.status() == "403"
            result = client.infer("cpu", inputs, headers={"Authorization": f"Bearer {TOKEN}"})
            assert result.as_numpy("anomaly_score").tolist()[:3] == [0.0, 0.5, 1.0]
        finally:
            client.close()
        # The token is asked for before the body is read: a malformed one is not parsed.
        body, headers = header_longer_than_body()
        answer = httpx.post(f"{server.url}/v2/models/cpu/infer", content=body, headers=headers)
        assert answer.status_code == 401
