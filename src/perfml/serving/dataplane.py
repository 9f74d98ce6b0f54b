"""The data plane: what the server does, free of HTTP (the REST layer only translates).

``infer`` decodes the request's inputs into the detector's frame — ``ts`` as INT64 epoch
milliseconds or BYTES ISO-8601 strings, one input per value column (``value`` for a
univariate detector) — scores the rows as one batch with ``detector.score`` on the loaded
version (which leaves it unchanged, so concurrent requests are safe), and answers
``anomaly_score`` (FP64 ``[n]``) and, when the version records a threshold, ``is_anomaly``.
"""

from __future__ import annotations

import math
import pickle
import threading
from collections.abc import Callable, Iterable
from itertools import groupby
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from perfml import __version__
from perfml.detectors import Detector
from perfml.detectors.errors import BadInputError, NotFittedError
from perfml.detectors.frames import Floats, Millis
from perfml.errors import UsageError
from perfml.featurestore.manifest import LabelWindow
from perfml.featurestore.store import FeatureStore
from perfml.serving.errors import (
    FeedbackUnavailableError,
    InferenceFailedError,
    InvalidRequestError,
    UnprocessableInputError,
)
from perfml.serving.repository import LoadedModel, ModelRepository
from perfml.serving.types import (
    FeedbackRequest,
    FeedbackResponse,
    InferenceRequest,
    InferenceResponse,
    MetadataModelResponse,
    MetadataServerResponse,
    MetadataTensor,
    RequestInput,
    ResponseOutput,
    Tensor,
)
from perfml.timeparse import parse_instant, to_epoch_ms

TS = "ts"
ENTITY = "entity"
"""The optional BYTES input naming each row's series (host, VM, service)."""
SCORE = "anomaly_score"
FLAG = "is_anomaly"
MAX_ROWS = 1_000_000
_INTEGERS = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
_NUMBERS = _INTEGERS | {"FP16", "FP32", "FP64"}


class DataPlane:
    """Health, metadata, inference and feedback over a :class:`ModelRepository`."""

    def __init__(self, models: ModelRepository, store: FeatureStore | None = None) -> None:
        self.models = models
        self.store = store
        self._store_lock = threading.Lock()  # one DuckDB connection: one writer at a time
        self._snapshots = Snapshots()

    # -- health and metadata ---------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.models.ready()

    def model_ready(self, name: str, version: str | None = None) -> bool:
        self.models.get(name, version)  # raises ModelNotFoundError / ModelNotReadyError
        return True

    def metadata(self) -> MetadataServerResponse:
        return MetadataServerResponse(
            name="perfml", version=__version__, extensions=["binary_tensor_data"]
        )

    def model_metadata(self, name: str, version: str | None = None) -> MetadataModelResponse:
        model = self.models.get(name, version)
        outputs = [MetadataTensor(name=SCORE, datatype="FP64", shape=[-1])]
        if model.threshold is not None:
            outputs.append(MetadataTensor(name=FLAG, datatype="BOOL", shape=[-1]))
        info = model.version
        return MetadataModelResponse(
            name=name,
            versions=[str(info.version)],
            platform=f"perfml/{info.detector}",
            inputs=[MetadataTensor(name=TS, datatype="INT64", shape=[-1])]
            + [MetadataTensor(name=c, datatype="FP64", shape=[-1]) for c in _columns(model)]
            + [MetadataTensor(name=ENTITY, datatype="BYTES", shape=[-1])],
            outputs=outputs,
            parameters={
                "ref": model.ref,
                "digest": info.digest,
                "features": info.features,
                "aliases": list(info.aliases),
                "series": len(model.states),
                "optional_inputs": [ENTITY],
                **({"threshold": model.threshold} if model.threshold is not None else {}),
            },
        )

    # -- inference ---------------------------------------------------------------------------

    def infer(
        self, name: str, request: InferenceRequest, version: str | None = None
    ) -> InferenceResponse:
        model = self.models.get(name, version)  # one model object for the whole request
        ts, values, entities = decode(request, _columns(model))
        try:
            scores = score_rows(model, ts, values, entities, self._snapshots)
        except BadInputError as exc:
            raise UnprocessableInputError(str(exc)) from None
        except NotFittedError as exc:
            raise InferenceFailedError(name, model.version.version, str(exc)) from None
        return encode(model, request, np.asarray(scores, dtype=np.float64))

    # -- feedback ----------------------------------------------------------------------------

    def feedback(self, name: str, request: FeedbackRequest) -> FeedbackResponse:
        """Store the true labels as labelled anomaly windows (runs of ``true``)."""
        model = self.models.get(name)
        if self.store is None:
            raise FeedbackUnavailableError()
        if len(request.ts) != len(request.labels):
            raise InvalidRequestError(
                f"feedback has {len(request.ts)} timestamps but {len(request.labels)} labels"
            )
        metric = request.metric or _metric_of(model)
        stamps = _timestamps(request.ts, "ts")
        pairs = sorted(zip(stamps.tolist(), request.labels, strict=True))
        windows = [
            LabelWindow(metric, request.entity, run[0][0], run[-1][0], request.kind)
            for flag, group in groupby(pairs, key=lambda p: p[1])
            if flag
            for run in [list(group)]
        ]
        if windows:
            empty = pa.table(
                {
                    "metric": pa.array([], pa.string()),
                    "entity": pa.array([], pa.string()),
                    "ts": pa.array([], pa.timestamp("ms", tz="UTC")),
                    "value": pa.array([], pa.float64()),
                }
            )
            with self._store_lock:
                self.store.write(empty, windows=windows, where=f"feedback for {name}")
        return FeedbackResponse(
            model_name=name,
            model_version=str(model.version.version),
            metric=metric,
            entity=request.entity,
            points=len(pairs),
            anomalous=sum(1 for _, flag in pairs if flag),
            windows=len(windows),
        )


