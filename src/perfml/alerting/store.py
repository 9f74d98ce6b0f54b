"""Alerts in the metadata database: current state, history, silences, the notification log.

Tables of their own beside the registry's (SQLite by default, PostgreSQL by URL). Every write
is one transaction taken with :data:`perfml.metadata.WRITE`, so concurrent writers queue
instead of failing. The current alerts and the dispatcher's notification log are the state a
restarted rule engine resumes from: a pending alert keeps its ``active_at`` and a notified
group is not notified again.

>>> from perfml.metadata import MetadataDatabase
>>> store = AlertStore(MetadataDatabase("sqlite:///:memory:"))
>>> silence = store.add_silence(["alertname=JobFailed"], 0, 3_600_000, "ana", "rollout")
>>> [s.id == silence.id for s in store.silences(at_ms=60_000)]
[True]
>>> store.expire_silence(silence.id, at_ms=120_000)
>>> store.silences(at_ms=180_000)
[]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    select,
)

from perfml.alerting.alerts import Alert, AlertState
from perfml.alerting.dispatch import LabelMatcher, Silence
from perfml.alerting.errors import AlertingError
from perfml.alerting.notify import Delivery
from perfml.metadata import TableOwner, Tables

metadata = MetaData()

current = Table(
    "alerts_current",
    metadata,
    Column("rule", String(128), primary_key=True),
    Column("fingerprint", String(16), primary_key=True),
    Column("labels", JSON, nullable=False),
    Column("annotations", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("active_at_ms", BigInteger, nullable=False),
    Column("fired_at_ms", BigInteger),
    Column("resolved_at_ms", BigInteger),
    Column("last_evaluated_ms", BigInteger, nullable=False),
    Column("keep_firing_since_ms", BigInteger),
    Column("value", Text, nullable=False),
)

history = Table(
    "alerts_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(128), nullable=False),
    Column("fingerprint", String(16), nullable=False),
    Column("labels", JSON, nullable=False),
    Column("from_state", String(16)),
    Column("to_state", String(16), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("value", Text, nullable=False),
    Index("ix_alerts_history_at", "at_ms"),
    Index("ix_alerts_history_rule", "rule", "at_ms"),
)

silences = Table(
    "alerts_silences",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("matchers", JSON, nullable=False),
    Column("starts_at_ms", BigInteger, nullable=False),
    Column("ends_at_ms", BigInteger, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("comment", Text, nullable=False),
)

notifications = Table(
    "alerts_notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("integration", String(32), nullable=False),
    Column("target", Text, nullable=False),
    Column("group_key", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("fingerprints", JSON, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Index("ix_alerts_notifications_at", "at_ms"),
)

notify_log = Table(
    "alerts_notify_log",
    metadata,
    Column("group_key", String(512), primary_key=True),
    Column("notifier", String(512), primary_key=True),
    Column("firing", JSON, nullable=False),
    Column("resolved", JSON, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
)

TABLES = Tables("alerts", 1, metadata)
"""The tables of alerts, at schema version 1."""


class SilenceNotFoundError(AlertingError):
    def __init__(self, silence_id: str) -> None:
        self.silence_id = silence_id
        super().__init__(f"no silence {silence_id!r} (see perfml alerts silence --list)")


# Floats go as text: SQLite stores NaN as NULL, and an alert's value may well be NaN or ±Inf.
def _value_text(value: float) -> str:
    return repr(float(value))


def _alert_row(alert: Alert) -> dict[str, Any]:
    return {
        "rule": alert.rule,
        "fingerprint": alert.fingerprint,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "state": alert.state.value,
        "active_at_ms": alert.active_at_ms,
        "fired_at_ms": alert.fired_at_ms,
        "resolved_at_ms": alert.resolved_at_ms,
        "last_evaluated_ms": alert.last_evaluated_ms,
        "keep_firing_since_ms": alert.keep_firing_since_ms,
        "value": _value_text(alert.value),
    }


def _alert(row: Any) -> Alert:
    return Alert(
        rule=row["rule"],
        labels=row["labels"],
        annotations=row["annotations"],
        state=AlertState(row["state"]),
        active_at_ms=row["active_at_ms"],
        fired_at_ms=row["fired_at_ms"],
        resolved_at_ms=row["resolved_at_ms"],
        last_evaluated_ms=row["last_evaluated_ms"],
        value=float(row["value"]),
        keep_firing_since_ms=row["keep_firing_since_ms"],
    )


def _silence(row: Any) -> Silence:
    return Silence(
        id=row["id"],
        matchers=tuple(LabelMatcher(m["name"], m["op"], m["value"]) for m in row["matchers"]),
        starts_at_ms=row["starts_at_ms"],
        ends_at_ms=row["ends_at_ms"],
        created_by=row["created_by"],
        comment=row["comment"],
    )


@dataclass(frozen=True)
class HistoryEntry:
    """One transition of one alert; ``from_state`` is None for a new alert."""

    rule: str
    fingerprint: str
    labels: dict[str, str]
    from_state: str | None
    to_state: str
    at_ms: int
    value: float


class AlertStore(TableOwner):
    """The alerting tables in the database at ``url`` (created if missing)."""

    tables = TABLES

    # -- the tracker's state and its history -----------------------------------------------

    def save_evaluation(self, transitions: Sequence[Alert], tracked: Sequence[Alert]) -> None:
        """In one transaction: append ``transitions`` to the history (each with the state it
        left, read from the stored current alerts) and make ``tracked`` the current alerts."""
        with self.write() as con:
            before = {
                (r.rule, r.fingerprint): r.state
                for r in con.execute(select(current.c.rule, current.c.fingerprint, current.c.state))
            }
            rows = []
            for alert in transitions:
                previous = before.get(alert.key)
                rows.append({
                    "rule": alert.rule, "fingerprint": alert.fingerprint,
                    "labels": dict(alert.labels),
                    "from_state": previous if previous in ("pending", "firing") else None,
                    "to_state": alert.state.value,
                    "at_ms": alert.last_evaluated_ms, "value": _value_text(alert.value),
                })  # fmt: skip
            if rows:
                con.execute(history.insert(), rows)
            con.execute(delete(current))
            if tracked:
                con.execute(current.insert(), [_alert_row(a) for a in tracked])

    def current_alerts(self, state: AlertState | None = None) -> list[Alert]:
        """The stored alerts (pending, firing and recently resolved), or those in ``state``."""
        query = select(current).order_by(current.c.rule, current.c.active_at_ms)
        if state is not None:
            query = query.where(current.c.state == state.value)
        with self.engine.connect() as con:
            return [_alert(r) for r in con.execute(query).mappings()]

    def history(
        self, since_ms: int | None = None, rule: str | None = None, limit: int = 1000
    ) -> list[HistoryEntry]:
        """Transitions, oldest first (the most recent ``limit`` of them)."""
        query = select(history).order_by(history.c.id.desc()).limit(limit)
        if since_ms is not None:
            query = query.where(history.c.at_ms >= since_ms)
        if rule is not None:
            query = query.where(history.c.rule == rule)
        with self.engine.connect() as con:
            rows = con.execute(query).mappings().all()
        return [
            HistoryEntry(r["rule"], r["fingerprint"], dict(r["labels"]), r["from_state"],
                         r["to_state"], r["at_ms"], float(r["value"]))
            for r in reversed(rows)
        ]  # fmt: skip

    # -- silences ------------------------------------------------------------------------------

    def add_silence(
        self,
        matchers: Sequence[str | LabelMatcher],
        starts_at_ms: int,
        ends_at_ms: int,
        created_by: str = "",
        comment: str = "",
    ) -> Silence:
        """Record a new silence (matchers as ``name=value`` / ``name=~regex``); return it."""
        silence = Silence.new(matchers, starts_at_ms, ends_at_ms, created_by, comment)
        with self.write() as con:
            con.execute(
                silences.insert().values(
                    id=silence.id,
                    matchers=[
                        {"name": m.name, "op": m.op, "value": m.value} for m in silence.matchers
                    ],
                    starts_at_ms=silence.starts_at_ms,
                    ends_at_ms=silence.ends_at_ms,
                    created_by=created_by,
                    comment=comment,
                )
            )
        return silence

    def silences(self, at_ms: int | None = None) -> list[Silence]:
        """Every silence, or those active at ``at_ms``, the latest ending first."""
        query = select(silences).order_by(silences.c.ends_at_ms.desc(), silences.c.id)
        if at_ms is not None:
            query = query.where(silences.c.starts_at_ms <= at_ms, silences.c.ends_at_ms > at_ms)
        with self.engine.connect() as con:
            return [_silence(r) for r in con.execute(query).mappings()]

    def expire_silence(self, silence_id: str, at_ms: int) -> None:
        """End the silence at ``at_ms`` (kept for the record, as Alertmanager does)."""
        with self.write() as con:
            row = con.execute(select(silences).where(silences.c.id == silence_id)).first()
            if row is None:
                raise SilenceNotFoundError(silence_id)
            con.execute(
                silences.update()
                .where(silences.c.id == silence_id, silences.c.ends_at_ms > at_ms)
                .values(ends_at_ms=at_ms, starts_at_ms=min(row.starts_at_ms, at_ms))
            )

    # -- the notification log --------------------------------------------------------------

    def record_deliveries(self, deliveries: Iterable[Delivery]) -> None:
        rows = [
            {"at_ms": d.at_ms, "integration": d.integration, "target": d.target,
             "group_key": d.group_key, "status": d.status, "fingerprints": list(d.fingerprints),
             "outcome": d.outcome, "error": d.error, "attempts": d.attempts}
            for d in deliveries
        ]  # fmt: skip
        if rows:
            with self.write() as con:
                con.execute(notifications.insert(), rows)

    def deliveries(self, since_ms: int | None = None, limit: int = 1000) -> list[Delivery]:
        """What was sent to whom, oldest first (the most recent ``limit``)."""
        query = select(notifications).order_by(notifications.c.id.desc()).limit(limit)
        if since_ms is not None:
            query = query.where(notifications.c.at_ms >= since_ms)
        with self.engine.connect() as con:
            rows = con.execute(query).mappings().all()
        return [
            Delivery(r["at_ms"], r["integration"], r["target"], r["group_key"], r["status"],
                     tuple(r["fingerprints"]), r["outcome"], r["error"], r["attempts"])
            for r in reversed(rows)
        ]  # fmt: skip

    def save_notify_log(self, entries: Sequence[dict[str, Any]]) -> None:
        """Replace the dispatcher's notification log (see ``Dispatcher.export_log``)."""
        with self.write() as con:
            con.execute(delete(notify_log))
            if entries:
                con.execute(notify_log.insert(), [dict(e) for e in entries])

    def notify_log(self) -> list[dict[str, Any]]:
        with self.engine.connect() as con:
            return [dict(r) for r in con.execute(select(notify_log)).mappings()]


def finite_or_none(value: float) -> float | None:
    """``value`` for JSON output, ``None`` when it is NaN or infinite."""
    return value if math.isfinite(value) else None
