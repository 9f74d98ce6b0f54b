"""The controller: the loop that retrains a served model when its data drifts, behind the gate.

See :mod:`perfml.controller.loop` for what one check does and
:mod:`perfml.controller.decisions` for what it records.
"""

from perfml.controller.collector import ControllerCollector
from perfml.controller.decisions import RETRAINED, SKIPPED, Action, Decision, DecisionLog
from perfml.controller.loop import (
    Controller,
    NoModelsError,
    Policy,
    Trainer,
    controlled_models,
    latest_complete_window,
)

__all__ = [
    "RETRAINED",
    "SKIPPED",
    "Action",
    "Controller",
    "ControllerCollector",
    "Decision",
    "DecisionLog",
    "NoModelsError",
    "Policy",
    "Trainer",
    "controlled_models",
    "latest_complete_window",
]
