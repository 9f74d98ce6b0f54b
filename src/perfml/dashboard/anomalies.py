"""The Anomalies page's panels, from the fleet's score log: which hosts, which metrics, when.

Three readers, registered in :data:`perfml.dashboard.data.READERS`:

- the **heatmap** (:func:`heatmap`): hosts × time buckets, each cell the highest score over
  its threshold (``score / threshold``: 1 is the threshold) across the host's metrics, the
  hosts of the highest peaks first, at most ``max_hosts`` of them and a count of the rest;
- the **incidents** (:func:`incident_rows`), with a verdict to give on each host's
  (:mod:`perfml.dashboard.verdicts`): newest first, a host's incident with its metrics
  ranked by their peak, a fleet-wide event as one row with its number of hosts;
- the **host view** (:func:`host_view`): each metric of one host, its values, its scores and
  the threshold, with the labelled windows and the detected incidents as spans.

The page's :class:`~perfml.dashboard.data.Focus` narrows them to a metric (``?metric=``) and
picks the host (``?entity=``; by default the host of the highest incident). Names of hosts and
metrics are data: they go to the browser as JSON, written into the page as text.

>>> bucket_ms(7 * 86_400_000)  # a week in at most 200 columns
3600000
>>> bucket_ms(60 * 60_000)
60000
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlencode

import duckdb
import numpy as np
import pyarrow as pa

from perfml.anomalies import Findings, ScoreLog, find_incidents
from perfml.anomalies.errors import ScoreLogError
from perfml.anomalies.report import against_labels
from perfml.dashboard.data import (
    READERS,
    DashboardSources,
    Focus,
    Json,
    TimeRange,
    finite_or_none,
)
from perfml.dashboard.panels import Panel, Source
from perfml.dashboard.records import format_time
from perfml.featurestore.manifest import LabelWindow

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 60 * MINUTE_MS
DAY_MS: Final = 24 * HOUR_MS
BUCKETS_MS: Final = (
    MINUTE_MS,
    5 * MINUTE_MS,
    15 * MINUTE_MS,
    30 * MINUTE_MS,
    HOUR_MS,
    2 * HOUR_MS,
    3 * HOUR_MS,
    6 * HOUR_MS,
    12 * HOUR_MS,
    DAY_MS,
    7 * DAY_MS,
)
"""The widths a heatmap's time bucket may take."""
MAX_COLUMNS: Final = 200
"""The most time buckets a heatmap has."""
MAX_HOST_POINTS: Final = 4_000
"""The most points of one metric the host view draws: past it, the highest score of each step."""

NO_SCORES: Final = (
    "No scores yet: perfml up scores the served models' metrics as they arrive; "
    "perfml score backfills a window."
)
NOT_CONNECTED: Final = "The score log is not connected."
NO_SCORES_HERE: Final = "No score in this time range."
NO_INCIDENTS: Final = "No incident in this time range: no score reached its threshold."
INCIDENT_COLUMNS: Final = ("host", "metrics", "start", "peak", "end", "peak score", "fleet")


