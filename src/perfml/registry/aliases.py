"""Aliases: moving them through the gate, rolling them back, and their audit log.

:class:`AliasBook` is the part of :class:`~perfml.registry.registry.ModelRegistry` that moves
aliases. Every move is a compare-and-swap on the alias's ``revision``: it succeeds only if the
alias still holds what the decision was made against, so of two racing promotions exactly one
wins, and the audit log records each move with the revision it produced.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.exc import IntegrityError

from perfml.registry import events, tables
from perfml.registry.errors import NotFoundError, RegistryError
from perfml.registry.gate import GateResult, MetricThreshold, check
from perfml.registry.names import Ref, check_name
from perfml.registry.records import AliasMove, ModelVersion, instant

Evaluator = Callable[[ModelVersion], Mapping[str, float]]
"""Figures of one version on the gate's labelled window (the same window for every call)."""


class PromotionRefusedError(RegistryError):
    """The candidate did not clear the gate; the message lists every failed threshold."""

    def __init__(self, target: str, candidate: int, gate: GateResult) -> None:
        self.gate = gate
        super().__init__(
            f"promotion of version {candidate} to {target} refused: " + "; ".join(gate.failures)
        )


class ConcurrentChangeError(RegistryError):
    """The alias moved between reading it and moving it: another change won the race."""

    def __init__(self, target: str, seen: int | None, now: int | None) -> None:
        super().__init__(
            f"{target} moved from version {seen} to {now} while this change was being "
            "decided; nothing was changed — decide again against the new holder"
        )


class NothingToRollBackError(RegistryError):
    def __init__(self, target: str) -> None:
        super().__init__(f"{target} has no previous holder to roll back to")


@dataclass(frozen=True)
class Promotion:
    """What a promotion did: the audit entry and the gate's verdict (None when skipped)."""

    move: AliasMove
    gate: GateResult | None


