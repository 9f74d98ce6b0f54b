"""The controller's decisions: what it did for a model in a window, why, and with which figures.

Each check of a served model on a window ends in one :class:`Action`, recorded with its figures
(the drift of each feature, the threshold, the training run, the gate's verdict) and reasons,
in the metadata database beside the registry's tables. The log is the controller's memory:

- **idempotence**: a model has at most one decision per window (a unique key), so a second
  check of the same window finds the first and does nothing;
- **cooldown and budget**: the retrains of a model are counted from the log;
- **metrics**: ``perfml_controller_actions_total{action}`` counts the log's rows, so it is the
  same in every process and survives restarts.

>>> from perfml.metadata import MetadataDatabase
>>> log = DecisionLog(MetadataDatabase("sqlite://"))
>>> first = log.record(Decision.new("cpu", "2026-04", Action.NO_DRIFT, at_ms=1, reasons=["ok"]))
>>> log.record(Decision.new("cpu", "2026-04", Action.NO_DRIFT, at_ms=2)) is None
True
>>> [d.action.value for d in log.history()], log.counts()
(['no_drift'], {'no_drift': 1})
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError

from perfml.metadata import TableOwner, Tables


class Action(StrEnum):
    """How a check of one model on one window ended."""

    NO_DRIFT = "no_drift"
    """Every feature's drift is at or under the threshold: nothing to do."""
    INSUFFICIENT_DATA = "insufficient_data"
    """Too few new points in the window to judge."""
    COOLDOWN = "cooldown"
    """Drift is high, but the model was retrained too recently."""
    BUDGET_EXHAUSTED = "budget_exhausted"
    """Drift is high, but the model has had its retrains for the period."""
    PROMOTED = "promoted"
    """Drift is high; the retrained candidate passed the gate and is production now."""
    KEPT = "kept"
    """Drift is high; the candidate did not clear the gate (or it could not judge), so
    production stays."""
    FAILED = "failed"
    """Something failed (drift, training, the gate); production is untouched."""


RETRAINED = frozenset({Action.PROMOTED, Action.KEPT})
"""Actions that ran the training pipeline to its end (they count toward cooldown and budget)."""
SKIPPED = frozenset({Action.COOLDOWN, Action.BUDGET_EXHAUSTED, Action.INSUFFICIENT_DATA})
"""Actions that wanted to or could not look, and changed nothing."""


@dataclass(frozen=True)
class Decision:
    """One decision (immutable); ``figures`` holds the numbers it was made on."""

    id: str
    model: str
    window: str
    action: Action
    at_ms: int
    """The controller's clock when it decided (the check's logical time)."""
    production: str | None = None
    """The version that was production when the check began (``name:version``)."""
    candidate: str | None = None
    """The version trained, if any."""
    run_id: str | None = None
    reasons: tuple[str, ...] = ()
    figures: dict[str, Any] = field(default_factory=dict)
    recorded_at: float = 0.0

    @classmethod
    def new(
        cls,
        model: str,
        window: str,
        action: Action,
        *,
        at_ms: int,
        production: str | None = None,
        candidate: str | None = None,
        run_id: str | None = None,
        reasons: Iterable[str] = (),
        figures: dict[str, Any] | None = None,
    ) -> Decision:
        return cls(
            id=uuid.uuid4().hex[:16],
            model=model,
            window=window,
            action=action,
            at_ms=at_ms,
            production=production,
            candidate=candidate,
            run_id=run_id,
            reasons=tuple(reasons),
            figures=dict(figures or {}),
            recorded_at=time.time(),
        )

    @property
    def rule(self) -> str | None:
        """The drift rule that made it retrain: ``fleet`` (a feature over the whole fleet) or
        ``entities`` (the share of entities with a drifted series); None if none fired."""
        found = self.figures.get("rule")
        return None if found is None else str(found)

    @property
    def drifted_entities(self) -> list[str]:
        """The entities with a series over the threshold in the window (the first
        ``figures["entities"]["drifted_count"]`` listed)."""
        return [str(e) for e in dict(self.figures.get("entities") or {}).get("drifted", ())]

    @property
    def entity_share(self) -> float | None:
        """The drifted entities' share of those judged; None before it was measured."""
        found = dict(self.figures.get("entities") or {}).get("share")
        return None if found is None else float(found)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "window": self.window,
            "action": self.action.value,
            "at_ms": self.at_ms,
            "production": self.production,
            "candidate": self.candidate,
            "run_id": self.run_id,
            "reasons": list(self.reasons),
            "figures": self.figures,
            "recorded_at": self.recorded_at,
        }


