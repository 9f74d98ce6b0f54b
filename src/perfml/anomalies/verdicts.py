"""Operators' verdicts on incidents, and the labels they become.

An operator marks an incident (:class:`~perfml.anomalies.incidents.Incident`) a *true
anomaly*, a *false alarm* or an *expected change*. The :class:`VerdictLog` keeps one verdict
per incident in the metadata database — who, when, the note — and turns it into what the
models are judged and retrained on:

- **true anomaly**: a labelled anomaly window (kind ``operator``) of each of the incident's
  metrics over its span, in the feature store. ``perfml_model_quality``, the gate's labelled
  window and the training pipeline's evaluation read the store's windows, so they count it;
- **false alarm**: *no* window. The evaluators know anomaly windows only, and every row
  outside one is normal: the detector's flags in the span are false positives wherever the
  series is judged (the gate and the training pipeline judge every series of the metric;
  ``perfml_model_quality`` judges the series that carry a label). A window marked "normal"
  would be read as an anomaly by every one of them, so none is written; the verdict log is
  the record that the span was reviewed (the review queue and the coverage report read it);
- **expected change**: no window either (the change is the new normal, not an anomaly the
  detector should have flagged), and the alerts of that entity's metrics are silenced for a
  while (:data:`DEFAULT_SILENCE`): the log is handed a :data:`Silencer` (the alert store's,
  see :meth:`perfml.workspace.Workspace.verdicts`), which it calls once per metric.

A verdict is final: a second one on the same incident is refused (:class:`VerdictTakenError`),
as windows written to the store are not taken back.

>>> from perfml.metadata import MetadataDatabase
>>> from perfml.featurestore import FeatureStore
>>> import tempfile
>>> from perfml.anomalies.incidents import MetricPart
>>> log = VerdictLog(MetadataDatabase("sqlite://"), FeatureStore(tempfile.mkdtemp()))
>>> part = MetricPart("cpu", "cpu-model", 0.9, 60_000, 2, 0.5)
>>> incident = Incident("web-1", 0, 120_000, 60_000, 0.9, (part,))
>>> log.record(incident, "true", by="ana", at_ms=1).kind.value
'true_anomaly'
>>> [(w.metric, w.entity, w.start, w.end, w.kind) for w in log.store.windows()]
[('cpu', 'web-1', 0, 120000, 'operator')]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any, ClassVar

import pyarrow as pa
from sqlalchemy import JSON, BigInteger, Column, Float, MetaData, String, Table, Text, select
from sqlalchemy.exc import IntegrityError

from perfml.anomalies.errors import AnomaliesError
from perfml.anomalies.incidents import Incident
from perfml.errors import PerfmlError, UsageError
from perfml.featurestore import FeatureStore, LabelWindow
from perfml.metadata import MetadataDatabase, TableOwner, Tables
from perfml.timeparse import parse_duration

OPERATOR_KIND = "operator"
"""The kind of the labelled windows a verdict writes."""
DEFAULT_SILENCE = "24h"
"""How long an *expected change* silences the entity's metrics unless told otherwise."""
Silencer = Callable[[str, str, int, int, str, str], str]
"""``(entity, metric, starts_at_ms, ends_at_ms, created_by, comment) -> silence id``: mutes
``AnomalyDetected`` of that entity and metric (the alert store's silence, in the workspace)."""


class VerdictKind(StrEnum):
    """What an operator says an incident was."""

    TRUE_ANOMALY = "true_anomaly"
    """The detector was right: the span becomes a labelled anomaly window."""
    FALSE_ALARM = "false_alarm"
    """Nothing was wrong: the flags in the span are false positives (no window)."""
    EXPECTED_CHANGE = "expected_change"
    """A planned change (a deploy, a migration): no window, the alerts silenced a while."""

    @classmethod
    def parse(cls, text: str) -> VerdictKind:
        """``true``/``false``/``expected`` or the full names (``-`` for ``_`` accepted)."""
        key = text.strip().lower().replace("-", "_")
        found = _ALIASES.get(key)
        if found is None:
            raise UnknownVerdictError(text)
        return found


