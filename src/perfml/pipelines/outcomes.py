"""What a training run hands back: typed, so that its caller reads fields, not dict keys.

The ``register`` step returns a :class:`TrainingOutcome` as its JSON value; ``perfml train``, the
controller and the demo read it back with :meth:`TrainingOutcome.model_validate`.

>>> outcome = TrainingOutcome(run_id="training-1", model="cpu", version=2, promoted="production",
...                           gate=GateVerdict(passed=True, reason="passed"))
>>> TrainingOutcome.model_validate(outcome.model_dump(mode="json")).ref
'cpu:2'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from perfml.registry.gate import GateResult


class GateVerdict(BaseModel):
    """What the promotion gate said of a candidate: passed or not, why, and the figures."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    passed: bool
    reason: str
    """``passed``, the refusal naming each failed threshold, or why the gate could not judge."""
    candidate: dict[str, float] = {}
    baseline: dict[str, float] | None = None
    """The current holder's figures on the same window (None: the alias had no holder)."""
    failures: list[str] = []
    thresholds: list[dict[str, Any]] = []
    """The gate's thresholds, as :class:`~perfml.registry.MetricThreshold` fields."""
    notes: dict[str, str] = {}
    """By version (``model:version``): how its threshold was chosen, on which rows it was
    judged."""

    @classmethod
    def of(
        cls, result: GateResult | None, reason: str = "", notes: Mapping[str, str] | None = None
    ) -> GateVerdict:
        """The verdict of ``result`` (None: promoted with nothing to compare)."""
        if result is None:
            return cls(passed=True, reason=reason or "passed: nothing to compare")
        return cls(
            passed=result.passed,
            reason=reason or ("passed" if result.passed else "; ".join(result.failures)),
            candidate=dict(result.candidate),
            baseline=None if result.baseline is None else dict(result.baseline),
            failures=list(result.failures),
            thresholds=[dict(t) for t in result.thresholds],
            notes=dict(notes or {}),
        )


class TrainingOutcome(BaseModel):
    """A training run's result: the version registered and, when asked to promote, whether
    it was (``promoted`` names the alias it now holds) with the gate's verdict."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    model: str
    version: int
    promoted: str | None = None
    gate: GateVerdict | None = None
    """None when promotion was not asked for."""

    @property
    def ref(self) -> str:
        """``model:version``."""
        return f"{self.model}:{self.version}"

    def summary(self) -> str:
        """One line: what was registered and what became of the promotion."""
        line = f"registered {self.ref}"
        if self.promoted:
            return f"{line}, promoted to {self.promoted}"
        if self.gate is not None:
            return f"{line}, not promoted: {self.gate.reason}"
        return line

    def to_json(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json"), "ref": self.ref}