metadata = MetaData()

decisions = Table(
    "controller_decisions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("model", String(255), nullable=False),
    Column("window", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("production", String(300)),
    Column("candidate", String(300)),
    Column("run_id", String(64)),
    Column("reasons", JSON, nullable=False),
    Column("figures", JSON, nullable=False),
    Column("message", Text, nullable=False, default=""),
    Column("recorded_at", Float, nullable=False),
    UniqueConstraint("model", "window", name="uq_controller_decision_window"),
    Index("ix_controller_decisions_model_at", "model", "at_ms"),
)

TABLES = Tables("decisions", 1, metadata)
"""The tables of decisions, at schema version 1."""


class DecisionLog(TableOwner):
    """The decisions in the metadata database at ``url`` (SQLite or PostgreSQL)."""

    tables = TABLES

    def record(self, decision: Decision) -> Decision | None:
        """Record ``decision``; None if the model already has a decision for that window
        (another controller, or an earlier check, decided it first)."""
        row = decision.to_json() | {"reasons": list(decision.reasons), "message": ""}
        row["action"] = decision.action.value
        try:
            with self.write() as con:
                con.execute(decisions.insert().values(**row))
        except IntegrityError:
            return None
        return decision

    def find(self, model: str, window: str) -> Decision | None:
        """The decision for ``model`` in ``window``, if one was made."""
        query = select(decisions).where(decisions.c.model == model, decisions.c.window == window)
        with self.engine.connect() as con:
            row = con.execute(query).mappings().first()
        return None if row is None else _decision(row)

    def history(self, model: str | None = None, limit: int = 1000) -> list[Decision]:
        """Decisions, oldest first (the latest ``limit``)."""
        query = select(decisions).order_by(decisions.c.at_ms.desc(), decisions.c.recorded_at.desc())
        if model is not None:
            query = query.where(decisions.c.model == model)
        with self.engine.connect() as con:
            rows = con.execute(query.limit(limit)).mappings().all()
        return [_decision(row) for row in reversed(rows)]

    def retrains(self, model: str, since_ms: int) -> list[Decision]:
        """The decisions of ``model`` that retrained it, at or after ``since_ms``."""
        query = (
            select(decisions)
            .where(
                decisions.c.model == model,
                decisions.c.at_ms >= since_ms,
                decisions.c.action.in_([a.value for a in RETRAINED]),
            )
            .order_by(decisions.c.at_ms)
        )
        with self.engine.connect() as con:
            return [_decision(row) for row in con.execute(query).mappings().all()]

    def latest(self) -> list[Decision]:
        """Each model's latest decision (by the controller's clock)."""
        newest = (
            select(decisions.c.model, func.max(decisions.c.at_ms).label("at_ms"))
            .group_by(decisions.c.model)
            .subquery()
        )
        query = (
            select(decisions)
            .join(
                newest,
                (decisions.c.model == newest.c.model) & (decisions.c.at_ms == newest.c.at_ms),
            )
            .order_by(decisions.c.model)
        )
        with self.engine.connect() as con:
            return [_decision(row) for row in con.execute(query).mappings().all()]

    def counts(self) -> dict[str, int]:
        """How many decisions ended in each action."""
        query = select(decisions.c.action, func.count()).group_by(decisions.c.action)
        with self.engine.connect() as con:
            return {str(action): int(n) for action, n in con.execute(query).all()}


def _decision(row: Any) -> Decision:
    reasons: Sequence[str] = row["reasons"] or ()
    return Decision(
        id=row["id"],
        model=row["model"],
        window=row["window"],
        action=Action(row["action"]),
        at_ms=int(row["at_ms"]),
        production=row["production"],
        candidate=row["candidate"],
        run_id=row["run_id"],
        reasons=tuple(reasons),
        figures=dict(row["figures"] or {}),
        recorded_at=float(row["recorded_at"]),
    )
