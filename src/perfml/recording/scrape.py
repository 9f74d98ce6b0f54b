"""Scraping metrics endpoints as Prometheus does, without Prometheus.

In the embedded mode perfml is its own Prometheus: it reads the ``/metrics`` endpoints of its
serving and job-metrics servers (or, in the same process, a
:class:`~prometheus_client.CollectorRegistry` directly) and turns each scrape into samples
labelled exactly as a Prometheus server would label them, so that one rule file reads both:

* every sample gets the target's ``job`` and ``instance`` (``host:port``) labels; a label the
  endpoint exposes under one of those names is kept as ``exported_job`` /
  ``exported_instance`` (``honor_labels: false``, Prometheus's default);
* a label with an empty value is no label at all (``node=""`` is absent);
* sample names are those exposed: ``_total`` for counters, ``_bucket``/``_count``/``_sum`` for
  histograms and summaries; the ``_created`` samples are dropped, as Prometheus does when it
  negotiates OpenMetrics (its default);
* each scrape adds ``up`` (1 when the scrape worked, 0 when not), ``scrape_duration_seconds``
  and ``scrape_samples_scraped``;
* staleness: a series of the target's previous scrape that is missing now gets the stale
  marker (``STALE_NAN`` of :mod:`perfml.promql.series`) at this scrape's time,
  and when a scrape fails every series of the target does, so that rules stop seeing them
  at once instead of for the 5 minute lookback.

Every sample of a scrape is stamped with the scrape's time, in milliseconds.

>>> from prometheus_client import CollectorRegistry, Gauge
>>> registry = CollectorRegistry()
>>> Gauge("queue_depth", "Jobs waiting.", registry=registry).set(3)
>>> scraper = Scraper()
>>> result = scraper.scrape(RegistryTarget("perfml-jobs", registry), at_ms=60_000)
>>> [(s.name, s.value) for s in result.samples][:2]
[('queue_depth', 3.0), ('up', 1.0)]
>>> dict(result.samples[0].labels)
{'instance': 'localhost', 'job': 'perfml-jobs'}
"""

from __future__ import annotations

import math
import re
import struct
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple, TypeAlias

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from perfml.promql.series import STALE_NAN, STALE_NAN_BITS
from perfml.recording.errors import RecordingError

DEFAULT_TIMEOUT_S = 10.0
"""Prometheus's default ``scrape_timeout``."""

_WITH_CREATED = frozenset({"counter", "histogram", "summary", "gaugehistogram"})
_ACCEPT = "text/plain;version=0.0.4;q=0.9,*/*;q=0.1"

Labels: TypeAlias = tuple[tuple[str, str], ...]
"""A label set as sorted ``(name, value)`` pairs, without ``__name__``: hashable and ordered."""


def is_stale(value: float) -> bool:
    """Whether ``value`` is the staleness marker (an ordinary NaN is not).

    >>> is_stale(STALE_NAN), is_stale(float("nan")), is_stale(1.0)
    (True, False, False)
    """
    return math.isnan(value) and struct.unpack("<Q", struct.pack("<d", value))[0] == STALE_NAN_BITS


class BadTargetError(RecordingError):
    """A scrape target is not one the recorder can scrape."""

    def __init__(self, what: str, value: object, expected: str) -> None:
        self.what = what
        self.value = value
        super().__init__(f"scrape target {what} {value!r} is not valid: expected {expected}")


class ScrapedSample(NamedTuple):
    """One sample of a scrape: its name, its labels (``job`` and ``instance`` included) and
    its value (``STALE_NAN`` for a stale marker)."""

    name: str
    labels: Labels
    value: float