class Snapshots:
    """Score like ``detector.score_values`` does, but copy the detector from a pickled snapshot.

    :meth:`Detector.score_values` scores a ``copy.deepcopy`` of the detector unless the
    detector has a faster way (``streaming`` scores one row in place and copies its memories
    container by container); for a detector without one and a long history, that deep copy
    costs most of a request, where unpickling takes a fraction of it and restores the same
    state. The snapshot is taken once per loaded detector. Detectors that override
    ``score_values`` or ``copy``, or that cannot be pickled, score as usual.
    """

    def __init__(self, keep: int = 16) -> None:
        self.keep = keep
        self._taken: dict[int, tuple[Detector, bytes | None]] = {}
        self._lock = threading.Lock()

    def score(self, detector: Detector, ts: Millis, values: Floats) -> Floats:
        snapshot = self._snapshot(detector)
        if snapshot is None:
            return detector.score_values(ts, values)
        scratch: Detector = pickle.loads(snapshot)  # our own bytes, taken in this process
        return scratch.score_arrays(ts, values)

    def _snapshot(self, detector: Detector) -> bytes | None:
        taken = self._taken.get(id(detector))
        if taken is not None and taken[0] is detector:
            return taken[1]
        snapshot: bytes | None = None
        kind = type(detector)
        if kind.score_values is Detector.score_values and kind.copy is Detector.copy:
            try:
                snapshot = pickle.dumps(detector, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # not picklable: score through deepcopy as usual
                snapshot = None
        with self._lock:
            if len(self._taken) >= self.keep:  # old versions after swaps
                self._taken.clear()
            self._taken[id(detector)] = (detector, snapshot)
        return snapshot


def score_rows(
    model: LoadedModel,
    ts: Millis,
    values: Floats,
    entities: list[str] | None,
    snapshots: Snapshots | None = None,
) -> Floats:
    """A request's scores. With ``entities``, each row against its series' state as it
    stands (the fleet prior's for a series the version never learnt), nothing learnt, so a
    point scores the same alone or among others; without, the rows are one series of their
    own, scored in order from the prior's state (on a copy)."""
    if entities is not None:
        return model.states.score(model.states.rows(entities), ts, values)
    if snapshots is not None:
        return snapshots.score(model.detector, ts, values)
    return model.detector.score_values(ts, values)


def _columns(model: LoadedModel) -> list[str]:
    return list(model.detector.columns or ["value"])


def _metric_of(model: LoadedModel) -> str:
    features = model.version.features
    return features[0] if features else model.name


# -- decoding and encoding -------------------------------------------------------------------


def decode(
    request: InferenceRequest, columns: list[str]
) -> tuple[Millis, Floats, list[str] | None]:
    """The rows a request's inputs describe: ``(ts, values, entities)``, ``ts`` and
    ``values`` as :func:`as_arrays` gives a frame's (``values`` 1-D for one value column, else
    rows × ``columns``), ``entities`` the series of each row (None without an ``entity``
    input: then the rows are one series in time order)."""
    by_name: dict[str, RequestInput] = {}
    for tensor in request.inputs:
        if tensor.name in by_name:
            raise InvalidRequestError(f"input {tensor.name!r} is given twice")
        by_name[tensor.name] = tensor
    if len(columns) == 1 and columns[0] not in by_name and "value" in by_name:
        by_name[columns[0]] = by_name.pop("value")
    expected = [TS, *columns]
    missing = [c for c in expected if c not in by_name]
    unknown = sorted(set(by_name) - set(expected) - {ENTITY})
    if missing or unknown:
        raise UnprocessableInputError(
            f"the model takes inputs {expected}; missing {missing}, unknown {unknown}"
        )
    ts_input = by_name[TS]
    if ts_input.datatype not in _INTEGERS and ts_input.datatype != "BYTES":
        raise UnprocessableInputError(
            f"datatype {ts_input.datatype} is not INT64 epoch ms or BYTES ISO-8601", TS
        )
    ts = _timestamps(_flat(ts_input), TS)
    entities = _entities(by_name[ENTITY], len(ts)) if ENTITY in by_name else None
    if entities is None and len(ts) > 1 and np.any(np.diff(ts) < 0):
        raise UnprocessableInputError("must not go backwards (sort the rows by ts)", TS)
    arrays: list[Floats] = []
    for column in columns:
        tensor = by_name[column]
        if tensor.datatype not in _NUMBERS:
            raise UnprocessableInputError(
                f"datatype {tensor.datatype} is not a number", tensor.name
            )
        values = _numbers(_flat(tensor), tensor.name)
        if len(values) != len(ts):
            raise UnprocessableInputError(
                f"has {len(values)} rows but 'ts' has {len(ts)}", tensor.name
            )
        arrays.append(values)
    return ts, arrays[0] if len(arrays) == 1 else np.column_stack(arrays), entities


def _entities(tensor: RequestInput, rows: int) -> list[str]:
    if tensor.datatype != "BYTES":
        raise UnprocessableInputError(
            f"datatype {tensor.datatype} is not BYTES (one series name per row)", ENTITY
        )
    names = []
    for item in _flat(tensor):
        if isinstance(item, bytes | bytearray):
            try:
                item = bytes(item).decode()
            except UnicodeDecodeError:
                raise UnprocessableInputError("a name is not UTF-8", ENTITY) from None
        if not isinstance(item, str) or not item:
            raise UnprocessableInputError(f"{item!r} is not a series name", ENTITY)
        names.append(item)
    if len(names) != rows:
        raise UnprocessableInputError(f"has {len(names)} rows but 'ts' has {rows}", ENTITY)
    return names


def _flat(tensor: RequestInput) -> list[Any] | Tensor:
    """The tensor's data, flattened row-major and checked against its shape ``[n]``/``[n, 1]``:
    its binary data as read (a numpy array, or BYTES elements), else ``data`` as a list."""
    binary = tensor.binary
    data = list(_flatten(tensor.data)) if binary is None else binary
    if any(d < 0 for d in tensor.shape):
        raise InvalidRequestError(
            f"input {tensor.name!r}: shape {tensor.shape} has a negative size"
        )
    size = math.prod(tensor.shape)
    if size != len(data):
        raise InvalidRequestError(
            f"input {tensor.name!r}: shape {tensor.shape} holds {size} values, data has {len(data)}"
        )
    if len(tensor.shape) != 1 and not (len(tensor.shape) == 2 and tensor.shape[1] == 1):
        raise UnprocessableInputError(f"shape {tensor.shape} is not [n] or [n, 1]", tensor.name)
    if len(data) > MAX_ROWS:
        raise UnprocessableInputError(f"{len(data)} rows; at most {MAX_ROWS}", tensor.name)
    return data


def _flatten(data: Iterable[Any]) -> Iterable[Any]:
    for item in data:
        if isinstance(item, list):
            yield from _flatten(item)
        else:
            yield item


def _numbers(data: list[Any] | Tensor, name: str) -> npt.NDArray[np.float64]:
    if isinstance(data, np.ndarray):
        values = data.astype(np.float64)  # binary data: its datatype was checked to be a number
    elif any(isinstance(v, bool) or not isinstance(v, int | float) for v in data):
        raise UnprocessableInputError("values must be numbers", name)
    else:
        try:
            values = np.asarray(data, dtype=np.float64)
        except (OverflowError, ValueError) as exc:
            raise UnprocessableInputError(f"values are not numbers ({exc})", name) from None
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise UnprocessableInputError(
            f"{len(bad)} value(s) are NaN or infinite (first at row {int(bad[0])})", name
        )
    return values


def _timestamps(data: list[Any] | Tensor, name: str) -> npt.NDArray[np.int64]:
    if isinstance(data, np.ndarray):
        return _integer_stamps(data, name)
    millis: list[int] = []
    for item in data:
        if isinstance(item, bytes):  # a BYTES tensor's element read from binary data
            try:
                item = item.decode()
            except UnicodeDecodeError:
                raise UnprocessableInputError("a timestamp is not UTF-8", name) from None
        if isinstance(item, bool):
            raise UnprocessableInputError(
                "timestamps are epoch ms integers or ISO-8601 strings", name
            )
        if isinstance(item, int):
            if not -(2**62) <= item <= 2**62:
                raise UnprocessableInputError(f"timestamp {item} is out of range", name)
            millis.append(item)
        elif isinstance(item, str):
            try:
                millis.append(to_epoch_ms(parse_instant(item, name)))
            except (UsageError, ValueError, OverflowError, OSError) as exc:
                raise UnprocessableInputError(
                    f"{item[:40]!r} is not a time ({exc})", name
                ) from None
        else:
            raise UnprocessableInputError(
                "timestamps are epoch ms integers or ISO-8601 strings", name
            )
    return np.asarray(millis, dtype=np.int64)


def _integer_stamps(data: npt.NDArray[Any], name: str) -> npt.NDArray[np.int64]:
    """Epoch ms read from binary data, in the range the JSON integers are held to."""
    if data.dtype.kind not in "iu":
        raise UnprocessableInputError("timestamps are epoch ms integers or ISO-8601 strings", name)
    if len(data):
        # compared in the array's own dtype: an unsigned one holds no negative bound
        low, high = data.min(), data.max()
        if high > 2**62 or (data.dtype.kind == "i" and low < -(2**62)):
            bad = high if high > 2**62 else low
            raise UnprocessableInputError(f"timestamp {int(bad)} is out of range", name)
    return data.astype(np.int64)


def encode(
    model: LoadedModel, request: InferenceRequest, scores: npt.NDArray[np.float64]
) -> InferenceResponse:
    """The response: ``anomaly_score`` and, with a threshold, ``is_anomaly``."""
    threshold = _threshold(model, request)
    makers: dict[str, Callable[[], ResponseOutput]] = {
        SCORE: lambda: ResponseOutput(
            name=SCORE, shape=[len(scores)], datatype="FP64", data=scores.tolist()
        )
    }
    if threshold is not None:
        makers[FLAG] = lambda: ResponseOutput(
            name=FLAG,
            shape=[len(scores)],
            datatype="BOOL",
            data=(scores >= threshold).tolist(),
            parameters={"threshold": threshold},
        )
    wanted = [o.name for o in request.outputs] if request.outputs else list(makers)
    unknown = [w for w in wanted if w not in makers]
    if unknown:
        raise UnprocessableInputError(
            f"unknown output(s) {unknown}; the model answers {list(makers)}"
        )
    return InferenceResponse(
        model_name=model.name,
        model_version=str(model.version.version),
        id=request.id,
        outputs=[makers[w]() for w in wanted],
    )


def _threshold(model: LoadedModel, request: InferenceRequest) -> float | None:
    raw = (request.parameters or {}).get("threshold", model.threshold)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not np.isfinite(raw):
        raise UnprocessableInputError(f"parameter 'threshold' must be a finite number, not {raw!r}")
    return float(raw)
