"""Wire types of the Open Inference Protocol v2 (KServe, MLServer, Triton) and perfml's feedback.

Modelled once, with pydantic; responses are dumped without unset fields (:func:`dump`). The
binary tensor data extension (Triton's, which KServe adopted) is read and written here too:
:func:`read_binary_request` and :func:`write_binary_response`.

>>> request = InferenceRequest.model_validate(
...     {"inputs": [{"name": "value", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]}]}
... )
>>> request.inputs[0].shape
[2]
>>> dump(ResponseOutput(name="anomaly_score", shape=[1], datatype="FP64", data=[0.5]))
{'name': 'anomaly_score', 'shape': [1], 'datatype': 'FP64', 'data': [0.5]}
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Collection
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from perfml.serving.errors import InvalidRequestError

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
Tensor = npt.NDArray[Any] | list[bytes]
"""A tensor read from binary data, flat: a numpy array, or the elements of a BYTES tensor."""


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class RequestInput(_Wire):
    """One input tensor: ``data`` is row-major, flat or nested.

    An input sent as binary data (:func:`read_binary_request`) has empty ``data``; its values
    are :attr:`binary`.
    """

    name: str
    shape: list[int] = Field(max_length=8)
    datatype: Datatype
    data: list[Any]
    parameters: Parameters | None = None
    _binary: Tensor | None = PrivateAttr(default=None)

    @property
    def binary(self) -> Tensor | None:
        """The values read from the request's binary data, flat (None: they are ``data``)."""
        return self._binary


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


# -- the binary tensor data extension ------------------------------------------------------------

INFERENCE_HEADER = "Inference-Header-Content-Length"
"""The HTTP header giving the length of the JSON header that begins a binary body."""
BINARY_SIZE = "binary_data_size"
_ITEMS: dict[str, np.dtype[Any]] = {
    name: np.dtype(code)
    for name, code in {
        "BOOL": "u1",  # one byte, 1 for true and 0 for false
        "UINT8": "u1",
        "UINT16": "<u2",
        "UINT32": "<u4",
        "UINT64": "<u8",
        "INT8": "i1",
        "INT16": "<i2",
        "INT32": "<i4",
        "INT64": "<i8",
        "FP16": "<f2",
        "FP32": "<f4",
        "FP64": "<f8",
    }.items()
}
"""How each fixed-size datatype is laid out: little-endian, row-major, no padding."""
_LENGTH = struct.Struct("<I")
"""The 4-byte little-endian length before each element of a BYTES tensor."""


class InferenceHeaderLengthError(InvalidRequestError):
    """The ``Inference-Header-Content-Length`` header does not fit the body."""

    def __init__(self, length: str, body_size: int) -> None:
        self.length = length
        self.body_size = body_size
        super().__init__(
            f"{INFERENCE_HEADER} is {length!r} but the body has {body_size} bytes: it must be"
            " the length of the JSON inference header that begins the body"
        )


class BinaryDataError(InvalidRequestError):
    """An input's binary data does not match what the inference header says of it."""

    def __init__(self, input_name: str, problem: str) -> None:
        self.input_name = input_name
        super().__init__(f"input {input_name!r}: {problem}")


class BinaryDataSizeError(BinaryDataError):
    """``binary_data_size`` is not what the input's shape and datatype take."""

    def __init__(
        self, input_name: str, size: int, expected: int, shape: list[int], datatype: str
    ) -> None:
        self.size = size
        self.expected = expected
        super().__init__(
            input_name,
            f"{BINARY_SIZE} is {size} bytes but shape {shape} of {datatype} takes {expected}",
        )


class BinaryDataMissingError(BinaryDataError):
    """The body ends before the input's binary data does."""

    def __init__(self, input_name: str, size: int, remaining: int) -> None:
        self.size = size
        self.remaining = remaining
        super().__init__(
            input_name,
            f"{BINARY_SIZE} is {size} bytes but the body has only {remaining} left for it",
        )


def read_binary_request(body: bytes, header_length: str) -> InferenceRequest:
    """The request in ``body``: a JSON inference header of ``header_length`` bytes (the value of
    the ``Inference-Header-Content-Length`` HTTP header), then the binary data of the inputs
    whose ``parameters`` give a ``binary_data_size``, in their order.

    Fixed-size tensors are read as little-endian numpy arrays over ``body`` (no copy); a BYTES
    tensor holds, per element, its length in 4 little-endian bytes and then the bytes. A header
    that is not JSON raises :class:`InvalidRequestError`, one that does not fit the schema
    pydantic's ``ValidationError``, and binary data that does not match the header a
    :class:`BinaryDataError`.

    >>> header = b'{"inputs": [{"name": "x", "shape": [2], "datatype": "INT32",'
    >>> header += b' "parameters": {"binary_data_size": 8}}]}'
    >>> request = read_binary_request(header + bytes([1, 0, 0, 0, 2, 0, 0, 0]), str(len(header)))
    >>> request.inputs[0].binary
    array([1, 2], dtype=int32)
    """
    length = int(header_length) if header_length.strip().isdigit() else -1
    if not 0 <= length <= len(body):
        raise InferenceHeaderLengthError(header_length, len(body))
    if length == 0:
        raise InvalidRequestError(
            f"{INFERENCE_HEADER} 0 (a raw binary request, the body one input's data) is not"
            " supported: the models take a 'ts' input and values; send a JSON inference header"
        )
    try:
        header = json.loads(body[:length])
    except (ValueError, RecursionError) as exc:
        raise InvalidRequestError(f"malformed JSON in the inference header: {exc}") from None
    for entry in _header_inputs(header):
        if BINARY_SIZE in (entry.get("parameters") or {}):
            if "data" in entry:
                raise BinaryDataError(str(entry.get("name")), f"gives both data and {BINARY_SIZE}")
            entry["data"] = []  # its values come from the binary data
    request = InferenceRequest.model_validate(header)
    data = memoryview(body)[length:]
    offset = 0
    for tensor in request.inputs:
        size = (tensor.parameters or {}).get(BINARY_SIZE)
        if size is None:
            continue
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BinaryDataError(
                tensor.name, f"{BINARY_SIZE} must be a whole number of bytes, not {size!r}"
            )
        if size > len(data) - offset:
            raise BinaryDataMissingError(tensor.name, size, len(data) - offset)
        tensor._binary = _read_tensor(tensor, size, data[offset : offset + size])
        offset += size
    if offset != len(data):
        raise InvalidRequestError(
            f"the body has {len(data) - offset} bytes after the binary data of the inputs"
            f" ({offset} bytes declared by their {BINARY_SIZE})"
        )
    return request