def bucket_ms(span_ms: int, columns: int = MAX_COLUMNS) -> int:
    """The narrowest of :data:`BUCKETS_MS` that cuts ``span_ms`` into at most ``columns``."""
    for width in BUCKETS_MS:
        if span_ms // width < columns:
            return width
    return max(BUCKETS_MS[-1], -(-span_ms // columns))


def _end(window: TimeRange) -> int:
    return window.end_ms + 1  # the range includes its end; the log's reads do not


def _metrics(focus: Focus) -> list[str] | None:
    return None if focus.metric is None else [focus.metric]


def latest_score_ms(log: ScoreLog) -> int | None:
    """The time of the latest score in ``log`` (None: no score yet)."""
    try:
        return log.latest_ms()
    except duckdb.IOException:  # a file merged away under us: as if nothing was there
        return None


# -- the heatmap ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Heatmap:
    """Hosts × time buckets: ``ratios[i][j]`` is host ``entities[i]``'s highest score over its
    threshold in the bucket starting at ``starts[j]`` (None: not scored), reached by
    ``metrics[i][j]``. ``hidden`` hosts were scored but are not shown (lower peaks)."""

    bucket_ms: int
    starts: list[int]
    entities: list[str]
    peaks: list[float]
    ratios: list[list[float | None]]
    metrics: list[list[str | None]]
    hidden: int

    def to_json(self) -> Json:
        return {
            "bucket": self.bucket_ms,
            "x": self.starts,
            "y": self.entities,
            "peaks": self.peaks,
            "z": self.ratios,
            "metrics": self.metrics,
        }


_RATIO = (
    "CASE WHEN threshold > 0 THEN score / threshold WHEN score >= threshold THEN 1.0 ELSE 0.0 END"
)
"""A score over its threshold (1 at the threshold); a threshold at or under 0 gives 1 or 0."""


def heatmap(log: ScoreLog, window: TimeRange, metric: str | None = None, top: int = 30) -> Heatmap:
    """The heatmap of ``log`` over ``window`` (one ``metric``, or all), ``top`` hosts at most."""
    width = bucket_ms(window.end_ms - window.start_ms)
    first = window.start_ms - window.start_ms % width
    columns = (window.end_ms - first) // width + 1
    scores = log.read(
        metrics=None if metric is None else [metric], start=window.start_ms, end=_end(window)
    )
    cells = _cells(scores, first, width)
    peak: dict[str, float] = {}
    for entity, _, ratio, _ in cells:
        peak[entity] = max(peak.get(entity, -np.inf), ratio)
    ranked = sorted(peak, key=lambda e: (-peak[e], e))
    shown = ranked[:top]
    row_of = {entity: row for row, entity in enumerate(shown)}
    ratios: list[list[float | None]] = [[None] * columns for _ in shown]
    metrics: list[list[str | None]] = [[None] * columns for _ in shown]
    for entity, column, ratio, which in cells:
        row = row_of.get(entity)
        if row is not None and 0 <= column < columns:
            ratios[row][column] = finite_or_none(ratio)
            metrics[row][column] = which
    return Heatmap(
        bucket_ms=width,
        starts=[first + column * width for column in range(columns)],
        entities=shown,
        peaks=[float(finite_or_none(peak[e]) or 0.0) for e in shown],
        ratios=ratios,
        metrics=metrics,
        hidden=len(ranked) - len(shown),
    )


def _cells(scores: pa.Table, first: int, width: int) -> list[tuple[str, int, float, str]]:
    """``(entity, bucket, highest ratio, its metric)`` of each scored bucket."""
    if not scores.num_rows:
        return []
    sql = f"""
        SELECT entity, (ts - ?) // ? AS bucket, max({_RATIO}) AS ratio,
               arg_max(metric, {_RATIO}) AS metric
        FROM scores GROUP BY entity, bucket
    """
    with duckdb.connect() as con:
        con.register("scores", scores)
        rows = con.execute(sql, [first, width]).fetchall()
    return [(str(e), int(b), float(r), str(m)) for e, b, r, m in rows]


@READERS.register_focused(Source.ANOMALY_HEATMAP)
def read_heatmap(panel: Panel, sources: DashboardSources, window: TimeRange, focus: Focus) -> Json:
    empty: Json = {"heatmap": {"x": [], "y": [], "z": []}, "hidden": 0}
    log = sources.scores
    if log is None:
        return empty | {"message": NOT_CONNECTED}
    if not log.models():
        return empty | {"message": NO_SCORES}
    found = heatmap(log, window, focus.metric, sources.max_hosts)
    message = None if found.entities else NO_SCORES_HERE
    return {"heatmap": found.to_json(), "hidden": found.hidden, "message": message}


# -- the incidents -------------------------------------------------------------------------


def findings(sources: DashboardSources, log: ScoreLog, window: TimeRange, focus: Focus) -> Findings:
    """The incidents of ``window`` in ``log``, grouped as ``sources.incidents`` says."""
    options = sources.incidents
    return find_incidents(
        log,
        start=window.start_ms,
        end=_end(window),
        metrics=_metrics(focus),
        gap_ms=options.gap_ms,
        fleet_fraction=options.fleet_fraction,
        fleet_min_entities=options.fleet_min_entities,
    )


def host_link(entity: str, window: TimeRange, focus: Focus) -> str:
    """The query string of ``entity``'s own view over ``window`` (as Unix seconds).

    >>> host_link("<b>&", TimeRange(0, 60_000, 1_000), Focus(metric="cpu"))
    '?entity=%3Cb%3E%26&start=0.0&end=60.0&metric=cpu'
    """
    query = {"entity": entity, "start": window.start_ms / 1000, "end": window.end_ms / 1000}
    if focus.metric is not None:
        query["metric"] = focus.metric
    return "?" + urlencode(query)


def _score(value: float) -> str:
    return f"{value:.3g}"


def incident_rows(
    found: Findings, *, limit: int = 500
) -> tuple[list[list[Any]], list[str], list[str]]:
    """The incidents of ``found``, newest first: a row per host incident, ``host, metrics (by
    peak), start, peak, end, peak score, fleet``, and one per fleet incident in place of its
    members; the host each row links to and the incident's id (``""``: a fleet row)."""
    entries: list[tuple[int, list[Any], str, str]] = []
    for incident in found.incidents:
        if incident.fleet is not None:
            continue  # shown by its fleet incident's row
        metrics = ", ".join(f"{m.metric} {_score(m.peak_score)}" for m in incident.metrics)
        entries.append(
            (
                incident.start_ms,
                [
                    incident.entity,
                    metrics,
                    format_time(incident.start_ms / 1000),
                    format_time(incident.peak_ms / 1000),
                    format_time(incident.end_ms / 1000),
                    _score(incident.peak_score),
                    "",
                ],
                incident.entity,
                incident.id,
            )
        )
    for fleet in found.fleets:
        entries.append(
            (
                fleet.start_ms,
                [
                    f"fleet: {fleet.entities} of {fleet.fleet_size} hosts",
                    ", ".join(fleet.metrics),
                    format_time(fleet.start_ms / 1000),
                    "",
                    format_time(fleet.end_ms / 1000),
                    _score(fleet.peak_score),
                    f"fleet incident ({fleet.entities} hosts)",
                ],
                "",
                "",
            )
        )
    entries.sort(key=lambda entry: (entry[0], entry[2]), reverse=True)
    kept = entries[:limit]
    return [e[1] for e in kept], [e[2] for e in kept], [e[3] for e in kept]


@READERS.register_focused(Source.INCIDENTS)
def read_incidents(
    panel: Panel, sources: DashboardSources, window: TimeRange, focus: Focus
) -> Json:
    columns = list(INCIDENT_COLUMNS)
    log = sources.scores
    if log is None:
        return {"columns": columns, "rows": [], "message": NOT_CONNECTED}
    if not log.models():
        return {"columns": columns, "rows": [], "message": NO_SCORES}
    rows, hosts, ids = incident_rows(findings(sources, log, window, focus), limit=sources.max_rows)
    links = [[row, 0, host_link(host, window, focus)] for row, host in enumerate(hosts) if host]
    fleet_rows = [row for row, host in enumerate(hosts) if not host]
    answer: Json = {
        "columns": columns,
        "rows": rows,
        "links": links,
        "marked": fleet_rows,
        "message": None if rows else NO_INCIDENTS,
    }
    if sources.verdicts is not None:
        given = sources.verdicts.by_incident()
        # [row, incident id, its verdict or None]: the page offers a verdict on each host row.
        answer["verdicts"] = [
            [row, found, given[found].kind.value if found in given else None]
            for row, found in enumerate(ids)
            if found
        ]
    return answer


# -- one host ------------------------------------------------------------------------------


def _spans(lo: int, hi: int, window: TimeRange) -> list[int] | None:
    if hi < window.start_ms or lo > window.end_ms:
        return None
    return [max(lo, window.start_ms), min(hi, window.end_ms)]


def _thin(ts: np.ndarray, score: np.ndarray, window: TimeRange) -> np.ndarray:
    """The rows to draw: all, or past :data:`MAX_HOST_POINTS` the highest score of each of
    that many steps (a spike is never thinned away)."""
    if len(ts) <= MAX_HOST_POINTS:
        return np.arange(len(ts))
    step = max(1, -(-(window.end_ms - window.start_ms + 1) // MAX_HOST_POINTS))
    bucket = (ts - window.start_ms) // step
    order = np.lexsort((-score, bucket))
    first = np.ones(len(order), dtype=bool)
    first[1:] = bucket[order][1:] != bucket[order][:-1]
    return np.sort(order[first])


def host_view(
    log: ScoreLog,
    entity: str,
    window: TimeRange,
    found: Findings,
    labelled: Sequence[LabelWindow] = (),
    metric: str | None = None,
) -> list[Json]:
    """One series per metric (and model) of ``entity`` in ``window``: ``t``, its values ``v``,
    ``score``, ``threshold`` per point, the ``labelled`` windows of the metric and the
    ``incidents`` of the host that involve it, as ``[start, end]`` spans (Unix ms)."""
    scores = log.read(
        entities=[entity],
        metrics=None if metric is None else [metric],
        start=window.start_ms,
        end=_end(window),
    )
    if not scores.num_rows:
        return []
    model = np.asarray(scores.column("model").to_pylist(), dtype=object)
    names = np.asarray(scores.column("metric").to_pylist(), dtype=object)
    ts = scores.column("ts").to_numpy()
    value = scores.column("value").to_numpy()
    score = scores.column("score").to_numpy()
    threshold = scores.column("threshold").to_numpy()
    keys = sorted({(str(n), str(m)) for n, m in zip(names, model, strict=True)})
    models_of: dict[str, int] = defaultdict(int)
    for name, _ in keys:
        models_of[name] += 1
    windows_of: dict[str, list[list[int]]] = defaultdict(list)
    for label in labelled:
        if label.entity == entity and (span := _spans(label.start, label.end, window)):
            windows_of[label.metric].append(span)
    series = []
    for name, owner in keys:
        rows = np.flatnonzero((names == name) & (model == owner))
        rows = rows[_thin(ts[rows], score[rows], window)]
        incidents = [
            span
            for incident in found.entity(entity)
            if any(part.metric == name and part.model == owner for part in incident.metrics)
            and (span := _spans(incident.start_ms, incident.end_ms, window))
        ]
        series.append(
            {
                "name": name if models_of[name] == 1 else f"{name} ({owner})",
                "labels": {"entity": entity, "metric": name, "model": owner},
                "t": ts[rows].tolist(),
                "v": [finite_or_none(v) for v in value[rows].tolist()],
                "score": [finite_or_none(s) for s in score[rows].tolist()],
                "threshold": [finite_or_none(t) for t in threshold[rows].tolist()],
                "labelled": windows_of.get(name, []),
                "incidents": incidents,
            }
        )
    return series


@READERS.register_focused(Source.HOST_SCORES)
def read_host(panel: Panel, sources: DashboardSources, window: TimeRange, focus: Focus) -> Json:
    log = sources.scores
    if log is None:
        return {"series": [], "message": NOT_CONNECTED}
    if not log.models():
        return {"series": [], "message": NO_SCORES}
    found = findings(sources, log, window, focus)
    entity = focus.entity
    if entity is None:
        if not found.incidents:
            return {
                "series": [],
                "message": "No incident in this time range; ?entity=NAME shows a host's metrics.",
            }
        entity = max(found.incidents, key=lambda i: (i.peak_score, i.peak_ms)).entity
    labelled = [] if sources.labels is None else sources.labels.windows(entities=[entity])
    series = host_view(log, entity, window, found, labelled, focus.metric)
    answer: Json = {"title": f"Host {entity}", "entity": entity, "scored": True, "series": series}
    if not series:
        answer["message"] = f"No score of host {entity!r} in this time range."
    return answer


# -- the report ----------------------------------------------------------------------------


def _month(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m")


def monthly_counts(found: Findings, labelled: Sequence[LabelWindow] = ()) -> list[list[Any]]:
    """Per month (of their start): host incidents (outside fleet incidents), fleet incidents,
    hosts with an incident and, with labels, the labelled windows found of those there were."""
    incidents: dict[str, int] = defaultdict(int)
    fleets: dict[str, int] = defaultdict(int)
    hosts: dict[str, set[str]] = defaultdict(set)
    windows: dict[str, list[tuple[str, str, int, int]]] = defaultdict(list)
    for incident in found.incidents:
        month = _month(incident.start_ms)
        hosts[month].add(incident.entity)
        if incident.fleet is None:
            incidents[month] += 1
    for fleet in found.fleets:
        fleets[_month(fleet.start_ms)] += 1
    for label in labelled:
        windows[_month(label.start)].append((label.metric, label.entity, label.start, label.end))
    rows = []
    for month in sorted({*hosts, *fleets, *windows}):
        found_text = ""
        if windows.get(month):
            judged = against_labels(found, windows[month])
            found_text = f"{judged.found} of {judged.windows}"
        rows.append([month, incidents[month], fleets[month], len(hosts[month]), found_text])
    return rows


def report_labels(sources: DashboardSources, window: TimeRange) -> list[LabelWindow]:
    """The labelled windows of the scored metrics that start within ``window``."""
    if sources.labels is None or sources.scores is None:
        return []
    scored = set(_scored_metrics(sources.scores, window))
    return [
        label
        for label in sources.labels.windows(metrics=sorted(scored))
        if window.start_ms <= label.start <= window.end_ms
    ]


def _scored_metrics(log: ScoreLog, window: TimeRange) -> list[str]:
    try:
        found = log.read(start=window.start_ms, end=_end(window)).column("metric")
    except ScoreLogError:
        return []
    return sorted(set(found.to_pylist()))
