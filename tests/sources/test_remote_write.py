"""Remote write 1.0 decoding and the receiver's HTTP answers, on bodies built with the real
protobuf message and snappy."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import cramjam
import httpx
import pytest
from prometheus_client import CollectorRegistry

from perfml.featurestore import FeatureStore
from perfml.serving.server import AppServer
from perfml.sources.landing import Landing
from perfml.sources.receiver import Receiver
from perfml.sources.remote_write import (
    DropReason,
    SeriesFilter,
    SeriesRouter,
    WriteRequest,
    decode_write,
    encode_write,
)
from perfml.sources.remote_write_errors import (
    KeepSelectorError,
    MalformedWriteError,
    WriteTooLargeError,
)

STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
T0 = 1_700_000_000_000
HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def _rows(decoded_table: object) -> list[tuple[str, str, int, float]]:
    table = decoded_table.to_pydict()  # type: ignore[attr-defined]
    return sorted(
        (m, e, int(ts.timestamp() * 1000), v)
        for m, e, ts, v in zip(
            table["metric"], table["entity"], table["ts"], table["value"], strict=True
        )
    )


def test_round_trip_keeps_metric_entity_ts_and_value() -> None:
    body = encode_write(
        [
            ({"__name__": "node_load1", "instance": "web-1:9100", "job": "node"},
             [(T0, 0.25), (T0 + 15_000, 0.5)]),
            ({"__name__": "node_load1", "instance": "web-2:9100", "job": "node"},
             [(T0, -3.5e300)]),
        ]
    )  # fmt: skip
    decoded = decode_write(body)
    assert _rows(decoded.table) == [
        ("node_load1", "web-1:9100", T0, 0.25),
        ("node_load1", "web-1:9100", T0 + 15_000, 0.5),
        ("node_load1", "web-2:9100", T0, -3.5e300),
    ]
    assert decoded.samples == 3
    assert decoded.dropped == {}
    assert decoded.table.column("ts").to_pylist()[0] == datetime.fromtimestamp(T0 / 1000, UTC)


def test_a_body_encoded_by_protobuf_itself_decodes() -> None:
    request = WriteRequest()
    series = request.timeseries.add()
    series.labels.add(name="__name__", value="up")
    series.labels.add(name="instance", value="db-1")
    series.samples.add(value=1.0, timestamp=T0)
    body = bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
    assert _rows(decode_write(body).table) == [("up", "db-1", T0, 1.0)]


def test_keep_selectors_choose_series_with_every_matcher() -> None:
    series = [
        ({"__name__": "cpu", "instance": "a", "job": "node"}, [(T0, 1.0)]),
        ({"__name__": "cpu", "instance": "b", "job": "api"}, [(T0, 2.0)]),
        ({"__name__": "mem", "instance": "a", "job": "node"}, [(T0, 3.0)]),
        ({"__name__": "disk_io", "instance": "a", "env": "dev"}, [(T0, 4.0)]),
        ({"__name__": "disk_io", "instance": "b", "env": "prod"}, [(T0, 5.0)]),
    ]
    keep = SeriesFilter.parse(['cpu{job="node"}', '{__name__=~"disk_.*", env!~"de.*"}'])
    decoded = decode_write(encode_write(series), SeriesRouter(keep))
    assert _rows(decoded.table) == [("cpu", "a", T0, 1.0), ("disk_io", "b", T0, 5.0)]
    assert decoded.dropped == {DropReason.NOT_KEPT: 3}
    mem = decode_write(encode_write(series), SeriesRouter(SeriesFilter.parse(["mem"])))
    assert _rows(mem.table) == [("mem", "a", T0, 3.0)]
    everything = decode_write(encode_write(series), SeriesRouter(SeriesFilter.parse([])))
    assert everything.table.num_rows == 5


@pytest.mark.parametrize(
    ("selector", "problem"),
    [("rate(cpu[5m])", "not a series selector"), ("cpu offset 5m", "offset"),
     ("cpu{", "cannot parse")],
)  # fmt: skip
def test_keep_refuses_what_is_not_a_series_selector(selector: str, problem: str) -> None:
    with pytest.raises(KeepSelectorError, match=problem) as refused:
        SeriesFilter.parse([selector])
    assert refused.value.selector == selector


def test_the_entity_label_is_chosen_and_series_without_it_are_dropped_and_counted() -> None:
    series = [
        ({"__name__": "up", "host": "web-1", "instance": "10.0.0.1:9100"}, [(T0, 1.0)]),
        ({"__name__": "up", "instance": "10.0.0.2:9100"}, [(T0, 1.0), (T0 + 1, 0.0)]),
        ({"__name__": "up", "host": ""}, [(T0, 1.0)]),
    ]
    decoded = decode_write(encode_write(series), SeriesRouter(entity_label="host"))
    assert _rows(decoded.table) == [("up", "web-1", T0, 1.0)]
    assert decoded.dropped == {DropReason.NO_ENTITY: 3}
    assert decoded.samples == 4


def test_names_the_store_refuses_are_dropped_not_fatal() -> None:
    series = [
        ({"__name__": "job:cpu:rate5m", "instance": "a"}, [(T0, 1.0)]),
        ({"__name__": "cpu", "instance": "a/b"}, [(T0, 1.0)]),
        ({"__name__": "cpu", "instance": " a"}, [(T0, 1.0)]),
        ({"instance": "a"}, [(T0, 1.0)]),
        ({"__name__": "cpu", "instance": "a"}, [(T0, 1.0)]),
    ]
    decoded = decode_write(encode_write(series))
    assert _rows(decoded.table) == [("cpu", "a", T0, 1.0)]
    assert decoded.dropped == {DropReason.BAD_METRIC: 2, DropReason.BAD_ENTITY: 2}


def test_two_label_sets_of_one_metric_and_entity_keep_the_first_across_requests() -> None:
    router = SeriesRouter()
    first = encode_write([({"__name__": "cpu", "instance": "a", "core": "0"}, [(T0, 1.0)])])
    second = encode_write(
        [({"__name__": "cpu", "instance": "a", "core": "1"}, [(T0, 9.0)]),
         ({"__name__": "cpu", "instance": "a", "core": "0"}, [(T0 + 1, 2.0)])]
    )  # fmt: skip
    assert _rows(decode_write(first, router).table) == [("cpu", "a", T0, 1.0)]
    decoded = decode_write(second, router)
    assert _rows(decoded.table) == [("cpu", "a", T0 + 1, 2.0)]
    assert decoded.dropped == {DropReason.AMBIGUOUS: 1}


def test_stale_markers_and_other_non_finite_values_are_dropped_apart() -> None:
    series = [
        ({"__name__": "up", "instance": "a"},
         [(T0, 1.0), (T0 + 1, STALE), (T0 + 2, math.nan), (T0 + 3, math.inf), (T0 + 4, 2.0)]),
        ({"__name__": "up", "instance": "b"}, [(T0, STALE)]),
    ]  # fmt: skip
    decoded = decode_write(encode_write(series))
    assert _rows(decoded.table) == [("up", "a", T0, 1.0), ("up", "a", T0 + 4, 2.0)]
    assert decoded.dropped == {DropReason.STALE: 2, DropReason.NOT_FINITE: 2}


def test_an_empty_request_is_an_empty_table() -> None:
    decoded = decode_write(encode_write([]))
    assert decoded.table.num_rows == 0
    assert decoded.table.column_names == ["metric", "entity", "ts", "value"]


@pytest.mark.parametrize(
    ("body", "layer", "detail"),
    [
        (b"", "snappy", "empty"),
        (b"\xff\xff\xff\xff\xff\xff", "snappy", "varint"),
        (b"\x10garbage-garbage!", "snappy", "corrupt"),
        # valid snappy around bytes that are not a WriteRequest
        (bytes(cramjam.snappy.compress_raw(b"\x0a\xff\x01abc")), "protobuf", "WriteRequest"),
    ],
)
def test_malformed_bodies_name_the_broken_layer(body: bytes, layer: str, detail: str) -> None:
    with pytest.raises(MalformedWriteError, match=detail) as refused:
        decode_write(body)
    assert refused.value.layer == layer
    assert refused.value.status_code == 400
    assert f"({len(body)} bytes)" in str(refused.value)


def test_a_truncated_body_is_malformed() -> None:
    body = encode_write([({"__name__": "up", "instance": "a"}, [(T0, 1.0)] * 50)])
    with pytest.raises(MalformedWriteError) as refused:
        decode_write(body[: len(body) // 2])
    assert refused.value.layer == "snappy"


def test_a_body_announcing_more_than_the_limit_is_refused_before_decompressing() -> None:
    body = encode_write([({"__name__": "up", "instance": "a"}, [(T0, 1.0)] * 1000)])
    with pytest.raises(WriteTooLargeError) as refused:
        decode_write(body, max_bytes=1024)
    assert refused.value.status_code == 413
    assert refused.value.limit == 1024


# -- the HTTP answers ----------------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[httpx.Client, Receiver]]:
    store = FeatureStore(tmp_path / "store")
    landing = Landing(store, tmp_path / "landing", flush_interval=3600, max_pending=10)
    receiver = Receiver(
        landing, SeriesRouter(), max_body_bytes=4096, port=0, server=AppServer,
        registry=CollectorRegistry(),
    )  # fmt: skip
    with receiver, httpx.Client(base_url=receiver.url.removesuffix("/api/v1/write")) as http:
        yield http, receiver


def _metric(http: httpx.Client, line_start: str) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_an_acknowledged_write_is_204_and_reaches_the_store_on_flush(
    client: tuple[httpx.Client, Receiver], tmp_path: Path
) -> None:
    http, receiver = client
    body = encode_write([({"__name__": "up", "instance": "a"}, [(T0, 1.0), (T0 + 1, STALE)])])
    answer = http.post("/api/v1/write", content=body, headers=HEADERS)
    assert answer.status_code == 204
    assert receiver.landing.pending == 1
    assert _metric(http, "perfml_remote_write_pending_samples") == 1
    receiver.landing.flush()
    assert _rows(FeatureStore(tmp_path / "store").read()) == [("up", "a", T0, 1.0)]
    assert _metric(http, 'perfml_remote_write_samples_total{outcome="stored"}') == 1
    assert _metric(http, 'perfml_remote_write_samples_total{outcome="dropped"}') == 1
    assert _metric(http, 'perfml_remote_write_requests_total{code="204"}') == 1
    assert http.get("/-/ready").status_code == 200


def test_the_version_header_may_be_absent(client: tuple[httpx.Client, Receiver]) -> None:
    http, _ = client
    headers = {k: v for k, v in HEADERS.items() if not k.startswith("X-")}
    body = encode_write([({"__name__": "up", "instance": "a"}, [(T0, 1.0)])])
    assert http.post("/api/v1/write", content=body, headers=headers).status_code == 204


@pytest.mark.parametrize(
    ("header", "value", "status"),
    [("Content-Encoding", "gzip", 415), ("Content-Type", "application/json", 415),
     ("X-Prometheus-Remote-Write-Version", "2.0.0", 415)],
)  # fmt: skip
def test_headers_that_are_not_remote_write_1_are_refused(
    client: tuple[httpx.Client, Receiver], header: str, value: str, status: int
) -> None:
    http, _ = client
    body = encode_write([({"__name__": "up", "instance": "a"}, [(T0, 1.0)])])
    answer = http.post("/api/v1/write", content=body, headers={**HEADERS, header: value})
    assert answer.status_code == status
    assert header in answer.text
    assert value in answer.text


def test_a_malformed_body_is_400_naming_the_problem(client: tuple[httpx.Client, Receiver]) -> None:
    http, receiver = client
    answer = http.post("/api/v1/write", content=b"\x10not snappy at all", headers=HEADERS)
    assert answer.status_code == 400
    assert "is not valid snappy" in answer.text
    broken = bytes(cramjam.snappy.compress_raw(b"\x0a\xff\x01abc"))
    answer = http.post("/api/v1/write", content=broken, headers=HEADERS)
    assert answer.status_code == 400
    assert "is not a prometheus.WriteRequest" in answer.text
    assert receiver.landing.pending == 0


def test_a_body_over_the_limit_is_413(client: tuple[httpx.Client, Receiver]) -> None:
    http, _ = client
    answer = http.post("/api/v1/write", content=b"\x00" * 5000, headers=HEADERS)
    assert answer.status_code == 413
    assert "4096" in answer.text


def test_a_full_landing_answers_503_with_retry_after_and_takes_the_retry_once_flushed(
    client: tuple[httpx.Client, Receiver], tmp_path: Path
) -> None:
    http, receiver = client
    first = encode_write([({"__name__": "up", "instance": "a"}, [(T0 + i, 1.0) for i in range(8)])])
    second = encode_write(
        [({"__name__": "up", "instance": "b"}, [(T0 + i, 2.0) for i in range(5)])]
    )
    assert http.post("/api/v1/write", content=first, headers=HEADERS).status_code == 204
    refused = http.post("/api/v1/write", content=second, headers=HEADERS)
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) >= 1
    assert "max_pending_samples" in refused.text
    assert _metric(http, 'perfml_remote_write_samples_total{outcome="refused"}') == 5
    receiver.landing.flush()
    assert http.post("/api/v1/write", content=second, headers=HEADERS).status_code == 204
    receiver.landing.flush()
    stored = FeatureStore(tmp_path / "store").read()
    assert stored.num_rows == 13
    assert sorted(set(stored.column("entity").to_pylist())) == ["a", "b"]