def _header_inputs(header: Any) -> list[dict[str, Any]]:
    """The inference header's input objects (what is not one is left to the schema)."""
    inputs = header.get("inputs") if isinstance(header, dict) else None
    if not isinstance(inputs, list):
        return []
    return [entry for entry in inputs if isinstance(entry, dict)]


def _read_tensor(tensor: RequestInput, size: int, data: memoryview) -> Tensor:
    if any(d < 0 for d in tensor.shape):
        raise BinaryDataError(tensor.name, f"shape {tensor.shape} has a negative size")
    count = math.prod(tensor.shape)
    if tensor.datatype == "BYTES":
        return _read_bytes(tensor, count, data)
    item = _ITEMS[tensor.datatype]
    expected = count * item.itemsize
    if size != expected:
        raise BinaryDataSizeError(tensor.name, size, expected, tensor.shape, tensor.datatype)
    array = np.frombuffer(data, dtype=item)
    return array != 0 if tensor.datatype == "BOOL" else array


def _read_bytes(tensor: RequestInput, count: int, data: memoryview) -> list[bytes]:
    items: list[bytes] = []
    offset = 0
    while offset < len(data) and len(items) <= count:
        if len(data) - offset < _LENGTH.size:
            raise BinaryDataError(
                tensor.name,
                f"BYTES element {len(items)} has {len(data) - offset} bytes of its 4-byte length",
            )
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if length > len(data) - offset:
            raise BinaryDataError(
                tensor.name,
                f"BYTES element {len(items)} is {length} bytes long but"
                f" {len(data) - offset} are left of the input's {len(data)}",
            )
        items.append(bytes(data[offset : offset + length]))
        offset += length
    if len(items) > count:
        raise BinaryDataError(
            tensor.name,
            f"{BINARY_SIZE} {len(data)} holds more than the {count} BYTES elements"
            f" of shape {tensor.shape}",
        )
    if len(items) < count:
        raise BinaryDataError(
            tensor.name,
            f"{BINARY_SIZE} {len(data)} holds {len(items)} BYTES elements but shape"
            f" {tensor.shape} takes {count}",
        )
    return items


def wants_binary(request: InferenceRequest, output: str) -> bool:
    """Whether ``output`` is answered as binary data: its ``binary_data`` parameter if the
    request names it with one, else the request's ``binary_data_output`` (default false)."""
    for wanted in request.outputs or ():
        if wanted.name == output and "binary_data" in (wanted.parameters or {}):
            return (wanted.parameters or {})["binary_data"] is True
    return (request.parameters or {}).get("binary_data_output") is True


def write_binary_response(
    response: InferenceResponse, binary: Collection[str]
) -> tuple[bytes, int]:
    """The body answering ``response`` with the outputs named in ``binary`` as binary data,
    and the length of its JSON header (for ``Inference-Header-Content-Length``).

    >>> answer = InferenceResponse(
    ...     model_name="m", outputs=[ResponseOutput(name="y", shape=[1], datatype="FP32", data=[1])]
    ... )
    >>> body, length = write_binary_response(answer, {"y"})
    >>> json.loads(body[:length])["outputs"]
    [{'name': 'y', 'shape': [1], 'datatype': 'FP32', 'parameters': {'binary_data_size': 4}}]
    >>> body[length:]
    b'\\x00\\x00\\x80?'
    """
    header = dump(response)
    chunks: list[bytes] = []
    for output, entry in zip(response.outputs, header["outputs"], strict=True):
        if output.name not in binary:
            continue
        raw = _write_tensor(output)
        del entry["data"]
        entry["parameters"] = {**entry.get("parameters", {}), BINARY_SIZE: len(raw)}
        chunks.append(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    return head + b"".join(chunks), len(head)


def _write_tensor(output: ResponseOutput) -> bytes:
    if output.datatype == "BYTES":
        items = [v if isinstance(v, bytes) else str(v).encode() for v in output.data]
        return b"".join(_LENGTH.pack(len(v)) + v for v in items)
    return np.asarray(output.data, dtype=_ITEMS[output.datatype]).tobytes()
