"""Each panel's data for a time range, as plain JSON-able dicts: the dashboard's core.

No HTTP here: :func:`page_data` takes the page, the sources (a
:class:`~perfml.promql.SeriesSource`, the run history, the registry, the alerts)
and a :class:`TimeRange`, and gives what the web page draws. A panel is read by the reader
registered for its :class:`~perfml.dashboard.panels.Source` (:class:`PanelReaders`; the
PromQL reader here, the others in :mod:`perfml.dashboard.records`). A source that is not
connected, or has nothing yet, gives an empty panel with a message, never an error.

Every panel answer has ``id, title, kind, unit, format, note, width, threshold, empty,
message`` and, by kind: ``series`` (``name, labels, t`` in Unix ms, ``v``; a stat's series
has its latest ``value``), ``columns`` and ``rows`` (tables), ``lanes`` of ``segments``
(timelines). Missing values (NaN) are ``null``, so the JSON is strict.

>>> window = TimeRange.parse("1000", "1600", "60", now_ms=0)
>>> window.start_ms, window.end_ms, window.step_ms, window.points
(1000000, 1600000, 60000, 11)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from perfml import promql
from perfml.alerting.store import AlertStore
from perfml.anomalies import ScoreLog, VerdictLog
from perfml.controller.decisions import DecisionLog
from perfml.dashboard.errors import BadRangeError
from perfml.dashboard.panels import UNITS, ChartKind, Page, Panel, Source
from perfml.errors import PerfmlError
from perfml.featurestore.manifest import LabelWindow
from perfml.pipelines.history import RunHistory
from perfml.registry.registry import ModelRegistry
from perfml.timeparse import parse_duration, parse_instant

MAX_POINTS: Final = 11_000
"""The most points a series may have in one range (Prometheus's own limit)."""
DEFAULT_POINTS: Final = 240
"""Points per series when the step is not given."""
MIN_STEP_MS: Final = 1_000

Json = dict[str, Any]


RangeEvaluator = Callable[[str, int, int, int, promql.SeriesSource], Sequence[promql.Series]]
"""``(expr, start_ms, end_ms, step_ms, source) -> series``: a PromQL range query."""


@dataclass(frozen=True)
class TimeRange:
    """The range ``[start_ms, end_ms]`` evaluated every ``step_ms`` (Unix milliseconds)."""

    start_ms: int
    end_ms: int
    step_ms: int

    def __post_init__(self) -> None:
        if self.end_ms < self.start_ms:
            raise BadRangeError("end", self.end_ms, f"is before the start {self.start_ms}")
        if self.step_ms < MIN_STEP_MS:
            raise BadRangeError("step", self.step_ms, f"is under {MIN_STEP_MS} ms")
        if self.points > MAX_POINTS:
            raise BadRangeError(
                "step",
                self.step_ms,
                f"gives {self.points} points per series over the range; at most {MAX_POINTS}",
            )

    @property
    def points(self) -> int:
        return (self.end_ms - self.start_ms) // self.step_ms + 1

    @classmethod
    def last(
        cls, duration: str, now_ms: int | None = None, points: int = DEFAULT_POINTS
    ) -> TimeRange:
        """The ``duration`` (``1h``, ``400d``) up to now, in about ``points`` steps."""
        end = int(time.time() * 1000) if now_ms is None else now_ms
        span = _duration_ms(duration, "range")
        return cls(end - span, end, max(MIN_STEP_MS, span // max(1, points - 1)))

    @classmethod
    def parse(
        cls,
        start: str | None,
        end: str | None,
        step: str | None,
        default_range: str = "1h",
        now_ms: int | None = None,
    ) -> TimeRange:
        """A range from text as a query string gives it: ``start``/``end`` as Unix seconds or
        RFC 3339, ``step`` as seconds or a duration (``30s``); ``end`` defaults to now,
        ``start`` to ``default_range`` before it, ``step`` to :data:`DEFAULT_POINTS` points."""
        end_ms = int(time.time() * 1000) if now_ms is None else now_ms
        if end:
            end_ms = _instant_ms(end, "end")
        start_ms = end_ms - _duration_ms(default_range, "range")
        if start:
            start_ms = _instant_ms(start, "start")
        if step:
            step_ms = _step_ms(step)
        else:
            step_ms = max(MIN_STEP_MS, (end_ms - start_ms) // (DEFAULT_POINTS - 1))
        return cls(start_ms, end_ms, step_ms)


def _instant_ms(text: str, what: str) -> int:
    try:
        return round(parse_instant(text, what).timestamp() * 1000)
    except (PerfmlError, OverflowError, OSError):
        raise BadRangeError(what, text, "is not Unix seconds nor RFC 3339") from None


def _duration_ms(text: str, what: str) -> int:
    try:
        return round(parse_duration(text, what).total_seconds() * 1000)
    except PerfmlError:
        raise BadRangeError(what, text, "is not a duration such as 30s, 5m, 1h") from None


def _step_ms(text: str) -> int:
    try:
        seconds = float(text)
    except ValueError:
        return _duration_ms(text, "step")
    if not math.isfinite(seconds) or seconds <= 0:
        raise BadRangeError("step", text, "is not a positive number of seconds")
    return round(seconds * 1000)


@dataclass(frozen=True)
class Focus:
    """What a page is narrowed to besides its time range, from the query string: one
    ``entity`` (a host's own view) and one ``metric``; None is every one."""

    entity: str | None = None
    metric: str | None = None


class LabelSource(Protocol):
    """Where labelled anomaly windows are read (the feature store)."""

    def windows(
        self, metrics: Sequence[str] | None = None, entities: Sequence[str] | None = None
    ) -> list[LabelWindow]: ...


@dataclass(frozen=True)
class IncidentOptions:
    """How scores are grouped into incidents (``live`` in ``perfml.yaml``): anomalous points
    closer than ``gap_ms`` are one incident; ``fleet_fraction`` of the entities scored, and at
    least ``fleet_min_entities``, anomalous at once are one fleet incident."""

    gap_ms: int = 30 * 60_000
    fleet_fraction: float = 0.2
    fleet_min_entities: int = 3


@dataclass
class DashboardSources:
    """What the dashboard reads; a source left ``None`` shows as "not connected".

    The run history, the registry, the alert store and the decision log may share one
    metadata database.

    ``series`` is any :class:`~perfml.promql.SeriesSource` (perfml's own metrics
    store, or an in-memory one), queried with ``evaluate`` (PromQL's range query).
    ``scores`` is the fleet's score log and ``labels`` (the feature store) its labelled
    windows; ``incidents`` says how the scores are grouped into incidents.
    """

    series: promql.SeriesSource | None = None
    history: RunHistory | None = None
    registry: ModelRegistry | None = None
    alerts: AlertStore | None = None
    decisions: DecisionLog | None = None
    scores: ScoreLog | None = None
    labels: LabelSource | None = None
    verdicts: VerdictLog | None = None
    """Operators' verdicts on incidents: the incidents table offers to give one."""
    incidents: IncidentOptions = field(default_factory=IncidentOptions)
    evaluate: RangeEvaluator | None = None
    """PromQL's range query; None is :func:`perfml.promql.evaluate_range`."""
    max_runs: int = 50
    """How many recent runs the job timeline reads."""
    max_rows: int = 500
    """How many rows a table shows at most (the newest)."""
    max_hosts: int = 30
    """How many hosts the anomalies' heatmap shows at most (those of the highest peaks)."""


PanelReader = Callable[[Panel, DashboardSources, TimeRange], Json]
"""Fills a panel's answer: returns the kind's keys (``series``, ``rows``...) and, when there
is nothing to show, ``message``."""
FocusedReader = Callable[[Panel, DashboardSources, TimeRange, Focus], Json]
"""A reader that also takes the page's :class:`Focus` (an entity, a metric)."""


class PanelReaders:
    """Which reader fills the panels of each :class:`Source`.

    The default registry, :data:`READERS`, knows every source; a test or an extension builds
    its own and passes it to :func:`page_data`::

        readers = PanelReaders()

        @readers.register(Source.PROMQL)
        def read(panel, sources, window): ...

        @readers.register_focused(Source.HOST_SCORES)
        def read_host(panel, sources, window, focus): ...
    """

    def __init__(self) -> None:
        self._readers: dict[Source, FocusedReader] = {}

    def register(self, source: Source) -> Callable[[PanelReader], PanelReader]:
        def add(reader: PanelReader) -> PanelReader:
            self._readers[source] = lambda panel, sources, window, focus: reader(
                panel, sources, window
            )
            return reader

        return add

    def register_focused(self, source: Source) -> Callable[[FocusedReader], FocusedReader]:
        def add(reader: FocusedReader) -> FocusedReader:
            self._readers[source] = reader
            return reader

        return add

    def reader(self, source: Source) -> FocusedReader | None:
        return self._readers.get(source)


READERS = PanelReaders()


def page_data(
    page: Page,
    sources: DashboardSources,
    window: TimeRange,
    readers: PanelReaders | None = None,
    focus: Focus | None = None,
) -> Json:
    """The data of every panel of ``page`` over ``window`` (narrowed to ``focus``)."""
    return {
        "page": page.slug,
        "title": page.title,
        "range": {"start": window.start_ms, "end": window.end_ms, "step": window.step_ms},
        "panels": [panel_data(panel, sources, window, readers, focus) for panel in page.panels],
    }


def panel_data(
    panel: Panel,
    sources: DashboardSources,
    window: TimeRange,
    readers: PanelReaders | None = None,
    focus: Focus | None = None,
) -> Json:
    """The data of one panel: its definition's display fields and what its source gives.

    A failure of one panel's source (a query perfml cannot evaluate, a database that is
    gone) is that panel's ``error``; the other panels still show.
    """
    tickformat, suffix = UNITS[panel.unit]
    answer: Json = {
        "id": panel.id,
        "title": panel.title,
        "kind": panel.kind.value,
        "unit": panel.unit,
        "format": {"tickformat": tickformat, "suffix": suffix},
        "note": panel.note,
        "width": panel.width,
        "threshold": (
            None
            if panel.threshold is None
            else {"value": panel.threshold.value, "label": panel.threshold.label}
        ),
        "error": None,
        "message": None,
    }
    reader = (readers or READERS).reader(panel.source)
    if reader is None:
        answer["error"] = f"no reader for the source {panel.source.value!r}"
    else:
        try:
            answer.update(reader(panel, sources, window, focus or Focus()))
        except PerfmlError as error:
            answer["error"] = str(error)
    answer["empty"] = answer["error"] is not None or not _has_data(answer)
    if answer["empty"] and answer["message"] is None and answer["error"] is None:
        answer["message"] = "No data yet for this time range."
    return answer


def _has_data(answer: Json) -> bool:
    if answer.get("series"):
        return any(
            any(v is not None for v in s.get("v", ())) or s.get("value") is not None
            for s in answer["series"]
        )
    heatmap = answer.get("heatmap") or {}
    return bool(answer.get("rows") or answer.get("lanes") or heatmap.get("y"))


def finite_or_none(value: float) -> float | None:
    """``value``, or None for NaN and infinities (JSON has neither)."""
    return value if math.isfinite(value) else None


@READERS.register(Source.PROMQL)
def read_promql(panel: Panel, sources: DashboardSources, window: TimeRange) -> Json:
    """Evaluate the panel's queries over the range; a stat keeps each series' latest value,
    a table one row per series."""
    if sources.series is None:
        return {"series": [], "message": "The metrics store is not connected."}
    evaluate = sources.evaluate or promql.evaluate_range
    series: list[Json] = []
    for query in panel.queries:
        found = evaluate(query.expr, window.start_ms, window.end_ms, window.step_ms, sources.series)
        for one in sorted(found, key=lambda s: sorted(s.labels.items())):
            labels = dict(one.labels)
            values = [finite_or_none(v) for v in one.values.tolist()]
            series.append(
                {
                    "name": query.legend_for(labels),
                    "labels": labels,
                    "t": [int(t) for t in one.ts.tolist()],
                    "v": values,
                    "value": next((v for v in reversed(values) if v is not None), None),
                }
            )
    if panel.kind is ChartKind.TABLE:
        keys = sorted({k for s in series for k in s["labels"] if k != "__name__"})
        return {
            "series": series,
            "columns": [*keys, "value"],
            "rows": [[s["labels"].get(k, "") for k in keys] + [s["value"]] for s in series],
        }
    return {"series": series}


def _register_records() -> None:
    # The readers of perfml's own records and of the score log register themselves on import.
    from perfml.dashboard import anomalies, records  # noqa: F401


_register_records()