_ALIASES = {
    **{kind.value: kind for kind in VerdictKind},
    "true": VerdictKind.TRUE_ANOMALY,
    "anomaly": VerdictKind.TRUE_ANOMALY,
    "false": VerdictKind.FALSE_ALARM,
    "expected": VerdictKind.EXPECTED_CHANGE,
}
LABELLING = frozenset({VerdictKind.TRUE_ANOMALY})
"""Verdicts that write anomaly windows."""
SILENCING = frozenset({VerdictKind.EXPECTED_CHANGE})
"""Verdicts that silence the entity's metrics."""


class VerdictError(AnomaliesError):
    """The root of the verdicts' failures; ``status_code`` is the HTTP status it answers with."""

    status_code: ClassVar[int] = 400


class UnknownVerdictError(VerdictError, UsageError):
    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(
            f"verdict {text!r}: give true (a true anomaly), false (a false alarm) or expected "
            "(an expected change)"
        )


class VerdictTakenError(VerdictError, UsageError):
    status_code = 409

    def __init__(self, incident: str, kind: VerdictKind, by: str) -> None:
        self.incident = incident
        super().__init__(f"incident {incident} already has a verdict: {kind.value} by {by}")


class IncidentNotFoundError(VerdictError, UsageError):
    status_code = 404

    def __init__(self, what: str) -> None:
        super().__init__(f"no incident {what}; `perfml anomalies list` shows the incidents")


class BadSilenceError(VerdictError, UsageError):
    def __init__(self, text: str) -> None:
        super().__init__(f"silence {text!r}: give a positive duration such as 24h")


@dataclass(frozen=True)
class Verdict:
    """One operator's verdict on one incident (immutable)."""

    incident: str
    entity: str
    metrics: tuple[str, ...]
    start_ms: int
    end_ms: int
    kind: VerdictKind
    by: str
    at_ms: int
    """When the verdict was given (epoch ms)."""
    note: str = ""
    peak_score: float = 0.0
    silences: tuple[str, ...] = ()
    """The ids of the alert silences an expected change made."""

    @property
    def windows(self) -> list[LabelWindow]:
        """The labelled anomaly windows the verdict stands for (none but for a true anomaly)."""
        if self.kind not in LABELLING:
            return []
        return [
            LabelWindow(m, self.entity, self.start_ms, self.end_ms, OPERATOR_KIND)
            for m in self.metrics
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "incident": self.incident,
            "entity": self.entity,
            "metrics": list(self.metrics),
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "verdict": self.kind.value,
            "by": self.by,
            "at_ms": self.at_ms,
            "note": self.note,
            "peak_score": self.peak_score,
            "silences": list(self.silences),
        }


metadata = MetaData()

verdicts = Table(
    "anomalies_verdicts",
    metadata,
    Column("incident", String(32), primary_key=True),
    Column("entity", String(256), nullable=False, index=True),
    Column("metrics", JSON, nullable=False),
    Column("start_ms", BigInteger, nullable=False),
    Column("end_ms", BigInteger, nullable=False),
    Column("verdict", String(32), nullable=False),
    Column("by", String(256), nullable=False),
    Column("at_ms", BigInteger, nullable=False, index=True),
    Column("note", Text, nullable=False, default=""),
    Column("peak_score", Float, nullable=False, default=0.0),
    Column("silences", JSON, nullable=False),
)

TABLES = Tables("verdicts", 1, metadata)
"""The tables of verdicts, at schema version 1."""