@dataclass(frozen=True)
class ScrapeTarget:
    """An HTTP endpoint in the text exposition format, scraped with GET.

    ``labels`` are the target's own (Prometheus's ``static_configs`` labels); ``bearer_token``
    is sent as ``Authorization: Bearer …`` (the serving token, when it is configured).

    >>> ScrapeTarget("perfml-serving", "http://127.0.0.1:8080/metrics").instance
    '127.0.0.1:8080'
    """

    job: str
    url: str
    labels: Mapping[str, str] = field(default_factory=dict)
    bearer_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _check_job(self.job)
        try:
            parsed = httpx.URL(self.url)
        except (httpx.InvalidURL, TypeError) as error:
            raise BadTargetError("url", self.url, f"an http(s) URL ({error})") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise BadTargetError("url", self.url, "an http(s) URL with a host")

    @property
    def instance(self) -> str:
        """``host:port`` of the URL, the port implied by the scheme when absent."""
        parsed = httpx.URL(self.url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
        return f"{host}:{port}"


@dataclass(frozen=True, eq=False)
class RegistryTarget:
    """A :class:`~prometheus_client.CollectorRegistry` of this process, read without HTTP.

    ``instance`` stands for the ``host:port`` an HTTP target would have.
    """

    job: str
    registry: CollectorRegistry
    instance: str = "localhost"
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_job(self.job)
        if not self.instance:
            raise BadTargetError("instance", self.instance, "a non-empty name")


Target: TypeAlias = ScrapeTarget | RegistryTarget


def _check_job(job: str) -> None:
    if not isinstance(job, str) or not job.strip():
        raise BadTargetError("job", job, "a non-empty name")


@dataclass(frozen=True)
class ScrapeResult:
    """What one scrape of one target gave: every sample to record, stale markers and the
    ``up``/``scrape_*`` series included, and why it failed when it did."""

    job: str
    instance: str
    at_ms: int
    up: bool
    duration_s: float
    scraped: int
    samples: list[ScrapedSample]
    error: str | None = None


class Scraper:
    """Scrapes targets as Prometheus does and remembers each target's series for staleness.

    One scraper serves many targets; ``timeout_s`` bounds each HTTP scrape. Close it (or use
    it in a ``with`` block) to release its HTTP connections.
    """

    def __init__(
        self, *, timeout_s: float = DEFAULT_TIMEOUT_S, client: httpx.Client | None = None
    ) -> None:
        if not timeout_s > 0:
            raise BadTargetError("timeout", timeout_s, "a positive number of seconds")
        self.timeout_s = timeout_s
        self._own_client = client is None
        self._client = client or httpx.Client(timeout=timeout_s, follow_redirects=True)
        self._previous: dict[tuple[str, str], set[tuple[str, Labels]]] = {}

    def scrape(self, target: Target, at_ms: int) -> ScrapeResult:
        """Scrape ``target`` now; its samples are stamped ``at_ms``. Never raises for a
        target that cannot be read: the result says ``up`` 0 and why."""
        exposed, error, duration = self._timed_read(target)
        return self._result(target, at_ms, exposed, error, duration)

    def scrape_all(self, targets: Iterable[Target], at_ms: int) -> list[ScrapeResult]:
        """Scrape ``targets`` at the same time (a thread each, up to 8), results in order."""
        targets = list(targets)
        if len(targets) <= 1:
            return [self.scrape(t, at_ms) for t in targets]
        with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
            reads = list(pool.map(self._timed_read, targets))
        return [
            self._result(target, at_ms, exposed, error, duration)
            for target, (exposed, error, duration) in zip(targets, reads, strict=True)
        ]

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def __enter__(self) -> Scraper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------

    def _timed_read(
        self, target: Target
    ) -> tuple[list[tuple[str, dict[str, str], float]], str | None, float]:
        began = time.perf_counter()
        try:
            exposed = list(self._read(target))
        except (httpx.HTTPError, ValueError, OSError, _HTTPStatusError) as failure:
            return [], f"{type(failure).__name__}: {failure}", time.perf_counter() - began
        return exposed, None, time.perf_counter() - began

    def _read(self, target: Target) -> Iterator[tuple[str, dict[str, str], float]]:
        if isinstance(target, RegistryTarget):
            return exposed_samples(target.registry.collect())
        headers = {"Accept": _ACCEPT}
        if target.bearer_token:
            headers["Authorization"] = f"Bearer {target.bearer_token}"
        response = self._client.get(target.url, headers=headers, timeout=self.timeout_s)
        if response.status_code != 200:
            raise _HTTPStatusError(target.url, response.status_code)
        return parse_exposition(response.text)

    # -- labelling and staleness ---------------------------------------------------------

    def _result(
        self,
        target: Target,
        at_ms: int,
        exposed: list[tuple[str, dict[str, str], float]],
        error: str | None,
        duration: float,
    ) -> ScrapeResult:
        key = (target.job, target.instance)
        own = {**target.labels, "job": target.job, "instance": target.instance}
        samples: list[ScrapedSample] = []
        seen: set[tuple[str, Labels]] = set()
        for name, labels, value in exposed:
            series = (name, attach_target_labels(labels, own))
            if series in seen:  # a duplicate of a series in one scrape: the first one counts
                continue
            seen.add(series)
            samples.append(ScrapedSample(series[0], series[1], value))
        before = self._previous.get(key, set())
        for gone_name, gone_labels in sorted(before - seen):
            samples.append(ScrapedSample(gone_name, gone_labels, STALE_NAN))
        self._previous[key] = seen
        target_labels = attach_target_labels({}, own)
        for name, value in (
            ("up", 0.0 if error else 1.0),
            ("scrape_duration_seconds", duration),
            ("scrape_samples_scraped", float(len(exposed))),
        ):
            samples.append(ScrapedSample(name, target_labels, value))
        return ScrapeResult(
            job=target.job,
            instance=target.instance,
            at_ms=at_ms,
            up=error is None,
            duration_s=duration,
            scraped=len(exposed),
            samples=samples,
            error=error,
        )


class _HTTPStatusError(Exception):
    def __init__(self, url: str, status: int) -> None:
        super().__init__(f"GET {url} answered HTTP {status}")


def attach_target_labels(exposed: Mapping[str, str], target: Mapping[str, str]) -> Labels:
    """The labels of a scraped sample: the target's win; an exposed label they clash with is
    kept as ``exported_<name>`` (again prefixed while that clashes too); empty values dropped.

    >>> attach_target_labels({"job": "train", "pod": "p-1", "node": ""},
    ...                      {"job": "perfml-jobs", "instance": "h:9"})
    (('exported_job', 'train'), ('instance', 'h:9'), ('job', 'perfml-jobs'), ('pod', 'p-1'))
    """
    merged = {name: value for name, value in exposed.items() if value != ""}
    for name, value in target.items():
        if name in merged:
            moved = f"exported_{name}"
            while moved in merged or moved in target:
                moved = f"exported_{moved}"
            merged[moved] = merged.pop(name)
        if value != "":
            merged[name] = value
    return tuple(sorted(merged.items()))


def parse_exposition(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """The samples of a body in the text exposition format 0.0.4, as Prometheus ingests them.

    Lines are read with two regular expressions rather than prometheus_client's parser, which
    costs several times more per sample (a scrape of 1,000 jobs holds ~17,000 samples). A line
    that is neither a comment nor a sample raises ``ValueError``: the scrape fails (``up`` 0).

    >>> body = '''# TYPE req_total counter
    ... req_total{code="200",path="/a"} 3
    ... # TYPE req_created gauge
    ... req_created{code="200"} 1.7e9
    ... '''
    >>> list(parse_exposition(body))
    [('req_total', {'code': '200', 'path': '/a'}, 3.0)]
    """
    created = _created_names(text)
    for number, line in enumerate(text.splitlines(), 1):
        if not line or line.startswith("#") or line.isspace():
            continue
        found = _SAMPLE_LINE.match(line)
        if found is None:
            raise ValueError(f"line {number} is not a sample: {line[:200]!r}")
        name, body, value = found.group(1, 2, 3)
        if name in created:
            continue
        yield name, _labels(body, number) if body else {}, float(value)


_SAMPLE_LINE = re.compile(
    r"([a-zA-Z_:][a-zA-Z0-9_:]*)[ \t]*(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?[ \t]*$"
)
_LABEL_PAIR = re.compile(
    r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"[ \t]*(,|$)'
)
_ESCAPE = re.compile(r"\\(.)")
_UNESCAPED = {"n": "\n", "\\": "\\", '"': '"'}
_TYPE_LINE = re.compile(r"^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)", re.MULTILINE)


def _labels(body: str, number: int) -> dict[str, str]:
    labels: dict[str, str] = {}
    position = 0
    while position < len(body):
        pair = _LABEL_PAIR.match(body, position)
        if pair is None:
            raise ValueError(f"line {number}: malformed labels {body[:200]!r}")
        value = pair.group(2)
        if "\\" in value:
            value = _ESCAPE.sub(lambda m: _UNESCAPED.get(m.group(1), m.group(0)), value)
        labels[pair.group(1)] = value
        position = pair.end()
    return labels


def _created_names(text: str) -> set[str]:
    """``<family>_created`` of every counter, histogram and summary the body declares."""
    names = set()
    for name, kind in _TYPE_LINE.findall(text):
        if kind in _WITH_CREATED:
            base = name.removesuffix("_total") if kind == "counter" else name
            names.add(f"{base}_created")
    return names


def exposed_samples(families: Iterable[Metric]) -> Iterator[tuple[str, dict[str, str], float]]:
    """``(name, labels, value)`` of the families' samples, without the ``_created`` ones.

    In the text format 0.0.4 a counter's ``_created`` samples come as a gauge family of their
    own named ``<counter>_created``; straight from a registry they are samples of the counter.
    Both are dropped.
    """
    families = list(families)
    created = {f"{f.name}_created" for f in families if f.type in _WITH_CREATED}
    for family in families:
        if family.type == "gauge" and family.name in created:
            continue
        for sample in family.samples:
            if sample.name in created:
                continue
            yield sample.name, sample.labels, float(sample.value)
