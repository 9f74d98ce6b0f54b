"""Prometheus remote write 1.0: a snappy-compressed ``prometheus.WriteRequest`` into long points.

A request holds time series, each a label set (``__name__`` among them) and samples (a float
value, a timestamp in epoch milliseconds). :func:`decode_write` reads one into the feature
store's long points: the metric is ``__name__``, the entity the value of the entity label,
the series kept only if a ``keep`` selector matches it (:class:`SeriesFilter`). What is left
out is counted by reason (:class:`DropReason`), never silently lost:

>>> body = encode_write([
...     ({"__name__": "node_load1", "instance": "web-1:9100"}, [(1_700_000_000_000, 0.5)]),
...     ({"__name__": "node_load1", "job": "node"}, [(1_700_000_000_000, 0.7)]),
...     ({"__name__": "up", "instance": "web-1:9100"}, [(1_700_000_000_000, 1.0)]),
... ])
>>> decoded = decode_write(body, SeriesRouter(SeriesFilter.parse(["node_load1"]), "instance"))
>>> decoded.table.to_pydict()["entity"], decoded.table.column("value").to_pylist()
(['web-1:9100'], [0.5])
>>> sorted((reason.value, n) for reason, n in decoded.dropped.items())
[('no entity label', 1), ('not kept', 1)]

The message types are built at run time from their descriptor (no generated code, no
``protoc``): :data:`WriteRequest` is the real message class, so tests encode with it too.
"""

from __future__ import annotations

import enum
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cramjam
import numpy as np
import pyarrow as pa
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from perfml.featurestore.schema import METRIC_NAME, READ_SCHEMA
from perfml.promql import Matcher, PromQLError, parse
from perfml.promql.ast import Paren, VectorSelector
from perfml.sources.remote_write_errors import (
    KeepSelectorError,
    MalformedWriteError,
    WriteTooLargeError,
)

STALE_NAN_BITS = 0x7FF0000000000002
"""Prometheus's staleness marker: a NaN that ends a series, never a measured value."""

_NAME_LABEL = "__name__"