class VerdictLog(TableOwner):
    """The verdicts in the metadata database, written through to ``store``'s labelled windows
    and, for an expected change, to ``silence`` (see the module's docstring)."""

    tables = TABLES

    def __init__(
        self, database: MetadataDatabase, store: FeatureStore, silence: Silencer | None = None
    ) -> None:
        super().__init__(database)
        self.store = store
        self.silence = silence

    def record(
        self,
        incident: Incident,
        verdict: VerdictKind | str,
        *,
        by: str,
        note: str = "",
        at_ms: int | None = None,
        silence_for: str | timedelta = DEFAULT_SILENCE,
    ) -> Verdict:
        """Record ``verdict`` on ``incident`` as ``by``'s: the row, the labelled windows of a
        true anomaly, the silences of an expected change (from ``at_ms`` for ``silence_for``);
        a second verdict on one incident is a :class:`VerdictTakenError`."""
        kind = verdict if isinstance(verdict, VerdictKind) else VerdictKind.parse(verdict)
        when = int(time.time() * 1000) if at_ms is None else at_ms
        found = self.get(incident.id)
        if found is not None:
            raise VerdictTakenError(incident.id, found.kind, found.by)
        metrics = tuple(part.metric for part in incident.metrics)
        silences: tuple[str, ...] = ()
        if kind in SILENCING and self.silence is not None:
            span = _silence_ms(silence_for)
            comment = f"expected change (incident {incident.id})" + (f": {note}" if note else "")
            silences = tuple(
                self.silence(incident.entity, m, when, when + span, by, comment) for m in metrics
            )
        made = Verdict(
            incident.id, incident.entity, metrics, incident.start_ms, incident.end_ms, kind,
            by, when, note, incident.peak_score, silences,
        )  # fmt: skip
        row = made.to_json()
        row["metrics"], row["silences"] = list(metrics), list(silences)
        try:
            with self.write() as con:
                con.execute(verdicts.insert().values(**row))
                if made.windows:  # in the transaction: a failed write leaves no verdict
                    self.store.write(_NO_POINTS, windows=made.windows, where="operator verdict")
        except IntegrityError:
            taken = self.get(incident.id)
            if taken is None:
                raise
            raise VerdictTakenError(incident.id, taken.kind, taken.by) from None
        return made

    def get(self, incident: str) -> Verdict | None:
        """The verdict on ``incident``, if one was given."""
        with self.engine.connect() as con:
            row = con.execute(select(verdicts).where(verdicts.c.incident == incident)).first()
        return None if row is None else _verdict(row._mapping)

    def history(
        self,
        *,
        entities: Sequence[str] | None = None,
        kinds: Sequence[VerdictKind] | None = None,
        limit: int = 10_000,
    ) -> list[Verdict]:
        """Verdicts, the latest first."""
        query = select(verdicts).order_by(verdicts.c.at_ms.desc(), verdicts.c.incident)
        if entities is not None:
            query = query.where(verdicts.c.entity.in_(list(entities)))
        if kinds is not None:
            query = query.where(verdicts.c.verdict.in_([k.value for k in kinds]))
        with self.engine.connect() as con:
            return [_verdict(r) for r in con.execute(query.limit(limit)).mappings()]

    def by_incident(self) -> dict[str, Verdict]:
        """Every verdict, by incident id."""
        return {v.incident: v for v in self.history()}


def _silence_ms(duration: str | timedelta) -> int:
    try:
        span = parse_duration(duration, "silence")
    except PerfmlError:
        raise BadSilenceError(str(duration)) from None
    ms = int(span.total_seconds() * 1000)
    if ms <= 0:
        raise BadSilenceError(str(duration))
    return ms


_NO_POINTS = pa.table(
    {
        "metric": pa.array([], pa.string()),
        "entity": pa.array([], pa.string()),
        "ts": pa.array([], pa.timestamp("ms", tz="UTC")),
        "value": pa.array([], pa.float64()),
    }
)


def _verdict(row: Any) -> Verdict:
    return Verdict(
        incident=row["incident"],
        entity=row["entity"],
        metrics=tuple(row["metrics"] or ()),
        start_ms=int(row["start_ms"]),
        end_ms=int(row["end_ms"]),
        kind=VerdictKind(row["verdict"]),
        by=row["by"],
        at_ms=int(row["at_ms"]),
        note=row["note"] or "",
        peak_score=float(row["peak_score"]),
        silences=tuple(row["silences"] or ()),
    )


def incident_at(
    incidents: Sequence[Incident], entity: str, metric: str | None, at_ms: int
) -> Incident | None:
    """The incident of ``entity`` (with ``metric`` among its metrics, if given) that an alert
    starting at ``at_ms`` is about: the one whose span holds ``at_ms``, else the nearest."""
    mine = [
        i
        for i in incidents
        if i.entity == entity and (metric is None or any(p.metric == metric for p in i.metrics))
    ]
    if not mine:
        return None
    return min(mine, key=lambda i: (max(i.start_ms - at_ms, at_ms - i.end_ms, 0), -i.start_ms))