class AliasBook:
    """Alias moves, for a class that provides the registry's engine, lookups and events."""

    engine: Engine
    _writer: Engine
    actor: str

    def get(self, ref: str | Ref) -> ModelVersion:
        raise NotImplementedError

    def _model_id(self, con: Connection, name: str, create: bool = False) -> int:
        raise NotImplementedError

    def _announce(self, event: events.Event) -> None:
        raise NotImplementedError

    def set_alias(
        self, model: str, alias: str, version: int, reason: str = "", forced: bool = False
    ) -> AliasMove:
        """Point ``model@alias`` at ``version`` without a gate (a manual move, e.g. staging)."""
        check_name("alias", alias)
        self.get(Ref(model, version=version))
        seen = self._alias_state(model, alias)
        return self._move(model, alias, "set", seen, version, reason, forced, None)

    def promote(
        self,
        model: str,
        version: int,
        alias: str = "production",
        *,
        thresholds: Sequence[MetricThreshold] = (),
        evaluator: Evaluator | None = None,
        force: bool = False,
        reason: str = "",
    ) -> Promotion:
        """Move ``model@alias`` to ``version`` if it clears the gate against the holder.

        Both are evaluated by ``evaluator`` on the same data; without one, the versions'
        recorded metrics are compared. ``force`` skips the verdict (the figures are still
        recorded when available) and is recorded as forced.
        """
        check_name("alias", alias)
        candidate = self.get(Ref(model, version=version))
        seen = self._alias_state(model, alias)
        target = f"{model}@{alias}"
        if seen is not None and seen[0] == version:
            raise RegistryError(f"{target} already holds version {version}")
        gate = None
        if thresholds or evaluator is not None:
            figures = evaluator or (lambda v: v.metrics)
            baseline = None if seen is None else figures(self.get(Ref(model, version=seen[0])))
            gate = check(thresholds, figures(candidate), baseline)
            if not gate.passed and not force:
                raise PromotionRefusedError(target, version, gate)
        move = self._move(model, alias, "promote", seen, version, reason, force, gate)
        return Promotion(move, gate)

    def rollback(self, model: str, alias: str = "production", reason: str = "") -> AliasMove:
        """Move ``model@alias`` back to the version it held before its current one."""
        check_name("alias", alias)
        seen = self._alias_state(model, alias)
        target = f"{model}@{alias}"
        if seen is None:
            raise NotFoundError("alias", target)
        previous = None
        for entry in reversed(self.history(model, alias)):
            if entry.to_version == seen[0] and entry.action in ("promote", "set"):
                previous = entry.from_version
                break
        if previous is None:
            raise NothingToRollBackError(target)
        self.get(Ref(model, version=previous))  # it must still exist
        return self._move(model, alias, "rollback", seen, previous, reason, False, None)

    def history(self, model: str, alias: str | None = None) -> list[AliasMove]:
        """The audit log of ``model`` (one alias, or all), oldest first."""
        with self.engine.connect() as con:
            model_id = self._model_id(con, check_name("model", model))
            query = select(tables.audit).where(tables.audit.c.model_id == model_id)
            if alias is not None:
                query = query.where(tables.audit.c.alias == alias)
            rows = con.execute(query.order_by(tables.audit.c.id)).all()
        return [
            AliasMove(
                model=model,
                alias=r.alias,
                action=r.action,
                from_version=r.from_version,
                to_version=r.to_version,
                actor=r.actor,
                at=instant(r.at),  # type: ignore[arg-type]
                reason=r.reason,
                forced=r.forced,
                gate=r.gate,
                revision=r.revision,
            )
            for r in rows
        ]

    def _alias_state(self, model: str, alias: str) -> tuple[int, int] | None:
        """``(version, revision)`` of an alias, or None when it is not set."""
        with self.engine.connect() as con:
            model_id = self._model_id(con, check_name("model", model))
            row = con.execute(
                select(tables.aliases.c.version, tables.aliases.c.revision).where(
                    tables.aliases.c.model_id == model_id, tables.aliases.c.alias == alias
                )
            ).first()
        return None if row is None else (int(row.version), int(row.revision))

    def _move(
        self,
        model: str,
        alias: str,
        action: str,
        seen: tuple[int, int] | None,
        version: int,
        reason: str,
        forced: bool,
        gate: GateResult | None,
    ) -> AliasMove:
        """Compare-and-swap the alias from ``seen`` to ``version``, with its audit entry."""
        target = f"{model}@{alias}"
        now = time.time()
        revision = 1 if seen is None else seen[1] + 1
        try:
            with self._writer.begin() as con:
                model_id = self._model_id(con, model)
                if seen is None:
                    con.execute(
                        tables.aliases.insert().values(
                            model_id=model_id,
                            alias=alias,
                            version=version,
                            revision=revision,
                            updated_at=now,
                        )
                    )
                else:
                    swapped = con.execute(
                        update(tables.aliases)
                        .where(
                            tables.aliases.c.model_id == model_id,
                            tables.aliases.c.alias == alias,
                            tables.aliases.c.revision == seen[1],
                        )
                        .values(version=version, revision=revision, updated_at=now)
                    ).rowcount
                    if swapped != 1:
                        raise _LostRaceError()
                con.execute(
                    tables.audit.insert().values(
                        model_id=model_id,
                        alias=alias,
                        action=action,
                        from_version=None if seen is None else seen[0],
                        to_version=version,
                        actor=self.actor,
                        at=now,
                        reason=reason,
                        forced=forced,
                        gate=None if gate is None else gate.to_json(),
                        revision=revision,
                    )
                )
                event = events.Event(
                    "alias_moved",
                    model,
                    now,
                    {
                        "alias": alias,
                        "action": action,
                        "from_version": None if seen is None else seen[0],
                        "to_version": version,
                        "forced": forced,
                    },
                )
                events.enqueue(con, event)
        except (_LostRaceError, IntegrityError):
            now_holding = self._alias_state(model, alias)
            raise ConcurrentChangeError(
                target,
                None if seen is None else seen[0],
                None if now_holding is None else now_holding[0],
            ) from None
        self._announce(event)
        return self.history(model, alias)[-1]


class _LostRaceError(Exception):
    """The compare-and-swap found another revision."""
