"""perfml scrapes its own metrics endpoints and records them as series, as Prometheus would."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from perfml.featurestore import FeatureStore
from perfml.pipelines.metrics_server import MetricsServer, metrics_app
from perfml.promql.series import STALE_NAN, Matcher, Series
from perfml.recording.recorder import (
    BadRecorderSettingError,
    MetricsStore,
    OutOfOrderError,
    Recorder,
    entity_of,
)
from perfml.recording.scrape import (
    BadTargetError,
    RegistryTarget,
    Scraper,
    ScrapeTarget,
    is_stale,
    parse_exposition,
)

MINUTE = 60_000


def named(name: str, **labels: str) -> list[Matcher]:
    return [Matcher("__name__", "=", name), *(Matcher(k, "=", v) for k, v in labels.items())]


def as_dict(series: Iterable[Series]) -> dict[tuple[tuple[str, str], ...], list[float]]:
    """Series keyed by their sorted labels, values as lists (stale markers as 'stale')."""
    return {
        tuple(sorted(s.labels.items())): [
            "stale" if is_stale(v) else v  # type: ignore[misc]
            for v in s.values.tolist()
        ]
        for s in series
    }


def timestamps(series: Iterable[Series]) -> dict[tuple[tuple[str, str], ...], list[int]]:
    return {tuple(sorted(s.labels.items())): s.ts.tolist() for s in series}


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    phase = Gauge(
        "kube_pod_status_phase", "Phase.", ["namespace", "pod", "phase"], registry=registry
    )
    phase.labels("perfml", "train-1", "Running").set(1)
    phase.labels("perfml", "train-2", "Pending").set(1)
    Counter("perfml_model_load_failures", "Failures.", ["model"], registry=registry).labels(
        "cpu"
    ).inc()
    latency = Histogram(
        "seldon_api_executor_server_requests_seconds",
        "Latency.",
        ["deployment_name", "job"],
        buckets=(0.1, 1.0),
        registry=registry,
    )
    latency.labels("perfml", "own-job").observe(0.5)
    return registry


@pytest.fixture
def server(registry: CollectorRegistry) -> Iterator[MetricsServer]:
    with MetricsServer(registry) as running:
        yield running


# -- scraping ---------------------------------------------------------------------------


def test_http_scrape_labels_samples_as_prometheus(server: MetricsServer) -> None:
    metrics = MetricsStore()
    target = ScrapeTarget("perfml-jobs", server.url, labels={"cluster": "local"})
    recorder = Recorder([target], metrics)
    [result] = recorder.scrape_once(at_ms=10 * MINUTE)
    assert result.up
    assert result.error is None
    instance = server.address
    own = {"job": "perfml-jobs", "instance": instance, "cluster": "local"}
    phase = as_dict(metrics.select(named("kube_pod_status_phase"), 0, 11 * MINUTE))
    key = tuple(sorted({**own, "__name__": "kube_pod_status_phase", "namespace": "perfml"}.items()))
    assert phase == {
        tuple(sorted((*key, ("phase", "Running"), ("pod", "train-1")))): [1.0],
        tuple(sorted((*key, ("phase", "Pending"), ("pod", "train-2")))): [1.0],
    }
    # The sample's own job label is kept as exported_job; samples are named as exposed.
    buckets = metrics.select(
        named("seldon_api_executor_server_requests_seconds_bucket"), 0, MINUTE * 11
    )
    assert sorted(s.labels["le"] for s in buckets) == ["+Inf", "0.1", "1.0"]
    assert {s.labels["exported_job"] for s in buckets} == {"own-job"}
    assert {s.labels["job"] for s in buckets} == {"perfml-jobs"}
    names = {
        s.labels["__name__"]
        for s in metrics.select([Matcher("__name__", "=~", ".+")], 0, 11 * MINUTE)
    }
    assert "perfml_model_load_failures_total" in names
    assert not [n for n in names if n.endswith("_created")]
    up = metrics.select(named("up", job="perfml-jobs", instance=instance), 0, 11 * MINUTE)
    assert [s.values.tolist() for s in up] == [[1.0]]
    assert [s.ts.tolist() for s in up] == [[10 * MINUTE]]
    scraped = metrics.select(named("scrape_samples_scraped"), 0, 11 * MINUTE)
    assert scraped[0].values.tolist() == [float(result.scraped)]
    assert result.scraped == 2 + 1 + 5  # phases, counter, 3 buckets + count + sum
    assert metrics.select(named("scrape_duration_seconds"), 0, 11 * MINUTE)[0].values[0] > 0


def test_dead_target_is_down_with_no_samples() -> None:
    with MetricsServer(CollectorRegistry()) as gone:
        url = gone.url  # a port that nothing listens on once the server closed
    metrics = MetricsStore()
    [result] = Recorder([ScrapeTarget("perfml-serving", url)], metrics).scrape_once(MINUTE)
    assert not result.up
    assert "Connect" in (result.error or "")
    up = metrics.select(named("up", job="perfml-serving"), 0, 2 * MINUTE)
    assert [s.values.tolist() for s in up] == [[0.0]]
    scraped = metrics.select(named("scrape_samples_scraped", job="perfml-serving"), 0, 2 * MINUTE)
    assert scraped[0].values.tolist() == [0.0]


def test_http_error_status_and_garbage_are_down() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/broken":
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"boom"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"this is {not the exposition format\n"]

    with _wsgi(app) as base:
        scraper = Scraper(timeout_s=2)
        broken = scraper.scrape(ScrapeTarget("a", f"{base}/broken"), MINUTE)
        garbage = scraper.scrape(ScrapeTarget("b", f"{base}/metrics"), MINUTE)
        scraper.close()
    assert not broken.up
    assert "HTTP 500" in (broken.error or "")
    assert not garbage.up
    assert garbage.error


def test_bearer_token_is_sent() -> None:
    seen: list[str] = []
    registry = CollectorRegistry()
    Gauge("g", "G.", registry=registry).set(2)
    inner = metrics_app(registry)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        seen.append(environ.get("HTTP_AUTHORIZATION", ""))
        if environ.get("HTTP_AUTHORIZATION") != "Bearer s3cret":
            start_response("401 Unauthorized", [("Content-Type", "text/plain")])
            return [b"no"]
        return inner(environ, start_response)

    with _wsgi(app) as base, Scraper() as scraper:
        refused = scraper.scrape(ScrapeTarget("perfml-serving", f"{base}/metrics"), MINUTE)
        target = ScrapeTarget("perfml-serving", f"{base}/metrics", bearer_token="s3cret")
        allowed = scraper.scrape(target, 2 * MINUTE)
    assert not refused.up
    assert "401" in (refused.error or "")
    assert allowed.up
    assert ("g", 2.0) in [(s.name, s.value) for s in allowed.samples]
    assert seen == ["", "Bearer s3cret"]
    assert "s3cret" not in repr(target)


def test_staleness_of_vanished_series_and_of_a_failed_target() -> None:
    registry = CollectorRegistry()
    phase = Gauge("kube_pod_status_phase", "P.", ["pod"], registry=registry)
    phase.labels("train-1").set(1)
    phase.labels("train-2").set(1)
    server = MetricsServer(registry).start()
    metrics = MetricsStore()
    recorder = Recorder([ScrapeTarget("perfml-jobs", server.url)], metrics)
    recorder.scrape_once(MINUTE)
    phase.remove("train-2")
    recorder.scrape_once(2 * MINUTE)
    server.close()
    recorder.scrape_once(3 * MINUTE)
    recorder.scrape_once(4 * MINUTE)
    found = metrics.select(named("kube_pod_status_phase"), 0, 5 * MINUTE)
    by_pod = {dict(k)["pod"]: v for k, v in as_dict(found).items()}
    assert by_pod == {"train-1": [1.0, 1.0, "stale"], "train-2": [1.0, "stale"]}
    stamps = {dict(k)["pod"]: v for k, v in timestamps(found).items()}
    assert stamps == {
        "train-1": [MINUTE, 2 * MINUTE, 3 * MINUTE],
        "train-2": [MINUTE, 2 * MINUTE],
    }
    up = metrics.select(named("up"), 0, 5 * MINUTE)
    assert up[0].values.tolist() == [1.0, 1.0, 0.0, 0.0]  # up itself is never stale


def test_in_process_registry_target(registry: CollectorRegistry) -> None:
    metrics = MetricsStore()
    Recorder([RegistryTarget("perfml-jobs", registry, instance="runner:0")], metrics).scrape_once(
        MINUTE
    )
    found = metrics.select(named("perfml_model_load_failures_total"), 0, MINUTE)
    assert [dict(s.labels) for s in found] == [
        {
            "__name__": "perfml_model_load_failures_total",
            "instance": "runner:0",
            "job": "perfml-jobs",
            "model": "cpu",
        }
    ]
    assert not metrics.select([Matcher("__name__", "=~", ".*_created")], 0, MINUTE)


def test_exposition_parsing_keeps_gauges_named_created_and_drops_empty_labels() -> None:
    body = (
        "# TYPE files_created gauge\nfiles_created 4\n"
        "# TYPE req counter\nreq_total 1\n# TYPE req_created gauge\nreq_created 1.7e9\n"
    )
    assert list(parse_exposition(body)) == [("files_created", {}, 4.0), ("req_total", {}, 1.0)]
    scraper = Scraper()
    registry = CollectorRegistry()
    Gauge("pods", "P.", ["node"], registry=registry).labels("").set(1)
    [sample, *_] = scraper.scrape(RegistryTarget("j", registry), MINUTE).samples
    assert dict(sample.labels) == {"instance": "localhost", "job": "j"}


def test_bad_targets_and_settings_name_the_value() -> None:
    with pytest.raises(BadTargetError, match="'ftp://x/metrics'"):
        ScrapeTarget("j", "ftp://x/metrics")
    with pytest.raises(BadTargetError, match="job ''"):
        ScrapeTarget("", "http://127.0.0.1:1/metrics")
    with pytest.raises(BadRecorderSettingError, match="retention -1"):
        MetricsStore(retention_s=-1)
    with pytest.raises(BadRecorderSettingError, match="scrape_interval 0"):
        Recorder([], MetricsStore(), scrape_interval_s=0)
    metrics = MetricsStore()
    metrics.add("up", {}, 2 * MINUTE, 1.0)
    with pytest.raises(OutOfOrderError, match="60000 ms"):
        metrics.add("up", {}, MINUTE, 1.0)


def test_stale_marker_is_the_prometheus_bit_pattern() -> None:
    assert np.array([STALE_NAN]).view(np.uint64)[0] == 0x7FF0000000000002
    assert is_stale(STALE_NAN)
    assert not is_stale(math.nan)


# -- the feature store --------------------------------------------------------------------


def test_entities_are_readable_unique_and_store_safe() -> None:
    plain = (("instance", "h:9"), ("job", "perfml-jobs"), ("pod", "p-1"))
    assert entity_of(plain) == "instance=h:9,job=perfml-jobs,pod=p-1"
    tricky = [
        (("a", "x,b=y"),),
        (("a", "x"), ("b", "y")),
        (("path", "/metrics"),),
        (("a", "x "),),
        (("a", "x"),),
        (("a", "v" * 200),),
        (("a", "v" * 201),),
        (),
    ]
    encoded = [entity_of(labels) for labels in tricky]
    assert len(set(encoded)) == len(tricky)
    for entity in encoded:
        assert entity
        assert "/" not in entity
        assert entity == entity.strip()
        assert len(entity) <= 120


def record_rounds(metrics: MetricsStore, first: int, last: int, step: int = MINUTE) -> None:
    """Two series per round: a counter rising by 5 and a gauge whose value names the minute."""
    for at in range(first, last + 1, step):
        metrics.add(
            "requests_total", {"job": "perfml-serving", "path": "/v2/infer"}, at, at / 12_000
        )
        metrics.add("drift", {"feature": "cpu", "method": "kl"}, at, (at // MINUTE) % 7 / 10)


def test_flush_and_select_across_the_seam_gives_the_same_series(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "store")
    metrics = MetricsStore(store, retention_s=30 * 60, flush_interval_s=10 * 60)
    record_rounds(metrics, MINUTE, 40 * MINUTE)
    everything = [Matcher("__name__", "=~", "requests_total|drift")]
    before = metrics.select(everything, 0, 40 * MINUTE)
    window = metrics.select(named("drift"), 5 * MINUTE, 25 * MINUTE)
    assert metrics.maybe_flush(40 * MINUTE) is not None  # due: flushed, then trimmed
    assert metrics.covered_from_ms == 10 * MINUTE
    record_rounds(metrics, 41 * MINUTE, 45 * MINUTE)  # newer samples, only in memory
    after = metrics.select(everything, 0, 40 * MINUTE)
    assert as_dict(after) == as_dict(before)
    assert timestamps(after) == timestamps(before)
    assert as_dict(metrics.select(named("drift"), 5 * MINUTE, 25 * MINUTE)) == as_dict(window)
    assert len(metrics.select(named("drift"), 0, 45 * MINUTE)[0].ts) == 45
    # The store holds the series under their labels, the entity encoding the label set.
    stored = {(m, e): labels for m, e, labels in store.series()}
    assert {"job": "perfml-serving", "path": "/v2/infer"} in stored.values()
    assert ("drift", "feature=cpu,method=kl") in stored


def test_a_restart_reads_the_history_back(tmp_path: Path) -> None:
    root = tmp_path / "store"
    first = MetricsStore(FeatureStore(root), flush_interval_s=60)
    record_rounds(first, MINUTE, 20 * MINUTE)
    before = first.select([Matcher("__name__", "=~", ".+")], 0, 20 * MINUTE)
    report = first.flush()
    assert report.points == 40
    assert report.series == 2
    assert report.through_ms == 20 * MINUTE
    record_rounds(first, 21 * MINUTE, 22 * MINUTE)  # never flushed: lost with the process

    again = MetricsStore(FeatureStore(root))
    assert again.covered_from_ms is None
    after = again.select([Matcher("__name__", "=~", ".+")], 0, 30 * MINUTE)
    assert as_dict(after) == as_dict(before)
    assert timestamps(after) == timestamps(before)
    record_rounds(again, 30 * MINUTE, 31 * MINUTE)
    joined = again.select(named("drift"), 0, 31 * MINUTE)
    assert joined[0].ts.tolist() == [m * MINUTE for m in (*range(1, 21), 30, 31)]
    # Matchers on labels narrow the stored series too.
    assert again.select(named("drift", feature="mem"), 0, 30 * MINUTE) == []
    assert len(again.select([Matcher("path", "=~", "/v2/.*")], 0, 10 * MINUTE)) == 1


def test_flush_leaves_out_stale_markers_and_names_the_store_cannot_hold(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "store")
    metrics = MetricsStore(store)
    metrics.add("g", {"a": "1"}, MINUTE, 1.0)
    metrics.add("g", {"a": "1"}, 2 * MINUTE, STALE_NAN)
    metrics.add("g", {"a": "2"}, 2 * MINUTE, math.nan)
    metrics.add("job:rate5m", {}, 2 * MINUTE, 3.0)
    report = metrics.flush()
    assert (report.points, report.dropped_nonfinite, report.skipped_names) == (1, 2, 1)
    assert store.read(metrics=["g"]).column("value").to_pylist() == [1.0]
    assert metrics.flush().points == 0  # nothing pending any more


def test_a_failed_flush_keeps_the_samples_for_the_next(tmp_path: Path) -> None:
    blocker = tmp_path / "store"
    blocker.write_text("a file where the store's folder should be")
    metrics = MetricsStore(FeatureStore(blocker))
    metrics.add("g", {}, MINUTE, 1.0)
    with pytest.raises(OSError, match="store"):
        metrics.flush()
    blocker.unlink()
    metrics.add("g", {}, 2 * MINUTE, 2.0)
    assert metrics.flush().points == 2


def test_memory_only_store_is_trimmed_to_the_retention() -> None:
    metrics = MetricsStore(retention_s=10 * 60)
    record_rounds(metrics, MINUTE, 30 * MINUTE)
    metrics.maybe_flush(30 * MINUTE)
    assert metrics.select(named("drift"), 0, 30 * MINUTE)[0].ts.tolist()[0] == 21 * MINUTE


# -- the recorder thread ------------------------------------------------------------------


def test_recorder_thread_scrapes_until_stopped_then_flushes(
    tmp_path: Path, server: MetricsServer
) -> None:
    store = FeatureStore(tmp_path / "store")
    metrics = MetricsStore(store)
    recorder = Recorder([ScrapeTarget("perfml-jobs", server.url)], metrics, scrape_interval_s=0.05)
    with recorder:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if len(_up_values(metrics)) >= 3:
                break
            time.sleep(0.02)
    rounds = len(_up_values(metrics))
    assert rounds >= 3
    assert recorder.last_error is None
    up = store.read(metrics=["up"])
    assert up.num_rows == rounds
    assert set(up.column("value").to_pylist()) == {1.0}


def _up_values(metrics: MetricsStore) -> list[float]:
    now = round(time.time() * 1000) + MINUTE
    return [v for s in metrics.select(named("up"), 0, now) for v in s.values.tolist()]


# -- helpers ------------------------------------------------------------------------------


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _wsgi:  # noqa: N801 - used as a context manager like a function
    """A WSGI app on a loopback port in a thread; yields its base URL."""

    def __init__(self, app: Any) -> None:
        self.server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_port}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join()
        self.server.server_close()


def test_exposition_parser_agrees_with_prometheus_client() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from perfml.recording.scrape import exposed_samples

    body = (
        "# HELP esc Escapes.\n# TYPE esc gauge\n"
        'esc{a="x\\\\y\\"z\\n",b="}"} NaN 123\n'
        'esc{a="plain", b = "spaced"} -Inf\n'
        "# TYPE lat histogram\n"
        'lat_bucket{le="+Inf"} 3\nlat_count 3\nlat_sum 1.5e-3\n'
        "# TYPE lat_created gauge\nlat_created 1.7e9\n"
    )
    reference = list(exposed_samples(text_string_to_metric_families(body)))
    ours = list(parse_exposition(body))
    assert [(n, labels) for n, labels, _ in ours] == [(n, labels) for n, labels, _ in reference]
    assert str([v for *_, v in ours]) == str([v for *_, v in reference])
    assert ours[0][1] == {"a": 'x\\y"z\n', "b": "}"}
    with pytest.raises(ValueError, match="line 2"):
        list(parse_exposition("ok 1\nnot a sample line at all\n"))


def test_reads_while_the_recorder_writes_see_consistent_series() -> None:
    """The rule engine reads on its thread while the recorder appends new series on its own."""
    metrics = MetricsStore(None)
    failures: list[BaseException] = []
    created = [Matcher("__name__", "=", "kube_pod_created")]

    def write() -> None:
        for at in range(1_000, 301_000, 1_000):
            for pod in range(10):  # new series keep appearing, as new pods do
                metrics.add("kube_pod_created", {"pod": f"p{at}-{pod}"}, at, 1.0)

    def read() -> None:
        try:
            while writer.is_alive():
                for series in metrics.select(created, 0, 10**12):
                    assert len(series.ts) == len(series.values) >= 1
        except BaseException as error:
            failures.append(error)

    writer = threading.Thread(target=write)
    reader = threading.Thread(target=read)
    writer.start()
    reader.start()
    writer.join(timeout=60)
    reader.join(timeout=60)
    assert failures == []
    assert len(metrics.select(created, 0, 10**12)) == 3000


def test_a_long_run_of_flushes_keeps_few_files_per_partition(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "store")
    metrics = MetricsStore(store, flush_interval_s=60)
    for flush in range(40):  # 40 flushes: 40 files a metric without compaction
        for pod in range(3):
            metrics.add("kube_pod_created", {"pod": f"p{pod}"}, 1_704_067_200_000 + flush, 1.0)
        metrics.flush()
    files = [f for f in store.manifest.files if f.metric == "kube_pod_created"]
    assert len(files) <= 17
    reread = MetricsStore(FeatureStore(tmp_path / "store"))  # nothing in memory: the store
    stored = reread.select([Matcher("__name__", "=", "kube_pod_created")], 0, 10**13)
    assert sorted(len(series.ts) for series in stored) == [40, 40, 40]