def _message_classes() -> tuple[Any, ...]:
    """``WriteRequest``, ``TimeSeries``, ``Label`` and ``Sample`` of Prometheus's
    ``prompb/remote.proto`` and ``types.proto``: the fields of remote write 1.0 (metadata,
    exemplars and native histograms are left to protobuf's unknown fields)."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="perfml/prometheus_remote_write.proto", package="prometheus", syntax="proto3"
    )
    optional = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    repeated = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    kinds = descriptor_pb2.FieldDescriptorProto
    shapes: dict[str, list[tuple[str, int, int, int, str]]] = {
        "Label": [
            ("name", 1, optional, kinds.TYPE_STRING, ""),
            ("value", 2, optional, kinds.TYPE_STRING, ""),
        ],
        "Sample": [
            ("value", 1, optional, kinds.TYPE_DOUBLE, ""),
            ("timestamp", 2, optional, kinds.TYPE_INT64, ""),
        ],
        "TimeSeries": [
            ("labels", 1, repeated, kinds.TYPE_MESSAGE, ".prometheus.Label"),
            ("samples", 2, repeated, kinds.TYPE_MESSAGE, ".prometheus.Sample"),
        ],
        "WriteRequest": [
            ("timeseries", 1, repeated, kinds.TYPE_MESSAGE, ".prometheus.TimeSeries"),
        ],
    }
    for name, fields in shapes.items():
        message = proto.message_type.add(name=name)
        for field_name, number, label, kind, type_name in fields:
            added = message.field.add(name=field_name, number=number, label=label, type=kind)
            if type_name:
                added.type_name = type_name
    pool = descriptor_pool.DescriptorPool()  # its own pool: no clash with another prompb
    pool.Add(proto)
    return tuple(
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"prometheus.{name}"))
        for name in ("WriteRequest", "TimeSeries", "Label", "Sample")
    )


WriteRequest, TimeSeries, Label, Sample = _message_classes()


class DropReason(enum.Enum):
    """Why samples of a request were left out of the points (each counted)."""

    NOT_KEPT = "not kept"
    """No ``keep`` selector matches the series."""
    NO_ENTITY = "no entity label"
    """The series lacks the entity label (or its value is empty)."""
    BAD_METRIC = "metric name not storable"
    """``__name__`` is not a store metric name (e.g. a recording rule's ``a:b:rate5m``)."""
    BAD_ENTITY = "entity not storable"
    """The entity has a ``/`` or outer spaces, which the store refuses."""
    AMBIGUOUS = "ambiguous series"
    """Another label set already maps to the same ``(metric, entity)``: their points would mix."""
    STALE = "stale marker"
    """Prometheus's staleness marker, which ends a series and is not a value."""
    NOT_FINITE = "not finite"
    """NaN or ±Inf, which the store does not take."""


@dataclass(frozen=True)
class SeriesFilter:
    """Which series are kept: those matched by any selector; all when there is none.

    >>> keep = SeriesFilter.parse(['cpu{job="node"}', '{__name__=~"node_.*", env!="dev"}'])
    >>> keep.keeps({"__name__": "cpu", "job": "node"}), keep.keeps({"__name__": "cpu"})
    (True, False)
    >>> keep.keeps({"__name__": "node_load1"}), SeriesFilter.parse([]).keeps({"x": "y"})
    (True, True)
    """

    selectors: tuple[tuple[Matcher, ...], ...] = ()

    @classmethod
    def parse(cls, keep: Iterable[str]) -> SeriesFilter:
        """Parse PromQL series selectors; anything else raises :class:`KeepSelectorError`."""
        selectors = []
        for text in keep:
            try:
                expr = parse(text)
            except PromQLError as error:
                raise KeepSelectorError(text, str(error)) from None
            while isinstance(expr, Paren):
                expr = expr.expr
            if not isinstance(expr, VectorSelector):
                kind = type(expr).__name__.lower()
                raise KeepSelectorError(text, f"it is a {kind}, not a series selector")
            if expr.offset_ms:
                raise KeepSelectorError(text, "a kept series selector takes no offset")
            selectors.append(expr.matchers)
        return cls(tuple(selectors))

    def keeps(self, labels: Mapping[str, str]) -> bool:
        if not self.selectors:
            return True
        return any(all(m.matches(labels) for m in matchers) for matchers in self.selectors)


class SeriesRouter:
    """Where each series goes: to ``(metric, entity)``, or dropped for a :class:`DropReason`.

    The answer for a label set is remembered (a few hundred bytes per series), so a series
    seen in every request costs one lookup. The router also holds the label set first seen for
    each ``(metric, entity)``: two series that differ only by labels other than the name and the
    entity label (``cpu="0"`` and ``cpu="1"`` of one host) would interleave their points in one
    stored series, so the later one is dropped as :attr:`DropReason.AMBIGUOUS` (the ``keep``
    selectors choose which to keep). Past ``max_series`` remembered label sets it starts over.

    >>> router = SeriesRouter(SeriesFilter.parse(["cpu"]), "host")
    >>> router.route((("__name__", "cpu"), ("host", "a"), ("core", "0")))
    ('cpu', 'a')
    >>> router.route((("__name__", "cpu"), ("host", "a"), ("core", "1")))
    <DropReason.AMBIGUOUS: 'ambiguous series'>
    """

    def __init__(
        self,
        keep: SeriesFilter | None = None,
        entity_label: str = "instance",
        max_series: int = 1_000_000,
    ) -> None:
        self.keep = keep or SeriesFilter()
        self.entity_label = entity_label
        self.max_series = max_series
        self._routes: dict[tuple[tuple[str, str], ...], tuple[str, str] | DropReason] = {}
        self._owners: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
        self._lock = threading.Lock()

    def route(self, labels: tuple[tuple[str, str], ...]) -> tuple[str, str] | DropReason:
        found = self._routes.get(labels)
        if found is not None:
            return found
        with self._lock:
            if len(self._routes) >= self.max_series:
                self._routes.clear()
                self._owners.clear()
            decided = self._decide(labels)
            self._routes[labels] = decided
            return decided

    def _decide(self, labels: tuple[tuple[str, str], ...]) -> tuple[str, str] | DropReason:
        named = dict(labels)
        if not self.keep.keeps(named):
            return DropReason.NOT_KEPT
        entity = named.get(self.entity_label, "")
        if not entity:
            return DropReason.NO_ENTITY
        metric = named.get(_NAME_LABEL, "")
        if not METRIC_NAME.match(metric):
            return DropReason.BAD_METRIC
        if "/" in entity or entity != entity.strip():
            return DropReason.BAD_ENTITY
        identity = tuple(sorted(labels))
        if self._owners.setdefault((metric, entity), identity) != identity:
            return DropReason.AMBIGUOUS
        return (metric, entity)


@dataclass(frozen=True)
class DecodedWrite:
    """The points of one request (``READ_SCHEMA``: the long format, names dictionary-encoded)
    and the samples left out, by reason."""

    table: pa.Table
    dropped: Mapping[DropReason, int]
    samples: int
    """Every sample of the request, kept or dropped."""


def decode_write(
    body: bytes, router: SeriesRouter | None = None, *, max_bytes: int | None = None
) -> DecodedWrite:
    """Decode a remote-write 1.0 body (snappy block format around a ``WriteRequest``).

    Raises :class:`MalformedWriteError` (HTTP 400) naming the layer that is broken, and
    :class:`WriteTooLargeError` (413) when the decompressed message would pass ``max_bytes``.
    A receiver passes the same ``router`` to every call (one by default: all series kept,
    the entity from ``instance``).
    """
    message = _decompress(body, max_bytes)
    request = WriteRequest()
    try:
        request.ParseFromString(message)
    except DecodeError as error:
        raise MalformedWriteError("protobuf", str(error) or "cannot parse", len(body)) from None
    router = router or SeriesRouter()
    dropped: Counter[DropReason] = Counter()
    names: dict[tuple[str, str], int] = {}
    codes: list[int] = []
    counts: list[int] = []
    ts: list[int] = []
    values: list[float] = []
    total = 0
    for series in request.timeseries:
        samples = series.samples
        n = len(samples)
        if not n:
            continue
        total += n
        key = router.route(tuple([(label.name, label.value) for label in series.labels]))
        if isinstance(key, DropReason):
            dropped[key] += n
            continue
        codes.append(names.setdefault(key, len(names)))
        counts.append(n)
        ts.extend([sample.timestamp for sample in samples])
        values.extend([sample.value for sample in samples])
    table = _points(names, codes, counts, ts, values, dropped)
    return DecodedWrite(table, dict(dropped), total)


def _decompress(body: bytes, max_bytes: int | None) -> bytes | memoryview:
    size = _snappy_length(body)
    if max_bytes is not None and size > max_bytes:
        raise WriteTooLargeError("the decompressed body", size, max_bytes)
    try:
        return memoryview(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as error:
        raise MalformedWriteError(
            "snappy", str(error).removeprefix("snappy: "), len(body)
        ) from None


def _snappy_length(body: bytes) -> int:
    """The decompressed length a snappy block announces (its leading varint)."""
    length = shift = 0
    for position, byte in enumerate(body[:5]):
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return length
        shift += 7
        if position == 4:
            break
    problem = "it is empty" if not body else "its length header is not a varint"
    raise MalformedWriteError("snappy", problem, len(body))


def _points(
    names: Mapping[tuple[str, str], int],
    codes: Sequence[int],
    counts: Sequence[int],
    ts: Sequence[int],
    values: Sequence[float],
    dropped: Counter[DropReason],
) -> pa.Table:
    value = np.asarray(values, dtype=np.float64)
    series = np.repeat(np.asarray(codes, dtype=np.int32), np.asarray(counts, dtype=np.int64))
    stamp = np.asarray(ts, dtype=np.int64)
    finite = np.isfinite(value)
    if not finite.all():
        stale = value.view(np.uint64) == np.uint64(STALE_NAN_BITS)
        for reason, count in (
            (DropReason.STALE, int(stale.sum())),
            (DropReason.NOT_FINITE, int((~finite & ~stale).sum())),
        ):
            if count:
                dropped[reason] += count
        value, series, stamp = value[finite], series[finite], stamp[finite]
    keys = list(names)
    metrics, metric_codes = np.unique(
        np.asarray([m for m, _ in keys], dtype=object), return_inverse=True
    )
    entities, entity_codes = np.unique(
        np.asarray([e for _, e in keys], dtype=object), return_inverse=True
    )
    metric = pa.DictionaryArray.from_arrays(
        pa.array(metric_codes.astype(np.int32)[series] if keys else [], pa.int32()),
        pa.array(metrics.tolist(), pa.string()),
    )
    entity = pa.DictionaryArray.from_arrays(
        pa.array(entity_codes.astype(np.int32)[series] if keys else [], pa.int32()),
        pa.array(entities.tolist(), pa.string()),
    )
    return pa.Table.from_arrays(
        [metric, entity, pa.array(stamp, pa.int64()).cast(READ_SCHEMA.field("ts").type),
         pa.array(value, pa.float64())],
        schema=READ_SCHEMA,
    )  # fmt: skip


def encode_write(
    series: Iterable[tuple[Mapping[str, str], Iterable[tuple[int, float]]]],
) -> bytes:
    """A remote-write 1.0 body: ``series`` as (labels, [(epoch ms, value), ...]), in a
    ``WriteRequest`` compressed with snappy's block format, as Prometheus sends it."""
    request = WriteRequest()
    for labels, samples in series:
        message = request.timeseries.add()
        for name, value in sorted(labels.items()):
            message.labels.add(name=name, value=value)
        for stamp, number in samples:
            message.samples.add(timestamp=stamp, value=number)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
