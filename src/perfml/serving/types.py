"""Wire types of the Open Inference Protocol v2 (KServe, MLServer, Triton) and perfml's feedback.

Modelled once, with pydantic; responses are dumped without unset fields (:func:`dump`).

>>> request = InferenceRequest.model_validate(
...     {"inputs": [{"name": "value", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]}]}
... )
>>> request.inputs[0].shape
[2]
>>> dump(ResponseOutput(name="anomaly_score", shape=[1], datatype="FP64", data=[0.5]))
{'name': 'anomaly_score', 'shape': [1], 'datatype': 'FP64', 'data': [0.5]}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]
"""The tensor datatypes the protocol names."""

Parameters = dict[str, Any]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class RequestInput(_Wire):
    """One input tensor: ``data`` is row-major, flat or nested."""

    name: str
    shape: list[int] = Field(max_length=8)
    datatype: Datatype
    data: list[Any]
    parameters: Parameters | None = None


class RequestOutput(_Wire):
    """An output the client asks for."""

    name: str
    parameters: Parameters | None = None


class InferenceRequest(_Wire):
    id: str | None = None
    parameters: Parameters | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(_Wire):
    name: str
    shape: list[int]
    datatype: Datatype
    data: list[Any]
    parameters: Parameters | None = None


class InferenceResponse(_Wire):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class MetadataTensor(_Wire):
    name: str
    datatype: Datatype
    shape: list[int]
    parameters: Parameters | None = None


class MetadataModelResponse(_Wire):
    name: str
    versions: list[str] | None = None
    platform: str
    inputs: list[MetadataTensor] | None = None
    outputs: list[MetadataTensor] | None = None
    parameters: Parameters | None = None


class MetadataServerResponse(_Wire):
    name: str
    version: str
    extensions: list[str]


class LiveResponse(_Wire):
    live: bool


class ReadyResponse(_Wire):
    """Readiness of the server or a model (the status code carries the verdict too)."""

    name: str | None = None
    ready: bool


class ErrorResponse(_Wire):
    """The protocol's error body."""

    error: str


class FeedbackRequest(_Wire):
    """True labels for scored points: ``ts`` (epoch ms or ISO strings) and ``labels``.

    Runs of consecutive true labels become labelled anomaly windows of the series
    ``(metric, entity)`` in the feature store; ``metric`` defaults to the model's feature.
    """

    entity: str = Field(min_length=1, max_length=256)
    metric: str | None = Field(None, min_length=1, max_length=256)
    ts: list[int | str] = Field(min_length=1)
    labels: list[bool] = Field(min_length=1)
    kind: str = Field("feedback", max_length=64)


class FeedbackResponse(_Wire):
    model_name: str
    model_version: str
    metric: str
    entity: str
    points: int
    anomalous: int
    windows: int


def dump(model: BaseModel) -> dict[str, Any]:
    """The JSON-able form of a wire type, without the fields that were never set."""
    return model.model_dump(mode="json", exclude_unset=True, exclude_none=True)
